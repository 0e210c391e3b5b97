/*
 * milter.c - the libmilter glue: the only file that includes
 * <libmilter/mfapi.h>. Each MTA connection gets a struct sift_ctx (stored
 * with smfi_setpriv: Debian's libmilter hands consecutive callbacks of one
 * connection to different worker threads, so nothing lives in thread-local
 * storage). The context holds the configuration generation that was current
 * when the connection started, so a reload never changes the configuration
 * under a running connection.
 *
 * Negotiation asks the MTA only for what the loaded plugins need: the
 * actions are the union of the plugins' declared actions (plus quarantine,
 * which the HOLD verdict uses), the message stages are skipped when no
 * plugin looks at the message, and header callbacks need no reply when no
 * plugin has a header hook. Header values are always received with their
 * leading white space (SMFIP_HDR_LEADSPC), so plugins see them byte-exact.
 *
 * Header edits queued by plugins are applied at end of message, which is
 * all libmilter allows.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "filterd.h"

static const struct filterd_conf *fconf;

/* Per MTA connection: the generation chosen at negotiation (the one the
 * context then uses, so that what was negotiated and what runs agree). */
struct conn {
	struct sift_gen *gen;
	struct sift_ctx *ctx;
	unsigned long nr; /* SMFIP_NR_* steps negotiated: no reply is expected */
};

/* The reply of a callback whose stage was negotiated as no-reply: the
 * verdict of such a stage is always DUNNO (no plugin implements it). */
static sfsistat reply_or_none(SMFICTX *m, unsigned long nr_flag, sfsistat st)
{
	struct conn *c = smfi_getpriv(m);
	if (c && (c->nr & nr_flag))
		return SMFIS_NOREPLY;
	return st;
}

static struct conn *getconn(SMFICTX *m)
{
	struct conn *c = smfi_getpriv(m);
	if (!c) {
		c = sift_calloc(1, sizeof(*c));
		c->gen = sift_gen_current();
		smfi_setpriv(m, c);
	}
	return c;
}

static struct sift_ctx *getctx(SMFICTX *m)
{
	struct conn *c = smfi_getpriv(m);
	return c ? c->ctx : NULL;
}

static const char *macro_fn(void *arg, const char *name)
{
	return smfi_getsymval((SMFICTX *)arg, (char *)name);
}

static void set_deadline(struct sift_ctx *ctx, bool content)
{
	long long ms = content ? fconf->content_deadline : fconf->command_deadline;
	sift_ctx_set_deadline(ctx, sift_now_ms() + ms);
}

static void update_qid(SMFICTX *m, struct sift_ctx *ctx)
{
	const char *qid = smfi_getsymval(m, "i");
	if (qid && *qid)
		sift_ctx_set(ctx, SIFT_I_QUEUE_ID, qid);
}

/* libmilter passes reply text to printf-like code in the MTA: double '%'. */
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

static void set_reply(SMFICTX *m, struct sift_ctx *ctx, enum sift_verdict v)
{
	const struct sift_result *r = sift_ctx_result(ctx);
	const char *code = r->reply_code, *xcode = r->reply_xcode, *text = r->reply_text;
	if (!code) {
		code = v == SIFT_REJECT ? "550" : "451";
		xcode = v == SIFT_REJECT ? "5.7.1" : "4.7.1";
	}
	if (!text)
		text = v == SIFT_REJECT ? "Message rejected" : "Try again later";
	char *t = escape_pct(text);
	if (smfi_setreply(m, (char *)code, (char *)xcode, t) != MI_SUCCESS)
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

/* Ends the message after a final verdict the MTA will act on (libmilter
 * calls no abort then), with the summary line. */
static void finish_msg(struct sift_ctx *ctx, enum sift_verdict v)
{
	if (!sift_ctx_in_msg(ctx))
		return;
	const struct sift_result *r = sift_ctx_result(ctx);
	char *sum = sift_ctx_summary(ctx, r->hold && v == SIFT_DUNNO ? "hold" : action_word(v));
	const char *qid = NULL;
	sift_log_msg(LOG_INFO, qid = sift_host_table.get(ctx, SIFT_I_QUEUE_ID), "filterd", "%s", sum);
	free(sum);
	sift_ctx_msg_end(ctx, false);
}

static sfsistat to_smfis(SMFICTX *m, struct sift_ctx *ctx, enum sift_verdict v, bool msg_level)
{
	switch (v) {
	case SIFT_REJECT:
	case SIFT_TEMPFAIL:
		set_reply(m, ctx, v);
		if (msg_level)
			finish_msg(ctx, v);
		return v == SIFT_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
	case SIFT_DISCARD:
		finish_msg(ctx, v);
		return SMFIS_DISCARD;
	default:
		return SMFIS_CONTINUE;
	}
}

static sfsistat cb_negotiate(SMFICTX *m, unsigned long f0, unsigned long f1, unsigned long f2,
			     unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
			     unsigned long *pf3)
{
	struct conn *c = getconn(m);
	struct sift_gen *g = c->gen;
	unsigned acts = sift_gen_actions(g), phases = sift_gen_phases(g), flags = sift_gen_flags(g);

	unsigned long want = SMFIF_QUARANTINE;
	if (acts & SIFT_A_ADDHDRS)
		want |= SMFIF_ADDHDRS;
	if (acts & SIFT_A_CHGHDRS)
		want |= SMFIF_CHGHDRS;
	if (acts & SIFT_A_CHGBODY)
		want |= SMFIF_CHGBODY;
	*pf0 = want & f0;

	unsigned long steps = 0;
	bool need_hdrs = phases & ((1u << SIFT_PH_HEADER) | (1u << SIFT_PH_EOH) | (1u << SIFT_PH_EOM));
	bool need_body = (phases & (1u << SIFT_PH_BODY)) || (flags & SIFT_F_NEED_BODY);
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
		     {SIFT_PH_MAIL, SMFIP_NR_MAIL},	{SIFT_PH_RCPT, SMFIP_NR_RCPT},
		     {SIFT_PH_DATA, SMFIP_NR_DATA},	{SIFT_PH_HEADER, SMFIP_NR_HDR},
		     {SIFT_PH_EOH, SMFIP_NR_EOH},	{SIFT_PH_BODY, SMFIP_NR_BODY}};
	for (size_t i = 0; i < sizeof(nrmap) / sizeof(nrmap[0]); i++)
		if (!(phases & (1u << nrmap[i].ph)) && (f1 & nrmap[i].nr))
			steps |= nrmap[i].nr;
	steps |= SMFIP_NR_UNKN & f1;
	*pf1 = steps & f1;
	c->nr = *pf1 & (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA |
			SMFIP_NR_HDR | SMFIP_NR_EOH | SMFIP_NR_BODY);
	*pf2 = *pf3 = 0;
	return SMFIS_CONTINUE;
}

static sfsistat cb_connect(SMFICTX *m, char *hostname, _SOCK_ADDR *sa)
{
	struct conn *c = getconn(m);
	if (c->ctx)
		sift_ctx_free(c->ctx);
	struct sift_ctx *ctx = c->ctx = sift_ctx_new(c->gen, SIFT_FILTERD);
	sift_ctx_set_macro_fn(ctx, macro_fn, m);
	set_deadline(ctx, false);

	char addr[INET6_ADDRSTRLEN] = "";
	char port[8] = "";
	if (sa && sa->sa_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, addr, sizeof(addr));
		snprintf(port, sizeof(port), "%u", ntohs(sin->sin_port));
	} else if (sa && sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;
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
	/* libmilter's hostname is "[ip]" when the MTA has no verified name. */
	sift_ctx_set(ctx, SIFT_I_CLIENT_NAME, hostname && *hostname != '[' ? hostname : "unknown");
	const char *v;
	if ((v = smfi_getsymval(m, "{client_ptr}")))
		sift_ctx_set(ctx, SIFT_I_CLIENT_PTR, v);
	if ((v = smfi_getsymval(m, "{daemon_name}")))
		sift_ctx_set(ctx, SIFT_I_DAEMON_NAME, v);
	if ((v = smfi_getsymval(m, "j")))
		sift_ctx_set(ctx, SIFT_I_MYHOSTNAME, v);
	sift_ctx_choose_profile(ctx);
	enum sift_verdict r = sift_run(ctx, SIFT_PH_CONNECT);
	/* No reply text at connect (libmilter refuses it there); Postfix
	 * applies the verdict to the next command. DISCARD is not allowed. */
	if (r == SIFT_REJECT)
		return SMFIS_REJECT;
	if (r == SIFT_TEMPFAIL)
		return SMFIS_TEMPFAIL;
	return reply_or_none(m, SMFIP_NR_CONN, SMFIS_CONTINUE);
}

static sfsistat cb_helo(SMFICTX *m, char *helo)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, false);
	sift_ctx_set(ctx, SIFT_I_HELO, helo);
	enum sift_verdict r = sift_run(ctx, SIFT_PH_HELO);
	if (r == SIFT_DISCARD)
		r = SIFT_DUNNO;
	return reply_or_none(m, SMFIP_NR_HELO, to_smfis(m, ctx, r, false));
}

static char *strip_brackets(const char *a)
{
	size_t n = strlen(a);
	if (n >= 2 && a[0] == '<' && a[n - 1] == '>')
		return sift_strndup(a + 1, n - 2);
	return sift_strdup(a);
}

static sfsistat cb_envfrom(SMFICTX *m, char **argv)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, false);
	sift_ctx_msg_begin(ctx);
	char *s = strip_brackets(argv && argv[0] ? argv[0] : "<>");
	sift_ctx_set(ctx, SIFT_I_SENDER, s);
	free(s);
	const char *v = smfi_getsymval(m, "{auth_authen}");
	sift_ctx_set(ctx, SIFT_I_SASL_USERNAME, v && *v ? v : NULL);
	v = smfi_getsymval(m, "{auth_type}");
	sift_ctx_set(ctx, SIFT_I_SASL_METHOD, v && *v ? v : NULL);
	v = smfi_getsymval(m, "{auth_author}");
	sift_ctx_set(ctx, SIFT_I_SASL_SENDER, v && *v ? v : NULL);
	sift_ctx_choose_profile(ctx);
	return reply_or_none(m, SMFIP_NR_MAIL, to_smfis(m, ctx, sift_run(ctx, SIFT_PH_MAIL), true));
}

static sfsistat cb_envrcpt(SMFICTX *m, char **argv)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, false);
	char *r = strip_brackets(argv && argv[0] ? argv[0] : "<>");
	sift_ctx_set(ctx, SIFT_I_RCPT, r);
	enum sift_verdict v = sift_run(ctx, SIFT_PH_RCPT);
	if (v == SIFT_DUNNO)
		sift_ctx_add_rcpt(ctx, r);
	free(r);
	return reply_or_none(m, SMFIP_NR_RCPT, to_smfis(m, ctx, v, v == SIFT_DISCARD));
}

static sfsistat cb_data(SMFICTX *m)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, false);
	update_qid(m, ctx);
	return reply_or_none(m, SMFIP_NR_DATA, to_smfis(m, ctx, sift_run(ctx, SIFT_PH_DATA), true));
}

static sfsistat cb_header(SMFICTX *m, char *name, char *value)
{
	struct conn *c = smfi_getpriv(m);
	bool nr_hdr = c && (c->nr & SMFIP_NR_HDR);
	struct sift_ctx *ctx = c ? c->ctx : NULL;
	if (!ctx)
		return nr_hdr ? SMFIS_NOREPLY : SMFIS_TEMPFAIL;
	set_deadline(ctx, true);
	/* libmilter joins folded lines with a bare LF: restore CRLF. */
	struct sift_buf b = {0};
	for (const char *p = value; *p; p++) {
		if (*p == '\n' && (p == value || p[-1] != '\r'))
			sift_buf_add(&b, "\r", 1);
		sift_buf_add(&b, p, 1);
	}
	enum sift_verdict v = sift_run_header(ctx, name, sift_buf_str(&b));
	sift_buf_free(&b);
	if (nr_hdr)
		return SMFIS_NOREPLY; /* no header hook: v is always DUNNO here */
	return to_smfis(m, ctx, v, true);
}

static sfsistat cb_eoh(SMFICTX *m)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, true);
	update_qid(m, ctx);
	return reply_or_none(m, SMFIP_NR_EOH, to_smfis(m, ctx, sift_run(ctx, SIFT_PH_EOH), true));
}

static sfsistat cb_body(SMFICTX *m, unsigned char *buf, size_t len)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, true);
	return reply_or_none(m, SMFIP_NR_BODY, to_smfis(m, ctx, sift_run_body(ctx, buf, len), true));
}

static int apply_edits(SMFICTX *m, struct sift_ctx *ctx)
{
	const struct sift_result *r = sift_ctx_result(ctx);
	for (const struct sift_edit *e = r->edits; e; e = e->next) {
		/* With SMFIP_HDR_LEADSPC we control the space after the colon;
		 * folded values use bare LF as libmilter expects. */
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
			rc = smfi_addheader(m, e->name, v);
			break;
		case SIFT_EDIT_INSERT:
			rc = smfi_insheader(m, (int)e->idx, e->name, v);
			break;
		default:
			rc = smfi_chgheader(m, e->name, (int)e->idx, v);
			break;
		}
		free(v);
		if (rc != MI_SUCCESS) {
			sift_log_msg(LOG_ERR, sift_host_table.get(ctx, SIFT_I_QUEUE_ID), "filterd",
				     "could not edit header %s", e->name);
			return -1;
		}
	}
	return 0;
}

static sfsistat cb_eom(SMFICTX *m)
{
	struct sift_ctx *ctx = getctx(m);
	if (!ctx)
		return SMFIS_TEMPFAIL;
	set_deadline(ctx, true);
	update_qid(m, ctx);
	if (!sift_ctx_in_msg(ctx))
		return SMFIS_CONTINUE;
	enum sift_verdict v = sift_run(ctx, SIFT_PH_EOM);
	if (v != SIFT_DUNNO)
		return to_smfis(m, ctx, v, true);
	if (apply_edits(m, ctx) < 0) {
		sift_host_table.reply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
		return to_smfis(m, ctx, SIFT_TEMPFAIL, true);
	}
	const struct sift_result *r = sift_ctx_result(ctx);
	if (r->hold) {
		char *reason = escape_pct(r->hold_reason ? r->hold_reason : "held by filterd");
		if (smfi_quarantine(m, reason) != MI_SUCCESS) {
			free(reason);
			sift_host_table.reply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
			return to_smfis(m, ctx, SIFT_TEMPFAIL, true);
		}
		free(reason);
	}
	finish_msg(ctx, SIFT_DUNNO);
	return SMFIS_CONTINUE;
}

static sfsistat cb_abort(SMFICTX *m)
{
	struct sift_ctx *ctx = getctx(m);
	if (ctx)
		sift_ctx_msg_end(ctx, true);
	return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *m)
{
	struct conn *c = smfi_getpriv(m);
	if (c) {
		sift_ctx_free(c->ctx);
		sift_gen_unref(c->gen);
		free(c);
		smfi_setpriv(m, NULL);
	}
	return SMFIS_CONTINUE;
}

/* "inet:127.0.0.1:8891" (Postfix's form) becomes "inet:8891@127.0.0.1"
 * (libmilter's); libmilter's own forms pass through. */
static char *milter_endpoint(const char *spec)
{
	const char *rest = NULL;
	const char *kind = NULL;
	if (strncmp(spec, "inet:", 5) == 0)
		kind = "inet", rest = spec + 5;
	else if (strncmp(spec, "inet6:", 6) == 0)
		kind = "inet6", rest = spec + 6;
	if (!rest || strchr(rest, '@'))
		return sift_strdup(spec);
	const char *colon = strrchr(rest, ':');
	if (!colon)
		return sift_asprintf("%s:%s@127.0.0.1", kind, rest);
	char *host = sift_strndup(rest, (size_t)(colon - rest));
	if (host[0] == '[') {
		char *h = sift_strndup(host + 1, strlen(host) > 2 ? strlen(host) - 2 : 0);
		free(host);
		host = h;
	}
	char *r = sift_asprintf("%s:%s@%s", kind, colon + 1, host);
	free(host);
	return r;
}

int filterd_milter_setup(const struct filterd_conf *conf, char **err_r)
{
	fconf = conf;

	static struct smfiDesc desc = {
	    .xxfi_name = "sift-filterd",
	    .xxfi_version = SMFI_VERSION,
	    .xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGBODY,
	    .xxfi_connect = cb_connect,
	    .xxfi_helo = cb_helo,
	    .xxfi_envfrom = cb_envfrom,
	    .xxfi_envrcpt = cb_envrcpt,
	    .xxfi_header = cb_header,
	    .xxfi_eoh = cb_eoh,
	    .xxfi_body = cb_body,
	    .xxfi_eom = cb_eom,
	    .xxfi_abort = cb_abort,
	    .xxfi_close = cb_close,
	    .xxfi_data = cb_data,
	    .xxfi_negotiate = cb_negotiate,
	};
	char *ep = milter_endpoint(conf->listen);
	if (smfi_setconn(ep) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
		*err_r = sift_asprintf("cannot set up the milter on %s", conf->listen);
		free(ep);
		return -1;
	}
	smfi_setbacklog((int)conf->backlog);
	smfi_settimeout((int)(conf->milter_timeout / 1000));
	mode_t old = umask(0177);
	int rc = smfi_opensocket(true);
	umask(old);
	if (rc != MI_SUCCESS) {
		*err_r = sift_asprintf("cannot listen on %s (%s)", conf->listen, ep);
		free(ep);
		return -1;
	}
	const char *path = NULL;
	if (strncmp(ep, "unix:", 5) == 0)
		path = ep + 5;
	else if (strncmp(ep, "local:", 6) == 0)
		path = ep + 6;
	if (path) {
		unsigned long mode = strtoul(conf->socket_mode, NULL, 8);
		gid_t gid = (gid_t)-1;
		uid_t uid = (uid_t)-1;
		if (*conf->socket_group) {
			struct group *gr = getgrnam(conf->socket_group);
			if (!gr) {
				*err_r = sift_asprintf("filterd_socket_group: unknown group %s", conf->socket_group);
				free(ep);
				return -1;
			}
			gid = gr->gr_gid;
		}
		if (*conf->user) {
			struct passwd *pw = getpwnam(conf->user);
			if (pw)
				uid = pw->pw_uid;
		}
		if (chmod(path, (mode_t)(mode & 0777)) < 0 ||
		    ((uid != (uid_t)-1 || gid != (gid_t)-1) && geteuid() == 0 && chown(path, uid, gid) < 0)) {
			*err_r = sift_asprintf("socket %s: %s", path, strerror(errno));
			free(ep);
			return -1;
		}
	}
	free(ep);
	return 0;
}

int filterd_milter_run(void)
{
	return smfi_main() == MI_SUCCESS ? 0 : -1;
}
