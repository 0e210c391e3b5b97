/*
 * dmarcrec.c - DMARC records, alignment and the evaluation of one message
 * (see dmarcrec.h). Pure functions: no DNS, no host, no allocation.
 *
 * Record syntax (RFC 7489 6.3, 6.4): a tag-value list whose first tag is
 * v=DMARC1; tags are separated by ';' with optional white space; tag names
 * and the keyword values are read case-insensitively (ABNF literals);
 * unknown tags are ignored; a tag given twice keeps its first value.
 * Invalid values of optional tags fall back to their defaults (6.3: "syntax
 * errors in the remainder of the record SHOULD be discarded in favor of
 * default values"). A missing or invalid p= (or an invalid sp=) makes the
 * record act as p=none when rua= holds a valid URI, else the record is
 * unusable (6.6.3).
 */
#include "dmarcrec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const dmarc_result_names[DMARC_R_MAX] = {"none", "pass", "fail", "temperror", "permerror"};
const char *const dmarc_policy_names[3] = {"none", "quarantine", "reject"};
const char *const dmarc_dkim_names[DMARC_DKIM_MAX] = {"fail", "pass", "temperror"};
const char *const dmarc_override_names[4] = {"", "sampled_out", "local_policy", "site_policy"};
const char *const dmarc_spf_names[DMARC_SPF_MAX] = {"none",	"neutral",   "pass",	 "fail",
						    "softfail", "temperror", "permerror"};

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

static const char *trim_end(const char *b, const char *e)
{
	while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		e--;
	return e;
}

static bool word_is(const char *b, const char *e, const char *w)
{
	size_t n = strlen(w);
	return (size_t)(e - b) == n && strncasecmp(b, w, n) == 0;
}

bool dmarc_is_record(const char *txt)
{
	const char *end = txt + strlen(txt);
	const char *p = skip_ws(txt, end);
	if (end - p < 1 || (*p != 'v' && *p != 'V'))
		return false;
	p = skip_ws(p + 1, end);
	if (p == end || *p != '=')
		return false;
	p = skip_ws(p + 1, end);
	const char *e = p;
	while (e < end && *e != ';')
		e++;
	return word_is(p, trim_end(p, e), "DMARC1");
}

static int policy_of(const char *b, const char *e)
{
	for (int i = 0; i < 3; i++)
		if (word_is(b, e, dmarc_policy_names[i]))
			return i;
	return -1;
}

/* One dmarc-uri: URI [ "!" size ]; the URI needs a scheme and something
 * after the colon, and a mailto: URI an address with '@'. */
static bool uri_valid(const char *b, const char *e)
{
	const char *bang = memchr(b, '!', (size_t)(e - b));
	if (bang) {
		const char *s = bang + 1;
		if (s == e || !isdigit((unsigned char)*s))
			return false;
		while (s < e && isdigit((unsigned char)*s))
			s++;
		if (s < e && strchr("kmgtKMGT", *s))
			s++;
		if (s != e)
			return false;
		e = bang;
	}
	if (b == e || !isalpha((unsigned char)*b))
		return false;
	const char *p = b;
	while (p < e && (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.'))
		p++;
	if (p == e || *p != ':' || p + 1 == e)
		return false;
	for (const char *q = p + 1; q < e; q++)
		if ((unsigned char)*q <= ' ' || (unsigned char)*q > '~')
			return false;
	if ((size_t)(p - b) == 6 && strncasecmp(b, "mailto", 6) == 0) {
		const char *at = memchr(p + 1, '@', (size_t)(e - p - 1));
		return at && at > p + 1 && at + 1 < e;
	}
	return true;
}

static bool urilist_valid(const char *b, const char *e)
{
	bool any = false;
	while (b < e) {
		const char *c = memchr(b, ',', (size_t)(e - b));
		const char *ie = c ? c : e;
		const char *ib = skip_ws(b, ie);
		if (uri_valid(ib, trim_end(ib, ie)))
			any = true;
		b = c ? c + 1 : e;
	}
	return any;
}

/* The printable octets of b..e into out; true when all of them fit. */
static bool copy_value(char *out, size_t n, const char *b, const char *e)
{
	size_t k = 0;
	for (; b < e; b++)
		if ((unsigned char)*b >= ' ' && (unsigned char)*b <= '~') {
			if (k + 1 >= n)
				break;
			out[k++] = *b;
		}
	out[k] = 0;
	return b == e;
}

/* A list of URIs (rua=, ruf=) into out: when it does not fit, the URIs
 * that do, never a part of one (a cut address is another address). */
static void copy_uris(char *out, size_t n, const char *b, const char *e)
{
	if (copy_value(out, n, b, e))
		return;
	char *comma = strrchr(out, ',');
	if (comma)
		*comma = 0;
	else
		out[0] = 0;
}

/* Applies one tag to the record; seen[] records which tags were set. */
enum { T_P, T_SP, T_ADKIM, T_ASPF, T_PCT, T_RUA, T_RUF, T_FO, T_RI, T_RF, T_MAX };
static const char *const tag_names[T_MAX] = {"p",   "sp",  "adkim", "aspf", "pct",
					     "rua", "ruf", "fo",    "ri",   "rf"};

static void apply_tag(struct dmarc_record *r, int t, const char *vb, const char *ve)
{
	int pol;
	switch (t) {
	case T_P:
		if ((pol = policy_of(vb, ve)) >= 0) {
			r->p = (enum dmarc_policy)pol;
			r->p_valid = true;
		}
		break;
	case T_SP:
		if ((pol = policy_of(vb, ve)) >= 0) {
			r->sp = (enum dmarc_policy)pol;
			r->sp_given = true;
		} else
			r->sp_invalid = true;
		break;
	case T_ADKIM:
	case T_ASPF: {
		bool *s = t == T_ADKIM ? &r->adkim_strict : &r->aspf_strict;
		if (word_is(vb, ve, "s"))
			*s = true;
		else
			*s = false; /* r, or invalid: the default */
		break;
	}
	case T_PCT: {
		int v = 0;
		const char *q = vb;
		while (q < ve && isdigit((unsigned char)*q) && q - vb < 3)
			v = v * 10 + (*q++ - '0');
		if (q == ve && q > vb && v <= 100)
			r->pct = v;
		break;
	}
	case T_RUA:
		copy_uris(r->rua, sizeof(r->rua), vb, ve);
		r->rua_valid = urilist_valid(vb, ve);
		break;
	case T_RUF:
		copy_uris(r->ruf, sizeof(r->ruf), vb, ve);
		break;
	case T_FO:
		copy_value(r->fo, sizeof(r->fo), vb, ve);
		break;
	case T_RI: {
		unsigned long v = 0;
		const char *q = vb;
		while (q < ve && isdigit((unsigned char)*q) && q - vb < 9)
			v = v * 10 + (unsigned long)(*q++ - '0');
		if (q == ve && q > vb)
			r->ri = v;
		break;
	}
	default:
		break; /* rf: only afrf exists; nothing to keep */
	}
}

enum dmarc_parse dmarc_record_parse(const char *txt, struct dmarc_record *r)
{
	memset(r, 0, sizeof(*r));
	r->pct = 100;
	r->ri = 86400;
	snprintf(r->fo, sizeof(r->fo), "0");
	if (!dmarc_is_record(txt))
		return DMARC_REC_NOT_DMARC;
	const char *p = strchr(txt, ';'), *end = txt + strlen(txt);
	bool seen[T_MAX] = {false};
	while (p && p < end) {
		p++; /* past ';' */
		const char *te = memchr(p, ';', (size_t)(end - p));
		if (!te)
			te = end;
		const char *nb = skip_ws(p, te);
		const char *eq = memchr(nb, '=', (size_t)(te - nb));
		if (eq) {
			const char *ne = trim_end(nb, eq);
			const char *vb = skip_ws(eq + 1, te), *ve = trim_end(vb, te);
			for (int t = 0; t < T_MAX; t++)
				if (word_is(nb, ne, tag_names[t]) && !seen[t]) {
					seen[t] = true;
					apply_tag(r, t, vb, ve);
				}
		}
		p = te;
	}
	if (!r->sp_given)
		r->sp = r->p;
	if (r->p_valid && !r->sp_invalid)
		return DMARC_REC_OK;
	if (r->rua_valid) {
		r->p = r->sp = DMARC_P_NONE;
		r->p_valid = true;
		r->sp_given = false;
		return DMARC_REC_P_NONE_FALLBACK;
	}
	return DMARC_REC_INVALID;
}

bool dmarc_domain_norm(const char *in, char *out, size_t n)
{
	size_t len = strlen(in);
	if (len && in[len - 1] == '.')
		len--;
	if (len == 0 || len > 253 || len + 1 > n) {
		if (n)
			out[0] = 0;
		return false;
	}
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '.') {
			if (label == 0) {
				out[0] = 0;
				return false;
			}
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > 63) {
				out[0] = 0;
				return false;
			}
		} else {
			out[0] = 0;
			return false;
		}
		out[i] = (char)tolower(c);
	}
	out[len] = 0;
	return true;
}

bool dmarc_aligned(const char *auth_domain, const char *from_domain, bool strict, dmarc_orgdomain_fn org,
		   void *org_arg)
{
	char a[DMARC_DOMAIN_MAX], f[DMARC_DOMAIN_MAX];
	if (!dmarc_domain_norm(auth_domain, a, sizeof(a)) || !dmarc_domain_norm(from_domain, f, sizeof(f)))
		return false;
	if (strcmp(a, f) == 0)
		return true;
	if (strict)
		return false;
	char oa[DMARC_DOMAIN_MAX], of[DMARC_DOMAIN_MAX];
	org(org_arg, a, oa, sizeof(oa));
	org(org_arg, f, of, sizeof(of));
	return strcmp(oa, of) == 0;
}

void dmarc_evaluate(struct dmarc_eval *e, int sample, dmarc_orgdomain_fn org, void *org_arg)
{
	e->dkim_aligned = e->spf_aligned = false;
	e->disposition = DMARC_P_NONE;
	e->override = DMARC_O_NONE;
	const struct dmarc_record *r = &e->rec;
	/* Alignment is computed whenever there is a From domain, for reports
	 * and for the symbols, even without a policy. */
	if (e->from_domain[0]) {
		for (size_t i = 0; i < e->ndkim && i < DMARC_MAX_DKIM; i++) {
			struct dmarc_auth *d = &e->dkim[i];
			d->aligned = d->result == DMARC_DKIM_PASS &&
				     dmarc_aligned(d->domain, e->from_domain,
						   e->have_record && r->adkim_strict, org, org_arg);
			e->dkim_aligned |= d->aligned;
		}
		e->spf.aligned = e->spf.result == DMARC_SPF_PASS && e->spf.domain[0] &&
				 dmarc_aligned(e->spf.domain, e->from_domain,
					       e->have_record && r->aspf_strict, org, org_arg);
		e->spf_aligned = e->spf.aligned;
	}
	if (!e->have_record) {
		if (e->result != DMARC_R_TEMPERROR && e->result != DMARC_R_PERMERROR) {
			e->result = DMARC_R_NONE;
			if (!e->reason)
				e->reason = "no DMARC record";
		}
		e->policy = DMARC_P_NONE;
		return;
	}
	e->policy = e->record_at_org ? r->sp : r->p;
	e->result = e->dkim_aligned || e->spf_aligned ? DMARC_R_PASS : DMARC_R_FAIL;
	e->reason = NULL;
	/* No aligned pass, but an identifier that would have aligned could not
	 * be checked (a DKIM key or SPF lookup failed temporarily): its result
	 * is unknown, so is DMARC's; temperror, never fail (DMARCbis). */
	if (e->result == DMARC_R_FAIL) {
		for (size_t i = 0; i < e->ndkim && i < DMARC_MAX_DKIM && !e->reason; i++)
			if (e->dkim[i].result == DMARC_DKIM_TEMPERROR &&
			    dmarc_aligned(e->dkim[i].domain, e->from_domain, r->adkim_strict, org, org_arg))
				e->reason = "aligned DKIM temperror";
		if (!e->reason && e->spf.result == DMARC_SPF_TEMPERROR && e->spf.domain[0] &&
		    dmarc_aligned(e->spf.domain, e->from_domain, r->aspf_strict, org, org_arg))
			e->reason = "aligned SPF temperror";
		if (e->reason)
			e->result = DMARC_R_TEMPERROR;
	}
	if (e->result != DMARC_R_FAIL || e->policy == DMARC_P_NONE)
		return;
	e->disposition = e->policy;
	/* pct: a message left out of the sample gets the next milder policy
	 * (RFC 7489 6.6.4): reject -> quarantine, quarantine -> none. */
	if (sample >= r->pct) {
		e->disposition = e->policy == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
		e->override = DMARC_O_SAMPLED_OUT;
	}
}
