/*
 * session.c - one SMTP session through the plugin chain, event by event in
 * the order an MTA's milter sends them (connect, helo, then per message
 * mail, rcpt..., data, header..., eoh, body..., eom or abort; quit). filterd
 * (filterd/session.c, for both milter engines) and `siftctl test` drive
 * this same code, so that what siftctl prints is what filterd does. See
 * sift.h for the contract; the verdict merging itself (profile order,
 * whitelisting, always-run plugins, error actions, replies) is sift_run's.
 *
 * A final verdict (REJECT, TEMPFAIL, DISCARD) of a message stage sticks in
 * the context's result until the message ends: the content stages (header,
 * end of header, body) then skip their hooks and end of message returns it.
 * That result is the only place a verdict is kept.
 *
 * Quarantine release: a message whose first header is X-Sift-Release with
 * a valid token is delivered without running the plugins (the driver
 * removes the headers and consumes the token at end of message); an
 * X-Sift-Release header anywhere else is logged and the message scanned.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sift.h"

struct sift_session {
	struct sift_gen *gen;
	enum sift_daemon daemon;
	struct sift_ctx *ctx;
	const char *(*macro)(void *arg, const char *name);
	void *macro_arg;
	long long command_ms, content_ms;
	int forced_profile; /* -1: chosen from the session */
	unsigned n_hdrs, n_release_hdrs, n_bad_release_hdrs;
	char *release_token, *release_id;
	bool discarded; /* the message ended by DISCARD; till the next MAIL */
};

struct sift_session *sift_session_new(struct sift_gen *g, enum sift_daemon daemon,
				      const char *(*macro)(void *arg, const char *name), void *arg)
{
	struct sift_session *s = sift_calloc(1, sizeof(*s));
	sift_gen_ref(g);
	s->gen = g;
	s->daemon = daemon;
	s->macro = macro;
	s->macro_arg = arg;
	s->forced_profile = -1;
	return s;
}

static void release_reset(struct sift_session *s)
{
	/* the first one was logged when it came: the count once, at the end */
	if (s->n_bad_release_hdrs > 1 && s->ctx)
		sift_log_msg(LOG_WARNING, sift_ctx_get(s->ctx, SIFT_I_QUEUE_ID), "filterd",
			     "%u %s headers without a valid release token in the message",
			     s->n_bad_release_hdrs, SIFT_RELEASE_HEADER);
	free(s->release_token);
	free(s->release_id);
	s->release_token = s->release_id = NULL;
	s->n_hdrs = s->n_release_hdrs = s->n_bad_release_hdrs = 0;
}

void sift_session_quit(struct sift_session *s)
{
	release_reset(s);
	s->discarded = false;
	sift_ctx_free(s->ctx);
	s->ctx = NULL;
}

void sift_session_free(struct sift_session *s)
{
	if (!s)
		return;
	sift_session_quit(s);
	sift_gen_unref(s->gen);
	free(s);
}

void sift_session_deadlines(struct sift_session *s, long long command_ms, long long content_ms)
{
	s->command_ms = command_ms;
	s->content_ms = content_ms;
}

void sift_session_force_profile(struct sift_session *s, enum sift_profile p)
{
	s->forced_profile = (int)p;
}

struct sift_gen *sift_session_gen(const struct sift_session *s)
{
	return s->gen;
}

struct sift_ctx *sift_session_ctx(const struct sift_session *s)
{
	return s->ctx;
}

static const char *sym(struct sift_session *s, const char *name)
{
	return s->macro ? s->macro(s->macro_arg, name) : NULL;
}

/* A command's (or a content stage's) deadline for the plugins. */
static void set_deadline(struct sift_session *s, bool content)
{
	long long ms = content ? s->content_ms : s->command_ms;
	sift_ctx_set_deadline(s->ctx, ms > 0 ? sift_now_ms() + ms : 0);
}

static void update_qid(struct sift_session *s)
{
	const char *qid = sym(s, "i");
	if (qid && *qid)
		sift_ctx_set(s->ctx, SIFT_I_QUEUE_ID, qid);
}

static bool is_final(enum sift_verdict v)
{
	return v == SIFT_REJECT || v == SIFT_TEMPFAIL || v == SIFT_DISCARD;
}

/* Outside a message no hook runs: TEMPFAIL before connect (no context);
 * DISCARD for the rest of a discarded message (after a DISCARD at RCPT the
 * MTA may go on: more recipients, the content, end of message); DUNNO
 * between messages. */
#define NEED_MSG(s)                                                        \
	do {                                                               \
		if (!(s)->ctx)                                             \
			return SIFT_TEMPFAIL;                              \
		if (!sift_ctx_in_msg((s)->ctx))                            \
			return (s)->discarded ? SIFT_DISCARD : SIFT_DUNNO; \
	} while (0)

/* The message's verdict so far (final ones stick until the message ends). */
static enum sift_verdict msg_verdict(const struct sift_session *s)
{
	enum sift_verdict v = sift_ctx_result(s->ctx)->verdict;
	return is_final(v) ? v : SIFT_DUNNO;
}

enum sift_verdict sift_session_connect(struct sift_session *s, const char *hostname, const char *addr,
				       const char *port)
{
	sift_session_quit(s);
	struct sift_ctx *ctx = s->ctx = sift_ctx_new(s->gen, s->daemon);
	sift_ctx_set_macro_fn(ctx, s->macro, s->macro_arg);
	if (s->forced_profile >= 0)
		sift_ctx_force_profile(ctx, (enum sift_profile)s->forced_profile);
	set_deadline(s, false);
	sift_ctx_set(ctx, SIFT_I_CLIENT_ADDR, addr && *addr ? addr : NULL);
	sift_ctx_set(ctx, SIFT_I_CLIENT_PORT, port && *port ? port : NULL);
	/* The MTA sends "[ip]" when it has no verified name. */
	sift_ctx_set(ctx, SIFT_I_CLIENT_NAME,
		     hostname && *hostname && *hostname != '[' ? hostname : "unknown");
	static const struct {
		const char *macro;
		enum sift_item item;
	} conn_macros[] = {{"{client_ptr}", SIFT_I_CLIENT_PTR},
			   {"{daemon_name}", SIFT_I_DAEMON_NAME},
			   {"j", SIFT_I_MYHOSTNAME}};
	for (size_t i = 0; i < sizeof(conn_macros) / sizeof(conn_macros[0]); i++) {
		const char *v = sym(s, conn_macros[i].macro);
		if (v)
			sift_ctx_set(ctx, conn_macros[i].item, v);
	}
	sift_ctx_choose_profile(ctx);
	enum sift_verdict v = sift_run(ctx, SIFT_PH_CONNECT);
	return v == SIFT_DISCARD ? SIFT_DUNNO : v; /* no DISCARD before a message */
}

enum sift_verdict sift_session_helo(struct sift_session *s, const char *helo)
{
	if (!s->ctx)
		return SIFT_TEMPFAIL;
	set_deadline(s, false);
	sift_ctx_set(s->ctx, SIFT_I_HELO, helo);
	enum sift_verdict v = sift_run(s->ctx, SIFT_PH_HELO);
	return v == SIFT_DISCARD ? SIFT_DUNNO : v;
}

/* "<a@b>" (or a bare address) without the brackets; NULL is "<>". */
static char *strip_brackets(const char *a)
{
	if (!a)
		return sift_strdup("");
	size_t n = strlen(a);
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
		return sift_strndup(a + 1, n - 2);
	return sift_strdup(a);
}

static void set_from_macro(struct sift_session *s, enum sift_item item, const char *macro)
{
	const char *v = sym(s, macro);
	sift_ctx_set(s->ctx, item, v && *v ? v : NULL);
}

enum sift_verdict sift_session_mail(struct sift_session *s, const char *sender)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return SIFT_TEMPFAIL;
	set_deadline(s, false);
	release_reset(s);
	s->discarded = false;
	sift_ctx_msg_begin(ctx);
	update_qid(s);
	char *a = strip_brackets(sender);
	sift_ctx_set(ctx, SIFT_I_SENDER, a);
	free(a);
	set_from_macro(s, SIFT_I_SASL_USERNAME, "{auth_authen}");
	set_from_macro(s, SIFT_I_SASL_METHOD, "{auth_type}");
	set_from_macro(s, SIFT_I_SASL_SENDER, "{auth_author}");
	sift_ctx_choose_profile(ctx);
	return sift_run(ctx, SIFT_PH_MAIL);
}

enum sift_verdict sift_session_rcpt(struct sift_session *s, const char *rcpt)
{
	NEED_MSG(s);
	struct sift_ctx *ctx = s->ctx;
	set_deadline(s, false);
	char *r = strip_brackets(rcpt);
	sift_ctx_set(ctx, SIFT_I_RCPT, r);
	enum sift_verdict v = sift_run(ctx, SIFT_PH_RCPT);
	if (v == SIFT_DUNNO)
		sift_ctx_add_rcpt(ctx, r);
	free(r);
	return v;
}

enum sift_verdict sift_session_data(struct sift_session *s)
{
	NEED_MSG(s);
	set_deadline(s, false);
	update_qid(s);
	return sift_run(s->ctx, SIFT_PH_DATA);
}

/* X-Sift-Release: valid only as the first header, before any plugin saw
 * the message. Never stored (filterd deletes each one at end of message),
 * but counted against message_header_limit as a stored header is, so that
 * a message of many of them gets the refusal of a header section over the
 * limit (552 5.3.4); those without a valid token are logged once per
 * message, with their count at its end. */
static enum sift_verdict release_header(struct sift_session *s, const char *name, const char *value)
{
	struct sift_msg *m = sift_ctx_msg(s->ctx);
	if (m) {
		long long limit = sift_gen_common(sift_ctx_gen(s->ctx))->message_header_limit;
		if (sift_msg_header_memory(m) + sift_header_cost(name, value) > limit)
			/* over the limit: sift_run_header refuses the message
			 * (and logs it) before it stores the header or runs a
			 * hook */
			return sift_run_header(s->ctx, name, value);
		sift_msg_count_header(m, name, value);
	}
	s->n_release_hdrs++;
	const char *tok = value + strspn(value, " \t");
	char *id = NULL;
	const char *dir = sift_gen_common(s->gen)->quarantine_directory;
	if (s->n_hdrs == 1 && tok[strcspn(tok, " \t\r\n")] == 0 &&
	    sift_quarantine_release_check(dir, tok, &id) == 1) {
		s->release_token = sift_strdup(tok);
		s->release_id = id;
		/* not scanned again, but signed (dkim, arc: always-run) */
		sift_ctx_accept_message(s->ctx);
		return SIFT_DUNNO;
	}
	free(id);
	if (++s->n_bad_release_hdrs == 1) {
		update_qid(s);
		sift_log_msg(LOG_WARNING, sift_ctx_get(s->ctx, SIFT_I_QUEUE_ID), "filterd",
			     "%s header without a valid release token: removed, message scanned",
			     SIFT_RELEASE_HEADER);
	}
	return SIFT_DUNNO;
}

enum sift_verdict sift_session_header(struct sift_session *s, const char *name, const char *value)
{
	NEED_MSG(s);
	s->n_hdrs++;
	if (msg_verdict(s) != SIFT_DUNNO)
		return msg_verdict(s);
	if (strcasecmp(name, SIFT_RELEASE_HEADER) == 0)
		return release_header(s, name, value);
	set_deadline(s, true);
	return sift_run_header(s->ctx, name, value);
}

enum sift_verdict sift_session_eoh(struct sift_session *s)
{
	NEED_MSG(s);
	if (msg_verdict(s) != SIFT_DUNNO)
		return msg_verdict(s);
	set_deadline(s, true);
	update_qid(s);
	return sift_run(s->ctx, SIFT_PH_EOH);
}

enum sift_verdict sift_session_body(struct sift_session *s, const void *buf, size_t len)
{
	NEED_MSG(s);
	if (msg_verdict(s) != SIFT_DUNNO)
		return msg_verdict(s);
	set_deadline(s, true);
	return sift_run_body(s->ctx, buf, len);
}

enum sift_verdict sift_session_eom(struct sift_session *s)
{
	NEED_MSG(s);
	set_deadline(s, true);
	update_qid(s);
	s->n_hdrs = 0;
	if (msg_verdict(s) != SIFT_DUNNO)
		return msg_verdict(s);
	return sift_run(s->ctx, SIFT_PH_EOM);
}

enum sift_verdict sift_session_content(struct sift_session *s, struct sift_msg *src)
{
	for (size_t i = 0; i < sift_msg_header_count(src); i++) {
		const struct sift_header *h = sift_msg_header(src, i);
		sift_session_header(s, h->name, h->value);
	}
	sift_session_eoh(s);
	char buf[65536];
	long n;
	long long off = 0;
	while ((n = sift_msg_body_read(src, off, buf, sizeof(buf))) > 0) {
		sift_session_body(s, buf, (size_t)n);
		off += n;
	}
	return sift_session_eom(s);
}

const char *sift_session_release_id(const struct sift_session *s)
{
	return s->release_token ? s->release_id : NULL;
}

const char *sift_session_release_token(const struct sift_session *s)
{
	return s->release_token;
}

unsigned sift_session_release_headers(const struct sift_session *s)
{
	return s->n_release_hdrs;
}

const char *sift_session_action(const struct sift_session *s, enum sift_verdict v)
{
	switch (v) {
	case SIFT_REJECT:
		return "reject";
	case SIFT_TEMPFAIL:
		return "tempfail";
	case SIFT_DISCARD:
		return "discard";
	default:
		return s->ctx && sift_ctx_result(s->ctx)->hold ? "hold" : "accept";
	}
}

void sift_session_end(struct sift_session *s, enum sift_verdict v)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx || !sift_ctx_in_msg(ctx))
		return;
	const char *action = sift_session_action(s, v);
	char *sum = sift_ctx_summary(ctx, action);
	sift_log_msg(LOG_INFO, sift_ctx_get(ctx, SIFT_I_QUEUE_ID), "filterd", "%s", sum);
	free(sum);
	sift_metrics_record(ctx, action);
	release_reset(s);
	s->discarded = v == SIFT_DISCARD;
	sift_ctx_msg_outcome(ctx, v);
	sift_ctx_msg_end(ctx, false);
}

void sift_session_abort(struct sift_session *s)
{
	release_reset(s);
	s->discarded = false;
	if (s->ctx)
		sift_ctx_msg_end(s->ctx, true);
}
