/*
 * dmarc.c - the `dmarc` plugin: DMARC (RFC 7489) in filterd's inbound
 * profile, at end of message, after the spf and dkim plugins.
 *
 * The author domain is the RFC5322.From domain, read with the host's one
 * address parser (host->addrlist_parse) from the From field; a bad From (no
 * From address, several From fields, a field the parser rejects, a domain
 * that is not a DNS name, several different From domains: 6.6.1) gives
 * permerror, and dmarc_bad_from_action decides whether such mail is
 * refused. The policy
 * record is looked up at _dmarc.<From domain>, then (when there is none) at
 * _dmarc.<organizational domain>; the organizational domain comes from the
 * Public Suffix List (libpsl, dmarc_public_suffix_list). Records are parsed
 * and messages evaluated by dmarcrec.c.
 *
 * The authenticated identifiers are the other plugins' results, read from
 * the message's symbols (host->symbol_get): SPF_<RESULT> from the spf plugin
 * (its domain is the envelope sender's, or the HELO name for the null
 * sender, as RFC 7208 2.4 checks it) and DKIM_VALID / DKIM_INVALID /
 * DKIM_TEMPFAIL from the dkim plugin (their options list the d= domains).
 *
 * The result becomes a DMARC_* symbol and an Authentication-Results header
 * with `dmarc=RESULT (p=.. sp=.. dis=..) header.from=DOMAIN`. A failing
 * message gets the policy's disposition after pct= sampling and local
 * overrides (dmarc_no_enforce_domains, dmarc_reject_action): reject (550
 * 5.7.1 naming the domain), quarantine (dmarc_quarantine_action: hold,
 * quarantine store or tag) or nothing. A DNS failure gives temperror and
 * never rejects (dmarc_temperror_action: none or tempfail): in policy
 * discovery, or, when nothing aligned passes, the temperror of an SPF or
 * DKIM identifier that would have aligned (DKIM_TEMPFAIL, SPF_TEMPERROR).
 *
 * The whole evaluation of a message is kept in the message state (struct
 * dmarc_eval, see dmarcrec.h): everything an aggregate report row needs.
 * With dmarc_report_store set, a message whose record has a rua= adds its
 * row there (dmarcreport.c); `siftctl dmarc report` (tool.c) makes the
 * reports. `siftctl dmarc check` runs this same hook through
 * dmarc_check_hook (dmarctool.h), which only siftctl sets.
 *
 * Threading: the configuration block (the PSL context, parsed scores) is
 * read-only after init; libpsl lookups on a loaded context are thread-safe.
 */
#include <libpsl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "dmarcrec.h"
#include "dmarctool.h"
#include "sift/plugin.h"

#define DNS_T_TXT 16

enum { QA_HOLD, QA_QUARANTINE, QA_TAG };
enum { RA_REJECT, RA_QUARANTINE, RA_TAG };
enum { TA_NONE, TA_TEMPFAIL };
enum { BA_NONE, BA_REJECT };

/* Symbols, in the order of the score parameters. */
enum { S_PASS, S_REJECT, S_QUARANTINE, S_SOFTFAIL, S_NONE, S_TEMPERROR, S_PERMERROR, S_MAX };
static const char *const sym_names[S_MAX] = {"DMARC_PASS",     "DMARC_REJECT", "DMARC_QUARANTINE",
					     "DMARC_SOFTFAIL", "DMARC_NONE",   "DMARC_TEMPERROR",
					     "DMARC_PERMERROR"};

struct dm_conf {
	const char *authserv_id;
	const char *psl_path;
	int quarantine_action, reject_action, temperror_action, bad_from_action;
	const struct sift_map *no_enforce;
	const char *reject_text;
	int add_auth_results;
	long long dns_timeout;
	struct dmarc_report_conf report;
	const char *score_text[S_MAX];
	/* derived in init */
	psl_ctx_t *psl;
	double score[S_MAX];
};

struct dm_msg {
	struct dmarc_eval e;
	bool done;
	bool record; /* a report row for e, written at msg_end */
};

#define OFF(f) offsetof(struct dm_conf, f)
static const struct sift_param params[] = {
	{"authserv_id", SIFT_P_STRING, "$authserv_id", 0, 0, OFF(authserv_id), NULL,
	 "authserv-id of the Authentication-Results header (empty: the host name)"},
	{"public_suffix_list", SIFT_P_STRING, "/usr/share/publicsuffix/public_suffix_list.dat", 0, 0,
	 OFF(psl_path), NULL, "Public Suffix List file (text or DAFSA) giving organizational domains"},
	{"quarantine_action", SIFT_P_ENUM, "hold", 0, 0, OFF(quarantine_action), "hold|quarantine|tag",
	 "a failing message under p=quarantine: Postfix hold queue, quarantine store, or tag only"},
	{"reject_action", SIFT_P_ENUM, "reject", 0, 0, OFF(reject_action), "reject|quarantine|tag",
	 "a failing message under p=reject: refuse it (550 5.7.1), quarantine it, or tag only"},
	{"temperror_action", SIFT_P_ENUM, "none", 0, 0, OFF(temperror_action), "none|tempfail",
	 "temperror (a DNS failure in policy discovery or of an aligned identifier): no action, or "
	 "tempfail (451 4.7.1)"},
	{"bad_from_action", SIFT_P_ENUM, "none", 0, 0, OFF(bad_from_action), "none|reject",
	 "a bad From (none, several From fields or domains, malformed, not a DNS name): permerror only, or "
	 "reject"},
	{"no_enforce_domains", SIFT_P_MAP, "", 0, 0, OFF(no_enforce), NULL,
	 "From or organizational domains whose policy is evaluated and reported but not enforced"},
	{"reject_text", SIFT_P_STRING, "Message rejected: DMARC policy of %s", 0, 0, OFF(reject_text), NULL,
	 "reply text of a reject (550 5.7.1); %s is the From domain"},
	{"add_auth_results", SIFT_P_BOOL, "yes", 0, 0, OFF(add_auth_results), NULL,
	 "add an Authentication-Results header with the dmarc= result"},
	{"dns_timeout", SIFT_P_TIME, "0", 0, 60000, OFF(dns_timeout), NULL,
	 "time limit of one record lookup; 0 = dns_timeout (bounded by the MTA's deadline)"},
	{"report_store", SIFT_P_STRING, "", 0, 0, OFF(report.store), NULL,
	 "where aggregate report data is recorded: empty (nowhere), state (state_store) or file:DIR"},
	{"report_retention", SIFT_P_TIME, "7d", 3600000, 31LL * 86400000, OFF(report.retention), NULL,
	 "how long recorded report data is kept when no report takes it (state store expiry)"},
	{"report_org_name", SIFT_P_STRING, "$myhostname", 0, 0, OFF(report.org_name), NULL,
	 "org_name of our aggregate reports"},
	{"report_email", SIFT_P_STRING, "postmaster@$myhostname", 0, 0, OFF(report.email), NULL,
	 "email of our aggregate reports, and their From and envelope sender"},
	{"report_extra_contact", SIFT_P_STRING, "", 0, 0, OFF(report.extra_contact), NULL,
	 "extra_contact_info of our aggregate reports (empty: none)"},
	{"report_domain", SIFT_P_STRING, "$myhostname", 0, 0, OFF(report.domain), NULL,
	 "the Submitter domain of our reports (in their subject and file names)"},
	{"report_sendmail", SIFT_P_STRING, "/usr/sbin/sendmail", 0, 0, OFF(report.sendmail), NULL,
	 "the sendmail program siftctl dmarc report --send mails reports with"},
	{"report_sendmail_timeout", SIFT_P_TIME, "5m", 1000, 3600000, OFF(report.sendmail_timeout), NULL,
	 "time limit of one sendmail run of siftctl dmarc report --send (then it is killed)"},
	{"score_pass", SIFT_P_STRING, "-0.1", 0, 0, OFF(score_text[S_PASS]), NULL, "score of DMARC_PASS"},
	{"score_reject", SIFT_P_STRING, "3", 0, 0, OFF(score_text[S_REJECT]), NULL,
	 "score of DMARC_REJECT (fail under p=reject)"},
	{"score_quarantine", SIFT_P_STRING, "2", 0, 0, OFF(score_text[S_QUARANTINE]), NULL,
	 "score of DMARC_QUARANTINE (fail under p=quarantine)"},
	{"score_softfail", SIFT_P_STRING, "0.5", 0, 0, OFF(score_text[S_SOFTFAIL]), NULL,
	 "score of DMARC_SOFTFAIL (fail under p=none)"},
	{"score_none", SIFT_P_STRING, "0", 0, 0, OFF(score_text[S_NONE]), NULL,
	 "score of DMARC_NONE (no policy published)"},
	{"score_temperror", SIFT_P_STRING, "0", 0, 0, OFF(score_text[S_TEMPERROR]), NULL,
	 "score of DMARC_TEMPERROR"},
	{"score_permerror", SIFT_P_STRING, "0.5", 0, 0, OFF(score_text[S_PERMERROR]), NULL,
	 "score of DMARC_PERMERROR (unusable record, bad From)"},
	SIFT_PARAM_END,
};
#undef OFF

static const struct sift_host *host;

static char *xstrdupf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdupf(const char *fmt, ...)
{
	char buf[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return strdup(buf);
}

static int dm_init(const struct sift_host *h, void *cv, char **err_r)
{
	struct dm_conf *c = cv;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, addrlist_parse) + sizeof(h->addrlist_parse)) {
		*err_r = strdup("the host has no address parser or symbol reader: too old");
		return -1;
	}
	for (int i = 0; i < S_MAX; i++) {
		char *end;
		c->score[i] = strtod(c->score_text[i], &end);
		if (end == c->score_text[i] || *end) {
			*err_r = xstrdupf("dmarc score of %s: not a number: %s", sym_names[i],
					  c->score_text[i]);
			return -1;
		}
	}
	const char *pct = strstr(c->reject_text, "%");
	if (pct && (pct[1] != 's' || strchr(pct + 2, '%'))) {
		*err_r = strdup("dmarc_reject_text: only one %s (the domain) is allowed");
		return -1;
	}
	if (dmarc_report_check_store(&c->report, err_r) < 0)
		return -1;
	c->psl = psl_load_file(c->psl_path);
	if (!c->psl) {
		*err_r = xstrdupf("dmarc_public_suffix_list: cannot load %s%s", c->psl_path,
				  " (Debian package publicsuffix)");
		return -1;
	}
	return 0;
}

static void dm_release(void *cv)
{
	struct dm_conf *c = cv;
	psl_free(c->psl);
	c->psl = NULL;
}

/* The organizational domain (RFC 7489 3.2): the registrable domain by the
 * PSL, or the domain itself when it is a public suffix. */
static bool orgdomain(void *arg, const char *domain, char *out, size_t n)
{
	const struct dm_conf *c = arg;
	const char *r = c->psl ? psl_registrable_domain(c->psl, domain) : NULL;
	snprintf(out, n, "%s", r ? r : domain);
	return r != NULL;
}

/* ---- the From domain ------------------------------------------------------ */

/* Sets e->from_domain, or e->result = PERMERROR with a reason (a bad From,
 * RFC 7489 6.6.1): no From field, several From fields, a From field the
 * address parser rejects, a mailbox whose domain is not a DNS name, no
 * mailbox, or mailboxes of several domains. A bad part is never
 * passed over for a good one: the domain evaluated must be the one every
 * reader of the message sees. */
static void from_domain(struct sift_ctx *ctx, struct dmarc_eval *e)
{
	size_t nh = host->header_count(ctx);
	size_t fields = 0;
	bool several = false, malformed = false, bad = false, empty = false;
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (!h || strcasecmp(h->name, "From") != 0)
			continue;
		fields++;
		struct sift_addrs *a = host->addrlist_parse(h->value);
		if (!a || a->error)
			malformed = true;
		else if (a->count == 0)
			empty = true; /* valid, no mailbox: an empty field or group */
		for (size_t k = 0; a && k < a->count; k++) {
			char d[DMARC_DOMAIN_MAX];
			if (!dmarc_domain_norm(a->mb[k].domain, d, sizeof(d)))
				bad = true;
			else if (!e->from_domain[0])
				snprintf(e->from_domain, sizeof(e->from_domain), "%s", d);
			else if (strcmp(d, e->from_domain) != 0)
				several = true;
		}
		free(a);
	}
	const char *why = fields > 1		 ? "several From fields"
			  : malformed		 ? "malformed From field"
			  : bad			 ? "From domain is not a DNS name"
			  : fields == 0 || empty ? "no From address"
			  : several		 ? "several From domains"
						 : NULL;
	if (why) {
		e->result = DMARC_R_PERMERROR;
		e->reason = why;
		e->from_domain[0] = 0;
	}
}

/* ---- policy discovery ------------------------------------------------------ */

enum disc { D_FOUND, D_NONE, D_SEVERAL, D_INVALID, D_TEMP };

static enum disc lookup(struct sift_ctx *ctx, const struct dm_conf *c, const char *domain,
			struct dmarc_record *rec)
{
	char name[300];
	if ((size_t)snprintf(name, sizeof(name), "_dmarc.%s", domain) >= sizeof(name) || strlen(name) > 253)
		return D_NONE;
	long left = host->time_left_ms(ctx);
	long tmo = c->dns_timeout > 0 ? (long)c->dns_timeout : 0;
	if (left <= 100)
		return D_TEMP;
	if (tmo > left - 100 || (tmo == 0 && left - 100 < 60000))
		tmo = left - 100;
	struct sift_dns_result *r = host->dns_query(name, DNS_T_TXT, tmo);
	enum disc d = D_NONE;
	if (!r || r->status == SIFT_DNS_TEMPFAIL) {
		d = D_TEMP;
	} else if (r->status == SIFT_DNS_OK) {
		size_t n = 0;
		const char *pick = NULL;
		for (size_t i = 0; i < r->count; i++)
			if (dmarc_is_record((const char *)r->rr[i])) {
				n++;
				pick = (const char *)r->rr[i];
			}
		if (n > 1)
			d = D_SEVERAL;
		else if (n == 1) {
			enum dmarc_parse p = dmarc_record_parse(pick, rec);
			d = p == DMARC_REC_OK || p == DMARC_REC_P_NONE_FALLBACK ? D_FOUND : D_INVALID;
			if (p == DMARC_REC_P_NONE_FALLBACK)
				host->log(ctx, LOG_INFO, "%s: no valid p=, acting as p=none (rua= given)",
					  name);
		}
	}
	free(r);
	return d;
}

/* RFC 7489 6.6.3: the From domain's record, else the organizational
 * domain's. Sets have_record/rec/record_at_org, or result and reason. */
static void discover(struct sift_ctx *ctx, const struct dm_conf *c, struct dmarc_eval *e)
{
	enum disc d = lookup(ctx, c, e->from_domain, &e->rec);
	if (d == D_NONE && strcmp(e->org_domain, e->from_domain) != 0) {
		d = lookup(ctx, c, e->org_domain, &e->rec);
		e->record_at_org = true;
	}
	switch (d) {
	case D_FOUND:
		e->have_record = true;
		break;
	case D_NONE:
		e->result = DMARC_R_NONE;
		e->reason = "no DMARC record";
		break;
	case D_SEVERAL:
		e->result = DMARC_R_NONE;
		e->reason = "several DMARC records";
		break;
	case D_INVALID:
		e->result = DMARC_R_PERMERROR;
		e->reason = "invalid DMARC record";
		break;
	case D_TEMP:
		e->result = DMARC_R_TEMPERROR;
		e->reason = "DNS lookup failed";
		break;
	}
	if (!e->have_record)
		e->record_at_org = false;
}

/* ---- the other plugins' results ---------------------------------------------- */

static void add_dkim(struct dmarc_eval *e, const char *list, int pass)
{
	while (list && *list && e->ndkim < DMARC_MAX_DKIM) {
		const char *comma = strchr(list, ',');
		size_t n = comma ? (size_t)(comma - list) : strlen(list);
		char d[DMARC_DOMAIN_MAX];
		if (n && n < sizeof(d)) {
			memcpy(d, list, n);
			d[n] = 0;
			struct dmarc_auth *a = &e->dkim[e->ndkim];
			if (dmarc_domain_norm(d, a->domain, sizeof(a->domain))) {
				a->result = pass;
				e->ndkim++;
			}
		}
		list = comma ? comma + 1 : NULL;
	}
}

static void auth_inputs(struct sift_ctx *ctx, struct dmarc_eval *e)
{
	size_t n = host->symbol_count(ctx);
	e->spf.result = DMARC_SPF_NONE;
	for (size_t i = 0; i < n; i++) {
		const char *name, *opt;
		double sc;
		if (host->symbol_get(ctx, i, &name, &sc, &opt) < 0)
			continue;
		if (strncasecmp(name, "SPF_", 4) == 0) {
			for (int k = 0; k < DMARC_SPF_MAX; k++)
				if (strcasecmp(name + 4, dmarc_spf_names[k]) == 0)
					e->spf.result = k;
		} else if (strcasecmp(name, "DKIM_VALID") == 0)
			add_dkim(e, opt, DMARC_DKIM_PASS);
		else if (strcasecmp(name, "DKIM_INVALID") == 0)
			add_dkim(e, opt, DMARC_DKIM_FAIL);
		else if (strcasecmp(name, "DKIM_TEMPFAIL") == 0)
			add_dkim(e, opt, DMARC_DKIM_TEMPERROR);
	}
	/* The domain SPF checked: MAIL FROM's, or HELO's for the null sender
	 * (RFC 7208 2.4). */
	const char *sender = host->get(ctx, SIFT_I_SENDER);
	const char *at = sender ? strrchr(sender, '@') : NULL;
	const char *dom = at ? at + 1 : host->get(ctx, SIFT_I_HELO);
	if (!dom || !dmarc_domain_norm(dom, e->spf.domain, sizeof(e->spf.domain)))
		e->spf.domain[0] = 0;
}

/* ---- results ------------------------------------------------------------------ */

static void upcase(char *out, size_t n, const char *s)
{
	size_t k = 0;
	for (; *s && k + 1 < n; s++)
		out[k++] = (char)(*s >= 'a' && *s <= 'z' ? *s - 32 : *s);
	out[k] = 0;
}

static int symbol_of(const struct dmarc_eval *e)
{
	switch (e->result) {
	case DMARC_R_PASS:
		return S_PASS;
	case DMARC_R_FAIL:
		return e->policy == DMARC_P_REJECT	 ? S_REJECT
		       : e->policy == DMARC_P_QUARANTINE ? S_QUARANTINE
							 : S_SOFTFAIL;
	case DMARC_R_TEMPERROR:
		return S_TEMPERROR;
	case DMARC_R_PERMERROR:
		return S_PERMERROR;
	default:
		return S_NONE;
	}
}

static void auth_results(struct sift_ctx *ctx, const struct dm_conf *c, const struct dmarc_eval *e,
			 const char *note)
{
	const char *id = *c->authserv_id ? c->authserv_id : host->get(ctx, SIFT_I_MYHOSTNAME);
	if (!id || !*id)
		id = "localhost";
	char v[1024];
	int k = snprintf(v, sizeof(v), "dmarc=%s", dmarc_result_names[e->result]);
	if (!*note && e->have_record && e->reason)
		note = e->reason; /* an identifier's temperror */
	if (e->have_record) {
		char p[16], sp[16], dis[16];
		upcase(p, sizeof(p), dmarc_policy_names[e->rec.p]);
		upcase(sp, sizeof(sp), dmarc_policy_names[e->rec.sp]);
		upcase(dis, sizeof(dis), dmarc_policy_names[e->disposition]);
		k += snprintf(v + k, sizeof(v) - (size_t)k, " (p=%s sp=%s dis=%s%s%s%s%s)", p, sp, dis,
			      e->override ? " override=" : "", dmarc_override_names[e->override],
			      *note ? "; " : "", note);
	} else if (e->reason) {
		k += snprintf(v + k, sizeof(v) - (size_t)k, " (%s)", e->reason);
	}
	if (e->from_domain[0] && (size_t)k < sizeof(v))
		snprintf(v + k, sizeof(v) - (size_t)k, " header.from=%s", e->from_domain);
	/* One Authentication-Results with the spf and dkim results
	 * (host->auth_result), or a header of its own from an older host. */
	if (host->struct_size >= offsetof(struct sift_host, auth_result) + sizeof(host->auth_result) &&
	    host->auth_result) {
		host->auth_result(ctx, id, v);
		return;
	}
	char *h = xstrdupf("%s; %s", id, v);
	host->header_insert(ctx, 0, "Authentication-Results", h);
	free(h);
}

/* The arc plugin's word for a trusted ARC sealer (ARC_TRUSTED, its option
 * "d=SEALER i=N spf=DOMAIN dkim=D1,D2": the passes in the
 * ARC-Authentication-Results of the first set that sealer made, on a chain
 * that verified); arc must come before dmarc in the profile. When a
 * failing message's From domain aligns with one of those passes, its
 * policy is not applied: local policy (RFC 7489 6.7, RFC 8617 7.2),
 * recorded as override=local_policy with the sealer in note. */
static bool arc_override(struct sift_ctx *ctx, const struct dm_conf *c, struct dmarc_eval *e, char *note,
			 size_t n)
{
	if (e->result != DMARC_R_FAIL || !e->have_record || e->disposition == DMARC_P_NONE)
		return false;
	size_t cnt = host->symbol_count(ctx);
	for (size_t i = 0; i < cnt; i++) {
		const char *name, *opt;
		double sc;
		char d[256], spf[256], dkim[512];
		unsigned inst;
		if (host->symbol_get(ctx, i, &name, &sc, &opt) < 0 || strcasecmp(name, "ARC_TRUSTED") != 0 ||
		    !opt || sscanf(opt, "d=%255s i=%u spf=%255s dkim=%511s", d, &inst, spf, dkim) != 4)
			continue;
		bool ok = strcmp(spf, "-") != 0 &&
			  dmarc_aligned(spf, e->from_domain, e->rec.aspf_strict, orgdomain, (void *)c);
		for (char *save = NULL, *t = strtok_r(dkim, ",", &save); t && !ok;
		     t = strtok_r(NULL, ",", &save))
			ok = strcmp(t, "-") != 0 &&
			     dmarc_aligned(t, e->from_domain, e->rec.adkim_strict, orgdomain, (void *)c);
		if (!ok)
			continue;
		e->disposition = DMARC_P_NONE;
		e->override = DMARC_O_LOCAL_POLICY;
		snprintf(note, n, "arc override: trusted sealer d=%s i=%u", d, inst);
		host->log(ctx, LOG_INFO, "policy not applied: %s", note);
		return true;
	}
	return false;
}

/* Local overrides: the From or organizational domain in
 * dmarc_no_enforce_domains; then dmarc_reject_action. Returns -1 when a
 * dmarc_no_enforce_domains lookup failed (and the other key did not hit)
 * while the disposition left is reject or quarantine: whether the domain is
 * exempt is unknown, so the caller answers with an internal error
 * (dmarc_error_action, a temporary failure by default), as a failed map
 * lookup must (lib/map_idx.c), not with a disposition the message may not
 * deserve. */
static int overrides(struct sift_ctx *ctx, const struct dm_conf *c, struct dmarc_eval *e)
{
	if (e->disposition == DMARC_P_NONE)
		return 0;
	bool failed = false;
	const char *keys[2] = {e->from_domain, e->org_domain};
	for (int i = 0; c->no_enforce && i < 2; i++) {
		char *v = NULL;
		int rc = host->map_lookup(c->no_enforce, keys[i], &v);
		bool hit = rc == 1 && v && strcasecmp(v, "no") != 0 && strcasecmp(v, "DUNNO") != 0;
		free(v);
		if (rc < 0) {
			host->log(ctx, LOG_WARNING, "dmarc_no_enforce_domains lookup failed for %s", keys[i]);
			failed = true;
		}
		if (hit) {
			e->disposition = DMARC_P_NONE;
			e->override = DMARC_O_LOCAL_POLICY;
			return 0;
		}
	}
	if (e->disposition == DMARC_P_REJECT && c->reject_action != RA_REJECT) {
		e->disposition = c->reject_action == RA_QUARANTINE ? DMARC_P_QUARANTINE : DMARC_P_NONE;
		e->override = DMARC_O_SITE_ACTION;
	}
	return failed && (e->disposition == DMARC_P_REJECT || e->disposition == DMARC_P_QUARANTINE) ? -1 : 0;
}

static enum sift_verdict act(struct sift_ctx *ctx, const struct dm_conf *c, const struct dmarc_eval *e)
{
	char text[600];
	if (e->result == DMARC_R_PERMERROR && !e->have_record && c->bad_from_action == BA_REJECT &&
	    e->reason && strstr(e->reason, "From")) {
		snprintf(text, sizeof(text), "Message rejected: %s (RFC 7489 6.6.1)", e->reason);
		host->reply(ctx, "550", "5.7.1", text);
		return SIFT_REJECT;
	}
	if (e->result == DMARC_R_TEMPERROR && c->temperror_action == TA_TEMPFAIL) {
		snprintf(text, sizeof(text), "%s %s cannot be %s now, try again later",
			 e->have_record ? "DMARC authentication of" : "DMARC policy of", e->from_domain,
			 e->have_record ? "checked" : "read");
		host->reply(ctx, "451", "4.7.1", text);
		return SIFT_TEMPFAIL;
	}
	if (e->result != DMARC_R_FAIL)
		return SIFT_DUNNO;
	if (e->disposition == DMARC_P_REJECT) {
		const char *pct = strstr(c->reject_text, "%s");
		if (pct)
			snprintf(text, sizeof(text), "%.*s%s%s", (int)(pct - c->reject_text), c->reject_text,
				 e->from_domain, pct + 2);
		else
			snprintf(text, sizeof(text), "%s", c->reject_text);
		host->reply(ctx, "550", "5.7.1", text);
		return SIFT_REJECT;
	}
	if (e->disposition != DMARC_P_QUARANTINE || c->quarantine_action == QA_TAG)
		return SIFT_DUNNO;
	snprintf(text, sizeof(text), "DMARC quarantine policy of %s", e->from_domain);
	if (c->quarantine_action == QA_HOLD) {
		host->hold(ctx, text);
		return SIFT_HOLD;
	}
	char *qid = NULL;
	if (host->quarantine(ctx, text, &qid) < 0) {
		host->reply(ctx, "451", "4.7.1", "Try again later");
		return SIFT_TEMPFAIL;
	}
	host->log(ctx, LOG_INFO, "quarantined as %s", qid ? qid : "?");
	free(qid);
	return SIFT_DISCARD;
}

static void log_eval(struct sift_ctx *ctx, const struct dmarc_eval *e)
{
	char dk[512] = "";
	size_t k = 0;
	for (size_t i = 0; i < e->ndkim && k < sizeof(dk); i++) {
		int w = snprintf(dk + k, sizeof(dk) - k, "%s%s:%s%s", i ? "," : "", e->dkim[i].domain,
				 dmarc_dkim_names[e->dkim[i].result], e->dkim[i].aligned ? ":aligned" : "");
		if (w < 0)
			break;
		k += (size_t)w;
	}
	host->log(ctx, LOG_INFO, "dmarc=%s from=%s policy=%s disposition=%s%s%s spf=%s:%s%s dkim=%s%s%s%s",
		  dmarc_result_names[e->result], e->from_domain[0] ? e->from_domain : "-",
		  dmarc_policy_names[e->policy], dmarc_policy_names[e->disposition],
		  e->override ? " override=" : "", dmarc_override_names[e->override],
		  dmarc_spf_names[e->spf.result], e->spf.domain[0] ? e->spf.domain : "-",
		  e->spf.aligned ? ":aligned" : "", k ? dk : "-", e->reason ? " (" : "",
		  e->reason ? e->reason : "", e->reason ? ")" : "");
}

/* The message's aggregate report row (dmarcreport.c). */
static void record(struct sift_ctx *ctx, const struct dm_conf *c, const struct dmarc_eval *e)
{
	char row[DMARC_ROW_MAX];
	const char *sender = host->get(ctx, SIFT_I_SENDER);
	const char *at = sender ? strrchr(sender, '@') : NULL;
	char sd[DMARC_DOMAIN_MAX] = "";
	if (at && !dmarc_domain_norm(at + 1, sd, sizeof(sd)))
		sd[0] = 0;
	if (!dmarc_report_row(e, host->get(ctx, SIFT_I_CLIENT_ADDR), sd, row, sizeof(row)))
		return;
	if (dmarc_report_record(host, &c->report, row, time(NULL)) < 0)
		host->log(ctx, LOG_WARNING, "dmarc_report_store %s: cannot record the report row",
			  c->report.store);
}

const struct dmarc_report_conf *dmarc_conf_report(const void *conf)
{
	return &((const struct dm_conf *)conf)->report;
}

bool dmarc_conf_orgdomain(void *conf, const char *domain, char *out, size_t n)
{
	return orgdomain(conf, domain, out, n);
}

/* The report row of a message evaluated at eom, once the MTA has its
 * answer: not for a message answered with a temporary failure (by this
 * plugin or a later one), which comes again and is counted then. */
static void dm_msg_end(struct sift_ctx *ctx)
{
	struct dm_msg *m = host->msg(ctx);
	if (!m || !m->record)
		return;
	if (host->struct_size >= offsetof(struct sift_host, msg_outcome) + sizeof(host->msg_outcome)) {
		enum sift_verdict v = host->msg_outcome(ctx);
		if (v == SIFT_TEMPFAIL || v == SIFT_ERROR)
			return;
	}
	record(ctx, host->conf(ctx), &m->e);
}

static enum sift_verdict dm_eom(struct sift_ctx *ctx)
{
	const struct dm_conf *c = host->conf(ctx);
	struct dm_msg *m = host->msg(ctx);
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	const char *sasl = host->get(ctx, SIFT_I_SASL_USERNAME);
	if ((profile && strcmp(profile, "originating") == 0) || (sasl && *sasl))
		return SIFT_DUNNO;
	struct dmarc_eval *e = &m->e;
	memset(e, 0, sizeof(*e));
	m->done = true;
	from_domain(ctx, e);
	if (e->from_domain[0]) {
		orgdomain((void *)c, e->from_domain, e->org_domain, sizeof(e->org_domain));
		auth_inputs(ctx, e);
		if (dmarc_check_hook)
			dmarc_check_inputs(dmarc_check_hook, e);
		if (e->result != DMARC_R_PERMERROR)
			discover(ctx, c, e);
	}
	dmarc_evaluate(e, (int)arc4random_uniform(100), orgdomain, (void *)c);
	char note[400] = "";
	arc_override(ctx, c, e, note, sizeof(note));
	int ov = overrides(ctx, c, e);
	log_eval(ctx, e);
	if (ov < 0 && !dmarc_check_hook) {
		/* Not a reject or quarantine on a guess, and no symbol, header
		 * or report row: the message comes again. */
		host->log(ctx, LOG_WARNING,
			  "dmarc_no_enforce_domains cannot be read: the %s of %s not applied",
			  dmarc_policy_names[e->disposition], e->from_domain);
		return SIFT_ERROR;
	}
	if (dmarc_check_hook) {
		dmarc_check_hook->eval = *e;
		dmarc_check_hook->ran = true;
	} else if (*c->report.store)
		m->record = true;
	int s = symbol_of(e);
	host->symbol(ctx, sym_names[s], c->score[s], e->from_domain[0] ? e->from_domain : e->reason);
	if (c->add_auth_results)
		auth_results(ctx, c, e, note);
	return act(ctx, c, e);
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "dmarc",
	.description = "DMARC (RFC 7489): the From domain's policy on SPF and DKIM results",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_QUARANTINE,
	.params = params,
	.conf_size = sizeof(struct dm_conf),
	.msg_size = sizeof(struct dm_msg),
	.init = dm_init,
	.release = dm_release,
	.eom = dm_eom,
	.msg_end = dm_msg_end,
	.tools = dmarc_tools,
};
