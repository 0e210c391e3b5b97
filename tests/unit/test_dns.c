/*
 * test_dns.c - tests for lib/dns.c, the shared libunbound resolver.
 *
 * Always run (no server needed): the wire-format helpers, server list
 * parsing in sift_dns_init, queries before init, SIFT_DNS_ERROR for bad
 * names, and a bounded TEMPFAIL against a port where nothing listens.
 *
 * With SIFT_DNS_SERVER set ("127.0.0.1:PORT", as tests/lib/test_dns.py
 * does after starting tests/lib/dnsserver.py with the zone below), also:
 * A, AAAA, TXT (multi-string and a 2000-byte record that needs TCP), MX,
 * PTR, CNAME, NXDOMAIN, NODATA, TIMEOUT and SERVFAIL -> TEMPFAIL in bounded
 * time, 16 threads querying at once (with timeouts racing answers), a
 * shutdown while queries are waiting, and 300 queries given up unanswered
 * that do not hold up the next ones. Without it those are skipped and the
 * binary still passes, so it stays a plain unit test as well.
 *
 * The zone (kept in sync with tests/lib/test_dns.py):
 *   a.sift.test        A     192.0.2.1, 192.0.2.2   (ttl 300)
 *   a6.sift.test       AAAA  2001:db8::1
 *   txt.sift.test      TXT   "v=spf1 " "ip4:192.0.2.0/24 " "-all"
 *   big.sift.test      TXT   2000 bytes: "0123456789" repeated
 *   sift.test          MX    10 mx1.sift.test, 20 mx2.sift.test
 *   cname.sift.test    CNAME a.sift.test
 *   1.2.0.192.in-addr.arpa PTR a.sift.test
 *   t0..t63.sift.test  A     10.0.0.N
 *   slow.sift.test     TIMEOUT
 *   hang0..hang299.sift.test TIMEOUT
 *   fail.sift.test     SERVFAIL
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sift.h"
#include "t.h"

#define T_A	1
#define T_NS	2
#define T_CNAME 5
#define T_PTR	12
#define T_MX	15
#define T_TXT	16
#define T_AAAA	28

static void test_wire(void)
{
	char name[256];
	unsigned pref = 0;
	const unsigned char mx[] = {0, 10, 3, 'm', 'x', '1', 4, 's', 'i', 'f', 't', 4, 't', 'e', 's', 't', 0};
	CHECK_INT(sift_dns_mx_name(mx, sizeof(mx), &pref, name, sizeof(name)), 0);
	CHECK_INT(pref, 10);
	CHECK_STR(name, "mx1.sift.test");
	const unsigned char nullmx[] = {0, 0, 0};
	CHECK_INT(sift_dns_mx_name(nullmx, sizeof(nullmx), &pref, name, sizeof(name)), 0);
	CHECK_INT(pref, 0);
	CHECK_STR(name, ".");
	CHECK_INT(sift_dns_mx_name(mx, 2, &pref, name, sizeof(name)), -1);
	CHECK_INT(sift_dns_mx_name(mx, sizeof(mx) - 1, &pref, name, sizeof(name)), -1); /* no root */
	CHECK_INT(sift_dns_name_from_wire(mx + 2, sizeof(mx) - 2, name, sizeof(name)), 15);
	CHECK_INT(sift_dns_name_from_wire(mx + 2, sizeof(mx) - 2, name, 13), -1); /* too small */
	CHECK_INT(sift_dns_name_from_wire(mx + 2, sizeof(mx) - 2, name, 14), 15);
	CHECK_STR(name, "mx1.sift.test");
	const unsigned char ptr[] = {0xc0, 0x0c};
	CHECK_INT(sift_dns_name_from_wire(ptr, sizeof(ptr), name, sizeof(name)), -1);
	const unsigned char odd[] = {3, 'a', '.', 0x01, 1, '\\', 0};
	CHECK(sift_dns_name_from_wire(odd, sizeof(odd), name, sizeof(name)) > 0);
	CHECK_STR(name, "a\\.\\001.\\\\");
	const unsigned char over[] = {70, 'a'};
	CHECK_INT(sift_dns_name_from_wire(over, sizeof(over), name, sizeof(name)), -1);
	/* At most 255 octets in all, the final 0 included (RFC 1035 2.3.4):
	 * labels of 63, 63, 63 and 61 octets make 255, one more is too long. */
	unsigned char wire[300], big[400];
	for (int last = 61; last <= 62; last++) {
		size_t o = 0;
		const int labels[] = {63, 63, 63, last};
		for (size_t i = 0; i < 4; i++) {
			wire[o++] = (unsigned char)labels[i];
			memset(wire + o, 'a', (size_t)labels[i]);
			o += (size_t)labels[i];
		}
		wire[o++] = 0;
		CHECK_INT(sift_dns_name_from_wire(wire, o, (char *)big, sizeof(big)), last == 61 ? 255 : -1);
	}
}

static void test_init_errors(void)
{
	char *err = NULL;
	const char *bad[] = {"bogus", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x",
			     "[::1",  "[::1]x",	     "300.1.1.1",	" , "};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		CHECK_INT(sift_dns_init(bad[i], 1000, &err), -1);
		CHECK(err != NULL);
		free(err);
	}
	/* An unbracketed IPv6 address that reads as ADDRESS:PORT as well is
	 * refused, and the error says how to write either meaning. */
	const char *ambiguous[][2] = {{"::1:5353", "write [::1]:5353 for port 5353 of ::1, or [::1:5353]"},
				      {"127.0.0.1 2001:db8::1:53", "[2001:db8::1]:53"},
				      {"fe80::1:0", "[fe80::1]:0"}};
	for (size_t i = 0; i < sizeof(ambiguous) / sizeof(ambiguous[0]); i++) {
		err = NULL;
		CHECK_INT(sift_dns_init(ambiguous[i][0], 1000, &err), -1);
		CHECK(err && strstr(err, "ambiguous") && strstr(err, ambiguous[i][1]));
		free(err);
	}
	/* What is not ambiguous is taken. */
	const char *good[] = {"::1",	    "[::1]",	    "[::1]:5353",	  "127.0.0.1:5353",
			      "[::1:5353]", "2001:db8::53", "1:2:3:4:5:6:7:5353", "::"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		err = NULL;
		CHECK_INT(sift_dns_init(good[i], 1000, &err), 0);
		if (err)
			fprintf(stderr, "%s: %s\n", good[i], err);
		free(err);
		sift_dns_shutdown();
	}
	/* Before init: TEMPFAIL, not a crash. */
	struct sift_dns_result *r = sift_dns_query("example.com", T_A, 100);
	CHECK(r && r->status == SIFT_DNS_TEMPFAIL);
	free(r);
	sift_dns_shutdown(); /* harmless when not initialised */
}

static void test_offline(void)
{
	char *err = NULL;
	/* Nothing listens on port 1: queries fail, but within the timeout. */
	CHECK_INT(sift_dns_init("127.0.0.1:1, [::1]:1", 300, &err), 0);
	free(err);
	err = NULL;
	CHECK_INT(sift_dns_init("127.0.0.1:1", 300, &err), -1); /* already */
	free(err);
	long long t0 = sift_now_ms();
	struct sift_dns_result *r = sift_dns_query("nothing.sift.test", T_A, 0);
	long long dt = sift_now_ms() - t0;
	CHECK(r && r->status == SIFT_DNS_TEMPFAIL);
	CHECK(dt < 300 + 700);
	free(r);

	char longname[300];
	memset(longname, 'a', sizeof(longname));
	for (int i = 60; i < 299; i += 61)
		longname[i] = '.';
	longname[254] = 0; /* 254 octets */
	r = sift_dns_query(longname, T_A, 100);
	CHECK(r && r->status == SIFT_DNS_ERROR);
	free(r);
	longname[253] = 0; /* 253 octets: fine syntactically */
	CHECK(longname[252] != '.');
	r = sift_dns_query(longname, T_A, 50);
	CHECK(r && r->status == SIFT_DNS_TEMPFAIL);
	free(r);
	const char *bad[] = {"", "a..b", ".a",
			     "0123456789012345678901234567890123456789012345678901234567890123.x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = sift_dns_query(bad[i], T_A, 100);
		CHECK(r && r->status == SIFT_DNS_ERROR);
		free(r);
	}
	r = sift_dns_query("example.com", 0, 100);
	CHECK(r && r->status == SIFT_DNS_ERROR);
	free(r);
	r = sift_dns_query("example.com", 70000, 100);
	CHECK(r && r->status == SIFT_DNS_ERROR);
	free(r);
	sift_dns_shutdown();
	r = sift_dns_query("example.com", T_A, 100);
	CHECK(r && r->status == SIFT_DNS_TEMPFAIL);
	free(r);
}

/* ---- with the test server ------------------------------------------------ */

static int ip4cmp(const void *a, const void *b)
{
	return memcmp(*(const unsigned char *const *)a, *(const unsigned char *const *)b, 4);
}

static void test_records(void)
{
	struct sift_dns_result *r;
	char buf[256];

	r = sift_dns_query("a.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->rrtype, T_A);
	CHECK_INT(r->count, 2);
	CHECK(r->ttl > 0 && r->ttl <= 300);
	if (r->count == 2) {
		const unsigned char *v[2] = {r->rr[0], r->rr[1]};
		qsort(v, 2, sizeof(v[0]), ip4cmp);
		CHECK_INT(r->len[0], 4);
		CHECK_STR(inet_ntop(AF_INET, v[0], buf, sizeof(buf)), "192.0.2.1");
		CHECK_STR(inet_ntop(AF_INET, v[1], buf, sizeof(buf)), "192.0.2.2");
	}
	free(r);
	/* Cached the second time, same answer. */
	r = sift_dns_query("A.Sift.Test.", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 2);
	free(r);

	r = sift_dns_query("a6.sift.test", T_AAAA, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 1);
	if (r->count == 1) {
		CHECK_INT(r->len[0], 16);
		CHECK_STR(inet_ntop(AF_INET6, r->rr[0], buf, sizeof(buf)), "2001:db8::1");
	}
	free(r);

	r = sift_dns_query("txt.sift.test", T_TXT, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 1);
	if (r->count == 1) {
		CHECK_STR((const char *)r->rr[0], "v=spf1 ip4:192.0.2.0/24 -all");
		CHECK_INT(r->len[0], strlen("v=spf1 ip4:192.0.2.0/24 -all"));
	}
	free(r);
	/* From the answer cache: a block of its own, its pointers inside it,
	 * the seconds left as ttl. */
	r = sift_dns_query("TXT.sift.test.", T_TXT, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 1);
	CHECK(r->ttl > 0 && r->ttl <= 300);
	if (r->count == 1) {
		const char *lo = (const char *)r, *hi = lo + 4096;
		CHECK((const char *)r->rr > lo && (const char *)r->rr < hi);
		CHECK((const char *)r->len > lo && (const char *)r->len < hi);
		CHECK((const char *)r->rr[0] > lo && (const char *)r->rr[0] < hi);
		CHECK_STR((const char *)r->rr[0], "v=spf1 ip4:192.0.2.0/24 -all");
		CHECK_INT(r->len[0], strlen("v=spf1 ip4:192.0.2.0/24 -all"));
	}
	free(r);

	r = sift_dns_query("big.sift.test", T_TXT, 5000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 1);
	if (r->count == 1) {
		CHECK_INT(r->len[0], 2000);
		int bad = 0;
		for (size_t i = 0; i < r->len[0]; i++)
			if (r->rr[0][i] != (unsigned char)('0' + i % 10))
				bad++;
		CHECK_INT(bad, 0);
		CHECK_INT(r->rr[0][2000], 0);
	}
	free(r);

	r = sift_dns_query("sift.test", T_MX, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 2);
	unsigned seen = 0;
	for (size_t i = 0; i < r->count; i++) {
		unsigned pref;
		CHECK_INT(sift_dns_mx_name(r->rr[i], r->len[i], &pref, buf, sizeof(buf)), 0);
		if (pref == 10 && strcmp(buf, "mx1.sift.test") == 0)
			seen |= 1;
		else if (pref == 20 && strcmp(buf, "mx2.sift.test") == 0)
			seen |= 2;
		else
			fprintf(stderr, "unexpected MX %u %s\n", pref, buf);
	}
	CHECK_INT(seen, 3);
	free(r);

	r = sift_dns_query("1.2.0.192.in-addr.arpa", T_PTR, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 1);
	if (r->count == 1) {
		CHECK(sift_dns_name_from_wire(r->rr[0], r->len[0], buf, sizeof(buf)) > 0);
		CHECK_STR(buf, "a.sift.test");
	}
	free(r);

	/* CNAME followed for A; the CNAME itself when asked for. */
	r = sift_dns_query("cname.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 2);
	free(r);
	r = sift_dns_query("cname.sift.test", T_CNAME, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	CHECK_INT(r->count, 1);
	if (r->count == 1) {
		CHECK(sift_dns_name_from_wire(r->rr[0], r->len[0], buf, sizeof(buf)) > 0);
		CHECK_STR(buf, "a.sift.test");
	}
	free(r);

	r = sift_dns_query("nope.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_NXDOMAIN);
	CHECK_INT(r->count, 0);
	free(r);
	r = sift_dns_query("a.sift.test", T_MX, 3000);
	CHECK_INT(r->status, SIFT_DNS_NODATA);
	CHECK_INT(r->count, 0);
	free(r);
	r = sift_dns_query("a6.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_NODATA);
	free(r);
	r = sift_dns_query("sift.test", T_NS, 3000); /* no NS in the data: NODATA */
	CHECK_INT(r->status, SIFT_DNS_NODATA);
	free(r);
}

static void test_failures(void)
{
	struct sift_dns_result *r;
	long long t0 = sift_now_ms();
	r = sift_dns_query("slow.sift.test", T_A, 500);
	long long dt = sift_now_ms() - t0;
	CHECK_INT(r->status, SIFT_DNS_TEMPFAIL);
	CHECK(dt >= 450 && dt < 500 + 500);
	free(r);
	t0 = sift_now_ms();
	r = sift_dns_query("fail.sift.test", T_TXT, 5000);
	dt = sift_now_ms() - t0;
	CHECK_INT(r->status, SIFT_DNS_TEMPFAIL);
	CHECK(dt < 5000 + 500);
	free(r);
	/* The server is still usable after those. */
	r = sift_dns_query("t1.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	free(r);
}

/* Queries in parallel (sift_dns_start/sift_dns_wait): eight answers and a
 * slow one, collected against one deadline, cost the deadline once; a
 * query collected with no time left is TEMPFAIL; a cached answer comes at
 * once; a bad name is an ERROR from the start. */
static void test_parallel(void)
{
	struct sift_dns_pending *p[9];
	char name[64];
	long long t0 = sift_now_ms();
	p[0] = sift_dns_start("slow.sift.test", T_A);
	for (int i = 1; i < 9; i++) {
		snprintf(name, sizeof(name), "t%d.sift.test", 40 + i);
		p[i] = sift_dns_start(name, T_A);
	}
	long long deadline = t0 + 600;
	int ok = 0;
	for (int i = 8; i >= 0; i--) {
		long long left = deadline - sift_now_ms();
		struct sift_dns_result *r = sift_dns_wait(p[i], left > 0 ? (long)left : 0);
		if (i == 0)
			CHECK_INT(r->status, SIFT_DNS_TEMPFAIL);
		else
			ok += r->status == SIFT_DNS_OK;
		free(r);
	}
	long long dt = sift_now_ms() - t0;
	CHECK_INT(ok, 8);
	/* the deadline once, not 9 x 600 ms as when they waited in turn; the
	 * slow one may end sooner, once the resolver has given up on it */
	CHECK(dt < 2000);
	/* cached now: answered at start, without waiting */
	struct sift_dns_result *r = sift_dns_wait(sift_dns_start("t41.sift.test", T_A), 0);
	CHECK_INT(r->status, SIFT_DNS_OK);
	free(r);
	r = sift_dns_wait(sift_dns_start("slow.sift.test", T_TXT), 0);
	CHECK_INT(r->status, SIFT_DNS_TEMPFAIL);
	free(r);
	r = sift_dns_wait(sift_dns_start("bad..name", T_A), 100);
	CHECK_INT(r->status, SIFT_DNS_ERROR);
	free(r);
}

#define NTHREADS 16
#define NQUERIES 150

struct th_arg {
	unsigned seed;
	int errors, ok, tempfail;
};

static void *query_thread(void *p)
{
	struct th_arg *a = p;
	for (int i = 0; i < NQUERIES; i++) {
		unsigned n = (unsigned)rand_r(&a->seed) % 64;
		int kind = rand_r(&a->seed) % 10;
		char name[64];
		struct sift_dns_result *r;
		if (kind == 0) {
			/* Timeouts racing nothing: cancel path. */
			r = sift_dns_query("slow.sift.test", T_A, 20 + (long)(n % 30));
			if (r->status != SIFT_DNS_TEMPFAIL)
				a->errors++;
		} else if (kind == 1) {
			/* Timeouts racing answers: 1 ms deadlines. */
			snprintf(name, sizeof(name), "t%u.sift.test", n);
			r = sift_dns_query(name, T_A, 1);
			if (r->status == SIFT_DNS_OK) {
				if (r->count != 1 || r->len[0] != 4 || r->rr[0][3] != n)
					a->errors++;
			} else if (r->status != SIFT_DNS_TEMPFAIL) {
				a->errors++;
			}
		} else if (kind == 2) {
			r = sift_dns_query("txt.sift.test", T_TXT, 5000);
			if (r->status != SIFT_DNS_OK || r->count != 1 ||
			    strcmp((const char *)r->rr[0], "v=spf1 ip4:192.0.2.0/24 -all") != 0)
				a->errors++;
		} else {
			snprintf(name, sizeof(name), "t%u.sift.test", n);
			r = sift_dns_query(name, T_A, 5000);
			if (r->status != SIFT_DNS_OK || r->count != 1 || r->len[0] != 4 ||
			    r->rr[0][0] != 10 || r->rr[0][3] != n) {
				fprintf(stderr, "%s: status %d count %zu\n", name, r->status, r->count);
				a->errors++;
			} else {
				a->ok++;
			}
		}
		free(r);
	}
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[NTHREADS];
	struct th_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++) {
		args[i] = (struct th_arg){.seed = (unsigned)i * 7919u + 1};
		pthread_create(&th[i], NULL, query_thread, &args[i]);
	}
	int errors = 0, ok = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		errors += args[i].errors;
		ok += args[i].ok;
	}
	CHECK_INT(errors, 0);
	CHECK(ok > NTHREADS * NQUERIES / 2);
}

static void *slow_thread(void *p)
{
	struct sift_dns_result *r = sift_dns_query("slow.sift.test", T_TXT, 20000);
	*(int *)p = r->status;
	free(r);
	return NULL;
}

static void test_shutdown_wakes(void)
{
	pthread_t th[4];
	int st[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, slow_thread, &st[i]);
	struct timespec ts = {0, 200000000};
	nanosleep(&ts, NULL);
	long long t0 = sift_now_ms();
	sift_dns_shutdown();
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_INT(st[i], SIFT_DNS_TEMPFAIL);
	}
	CHECK(sift_now_ms() - t0 < 3000);
}

/* The answer cache holds at most 8 MB: of 3,000 answers of 3.5 KB (10.5
 * MB), asked twice, some come from the cache the second time, not all. */
static void test_cache_bound(void)
{
	enum { N = 3000 };
	static struct sift_dns_pending *p[N];
	char name[64];
	for (int pass = 0; pass < 2; pass++) {
		unsigned long long q0, t0, h0, q1, t1, h1;
		sift_dns_stats(&q0, &t0, &h0);
		int ok = 0;
		for (int i = 0; i < N; i++) {
			snprintf(name, sizeof(name), "fill%d.sift.test", i);
			p[i] = sift_dns_start(name, T_TXT);
		}
		for (int i = 0; i < N; i++) {
			struct sift_dns_result *r = sift_dns_wait(p[i], 20000);
			ok += r->status == SIFT_DNS_OK && r->count == 1 && r->len[0] == 14 * 250;
			free(r);
		}
		sift_dns_stats(&q1, &t1, &h1);
		CHECK_INT(ok, N);
		if (pass == 0)
			continue;
		/* 8 MB over entries of about 3.6 KB: about 2,300 */
		CHECK(h1 - h0 > 1500);
		CHECK(h1 - h0 < 2500);
	}
}

/* Queries that never get an answer, given up by their callers, do not
 * starve the others: 300 of them to distinct names (libunbound keeps
 * retrying each for a while), then the server still answers the rest at
 * once. */
static void test_many_unanswered(void)
{
	char name[64];
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "hang%d.sift.test", i);
		free(sift_dns_wait(sift_dns_start(name, T_A), 0));
	}
	int nodata = 0;
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "t%d.sift.test", i);
		struct sift_dns_result *r = sift_dns_query(name, T_MX, 2000);
		nodata += r->status == SIFT_DNS_NODATA;
		free(r);
	}
	CHECK_INT(nodata, 8);
}

int main(void)
{
	sift_log_init("test_dns", true, LOG_INFO);
	test_wire();
	test_init_errors();
	test_offline();

	const char *server = getenv("SIFT_DNS_SERVER");
	if (!server || !*server) {
		printf("SIFT_DNS_SERVER not set: server tests skipped (run tests/lib/test_dns.py)\n");
		return t_done();
	}
	char *err = NULL;
	if (sift_dns_init(server, 3000, &err) < 0) {
		fprintf(stderr, "sift_dns_init(%s): %s\n", server, err);
		free(err);
		return 1;
	}
	test_records();
	test_failures();
	test_parallel();
	test_threads();
	test_shutdown_wakes();
	CHECK_INT(sift_dns_init(server, 3000, &err), 0);
	test_cache_bound();
	test_many_unanswered();
	sift_dns_shutdown();
	/* Init again after shutdown works. */
	CHECK_INT(sift_dns_init(server, 3000, &err), 0);
	struct sift_dns_result *r = sift_dns_query("t5.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_OK);
	free(r);
	sift_dns_shutdown();
	/* The answer cache does not outlive the resolver. */
	r = sift_dns_query("t5.sift.test", T_A, 3000);
	CHECK_INT(r->status, SIFT_DNS_TEMPFAIL);
	free(r);
	return t_done();
}
