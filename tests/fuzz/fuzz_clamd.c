/*
 * fuzz_clamd.c - libFuzzer target for the clamav plugin's reading of what
 * clamd answers (plugins/clamav/clamd.c, compiled in here): the answer to
 * zINSTREAM ("stream: OK", "stream: NAME FOUND", "... size limit
 * exceeded. ERROR", anything else) and to zVERSION ("ClamAV 1.4.6/27000/
 * DATE", read for the version and the database gauges).
 *
 * A fake clamd in a thread of this process, on a unix socket, reads each
 * request and answers it with the next piece of the input, then closes
 * the connection: the first piece is the input up to and with its first
 * NUL byte (clamd ends its answers with one), the second the rest. A scan
 * of a small message then runs with a new client (so that the version is
 * asked again); its result must keep clamd_scan's promises (a result in
 * range, a name for a virus or a limit, a name that fits its buffer).
 * Replayed over tests/fuzz/corpus/clamd/ in every build by replay.c.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/clamav/clamd.c"
#include "fakeserver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char message[] = "From sender@example.org Thu Jan  1 00:00:00 1970\n"
			      "Subject: test\n\nX5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR\n";

long src_read(const struct scan_src *s, long long off, void *buf, size_t len)
{
	(void)s;
	if (off >= (long long)sizeof(message) - 1)
		return 0;
	size_t n = sizeof(message) - 1 - (size_t)off;
	if (n > len)
		n = len;
	memcpy(buf, message + off, n);
	return (long)n;
}

static void host_log(struct sift_ctx *ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void host_log(struct sift_ctx *ctx, int level, const char *fmt, ...)
{
	(void)ctx;
	(void)level;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
}

static double gauges[2];

static void host_gauge_set(const char *plugin, const char *name, double value)
{
	if (strcmp(plugin, "clamav") != 0)
		abort();
	if (strcmp(name, "database_version") == 0)
		gauges[0] = value;
	else if (strcmp(name, "database_timestamp_seconds") == 0)
		gauges[1] = value;
	else
		abort();
}

static struct sift_host host_stub = {
	.struct_size = sizeof(struct sift_host), .log = host_log, .gauge_set = host_gauge_set};
const struct sift_host *clamav_host = &host_stub;

/* A virus name comes from the answer's line "[stream: ]NAME[(...)] FOUND":
 * it is there, after the prefix, and ends before " FOUND". */
static void check_found(const uint8_t *data, size_t size, const char *name)
{
	char line[1024];
	size_t n = size < sizeof(line) - 1 ? size : sizeof(line) - 1;
	memcpy(line, data, n);
	line[n] = 0;
	line[strcspn(line, "\n")] = 0;
	const char *p = strncmp(line, "stream: ", 8) == 0 ? line + 8 : line;
	size_t rl = strlen(line), nl = strlen(name);
	if (strncmp(p, name, nl) != 0 || (size_t)(p - line) + nl + 6 > rl)
		abort();
}

static struct fake_server srv = FAKE_SERVER_INIT;

static void *server(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept(srv.lfd, NULL, NULL);
		if (fd < 0)
			continue;
		char buf[4096];
		if (read(fd, buf, sizeof(buf)) > 0) {
			/* a copy: the input is gone once the call that set it returns */
			char piece[4096];
			size_t n = 0;
			pthread_mutex_lock(&srv.mu);
			if (srv.data) {
				const uint8_t *p = srv.data + srv.pos;
				const uint8_t *z = memchr(p, 0, srv.size - srv.pos);
				n = z ? (size_t)(z - p) + 1 : srv.size - srv.pos;
				memcpy(piece, p, n);
				srv.pos += n;
			}
			pthread_mutex_unlock(&srv.mu);
			for (size_t off = 0; off < n;) {
				ssize_t w = send(fd, piece + off, n - off, MSG_NOSIGNAL);
				if (w <= 0)
					break;
				off += (size_t)w;
			}
		}
		close(fd);
	}
	return NULL;
}

static void server_stop(void)
{
	unlink(srv.path);
}

static void server_start(void)
{
	srv.lfd = fake_listen("clamd", srv.path, sizeof(srv.path));
	pthread_t t;
	if (pthread_create(&t, NULL, server, NULL) != 0)
		abort();
	pthread_detach(t);
	atexit(server_stop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	if (srv.lfd < 0)
		server_start();
	char spec[128];
	snprintf(spec, sizeof(spec), "unix:%s", srv.path);
	const char *servers[2] = {spec, NULL};
	char *err = NULL;
	struct clamd_client *c = clamd_new(servers, 1000, 1000, 4, 1000, &err);
	if (!c)
		abort();
	pthread_mutex_lock(&srv.mu);
	srv.data = data;
	srv.size = size;
	srv.pos = 0;
	pthread_mutex_unlock(&srv.mu);

	struct scan_src src = {.size = sizeof(message) - 1};
	char name[64];
	memset(name, 'x', sizeof(name));
	enum scan_result r = clamd_scan(c, &src, clock_ms() + 1000, name, sizeof(name));
	if (r != SCAN_CLEAN && r != SCAN_VIRUS && r != SCAN_LIMIT && r != SCAN_FAILED)
		abort();
	if (!memchr(name, 0, sizeof(name)) || ((r == SCAN_VIRUS || r == SCAN_LIMIT) && !name[0]))
		abort();
	if (r == SCAN_VIRUS)
		check_found(data, size, name);
	const char *v = clamd_version(c);
	if (v && (strlen(v) > 60 || !*v))
		abort();
	clamd_free(c);
	pthread_mutex_lock(&srv.mu);
	srv.data = NULL;
	pthread_mutex_unlock(&srv.mu);
	return 0;
}
