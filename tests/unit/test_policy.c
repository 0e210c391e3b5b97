/*
 * test_policy.c - unit tests for the policy protocol codec (lib/policy.c).
 *
 * Table-driven: every case is an input and the expected outcome (the
 * attributes of the first request, or an error message). Each case is fed
 * whole, split at every byte boundary into two feeds, and one byte at a
 * time; all three must give the same outcome. Further tests cover
 * several requests in one buffer, the line and attribute limits, error
 * stickiness and reset. Single-threaded.
 */
#include <stdlib.h>
#include <string.h>

#include "sift.h"
#include "t.h"

struct tcase {
	const char *name;
	const char *in;
	size_t len;	   /* 0 = strlen(in) */
	int rc;		   /* 1 complete, 0 incomplete, -1 error */
	const char *error; /* substring of p->error for rc -1 */
	size_t used;	   /* bytes consumed for rc 1 (0 = all) */
	const char *attrs; /* expected "name=value|name=value" (first values) */
	size_t n;	   /* expected attribute count (with duplicates) */
};

static const struct tcase cases[] = {
	{"simple", "request=smtpd_access_policy\nprotocol_state=RCPT\n\n", 0, 1, NULL, 0,
	 "request=smtpd_access_policy|protocol_state=RCPT", 2},
	{"crlf", "request=smtpd_access_policy\r\nsender=a@b\r\n\r\n", 0, 1, NULL, 0,
	 "request=smtpd_access_policy|sender=a@b", 2},
	{"mixed line ends", "a=1\r\nb=2\n\r\n", 0, 1, NULL, 0, "a=1|b=2", 2},
	{"empty value", "sender=\nsasl_username=\n\n", 0, 1, NULL, 0, "sender=|sasl_username=", 2},
	{"value with =", "a=b=c\n\n", 0, 1, NULL, 0, "a=b=c", 1},
	{"value with spaces", "ccert_subject= x y \n\n", 0, 1, NULL, 0, "ccert_subject= x y ", 1},
	{"value with CR inside", "a=x\ry\n\n", 0, 1, NULL, 0, "a=x\ry", 1},
	{"duplicates keep first", "a=1\nb=2\na=3\n\n", 0, 1, NULL, 0, "a=1|b=2", 3},
	{"trailing data", "a=1\n\nb=2\n", 0, 1, NULL, 5, "a=1", 1},
	{"incomplete", "a=1\nb=", 0, 0, NULL, 0, NULL, 1},
	{"incomplete CR", "a=1\r", 0, 0, NULL, 0, NULL, 0},
	{"no equals", "a=1\nbogus\n\n", 0, -1, "'='", 0, NULL, 0},
	{"empty name", "=x\n\n", 0, -1, "empty attribute name", 0, NULL, 0},
	{"empty request", "\n", 0, -1, "empty request", 0, NULL, 0},
	{"empty request CRLF", "\r\n", 0, -1, "empty request", 0, NULL, 0},
	{"NUL in value", "a=x\0y\n\n", 8, -1, "NUL", 0, NULL, 0},
	{"NUL in name", "a\0b=x\n\n", 7, -1, "NUL", 0, NULL, 0},
	{"HTTP garbage", "GET / HTTP/1.0\r\n\r\n", 0, -1, "'='", 0, NULL, 0},
};

/* Feeds in pieces of the given sizes (split = 0: whole; split = k: two
 * pieces at k; split = SIZE_MAX: one byte at a time) and checks the case. */
static void run_case(const struct tcase *c, size_t split, const char *how)
{
	size_t len = c->len ? c->len : strlen(c->in);
	struct sift_policy_parser *p = malloc(sizeof(*p));
	sift_policy_parser_init(p);
	size_t pos = 0, used;
	int rc = 0;
	while (pos < len) {
		size_t piece = len - pos;
		if (split == (size_t)-1)
			piece = 1;
		else if (split > 0 && pos < split)
			piece = split - pos;
		rc = sift_policy_feed(p, c->in + pos, piece, &used);
		if (rc == 0 && used != piece) {
			fprintf(stderr, "%s (%s): rc 0 but used %zu of %zu\n", c->name, how, used, piece);
			CHECK(used == piece);
		}
		pos += used;
		if (rc != 0)
			break;
	}
	if (rc != c->rc)
		fprintf(stderr, "case %s (%s): rc %d, want %d (error %s)\n", c->name, how, rc, c->rc,
			p->error);
	CHECK_INT(rc, c->rc);
	if (rc == -1 && c->error) {
		if (!strstr(p->error, c->error))
			fprintf(stderr, "case %s (%s): error \"%s\"\n", c->name, how, p->error);
		CHECK(strstr(p->error, c->error) != NULL);
	}
	if (rc == 1)
		CHECK_INT(pos, c->used ? c->used : len);
	if (rc >= 0)
		CHECK_INT(p->req.n, c->n);
	if (rc == 1 && c->attrs) {
		char *want = strdup(c->attrs), *save = NULL;
		for (char *t = strtok_r(want, "|", &save); t; t = strtok_r(NULL, "|", &save)) {
			char *eq = strchr(t, '=');
			*eq = 0;
			CHECK_STR(sift_policy_get(&p->req, t), eq + 1);
		}
		free(want);
	}
	sift_policy_parser_reset(p);
	free(p);
}

static void test_table(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		run_case(c, 0, "whole");
		run_case(c, (size_t)-1, "bytewise");
		for (size_t k = 1; k < len; k++)
			run_case(c, k, "split");
	}
}

static void test_get_missing(void)
{
	struct sift_policy_parser p;
	size_t used;
	sift_policy_parser_init(&p);
	const char *in = "client_address=192.0.2.1\nclient_name=unknown\n\n";
	CHECK_INT(sift_policy_feed(&p, in, strlen(in), &used), 1);
	CHECK_STR(sift_policy_get(&p.req, "client_address"), "192.0.2.1");
	CHECK_STR(sift_policy_get(&p.req, "client"), NULL);
	CHECK_STR(sift_policy_get(&p.req, "client_address_x"), NULL);
	CHECK_STR(sift_policy_get(&p.req, ""), NULL);
	sift_policy_parser_reset(&p);
	CHECK_STR(sift_policy_get(&p.req, "client_address"), NULL);
}

/* Several requests in one buffer, as a pipelining client would send. */
static void test_sequence(void)
{
	struct sift_policy_parser p;
	const char *in = "a=1\n\nb=2\r\nc=3\r\n\r\nd=4\n\n";
	size_t len = strlen(in), pos = 0, used;
	const char *want[] = {"a", "b", "d"};
	sift_policy_parser_init(&p);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(sift_policy_feed(&p, in + pos, len - pos, &used), 1);
		pos += used;
		CHECK(sift_policy_get(&p.req, want[i]) != NULL);
		CHECK_INT(p.req.n, i == 1 ? 2 : 1);
		sift_policy_parser_reset(&p);
	}
	CHECK_INT(pos, len);
	CHECK_INT(sift_policy_feed(&p, "", 0, &used), 0);
	CHECK_INT(used, 0);
}

static void test_line_limit(void)
{
	struct sift_policy_parser *p = malloc(sizeof(*p));
	size_t used;
	char *buf = malloc(1 << 20);

	/* Exactly SIFT_POLICY_MAX_LINE bytes: accepted, fed whole and split. */
	memset(buf, 'x', SIFT_POLICY_MAX_LINE);
	buf[0] = 'a';
	buf[1] = '=';
	memcpy(buf + SIFT_POLICY_MAX_LINE, "\n\n", 2);
	sift_policy_parser_init(p);
	CHECK_INT(sift_policy_feed(p, buf, SIFT_POLICY_MAX_LINE + 2, &used), 1);
	CHECK_INT(strlen(sift_policy_get(&p->req, "a")), SIFT_POLICY_MAX_LINE - 2);
	sift_policy_parser_reset(p);
	CHECK_INT(sift_policy_feed(p, buf, 1000, &used), 0);
	CHECK_INT(sift_policy_feed(p, buf + 1000, SIFT_POLICY_MAX_LINE + 2 - 1000, &used), 1);
	CHECK_INT(strlen(sift_policy_get(&p->req, "a")), SIFT_POLICY_MAX_LINE - 2);
	sift_policy_parser_reset(p);

	/* One byte more: rejected, whole or split. */
	memset(buf, 'x', SIFT_POLICY_MAX_LINE + 1);
	buf[1] = '=';
	memcpy(buf + SIFT_POLICY_MAX_LINE + 1, "\n\n", 2);
	CHECK_INT(sift_policy_feed(p, buf, SIFT_POLICY_MAX_LINE + 3, &used), -1);
	CHECK(strstr(p->error, "too long") != NULL);
	sift_policy_parser_reset(p);
	CHECK_INT(sift_policy_feed(p, buf, SIFT_POLICY_MAX_LINE, &used), 0);
	CHECK_INT(sift_policy_feed(p, buf + SIFT_POLICY_MAX_LINE, 3, &used), -1);
	sift_policy_parser_reset(p);

	/* A 1 MB line without a newline: rejected as soon as the limit is hit,
	 * without consuming (buffering) the rest. */
	memset(buf, 'y', 1 << 20);
	CHECK_INT(sift_policy_feed(p, buf, 1 << 20, &used), -1);
	CHECK(used <= SIFT_POLICY_MAX_LINE);
	sift_policy_parser_reset(p);
	size_t total = 0;
	int rc = 0;
	while (rc == 0 && total < (1 << 20)) {
		rc = sift_policy_feed(p, buf + total, 1000, &used);
		total += used;
	}
	CHECK_INT(rc, -1);
	CHECK(total <= SIFT_POLICY_MAX_LINE);
	sift_policy_parser_reset(p);

	/* A line split so that only the CR would pass the limit: CR counts. */
	memset(buf, 'z', SIFT_POLICY_MAX_LINE);
	buf[1] = '=';
	memcpy(buf + SIFT_POLICY_MAX_LINE, "\r\n\n", 3);
	CHECK_INT(sift_policy_feed(p, buf, SIFT_POLICY_MAX_LINE + 3, &used), -1);
	sift_policy_parser_reset(p);
	free(buf);
	free(p);
}

static void test_attr_limit(void)
{
	struct sift_policy_parser *p = malloc(sizeof(*p));
	struct sift_buf b = {0};
	size_t used;
	for (int i = 0; i < SIFT_POLICY_MAX_ATTRS; i++)
		sift_buf_printf(&b, "attr%d=%d\n", i, i);
	sift_buf_adds(&b, "\n");
	sift_policy_parser_init(p);
	CHECK_INT(sift_policy_feed(p, b.data, b.len, &used), 1);
	CHECK_INT(p->req.n, SIFT_POLICY_MAX_ATTRS);
	CHECK_STR(sift_policy_get(&p->req, "attr127"), "127");
	sift_policy_parser_reset(p);

	b.len--; /* one more attribute instead of the end */
	sift_buf_adds(&b, "x=1\n\n");
	CHECK_INT(sift_policy_feed(p, b.data, b.len, &used), -1);
	CHECK(strstr(p->error, "too many") != NULL);
	sift_policy_parser_reset(p);

	/* Duplicates count too. */
	sift_buf_free(&b);
	for (int i = 0; i <= SIFT_POLICY_MAX_ATTRS; i++)
		sift_buf_adds(&b, "a=1\n");
	sift_buf_adds(&b, "\n");
	CHECK_INT(sift_policy_feed(p, b.data, b.len, &used), -1);
	sift_policy_parser_reset(p);
	sift_buf_free(&b);

	/* The lines of a request add up to 64 KB at most (each counted with
	 * its "\n"): 16 of 4 KB pass, with the end of the request; one more
	 * line does not. */
	char *v = malloc(4093 + 1);
	memset(v, 'v', 4093);
	v[4093] = 0;
	for (int i = 0; i < 16; i++)
		sift_buf_printf(&b, "%c=%s\n", 'a' + i, v);
	sift_buf_adds(&b, "\n");
	CHECK_INT(sift_policy_feed(p, b.data, b.len, &used), 1);
	CHECK_INT(p->req.n, 16);
	sift_policy_parser_reset(p);
	b.len -= 1;
	sift_buf_adds(&b, "x=1\n\n");
	CHECK_INT(sift_policy_feed(p, b.data, b.len, &used), -1);
	CHECK(strstr(p->error, "request too large") != NULL);
	sift_policy_parser_reset(p);
	sift_buf_free(&b);
	free(v);
	free(p);
}

static void test_sticky_error(void)
{
	struct sift_policy_parser p;
	size_t used;
	sift_policy_parser_init(&p);
	CHECK_INT(sift_policy_feed(&p, "junk\n", 5, &used), -1);
	CHECK(p.error[0] != 0);
	CHECK_INT(sift_policy_feed(&p, "a=1\n\n", 5, &used), -1);
	sift_policy_parser_reset(&p);
	CHECK_INT(p.error[0], 0);
	CHECK_INT(sift_policy_feed(&p, "a=1\n\n", 5, &used), 1);
	sift_policy_parser_reset(&p);
	/* Reset drops a partial line. */
	CHECK_INT(sift_policy_feed(&p, "a=1\nb=2", 7, &used), 0);
	sift_policy_parser_reset(&p);
	CHECK_INT(sift_policy_feed(&p, "\nc=3\n\n", 6, &used), -1);
	sift_policy_parser_reset(&p);
}

/* A realistic request, as Postfix 3.7 sends it, fed in random pieces. */
static void test_realistic(void)
{
	const char *req = "request=smtpd_access_policy\n"
			  "protocol_state=RCPT\n"
			  "protocol_name=ESMTP\n"
			  "client_address=192.0.2.10\n"
			  "client_name=mail.example.net\n"
			  "client_port=50123\n"
			  "reverse_client_name=mail.example.net\n"
			  "server_address=192.0.2.1\n"
			  "server_port=25\n"
			  "helo_name=mail.example.net\n"
			  "sender=alice@example.net\n"
			  "recipient=bob@example.org\n"
			  "recipient_count=0\n"
			  "queue_id=\n"
			  "instance=1a2b.65f0c1d2.3e4f5.0\n"
			  "size=1234\n"
			  "etrn_domain=\n"
			  "stress=\n"
			  "sasl_method=\n"
			  "sasl_username=\n"
			  "sasl_sender=\n"
			  "ccert_subject=\n"
			  "ccert_issuer=\n"
			  "ccert_fingerprint=\n"
			  "ccert_pubkey_fingerprint=\n"
			  "encryption_protocol=TLSv1.3\n"
			  "encryption_cipher=TLS_AES_256_GCM_SHA384\n"
			  "encryption_keysize=256\n"
			  "policy_context=\n"
			  "\n";
	size_t len = strlen(req);
	unsigned seed = 12345;
	for (int round = 0; round < 200; round++) {
		struct sift_policy_parser p;
		sift_policy_parser_init(&p);
		size_t pos = 0, used;
		int rc = 0;
		while (pos < len && rc == 0) {
			seed = seed * 1103515245u + 12345u;
			size_t piece = 1 + (seed >> 16) % 64;
			if (piece > len - pos)
				piece = len - pos;
			rc = sift_policy_feed(&p, req + pos, piece, &used);
			pos += used;
		}
		CHECK_INT(rc, 1);
		CHECK_INT(pos, len);
		CHECK_INT(p.req.n, 29);
		CHECK_STR(sift_policy_get(&p.req, "recipient"), "bob@example.org");
		CHECK_STR(sift_policy_get(&p.req, "queue_id"), "");
		CHECK_STR(sift_policy_get(&p.req, "policy_context"), "");
		sift_policy_parser_reset(&p);
	}
}

int main(void)
{
	test_table();
	test_get_missing();
	test_sequence();
	test_line_limit();
	test_attr_limit();
	test_sticky_error();
	test_realistic();
	return t_done();
}
