/*
 * test_sign.c - signers (struct sift_plugin.sign): they run at end of
 * message after every plugin's eom, wherever they stand in the chain and
 * in the chain's order among themselves, and while they run the host
 * shows the header as the MTA will have it once the edits queued before
 * are applied (host->header_count, host->header, host->message_size,
 * host->message_read): a change and a delete by name and index, an insert
 * at its index, a change of an absent header (added), a delete of an
 * absent one (nothing), an add; a later signer sees an earlier one's
 * signature; outside the sign hooks the header is the one received.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static const struct sift_host *host;
static char trace[512];
static char seen[2][1024];  /* what each signer saw: header_count/header */
static char block[2][1024]; /* and message_read */
static size_t eom_count;

static void note(const char *what)
{
	size_t l = strlen(trace);
	snprintf(trace + l, sizeof(trace) - l, "%s%s", l ? " " : "", what);
}

static int sg_init(const struct sift_host *h, void *conf, char **err_r)
{
	(void)conf;
	(void)err_r;
	host = h;
	return 0;
}

static enum sift_verdict sign_as(struct sift_ctx *ctx, int k)
{
	note(k ? "sign:signer2" : "sign:signer1");
	size_t l = 0;
	for (size_t i = 0; i < host->header_count(ctx); i++) {
		const struct sift_header *h = host->header(ctx, i);
		l += (size_t)snprintf(seen[k] + l, sizeof(seen[k]) - l, "%s:%s|", h->name, h->value);
	}
	long long n = host->message_size(ctx);
	CHECK(n > 0 && n < (long long)sizeof(block[k]));
	long long off = 0;
	long r;
	while (off < n && (r = host->message_read(ctx, off, block[k] + off, 7)) > 0) /* small pieces */
		off += r;
	CHECK(off == n);
	CHECK(host->message_read(ctx, n, block[k], 1) == 0);
	block[k][n < (long long)sizeof(block[k]) ? n : 0] = 0;
	host->header_insert(ctx, 0, "X-Signed", k ? "2" : "1");
	return SIFT_DUNNO;
}

static enum sift_verdict s1_eom(struct sift_ctx *ctx)
{
	(void)ctx;
	note("eom:signer1");
	return SIFT_DUNNO;
}
static enum sift_verdict s2_eom(struct sift_ctx *ctx)
{
	(void)ctx;
	note("eom:signer2");
	return SIFT_DUNNO;
}
static enum sift_verdict s1_sign(struct sift_ctx *ctx)
{
	return sign_as(ctx, 0);
}
static enum sift_verdict s2_sign(struct sift_ctx *ctx)
{
	return sign_as(ctx, 1);
}

static enum sift_verdict ed_eom(struct sift_ctx *ctx)
{
	note("eom:editor");
	eom_count = host->header_count(ctx); /* the header as received */
	host->header_change(ctx, "Subject", 1, "[tag] hello");
	host->header_insert(ctx, 1, "X-Ins", "i");
	host->header_change(ctx, "x-gone", 1, NULL);
	host->header_change(ctx, "X-Absent", 1, "new");
	host->header_change(ctx, "X-Absent2", 1, NULL);
	host->header_add(ctx, "X-Add", "a\r\n\tfolded");
	host->header_change(ctx, "X-Dup", 2, "second");
	return SIFT_DUNNO;
}

static const struct sift_plugin signer1 = {
	SIFT_PLUGIN_INIT,
	.name = "signer1",
	.description = "test signer",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS,
	.flags = SIFT_F_ALWAYS_RUN,
	.init = sg_init,
	.eom = s1_eom,
	.sign = s1_sign,
};
static const struct sift_plugin signer2 = {
	SIFT_PLUGIN_INIT,
	.name = "signer2",
	.description = "test signer",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS,
	.flags = SIFT_F_ALWAYS_RUN,
	.init = sg_init,
	.eom = s2_eom,
	.sign = s2_sign,
};
static const struct sift_plugin editor = {
	SIFT_PLUGIN_INIT,
	.name = "editor",
	.description = "test header editor",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_CHGHDRS,
	.init = sg_init,
	.eom = ed_eom,
};

int main(void)
{
	sift_log_init("test_sign", true, LOG_ERR);
	sift_plugin_builtin(&signer1);
	sift_plugin_builtin(&signer2);
	sift_plugin_builtin(&editor);
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	char *err = NULL;
	CHECK(sift_config_set(cfg, "plugin_directory=/nonexistent", "test", &err) == 0);
	CHECK(sift_config_set(cfg, "inbound_plugins = signer1 editor signer2", "test", &err) == 0);
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	if (!g) {
		fprintf(stderr, "gen: %s\n", err);
		CHECK(g != NULL);
		return t_done();
	}
	struct sift_session *s = sift_session_new(g, SIFT_FILTERD, NULL, NULL);
	CHECK(sift_session_connect(s, "[192.0.2.1]", "192.0.2.1", "25") == SIFT_DUNNO);
	CHECK(sift_session_mail(s, "<a@example.org>") == SIFT_DUNNO);
	CHECK(sift_session_rcpt(s, "<b@example.com>") == SIFT_DUNNO);
	CHECK(sift_session_data(s) == SIFT_DUNNO);
	CHECK(sift_session_header(s, "From", " a@example.org") == SIFT_DUNNO);
	CHECK(sift_session_header(s, "Subject", " hello") == SIFT_DUNNO);
	CHECK(sift_session_header(s, "X-Gone", " g") == SIFT_DUNNO);
	CHECK(sift_session_header(s, "X-Dup", " d1") == SIFT_DUNNO);
	CHECK(sift_session_header(s, "X-Dup", " d2") == SIFT_DUNNO);
	CHECK(sift_session_eoh(s) == SIFT_DUNNO);
	CHECK(sift_session_body(s, "Body\r\n", 6) == SIFT_DUNNO);
	CHECK(sift_session_eom(s) == SIFT_DUNNO);

	CHECK_STR(trace, "eom:signer1 eom:editor eom:signer2 sign:signer1 sign:signer2");
	CHECK_INT(eom_count, 5);
	const char *want = "From: a@example.org|X-Ins: i|Subject: [tag] hello|X-Dup: d1|X-Dup: second|"
			   "X-Absent: new|X-Add: a\r\n\tfolded|";
	CHECK_STR(seen[0], want);
	char *want2 = sift_asprintf("X-Signed: 1|%s", want);
	CHECK_STR(seen[1], want2);
	free(want2);
	CHECK_STR(block[0], "From: a@example.org\r\nX-Ins: i\r\nSubject: [tag] hello\r\nX-Dup: d1\r\n"
			    "X-Dup: second\r\nX-Absent: new\r\nX-Add: a\r\n\tfolded\r\n\r\nBody\r\n");
	CHECK(strncmp(block[1], "X-Signed: 1\r\nFrom: a@example.org\r\n", 34) == 0);
	/* the signers' own edits go to the MTA after the others, in order */
	struct sift_ctx *ctx = sift_session_ctx(s);
	const struct sift_edit *e = sift_ctx_result(ctx)->edits;
	size_t n = 0;
	const struct sift_edit *last2[2] = {NULL, NULL};
	for (; e; e = e->next, n++) {
		last2[0] = last2[1];
		last2[1] = e;
	}
	CHECK_INT(n, 9);
	CHECK(last2[0] && strcmp(last2[0]->name, "X-Signed") == 0 && strcmp(last2[0]->value, "1") == 0);
	CHECK(last2[1] && strcmp(last2[1]->name, "X-Signed") == 0 && strcmp(last2[1]->value, "2") == 0);
	sift_session_end(s, SIFT_DUNNO);
	sift_session_quit(s);
	sift_session_free(s);
	sift_gen_unref(g);
	return t_done();
}
