/*
 * session.c - filterd's per-event logic, shared by both milter engines
 * (milter.c: libmilter; engine.c: native). The phase sequencing itself
 * (items, profile, verdicts, held content-stage verdicts, quarantine
 * release) is the core's session (lib/session.c), which `siftctl test`
 * drives too; this file adds what belongs to the milter protocol: what is
 * negotiated, which stages need a reply, the reply and the modifications
 * sent to the MTA. Each MTA connection's session holds the configuration
 * generation chosen when it started, so a reload never changes the
 * configuration under a running connection.
 *
 * Negotiation asks the MTA only for what the loaded plugins need: the
 * actions are the union of the plugins' declared actions (plus quarantine,
 * which the HOLD verdict uses), the message stages are skipped when no
 * plugin looks at the message, and stages no plugin hooks need no reply.
 * The content stages (header, end of header, body) never need a reply:
 * a final verdict a hook returns there is held (in the core's result) and
 * given at end of message. SMTP cannot answer before the end of DATA
 * anyway, so nothing is lost, and each message saves the round trips for
 * end of header and every body chunk (hooks after such a verdict are not
 * run). Header values are always received with their leading white space
 * (SMFIP_HDR_LEADSPC), so plugins see them byte-exact.
 *
 * Header edits queued by plugins are applied at end of message, which is
 * all the milter protocol allows.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "mproto.h"
#include "session.h"

/* filterd_command_deadline and filterd_content_deadline: read by each new
 * session, set at start and by each reload. */
static _Atomic long long command_deadline, content_deadline;
static atomic_bool deadlines_set;

void fd_session_setup(const struct filterd_conf *conf)
{
	atomic_store(&command_deadline, conf->command_deadline);
	atomic_store(&content_deadline, conf->content_deadline);
	atomic_store(&deadlines_set, true);
}

static const char *macro_fn(void *arg, const char *name)
{
	struct fd_session *s = arg;
	return s->out->getsymval(s->arg, name);
}

void fd_session_init(struct fd_session *s, const struct fd_out *out, void *arg)
{
	memset(s, 0, sizeof(*s));
	s->out = out;
	s->arg = arg;
	struct sift_gen *g = sift_gen_current();
	if (!g) {
		/* None current: before the first one at start, or at stop after
		 * the last was dropped while libmilter's workers still call us.
		 * The session has no core session (ss NULL) and every command
		 * is answered tempfail (stopped()). */
		return;
	}
	s->ss = sift_session_new(g, SIFT_FILTERD, macro_fn, s);
	sift_gen_unref(g);
	if (atomic_load(&deadlines_set))
		sift_session_deadlines(s->ss, atomic_load(&command_deadline), atomic_load(&content_deadline));
}

void fd_session_free(struct fd_session *s)
{
	if (s->counted)
		sift_metrics_conn(-1);
	s->counted = false;
	sift_session_free(s->ss);
	s->ss = NULL;
}

void fd_session_quit(struct fd_session *s)
{
	if (s->ss)
		sift_session_quit(s->ss);
}

/* The answer to a command of a session started without a generation: the
 * default tempfail (451 4.3.0 ... at connect, where libmilter takes no
 * reply text, the MTA gives its own). */
static enum fd_status stopped(struct fd_session *s, bool text)
{
	if (text) {
		const char *code, *xcode, *msg;
		sift_reply_default(SIFT_TEMPFAIL, &code, &xcode, &msg);
		s->out->setreply(s->arg, code, xcode, msg);
	}
	return FD_TEMPFAIL;
}

/* The status of an event whose stage was negotiated as no-reply: the
 * verdict of such a stage is always DUNNO (no plugin implements it). */
static enum fd_status reply_or_none(struct fd_session *s, unsigned long nr_flag, enum fd_status st)
{
	return (s->nr & nr_flag) ? FD_NOREPLY : st;
}

static const char *qid(struct fd_session *s)
{
	struct sift_ctx *ctx = s->ss ? sift_session_ctx(s->ss) : NULL;
	return ctx ? sift_ctx_get(ctx, SIFT_I_QUEUE_ID) : NULL;
}

static void set_reply(struct fd_session *s, enum sift_verdict v)
{
	const char *code, *xcode, *text;
	struct sift_ctx *ctx = sift_session_ctx(s->ss);
	if (ctx)
		sift_result_reply(sift_ctx_result(ctx), v, &code, &xcode, &text);
	else /* a command before connect */
		sift_reply_default(v, &code, &xcode, &text);
	if (s->out->setreply(s->arg, code, xcode, text) < 0)
		sift_log_msg(LOG_ERR, qid(s), "filterd", "the milter library refused the reply \"%s %s %s\"",
			     code, xcode ? xcode : "", text);
}

/* A verdict the MTA acts on now; msg_level: it ends the message (all but a
 * recipient's REJECT/TEMPFAIL). */
static enum fd_status to_status(struct fd_session *s, enum sift_verdict v, bool msg_level)
{
	switch (v) {
	case SIFT_REJECT:
	case SIFT_TEMPFAIL:
		set_reply(s, v);
		if (msg_level)
			sift_session_end(s->ss, v);
		return v == SIFT_REJECT ? FD_REJECT : FD_TEMPFAIL;
	case SIFT_DISCARD:
		sift_session_end(s->ss, v);
		return FD_DISCARD;
	default:
		return FD_CONTINUE;
	}
}

/* filterd's own TEMPFAIL at end of message (an edit or the release failed). */
static enum fd_status local_tempfail(struct fd_session *s)
{
	static const char text[] = "Temporary local problem, try again later";
	struct sift_ctx *ctx = sift_session_ctx(s->ss);
	if (ctx && sift_ctx_in_msg(ctx)) {
		sift_ctx_reply(ctx, "451", "4.3.0", text);
		return to_status(s, SIFT_TEMPFAIL, true);
	}
	/* Outside a message the context's result is the connection's (a
	 * HELO's verdict and its reply, which stand for the next HELO):
	 * this reply goes to the MTA alone. */
	s->out->setreply(s->arg, "451", "4.3.0", text);
	return FD_TEMPFAIL;
}

const char *fd_session_negotiate(struct fd_session *s, unsigned long f0, unsigned long f1, unsigned long *pf0,
				 unsigned long *pf1)
{
	/* Counted here, the first point both engines share: libmilter calls
	 * no callback before it, the native engine accepts earlier. */
	if (!s->counted) {
		s->counted = true;
		sift_metrics_conn(1);
	}
	if (!s->ss) { /* nothing asked for: every command gets tempfail */
		*pf0 = *pf1 = 0;
		s->nr = 0;
		return NULL;
	}
	struct sift_gen *g = sift_session_gen(s->ss);
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
	/* Header values go both ways with their leading space (plugins see
	 * them byte-exact, signatures cover them): an MTA without
	 * SMFIP_HDR_LEADSPC strips it from what it sends and adds one to
	 * what it gets, so a header would come out "Name:  value". */
	if (!(f1 & SMFIP_HDR_LEADSPC) && (need_hdrs || need_body || (want & (MP_A_ADDHDRS | MP_A_CHGHDRS))))
		return "the MTA does not offer SMFIP_HDR_LEADSPC (milter protocol 6: Postfix 2.6, "
		       "Sendmail 8.14 or later), which filterd needs to read and edit headers exactly";
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
	return NULL;
}

enum fd_status fd_session_connect(struct fd_session *s, const char *hostname, const char *addr,
				  const char *port)
{
	if (!s->ss)
		return stopped(s, false);
	enum sift_verdict r = sift_session_connect(s->ss, hostname, addr, port);
	/* No reply text at connect (libmilter refuses it there); Postfix
	 * applies the verdict to the next command. */
	if (r == SIFT_REJECT)
		return FD_REJECT;
	if (r == SIFT_TEMPFAIL)
		return FD_TEMPFAIL;
	return reply_or_none(s, SMFIP_NR_CONN, FD_CONTINUE);
}

enum fd_status fd_session_helo(struct fd_session *s, const char *helo)
{
	if (!s->ss)
		return stopped(s, true);
	return reply_or_none(s, SMFIP_NR_HELO, to_status(s, sift_session_helo(s->ss, helo), false));
}

enum fd_status fd_session_envfrom(struct fd_session *s, const char *argv0)
{
	if (!s->ss)
		return stopped(s, true);
	return reply_or_none(s, SMFIP_NR_MAIL, to_status(s, sift_session_mail(s->ss, argv0), true));
}

enum fd_status fd_session_envrcpt(struct fd_session *s, const char *argv0)
{
	if (!s->ss)
		return stopped(s, true);
	enum sift_verdict v = sift_session_rcpt(s->ss, argv0);
	return reply_or_none(s, SMFIP_NR_RCPT, to_status(s, v, v == SIFT_DISCARD));
}

enum fd_status fd_session_data(struct fd_session *s)
{
	if (!s->ss)
		return stopped(s, true);
	return reply_or_none(s, SMFIP_NR_DATA, to_status(s, sift_session_data(s->ss), true));
}

/* The reply to a content stage: none when negotiated so (a final verdict
 * waits in the core's result for end of message), else the verdict now. */
static enum fd_status content_reply(struct fd_session *s, unsigned long nr_flag, enum sift_verdict v)
{
	return (s->nr & nr_flag) ? FD_NOREPLY : to_status(s, v, true);
}

enum fd_status fd_session_header(struct fd_session *s, const char *name, const char *value)
{
	if (!s->ss)
		return stopped(s, true);
	return content_reply(s, SMFIP_NR_HDR, sift_session_header(s->ss, name, value));
}

enum fd_status fd_session_eoh(struct fd_session *s)
{
	if (!s->ss)
		return stopped(s, true);
	return content_reply(s, SMFIP_NR_EOH, sift_session_eoh(s->ss));
}

enum fd_status fd_session_body(struct fd_session *s, const unsigned char *buf, size_t len)
{
	if (!s->ss)
		return stopped(s, true);
	return content_reply(s, SMFIP_NR_BODY, sift_session_body(s->ss, buf, len));
}

static int apply_edits(struct fd_session *s)
{
	const struct sift_result *r = sift_ctx_result(sift_session_ctx(s->ss));
	for (const struct sift_edit *e = r->edits; e; e = e->next) {
		int rc;
		switch (e->op) {
		case SIFT_EDIT_ADD:
			rc = s->out->addheader(s->arg, e->name, e->value);
			break;
		case SIFT_EDIT_INSERT:
			rc = s->out->insheader(s->arg, (int)e->idx, e->name, e->value);
			break;
		default:
			rc = s->out->chgheader(s->arg, e->name, (int)e->idx, e->value);
			break;
		}
		if (rc < 0) {
			sift_log_msg(LOG_ERR, qid(s), "filterd", "could not edit header %s", e->name);
			return -1;
		}
	}
	return 0;
}

/* X-Sift-Release headers never leave filterd. */
static int remove_release_headers(struct fd_session *s)
{
	for (unsigned i = sift_session_release_headers(s->ss); i >= 1; i--)
		if (s->out->chgheader(s->arg, SIFT_RELEASE_HEADER, (int)i, NULL) < 0)
			return -1;
	return 0;
}

/* A released message: delivered as it is, once (the token is consumed). */
static enum fd_status release_eom(struct fd_session *s)
{
	const char *id = sift_session_release_id(s->ss);
	const char *dir = sift_gen_common(sift_session_gen(s->ss))->quarantine_directory;
	if (sift_quarantine_release_consume(dir, sift_session_release_token(s->ss)) < 0) {
		sift_log_msg(LOG_WARNING, qid(s), "filterd",
			     "quarantine release %s: token already used or not removable", id);
		return local_tempfail(s);
	}
	sift_log_msg(LOG_INFO, qid(s), "filterd", "quarantine release %s: delivered without scanning", id);
	sift_session_end(s->ss, SIFT_DUNNO);
	return FD_CONTINUE;
}

enum fd_status fd_session_eom(struct fd_session *s)
{
	if (!s->ss)
		return stopped(s, true);
	struct sift_ctx *ctx = sift_session_ctx(s->ss);
	if (!ctx) /* before connect */
		return to_status(s, SIFT_TEMPFAIL, true);
	if (!sift_ctx_in_msg(ctx)) {
		/* No message in progress: the rest of a message discarded at
		 * RCPT stays discarded; any other message was never scanned
		 * and is not accepted either. */
		enum sift_verdict d = sift_session_eom(s->ss);
		if (d == SIFT_DUNNO) {
			sift_log_msg(LOG_WARNING, qid(s), "filterd",
				     "end of message without a message in progress: tempfail");
			return local_tempfail(s);
		}
		return to_status(s, d, true);
	}
	enum sift_verdict v = sift_session_eom(s->ss);
	if (v != SIFT_DUNNO)
		return to_status(s, v, true);
	if (remove_release_headers(s) < 0)
		return local_tempfail(s);
	if (apply_edits(s) < 0) /* a released message's: the signers' */
		return local_tempfail(s);
	if (sift_session_release_id(s->ss))
		return release_eom(s);
	const struct sift_result *r = sift_ctx_result(ctx);
	if (r->hold) {
		char *reason = sift_reply_format(NULL, NULL,
						 r->hold_reason ? r->hold_reason : "held by filterd", true);
		int rc = s->out->quarantine(s->arg, reason);
		free(reason);
		if (rc < 0)
			return local_tempfail(s);
	}
	sift_session_end(s->ss, SIFT_DUNNO);
	return FD_CONTINUE;
}

void fd_session_abort(struct fd_session *s)
{
	if (s->ss)
		sift_session_abort(s->ss);
}
