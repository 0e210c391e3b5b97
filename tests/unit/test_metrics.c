/*
 * test_metrics.c - the metrics' pieces that the daemon tests (suite
 * metrics) cannot reach exactly: JSON strings, the HTTP request parser and
 * credential check, the histogram's quantiles, the bounded symbol table,
 * the ring of recent messages, the per-minute history and the Prometheus
 * and JSON output of a known set of messages.
 */
#include <math.h>

#include "t.h"
#include "sift.h"
#include "metrics_int.h"

static char *json(const char *s)
{
	struct sift_buf b = {0};
	sift_json_str(&b, s);
	return (char *)sift_buf_str(&b);
}

static void test_json_str(void)
{
	char *j;
	CHECK_STR(j = json("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\u000a\\u0001\"");
	free(j);
	CHECK_STR(j = json("caf\xc3\xa9 \xe2\x82\xac"), "\"caf\xc3\xa9 \xe2\x82\xac\"");
	free(j);
	/* not UTF-8: Latin-1 octets, a truncated sequence, an overlong form, a surrogate */
	CHECK_STR(j = json("\xe9t\xe9"), "\"\\u00e9t\\u00e9\"");
	free(j);
	CHECK_STR(j = json("x\xe2\x82"), "\"x\\u00e2\\u0082\"");
	free(j);
	CHECK_STR(j = json("\xc0\xaf"), "\"\\u00c0\\u00af\"");
	free(j);
	CHECK_STR(j = json("\xed\xa0\x80"), "\"\\u00ed\\u00a0\\u0080\"");
	free(j);
	CHECK_STR(j = json(NULL), "\"\"");
	free(j);
}

static int parse(const char *head, struct sift_http_req *r)
{
	return sift_http_parse(head, strlen(head), r);
}

static void test_http_parse(void)
{
	struct sift_http_req r;
	CHECK_INT(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r), 0);
	CHECK_STR(r.path, "/metrics");
	CHECK(!r.head && !r.auth[0]);
	CHECK_INT(parse("HEAD /status.json?x=1 HTTP/1.0\n\n", &r), 0);
	CHECK_STR(r.path, "/status.json");
	CHECK(r.head);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: h\r\nauthorization:  Bearer abc \r\n\r\n", &r), 0);
	CHECK_STR(r.auth, "Bearer abc");
	CHECK(r.has_host && !r.has_origin);
	CHECK_STR(r.host, "h");
	CHECK_INT(parse("GET / HTTP/1.1\r\nhost:\t127.0.0.1:9891 \r\nOrigin: http://x.example\r\n\r\n", &r),
		  0);
	CHECK_STR(r.host, "127.0.0.1:9891");
	CHECK(r.has_origin);
	CHECK_STR(r.origin, "http://x.example");
	CHECK_INT(parse("GET / HTTP/1.1\r\n\r\n", &r), 400);			   /* HTTP/1.1 without Host */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", &r), 400); /* two */
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: a\r\nOrigin: a\r\nOrigin: a\r\n\r\n", &r), 400);
	CHECK_INT(parse("GET / HTTP/1.0\r\n\r\n", &r), 0); /* HTTP/1.0 may omit it */
	CHECK(!r.has_host);
	CHECK_INT(parse("POST / HTTP/1.1\r\n\r\n", &r), 405);
	CHECK_INT(parse("GET / HTTP/2.0\r\n\r\n", &r), 505);
	CHECK_INT(parse("GET / FTP/1.0\r\n\r\n", &r), 400);
	CHECK_INT(parse("GET x HTTP/1.1\r\n\r\n", &r), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\n folded\r\n\r\n", &r), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", &r), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", &r), 400);
	CHECK_INT(parse("GET / HTTP/1.1\r\nHost: x\r\n", &r), 400); /* no empty line */
	CHECK_INT(sift_http_parse("GET / HTTP/1.1\r\n\0\r\n\r\n", 20, &r), 400);
	struct sift_buf b = {0};
	sift_buf_adds(&b, "GET /");
	for (int i = 0; i < 300; i++)
		sift_buf_adds(&b, "a");
	sift_buf_adds(&b, " HTTP/1.1\r\n\r\n");
	CHECK_INT(parse(sift_buf_str(&b), &r), 414);
	b.len = 0;
	sift_buf_adds(&b, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < SIFT_HTTP_MAX_HEADERS + 1; i++)
		sift_buf_printf(&b, "X-%d: v\r\n", i);
	sift_buf_adds(&b, "\r\n");
	CHECK_INT(parse(sift_buf_str(&b), &r), 431);
	sift_buf_free(&b);
}

static void test_http_auth(void)
{
	const char *file = "# comment\ntoken = s3cret\n  basic = prom:pa:ss w0rd  \nbasic=\n";
	CHECK(sift_http_auth_ok(file, "Bearer s3cret"));
	CHECK(sift_http_auth_ok(file, "bearer   s3cret"));
	CHECK(!sift_http_auth_ok(file, "Bearer s3cre"));
	CHECK(!sift_http_auth_ok(file, "Bearer s3cretx"));
	CHECK(!sift_http_auth_ok(file, "Bearer "));
	CHECK(!sift_http_auth_ok(file, "Basic s3cret"));
	CHECK(sift_http_auth_ok(file, "Basic cHJvbTpwYTpzcyB3MHJk")); /* prom:pa:ss w0rd */
	CHECK(!sift_http_auth_ok(file, "Basic cHJvbTpwYTpzcw=="));    /* prom:pa:ss */
	CHECK(!sift_http_auth_ok(file, "Basic !!!"));
	CHECK(!sift_http_auth_ok(file, "Digest s3cret"));
	CHECK(!sift_http_auth_ok(NULL, "Bearer s3cret"));
	CHECK(!sift_http_auth_ok("token =\n", "Bearer "));
}

static void test_http_host(void)
{
	const char *const none[] = {NULL};
	const char *const names[] = {"Mail.Example.org", "metrics.example.", NULL};
	CHECK(sift_http_host_allowed("127.0.0.1", none));
	CHECK(sift_http_host_allowed("127.0.0.1:9891", NULL));
	CHECK(sift_http_host_allowed("192.0.2.7:", none));
	CHECK(sift_http_host_allowed("[::1]:9891", none));
	CHECK(sift_http_host_allowed("[2001:db8::1]", none));
	CHECK(sift_http_host_allowed("localhost", none));
	CHECK(sift_http_host_allowed("LocalHost.:9891", none));
	CHECK(!sift_http_host_allowed("attacker.example:9891", none));
	CHECK(!sift_http_host_allowed("attacker.example", names));
	CHECK(!sift_http_host_allowed("", none));
	CHECK(!sift_http_host_allowed(NULL, none));
	CHECK(!sift_http_host_allowed("127.0.0.1.attacker.example", none));
	CHECK(!sift_http_host_allowed("localhost.attacker.example", none));
	CHECK(!sift_http_host_allowed("127.1", none));
	CHECK(!sift_http_host_allowed("::1", none));
	CHECK(!sift_http_host_allowed("[::1", none));
	CHECK(!sift_http_host_allowed("[::1]x", none));
	CHECK(!sift_http_host_allowed("[attacker.example]", none));
	CHECK(!sift_http_host_allowed("127.0.0.1:80x", none));
	CHECK(!sift_http_host_allowed("127.0.0.1:1:2", none));
	CHECK(!sift_http_host_allowed("mail.example.org", none));
	CHECK(sift_http_host_allowed("mail.example.org", names));
	CHECK(sift_http_host_allowed("MAIL.example.ORG.:9891", names));
	CHECK(sift_http_host_allowed("metrics.example", names));
	CHECK(!sift_http_host_allowed("x.mail.example.org", names));
	CHECK(!sift_http_host_allowed("mail.example.or", names));
	CHECK(sift_http_origin_allowed("http://127.0.0.1:9891", none));
	CHECK(sift_http_origin_allowed("https://[::1]", none));
	CHECK(sift_http_origin_allowed("http://localhost:9891", none));
	CHECK(sift_http_origin_allowed("https://mail.example.org", names));
	CHECK(!sift_http_origin_allowed("http://attacker.example:9891", names));
	CHECK(!sift_http_origin_allowed("null", none));
	CHECK(!sift_http_origin_allowed("", none));
	CHECK(!sift_http_origin_allowed("127.0.0.1", none));
	CHECK(!sift_http_origin_allowed("://127.0.0.1", none));
	CHECK(!sift_http_origin_allowed("http://127.0.0.1@attacker.example", none));
	CHECK(sift_http_origin_allowed("HTTPS://mail.example.org", names));
	CHECK(!sift_http_origin_allowed("hattackerttp://mail.example.org", names));
	CHECK(!sift_http_origin_allowed("ftp://127.0.0.1", none));
	CHECK(!sift_http_origin_allowed(NULL, none));
	/* an origin has no path: what follows the host is not a port */
	CHECK(!sift_http_origin_allowed("http://mail.example.org/:9attacker", names));
	CHECK(!sift_http_origin_allowed("http://mail.example.org.://:9attacker", names));
	CHECK(!sift_http_origin_allowed("http://127.0.0.1/", none));
	CHECK(!sift_http_origin_allowed("http://127.0.0.1?x", none));
}

static void test_hist(void)
{
	struct mhist h;
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 98; i++)
		metrics_hist_observe(&h, 2000000); /* 2 ms: the 2.5 ms bucket */
	metrics_hist_observe(&h, 300000000);	   /* 0.3 s */
	metrics_hist_observe(&h, 60000000000LL);   /* 60 s: +Inf */
	struct mhist_view v;
	metrics_hist_read(&h, &v);
	CHECK_INT(v.count, 100);
	CHECK(fabs(v.sum - (98 * 0.002 + 0.3 + 60)) < 1e-9);
	double p50 = metrics_hist_quantile(&v, 0.5), p99 = metrics_hist_quantile(&v, 0.99);
	CHECK(p50 > 0.001 && p50 <= 0.0025);
	CHECK(p99 > 0.25 && p99 <= 0.5);
	CHECK(metrics_hist_quantile(&v, 1.0) == 10);
}

/* One message (or request) through sift_metrics_record. */
static void record(struct sift_gen *g, const char *action, const char *qid, const char *const *syms,
		   int nsyms)
{
	struct sift_ctx *ctx = sift_ctx_new(g, SIFT_FILTERD);
	sift_ctx_msg_begin(ctx);
	sift_ctx_set(ctx, SIFT_I_QUEUE_ID, qid);
	sift_ctx_set(ctx, SIFT_I_SENDER, "a\"b@example.test");
	sift_ctx_add_rcpt(ctx, "c@example.test");
	for (int i = 0; i < nsyms; i++)
		sift_host_table.symbol(ctx, syms[i], 1.0, NULL);
	sift_metrics_record(ctx, action);
	sift_ctx_free(ctx);
}

static void test_record(void)
{
	sift_metrics_init(SIFT_FILTERD);
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	char *err = NULL;
	if (sift_config_set(cfg, "plugin_directory = /nonexistent", "test", &err) < 0 ||
	    sift_config_set(cfg, "quarantine_directory =", "test", &err) < 0)
		abort();
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	CHECK(g != NULL);
	if (!g)
		return;
	const char *const two[] = {"GTUBE", "BAYES_00"};
	for (int i = 0; i < 60; i++) {
		char qid[16];
		snprintf(qid, sizeof(qid), "Q%d", i);
		record(g, i % 3 ? "accept" : "reject", qid, two, i < 5 ? 2 : 0);
	}
	/* distinct symbols beyond the table: counted as dropped */
	for (int i = 0; i < SIFT_METRICS_MAX_SYMBOLS + 100; i++) {
		char name[32];
		snprintf(name, sizeof(name), "SYM_%d", i);
		const char *one[] = {name};
		record(g, "discard", "D", one, 1);
	}
	CHECK(atomic_load(&M.syms_dropped) >= 100);
	struct msym_view top[3];
	CHECK_INT(metrics_top_symbols(top, 3), 3);
	CHECK_STR(top[0].name, "BAYES_00"); /* 5 hits each, then by name */
	CHECK_INT(top[0].hits, 5);
	CHECK_STR(top[1].name, "GTUBE");

	struct mrecent *rec = sift_malloc(METRICS_RECENT * sizeof(*rec));
	int n = metrics_recent(rec, METRICS_RECENT);
	CHECK_INT(n, METRICS_RECENT);
	CHECK(rec[0].seq > rec[1].seq && rec[0].action == SIFT_MA_DISCARD);
	CHECK_STR(rec[0].from, "a\"b@example.test");
	CHECK_STR(rec[0].to[0], "c@example.test");
	free(rec);

	struct mpoint pts[METRICS_HISTORY];
	double now = metrics_wall_now();
	CHECK_INT(metrics_history(now, pts), METRICS_HISTORY);
	unsigned long long acc = 0, rej = 0, dis = 0;
	for (int i = 0; i < METRICS_HISTORY; i++) {
		acc += pts[i].c[SIFT_MA_ACCEPT];
		rej += pts[i].c[SIFT_MA_REJECT];
		dis += pts[i].c[SIFT_MA_DISCARD];
	}
	CHECK_INT(acc, 40);
	CHECK_INT(rej, 20);
	CHECK_INT(dis, SIFT_METRICS_MAX_SYMBOLS + 100);
	CHECK(pts[METRICS_HISTORY - 1].t <= now && now < pts[METRICS_HISTORY - 1].t + 60);
	/* an hour later, nothing is left in the window */
	metrics_history(now + 3700, pts);
	acc = 0;
	for (int i = 0; i < METRICS_HISTORY; i++)
		acc += pts[i].c[SIFT_MA_ACCEPT];
	CHECK_INT(acc, 0);

	struct sift_buf b = {0};
	sift_metrics_prometheus(&b, NULL, 2);
	const char *p = sift_buf_str(&b);
	CHECK(strstr(p, "sift_filterd_messages_total{profile=\"inbound\",action=\"accept\"} 40\n") != NULL);
	CHECK(strstr(p, "sift_filterd_messages_total{profile=\"inbound\",action=\"reject\"} 20\n") != NULL);
	CHECK(strstr(p, "sift_filterd_symbol_hits_total{symbol=\"GTUBE\"} 5\n") != NULL);
	CHECK(strstr(p, "sift_filterd_symbol_hits_total{symbol=\"SYM_1\"}") == NULL); /* top 2 only */
	b.len = 0;
	sift_metrics_status_json(&b, NULL);
	p = sift_buf_str(&b);
	CHECK(strstr(p, "\"actions\":{\"accept\":40,\"reject\":20,\"discard\":1124}") != NULL);
	CHECK(strstr(p, "\"from\":\"a\\\"b@example.test\"") != NULL);
	CHECK(strstr(p, "\"quarantine\":null") != NULL);
	sift_buf_free(&b);

	/* a long SMTPUTF8 address is cut before a character, not inside one */
	char big[METRICS_ADDR_LEN + 16];
	size_t bl = 0;
	while (bl + 2 < sizeof(big) - 1) {
		big[bl++] = (char)0xc3; /* U+00E9 */
		big[bl++] = (char)0xa9;
	}
	big[bl] = 0;
	struct sift_ctx *uctx = sift_ctx_new(g, SIFT_FILTERD);
	sift_ctx_msg_begin(uctx);
	sift_ctx_set(uctx, SIFT_I_SENDER, big);
	sift_metrics_record(uctx, "accept");
	sift_ctx_free(uctx);
	rec = sift_malloc(METRICS_RECENT * sizeof(*rec));
	CHECK(metrics_recent(rec, METRICS_RECENT) > 0);
	size_t fl = strlen(rec[0].from);
	CHECK(fl > METRICS_ADDR_LEN - 4 && fl < METRICS_ADDR_LEN);
	CHECK(fl % 2 == 0 && (unsigned char)rec[0].from[fl - 1] == 0xa9);
	free(rec);
	sift_gen_unref(g);
}

int main(void)
{
	sift_log_init("test_metrics", true, LOG_CRIT);
	test_json_str();
	test_http_parse();
	test_http_host();
	test_http_auth();
	test_hist();
	test_record();
	return t_done();
}
