/*
 * test_kv.c - unit tests for lib/kv.c (the "memory:" key-value store):
 * spec parsing, get/set/del, TTL expiry, kv_incr semantics (expiry only on
 * creation, non-integer values, overflow), atomicity of kv_incr under 8
 * threads, the max_keys bound (expired keys reclaimed first, then the
 * sampled key that expires soonest evicted, under threads too), and the
 * batches (mget, incr_many, write).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "sift.h"
#include "t.h"

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static void test_open(void)
{
	char *err = NULL;
	struct sift_kv *kv;
	const char *good[] = {"memory", "memory:", "memory:max_keys=10", "memory:max_keys=0", ""};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		kv = sift_kv_open(good[i], &err);
		CHECK(kv != NULL);
		sift_kv_free(kv);
	}
	kv = sift_kv_open("bogus:x", &err);
	CHECK(kv == NULL);
	CHECK(err && strstr(err, "\"bogus\""));
	free(err);
	err = NULL;
	kv = sift_kv_open("memory:max_keys=abc", &err);
	CHECK(kv == NULL && err != NULL);
	free(err);
	err = NULL;
	kv = sift_kv_open("memory:colour=blue", &err);
	CHECK(kv == NULL && err && strstr(err, "colour"));
	free(err);
	err = NULL;
	kv = sift_kv_open("memoryx", &err);
	CHECK(kv == NULL && err && strstr(err, "memoryx"));
	free(err);
	err = NULL;
	/* a password with a comma: the error does not quote its rest */
	kv = sift_kv_open("redis:127.0.0.1:1,password=Tr0ub4dor,Horse", &err);
	CHECK(kv == NULL && err && strstr(err, "after password=") && !strstr(err, "Horse"));
	free(err);
	err = NULL;
	kv = sift_kv_open("redis:127.0.0.1:1,db=2,timeout", &err);
	CHECK(kv == NULL && err && strstr(err, "\"timeout\""));
	free(err);
}

static void test_basic(void)
{
	char *err = NULL, *v = NULL;
	struct sift_kv *kv = sift_kv_open("memory:", &err);
	CHECK_INT(sift_kv_get(kv, "a", &v), 1);
	CHECK_INT(sift_kv_set(kv, "a", "one", 0), 0);
	CHECK_INT(sift_kv_get(kv, "a", &v), 0);
	CHECK_STR(v, "one");
	free(v);
	CHECK_INT(sift_kv_set(kv, "a", "two", -1), 0);
	CHECK_INT(sift_kv_get(kv, "a", &v), 0);
	CHECK_STR(v, "two");
	free(v);
	CHECK_INT(sift_kv_set(kv, "", "empty key", 0), 0);
	CHECK_INT(sift_kv_get(kv, "", &v), 0);
	CHECK_STR(v, "empty key");
	free(v);
	CHECK_INT(sift_kv_del(kv, "a"), 0);
	CHECK_INT(sift_kv_del(kv, "a"), 1);
	CHECK_INT(sift_kv_get(kv, "a", &v), 1);
	/* Many keys: the stripes grow. */
	char key[32], val[32];
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i * 3);
		sift_kv_set(kv, key, val, 0);
	}
	int bad = 0;
	for (int i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i * 3);
		if (sift_kv_get(kv, key, &v) != 0 || strcmp(v, val) != 0)
			bad++;
		free(v);
		v = NULL;
	}
	CHECK_INT(bad, 0);
	/* Bad arguments. */
	CHECK_INT(sift_kv_set(kv, NULL, "x", 0), -1);
	CHECK_INT(sift_kv_set(kv, "x", NULL, 0), -1);
	CHECK_INT(sift_kv_get(NULL, "x", &v), -1);
	sift_kv_free(kv);
}

static void test_ttl(void)
{
	char *err = NULL, *v = NULL;
	long long n = 0;
	struct sift_kv *kv = sift_kv_open("memory", &err);
	CHECK_INT(sift_kv_set(kv, "t", "x", 50), 0);
	CHECK_INT(sift_kv_set(kv, "forever", "y", 0), 0);
	CHECK_INT(sift_kv_get(kv, "t", &v), 0);
	free(v);
	sleep_ms(80);
	CHECK_INT(sift_kv_get(kv, "t", &v), 1);
	CHECK_INT(sift_kv_del(kv, "t"), 1);
	CHECK_INT(sift_kv_get(kv, "forever", &v), 0);
	free(v);
	/* set() replaces the expiry. */
	CHECK_INT(sift_kv_set(kv, "r", "x", 50), 0);
	CHECK_INT(sift_kv_set(kv, "r", "x", 0), 0);
	sleep_ms(80);
	CHECK_INT(sift_kv_get(kv, "r", &v), 0);
	free(v);

	/* incr: the expiry is set at creation only. */
	CHECK_INT(sift_kv_incr(kv, "c", 1, 100, &n), 0);
	CHECK_INT(n, 1);
	sleep_ms(60);
	CHECK_INT(sift_kv_incr(kv, "c", 1, 100, &n), 0); /* does not extend */
	CHECK_INT(n, 2);
	sleep_ms(60);
	CHECK_INT(sift_kv_get(kv, "c", &v), 1);	       /* expired at ~100 ms */
	CHECK_INT(sift_kv_incr(kv, "c", 5, 0, &n), 0); /* recreated */
	CHECK_INT(n, 5);
	sift_kv_free(kv);
}

static void test_incr(void)
{
	char *err = NULL, *v = NULL;
	long long n = 0;
	struct sift_kv *kv = sift_kv_open("memory:", &err);
	CHECK_INT(sift_kv_incr(kv, "n", 10, 0, &n), 0);
	CHECK_INT(n, 10);
	CHECK_INT(sift_kv_incr(kv, "n", -3, 0, &n), 0);
	CHECK_INT(n, 7);
	CHECK_INT(sift_kv_get(kv, "n", &v), 0);
	CHECK_STR(v, "7");
	free(v);
	CHECK_INT(sift_kv_incr(kv, "n", 0, 0, NULL), 0);
	CHECK_INT(sift_kv_set(kv, "s", "hello", 0), 0);
	CHECK_INT(sift_kv_incr(kv, "s", 1, 0, &n), -1);
	CHECK_INT(sift_kv_get(kv, "s", &v), 0);
	CHECK_STR(v, "hello"); /* unchanged */
	free(v);
	CHECK_INT(sift_kv_set(kv, "s2", "12abc", 0), 0);
	CHECK_INT(sift_kv_incr(kv, "s2", 1, 0, &n), -1);
	CHECK_INT(sift_kv_set(kv, "s3", "", 0), 0);
	CHECK_INT(sift_kv_incr(kv, "s3", 1, 0, &n), -1);
	CHECK_INT(sift_kv_set(kv, "s4", "-42", 0), 0);
	CHECK_INT(sift_kv_incr(kv, "s4", 2, 0, &n), 0);
	CHECK_INT(n, -40);
	CHECK_INT(sift_kv_set(kv, "big", "9223372036854775807", 0), 0);
	CHECK_INT(sift_kv_incr(kv, "big", 1, 0, &n), -1); /* overflow */
	sift_kv_free(kv);
}

#define NTHREADS 8
#define NINCR	 10000

struct incr_arg {
	struct sift_kv *kv;
	int errors;
	long long max_seen;
};

static void *incr_thread(void *p)
{
	struct incr_arg *a = p;
	char key[16];
	for (int i = 0; i < NINCR; i++) {
		long long v;
		if (sift_kv_incr(a->kv, "shared", 1, 0, &v) != 0)
			a->errors++;
		else if (v > a->max_seen)
			a->max_seen = v;
		/* Other keys in other stripes, to mix contention. */
		snprintf(key, sizeof(key), "o%d", i % 97);
		if (sift_kv_incr(a->kv, key, 2, 0, NULL) != 0)
			a->errors++;
	}
	return NULL;
}

static void test_threads(void)
{
	char *err = NULL, *v = NULL;
	struct sift_kv *kv = sift_kv_open("memory:", &err);
	pthread_t th[NTHREADS];
	struct incr_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		args[i] = (struct incr_arg){kv, 0, 0};
		pthread_create(&th[i], NULL, incr_thread, &args[i]);
	}
	int errors = 0;
	long long max = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		errors += args[i].errors;
		if (args[i].max_seen > max)
			max = args[i].max_seen;
	}
	CHECK_INT(errors, 0);
	CHECK_INT(max, NTHREADS * NINCR);
	CHECK_INT(sift_kv_get(kv, "shared", &v), 0);
	CHECK_STR(v, "80000");
	free(v);
	long long total = 0;
	char key[16];
	for (int k = 0; k < 97; k++) {
		snprintf(key, sizeof(key), "o%d", k);
		if (sift_kv_get(kv, key, &v) == 0) {
			total += atoll(v);
			free(v);
		}
	}
	CHECK_INT(total, 2LL * NTHREADS * NINCR);
	sift_kv_free(kv);
}

static unsigned long long kv_keys(struct sift_kv *kv)
{
	struct sift_kv_stats st;
	sift_kv_stats(kv, &st);
	return st.keys;
}

static unsigned long long kv_evictions(struct sift_kv *kv)
{
	struct sift_kv_stats st;
	sift_kv_stats(kv, &st);
	return st.evictions;
}

/* A full store reclaims expired keys first, then evicts: new keys are never
 * refused. */
static void test_max_keys(void)
{
	char *err = NULL, *v = NULL;
	char key[16];
	struct sift_kv *kv = sift_kv_open("memory:max_keys=100", &err);
	CHECK(kv != NULL);
	struct sift_kv_stats st;
	sift_kv_stats(kv, &st);
	CHECK_INT(st.max_keys, 100);
	CHECK_INT(st.keys, 0);
	CHECK_INT(st.evictions, 0);
	int fails = 0;
	for (int i = 0; i < 100; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		if (sift_kv_set(kv, key, "v", i < 50 ? 40 : 0) != 0)
			fails++;
	}
	CHECK_INT(fails, 0);
	CHECK_INT(kv_keys(kv), 100);
	CHECK_INT(sift_kv_set(kv, "k7", "replaced", 0), 0); /* existing keys: no eviction */
	CHECK_INT(sift_kv_incr(kv, "k60", 1, 0, NULL), -1); /* "v" is not a number */
	CHECK_INT(sift_kv_del(kv, "k99"), 0);
	CHECK_INT(sift_kv_set(kv, "one-more", "v", 0), 0); /* room after a delete */
	CHECK_INT(kv_evictions(kv), 0);
	/* After expiry of k0..k49 (except k7, rewritten without TTL), 49 slots
	 * are reclaimed by the sweeps on overflow, before any eviction. */
	sleep_ms(60);
	fails = 0;
	for (int i = 0; i < 49; i++) {
		snprintf(key, sizeof(key), "n%d", i);
		if (sift_kv_set(kv, key, "v", 0) != 0)
			fails++;
	}
	CHECK_INT(fails, 0);
	CHECK_INT(kv_keys(kv), 100);
	CHECK_INT(kv_evictions(kv), 0);
	/* Full of live keys: the next new key evicts one. */
	CHECK_INT(sift_kv_set(kv, "full-again", "v", 0), 0);
	CHECK_INT(sift_kv_get(kv, "full-again", &v), 0);
	CHECK_STR(v, "v");
	free(v);
	v = NULL;
	CHECK_INT(kv_keys(kv), 100);
	CHECK_INT(kv_evictions(kv), 1);
	long long n = 0;
	CHECK_INT(sift_kv_incr(kv, "new-counter", 3, 0, &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(kv_keys(kv), 100);
	CHECK_INT(kv_evictions(kv), 2);
	sift_kv_free(kv);

	/* The other extreme: one key; the new key's stripe is usually empty,
	 * so the victim is found in another one. */
	kv = sift_kv_open("memory:max_keys=1", &err);
	CHECK(kv != NULL);
	CHECK_INT(sift_kv_set(kv, "a", "1", 0), 0);
	CHECK_INT(sift_kv_set(kv, "b", "2", 0), 0);
	CHECK_INT(sift_kv_get(kv, "a", &v), 1);
	CHECK_INT(sift_kv_get(kv, "b", &v), 0);
	CHECK_STR(v, "2");
	free(v);
	v = NULL;
	CHECK_INT(kv_keys(kv), 1);
	CHECK_INT(kv_evictions(kv), 1);
	sift_kv_free(kv);
}

/* Eviction takes the sampled key that expires soonest, keys without expiry
 * last; counters keep counting in a full store. */
static void test_evict(void)
{
	char *err = NULL, *v = NULL;
	char key[32];
	enum { MAX = 1280, KEEP = 64, LATE = 64, NEW = 600 };
	struct sift_kv *kv = sift_kv_open("memory:max_keys=1280", &err);
	CHECK(kv != NULL);
	int fails = 0;
	for (int i = 0; i < MAX; i++) {
		long ttl = i < KEEP ? 0 : i < KEEP + LATE ? 86400000L : 3600000L;
		snprintf(key, sizeof(key), "%s%d", i < KEEP ? "keep" : i < KEEP + LATE ? "late" : "soon", i);
		if (sift_kv_incr(kv, key, 5, ttl, NULL) != 0)
			fails++;
	}
	CHECK_INT(fails, 0);
	CHECK_INT(kv_keys(kv), MAX);
	CHECK_INT(kv_evictions(kv), 0);
	for (int i = 0; i < NEW; i++) {
		snprintf(key, sizeof(key), "new%d", i);
		if (sift_kv_set(kv, key, "x", 7200000L) != 0)
			fails++;
		if (kv_keys(kv) > MAX)
			fails++;
	}
	CHECK_INT(fails, 0);
	CHECK_INT(kv_keys(kv), MAX);
	CHECK_INT(kv_evictions(kv), NEW);
	int keep = 0, late = 0, gone = 0;
	for (int i = 0; i < MAX; i++) {
		snprintf(key, sizeof(key), "%s%d", i < KEEP ? "keep" : i < KEEP + LATE ? "late" : "soon", i);
		int rc = sift_kv_get(kv, key, &v);
		if (rc == 0) {
			free(v);
			v = NULL;
			v = NULL;
			keep += i < KEEP;
			late += i >= KEEP && i < KEEP + LATE;
		} else {
			gone++;
		}
	}
	for (int i = 0; i < NEW; i++) {
		snprintf(key, sizeof(key), "new%d", i);
		if (sift_kv_get(kv, key, &v) == 0) {
			free(v);
			v = NULL;
		} else {
			gone++;
		}
	}
	CHECK_INT(keep, KEEP); /* never the keys without expiry */
	CHECK_INT(late, LATE); /* nor the ones that expire last */
	CHECK_INT(gone, NEW);
	/* Counters: existing ones count on, new ones evict. */
	long long n = 0;
	CHECK_INT(sift_kv_incr(kv, "keep0", 2, 0, &n), 0);
	CHECK_INT(n, 7);
	CHECK_INT(sift_kv_incr(kv, "fresh", 1, 1000, &n), 0);
	CHECK_INT(n, 1);
	const char *keys[] = {"keep1", "fresh", "fresh2"};
	const long long deltas[] = {1, 1, 4};
	CHECK_INT(sift_kv_incr_many(kv, keys, deltas, 3, 3600000L), 0);
	CHECK_INT(sift_kv_get(kv, "keep1", &v), 0);
	CHECK_STR(v, "6");
	free(v);
	v = NULL;
	CHECK_INT(sift_kv_get(kv, "fresh", &v), 0);
	CHECK_STR(v, "2");
	free(v);
	v = NULL;
	CHECK_INT(sift_kv_get(kv, "fresh2", &v), 0);
	CHECK_STR(v, "4");
	free(v);
	v = NULL;
	CHECK_INT(kv_keys(kv), MAX);
	CHECK_INT(kv_evictions(kv), NEW + 2);
	sift_kv_free(kv);
}

/* Threads adding new keys to a full store all succeed and the bound holds. */
#define EV_THREADS 8
#define EV_KEYS	   2000
static struct sift_kv *ev_kv;
static void *evict_worker(void *arg)
{
	int id = (int)(intptr_t)arg, *fails = sift_calloc(1, sizeof(int));
	char key[32];
	for (int i = 0; i < EV_KEYS; i++) {
		snprintf(key, sizeof(key), "t%d.%d", id, i);
		if (sift_kv_incr(ev_kv, key, 1, i % 3 ? 60000 : 0, NULL) != 0)
			(*fails)++;
	}
	return fails;
}

static void test_evict_threads(void)
{
	char *err = NULL;
	ev_kv = sift_kv_open("memory:max_keys=50", &err);
	CHECK(ev_kv != NULL);
	pthread_t th[EV_THREADS];
	for (int i = 0; i < EV_THREADS; i++)
		pthread_create(&th[i], NULL, evict_worker, (void *)(intptr_t)i);
	int fails = 0;
	for (int i = 0; i < EV_THREADS; i++) {
		void *r;
		pthread_join(th[i], &r);
		fails += *(int *)r;
		free(r);
	}
	CHECK_INT(fails, 0);
	CHECK_INT(kv_keys(ev_kv), 50);
	CHECK_INT(kv_evictions(ev_kv), EV_THREADS * EV_KEYS - 50);
	sift_kv_free(ev_kv);
}

/* The batches of the memory backend. */
static void test_batches(void)
{
	char *err = NULL;
	struct sift_kv *kv = sift_kv_open("memory:", &err);
	CHECK(kv != NULL);
	const char *keys[] = {"b1", "b2", "b3"};
	long long d[] = {2, 1, -1};
	CHECK_INT(sift_kv_incr_many(kv, keys, d, 3, 0), 0);
	char *v[3] = {NULL, NULL, NULL};
	CHECK_INT(sift_kv_mget(kv, keys, 3, v), 0);
	CHECK_STR(v[0], "2");
	CHECK_STR(v[1], "1");
	CHECK(v[2] == NULL); /* dropped to -1: deleted */
	for (int i = 0; i < 3; i++)
		free(v[i]);
	long long back[] = {-2, 0, 0};
	CHECK_INT(sift_kv_incr_many(kv, keys, back, 1, 0), 0);
	CHECK_INT(sift_kv_mget(kv, keys, 2, v), 0);
	CHECK(v[0] == NULL); /* counted down to 0: deleted */
	CHECK_STR(v[1], "1");
	free(v[0]);
	free(v[1]);
	/* the expiry restarts at every increment */
	const char *k1[] = {"t"};
	long long one[] = {1};
	CHECK_INT(sift_kv_incr_many(kv, k1, one, 1, 150), 0);
	sleep_ms(100);
	CHECK_INT(sift_kv_incr_many(kv, k1, one, 1, 150), 0);
	sleep_ms(100);
	CHECK_INT(sift_kv_mget(kv, k1, 1, v), 0);
	CHECK_STR(v[0], "2");
	free(v[0]);
	CHECK_INT(sift_kv_mget(NULL, k1, 1, v), -1);
	sift_kv_free(kv);
}

/* sift_kv_incr_many from several threads on the same keys (Bayes learning
 * from filterd's workers): every increment counts, and a key counted down
 * to 0 by one thread does not take another thread's increment with it. */
struct many_arg {
	struct sift_kv *kv;
	bool down; /* +1 then -1 on "m" (net 0), else +1 */
	int errors;
};

static void *many_thread(void *p)
{
	struct many_arg *a = p;
	const char *keys[] = {"m", "n"};
	long long up[] = {1, 1}, back[] = {-1, 0};
	for (int i = 0; i < NINCR; i++) {
		if (sift_kv_incr_many(a->kv, keys, up, a->down ? 1 : 2, 60000) != 0)
			a->errors++;
		if (a->down && sift_kv_incr_many(a->kv, keys, back, 1, 60000) != 0)
			a->errors++;
	}
	return NULL;
}

static void test_batches_threads(void)
{
	char *err = NULL, *v = NULL;
	struct sift_kv *kv = sift_kv_open("memory:", &err);
	pthread_t th[NTHREADS];
	struct many_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		args[i] = (struct many_arg){kv, i % 2 == 1, 0};
		pthread_create(&th[i], NULL, many_thread, &args[i]);
	}
	int errors = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		errors += args[i].errors;
	}
	CHECK_INT(errors, 0);
	int ups = (NTHREADS + 1) / 2;
	CHECK_INT(sift_kv_get(kv, "n", &v), 0);
	CHECK_INT(v ? atoll(v) : -1, (long long)ups * NINCR);
	free(v);
	v = NULL;
	CHECK_INT(sift_kv_get(kv, "m", &v), 0);
	CHECK_INT(v ? atoll(v) : -1, (long long)ups * NINCR);
	free(v);
	sift_kv_free(kv);
}

/* sift_kv_write on memory: counts as incr_many, sets with their expiry,
 * deletes, in order; malformed batches refused before any write. */
static void test_write(void)
{
	char *err = NULL;
	struct sift_kv *kv = sift_kv_open("memory:", &err);
	CHECK(kv != NULL);
	CHECK_INT(sift_kv_set(kv, "gone", "x", 0), 0);
	struct sift_kv_op ops[] = {
		{.op = SIFT_KV_COUNT, .key = "c1", .delta = 2},
		{.op = SIFT_KV_COUNT, .key = "c2", .delta = -1},
		{.op = SIFT_KV_SET, .key = "s", .val = "h", .ttl_ms = 150},
		{.op = SIFT_KV_DEL, .key = "gone"},
		{.op = SIFT_KV_COUNT, .key = "c1", .delta = 1},
	};
	CHECK_INT(sift_kv_write(kv, ops, 5), 0);
	const char *keys[] = {"c1", "c2", "s", "gone"};
	char *v[4] = {NULL, NULL, NULL, NULL};
	CHECK_INT(sift_kv_mget(kv, keys, 4, v), 0);
	CHECK_STR(v[0], "3");
	CHECK(v[1] == NULL); /* counted below 0: not created */
	CHECK_STR(v[2], "h");
	CHECK(v[3] == NULL);
	for (int i = 0; i < 4; i++)
		free(v[i]);
	sleep_ms(250);
	CHECK_INT(sift_kv_get(kv, "s", &v[0]), 1); /* expired */
	struct sift_kv_op down[] = {{.op = SIFT_KV_COUNT, .key = "c1", .delta = -3}};
	CHECK_INT(sift_kv_write(kv, down, 1), 0);
	CHECK_INT(sift_kv_get(kv, "c1", &v[0]), 1); /* counted down to 0: deleted */
	/* refused whole: a set without a value, a key missing */
	struct sift_kv_op bad[] = {{.op = SIFT_KV_COUNT, .key = "c9", .delta = 1},
				   {.op = SIFT_KV_SET, .key = "s"}};
	CHECK_INT(sift_kv_write(kv, bad, 2), -1);
	bad[1] = (struct sift_kv_op){.op = SIFT_KV_DEL};
	CHECK_INT(sift_kv_write(kv, bad, 2), -1);
	CHECK_INT(sift_kv_get(kv, "c9", &v[0]), 1);
	CHECK_INT(sift_kv_write(kv, NULL, 0), 0);
	CHECK_INT(sift_kv_write(NULL, ops, 1), -1);
	sift_kv_free(kv);
}

int main(void)
{
	test_open();
	test_basic();
	test_ttl();
	test_incr();
	test_threads();
	test_batches_threads();
	test_max_keys();
	test_evict();
	test_evict_threads();
	test_batches();
	test_write();
	return t_done();
}
