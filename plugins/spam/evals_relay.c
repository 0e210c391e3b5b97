/*
 * evals_relay.c - eval: functions over headers and relays, as SpamAssassin
 * 4.0's HeaderEval, RelayEval, HTMLEval and BodyEval compute them: the
 * forged Received: checks (AOL, Hotmail, Eudoramail, Gmail, Juno, the
 * forged trail), the ratware checks, check_for_to_in_subject,
 * check_unresolved_template, check_for_matching_env_and_hdr_from,
 * check_mailfrom_matches_rcvd, html_title_subject_ratio, check_stock_info.
 * Where SpamAssassin asks its registry boundaries (the public suffix list)
 * for a host's domain, the last two labels are used (three under a
 * two-letter country code's com/net/org/co/ac/gov/edu).
 */
#include <stdio.h>

#include "internal.h"

#define IP_RE "(?:\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}|[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7})"

/* Perl's $pms->get('Name'): every instance's value, joined by newlines
 * (NULL when there is none) */
static char *hget(struct msgctx *m, const char *name)
{
	struct sbuf b = {0};
	size_t st = 0;
	const struct sift_mime_header *h;
	bool any = false;
	while ((h = mh(m->mime, name, &st))) {
		if (any)
			sb_add(&b, "\n", 1);
		sb_adds(&b, h->value);
		any = true;
	}
	if (!any)
		return NULL;
	return b.d ? b.d : xstrdup("");
}

/* the same with white space runs as one space ($rcvd =~ s/\s+/ /gs) */
static char *hget_flat(struct msgctx *m, const char *name)
{
	char *v = hget(m, name);
	return v ? ws_fold(v) : xstrdup("");
}

static bool hmatch(struct msgctx *m, const char *name, const char *re)
{
	char *v = hget(m, name);
	bool r = re_match_lit(re, v ? v : "");
	free(v);
	return r;
}

/* ---- HeaderEval: received headers of free mail services ---- */

static int ev_fake_aol_relay(struct msgctx *m, const struct rule *r)
{
	char *v = hget_flat(m, "Received");
	int res = re_match_lit("(?i) rly-[a-z][a-z]\\d\\d\\.", v) &&
		  !re_match_lit("/AOL-\\d+\\.\\d+\\.\\d+\\)", v) &&
		  !re_match_lit("ESMTP id (?:RELAY|MAILRELAY|MAILIN)", v);
	free(v);
	return res;
}

static int gated_through_remover(struct msgctx *m)
{
	char *ml = hget(m, "Mailing-List");
	if (ml && re_match_lit("(?m)^contact \\S+\\@\\S+\\; run by ezmlm$", ml) &&
	    hmatch(m, "Delivered-To", "(?m)^mailing list \\S+\\@\\S+") &&
	    hmatch(m, "Received", "qmail \\d+ invoked (?:from network|by .{3,20})\\); \\d+ ... \\d+")) {
		free(ml);
		return 1;
	}
	free(ml);
	char *rc = hget(m, "Received");
	int res = !rc || re_match_lit("from groups\\.msn\\.com \\(\\S+\\.msn\\.com ", rc);
	free(rc);
	return res;
}

static int ev_gated_through_remover(struct msgctx *m, const struct rule *r)
{
	return gated_through_remover(m);
}

static bool from_addr_matches(struct msgctx *m, const char *re)
{
	char from[256];
	first_addr(m, "From", from, sizeof(from));
	return re_match_lit(re, from);
}

static bool header_has_ip(struct msgctx *m, const char *name)
{
	return hmatch(m, name, IP_RE);
}

static bool msn_groups(struct msgctx *m)
{
	char to[512] = "";
	char *tv = hget(m, "To");
	const char *lt = tv ? strcasestr(tv, "@groups.msn.com>") : NULL;
	if (!lt) {
		free(tv);
		return false;
	}
	const char *st = lt;
	while (st > tv && st[-1] != '<')
		st--;
	snprintf(to, sizeof(to), "%.*s", (int)(lt - st), st);
	free(tv);
	char *rc = hget(m, "Received");
	bool ok = rc && re_match_lit("from mail pickup service by (?:p\\d\\d\\.)groups\\.msn\\.com\\b", rc);
	free(rc);
	if (!ok || strcmp(to, "notifications") == 0)
		return ok && hmatch(m, "Message-Id", "^<\\S+\\@(?:p\\d\\d\\.)groups\\.msn\\.com>");
	char re[700], env[256];
	snprintf(re, sizeof(re), "^<\\Q%s\\E-\\S+\\@groups\\.msn\\.com>", to);
	char *mid = hget(m, "Message-Id");
	bool ok_mid = mid && re_match_str(re, mid);
	free(mid);
	if (!ok_mid)
		return false;
	first_addr(m, "EnvelopeFrom", env, sizeof(env));
	snprintf(re, sizeof(re), "\\Q%s\\E-bounce\\@groups\\.msn\\.com", to);
	return re_match_str(re, env);
}

/* 1: forged hotmail Received:, 2: a hotmail From: without one, 0 */
static int hotmail_check(struct msgctx *m)
{
	char *rc = hget_flat(m, "Received");
	int res = 0;
	if (re_match_lit("from mail pickup service by hotmail\\.com with Microsoft SMTPSVC;", rc) ||
	    msn_groups(m) || gated_through_remover(m))
		goto out;
	bool ip = header_has_ip(m, "X-Originating-Ip");
	bool orig = hmatch(m, "X-OriginatorOrg", "hotmail\\.com|msonline\\-outlook") &&
		    mh(m->mime, "X-OriginatorOrg", &(size_t){0});
	if ((ip &&
	     re_match_lit("from (?:\\S*\\.)?hotmail.com \\(\\S+\\.hotmail(?:\\.msn)?\\.com[ \\)]", rc)) ||
	    (orig && re_match_lit("from \\S*\\.outbound\\.protection\\.outlook\\.com "
				  "\\(\\S+\\.outbound\\.protection\\.outlook\\.com[ \\)]",
				  rc)) ||
	    (orig &&
	     re_match_lit("from \\S*\\.(?:eur|nam)prd\\d+\\.prod\\.outlook\\.com \\(" IP_RE "\\)", rc)) ||
	    (ip && re_match_lit("from \\S*\\.hotmail.com \\(\\[" IP_RE "\\][ \\):]", rc)) ||
	    (ip && re_match_lit("from \\S+ by \\S+\\.hotmail(?:\\.msn)?\\.com with HTTP\\;", rc)) ||
	    (ip && re_match_lit("from \\[66\\.218.\\S+\\] by \\S+\\.yahoo\\.com", rc)))
		goto out;
	if (re_match_lit("(?:from |HELO |helo=)\\S*hotmail\\.com\\b", rc))
		res = 1;
	else if (from_addr_matches(m, "(?i)\\bhotmail\\.com$"))
		res = 2;
out:
	free(rc);
	return res;
}

/* hotmail_check once per message: two evals ask it */
static int hotmail_answer(struct msgctx *m)
{
	if (!m->ev.hotmail)
		m->ev.hotmail = 1 + hotmail_check(m);
	return m->ev.hotmail - 1;
}

static int ev_forged_hotmail(struct msgctx *m, const struct rule *r)
{
	return hotmail_answer(m) == 1;
}

static int ev_no_hotmail(struct msgctx *m, const struct rule *r)
{
	return hotmail_answer(m) == 2;
}

static int ev_forged_eudoramail(struct msgctx *m, const struct rule *r)
{
	if (!from_addr_matches(m, "(?i)\\beudoramail\\.com$") || gated_through_remover(m))
		return 0;
	char *rc = hget_flat(m, "Received");
	int res = !(re_match_lit("by \\S*whowhere.com\\;", rc) && header_has_ip(m, "X-Sender-Ip"));
	free(rc);
	return res;
}

static int ev_forged_gmail(struct msgctx *m, const struct rule *r)
{
	if (!from_addr_matches(m, "(?i)\\bgmail\\.com$"))
		return 0;
	if (hmatch(m, "X-Received", "by 10\\.\\S+ with SMTP id \\S+") ||
	    hmatch(m, "X-Received", "by 2002\\:a\\d\\d\\:\\w+\\:\\S+ with SMTP id \\S+") ||
	    hmatch(m, "Received", "by smtp\\.googlemail\\.com with ESMTPSA id \\S+"))
		return 0;
	char *gms = hget(m, "X-Gm-Message-State"), *gss = hget(m, "X-Google-Smtp-Source");
	bool ok = gms && gss && strlen(gms) >= 60 && strlen(gss) >= 60;
	free(gms);
	free(gss);
	return !ok;
}

static int ev_forged_juno(struct msgctx *m, const struct rule *r)
{
	if (!from_addr_matches(m, "(?i)\\bjuno\\.com$") || gated_through_remover(m))
		return 0;
	char *xorig = hget(m, "X-Originating-IP"), *xm = hget(m, "X-Mailer"), *rc = hget(m, "Received");
	const char *xo = xorig ? xorig : "", *xmailer = xm ? xm : "", *rcvd = rc ? rc : "";
	int res = 0;
	if (*xo) {
		if ((!re_match_lit("from.*\\b(?:juno|untd)\\.com.*[\\[\\(]" IP_RE "[\\]\\)].*by", rcvd) &&
		     !re_match_lit(" cookie\\.(?:juno|untd)\\.com ", rcvd)) ||
		    !strstr(xmailer, "Juno "))
			res = 1;
	} else {
		if (re_match_lit("from.*\\bmail\\.com.*\\[" IP_RE "\\].*by", rcvd))
			res = !re_match_lit("\\bmail\\.com", xmailer);
		else if (re_match_lit("from (webmail\\S+\\.untd\\.com) \\(\\1 \\[" IP_RE "\\]\\) by", rcvd))
			res = !re_match_lit("^Webmail Version \\d", xmailer);
		else
			res = 1;
		if (!res && !re_match_lit(IP_RE, xo))
			res = 1;
	}
	free(xorig);
	free(xm);
	free(rc);
	return res;
}

/* ---- RelayEval: the forged trail ---- */

/* hostname_to_domain: the last two labels (three when the last is a short
 * country code other than ie, fr, de) */
static void host_domain(const char *h, char *out, size_t n)
{
	snprintf(out, n, "%s", h);
	bool alpha = false;
	for (const char *c = h; *c; c++)
		alpha |= isalpha((unsigned char)*c) != 0;
	if (!alpha)
		return;
	int nparts = 1;
	for (const char *c = h; *c; c++)
		nparts += *c == '.';
	const char *last = strrchr(h, '.');
	size_t keep;
	if (nparts > 1 && last &&
	    (strlen(last + 1) >= 3 || strcmp(last + 1, "ie") == 0 || strcmp(last + 1, "fr") == 0 ||
	     strcmp(last + 1, "de") == 0))
		keep = 2;
	else if (nparts > 2)
		keep = 3;
	else
		return;
	size_t l = strlen(out);
	int dots = 0;
	for (size_t i = l; i > 0; i--)
		if (out[i - 1] == '.' && ++dots == (int)keep) {
			memmove(out, out + i, l - i + 1);
			break;
		}
}

static bool dotted_host(const char *s)
{
	return re_match_lit("^\\w+(?:[\\w.-]+\\.)+\\w+$", s);
}

/* s lower-cased into out (a relay's lc_by, lc_rdns in SpamAssassin) */
static void lc_copy(char *out, size_t n, const char *s)
{
	snprintf(out, n, "%s", s);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}

static int ev_forged_received_trail(struct msgctx *m, const struct rule *r)
{
	struct relayinfo *ri = relays(m);
	int mismatch = 0;
	char prev[256] = "";
	for (size_t i = ri->ntrusted; i < ri->n; i++) {
		const struct relay *rl = &ri->r[i];
		char by[256], from[256], lc[256];
		lc_copy(lc, sizeof(lc), rl->by);
		host_domain(lc, by, sizeof(by));
		lc_copy(lc, sizeof(lc), rl->rdns);
		host_domain(lc, from, sizeof(from));
		if (strcmp(from, "localhost") == 0 || strcmp(from, "localhost.localdomain") == 0)
			if (strcmp(rl->ip, "127.0.0.1") == 0)
				from[0] = 0;
		if (dotted_host(by) && i > ri->ntrusted && dotted_host(prev) && strcmp(by, prev) != 0 &&
		    !(strcmp(by, "msn.com") == 0 && strcmp(prev, "hotmail.com") == 0))
			mismatch++;
		snprintf(prev, sizeof(prev), "%s", from);
	}
	return mismatch > 1;
}

/* ---- addresses ---- */

/* the registrable domain (see the top of the file) */
static void reg_domain(const char *host, char *out, size_t n)
{
	snprintf(out, n, "%s", host);
	const char *last = strrchr(host, '.');
	int keep = 2;
	if (last && strlen(last + 1) == 2) {
		const char *p = last;
		while (p > host && p[-1] != '.')
			p--;
		size_t sl = (size_t)(last - p);
		if ((sl == 2 || sl == 3) &&
		    (strncmp(p, "co", 2) == 0 || strncmp(p, "com", sl) == 0 || strncmp(p, "net", sl) == 0 ||
		     strncmp(p, "org", sl) == 0 || strncmp(p, "ac", sl) == 0 || strncmp(p, "gov", sl) == 0 ||
		     strncmp(p, "edu", sl) == 0 || strncmp(p, "ne", sl) == 0 || strncmp(p, "or", sl) == 0))
			keep = 3;
	}
	size_t l = strlen(out);
	int dots = 0;
	for (size_t i = l; i > 0; i--)
		if (out[i - 1] == '.' && ++dots == keep) {
			memmove(out, out + i, l - i + 1);
			break;
		}
}

static int ev_mailfrom_matches_rcvd(struct msgctx *m, const struct rule *r)
{
	char env[256];
	first_addr(m, "EnvelopeFrom", env, sizeof(env));
	const char *at = strrchr(env, '@');
	if (!at || !strchr(at + 1, '.'))
		return 0;
	char dom[256], ad[256];
	snprintf(dom, sizeof(dom), "%s", at + 1);
	for (char *c = dom; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	reg_domain(dom, ad, sizeof(ad));
	struct relayinfo *ri = relays(m);
	size_t from = 0, to = 0;
	if (ri->n > ri->ntrusted) {
		from = ri->ntrusted;
		to = from + 1;
	} else
		to = ri->ntrusted;
	for (size_t i = from; i < to; i++) {
		char rd[256], lc[256];
		if (!ri->r[i].rdns[0])
			continue;
		lc_copy(lc, sizeof(lc), ri->r[i].rdns);
		reg_domain(lc, rd, sizeof(rd));
		if (strcmp(rd, ad) == 0)
			return 1;
	}
	return 0;
}

static int ev_matching_env_and_hdr_from(struct msgctx *m, const struct rule *r)
{
	char env[256], from[256];
	first_addr(m, "EnvelopeFrom", env, sizeof(env));
	first_addr(m, "From", from, sizeof(from));
	return strcasecmp(env, from) == 0;
}

static int ev_ratware_name_id(struct msgctx *m, const struct rule *r)
{
	char *mid = hget(m, "Message-Id"), *from = hget(m, "From");
	int res = 0;
	const char *p = mid ? mid : "";
	/* <[A-Z]{28}\.([^>]+?)> */
	for (const char *lt = strchr(p, '<'); lt && !res; lt = strchr(lt + 1, '<')) {
		int k = 0;
		while (k < 28 && isupper((unsigned char)lt[1 + k]))
			k++;
		if (k != 28 || lt[29] != '.')
			continue;
		const char *gt = strchr(lt + 30, '>');
		if (!gt || gt == lt + 30)
			continue;
		char re[600];
		snprintf(re, sizeof(re), "\"[^\"]+\"\\s*<\\Q%.*s\\E>", (int)(gt - lt - 30), lt + 30);
		res = from && re_match_str(re, from);
	}
	free(mid);
	free(from);
	return res;
}

static int ev_ratware_envelope_from(struct msgctx *m, const struct rule *r)
{
	char to[256], from[256];
	first_addr(m, "To", to, sizeof(to));
	first_addr(m, "EnvelopeFrom", from, sizeof(from));
	if (!to[0] || !from[0] || re_match_lit("(?i)^SRS\\d[=+-]", from))
		return 0;
	const char *at = strchr(to, '@');
	if (!at || at == to || !at[1])
		return 0;
	char dom[256], re[700];
	reg_domain(at + 1, dom, sizeof(dom));
	const char *tld = strrchr(dom, '.');
	if (!tld || strlen(tld + 1) < 2 || !strcasestr(from, dom)) /* no regex to compile */
		return 0;
	snprintf(re, sizeof(re), "(?i)\\b\\Q%s\\E.\\Q%.*s\\E@", dom, (int)(at - to), to);
	return re_match_str(re, from);
}

static int ev_to_in_subject(struct msgctx *m, const struct rule *r)
{
	char to[256];
	first_addr(m, "To", to, sizeof(to));
	if (!to[0])
		return 0;
	char *subj = hget(m, "Subject");
	const char *s = subj ? subj : "";
	char re[1400];
	int res = 0;
	char *at = strchr(to, '@');
	if (at)
		*at = 0;
	bool local_in = strcasestr(s, to) != NULL; /* else no regex can match */
	if (at)
		*at = '@';
	if (!local_in) {
		free(subj);
		return 0;
	}
	if (strcmp(eval_arg(r, 0), "address") == 0) {
		snprintf(re, sizeof(re), "(?i)\\b\\Q%s\\E\\b", to);
		res = re_match_str(re, s);
	} else if (strcmp(eval_arg(r, 0), "user") == 0) {
		if (at)
			*at = 0;
		snprintf(re, sizeof(re),
			 "(?ix)^(?:(?:re|fw):\\s*(?:\\w+\\s+)?\\Q%s\\E$|(?-i:\\Q%s\\E)\\s*[,:;!?-](?:$|\\s)|"
			 "\\Q%s\\E$"
			 "|,\\s*\\Q%s\\E[,:;!?-]$)",
			 to, to, to, to);
		res = re_match_str(re, s);
	}
	free(subj);
	return res;
}

static int ev_unresolved_template(struct msgctx *m, const struct rule *r)
{
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; i < mm->header_count; i++) {
		const char *v = mm->headers[i].value;
		const char *pc = strchr(v, '%');
		bool hit = false;
		for (; pc && !hit; pc = strchr(pc + 1, '%'))
			hit = isupper((unsigned char)pc[1]) &&
			      (isupper((unsigned char)pc[2]) || pc[2] == '_' || pc[2] == '-');
		if (hit &&
		    !re_match_lit("(?i)^(?:X-VMS-To|X-UIDL|X-Face|To|Cc|From|Subject|References|In-Reply-To|"
				  "(?:X-|Resent-|X-Original-)?Message-Id)$",
				  mm->headers[i].name))
			return 1;
	}
	return 0;
}

/* ---- HTML and body ---- */

static int ev_html_title_subject_ratio(struct msgctx *m, const struct rule *r)
{
	char *subj = hget(m, "Subject");
	size_t sl = subj ? strlen(subj) : 0;
	free(subj);
	if (!sl || !m->mime->html)
		return 0;
	double ratio = atof(eval_arg(r, 0));
	for (size_t i = 0; i < m->mime->part_count; i++) {
		const struct sift_html *hi = m->mime->html[i];
		if (hi && hi->title && *hi->title && (double)strlen(hi->title) / (double)sl > ratio)
			return 1;
	}
	return 0;
}

/* check_stock_info(min): labels of stock quotes ("Symbol:", "Target
 * Price:") in the first text/plain part */
static int ev_stock_info(struct msgctx *m, const struct rule *r)
{
	const struct sift_mime_part *p = NULL;
	for (size_t i = 0; i < m->mime->part_count && !p; i++)
		if (strcmp(m->mime->parts[i].type, "text/plain") == 0 && m->mime->parts[i].text)
			p = &m->mime->parts[i];
	if (!p)
		return 0;
	static const char *const labels =
		"^(trad(?:e|ing)date|company(?:name)?|s\\w?(?:t\\w?o\\w?c\\w?k|y\\w?m(?:\\w?b\\w?o\\w?l)?)|"
		"t(?:arget|icker)|(?:opening|current)p(?:rice)?|p(?:rojected|osition)|expectations|weeks?"
		"high|"
		"marketperformance|(?:year|week|month|day|price)(?:target|estimates?)|sector|r(?:"
		"ecommendation|ating))$";
	char found[16][40];
	size_t nfound = 0;
	const char *s = p->text, *e = s + p->text_len;
	/* ^\s*([^:\s][^:\n]{2,29})\s*:\s*\S per line */
	for (const char *ln = s; ln < e && nfound < 16;) {
		const char *nl = memchr(ln, '\n', (size_t)(e - ln));
		const char *le = nl ? nl : e;
		const char *c = ln;
		while (c < le && isspace((unsigned char)*c))
			c++;
		const char *colon = memchr(c, ':', (size_t)(le - c));
		if (colon && colon > c && !isspace((unsigned char)*c)) {
			const char *after = colon + 1;
			while (after < le && isspace((unsigned char)*after))
				after++;
			const char *ke = colon;
			while (ke > c && isspace((unsigned char)ke[-1]))
				ke--;
			size_t kl = (size_t)(ke - c);
			if (after < le && kl >= 3 && kl <= 30) {
				char key[40];
				size_t w = 0;
				for (const char *k = c; k < ke; k++)
					if (isalpha((unsigned char)*k) && w < sizeof(key) - 1)
						key[w++] = (char)tolower((unsigned char)*k);
				key[w] = 0;
				bool dup = false;
				for (size_t f = 0; f < nfound; f++)
					dup |= strcmp(found[f], key) == 0;
				if (!dup && re_match_lit(labels, key))
					snprintf(found[nfound++], sizeof(found[0]), "%s", key);
			}
		}
		ln = le + 1;
	}
	long mn = atol(eval_arg(r, 0));
	return mn == 0 || (long)nfound >= mn;
}

/* VBounce: no welcomelist_bounce_relays setting in Sift */
static int ev_no_bounce_relays(struct msgctx *m, const struct rule *r)
{
	return 0;
}

/* DKIM: SpamAssassin 4.0's check_dkim_signsome is always false, and
 * check_dkim_signall is ADSP (a DNS lookup): false here too */
static int ev_false(struct msgctx *m, const struct rule *r)
{
	return 0;
}

/* check_arc_signed([domain ...]): an ARC-Seal header field (of one of the
 * domains given, by its d= tag) */
static int ev_arc_signed(struct msgctx *m, const struct rule *r)
{
	size_t st = 0;
	const struct sift_mime_header *h;
	while ((h = mh(m->mime, "ARC-Seal", &st))) {
		if (r->neval == 0)
			return 1;
		const char *d = strstr(h->value, "d=");
		while (d && d != h->value && d[-1] != ' ' && d[-1] != ';' && d[-1] != '\t')
			d = strstr(d + 2, "d=");
		if (!d)
			continue;
		d += 2;
		size_t dl = strcspn(d, "; \t");
		for (int i = 0; i < r->neval; i++)
			if (strlen(eval_arg(r, i)) == dl && strncasecmp(eval_arg(r, i), d, dl) == 0)
				return 1;
	}
	return 0;
}

/* check_arc_valid(): the arc plugin, earlier in the chain, found a
 * passing chain (its ARC_PASS); false without it (SpamAssassin verifies
 * the chain itself; Sift verifies once, in the arc plugin). */
static int ev_arc_valid(struct msgctx *m, const struct rule *r)
{
	for (size_t k = 0; k < m->in->nsyms; k++)
		if (strcmp(m->in->sym_names[k], "ARC_PASS") == 0)
			return 1;
	return 0;
}

const struct evaldef evals_relay[] = {
	{"check_dkim_signsome", ev_false},
	{"check_dkim_signall", ev_false},
	{"check_arc_signed", ev_arc_signed},
	{"check_arc_valid", ev_arc_valid},
	{"check_for_fake_aol_relay_in_rcvd", ev_fake_aol_relay},
	{"check_for_forged_hotmail_received_headers", ev_forged_hotmail},
	{"check_for_no_hotmail_received_headers", ev_no_hotmail},
	{"check_for_forged_eudoramail_received_headers", ev_forged_eudoramail},
	{"check_for_forged_gmail_received_headers", ev_forged_gmail},
	{"check_for_forged_juno_received_headers", ev_forged_juno},
	{"gated_through_received_hdr_remover", ev_gated_through_remover},
	{"check_for_forged_received_trail", ev_forged_received_trail},
	{"check_mailfrom_matches_rcvd", ev_mailfrom_matches_rcvd},
	{"check_for_matching_env_and_hdr_from", ev_matching_env_and_hdr_from},
	{"check_ratware_name_id", ev_ratware_name_id},
	{"check_ratware_envelope_from", ev_ratware_envelope_from},
	{"check_for_to_in_subject", ev_to_in_subject},
	{"check_unresolved_template", ev_unresolved_template},
	{"html_title_subject_ratio", ev_html_title_subject_ratio},
	{"check_stock_info", ev_stock_info},
	{"have_any_bounce_relays", ev_no_bounce_relays},
	{NULL, NULL},
};
