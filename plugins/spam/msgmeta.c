/*
 * msgmeta.c - per-message metadata that SpamAssassin derives before rules
 * run (included by engine.c, shares its per-message context):
 *   - Received: headers parsed into relays (ip, rdns, helo, by, ident,
 *     envfrom, id, auth) with SpamAssassin's trust inference when no
 *     trusted_networks are configured (a relay is trusted while its IP is
 *     private or it authenticated), giving the pseudo-headers
 *     X-Spam-Relays-Trusted/-Untrusted/-Internal/-External;
 *   - RFC 2822 date parsing (Date: and Received: times);
 *   - an HTML analysis of the first text/html part (tags opened and
 *     closed, comments, title, anchor text, font sizes) for HTMLEval;
 *   - the freemail domain list (freemail_domains).
 * Only simple, common Received formats are understood (Postfix, Sendmail,
 * Exim, qmail, fetchmail and generic "from X (Y [IP])"); others count as
 * unparseable, as in SpamAssassin.
 */

#include <fnmatch.h>

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

/* Parses "[Wdy,] DD Mon YYYY HH:MM[:SS] [zone]"; returns 0 and *t. */
static int parse_rfc822_date(const char *s, time_t *t)
{
	const char *p = s;
	while (*p && !isdigit((unsigned char)*p))
		p++;
	if (!*p)
		return -1;
	int day = (int)strtol(p, (char **)&p, 10);
	while (*p == ' ' || *p == '-')
		p++;
	int mon = month_index(p);
	if (mon < 0 || day < 1 || day > 31)
		return -1;
	while (isalpha((unsigned char)*p))
		p++;
	while (*p == ' ' || *p == '-')
		p++;
	if (!isdigit((unsigned char)*p))
		return -1;
	int year = (int)strtol(p, (char **)&p, 10);
	if (year < 50)
		year += 2000;
	else if (year < 1000)
		year += 1900;
	while (*p == ' ')
		p++;
	int hh = 0, mm = 0, ss = 0;
	if (sscanf(p, "%d:%d:%d", &hh, &mm, &ss) < 2)
		return -1;
	while (*p && *p != ' ')
		p++;
	while (*p == ' ')
		p++;
	long off = 0;
	if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		p++;
		int v = 0, n = 0;
		while (isdigit((unsigned char)*p) && n < 4) {
			v = v * 10 + (*p - '0');
			p++;
			n++;
		}
		if (n == 4)
			off = sign * ((v / 100) * 3600L + (v % 100) * 60L);
	} else {
		static const struct {
			const char *z;
			int h;
		} zones[] = {{"EST", -5}, {"EDT", -4}, {"CST", -6}, {"CDT", -5}, {"MST", -7}, {"MDT", -6},
			     {"PST", -8}, {"PDT", -7}, {"GMT", 0},  {"UT", 0},	 {"UTC", 0},  {"BST", 1},
			     {"CET", 1},  {"CEST", 2}, {"JST", 9},  {"KST", 9},	 {"IST", 1}};
		for (size_t i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
			if (strncasecmp(p, zones[i].z, strlen(zones[i].z)) == 0 &&
			    !isalpha((unsigned char)p[strlen(zones[i].z)])) {
				off = zones[i].h * 3600L;
				break;
			}
	}
	struct tm tm = {0};
	tm.tm_year = year - 1900;
	tm.tm_mon = mon;
	tm.tm_mday = day;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	*t = timegm(&tm) - off;
	return 0;
}

/* ---- relays -------------------------------------------------------------- */

struct relay {
	char ip[64], rdns[256], helo[256], by[256], ident[64], envfrom[256], id[128], auth[32];
	bool priv;
	bool looked_up; /* the MTA's format shows it looked up rDNS */
};

struct relayinfo {
	struct relay *r;
	size_t n, ntrusted; /* relays[0..ntrusted) trusted */
	int unparseable;
	char *trusted_str, *untrusted_str;
};

static bool ip_private(const char *ip)
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

static bool is_ip(const char *s, size_t n)
{
	size_t dots = 0, colons = 0;
	if (n == 0 || n > 45)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.')
			dots++;
		else if (s[i] == ':')
			colons++;
		else if (!isxdigit((unsigned char)s[i]))
			return false;
	}
	return dots == 3 || colons >= 2;
}

static void copy_tok(char *dst, size_t n, const char *s, size_t len)
{
	if (len >= n)
		len = n - 1;
	memcpy(dst, s, len);
	dst[len] = 0;
}

/* Finds the first "[IP]" or "(IP)" in s..e; returns its start or NULL. */
static const char *find_ip(const char *s, const char *e, char *ip, size_t n)
{
	for (const char *p = s; p < e; p++) {
		if (*p != '[' && *p != '(')
			continue;
		const char *q = p + 1;
		if (strncasecmp(q, "IPv6:", 5) == 0)
			q += 5;
		const char *r = q;
		while (r < e && (isxdigit((unsigned char)*r) || *r == '.' || *r == ':'))
			r++;
		if (r < e && (*r == ']' || *r == ')') && is_ip(q, (size_t)(r - q))) {
			copy_tok(ip, n, q, (size_t)(r - q));
			return p;
		}
	}
	return NULL;
}

/* 1 parsed, 0 not a relay line (no "from"), -1 unparseable. */
static int parse_received(const char *v, struct relay *rl)
{
	memset(rl, 0, sizeof(*rl));
	const char *p = v;
	while (*p == ' ')
		p++;
	if (strncasecmp(p, "from ", 5) != 0)
		return 0;
	const char *by = strstr(p, " by ");
	const char *fe = by ? by : p + strlen(p);
	/* the part after "from" up to " by " */
	const char *f = p + 5;
	while (*f == ' ')
		f++;
	size_t hl = strcspn(f, " ([");
	char ip[64] = "";
	const char *ipat = find_ip(f, fe, ip, sizeof(ip));
	if (!ipat) {
		/* "from 1.2.3.4 by", "(user@1.2.3.4 with plain)": any dotted quad */
		for (const char *q = f; q < fe && !ip[0]; q++) {
			if (!isdigit((unsigned char)*q) ||
			    (q > f && (isalnum((unsigned char)q[-1]) || q[-1] == '.')))
				continue;
			size_t l = strspn(q, "0123456789.");
			if (q + l <= fe && is_ip(q, l) && !isalnum((unsigned char)q[l]))
				copy_tok(ip, sizeof(ip), q, l);
		}
		if (!ip[0])
			return 0; /* no address: a local or unknown hop, skipped */
	}
	snprintf(rl->ip, sizeof(rl->ip), "%s", ip);
	rl->priv = ip_private(ip);
	const char *paren = memchr(f, '(', (size_t)(fe - f));
	/* exim: "from RDNS ([IP] helo=HELO)" or "from [IP] (helo=HELO)" */
	const char *eh = strstr(f, "helo=");
	/* qmail: "from RDNS (HELO helo) (IP)" */
	const char *qh = strstr(f, "(HELO ");
	if (eh && eh < fe) {
		size_t l = strcspn(eh + 5, " )");
		copy_tok(rl->helo, sizeof(rl->helo), eh + 5, l);
		if (f[0] != '[')
			copy_tok(rl->rdns, sizeof(rl->rdns), f, hl);
	} else if (qh && qh < fe) {
		size_t l = strcspn(qh + 6, " )");
		copy_tok(rl->helo, sizeof(rl->helo), qh + 6, l);
		copy_tok(rl->rdns, sizeof(rl->rdns), f, hl);
	} else {
		copy_tok(rl->helo, sizeof(rl->helo), f, hl);
		/* "(rdns [IP])", "(ident@rdns [IP])", "([IP])" */
		if (paren && ipat && paren < ipat) {
			const char *q = paren + 1;
			while (*q == ' ')
				q++;
			size_t l = (size_t)(ipat - q);
			while (l && q[l - 1] == ' ')
				l--;
			const char *at = memchr(q, '@', l);
			if (at) {
				copy_tok(rl->ident, sizeof(rl->ident), q, (size_t)(at - q));
				l -= (size_t)(at + 1 - q);
				q = at + 1;
			}
			if (l && !memchr(q, ' ', l) && !memchr(q, '(', l))
				copy_tok(rl->rdns, sizeof(rl->rdns), q, l);
		}
	}
	/* formats where the MTA writes its rDNS lookup: "(rdns [IP])",
	 * "([IP])", qmail's "(HELO x) (IP)"; not "[IP] (HELO x)" */
	rl->looked_up = paren && ipat && paren < ipat;
	if (eh && eh < fe && f[0] == '[')
		rl->looked_up = false;
	if (strcasecmp(rl->rdns, "unknown") == 0 || rl->rdns[0] == '[')
		rl->rdns[0] = 0;
	for (char *c = rl->rdns; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	size_t rl_len = strlen(rl->rdns);
	while (rl_len && rl->rdns[rl_len - 1] == '.')
		rl->rdns[--rl_len] = 0;
	if (rl->helo[0] == '[' || strcmp(rl->helo, ip) == 0) {
		/* helo given as an address literal */
		if (rl->helo[0] == '[') {
			char *e2 = strchr(rl->helo, ']');
			if (e2)
				e2[1] = 0;
		}
	}
	if (by) {
		const char *b = by + 4;
		while (*b == ' ')
			b++;
		copy_tok(rl->by, sizeof(rl->by), b, strcspn(b, " ;("));
	}
	const char *id = strstr(p, " id ");
	if (id) {
		id += 4;
		size_t l = strcspn(id, " ;");
		copy_tok(rl->id, sizeof(rl->id), id, l);
	}
	const char *ef = strstr(p, "envelope-from ");
	if (ef) {
		ef += 14;
		if (*ef == '<')
			ef++;
		copy_tok(rl->envfrom, sizeof(rl->envfrom), ef, strcspn(ef, ">) ;"));
	}
	const char *w = strstr(p, " with ");
	if (w) {
		w += 6;
		size_t l = strcspn(w, " ;");
		if ((l == 6 && strncasecmp(w, "ESMTPA", 6) == 0) ||
		    (l == 7 && strncasecmp(w, "ESMTPSA", 7) == 0))
			copy_tok(rl->auth, sizeof(rl->auth), w, l);
	}
	return 1;
}

static void relay_str(struct sbuf *b, const struct relay *r, int intl)
{
	char tmp[1400];
	snprintf(tmp, sizeof(tmp),
		 "[ ip=%s rdns=%s helo=%s by=%s ident=%s envfrom=%s intl=%d id=%s auth=%s msa=0 ]", r->ip,
		 r->rdns, r->helo, r->by, r->ident, r->envfrom, intl, r->id, r->auth);
	if (b->n)
		sb_add(b, " ", 1);
	sb_adds(b, tmp);
}

static struct relayinfo *relays(struct msgctx *m)
{
	if (m->relays)
		return m->relays;
	struct relayinfo *ri = xcalloc(1, sizeof(*ri));
	m->relays = ri;
	size_t st = 0, cap = 0;
	const struct sift_mime_header *h;
	bool trusted = true;
	struct sbuf ts = {0}, us = {0};
	while ((h = mh(m->mime, "Received", &st))) {
		struct relay r;
		/* white space runs as one space, as SpamAssassin unfolds */
		char *v = xstrdup(h->value);
		size_t w = 0;
		for (size_t k = 0; v[k]; k++) {
			char c = isspace((unsigned char)v[k]) ? ' ' : v[k];
			if (c == ' ' && w && v[w - 1] == ' ')
				continue;
			v[w++] = c;
		}
		v[w] = 0;
		/* a mail fetcher marker (fetchmail ...): what came before it was
		 * the local delivery; parsing restarts after it */
		if (trusted && (strstr(v, "(fetchmail-") || strstr(v, "by localhost with POP3") ||
				strstr(v, "by localhost with IMAP") || strstr(v, "(getmail "))) {
			free(v);
			ri->n = ri->ntrusted = 0;
			ri->unparseable = 0;
			ts.n = us.n = 0;
			continue;
		}
		int rc = parse_received(v, &r);
		if (rc < 0 && getenv("SIFT_SPAM_DEBUG_RELAYS"))
			fprintf(stderr, "unparseable: %s\n", v);
		free(v);
		if (rc <= 0) {
			if (rc < 0)
				ri->unparseable++;
			continue;
		}
		if (trusted && !r.priv && !r.auth[0])
			trusted = false;
		if (ri->n == cap) {
			cap = cap ? cap * 2 : 8;
			ri->r = xrealloc(ri->r, cap * sizeof(*ri->r));
		}
		ri->r[ri->n++] = r;
		if (trusted) {
			ri->ntrusted++;
			relay_str(&ts, &r, 1);
		} else
			relay_str(&us, &r, 0);
		if (ri->n >= 64)
			break;
	}
	ri->trusted_str = ts.d;
	ri->untrusted_str = us.d;
	return ri;
}

/* envfrom of the last hop (first untrusted relay, else last trusted) */
static const char *lasthop_envfrom(struct msgctx *m)
{
	struct relayinfo *ri = relays(m);
	if (!ri->n)
		return NULL;
	const struct relay *r = ri->ntrusted < ri->n ? &ri->r[ri->ntrusted] : &ri->r[ri->n - 1];
	return strchr(r->envfrom, '@') ? r->envfrom : NULL;
}

static void relays_free(struct relayinfo *ri)
{
	if (!ri)
		return;
	free(ri->r);
	free(ri->trusted_str);
	free(ri->untrusted_str);
	free(ri);
}

/* ---- registered domains ---------------------------------------------------- */

static bool is_freemail(const struct spam_engine *e, const char *addr)
{
	const char *at = strrchr(addr, '@');
	if (!at || !at[1])
		return false;
	char dom[256];
	snprintf(dom, sizeof(dom), "%s", at + 1);
	for (char *c = dom; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	const char *key = dom;
	if (e->nfreemail && bsearch(&key, e->freemail, e->nfreemail, sizeof(char *), namecmp))
		return true;
	for (size_t i = 0; i < e->nfreemail_glob; i++)
		if (fnmatch(e->freemail_glob[i], dom, 0) == 0)
			return true;
	return false;
}

/* ---- HTML analysis ---------------------------------------------------------- */

struct htmltag {
	char name[16];
	int open, close;
};

struct htmlinfo {
	bool present;
	struct htmltag tags[96];
	int ntags;
	int total_tags, bad_tags, closed_extra;
	int max_font_size;
	bool form_mailto;
	struct sbuf comments; /* each comment followed by \n */
	struct sbuf title, anchor;
	double length; /* length of the HTML source (as SpamAssassin) */
	double image_area;
	bool img;
	bool low_contrast;
};

static struct htmltag *htag(struct htmlinfo *hi, const char *name)
{
	for (int i = 0; i < hi->ntags; i++)
		if (strcmp(hi->tags[i].name, name) == 0)
			return &hi->tags[i];
	if (hi->ntags == 96)
		return NULL;
	struct htmltag *t = &hi->tags[hi->ntags++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	return t;
}

static const char *const html_known[] = {
	"a",	     "abbr",   "acronym",  "address",  "applet",     "area",	 "b",	     "base",
	"basefont",  "bdo",    "big",	   "blink",    "blockquote", "body",	 "br",	     "button",
	"caption",   "center", "cite",	   "code",     "col",	     "colgroup", "dd",	     "del",
	"dfn",	     "dir",    "div",	   "dl",       "dt",	     "em",	 "embed",    "fieldset",
	"font",	     "form",   "frame",	   "frameset", "h1",	     "h2",	 "h3",	     "h4",
	"h5",	     "h6",     "head",	   "hr",       "html",	     "i",	 "iframe",   "img",
	"input",     "ins",    "isindex",  "kbd",      "label",	     "layer",	 "legend",   "li",
	"link",	     "map",    "marquee",  "menu",     "meta",	     "nobr",	 "noframes", "noscript",
	"object",    "ol",     "optgroup", "option",   "p",	     "param",	 "pre",	     "q",
	"s",	     "samp",   "script",   "select",   "small",	     "span",	 "strike",   "strong",
	"style",     "sub",    "sup",	   "table",    "tbody",	     "td",	 "textarea", "tfoot",
	"th",	     "thead",  "title",	   "tr",       "tt",	     "u",	 "ul",	     "var",
	"wbr",	     "xml",    "bgsound",  "spacer",   "ilayer",     "nolayer",	 "xmp",	     "listing",
	"plaintext", "image",  "keygen",   "multicol", "comment",    "server",	 "o:p",	     NULL};

/* SpamAssassin's name_to_rgb(): "#rrggbb", or "invalid". */
static void name_to_rgb(const char *in, size_t n, char out[8])
{
	static const struct {
		const char *n, *v;
	} names[] = {{"black", "000000"},	{"white", "ffffff"},	 {"red", "ff0000"},
		     {"green", "008000"},	{"blue", "0000ff"},	 {"yellow", "ffff00"},
		     {"gray", "808080"},	{"grey", "808080"},	 {"silver", "c0c0c0"},
		     {"maroon", "800000"},	{"navy", "000080"},	 {"purple", "800080"},
		     {"teal", "008080"},	{"olive", "808000"},	 {"lime", "00ff00"},
		     {"aqua", "00ffff"},	{"fuchsia", "ff00ff"},	 {"orange", "ffa500"},
		     {"whitesmoke", "f5f5f5"},	{"snow", "fffafa"},	 {"ivory", "fffff0"},
		     {"beige", "f5f5dc"},	{"linen", "faf0e6"},	 {"lightgrey", "d3d3d3"},
		     {"lightgray", "d3d3d3"},	{"darkgray", "a9a9a9"},	 {"darkgrey", "a9a9a9"},
		     {"darkblue", "00008b"},	{"darkred", "8b0000"},	 {"darkgreen", "006400"},
		     {"gold", "ffd700"},	{"pink", "ffc0cb"},	 {"brown", "a52a2a"},
		     {"cyan", "00ffff"},	{"magenta", "ff00ff"},	 {"ghostwhite", "f8f8ff"},
		     {"floralwhite", "fffaf0"}, {"azure", "f0ffff"},	 {"mintcream", "f5fffa"},
		     {"honeydew", "f0fff0"},	{"aliceblue", "f0f8ff"}, {"seashell", "fff5ee"},
		     {"lavender", "e6e6fa"},	{"oldlace", "fdf5e6"},	 {"lightyellow", "ffffe0"},
		     {"lightcyan", "e0ffff"},	{"gainsboro", "dcdcdc"}};
	char c[64];
	size_t k = 0;
	while (n && isspace((unsigned char)*in)) {
		in++;
		n--;
	}
	while (n && isspace((unsigned char)in[n - 1]))
		n--;
	for (size_t i = 0; i < n && k < sizeof(c) - 1; i++)
		c[k++] = (char)tolower((unsigned char)in[i]);
	c[k] = 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(c, names[i].n) == 0) {
			snprintf(out, 8, "#%.6s", names[i].v);
			return;
		}
	unsigned r, g, b;
	if (sscanf(c, "rgb(%u,%u,%u)", &r, &g, &b) == 3 ||
	    sscanf(c, "rgb( %u , %u , %u )", &r, &g, &b) == 3) {
		snprintf(out, 8, "#%02x%02x%02x", r > 255 ? 255 : r, g > 255 ? 255 : g, b > 255 ? 255 : b);
		return;
	}
	const char *h = c[0] == '#' ? c + 1 : c;
	char hex[8];
	size_t hl = 0;
	bool all_hex = *h != 0;
	for (const char *q = h; *q; q++)
		if (!isxdigit((unsigned char)*q))
			all_hex = false;
	if (!all_hex) {
		snprintf(out, 8, "invalid");
		return;
	}
	for (const char *q = h; *q && hl < 6; q++)
		hex[hl++] = *q;
	hex[hl] = 0;
	if (hl > 3 && hl < 6)
		hl = 3, hex[3] = 0;
	while (hl % 3)
		hex[hl++] = '0', hex[hl] = 0;
	if (hl == 3)
		snprintf(out, 8, "#%c%c%c%c%c%c", hex[0], hex[0], hex[1], hex[1], hex[2], hex[2]);
	else
		snprintf(out, 8, "#%.6s", hex);
}

struct tstyle {
	char tag[16];
	char fg[8], bg[8];
};

/* value of attribute `name` in t[a..e) (quotes removed), or 0 */
static size_t attr_value(const char *t, size_t a, size_t e, const char *name, const char **v)
{
	size_t nl = strlen(name);
	for (size_t k = a; k + nl < e; k++) {
		if (strncasecmp(t + k, name, nl) != 0 || (k > a && !isspace((unsigned char)t[k - 1])))
			continue;
		size_t j = k + nl;
		while (j < e && isspace((unsigned char)t[j]))
			j++;
		if (j >= e || t[j] != '=')
			continue;
		j++;
		while (j < e && isspace((unsigned char)t[j]))
			j++;
		char q = 0;
		if (j < e && (t[j] == '"' || t[j] == '\''))
			q = t[j++];
		size_t st = j;
		while (j < e && (q ? t[j] != q : !isspace((unsigned char)t[j])))
			j++;
		*v = t + st;
		return j - st;
	}
	return 0;
}

static void style_apply(struct tstyle *ns, const char *v, size_t n, const char *parent_bg)
{
	/* "color: x; background-color: y; background: z" */
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && v[j] != ';')
			j++;
		const char *d = v + i;
		size_t dl = j - i;
		while (dl && isspace((unsigned char)*d))
			d++, dl--;
		const char *colon = memchr(d, ':', dl);
		if (colon) {
			size_t kl = (size_t)(colon - d);
			while (kl && isspace((unsigned char)d[kl - 1]))
				kl--;
			const char *val = colon + 1;
			size_t vl = dl - (size_t)(val - d);
			/* strip "!important" */
			for (size_t q = 0; q + 1 < vl; q++)
				if (val[q] == '!') {
					vl = q;
					break;
				}
			char out[8];
			if (kl == 5 && strncasecmp(d, "color", 5) == 0) {
				name_to_rgb(val, vl, out);
				if (!(vl >= 7 && strncasecmp(val, "inherit", 7) == 0))
					memcpy(ns->fg, out, 8);
			} else if (kl == 16 && strncasecmp(d, "background-color", 16) == 0) {
				name_to_rgb(val, vl, out);
				if (!(vl >= 7 && strncasecmp(val, "inherit", 7) == 0))
					memcpy(ns->bg, out, 8);
			} else if (kl == 10 && strncasecmp(d, "background", 10) == 0) {
				/* the first token that is a colour */
				size_t q = 0;
				while (q < vl) {
					while (q < vl && isspace((unsigned char)val[q]))
						q++;
					size_t s2 = q;
					while (q < vl && !isspace((unsigned char)val[q]))
						q++;
					if (q > s2) {
						name_to_rgb(val + s2, q - s2, out);
						if (strcmp(out, "invalid") != 0) {
							memcpy(ns->bg, out, 8);
							break;
						}
					}
				}
			}
		}
		i = j + 1;
	}
	(void)parent_bg;
}

static bool low_contrast(const char *fg, const char *bg)
{
	size_t fl = strlen(fg), bl = strlen(bg);
	if (strcmp(fg + (fl > 6 ? fl - 6 : 0), bg + (bl > 6 ? bl - 6 : 0)) == 0)
		return true;
	unsigned r1, g1, b1, r2, g2, b2;
	if (sscanf(fg, "#%02x%02x%02x", &r1, &g1, &b1) != 3 ||
	    sscanf(bg, "#%02x%02x%02x", &r2, &g2, &b2) != 3)
		return false;
	double r = (double)r1 - r2, g = (double)g1 - g2, b = (double)b1 - b2;
	double dist =
		sqrt((0.2126 * r) * (0.2126 * r) + (0.7152 * g) * (0.7152 * g) + (0.0722 * b) * (0.0722 * b));
	return dist < 12;
}

static bool text_style_tag(const char *n)
{
	static const char *const t[] = {"body",	 "font",    "table", "tr", "th",  "td", "big",
					"small", "marquee", "span",  "p",  "div", "a",	NULL};
	for (const char *const *p = t; *p; p++)
		if (strcmp(*p, n) == 0)
			return true;
	return false;
}

static void html_analyze(struct htmlinfo *hi, const char *t, size_t n)
{
	bool in_a = false, in_title = false;
	hi->max_font_size = 3;
	struct tstyle stack[64];
	int sp = 1;
	memset(&stack[0], 0, sizeof(stack[0]));
	snprintf(stack[0].fg, 8, "#000000");
	snprintf(stack[0].bg, 8, "#ffffff");
	for (size_t i = 0; i < n;) {
		if (t[i] != '<') {
			size_t j = i;
			while (j < n && t[j] != '<')
				j++;
			struct sbuf *dst = in_title ? &hi->title : in_a ? &hi->anchor : NULL;
			if (dst)
				sb_add(dst, t + i, j - i);
			if (!hi->low_contrast) {
				bool visible = false;
				for (size_t k = i; k < j && !visible; k++)
					if (!isspace((unsigned char)t[k]) && t[k] != '\xa0' &&
					    !(t[k] == '&' && j - k >= 6 &&
					      strncasecmp(t + k, "&nbsp;", 6) == 0))
						visible = true;
				if (visible && low_contrast(stack[sp - 1].fg, stack[sp - 1].bg))
					hi->low_contrast = true;
			}
			i = j;
			continue;
		}
		if (i + 1 < n && t[i + 1] == '!') {
			const char *e;
			size_t end;
			if (i + 3 < n && t[i + 2] == '-' && t[i + 3] == '-') {
				e = NULL;
				for (size_t k = i + 4; k + 2 < n; k++)
					if (t[k] == '-' && t[k + 1] == '-' && t[k + 2] == '>') {
						e = t + k + 3;
						break;
					}
				end = e ? (size_t)(e - t) : n;
			} else {
				const char *gt = memchr(t + i, '>', n - i);
				end = gt ? (size_t)(gt - t) + 1 : n;
			}
			if (hi->comments.n < 65536)
				sb_add(&hi->comments, t + i, end - i);
			sb_add(&hi->comments, "\n", 1);
			i = end;
			continue;
		}
		size_t j = i + 1;
		bool closing = false;
		if (j < n && t[j] == '/') {
			closing = true;
			j++;
		}
		size_t ns = j;
		while (j < n && (isalnum((unsigned char)t[j]) || t[j] == ':'))
			j++;
		if (j == ns) {
			i++;
			continue;
		}
		char name[16];
		size_t nl = j - ns < 15 ? j - ns : 15;
		for (size_t k = 0; k < nl; k++)
			name[k] = (char)tolower((unsigned char)t[ns + k]);
		name[nl] = 0;
		const char *gt = memchr(t + j, '>', n - j);
		size_t ae = gt ? (size_t)(gt - t) : n;
		hi->total_tags++;
		bool known = false;
		for (const char *const *k = html_known; *k; k++)
			if (strcmp(*k, name) == 0) {
				known = true;
				break;
			}
		if (!known)
			hi->bad_tags++;
		struct htmltag *tg = htag(hi, name);
		if (tg) {
			if (closing) {
				tg->close++;
				if (tg->close > tg->open)
					hi->closed_extra++;
			} else
				tg->open++;
		}
		/* text style stack (SpamAssassin's text_style) */
		char sname[16];
		snprintf(sname, sizeof(sname), "%s", strcmp(name, "th") == 0 ? "td" : name);
		if (text_style_tag(sname)) {
			if (!closing) {
				if ((strcmp(sname, "td") == 0 || strcmp(sname, "tr") == 0)) {
					/* close the previous cell/row of this table */
					for (int k = sp - 1; k > 0; k--) {
						if (strcmp(stack[k].tag, "table") == 0)
							break;
						if (strcmp(stack[k].tag, sname) == 0 ||
						    (strcmp(sname, "tr") == 0 &&
						     strcmp(stack[k].tag, "td") == 0)) {
							sp = k;
							break;
						}
					}
				}
				if (sp < 64) {
					struct tstyle nst = stack[sp - 1];
					snprintf(nst.tag, sizeof(nst.tag), "%s", sname);
					const char *v;
					size_t vl;
					if ((strcmp(sname, "font") == 0) &&
					    (vl = attr_value(t, j, ae, "color", &v)))
						name_to_rgb(v, vl, nst.fg);
					if ((strcmp(sname, "body") == 0) &&
					    (vl = attr_value(t, j, ae, "text", &v)))
						name_to_rgb(v, vl, nst.fg);
					if (strcmp(sname, "font") != 0 && strcmp(sname, "body") != 0 &&
					    strcmp(sname, "big") != 0 && strcmp(sname, "small") != 0 &&
					    strcmp(sname, "marquee") != 0 &&
					    (vl = attr_value(t, j, ae, "style", &v))) {
						style_apply(&nst, v, vl, stack[sp - 1].bg);
						if (strcmp(nst.bg, "transparent") == 0)
							memcpy(nst.bg, stack[sp - 1].bg, 8);
					}
					stack[sp++] = nst;
				}
			} else if (strcmp(sname, "body") != 0) {
				for (int k = sp - 1; k > 0; k--)
					if (strcmp(stack[k].tag, sname) == 0) {
						sp = k;
						break;
					}
			}
		}
		if (!closing && (strcmp(name, "script") == 0 || strcmp(name, "style") == 0)) {
			char endtag[20];
			snprintf(endtag, sizeof(endtag), "</%s", name);
			size_t k = gt ? ae + 1 : n;
			size_t el = strlen(endtag);
			while (k + el <= n && strncasecmp(t + k, endtag, el) != 0)
				k++;
			i = k < n ? k : n;
			continue;
		}
		if (strcmp(name, "a") == 0)
			in_a = !closing;
		else if (strcmp(name, "title") == 0)
			in_title = !closing;
		else if (!closing && strcmp(name, "img") == 0) {
			hi->img = true;
			if (in_a)
				sb_adds(&hi->anchor, "<img>");
		} else if (!closing && strcmp(name, "font") == 0) {
			const char *sz = NULL;
			for (size_t k = j; k + 5 < ae; k++)
				if (strncasecmp(t + k, "size=", 5) == 0) {
					sz = t + k + 5;
					break;
				}
			if (sz) {
				if (*sz == '"' || *sz == '\'')
					sz++;
				int v;
				if (*sz == '+')
					v = 3 + atoi(sz + 1);
				else if (*sz == '-')
					v = 3 - atoi(sz + 1);
				else
					v = atoi(sz);
				if (v > hi->max_font_size)
					hi->max_font_size = v;
			}
		} else if (!closing && strcmp(name, "form") == 0) {
			for (size_t k = j; k + 7 < ae; k++)
				if (strncasecmp(t + k, "mailto:", 7) == 0)
					hi->form_mailto = true;
		}
		i = gt ? ae + 1 : n;
	}
}

static struct htmlinfo *html_info(struct msgctx *m)
{
	if (m->html)
		return m->html;
	struct htmlinfo *hi = xcalloc(1, sizeof(*hi));
	m->html = hi;
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!(p->flags & SIFT_MIME_P_HTML))
			continue;
		hi->present = true;
		html_analyze(hi, (const char *)p->data, p->data_len > 500000 ? 500000 : p->data_len);
		/* SpamAssassin's "length" is that of the HTML source */
		hi->length = (double)p->data_len;
		hi->image_area += (double)p->html_image_area;
		break; /* SpamAssassin keeps the first HTML part's results */
	}
	return hi;
}

static void html_free(struct htmlinfo *hi)
{
	if (!hi)
		return;
	free(hi->comments.d);
	free(hi->title.d);
	free(hi->anchor.d);
	free(hi);
}
