/*
 * session.c - filterd's per-event logic, shared by both milter engines
 * (milter.c: libmilter; engine.c: native). Each MTA connection has a struct
 * sift_ctx holding the configuration generation chosen at negotiation, so a
 * reload never changes the configuration under a running connection.
 *
 * Negotiation asks the MTA only for what the loaded plugins need: the
 * actions are the union of the plugins' declared actions (plus quarantine,
 * which the HOLD verdict uses), the message stages are skipped when no
 * plugin looks at the message, and stages no plugin hooks need no reply.
 * The content stages (header, end of header, body) never need a reply:
 * a final verdict a hook returns there is held and given at end of
 * message. SMTP cannot answer before the end of DATA anyway, so nothing is
 * lost, and each message saves the round trips for end of header and every
 * body chunk (hooks after such a verdict are not run).
 * Header values are always received with their leading white space
 * (SMFIP_HDR_LEADSPC), so plugins see them byte-exact.
 *
 * Header edits queued by plugins are applied at end of message, which is
 * all the milter protocol allows.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mproto.h"
#include "session.h"

static const struct filterd_conf *fconf;

void fd_session_setup(const struct filterd_conf *conf)
{
	fconf = conf;
}

void fd_session_init(struct fd_session *s, const struct fd_out *out, void *arg)
{
	memset(s, 0, sizeof(*s));
	s->gen = sift_gen_current();
	s->out = out;
	s->arg = arg;
}

static void release_reset(struct fd_session *s)
{
	free(s->release_token);
	free(s->release_id);
	s->release_token = s->release_id = NULL;
	s->n_hdrs = s->n_release_hdrs = 0;
}

void fd_session_free(struct fd_session *s)
{
	release_reset(s);
	if (s->ctx)
		sift_ctx_free(s->ctx);
	s->ctx = NULL;
	if (s->gen)
		sift_gen_unref(s->gen);
	s->gen = NULL;
}

/* The status of an event whose stage was negotiated as no-reply: the
 * verdict of such a stage is always DUNNO (no plugin implements it). */
static enum fd_status reply_or_none(struct fd_session *s, unsigned long nr_flag, enum fd_status st)
{
	return (s->nr & nr_flag) ? FD_NOREPLY : st;
}

static const char *macro_fn(void *arg, const char *name)
{
	struct fd_session *s = arg;
	return s->out->getsymval(s->arg, name);
}

static const char *sym(struct fd_session *s, const char *name)
{
	return s->out->getsymval(s->arg, name);
}

static void set_deadline(struct sift_ctx *ctx, bool content)
{
	long long ms = content ? fconf->content_deadline : fconf->command_deadline;
	sift_ctx_set_deadline(ctx, sift_now_ms() + ms);
}

static void update_qid(struct fd_session *s)
{
	const char *qid = sym(s, "i");
	if (qid && *qid)
		sift_ctx_set(s->ctx, SIFT_I_QUEUE_ID, qid);
}

/* Reply text goes to printf-like code in the MTA (Postfix turns "%%" into
 * "%" and drops a single '%'): double '%'. */
static char *escape_pct(const char *s)
{
	struct sift_buf b = {0};
	for (; *s; s++) {
		if (*s == '%')
			sift_buf_add(&b, "%", 1);
		sift_buf_add(&b, s, 1);
	}
	return (char *)sift_buf_str(&b);
}

static void set_reply(struct fd_session *s, enum sift_verdict v)
{
	const struct sift_result *r = sift_ctx_result(s->ctx);
	const char *code = r->reply_code, *xcode = r->reply_xcode, *text = r->reply_text;
	if (!code) {
		code = v == SIFT_REJECT ? "550" : "451";
		xcode = v == SIFT_REJECT ? "5.7.1" : "4.7.1";
	}
	if (!text)
		text = v == SIFT_REJECT ? "Message rejected" : "Try again later";
	char *t = escape_pct(text);
	if (s->out->setreply(s->arg, code, xcode, t) < 0)
		sift_log(LOG_WARNING, "smfi_setreply failed for \"%s %s %s\"", code, xcode ? xcode : "", t);
	free(t);
}

static const char *action_word(enum sift_verdict v)
{
	switch (v) {
	case SIFT_REJECT:
		return "reject";
	case SIFT_TEMPFAIL:
		return "tempfail";
	case SIFT_DISCARD:
		return "discard";
	default:
		return "accept";
	}
}

/* Ends the message after a final verdict the MTA will act on (no abort
 * comes then), with the summary line. */
static void finish_msg(struct sift_ctx *ctx, enum sift_verdict v)
{
	if (!sift_ctx_in_msg(ctx))
		return;
	const struct sift_result *r = sift_ctx_result(ctx);
	char *sum = sift_ctx_summary(ctx, r->hold && v == SIFT_DUNNO ? "hold" : action_word(v));
	sift_log_msg(LOG_INFO, sift_host_table.get(ctx, SIFT_I_QUEUE_ID), "filterd", "%s", sum);
	free(sum);
	sift_ctx_msg_end(ctx, false);
}

static enum fd_status to_status(struct fd_session *s, enum sift_verdict v, bool msg_level)
{
	switch (v) {
	case SIFT_REJECT:
	case SIFT_TEMPFAIL:
		set_reply(s, v);
		if (msg_level)
			finish_msg(s->ctx, v);
		return v == SIFT_REJECT ? FD_REJECT : FD_TEMPFAIL;
	case SIFT_DISCARD:
		finish_msg(s->ctx, v);
		return FD_DISCARD;
	default:
		return FD_CONTINUE;
	}
}

void fd_session_negotiate(struct fd_session *s, unsigned long f0, unsigned long f1, unsigned long *pf0,
			  unsigned long *pf1)
{
	struct sift_gen *g = s->gen;
	unsigned acts = sift_gen_actions(g), phases = sift_gen_phases(g), flags = sift_gen_flags(g);

	unsigned long want = MP_A_QUARANTINE;
	if (acts & SIFT_A_ADDHDRS)
		want |= MP_A_ADDHDRS;
	if (acts & SIFT_A_CHGHDRS)
		want |= MP_A_CHGHDRS;
	if (acts & SIFT_A_CHGBODY)
		want |= MP_A_CHGBODY;

	unsigned long steps = 0;
	bool need_hdrs = phases & ((1u << SIFT_PH_HEADER) | (1u << SIFT_PH_EOH) | (1u << SIFT_PH_EOM));
	bool need_body = (phases & (1u << SIFT_PH_BODY)) || (flags & SIFT_F_NEED_BODY);
	/* Plugins that read the message may quarantine it: remove the
	 * X-Sift-Release header of a released message. */
	if (need_hdrs || need_body)
		want |= MP_A_CHGHDRS;
	*pf0 = want & f0;
	if (f1 & SMFIP_HDR_LEADSPC)
		steps |= SMFIP_HDR_LEADSPC;
	steps |= SMFIP_NOUNKNOWN;
	if (!(phases & (1u << SIFT_PH_DATA)))
		steps |= SMFIP_NODATA;
	if (!need_hdrs && !need_body)
		steps |= SMFIP_NOHDRS | SMFIP_NOEOH;
	if (!need_body)
		steps |= SMFIP_NOBODY;
	/* Stages no plugin has a hook for need no reply: the MTA does not wait
	 * for us there (we still record what they carry: HELO name, sender,
	 * recipients). Each saves a round trip per message. */
	static const struct {
		enum sift_phase ph;
		unsigned long nr;
	} nrmap[] = {{SIFT_PH_CONNECT, SMFIP_NR_CONN}, {SIFT_PH_HELO, SMFIP_NR_HELO},
		     {SIFT_PH_MAIL, SMFIP_NR_MAIL},    {SIFT_PH_RCPT, SMFIP_NR_RCPT},
		     {SIFT_PH_DATA, SMFIP_NR_DATA},    {SIFT_PH_HEADER, SMFIP_NR_HDR},
		     {SIFT_PH_EOH, SMFIP_NR_EOH},      {SIFT_PH_BODY, SMFIP_NR_BODY}};
	for (size_t i = 0; i < sizeof(nrmap) / sizeof(nrmap[0]); i++)
		if (!(phases & (1u << nrmap[i].ph)) && (f1 & nrmap[i].nr))
			steps |= nrmap[i].nr;
	steps |= (SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY) & f1;
	steps |= SMFIP_NR_UNKN & f1;
	*pf1 = steps & f1;
	s->nr = *pf1 & (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |
			SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
}

enum fd_status fd_session_connect(struct fd_session *s, const char *hostname, const struct sockaddr *sa)
{
	if (s->ctx)
		sift_ctx_free(s->ctx);
	struct sift_ctx *ctx = s->ctx = sift_ctx_new(s->gen, SIFT_FILTERD);
	sift_ctx_set_macro_fn(ctx, macro_fn, s);
	set_deadline(ctx, false);

	char addr[INET6_ADDRSTRLEN] = "";
	char port[8] = "";
	if (sa && sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", ntohs(sin->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], addr, sizeof(addr));
		else
			inet_ntop(AF_INET6, &sin6->sin6_addr, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", ntohs(sin6->sin6_port));
	}
	if (*addr)
		sift_ctx_set(ctx, SIFT_I_CLIENT_ADDR, addr);
	if (*port)
		sift_ctx_set(ctx, SIFT_I_CLIENT_PORT, port);
	/* The MTA sends "[ip]" when it has no verified name. */
	sift_ctx_set(ctx, SIFT_I_CLIENT_NAME, hostname && *hostname != '[' ? hostname : "unknown");
	const char *v;
	if ((v = sym(s, "{client_ptr}")))
		sift_ctx_set(ctx, SIFT_I_CLIENT_PTR, v);
	if ((v = sym(s, "{daemon_name}")))
		sift_ctx_set(ctx, SIFT_I_DAEMON_NAME, v);
	if ((v = sym(s, "j")))
		sift_ctx_set(ctx, SIFT_I_MYHOSTNAME, v);
	sift_ctx_choose_profile(ctx);
	enum sift_verdict r = sift_run(ctx, SIFT_PH_CONNECT);
	/* No reply text at connect (libmilter refuses it there); Postfix
	 * applies the verdict to the next command. DISCARD is not allowed. */
	if (r == SIFT_REJECT)
		return FD_REJECT;
	if (r == SIFT_TEMPFAIL)
		return FD_TEMPFAIL;
	return reply_or_none(s, SMFIP_NR_CONN, FD_CONTINUE);
}

enum fd_status fd_session_helo(struct fd_session *s, const char *helo)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	set_deadline(ctx, false);
	sift_ctx_set(ctx, SIFT_I_HELO, helo);
	enum sift_verdict r = sift_run(ctx, SIFT_PH_HELO);
	if (r == SIFT_DISCARD)
		r = SIFT_DUNNO;
	return reply_or_none(s, SMFIP_NR_HELO, to_status(s, r, false));
}

static char *strip_brackets(const char *a)
{
	size_t n = strlen(a);
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
		return sift_strndup(a + 1, n - 2);
	return sift_strdup(a);
}

enum fd_status fd_session_envfrom(struct fd_session *s, const char *argv0)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	set_deadline(ctx, false);
	s->has_deferred = false;
	sift_ctx_msg_begin(ctx);
	char *a = strip_brackets(argv0 ? argv0 : "<>");
	sift_ctx_set(ctx, SIFT_I_SENDER, a);
	free(a);
	const char *v = sym(s, "{auth_authen}");
	sift_ctx_set(ctx, SIFT_I_SASL_USERNAME, v && *v ? v : NULL);
	v = sym(s, "{auth_type}");
	sift_ctx_set(ctx, SIFT_I_SASL_METHOD, v && *v ? v : NULL);
	v = sym(s, "{auth_author}");
	sift_ctx_set(ctx, SIFT_I_SASL_SENDER, v && *v ? v : NULL);
	sift_ctx_choose_profile(ctx);
	return reply_or_none(s, SMFIP_NR_MAIL, to_status(s, sift_run(ctx, SIFT_PH_MAIL), true));
}

enum fd_status fd_session_envrcpt(struct fd_session *s, const char *argv0)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	set_deadline(ctx, false);
	char *r = strip_brackets(argv0 ? argv0 : "<>");
	sift_ctx_set(ctx, SIFT_I_RCPT, r);
	enum sift_verdict v = sift_run(ctx, SIFT_PH_RCPT);
	if (v == SIFT_DUNNO)
		sift_ctx_add_rcpt(ctx, r);
	free(r);
	return reply_or_none(s, SMFIP_NR_RCPT, to_status(s, v, v == SIFT_DISCARD));
}

enum fd_status fd_session_data(struct fd_session *s)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	set_deadline(ctx, false);
	update_qid(s);
	return reply_or_none(s, SMFIP_NR_DATA, to_status(s, sift_run(ctx, SIFT_PH_DATA), true));
}

/* The reply to a content stage: with no reply negotiated, a final verdict
 * is held for end of message (the first one counts). */
static enum fd_status content_reply(struct fd_session *s, unsigned long nr_flag, enum sift_verdict v)
{
	if (!(s->nr & nr_flag))
		return to_status(s, v, true);
	if (!s->has_deferred && (v == SIFT_REJECT || v == SIFT_TEMPFAIL || v == SIFT_DISCARD)) {
		s->deferred = v;
		s->has_deferred = true;
	}
	return FD_NOREPLY;
}

enum fd_status fd_session_header(struct fd_session *s, const char *name, const char *value)
{
	bool nr_hdr = s->nr & SMFIP_NR_HDR;
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return nr_hdr ? FD_NOREPLY : FD_TEMPFAIL;
	s->n_hdrs++;
	if (strcasecmp(name, SIFT_RELEASE_HEADER) == 0) {
		/* Only as the first header, before any plugin saw the message. */
		s->n_release_hdrs++;
		const char *tok = value + strspn(value, " \t");
		char *id = NULL;
		const char *dir = sift_gen_common(s->gen)->quarantine_directory;
		if (s->n_hdrs == 1 && tok[strcspn(tok, " \t\r\n")] == 0 &&
		    sift_quarantine_release_check(dir, tok, &id) == 1) {
			s->release_token = sift_strdup(tok);
			s->release_id = id;
		} else {
			update_qid(s);
			sift_log_msg(LOG_WARNING, sift_host_table.get(ctx, SIFT_I_QUEUE_ID), "filterd",
				     "%s header without a valid release token: removed, message scanned",
				     SIFT_RELEASE_HEADER);
		}
		return nr_hdr ? FD_NOREPLY : FD_CONTINUE;
	}
	if (s->has_deferred || s->release_token)
		return nr_hdr ? FD_NOREPLY : FD_CONTINUE;
	set_deadline(ctx, true);
	/* The MTA joins folded lines with a bare LF: restore CRLF. */
	struct sift_buf b = {0};
	for (const char *p = value; *p; p++) {
		if (*p == '\n' && (p == value || p[-1] != '\r'))
			sift_buf_add(&b, "\r", 1);
		sift_buf_add(&b, p, 1);
	}
	enum sift_verdict v = sift_run_header(ctx, name, sift_buf_str(&b));
	sift_buf_free(&b);
	return content_reply(s, SMFIP_NR_HDR, v);
}

enum fd_status fd_session_eoh(struct fd_session *s)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	if (s->has_deferred || s->release_token)
		return reply_or_none(s, SMFIP_NR_EOH, FD_CONTINUE);
	set_deadline(ctx, true);
	update_qid(s);
	return content_reply(s, SMFIP_NR_EOH, sift_run(ctx, SIFT_PH_EOH));
}

enum fd_status fd_session_body(struct fd_session *s, const unsigned char *buf, size_t len)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	if (s->has_deferred || s->release_token)
		return reply_or_none(s, SMFIP_NR_BODY, FD_CONTINUE);
	set_deadline(ctx, true);
	return content_reply(s, SMFIP_NR_BODY, sift_run_body(ctx, buf, len));
}

static int apply_edits(struct fd_session *s)
{
	const struct sift_result *r = sift_ctx_result(s->ctx);
	for (const struct sift_edit *e = r->edits; e; e = e->next) {
		/* With SMFIP_HDR_LEADSPC we control the space after the colon;
		 * folded values use bare LF as the MTA expects. */
		char *v = NULL;
		if (e->value) {
			struct sift_buf b = {0};
			sift_buf_add(&b, " ", 1);
			for (const char *p = e->value; *p; p++)
				if (*p != '\r')
					sift_buf_add(&b, p, 1);
			v = (char *)sift_buf_str(&b);
		}
		int rc;
		switch (e->op) {
		case SIFT_EDIT_ADD:
			rc = s->out->addheader(s->arg, e->name, v);
			break;
		case SIFT_EDIT_INSERT:
			rc = s->out->insheader(s->arg, (int)e->idx, e->name, v);
			break;
		default:
			rc = s->out->chgheader(s->arg, e->name, (int)e->idx, v);
			break;
		}
		free(v);
		if (rc < 0) {
			sift_log_msg(LOG_ERR, sift_host_table.get(s->ctx, SIFT_I_QUEUE_ID), "filterd",
				     "could not edit header %s", e->name);
			return -1;
		}
	}
	return 0;
}

/* X-Sift-Release headers never leave filterd. */
static int remove_release_headers(struct fd_session *s)
{
	for (unsigned i = s->n_release_hdrs; i >= 1; i--)
		if (s->out->chgheader(s->arg, SIFT_RELEASE_HEADER, (int)i, NULL) < 0)
			return -1;
	return 0;
}

/* A released message: delivered as it is, once (the token is consumed). */
static enum fd_status release_eom(struct fd_session *s)
{
	struct sift_ctx *ctx = s->ctx;
	const char *qid = sift_host_table.get(ctx, SIFT_I_QUEUE_ID);
	const char *dir = sift_gen_common(s->gen)->quarantine_directory;
	if (remove_release_headers(s) < 0 || sift_quarantine_release_consume(dir, s->release_token) < 0) {
		sift_log_msg(LOG_WARNING, qid, "filterd",
			     "quarantine release %s: token already used or not removable", s->release_id);
		sift_host_table.reply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
		enum fd_status st = to_status(s, SIFT_TEMPFAIL, true);
		release_reset(s);
		return st;
	}
	sift_log_msg(LOG_INFO, qid, "filterd", "quarantine release %s: delivered without scanning",
		     s->release_id);
	release_reset(s);
	finish_msg(ctx, SIFT_DUNNO);
	return FD_CONTINUE;
}

enum fd_status fd_session_eom(struct fd_session *s)
{
	struct sift_ctx *ctx = s->ctx;
	if (!ctx)
		return FD_TEMPFAIL;
	set_deadline(ctx, true);
	update_qid(s);
	if (!sift_ctx_in_msg(ctx))
		return FD_CONTINUE;
	if (s->release_token)
		return release_eom(s);
	if (s->n_release_hdrs) {
		int rr = remove_release_headers(s);
		release_reset(s);
		if (rr < 0) {
			sift_host_table.reply(ctx, "451", "4.3.0",
					      "Temporary local problem, try again later");
			return to_status(s, SIFT_TEMPFAIL, true);
		}
	}
	s->n_hdrs = 0;
	if (s->has_deferred) {
		s->has_deferred = false;
		return to_status(s, s->deferred, true);
	}
	enum sift_verdict v = sift_run(ctx, SIFT_PH_EOM);
	if (v != SIFT_DUNNO)
		return to_status(s, v, true);
	if (apply_edits(s) < 0) {
		sift_host_table.reply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
		return to_status(s, SIFT_TEMPFAIL, true);
	}
	const struct sift_result *r = sift_ctx_result(ctx);
	if (r->hold) {
		char *reason = escape_pct(r->hold_reason ? r->hold_reason : "held by filterd");
		if (s->out->quarantine(s->arg, reason) < 0) {
			free(reason);
			sift_host_table.reply(ctx, "451", "4.3.0",
					      "Temporary local problem, try again later");
			return to_status(s, SIFT_TEMPFAIL, true);
		}
		free(reason);
	}
	finish_msg(ctx, SIFT_DUNNO);
	return FD_CONTINUE;
}

void fd_session_abort(struct fd_session *s)
{
	s->has_deferred = false;
	release_reset(s);
	if (s->ctx)
		sift_ctx_msg_end(s->ctx, true);
}
