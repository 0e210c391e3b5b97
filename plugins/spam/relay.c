/*
 * relay.c - what SpamAssassin derives from Received: and date headers:
 *   - Received: headers parsed into relays (ip, rdns, helo, by, ident,
 *     envfrom, id, auth) with SpamAssassin's trust inference when no
 *     trusted_networks are configured (a relay is trusted while its IP is
 *     private or it authenticated), giving the pseudo-headers
 *     X-Spam-Relays-Trusted/-Untrusted/-Internal/-External;
 *   - RFC 2822 date parsing (Date: and Received: times).
 * The Received formats themselves are in received.c (SpamAssassin's
 * cascade of known formats; a line none of them fits is unparseable).
 */
#include <stdio.h>

#include "internal.h"
/* ---- dates ------------------------------------------------------------- */

static int month_index(const char *m)
{
	static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
					     "jul", "aug", "sep", "oct", "nov", "dec"};
	for (int i = 0; i < 12; i++)
		if (strncasecmp(m, months[i], 3) == 0)
			return i;
	return -1;
}

/* The digits at s[*i] (at least min, at most max; max 0: any number) into
 * *v (saturated); false when fewer than min. */
static bool digits_at(const char *s, size_t *i, size_t min, size_t max, long *v)
{
	size_t k = *i;
	long n = 0;
	while (isdigit((unsigned char)s[k]) && (!max || k - *i < max)) {
		n = n < 100000000 ? n * 10 + (s[k] - '0') : n;
		k++;
	}
	if (k - *i < min)
		return false;
	*v = n;
	*i = k;
	return true;
}

static bool month_at(const char *s, size_t *i, int *mon)
{
	if (!isalpha((unsigned char)s[*i]) || !isalpha((unsigned char)s[*i + 1]) ||
	    !isalpha((unsigned char)s[*i + 2]) || (*mon = month_index(s + *i)) < 0)
		return false;
	*i += 3;
	return true;
}

static bool space_at(const char *s, size_t *i)
{
	return s[*i] == ' ' ? (++*i, true) : false;
}

/* Removes b[at..end) from the string b, leaving one space in its place. */
static void cut_to_space(char *b, size_t at, size_t end)
{
	b[at] = ' ';
	memmove(b + at + 1, b + end, strlen(b + end) + 1);
}

static const struct {
	const char *z;
	int off; /* minutes east */
} tzs[] = {{"UT", 0},	   {"UTC", 0},	  {"NDT", -150}, {"AST", -240},	 {"ADT", -180},	 {"NST", -210},
	   {"EST", -300},  {"EDT", -240}, {"CST", -360}, {"CDT", -300},	 {"MST", -420},	 {"MDT", -360},
	   {"PST", -480},  {"PDT", -420}, {"HST", -600}, {"AKST", -540}, {"AKDT", -480}, {"HADT", -540},
	   {"HAST", -600}, {"GMT", 0},	  {"BST", 60},	 {"IST", 60},	 {"WET", 0},	 {"WEST", 60},
	   {"CET", 60},	   {"CEST", 120}, {"EET", 120},	 {"EEST", 180},	 {"MSK", 180},	 {"MSD", 240},
	   {"MET", 60},	   {"MEZ", 60},	  {"MEST", 120}, {"MESZ", 120},	 {"BRST", -120}, {"BRT", -180},
	   {"AEST", 600},  {"AEDT", 660}, {"ACST", 570}, {"ACDT", 630},	 {"AWST", 480},	 {"NZST", 720},
	   {"NZDT", 780},  {"JST", 540},  {"KST", 540},	 {"HKT", 480},	 {"SGT", 480},	 {"PHT", 480},
	   {"IDT", 180}};

static bool word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* SpamAssassin's Util::parse_rfc822_date, step by step: white space and
 * commas to single spaces; the first " DD Mon YYYY ", else
 * " Mon DD hh:mm:ss YYYY " (its time is removed with it, so the time is
 * then 00:00:00), else " DD Mon YY(Y) " is the date, removed from the
 * string; then the first " h:mm[:ss] ", the first " +hhmm " or else the
 * first upper-case zone word when it is a known one; out-of-range fields
 * clamped or moved to the next day as SpamAssassin does, years kept within
 * 1970..2037. Returns 0 and *t, -1 when no date is found. */
int parse_rfc822_date(const char *s, time_t *t)
{
	char b[512];
	size_t n = 0;
	b[n++] = ' ';
	for (const char *p = s; *p && n < sizeof(b) - 2; p++) {
		char c = *p == ',' || isspace((unsigned char)*p) ? ' ' : *p;
		if (c != ' ' || b[n - 1] != ' ')
			b[n++] = c;
	}
	if (b[n - 1] != ' ')
		b[n++] = ' ';
	b[n] = 0;
	long dd = 0, yyyy = 0, v;
	int mon = -1;
	size_t ylen = 0;
	for (int form = 0; form < 3 && mon < 0; form++)
		for (size_t i = 0; b[i] && mon < 0; i++) {
			if (b[i] != ' ')
				continue;
			size_t k = i + 1, y0;
			int mo;
			long d, y;
			bool ok;
			if (form == 1) /* " Mon DD hh:mm:ss YYYY " */
				ok = month_at(b, &k, &mo) && space_at(b, &k) && digits_at(b, &k, 1, 0, &d) &&
				     space_at(b, &k) && digits_at(b, &k, 1, 0, &v) && b[k++] == ':' &&
				     digits_at(b, &k, 1, 0, &v) && b[k++] == ':' &&
				     digits_at(b, &k, 1, 0, &v) && space_at(b, &k) &&
				     (y0 = k, digits_at(b, &k, 4, 4, &y)) && b[k] == ' ';
			else
				ok = digits_at(b, &k, 1, 0, &d) && space_at(b, &k) && month_at(b, &k, &mo) &&
				     space_at(b, &k) &&
				     (y0 = k, digits_at(b, &k, form ? 2 : 4, form ? 3 : 4, &y)) &&
				     b[k] == ' ';
			if (!ok)
				continue;
			dd = d, mon = mo, yyyy = y, ylen = k - y0;
			cut_to_space(b, i, k + 1);
		}
	if (mon < 0)
		return -1;
	if (ylen == 2 && yyyy < 50)
		yyyy += 2000;
	else if (ylen != 4)
		yyyy += 1900;
	long hh = 0, mm = 0, ss = 0;
	for (size_t i = 0; b[i]; i++) {
		size_t k = i + 1;
		long h, mi, se = 0;
		if (b[i] != ' ' || !digits_at(b, &k, 1, 2, &h) || b[k++] != ':' ||
		    !digits_at(b, &k, 2, 2, &mi))
			continue;
		size_t k2 = k;
		if (b[k2] == ':' && (k2++, digits_at(b, &k2, 2, 2, &se)) && b[k2] == ' ')
			k = k2;
		else
			se = 0;
		if (b[k] != ' ')
			continue;
		hh = h, mm = mi, ss = se;
		cut_to_space(b, i, k + 1);
		break;
	}
	long off = 0; /* seconds east */
	bool zone = false;
	for (size_t i = 0; b[i] && !zone; i++) {
		size_t k = i + 2;
		if (b[i] == ' ' && (b[i + 1] == '+' || b[i + 1] == '-') && digits_at(b, &k, 4, 4, &v) &&
		    b[k] == ' ') {
			off = (v / 100 * 60 + v % 100) * 60 * (b[i + 1] == '-' ? -1 : 1);
			zone = true;
		}
	}
	for (size_t i = 0; b[i] && !zone; i++) {
		if (!isupper((unsigned char)b[i]) || (i && word_char(b[i - 1])))
			continue;
		size_t k = i;
		while (isupper((unsigned char)b[k]) && k - i < 4)
			k++;
		if (k - i < 2)
			continue;
		size_t e = k;
		if (strncmp(b + e, "-DST", 4) == 0 && !word_char(b[e + 4]))
			e += 4;
		else if (word_char(b[e]))
			continue; /* no word boundary after 2-4 capitals */
		for (size_t z = 0; z < sizeof(tzs) / sizeof(tzs[0]); z++)
			if (strlen(tzs[z].z) == e - i && strncmp(b + i, tzs[z].z, e - i) == 0)
				off = tzs[z].off * 60L;
		zone = true; /* only the first such word counts */
	}
	ss = ss > 59 ? 59 : ss;
	mm = mm > 59 ? 59 : mm;
	hh = hh > 23 ? 23 : hh;
	int mo1 = mon + 1;
	long max_dd = mo1 == 4 || mo1 == 6 || mo1 == 9 || mo1 == 11 ? 30
		      : mo1 == 2 ? ((yyyy % 4 == 0 && (yyyy % 100 || yyyy % 400 == 0)) ? 29 : 28)
				 : 31;
	if (dd > max_dd) {
		dd = 1;
		if (++mo1 > 12) {
			mo1 = 1;
			yyyy++;
		}
	}
	if (dd < 1)
		return -1; /* timegm() croaks on day 0 */
	yyyy = yyyy > 2037 ? 2037 : yyyy < 1970 ? 1970 : yyyy;
	struct tm tm = {0};
	tm.tm_year = (int)yyyy - 1900;
	tm.tm_mon = mo1 - 1;
	tm.tm_mday = (int)dd;
	tm.tm_hour = (int)hh;
	tm.tm_min = (int)mm;
	tm.tm_sec = (int)ss;
	time_t x = timegm(&tm);
	*t = off > 0 && x < off ? 0 : x - off;
	return 0;
}

/* The first date in a Received: field as HeaderEval finds it,
 * (\s.?\d+ \S\S\S \d+ \d+:\d+:\d+ \S+), parsed; -1 when none. */
int received_date(const char *v, time_t *t)
{
	for (size_t i = 0; v[i]; i++) {
		if (!isspace((unsigned char)v[i]))
			continue;
		for (int skip = 1; skip >= 0; skip--) {
			size_t k = i + 1;
			long x;
			if (skip && (!v[k] || v[k] == '\n'))
				continue;
			k += (size_t)skip;
			bool ok = digits_at(v, &k, 1, 0, &x) && v[k++] == ' ';
			for (int c = 0; ok && c < 3; c++)
				ok = v[k] && !isspace((unsigned char)v[k]), k++;
			ok = ok && v[k++] == ' ' && digits_at(v, &k, 1, 0, &x) && v[k++] == ' ' &&
			     digits_at(v, &k, 1, 0, &x) && v[k++] == ':' && digits_at(v, &k, 1, 0, &x) &&
			     v[k++] == ':' && digits_at(v, &k, 1, 0, &x) && v[k++] == ' ' && v[k] &&
			     !isspace((unsigned char)v[k]);
			if (!ok)
				continue;
			while (v[k] && !isspace((unsigned char)v[k]))
				k++;
			char d[256];
			snprintf(d, sizeof(d), "%.*s", (int)(k - i), v + i);
			return parse_rfc822_date(d, t);
		}
	}
	return -1;
}

/* ---- relays -------------------------------------------------------------- */

bool ip_private(const char *ip)
{
	unsigned a, b;
	if (strchr(ip, ':'))
		return strcmp(ip, "::1") == 0 || strncasecmp(ip, "fe80:", 5) == 0 ||
		       strncasecmp(ip, "fc", 2) == 0 || strncasecmp(ip, "fd", 2) == 0;
	if (sscanf(ip, "%u.%u", &a, &b) != 2)
		return false;
	return a == 10 || a == 127 || (a == 172 && b >= 16 && b <= 31) || (a == 192 && b == 168) ||
	       (a == 169 && b == 254) || a == 0;
}

/* 1 parsed, 0 not a relay line or a handover skipped, -1 unparseable
 * (received.c has the formats). */
int parse_received(const char *v, struct relay *rl)
{
	int kind;
	int rc = received_parse(v, rl, &kind);
	if (rc > 0)
		rl->priv = ip_private(rl->ip);
	else
		memset(rl, 0, sizeof(*rl));
	return rc;
}

static void relay_str(struct sbuf *b, const struct relay *r)
{
	char tmp[1600];
	snprintf(tmp, sizeof(tmp),
		 "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s auth=%s msa=%d ]", r->ip,
		 r->rdns, r->helo, r->by, r->ident, r->envfrom, r->intl, r->id, r->auth, r->msa);
	if (b->n)
		sb_add(b, " ", 1);
	sb_adds(b, tmp);
}

/* Trust and internality of the next relay (Received.pm's loop): *in_trusted,
 * *in_internal and *found_msa carry the state from the newer relays. */
static void relay_classify(const struct spam_engine *e, struct relay *r, bool *in_trusted, bool *in_internal,
			   bool *found_msa)
{
	if (*in_trusted && !*found_msa) {
		if (!e->trusted_conf && !e->internal_conf) {
			/* inferred: private addresses and authenticated hops */
			if (!r->priv && !r->auth[0])
				*in_trusted = *in_internal = false;
		} else {
			/* one list configured stands for both */
			const struct netset *tr = e->trusted_conf ? &e->trusted_nets : &e->internal_nets;
			const struct netset *in = e->internal_conf ? &e->internal_nets : &e->trusted_nets;
			if (!r->auth[0] && !netset_contains(tr, r->ip)) {
				*in_trusted = false;
				*in_internal = false;
			} else {
				if (*in_internal && !r->auth[0] && !netset_contains(in, r->ip))
					*in_internal = false;
				if (e->msa_nets.count && netset_contains(&e->msa_nets, r->ip)) {
					*found_msa = true;
					r->msa = true;
				}
			}
		}
	}
	r->intl = *in_internal;
}

/* White space runs of v (in place) as one space, as SpamAssassin unfolds
 * a Received: value; returns v. */
char *ws_fold(char *v)
{
	size_t w = 0;
	for (size_t k = 0; v[k]; k++) {
		char c = isspace((unsigned char)v[k]) ? ' ' : v[k];
		if (c == ' ' && w && v[w - 1] == ' ')
			continue;
		v[w++] = c;
	}
	v[w] = 0;
	return v;
}

/* Classifies r (trust goes on from the relays before it) and appends it. */
static void relay_add(const struct spam_engine *e, struct relayinfo *ri, size_t *cap, struct relay *r,
		      bool *in_trusted, bool *in_internal, bool *found_msa)
{
	relay_classify(e, r, in_trusted, in_internal, found_msa);
	if (ri->n == *cap) {
		*cap = *cap ? *cap * 2 : 8;
		ri->r = xrealloc(ri->r, *cap * sizeof(*ri->r));
	}
	ri->r[ri->n++] = *r;
	if (*in_trusted) {
		ri->ntrusted++;
		ri->last_trusted_idx++;
	}
	if (*in_internal) {
		ri->nintl++;
		ri->last_internal_idx++;
	}
}

/* The first IPv4 address written in s (four decimal octets not inside a
 * longer run of digits and dots) into out. */
static bool first_ipv4(const char *s, char *out, size_t n)
{
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p) || (p > s && (isdigit((unsigned char)p[-1]) || p[-1] == '.')))
			continue;
		unsigned a, b, c, d;
		int len = 0;
		if (sscanf(p, "%3u.%3u.%3u.%3u%n", &a, &b, &c, &d, &len) == 4 && a < 256 && b < 256 &&
		    c < 256 && d < 256 && !isdigit((unsigned char)p[len]) &&
		    !(p[len] == '.' && isdigit((unsigned char)p[len + 1]))) {
			snprintf(out, n, "%u.%u.%u.%u", a, b, c, d);
			return true;
		}
	}
	return false;
}

struct relayinfo *relays(struct msgctx *m)
{
	if (m->relays)
		return m->relays;
	struct relayinfo *ri = xcalloc(1, sizeof(*ri));
	m->relays = ri;
	ri->last_trusted_idx = ri->last_internal_idx = -1;
	size_t st = 0, cap = 0;
	const struct sift_mime_header *h;
	bool in_trusted = true, in_internal = true, found_msa = false;
	/* a mail fetcher's line restarts the relays while the last relay
	 * added was trusted; qmail-scanner's line gives its envelope sender
	 * to the next relay */
	bool allow_fetch = false;
	char qms[sizeof(((struct relay *)0)->envfrom)] = "";
	while ((h = mh(m->mime, "Received", &st))) {
		struct relay r;
		char pending[sizeof(qms)];
		snprintf(pending, sizeof(pending), "%s", qms);
		qms[0] = 0;
		char *v = ws_fold(xstrdup(h->value));
		int kind;
		int rc = received_parse(v, &r, &kind);
		if (kind == RCV_FETCHER && allow_fetch)
			ri->n = ri->ntrusted = ri->nintl = 0;
		if (kind == RCV_QSCANNER)
			snprintf(qms, sizeof(qms), "%s", r.envfrom);
		if (rc < 0 && getenv("SIFT_SPAM_DEBUG_RELAYS"))
			fprintf(stderr, "unparseable: %s\n", v);
		free(v);
		if (rc <= 0) {
			if (rc < 0)
				ri->unparseable++;
			ri->last_trusted_idx += in_trusted;
			ri->last_internal_idx += in_internal;
			continue;
		}
		r.priv = ip_private(r.ip);
		if (pending[0] && strcmp(pending, "0") != 0)
			snprintf(r.envfrom, sizeof(r.envfrom), "%s", pending);
		if (ri->n >= 64)
			continue;
		relay_add(m->e, ri, &cap, &r, &in_trusted, &in_internal, &found_msa);
		allow_fetch = in_trusted;
	}
	/* the originating_ip_headers (X-Originating-IP, ...): SpamAssassin
	 * appends each as a relay with only an address, after the Received:
	 * ones, through the same trust steps */
	const struct netconf *nc = m->e->net;
	for (size_t k = 0; nc && k < nc->norig && ri->n < 64; k++) {
		st = 0;
		h = mh(m->mime, nc->orig[k], &st);
		struct relay r;
		memset(&r, 0, sizeof(r));
		if (!h || !first_ipv4(h->value, r.ip, sizeof(r.ip)))
			continue;
		r.priv = ip_private(r.ip);
		relay_add(m->e, ri, &cap, &r, &in_trusted, &in_internal, &found_msa);
	}
	struct sbuf ts = {0}, us = {0}, is = {0}, es = {0};
	for (size_t i = 0; i < ri->n; i++) {
		relay_str(i < ri->ntrusted ? &ts : &us, &ri->r[i]);
		relay_str(i < ri->nintl ? &is : &es, &ri->r[i]);
	}
	ri->trusted_str = ts.d;
	ri->untrusted_str = us.d;
	ri->internal_str = is.d;
	ri->external_str = es.d;
	return ri;
}

/* envfrom of the last hop (first untrusted relay, else last trusted) */
const char *lasthop_envfrom(struct msgctx *m)
{
	struct relayinfo *ri = relays(m);
	if (!ri->n)
		return NULL;
	const struct relay *r = ri->ntrusted < ri->n ? &ri->r[ri->ntrusted] : &ri->r[ri->n - 1];
	return strchr(r->envfrom, '@') ? r->envfrom : NULL;
}

void relays_free(struct relayinfo *ri)
{
	if (!ri)
		return;
	free(ri->r);
	free(ri->trusted_str);
	free(ri->untrusted_str);
	free(ri->internal_str);
	free(ri->external_str);
	free(ri);
}
