/*
 * spf.c - the `spf` plugin: SPF (RFC 7208) checks in policyd, results for
 * scoring and reporting in filterd.
 *
 * policyd (policy hook, inbound profile): at MAIL or RCPT it evaluates the
 * MAIL FROM identity (the HELO identity when the sender is null, and first
 * when spf_helo_check = yes) once per mail transaction - the result lives
 * in the message state, which policyd keys by Postfix's `instance` - and
 * answers every RCPT of that transaction from it:
 *   fail      -> spf_fail_action      (reject 550 5.7.23 <explanation>)
 *   softfail  -> spf_softfail_action  (prepend)
 *   temperror -> spf_temperror_action (DEFER_IF_PERMIT 4.7.24)
 *   permerror -> spf_permerror_action (prepend)
 *   others    -> PREPEND Received-SPF (once per transaction: given at
 *                every request through host->policy_action_once, which
 *                drops it once a reply of the transaction carried it)
 * Clients that authenticated, that are in originating_networks (the
 * originating profile) or in spf_trusted_clients are skipped.
 *
 * filterd (eoh hook): evaluates SPF itself and prepends Received-SPF,
 * unless the topmost Received-SPF (above the first Received:, with our
 * receiver=) already says the same. Only spf_filterd_mode = header takes
 * that header's word without a check: filterd cannot tell policyd's
 * PREPEND from a header the sender wrote (Postfix shows milters none of
 * its own Received:). Either way it adds the symbol SPF_<RESULT> with its
 * configured score and an Authentication-Results header with an spf=
 * entry.
 *
 * The evaluator (spf_eval.c) is our own; the README says why libspf2 is
 * not used. DNS goes through the host's shared resolver (host->dns_query),
 * whose cache serves repeated lookups.
 *
 * spf_tool_report() serves `siftctl spf check` (tool.c): it runs the same
 * evaluation and formatting with an initialised configuration.
 *
 * Threading: the configuration block is read-only after init; per-message
 * state comes from host->msg().
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <time.h>

#include "spf_eval.h"
#include "tool.h"

enum act { A_REJECT, A_DEFER, A_DEFER_IF_PERMIT, A_PREPEND };
enum fmode { FM_HEADER_OR_CHECK, FM_HEADER, FM_CHECK };

struct spf_conf {
	const char *receiver;
	const char *authserv_id;
	int fail_action, softfail_action, temperror_action, permerror_action;
	int helo_check;
	const struct sift_map *trusted_clients;
	long long timeout, dns_timeout;
	long long max_lookups, max_void_lookups, max_names;
	const char *default_explanation;
	const char *reject_text;
	int filterd_mode;
	int add_header;
	const char *score_text[SPF_RESULT_MAX];
	/* derived at init */
	double score[SPF_RESULT_MAX];
	char hostname[256]; /* receiver fallback outside a context (siftctl) */
};

struct spf_msg {
	bool done;
	struct spf_res res; /* explanation kept in msg memory (expl) */
	const char *expl;   /* msg_alloc'd copy, or NULL */
	const char *header; /* Received-SPF value (msg_alloc'd) */
};

static const struct sift_host *host;

/* Maps the action enums of the four settings to enum act. */
static const enum act fail_acts[] = {A_REJECT, A_DEFER, A_PREPEND};
static const enum act softfail_acts[] = {A_PREPEND, A_DEFER, A_REJECT};
static const enum act temperror_acts[] = {A_DEFER_IF_PERMIT, A_DEFER, A_PREPEND};
static const enum act permerror_acts[] = {A_PREPEND, A_DEFER_IF_PERMIT, A_REJECT};

#define OFF(f) offsetof(struct spf_conf, f)
static const struct sift_param params[] = {
	{"receiver", SIFT_P_STRING, "$myhostname", 0, 0, OFF(receiver), NULL,
	 "our host name in Received-SPF receiver= and %{r} (empty: the host name)"},
	{"authserv_id", SIFT_P_STRING, "$authserv_id", 0, 0, OFF(authserv_id), NULL,
	 "authserv-id of the Authentication-Results header (empty: myhostname)"},
	{"fail_action", SIFT_P_ENUM, "reject", 0, 0, OFF(fail_action), "reject|defer|prepend",
	 "what a fail result does: reject (550 5.7.23), defer (451 4.7.23) or prepend only"},
	{"softfail_action", SIFT_P_ENUM, "prepend", 0, 0, OFF(softfail_action), "prepend|defer|reject",
	 "what a softfail result does"},
	{"temperror_action", SIFT_P_ENUM, "defer_if_permit", 0, 0, OFF(temperror_action),
	 "defer_if_permit|defer|prepend", "what a temperror result does"},
	{"permerror_action", SIFT_P_ENUM, "prepend", 0, 0, OFF(permerror_action),
	 "prepend|defer_if_permit|reject", "what a permerror result does"},
	{"helo_check", SIFT_P_BOOL, "no", 0, 0, OFF(helo_check), NULL,
	 "also check the HELO identity first; a HELO fail decides (RFC 7208 2.3)"},
	{"trusted_clients", SIFT_P_MAP, "", 0, 0, OFF(trusted_clients), NULL,
	 "clients (address, or verified name) never checked: relays, secondary MX"},
	{"timeout", SIFT_P_TIME, "10s", 100, 300000, OFF(timeout), NULL,
	 "time limit of one whole SPF evaluation (then temperror)"},
	{"dns_timeout", SIFT_P_TIME, "5s", 100, 300000, OFF(dns_timeout), NULL,
	 "time limit of one DNS query (within spf_timeout)"},
	{"max_lookups", SIFT_P_INT, "10", 1, 100, OFF(max_lookups), NULL,
	 "DNS-querying terms allowed (RFC 7208: 10)"},
	{"max_void_lookups", SIFT_P_INT, "2", 0, 100, OFF(max_void_lookups), NULL,
	 "lookups with an empty answer allowed (RFC 7208: 2)"},
	{"max_names", SIFT_P_INT, "10", 1, 100, OFF(max_names), NULL,
	 "MX and PTR names looked at per term (RFC 7208: 10)"},
	{"default_explanation", SIFT_P_STRING, "%{c} is not allowed to send mail for %{o}", 0, 0,
	 OFF(default_explanation), NULL, "explanation when the domain gives none (SPF macros allowed)"},
	{"reject_text", SIFT_P_STRING, "SPF fail: %s", 0, 0, OFF(reject_text), NULL,
	 "reply text for a fail result; %s is the explanation (other results say what they are)"},
	{"filterd_mode", SIFT_P_ENUM, "header_or_check", 0, 0, OFF(filterd_mode),
	 "header_or_check|header|check",
	 "filterd: use our Received-SPF header, else check; header only; always check"},
	{"add_header", SIFT_P_BOOL, "yes", 0, 0, OFF(add_header), NULL,
	 "add a Received-SPF header (policyd: PREPEND; filterd: when it checked itself)"},
	{"dns_cache_size", SIFT_P_RETIRED, "", 0, 0, 0, NULL,
	 "the shared resolver's cache keeps DNS answers for their TTL"},
	{"dns_cache_max_ttl", SIFT_P_RETIRED, "", 0, 0, 0, NULL,
	 "the shared resolver's cache keeps DNS answers for their TTL"},
	{"score_none", SIFT_P_STRING, "0", 0, 0, OFF(score_text[SPF_NONE]), NULL, "score of SPF_NONE"},
	{"score_neutral", SIFT_P_STRING, "0.5", 0, 0, OFF(score_text[SPF_NEUTRAL]), NULL,
	 "score of SPF_NEUTRAL"},
	{"score_pass", SIFT_P_STRING, "-0.1", 0, 0, OFF(score_text[SPF_PASS]), NULL, "score of SPF_PASS"},
	{"score_fail", SIFT_P_STRING, "2", 0, 0, OFF(score_text[SPF_FAIL]), NULL, "score of SPF_FAIL"},
	{"score_softfail", SIFT_P_STRING, "1", 0, 0, OFF(score_text[SPF_SOFTFAIL]), NULL,
	 "score of SPF_SOFTFAIL"},
	{"score_temperror", SIFT_P_STRING, "0", 0, 0, OFF(score_text[SPF_TEMPERROR]), NULL,
	 "score of SPF_TEMPERROR"},
	{"score_permerror", SIFT_P_STRING, "0.5", 0, 0, OFF(score_text[SPF_PERMERROR]), NULL,
	 "score of SPF_PERMERROR"},
	SIFT_PARAM_END,
};
#undef OFF

static int spf_init(const struct sift_host *h, void *cv, char **err_r)
{
	struct spf_conf *c = cv;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, policy_action_once) + sizeof(h->policy_action_once)) {
		*err_r = strdup("this host has no once-per-transaction policy action "
				"(host->policy_action_once): too old");
		return -1;
	}
	for (int i = 0; i < SPF_RESULT_MAX; i++) {
		char *end;
		const char *t = c->score_text[i] ? c->score_text[i] : "0";
		c->score[i] = strtod(t, &end);
		if (end == t || *end) {
			char buf[160];
			snprintf(buf, sizeof(buf), "spf_score_%s: not a number: %s", spf_result_names[i], t);
			*err_r = strdup(buf);
			return -1;
		}
	}
	if (gethostname(c->hostname, sizeof(c->hostname) - 1) < 0 || !c->hostname[0])
		snprintf(c->hostname, sizeof(c->hostname), "localhost");
	return 0;
}

/* DNS for the evaluator: the shared resolver, whose cache serves repeated
 * lookups without a round trip through its thread. */
static struct sift_dns_result *dns_cb(void *arg, const char *name, int type, long timeout_ms)
{
	(void)arg;
	return host->dns_query(name, type, timeout_ms);
}

/* ---- formatting ------------------------------------------------------------ */

struct out {
	char *p;
	size_t len, cap;
};

static void out_add(struct out *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 256;
		while (cap < o->len + n + 1)
			cap *= 2;
		char *np = realloc(o->p, cap);
		if (!np)
			return;
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = 0;
}
static void out_adds(struct out *o, const char *s)
{
	out_add(o, s, strlen(s));
}

/* Text for a comment: no parentheses, backslashes or control characters,
 * at most max bytes. */
static void out_comment(struct out *o, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++) {
		char c = s[i];
		if (c == '(' || c == ')' || c == '\\' || (unsigned char)c < 0x20 || (unsigned char)c > 0x7e)
			c = '_';
		out_add(o, &c, 1);
	}
}

static bool atext(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c);
}

/* key=value; with value as dot-atom when possible, else quoted-string. */
static void out_kv(struct out *o, const char *key, const char *v)
{
	out_adds(o, " ");
	out_adds(o, key);
	out_adds(o, "=");
	bool dotatom = *v && v[0] != '.';
	for (size_t i = 0; v[i] && dotatom; i++)
		if (!atext((unsigned char)v[i]) && !(v[i] == '.' && v[i + 1] != '.' && v[i + 1]))
			dotatom = false;
	if (dotatom) {
		out_adds(o, v);
	} else {
		out_adds(o, "\"");
		for (size_t i = 0; v[i] && i < 512; i++) {
			unsigned char c = (unsigned char)v[i];
			if (c < 0x20 || c > 0x7e)
				c = '?';
			if (c == '"' || c == '\\')
				out_adds(o, "\\");
			char ch = (char)c;
			out_add(o, &ch, 1);
		}
		out_adds(o, "\"");
	}
	out_adds(o, ";");
}

static const char *receiver_name(const struct spf_conf *c, struct sift_ctx *ctx)
{
	if (*c->receiver)
		return c->receiver;
	const char *h = ctx ? host->get(ctx, SIFT_I_MYHOSTNAME) : NULL;
	if (h && *h)
		return h;
	return c->hostname;
}

/* The value of a Received-SPF header (RFC 7208 9.1), malloc'd. */
static char *received_spf(const struct spf_res *r, const char *receiver, const char *ip, const char *sender,
			  const char *helo)
{
	struct out o = {0};
	out_adds(&o, spf_result_names[r->result]);
	out_adds(&o, " (");
	out_comment(&o, receiver, 200);
	out_adds(&o, ": ");
	switch (r->result) {
	case SPF_PASS:
	case SPF_FAIL:
	case SPF_SOFTFAIL:
		out_adds(&o, r->result == SPF_SOFTFAIL ? "domain of transitioning " : "domain of ");
		out_comment(&o, r->sender, 200);
		out_adds(&o, r->result == SPF_PASS ? " designates " : " does not designate ");
		out_comment(&o, ip, 64);
		out_adds(&o, " as permitted sender");
		break;
	case SPF_NEUTRAL:
		out_comment(&o, ip, 64);
		out_adds(&o, " is neither permitted nor denied by domain of ");
		out_comment(&o, r->sender, 200);
		break;
	case SPF_NONE:
		if (!r->sender[0]) { /* spf_eval: longer than an address can be */
			out_adds(&o, "identity too long to be an address");
			break;
		}
		out_adds(&o, "domain of ");
		out_comment(&o, r->sender, 200);
		out_adds(&o, " does not provide an SPF record");
		break;
	case SPF_TEMPERROR:
	case SPF_PERMERROR:
		out_adds(&o, r->result == SPF_TEMPERROR ? "temporary" : "permanent");
		out_adds(&o, " error in processing during lookup of ");
		out_comment(&o, r->sender, 200);
		if (r->problem[0]) {
			out_adds(&o, ": ");
			out_comment(&o, r->problem, 160);
		}
		break;
	default:
		break;
	}
	out_adds(&o, ")");
	out_kv(&o, "receiver", receiver);
	out_kv(&o, "client-ip", ip);
	if (r->identity == SPF_ID_MAILFROM && sender && *sender)
		out_kv(&o, "envelope-from", sender);
	out_kv(&o, "helo", helo && *helo ? helo : "unknown");
	out_kv(&o, "identity", r->identity == SPF_ID_HELO ? "helo" : "mailfrom");
	if (r->result == SPF_PERMERROR && r->problem[0])
		out_kv(&o, "problem", r->problem);
	if (r->mechanism[0] && r->result != SPF_TEMPERROR && r->result != SPF_PERMERROR)
		out_kv(&o, "mechanism", r->mechanism);
	return o.p;
}

/* Runs the configured identities: HELO first when helo_check, then MAIL
 * FROM (or HELO for the null sender). Returns -1 for a bad address. */
static int evaluate(const struct spf_conf *c, struct sift_ctx *ctx, const char *ip, const char *sender,
		    const char *helo, struct spf_res *res)
{
	struct spf_req q;
	memset(&q, 0, sizeof(q));
	if (spf_parse_ip(ip, &q.family, q.addr) < 0)
		return -1;
	long budget = (long)c->timeout;
	if (ctx) {
		long left = host->time_left_ms(ctx) - 200;
		if (left < budget)
			budget = left > 50 ? left : 50;
	}
	q.sender = sender ? sender : "";
	q.helo = helo;
	q.receiver = receiver_name(c, ctx);
	q.dns = dns_cb;
	q.dns_arg = (void *)c;
	q.deadline_ms = spf_now_ms() + budget;
	q.dns_timeout_ms = (long)c->dns_timeout;
	q.max_lookups = (int)c->max_lookups;
	q.max_void = (int)c->max_void_lookups;
	q.max_names = (int)c->max_names;
	q.default_exp = c->default_explanation;
	if (c->helo_check && helo && *helo && q.sender[0]) {
		q.identity = SPF_ID_HELO;
		spf_eval(&q, res);
		if (res->result == SPF_FAIL)
			return 0;
		spf_res_free(res);
	}
	q.identity = SPF_ID_MAILFROM;
	spf_eval(&q, res);
	return 0;
}

static enum act action_for(const struct spf_conf *c, enum spf_result r)
{
	switch (r) {
	case SPF_FAIL:
		return fail_acts[c->fail_action];
	case SPF_SOFTFAIL:
		return softfail_acts[c->softfail_action];
	case SPF_TEMPERROR:
		return temperror_acts[c->temperror_action];
	case SPF_PERMERROR:
		return permerror_acts[c->permerror_action];
	default:
		return A_PREPEND;
	}
}

/* The reply text for a reject/defer; malloc'd. spf_reject_text words a
 * fail only: a softfail, temperror or permerror that is rejected or
 * deferred says which result it was ("SPF temperror for DOMAIN: ..."),
 * not that SPF failed. */
static char *reply_text(const struct spf_conf *c, const struct spf_res *r, const char *expl)
{
	char detail[800];
	if (r->result == SPF_FAIL && expl)
		snprintf(detail, sizeof(detail), "%s", expl);
	else if (r->result == SPF_TEMPERROR || r->result == SPF_PERMERROR)
		snprintf(detail, sizeof(detail), "SPF %s for %s%s%s", spf_result_names[r->result], r->domain,
			 r->problem[0] ? ": " : "", r->problem);
	else
		snprintf(detail, sizeof(detail), "SPF %s for %s", spf_result_names[r->result], r->domain);
	for (char *p = detail; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = ' ';
	const char *fmt = r->result == SPF_FAIL ? c->reject_text : "%s";
	const char *pct = strstr(fmt, "%s");
	struct out o = {0};
	if (pct) {
		out_add(&o, fmt, (size_t)(pct - fmt));
		out_adds(&o, detail);
		out_adds(&o, pct + 2);
	} else {
		out_adds(&o, *fmt ? fmt : detail);
	}
	return o.p;
}

/* ---- policyd --------------------------------------------------------------- */

static bool trusted(const struct spf_conf *c, struct sift_ctx *ctx)
{
	if (!c->trusted_clients)
		return false;
	const char *keys[2] = {host->get(ctx, SIFT_I_CLIENT_ADDR), host->get(ctx, SIFT_I_CLIENT_NAME)};
	for (int i = 0; i < 2; i++) {
		if (!keys[i] || !*keys[i] || strcmp(keys[i], "unknown") == 0)
			continue;
		char *v = NULL;
		int rc = host->map_lookup(c->trusted_clients, keys[i], &v);
		bool hit = rc == 1 && v && strcasecmp(v, "DUNNO") != 0 && strcasecmp(v, "no") != 0;
		free(v);
		if (hit)
			return true;
	}
	return false;
}

static char *msg_strdup(struct sift_ctx *ctx, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = host->msg_alloc(ctx, n);
	memcpy(p, s, n);
	return p;
}

/* Evaluates once per message; false when there is nothing to check. */
static bool msg_result(const struct spf_conf *c, struct sift_ctx *ctx, struct spf_msg *m)
{
	if (m->done)
		return true;
	const char *ip = host->get(ctx, SIFT_I_CLIENT_ADDR);
	const char *sender = host->get(ctx, SIFT_I_SENDER);
	const char *helo = host->get(ctx, SIFT_I_HELO);
	if (!ip || !*ip)
		return false;
	struct spf_res r;
	if (evaluate(c, ctx, ip, sender, helo, &r) < 0) {
		host->log(ctx, LOG_WARNING, "client address not understood: %s", ip);
		return false;
	}
	m->res = r;
	m->res.explanation = NULL;
	m->expl = r.explanation ? msg_strdup(ctx, r.explanation) : NULL;
	spf_res_free(&r);
	char *h = received_spf(&m->res, receiver_name(c, ctx), ip, sender, helo);
	m->header = msg_strdup(ctx, h ? h : "none");
	free(h);
	m->done = true;
	host->log(ctx, LOG_INFO, "%s identity=%s domain=%s client=%s mechanism=%s%s%s lookups=%d",
		  spf_result_names[m->res.result], m->res.identity == SPF_ID_HELO ? "helo" : "mailfrom",
		  m->res.domain, ip, m->res.mechanism[0] ? m->res.mechanism : "-",
		  m->res.problem[0] ? " problem=" : "", m->res.problem, m->res.lookups);
	return true;
}

static enum sift_verdict spf_policy(struct sift_ctx *ctx)
{
	const struct spf_conf *c = host->conf(ctx);
	const char *state = host->get(ctx, SIFT_I_PROTOCOL_STATE);
	if (!state || (strcasecmp(state, "RCPT") != 0 && strcasecmp(state, "MAIL") != 0))
		return SIFT_DUNNO;
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	const char *sasl = host->get(ctx, SIFT_I_SASL_USERNAME);
	if ((profile && strcmp(profile, "originating") == 0) || (sasl && *sasl) || trusted(c, ctx))
		return SIFT_DUNNO;
	struct spf_msg *m = host->msg(ctx);
	if (!msg_result(c, ctx, m))
		return SIFT_DUNNO;
	enum act a = action_for(c, m->res.result);
	const char *xcode = m->res.result == SPF_FAIL || m->res.result == SPF_SOFTFAIL ? "7.23" : "7.24";
	char code[8], x[8];
	switch (a) {
	case A_REJECT:
	case A_DEFER: {
		char *t = reply_text(c, &m->res, m->expl);
		snprintf(code, sizeof(code), "%s", a == A_REJECT ? "550" : "451");
		snprintf(x, sizeof(x), "%c.%s", a == A_REJECT ? '5' : '4', xcode);
		host->reply(ctx, code, x, t);
		free(t);
		return a == A_REJECT ? SIFT_REJECT : SIFT_TEMPFAIL;
	}
	case A_DEFER_IF_PERMIT: {
		char *t = reply_text(c, &m->res, m->expl);
		struct out o = {0};
		out_adds(&o, "DEFER_IF_PERMIT 4.");
		out_adds(&o, xcode);
		out_adds(&o, " ");
		out_adds(&o, t ? t : "SPF error");
		free(t);
		if (o.p)
			host->policy_action(ctx, o.p);
		free(o.p);
		return SIFT_DUNNO;
	}
	case A_PREPEND:
		/* At every request until a reply carried it: a reply where
		 * another action wins (a later plugin refuses this recipient)
		 * does not prepend it. */
		if (c->add_header) {
			struct out o = {0};
			out_adds(&o, "PREPEND Received-SPF: ");
			out_adds(&o, m->header);
			if (o.p)
				host->policy_action_once(ctx, o.p);
			free(o.p);
		}
		return SIFT_DUNNO;
	}
	return SIFT_DUNNO;
}

/* ---- filterd --------------------------------------------------------------- */

/* Finds key=value in a Received-SPF value (RFC 7208 9.1); copies the value
 * (unquoted). The value is read token by token: comments (nested, with
 * quoted-pairs) and quoted strings (with quoted-pairs) are skipped whole,
 * and a key matches only where a token starts - at the start, or after
 * white space, ';' or a comment - outside both. So an envelope-from or a
 * helo written as a quoted string holding "; helo=x" or a '(' can neither
 * plant a key nor hide the keys after it. */
static bool rspf_key(const char *v, const char *key, char *out, size_t n)
{
	size_t kl = strlen(key);
	bool start = true; /* at the start of a token */
	const char *p = v;
	while (*p) {
		if (*p == '(') {
			int depth = 0;
			for (; *p; p++) {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '(')
					depth++;
				else if (*p == ')' && --depth == 0)
					break;
			}
			if (*p)
				p++;
			start = true;
			continue;
		}
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++)
				if (*p == '\\' && p[1])
					p++;
			if (*p)
				p++;
			start = false;
			continue;
		}
		if (*p == ';' || isspace((unsigned char)*p)) {
			start = true;
			p++;
			continue;
		}
		if (!start || strncasecmp(p, key, kl) != 0 || p[kl] != '=') {
			start = false;
			p++;
			continue;
		}
		p += kl + 1;
		size_t k = 0;
		if (*p == '"') {
			for (p++; *p && *p != '"' && k + 1 < n; p++) {
				if (*p == '\\' && p[1])
					p++;
				out[k++] = *p;
			}
		} else {
			for (; *p && *p != ';' && *p != '(' && !isspace((unsigned char)*p) && k + 1 < n; p++)
				out[k++] = *p;
		}
		out[k] = 0;
		return true;
	}
	return false;
}

/* Our own Received-SPF, if any: returns its result, fills identity values.
 * Only the MTA's position shows that it is ours: above the MTA's own
 * Received:. Postfix shows milters none of its own Received: headers, and
 * a Received: below it may be the sender's too, so spf_filterd_mode =
 * header_or_check never takes the header's word (see spf_eoh). */
static int own_header(const struct spf_conf *c, struct sift_ctx *ctx, int *identity, char *from, size_t fn,
		      char *helo, size_t hn)
{
	size_t n = host->header_count(ctx);
	for (size_t i = 0; i < n; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (strcasecmp(h->name, "Received") == 0)
			return -1; /* below our MTA's Received: not ours */
		if (strcasecmp(h->name, "Received-SPF") != 0)
			continue;
		const char *v = h->value;
		while (*v && isspace((unsigned char)*v))
			v++;
		int res = -1;
		for (int k = 0; k < SPF_RESULT_MAX; k++) {
			size_t l = strlen(spf_result_names[k]);
			if (strncasecmp(v, spf_result_names[k], l) == 0 &&
			    (!v[l] || isspace((unsigned char)v[l]) || v[l] == '(' || v[l] == ';'))
				res = k;
		}
		char recv[256], id[32];
		if (res < 0 || !rspf_key(v, "receiver", recv, sizeof(recv)) ||
		    strcasecmp(recv, receiver_name(c, ctx)) != 0)
			return -1; /* the topmost one is not ours */
		*identity = rspf_key(v, "identity", id, sizeof(id)) && strcasecmp(id, "helo") == 0
				    ? SPF_ID_HELO
				    : SPF_ID_MAILFROM;
		if (!rspf_key(v, "envelope-from", from, fn))
			from[0] = 0;
		if (!rspf_key(v, "helo", helo, hn))
			helo[0] = 0;
		/* The header is ours, so this transaction's MAIL FROM and HELO
		 * are what it was written for: where the MTA gave them, they
		 * name the identity, not text read back from the header. */
		const char *s = host->get(ctx, SIFT_I_SENDER);
		if (s && *s)
			snprintf(from, fn, "%s", s);
		s = host->get(ctx, SIFT_I_HELO);
		if (s && *s)
			snprintf(helo, hn, "%s", s);
		return res;
	}
	return -1;
}

/* A property value for Authentication-Results: the address when its local
 * part is a dot-atom, else the domain. */
static void ar_mailfrom(struct out *o, const char *addr)
{
	const char *at = strrchr(addr, '@');
	bool simple = at && at != addr;
	for (const char *p = addr; simple && p < at; p++)
		if (!atext((unsigned char)*p) && *p != '.')
			simple = false;
	const char *v = simple ? addr : at ? at + 1 : addr;
	bool plain = *v != 0;
	for (const char *p = v; *p && plain; p++)
		if (!isalnum((unsigned char)*p) && !strchr(".-_@+!#$%&'*/=?^`{|}~", *p))
			plain = false;
	if (plain) {
		out_adds(o, v);
		return;
	}
	/* Anything else (an address literal "[192.0.2.1]" as HELO, a
	 * space): a quoted-string, not a name made up with '_'. */
	out_adds(o, "\"");
	for (size_t i = 0; v[i] && i < 255; i++) {
		char ch = (unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e ? '?' : v[i];
		if (ch == '"' || ch == '\\')
			out_adds(o, "\\");
		out_add(o, &ch, 1);
	}
	out_adds(o, "\"");
}

/* Our result in the message's one Authentication-Results header
 * (host->auth_result), or a header of its own from an older host. */
static void auth_result(struct sift_ctx *ctx, const char *id, const char *resinfo)
{
	if (host->struct_size >= offsetof(struct sift_host, auth_result) + sizeof(host->auth_result) &&
	    host->auth_result) {
		host->auth_result(ctx, id, resinfo);
		return;
	}
	struct out o = {0};
	out_adds(&o, id);
	out_adds(&o, "; ");
	out_adds(&o, resinfo);
	if (o.p)
		host->header_insert(ctx, 0, "Authentication-Results", o.p);
	free(o.p);
}

/* Mail that came in without SMTP: Postfix hands what sendmail(1) submits
 * to non_smtpd_milters as a connection from 127.0.0.1 named "localhost"
 * that said HELO localhost. It has no SMTP client whose address SPF could
 * judge: checked, it would fail for our own domain. */
static bool non_smtp(struct sift_ctx *ctx)
{
	const char *ip = host->get(ctx, SIFT_I_CLIENT_ADDR);
	const char *name = host->get(ctx, SIFT_I_CLIENT_NAME);
	const char *helo = host->get(ctx, SIFT_I_HELO);
	return ip && strcmp(ip, "127.0.0.1") == 0 && name && strcasecmp(name, "localhost") == 0 && helo &&
	       strcasecmp(helo, "localhost") == 0;
}

static enum sift_verdict spf_eoh(struct sift_ctx *ctx)
{
	const struct spf_conf *c = host->conf(ctx);
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	const char *sasl = host->get(ctx, SIFT_I_SASL_USERNAME);
	if ((profile && strcmp(profile, "originating") == 0) || (sasl && *sasl) || non_smtp(ctx))
		return SIFT_DUNNO;
	int identity = SPF_ID_MAILFROM;
	char from[512], helo[256];
	int result = -1, hresult = -1, hidentity = SPF_ID_MAILFROM;
	const char *how = "header";
	if (c->filterd_mode != FM_CHECK)
		hresult = own_header(c, ctx, &hidentity, from, sizeof(from), helo, sizeof(helo));
	/* Only spf_filterd_mode = header takes the topmost header's word.
	 * filterd cannot tell policyd's PREPEND from a Received-SPF that the
	 * sender wrote at the top of its message (Postfix shows milters none
	 * of its own Received:, and the sender can add Received: lines of its
	 * own below). header_or_check checks, and adds no second header when
	 * the topmost one says the same. */
	if (hresult >= 0 && c->filterd_mode == FM_HEADER) {
		result = hresult;
		identity = hidentity;
	}
	if (result < 0 && c->filterd_mode != FM_HEADER && !trusted(c, ctx)) {
		struct spf_msg *m = host->msg(ctx);
		if (msg_result(c, ctx, m)) {
			result = (int)m->res.result;
			identity = m->res.identity;
			snprintf(from, sizeof(from), "%s",
				 host->get(ctx, SIFT_I_SENDER) ? host->get(ctx, SIFT_I_SENDER) : "");
			snprintf(helo, sizeof(helo), "%s",
				 host->get(ctx, SIFT_I_HELO) ? host->get(ctx, SIFT_I_HELO) : "");
			how = "check";
			bool same = hresult == result && hidentity == identity;
			if (c->add_header && !same)
				host->header_insert(ctx, 0, "Received-SPF", m->header);
		}
	}
	if (result < 0)
		return SIFT_DUNNO;
	char sym[32];
	snprintf(sym, sizeof(sym), "SPF_%s", spf_result_names[result]);
	for (char *p = sym; *p; p++)
		*p = (char)toupper((unsigned char)*p);
	host->symbol(ctx, sym, c->score[result], how);
	struct out o = {0};
	out_adds(&o, "spf=");
	out_adds(&o, spf_result_names[result]);
	if (identity == SPF_ID_HELO || !from[0]) {
		out_adds(&o, " smtp.helo=");
		ar_mailfrom(&o, helo[0] ? helo : "unknown");
	} else {
		out_adds(&o, " smtp.mailfrom=");
		ar_mailfrom(&o, from);
	}
	if (o.p)
		auth_result(ctx, *c->authserv_id ? c->authserv_id : receiver_name(c, ctx), o.p);
	free(o.p);
	return SIFT_DUNNO;
}

/* ---- siftctl ------------------------------------------------------------------ */

int spf_tool_report(const void *conf, const char *ip, const char *sender, const char *helo, char **report_r)
{
	const struct spf_conf *c = conf;
	*report_r = NULL;
	if (!c || !host)
		return -1;
	struct spf_res r;
	if (evaluate(c, NULL, ip, sender, helo, &r) < 0)
		return -1;
	const char *recv = receiver_name(c, NULL);
	char *h = received_spf(&r, recv, ip, sender, helo);
	struct out o = {0};
	char line[1200];
	snprintf(line, sizeof(line), "result: %s\nidentity: %s\n", spf_result_names[r.result],
		 r.identity == SPF_ID_HELO ? "helo" : "mailfrom");
	out_adds(&o, line);
	out_adds(&o, "sender: ");
	out_adds(&o, r.sender);
	out_adds(&o, "\ndomain: ");
	out_adds(&o, r.domain);
	out_adds(&o, "\n");
	if (r.mechanism[0]) {
		snprintf(line, sizeof(line), "mechanism: %s\n", r.mechanism);
		out_adds(&o, line);
	}
	if (r.problem[0]) {
		snprintf(line, sizeof(line), "problem: %s\n", r.problem);
		out_adds(&o, line);
	}
	if (r.explanation) {
		out_adds(&o, "explanation: ");
		out_adds(&o, r.explanation);
		out_adds(&o, "\n");
	}
	snprintf(line, sizeof(line), "lookups: %d, void lookups: %d\n", r.lookups, r.voids);
	out_adds(&o, line);
	out_adds(&o, "header: Received-SPF: ");
	out_adds(&o, h ? h : "");
	out_adds(&o, "\n");
	enum act a = action_for(c, r.result);
	char *t = a == A_PREPEND ? NULL : reply_text(c, &r, r.explanation);
	const char *xc = r.result == SPF_FAIL || r.result == SPF_SOFTFAIL ? "7.23" : "7.24";
	switch (a) {
	case A_REJECT:
		snprintf(line, sizeof(line), "action: 550 5.%s %s\n", xc, t ? t : "");
		break;
	case A_DEFER:
		snprintf(line, sizeof(line), "action: 451 4.%s %s\n", xc, t ? t : "");
		break;
	case A_DEFER_IF_PERMIT:
		snprintf(line, sizeof(line), "action: DEFER_IF_PERMIT 4.%s %s\n", xc, t ? t : "");
		break;
	case A_PREPEND:
		snprintf(line, sizeof(line), "action: PREPEND Received-SPF: ...\n");
		break;
	}
	out_adds(&o, line);
	free(t);
	free(h);
	int res = (int)r.result;
	spf_res_free(&r);
	*report_r = o.p;
	return res;
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "spf",
	.description = "SPF (RFC 7208): check senders in policyd, score and report in filterd",
	.daemons = SIFT_D_POLICYD | SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS,
	.params = params,
	.conf_size = sizeof(struct spf_conf),
	.msg_size = sizeof(struct spf_msg),
	.init = spf_init,
	.eoh = spf_eoh,
	.policy = spf_policy,
	.tools = spf_tools,
};
