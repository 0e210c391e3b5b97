/*
 * test_session.c - the core's session (lib/session.c), the sequencing that
 * filterd and `siftctl test` share: items from the macro function, the
 * profile, a content-stage verdict held (once, in the result) until end of
 * message with later hooks skipped, events outside a message, header
 * values in one form (CRLF folds), the summary's action word, release
 * headers counted (and against message_header_limit), the rest of a
 * message discarded at RCPT, and a connection's end.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static char plugdir[256];

static struct sift_gen *gen(const char *text)
{
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	char *err = NULL;
	char *pd = sift_asprintf("plugin_directory=%s", plugdir);
	CHECK(sift_config_set(cfg, pd, "test", &err) == 0);
	free(pd);
	char *copy = sift_strdup(text), *save = NULL;
	for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		CHECK(sift_config_set(cfg, l, "test", &err) == 0);
	free(copy);
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	if (!g) {
		fprintf(stderr, "gen: %s\n", err);
		free(err);
		sift_config_free(cfg);
	}
	return g;
}

static const char *macros(void *arg, const char *name)
{
	const char *const *m = arg;
	for (; m && *m; m += 2)
		if (strcmp(m[0], name) == 0)
			return m[1];
	return NULL;
}

/* A message up to its end of message; returns eom's verdict. */
static enum sift_verdict message(struct sift_session *s, enum sift_verdict *hdr_r)
{
	CHECK(sift_session_mail(s, "<alice@example.org>") == SIFT_DUNNO);
	CHECK(sift_session_rcpt(s, "<bob@example.com>") == SIFT_DUNNO);
	CHECK(sift_session_data(s) == SIFT_DUNNO);
	enum sift_verdict h1 = sift_session_header(s, "Subject", " folded\n\tline");
	enum sift_verdict h2 = sift_session_header(s, "From", " alice@example.org");
	if (hdr_r)
		*hdr_r = h1;
	CHECK(h2 == h1); /* a held verdict sticks */
	sift_session_eoh(s);
	sift_session_body(s, "Hi.\r\n", 5);
	return sift_session_eom(s);
}

int main(void)
{
	const char *build = getenv("SIFT_BUILDDIR");
	if (!build) {
		fprintf(stderr, "SIFT_BUILDDIR not set\n");
		return 1;
	}
	sift_log_init("test_session", true, LOG_ERR);
	snprintf(plugdir, sizeof(plugdir), "/tmp/sift-test-session-XXXXXX");
	CHECK(mkdtemp(plugdir) != NULL);
	char *src = sift_asprintf("%s/tests/testplug.so", build);
	char *dst = sift_asprintf("%s/testplug.so", plugdir);
	CHECK(symlink(src, dst) == 0);
	free(src);
	free(dst);

	/* A header verdict: held, header hooks skipped, given at eom. */
	struct sift_gen *g = gen("inbound_plugins = testplug\ntestplug_phase = header\n"
				 "testplug_verdict = reject\ntestplug_reply = 554 5.7.1 header says no\n");
	CHECK(g != NULL);
	if (!g)
		return t_done();
	static const char *const m[] = {"i", "Q1", "{client_ptr}", "ptr.example", "j", "mx.example", NULL};
	struct sift_session *s = sift_session_new(g, SIFT_FILTERD, macros, (void *)m);
	CHECK(sift_session_ctx(s) == NULL);
	CHECK(sift_session_helo(s, "x") == SIFT_TEMPFAIL); /* before connect */
	CHECK(sift_session_connect(s, "[192.0.2.1]", "192.0.2.1", "25") == SIFT_DUNNO);
	struct sift_ctx *ctx = sift_session_ctx(s);
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_CLIENT_NAME), "unknown");
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_CLIENT_ADDR), "192.0.2.1");
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_CLIENT_PORT), "25");
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_CLIENT_PTR), "ptr.example");
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_MYHOSTNAME), "mx.example");
	CHECK(sift_session_rcpt(s, "<x@y>") == SIFT_DUNNO); /* between messages */
	CHECK(sift_session_eom(s) == SIFT_DUNNO);
	CHECK(sift_session_helo(s, "client.example") == SIFT_DUNNO);
	enum sift_verdict hv;
	CHECK(message(s, &hv) == SIFT_REJECT);
	CHECK(hv == SIFT_REJECT);
	const struct sift_result *r = sift_ctx_result(ctx);
	CHECK_STR(r->decided_by, "testplug");
	CHECK_STR(r->reply_text, "header says no");
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_QUEUE_ID), "Q1");
	/* the first header is stored (CRLF folds), the later ones are not */
	CHECK_INT(sift_msg_header_count(sift_ctx_msg(ctx)), 1);
	CHECK_STR(sift_msg_header(sift_ctx_msg(ctx), 0)->value, " folded\r\n\tline");
	CHECK_STR(sift_session_action(s, SIFT_REJECT), "reject");
	sift_session_end(s, SIFT_REJECT);
	CHECK(!sift_ctx_in_msg(ctx));
	/* the next message starts afresh */
	CHECK(message(s, NULL) == SIFT_REJECT);
	sift_session_abort(s);
	CHECK(!sift_ctx_in_msg(ctx));
	sift_session_free(s);
	sift_gen_unref(g);

	/* Nothing final: edits stay in the result until the end; release
	 * headers without a valid token are counted and the message scanned. */
	g = gen("inbound_plugins = testplug\noriginating_plugins = testplug\ntestplug_header = X-T: v\n"
		"testplug_symbol = SYM:2\n");
	CHECK(g != NULL);
	if (!g)
		return t_done();
	static const char *const auth[] = {"{auth_authen}", "alice", NULL};
	s = sift_session_new(g, SIFT_FILTERD, macros, (void *)auth);
	CHECK(sift_session_connect(s, "client.example", NULL, NULL) == SIFT_DUNNO);
	ctx = sift_session_ctx(s);
	CHECK(sift_ctx_get(ctx, SIFT_I_CLIENT_ADDR) == NULL);
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_CLIENT_NAME), "client.example");
	CHECK(sift_session_mail(s, NULL) == SIFT_DUNNO);
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_SENDER), "");
	CHECK_STR(sift_ctx_get(ctx, SIFT_I_SASL_USERNAME), "alice");
	CHECK(sift_ctx_profile(ctx) == SIFT_ORIGINATING);
	CHECK(sift_session_header(s, SIFT_RELEASE_HEADER, " not-a-token") == SIFT_DUNNO);
	CHECK(sift_session_header(s, "Subject", " x") == SIFT_DUNNO);
	CHECK(sift_session_eom(s) == SIFT_DUNNO);
	CHECK_INT(sift_session_release_headers(s), 1);
	CHECK(sift_session_release_id(s) == NULL);
	r = sift_ctx_result(ctx);
	CHECK(r->edits && strcmp(r->edits->name, "X-T") == 0);
	CHECK(r->score == 2.0);
	CHECK_STR(sift_session_action(s, SIFT_DUNNO), "accept");
	sift_session_end(s, SIFT_DUNNO);
	CHECK(!sift_ctx_in_msg(ctx));
	CHECK_INT(sift_session_release_headers(s), 0);
	sift_session_quit(s);
	CHECK(sift_session_ctx(s) == NULL);
	sift_session_free(s);
	sift_gen_unref(g);

	/* DISCARD is no verdict at connect; a forced profile holds. */
	g = gen("inbound_plugins = testplug\ntestplug_phase = connect\ntestplug_verdict = discard\n");
	CHECK(g != NULL);
	if (g) {
		s = sift_session_new(g, SIFT_SIFTCTL, NULL, NULL);
		sift_session_force_profile(s, SIFT_INBOUND);
		CHECK(sift_session_connect(s, "h", "192.0.2.1", NULL) == SIFT_DUNNO);
		CHECK(sift_session_mail(s, "<a@b>") == SIFT_DUNNO);
		CHECK(sift_ctx_profile(sift_session_ctx(s)) == SIFT_INBOUND);
		sift_session_free(s); /* inside a message: aborted, then closed */
		sift_gen_unref(g);
	}
	/* X-Sift-Release headers are not stored but count against
	 * message_header_limit: past it the message is refused (552 5.3.4). */
	g = gen("inbound_plugins = testplug\nmessage_header_limit = 1k\n");
	CHECK(g != NULL);
	if (g) {
		s = sift_session_new(g, SIFT_FILTERD, NULL, NULL);
		CHECK(sift_session_connect(s, "h", "192.0.2.1", NULL) == SIFT_DUNNO);
		CHECK(sift_session_mail(s, "<a@b>") == SIFT_DUNNO);
		CHECK(sift_session_header(s, "Subject", " x") == SIFT_DUNNO);
		int n = 0;
		enum sift_verdict v = SIFT_DUNNO;
		while (v == SIFT_DUNNO && n < 100) {
			v = sift_session_header(s, SIFT_RELEASE_HEADER, " not-a-token");
			n++;
		}
		ctx = sift_session_ctx(s);
		CHECK(v == SIFT_REJECT && n > 1 && n < 20);
		CHECK_STR(sift_ctx_result(ctx)->reply_code, "552");
		CHECK_INT(sift_msg_header_count(sift_ctx_msg(ctx)), 1);
		CHECK_INT(sift_session_release_headers(s), n - 1);
		CHECK(sift_session_eom(s) == SIFT_REJECT);
		sift_session_free(s);
		sift_gen_unref(g);
	}

	/* A DISCARD at RCPT ends the message; the rest of it (more
	 * recipients, content, eom) is discarded too, until the next MAIL or
	 * an abort. */
	g = gen("inbound_plugins = testplug\ntestplug_phase = rcpt\ntestplug_verdict = discard\n");
	CHECK(g != NULL);
	if (g) {
		s = sift_session_new(g, SIFT_FILTERD, NULL, NULL);
		CHECK(sift_session_connect(s, "h", "192.0.2.1", NULL) == SIFT_DUNNO);
		for (int round = 0; round < 2; round++) {
			CHECK(sift_session_mail(s, "<a@b>") == SIFT_DUNNO);
			CHECK(sift_session_rcpt(s, "<c@d>") == SIFT_DISCARD);
			sift_session_end(s, SIFT_DISCARD);
			CHECK(!sift_ctx_in_msg(sift_session_ctx(s)));
			CHECK(sift_session_rcpt(s, "<e@f>") == SIFT_DISCARD);
			CHECK(sift_session_data(s) == SIFT_DISCARD);
			CHECK(sift_session_header(s, "Subject", " x") == SIFT_DISCARD);
			CHECK(sift_session_eoh(s) == SIFT_DISCARD);
			CHECK(sift_session_body(s, "x\r\n", 3) == SIFT_DISCARD);
			CHECK(sift_session_eom(s) == SIFT_DISCARD);
		}
		sift_session_abort(s);
		CHECK(sift_session_eom(s) == SIFT_DUNNO);
		sift_session_free(s);
		sift_gen_unref(g);
	}
	char *cmd = sift_asprintf("rm -rf %s", plugdir);
	CHECK(system(cmd) == 0);
	free(cmd);
	return t_done();
}
