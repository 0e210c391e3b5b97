/*
 * fuzz_redis.c - libFuzzer target for the redis state store's handling of
 * what a Redis server answers (lib/kv_redis.c, compiled in here): the
 * setup on connect (AUTH, SELECT, SCRIPT LOAD), the replies of GET, SET,
 * the increment scripts, DEL, MGET and the batch write, the NOSCRIPT
 * fallback, broken and truncated replies and a server that closes.
 *
 * A fake server in a thread of this process, on a unix socket, answers
 * each request it reads with the next piece of the input (pieces are
 * separated by NUL bytes) and closes the connection after a piece that is
 * not whole replies, at an empty piece and when no piece is left. The first input byte
 * says whether the store has a password and a database, and which calls
 * to make; every call's answer must keep the store API's promises (a
 * value only on success, return codes in range).
 * Replayed over tests/fuzz/corpus/redis/ in every build by replay.c.
 */
#define SIFT_HAVE_REDIS 1
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "../../lib/kv_redis.c"
#include "fakeserver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fake_server srv = FAKE_SERVER_INIT;

/* A copy of the next piece of the input (the input is gone once the call
 * that set it returns): NULL when none is left. */
static uint8_t *next_piece(size_t *n)
{
	uint8_t *copy = NULL;
	pthread_mutex_lock(&srv.mu);
	if (srv.data && srv.pos <= srv.size) {
		const uint8_t *s = srv.data + srv.pos;
		const uint8_t *z = memchr(s, 0, srv.size - srv.pos);
		*n = z ? (size_t)(z - s) : srv.size - srv.pos;
		copy = sift_malloc(*n + 1);
		memcpy(copy, s, *n);
		srv.pos += *n + 1;
	}
	pthread_mutex_unlock(&srv.mu);
	return copy;
}

/* Whether the piece ends the stream so far (rd fed with each piece) at the
 * end of a reply: a reply the client waits for the rest of would hold it
 * until its timeout, so the connection is closed after such a piece. */
static bool whole_replies(redisReader *rd, const uint8_t *p, size_t n)
{
	if (redisReaderFeed(rd, (const char *)p, n) != REDIS_OK)
		return false;
	bool whole = false;
	for (;;) {
		void *rep = NULL;
		if (redisReaderGetReply(rd, &rep) != REDIS_OK)
			return false;
		if (!rep)
			return whole;
		freeReplyObject(rep);
		whole = rd->pos == rd->len; /* nothing after it */
	}
}

static void *server(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(srv.lfd, NULL, NULL);
		if (fd < 0)
			continue;
		char buf[65536];
		redisReader *rd = redisReaderCreate();
		for (;;) {
			ssize_t r = read(fd, buf, sizeof(buf));
			if (r <= 0)
				break;
			size_t n = 0;
			uint8_t *p = next_piece(&n);
			if (!p || n == 0) {
				free(p);
				break;
			}
			size_t off = 0;
			while (off < n) {
				ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);
				if (w <= 0)
					break;
				off += (size_t)w;
			}
			bool whole = whole_replies(rd, p, n);
			free(p);
			if (!whole)
				break;
		}
		redisReaderFree(rd);
		close(fd);
	}
	return NULL;
}

static void server_start(void)
{
	if (srv.lfd >= 0)
		return;
	sift_log_set_level(LOG_CRIT); /* the store's errors are expected */
	srv.lfd = fake_listen("redis", srv.path, sizeof(srv.path));
	pthread_t t;
	if (pthread_create(&t, NULL, server, NULL) != 0)
		abort();
	pthread_detach(t);
}

static void server_stop(void)
{
	unlink(srv.path);
}

/* An array over 100000 elements: hiredis (0.14) allocates the element
 * array an answer announces before it reads the elements, up to INT_MAX
 * of them, which only makes the fuzzer slow. */
static bool huge_array(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (data[i] != '*')
			continue;
		unsigned long long n = 0;
		for (size_t j = i + 1; j < size && data[j] >= '0' && data[j] <= '9' && n <= 100000; j++)
			n = n * 10 + (data[j] - '0');
		if (n > 100000)
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 100000 || huge_array(data, size))
		return 0;
	if (srv.lfd < 0) {
		server_start();
		atexit(server_stop);
	}
	unsigned ops = data[0];
	char *spec = sift_asprintf("unix:%s,timeout=300ms,connect_timeout=300ms,retry_interval=1ms%s%s",
				   srv.path, ops & 1 ? ",password=pw" : "", ops & 2 ? ",db=3" : "");
	char *err = NULL;
	struct kv_redis *r = rds_open(spec, &err);
	free(spec);
	if (!r)
		abort();
	pthread_mutex_lock(&srv.mu);
	srv.data = data + 1;
	srv.size = size - 1;
	srv.pos = 0;
	pthread_mutex_unlock(&srv.mu);

	/* the calls: bits 2.. of the first byte pick them, GET always first */
	const char *keys[3] = {"a", "bb", "ccc"};
	char *val = NULL, *vals[3] = {(char *)1, (char *)1, (char *)1};
	int rc = rds_get(r, "key", &val);
	if (rc < -1 || rc > 1 || (rc == 0) != (val != NULL))
		abort();
	free(val);
	if (ops & 4 && (rc = rds_set(r, "key", "value", ops & 8 ? 1000 : 0)) != 0 && rc != -1)
		abort();
	if (ops & 16) {
		long long v = -12345;
		rc = rds_incr(r, "n", 2, 1000, &v);
		/* -2: sent, no answer (it may have run) */
		if ((rc != 0 && rc != -1 && rc != -2) || (rc < 0 && v != -12345))
			abort();
	}
	if (ops & 32 && ((rc = rds_del(r, "key")) < -1 || rc > 1))
		abort();
	if (ops & 64) {
		rc = rds_mget(r, keys, 3, vals);
		if (rc != 0 && rc != -1)
			abort();
		for (int i = 0; i < 3; i++)
			if (rc == 0)
				free(vals[i]);
			else if (vals[i] != (char *)1)
				abort();
	}
	if (ops & 128) {
		long long d[3] = {1, -1, 5};
		if ((rc = rds_incr_many(r, keys, d, 3, 500)) != 0 && rc != -1)
			abort();
		struct sift_kv_op w[3] = {{.op = SIFT_KV_COUNT, .key = "a", .delta = 1, .ttl_ms = 10},
					  {.op = SIFT_KV_SET, .key = "b", .val = "x"},
					  {.op = SIFT_KV_DEL, .key = "c"}};
		if ((rc = rds_write(r, w, 3)) != 0 && rc != -1)
			abort();
	}
	rds_free(r);
	pthread_mutex_lock(&srv.mu);
	srv.data = NULL;
	pthread_mutex_unlock(&srv.mu);
	return 0;
}
