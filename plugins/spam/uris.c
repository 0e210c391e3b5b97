/*
 * uris.c - the URIs the uri rules see, as SpamAssassin's
 * Util::uri_list_canonicalize makes them: each URI of the message and its
 * variants (%-escapes of printable characters decoded, a scheme added, the
 * default port dropped, the host without trailing junk, a numeric host in
 * decimal, hex or octal written as a dotted quad, "http://word" as
 * www.word.com, mailto: addresses cut at '?' and '&'), plus the targets of
 * redirectors (redirector_pattern, or any http: URI inside the query).
 */
#include <stdint.h>
#include <stdio.h>

#include "internal.h"

#define URI_MAX_VARIANTS 4096 /* per message: the list is bounded */

/* A list without duplicates: the strings in order, and a hash set of
 * their indexes (open addressing, twice the bound). */
#define URI_SET_SIZE (2 * URI_MAX_VARIANTS)
struct ulist {
	char **v;
	size_t n, cap;
	int *set; /* index + 1, 0 when free */
};

static size_t ul_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211u;
	return (size_t)(h & (URI_SET_SIZE - 1));
}

static void ul_add(struct ulist *l, const char *s, size_t n)
{
	if (l->n >= URI_MAX_VARIANTS)
		return;
	if (!l->set)
		l->set = xcalloc(URI_SET_SIZE, sizeof(int));
	size_t k = ul_hash(s, n);
	for (; l->set[k]; k = (k + 1) & (URI_SET_SIZE - 1)) {
		const char *o = l->v[l->set[k] - 1];
		if (strncmp(o, s, n) == 0 && o[n] == 0)
			return;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(char *));
	}
	l->v[l->n++] = xstrndup(s, n);
	l->set[k] = (int)l->n;
}

static void ul_adds(struct ulist *l, const char *s)
{
	ul_add(l, s, strlen(s));
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? (tolower(c) - 'a' + 10) : -1;
}

/* Util::url_encode: %XX of a printable character other than the space
 * decoded, control, space, 8-bit octets and "%<> escaped. */
static void url_encode(const char *s, struct sbuf *o)
{
	for (const char *p = s; *p; p++) {
		if (*p == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
			int v = hexval((unsigned char)p[1]) * 16 + hexval((unsigned char)p[2]);
			/* kept: %20, %7f and %XX with X in [0189a-f] (not printable) */
			bool k = v == 0x20 || v == 0x7f || strchr("0189abcdefABCDEF", p[1]) != NULL;
			if (k) {
				sb_add(o, p, 3);
			} else {
				char c = (char)v;
				sb_add(o, &c, 1);
			}
			p += 2;
			continue;
		}
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '%' || c == '<' || c == '>') {
			char e[4];
			snprintf(e, sizeof(e), "%%%02x", c);
			sb_add(o, e, 3);
		} else
			sb_add(o, p, 1);
	}
}

/* One octet of a numeric host: decimal, 0x hex, or octal with a leading
 * 0 (as SpamAssassin converts them); -1 when not a number. */
static long ip_octet(const char *s, size_t n)
{
	char b[32];
	if (n == 0 || n >= sizeof(b))
		return -1;
	memcpy(b, s, n);
	b[n] = 0;
	char *end;
	long v;
	if (n > 2 && b[0] == '0' && (b[1] == 'x' || b[1] == 'X'))
		v = strtol(b + 2, &end, 16);
	else if (b[0] == '0' && n > 1 && strspn(b, "01234567") == n)
		v = strtol(b, &end, 8);
	else
		v = strtol(b, &end, 10);
	return *end ? -1 : v;
}

/* The variants of one http(s) URI "proto host rest" (host without port,
 * rest from the port or path on). */
static void http_variants(const struct spam_engine *e, pcre2_match_context *mctx, struct ulist *uris,
			  struct ulist *out, const char *proto, const char *auth, char *host,
			  const char *rest, const char *port)
{
	char buf[4096];
	const char *rest_noport = NULL;
	char defport[8];
	if (!*port)
		snprintf(defport, sizeof(defport), "%s", strcmp(proto, "http://") == 0 ? "80" : "443");
	else {
		const char *dp = strcmp(proto, "http://") == 0 ? ":80" : ":443";
		size_t dl = strlen(dp);
		if (strncmp(rest, dp, dl) == 0 && !isalnum((unsigned char)rest[dl]) && rest[dl] != '_') {
			rest_noport = rest + dl;
			snprintf(buf, sizeof(buf), "%s%s%s", proto, host, rest_noport);
			ul_adds(out, buf);
		}
	}
	const char *eport = *port ? port : defport;
	char nhost[1024];
	size_t k = 0;
	for (const char *c = host; *c && k + 1 < sizeof(nhost); c++)
		nhost[k++] = (char)tolower((unsigned char)*c);
	nhost[k] = 0;
	/* control characters and spaces in the host */
	size_t w = 0;
	bool cut = false;
	for (size_t i = 0; host[i]; i++)
		if ((unsigned char)host[i] <= 0x20)
			cut = true;
		else
			host[w++] = host[i];
	host[w] = 0;
	if (cut) {
		snprintf(buf, sizeof(buf), "%s%s%s", proto, host, rest);
		ul_adds(out, buf);
	}
	/* redirectors: the stock redirector_pattern list, else an http: URI in
	 * the rest */
	snprintf(buf, sizeof(buf), "%s%s%s", proto, host, rest);
	bool found = false;
	pcre2_match_data *md = NULL;
	for (size_t i = 0; i < e->nredir && !found; i++) {
		if (!md)
			md = pcre2_match_data_create(4, NULL);
		/* < 2: no match, or the match limit reached */
		if (pcre2_match(e->redir[i], (PCRE2_SPTR)buf, strlen(buf), 0, 0, md, mctx) < 2)
			continue;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		if (ov[2] == PCRE2_UNSET || !memchr(buf + ov[2], '.', ov[3] - ov[2]))
			continue;
		ul_add(uris, buf + ov[2], ov[3] - ov[2]);
		found = true;
	}
	pcre2_match_data_free(md);
	if (!found) {
		for (const char *p = rest; *p; p++) {
			if (strncasecmp(p, "http", 4) != 0)
				continue;
			const char *q = p + 4;
			if (*q == 's' || *q == 'S')
				q++;
			if (*q != ':')
				continue;
			q++;
			for (int s = 0; s < 2 && *q == '/'; s++)
				q++;
			size_t l = strcspn(q, "&#");
			if (!l)
				continue;
			size_t tl = (size_t)(q - p) + l;
			if (memchr(p, '.', tl))
				ul_add(uris, p, tl);
			break;
		}
	}
	/* trailing junk after the host name */
	size_t hl = strlen(host);
	if (hl && !isalnum((unsigned char)host[hl - 1])) {
		while (hl && !isalnum((unsigned char)host[hl - 1]))
			host[--hl] = 0;
		snprintf(buf, sizeof(buf), "%s%s%s", proto, host, rest);
		ul_adds(out, buf);
	}
	/* numeric hosts */
	const char *dots[3];
	size_t nd = 0;
	for (const char *c = host; *c && nd < 4; c++)
		if (*c == '.') {
			if (nd < 3)
				dots[nd] = c;
			nd++;
		}
	bool allnum = *host != 0;
	for (const char *c = host; *c; c++)
		if (!isxdigit((unsigned char)*c) && *c != '.' && *c != 'x' && *c != 'X')
			allnum = false;
	if (allnum && nd == 3) {
		const char *st[4] = {host, dots[0] + 1, dots[1] + 1, dots[2] + 1};
		size_t ln[4] = {(size_t)(dots[0] - host), (size_t)(dots[1] - dots[0] - 1),
				(size_t)(dots[2] - dots[1] - 1), strlen(dots[2] + 1)};
		long o[4];
		bool ok = true;
		for (int i = 0; i < 4 && ok; i++) {
			/* (?:0x[0-9a-f]+|\d+) */
			bool hex = ln[i] > 2 && st[i][0] == '0' && (st[i][1] == 'x' || st[i][1] == 'X');
			for (size_t j = hex ? 2 : 0; j < ln[i] && ok; j++)
				ok = hex ? isxdigit((unsigned char)st[i][j])
					 : isdigit((unsigned char)st[i][j]);
			ok = ok && (o[i] = ip_octet(st[i], ln[i])) >= 0;
		}
		if (ok) {
			snprintf(buf, sizeof(buf), "%s%ld.%ld.%ld.%ld%s", proto, o[0], o[1], o[2], o[3],
				 rest);
			ul_adds(out, buf);
		}
	} else if (allnum && nd == 0 && (host[0] != '0' || (host[1] != 'x' && host[1] != 'X')) &&
		   strspn(host, "0123456789") == strlen(host)) {
		unsigned long long v = strtoull(host, NULL, 10) & 0xffffffffu;
		snprintf(buf, sizeof(buf), "%s%llu.%llu.%llu.%llu%s", proto, v >> 24, (v >> 16) & 255,
			 (v >> 8) & 255, v & 255, rest);
		ul_adds(out, buf);
	} else if (nd == 0 && host[0] == '0' && (host[1] == 'x' || host[1] == 'X') && host[2] &&
		   strspn(host + 2, "0123456789abcdefABCDEF") == strlen(host + 2)) {
		size_t hlen = strlen(host + 2);
		unsigned long long v = strtoull(host + 2 + (hlen > 8 ? hlen - 8 : 0), NULL, 16);
		snprintf(buf, sizeof(buf), "%s%llu.%llu.%llu.%llu%s", proto, v >> 24, (v >> 16) & 255,
			 (v >> 8) & 255, v & 255, rest);
		ul_adds(out, buf);
	} else if (strcmp(proto, "http://") == 0 && !*auth && strcmp(nhost, "localhost") != 0 &&
		   strcmp(eport, "80") == 0) {
		const char *word = strncmp(nhost, "www.", 4) == 0 ? nhost + 4 : nhost;
		if (*word && !strchr(word, '.') && !domain_tld_valid(e->net, nhost)) {
			snprintf(buf, sizeof(buf), "http://www.%s.com%s", word, rest);
			ul_adds(out, buf);
		}
	}
}

/* The mailto: (or "user@host") variants. */
static void mail_variants(struct ulist *out, const char *u)
{
	char buf[4096];
	const char *at = strchr(u, '@');
	if (at && at > u) {
		size_t q = strcspn(at, "?"), a = strcspn(at, "?&");
		if (at[q] == '?' && q > 1) /* ^([^@]+@[^?]+)\? */
			ul_add(out, u, (size_t)(at - u) + q);
		if (at[a] == '&' && a > 1) /* ^([^@]+@[^?&]+)\& */
			ul_add(out, u, (size_t)(at - u) + a);
	}
	if (strstr(u, "%20")) {
		const char *p = u;
		if (strncasecmp(p, "mailto:", 7) == 0)
			p += 7;
		while (strncmp(p, "%20", 3) == 0)
			p += 3;
		const char *a2 = strchr(p, '@');
		if (a2 && a2 > p && a2[1] && !strchr("?&%", a2[1])) {
			size_t l = (size_t)(a2 - p) + 1 + strcspn(a2 + 1, "?&%");
			snprintf(buf, sizeof(buf), "mailto:%.*s", (int)l, p);
			ul_adds(out, buf);
		}
	}
	const char *lt = strchr(u, '<');
	if (lt && (size_t)(lt - u) <= strcspn(u, "?&")) {
		const char *gt = strchr(lt, '>'), *a3 = strchr(lt, '@');
		if (gt && a3 && a3 > lt + 1 && a3 < gt - 1) {
			snprintf(buf, sizeof(buf), "mailto:%.*s", (int)(gt - lt - 1), lt + 1);
			ul_adds(out, buf);
		}
	}
}

/* Decodes &#NN; / &#xNN; of printable characters and the dot look-alikes. */
static void decode_num_entities(struct sbuf *b)
{
	struct sbuf o = {0};
	for (size_t i = 0; i < b->n; i++) {
		if (b->d[i] == '&' && b->d[i + 1] == '#') {
			size_t j = i + 2;
			bool hex = b->d[j] == 'x' || b->d[j] == 'X';
			j += hex;
			size_t s = j;
			while (hex ? isxdigit((unsigned char)b->d[j]) : isdigit((unsigned char)b->d[j]))
				j++;
			if (j > s && b->d[j] == ';') {
				long v = strtol(b->d + s, NULL, hex ? 16 : 10);
				if (v == 0x2e || v == 12290 || v == 0x3002 || v == 65294 || v == 0xff0e ||
				    v == 65377 || v == 0xff61) {
					sb_add(&o, ".", 1);
					i = j;
					continue;
				}
				if (v >= 33 && v <= 126) {
					char c = (char)v;
					sb_add(&o, &c, 1);
					i = j;
					continue;
				}
			}
		}
		sb_add(&o, b->d + i, 1);
	}
	free(b->d);
	*b = o;
	sb_str(b);
}

void build_uris(struct msgctx *m)
{
	const struct spam_engine *e = m->e;
	struct ulist uris = {0}, out = {0};
	for (size_t i = 0; i < m->mime->uri_count; i++)
		ul_adds(&uris, m->mime->uris[i].uri);
	const struct bare_uris *bare = msg_bare_uris(m);
	for (size_t i = 0; i < bare->n; i++)
		ul_adds(&uris, bare->uri[i]);
	char proto[16], auth[512], host[1024], port[16];
	for (size_t i = 0; i < uris.n && !msg_late(m); i++) { /* redirector targets are appended */
		struct sbuf u = {0};
		for (const char *c = uris.v[i]; *c; c++)
			if (*c != '\n' && *c != '\r')
				sb_add(&u, c, 1);
		const char *s = sb_str(&u);
		while (isspace((unsigned char)*s))
			s++;
		size_t n = strlen(s);
		while (n && isspace((unsigned char)s[n - 1]))
			n--;
		char *uri = xstrndup(s, n);
		free(u.d);
		ul_adds(&out, uri);
		if (n <= 1 || strchr("#?&", uri[0]) || (uri[0] == '/' && uri[1] != '/')) {
			free(uri);
			continue;
		}
		if (strncasecmp(uri, "mailto:", 7) == 0 ||
		    (strchr(uri, '@') && strcspn(uri, ":") > strcspn(uri, "@"))) {
			mail_variants(&out, uri);
			free(uri);
			continue;
		}
		struct sbuf nu = {0};
		for (const char *c = uri; *c; c++)
			sb_add(&nu, *c == '\\' ? "/" : c, 1);
		/* s{^(https?:)/{0,2}}{$1//}i */
		const char *d = sb_str(&nu);
		size_t sl = strncasecmp(d, "https:", 6) == 0 ? 6 : strncasecmp(d, "http:", 5) == 0 ? 5 : 0;
		if (sl) {
			size_t k = sl;
			while (k < sl + 2 && d[k] == '/')
				k++;
			struct sbuf t = {0};
			sb_add(&t, d, sl);
			sb_adds(&t, "//");
			sb_adds(&t, d + k);
			free(nu.d);
			nu = t;
		}
		bool esc = false;
		for (size_t k = 0; k + 2 < nu.n && !esc; k++)
			esc = nu.d[k] == '%' && isxdigit((unsigned char)nu.d[k + 1]) &&
			      isxdigit((unsigned char)nu.d[k + 2]);
		if (esc) {
			struct sbuf t = {0};
			url_encode(sb_str(&nu), &t);
			free(nu.d);
			nu = t;
		}
		/* a scheme: ^[-_a-z0-9]+: */
		d = sb_str(&nu);
		size_t sc = strspn(d, "-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
		if (!(sc > 0 && d[sc] == ':')) {
			struct sbuf t = {0};
			sb_adds(&t, strncmp(d, "ftp.", 4) == 0 ? "ftp://" : "http://");
			sb_adds(&t, d);
			free(nu.d);
			nu = t;
		}
		/* s{^(https?://[^/?#]+)([?#])}{$1/$2}i */
		d = sb_str(&nu);
		size_t pl = strncasecmp(d, "http://", 7) == 0	 ? 7
			    : strncasecmp(d, "https://", 8) == 0 ? 8
								 : 0;
		const char *qh = pl ? d + pl + strcspn(d + pl, "/?#") : NULL;
		if (qh && qh > d + pl && (*qh == '?' || *qh == '#')) {
			char *t = xasprintf("%.*s/%s", (int)(qh - d), d, qh);
			free(nu.d);
			nu.d = t;
			nu.n = strlen(t);
			nu.cap = nu.n + 1;
		}
		sb_str(&nu);
		decode_num_entities(&nu);
		d = nu.d;
		if (strcmp(d, uri) != 0)
			ul_adds(&out, d);
		/* ^(https?://)([^@/?#]*@)?([^/?#:]+)((?::(\d*))?.*)$ */
		pl = strncasecmp(d, "http://", 7) == 0 ? 7 : strncasecmp(d, "https://", 8) == 0 ? 8 : 0;
		if (pl && strlen(d) < 4000) {
			snprintf(proto, sizeof(proto), "%.*s", (int)pl, d);
			for (char *c = proto; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			const char *a = d + pl;
			size_t al = strcspn(a, "@/?#");
			auth[0] = 0;
			if (a[al] == '@') {
				snprintf(auth, sizeof(auth), "%.*s", (int)al + 1, a);
				a += al + 1;
			}
			size_t hl = strcspn(a, "/?#:");
			if (hl && hl < sizeof(host)) {
				snprintf(host, sizeof(host), "%.*s", (int)hl, a);
				const char *rest = a + hl;
				port[0] = 0;
				if (*rest == ':') {
					size_t dl = strspn(rest + 1, "0123456789");
					snprintf(port, sizeof(port), "%.*s", (int)(dl < 15 ? dl : 15),
						 rest + 1);
					if (!dl)
						snprintf(port, sizeof(port), "%s", "");
				}
				if (*rest == ':' && !port[0])
					snprintf(port, sizeof(port), "%s",
						 " "); /* "(\d*)" matched empty: not the default */
				http_variants(e, m->mctx, &uris, &out, proto, auth, host, rest,
					      port[0] == ' ' ? "" : port);
			}
		}
		free(nu.d);
		free(uri);
	}
	for (size_t i = 0; i < uris.n; i++)
		free(uris.v[i]);
	free(uris.v);
	free(uris.set);
	free(out.set);
	m->uris = out.v;
	m->nuris = out.n;
}

void uris_free(struct msgctx *m)
{
	for (size_t i = 0; i < m->nuris; i++)
		free(m->uris[i]);
	free(m->uris);
}

bool redirector_directive(struct spam_engine *e, const char *args, const char *where)
{
	/* /re/flags or m<delim>re<delim>flags */
	const char *s = args;
	while (isspace((unsigned char)*s))
		s++;
	char delim;
	if (*s == 'm' && s[1] && !isalnum((unsigned char)s[1]) && !isspace((unsigned char)s[1]))
		delim = *++s;
	else if (*s == '/')
		delim = '/';
	else {
		lint(e, true, "%s: redirector_pattern: not /regex/ or m'regex': %s", where, args);
		return false;
	}
	const char *end = strrchr(s + 1, delim);
	if (!end || end == s) {
		lint(e, true, "%s: redirector_pattern: unterminated: %s", where, args);
		return false;
	}
	uint32_t fl = 0;
	for (const char *f = end + 1; *f && !isspace((unsigned char)*f); f++)
		fl |= *f == 'i' ? PCRE2_CASELESS : *f == 's' ? PCRE2_DOTALL : *f == 'm' ? PCRE2_MULTILINE : 0;
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)(s + 1), (size_t)(end - s - 1), fl, &ec, &eo, NULL);
	if (!c) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		lint(e, true, "%s: redirector_pattern: %s at %zu", where, (char *)msg, (size_t)eo);
		return false;
	}
	/* JIT: faster, and its match limit bounds the whole search of a URI
	 * (the interpreter's counts from each start offset anew, so a
	 * quadratic pattern on a long URI stays under it) */
	pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	e->redir = xrealloc(e->redir, (e->nredir + 1) * sizeof(*e->redir));
	e->redir[e->nredir++] = c;
	return true;
}

/* ---- URIs without a scheme ----------------------------------------------------- */

/* SpamAssassin's text URI regex (PerMsgStatus::_tbirdurire): a URI with a
 * scheme or www./ftp. (1), an e-mail address (2), or a domain of a valid
 * TLD (3, its domain 4) with an optional port and path. The first two are
 * here only because a match of theirs hides any domain inside it. The
 * delimiter sets are SpamAssassin's: ENDD ends a URI, ENDM an address. */
#define BARE_ENDD  "><\"`}\\]{\\[|\\s\\x1b\\xa0"
#define BARE_ENDM  BARE_ENDD ",('\\x80-\\xff"
#define BARE_START "><\"'`,{\\[(|\\s\\x1b\\xa0"
#define BARE_MAX   1000 /* per message */
#define BARE_SC	   "!\"#$&'()*+,/:;<=>?@\\[\\\\\\]^`{|}~\\s\\x1b\\xa0"

pcre2_code *bare_uri_compile(const struct netconf *nc)
{
	if (!nc || !nc->ntld) /* SpamAssassin's "no_tlds_defined": none */
		return NULL;
	struct sbuf re = {0};
	sb_adds(&re, "(?:\\b|(?<=\\x1b\\(.)|(?<=[" BARE_START "]))(?:"
		     "(?:((?:(?:https?|ftp)://|(?:www\\d{0,2}|ftp)\\.)[^" BARE_ENDD "]{1,2048})(?=[" BARE_ENDD
		     "]|\\z))|"
		     "(?:((?:mailto:[^" BARE_ENDM "]{1,2048}|[^" BARE_ENDM "@]{1,251}@[^" BARE_ENDM
		     "]{1,251}))(?=[" BARE_ENDM "]|\\z))|"
		     "(?:(?:^|(?<=[" BARE_SC "]))(([a-z\\d][a-z\\d._-]{0,251}\\.");
	valid_tlds_re(&re, nc);
	sb_adds(&re, ")\\.?(?::\\d{1,5})?(?:/[^" BARE_ENDD "]{1,2048})?)(?=[" BARE_ENDD "]|\\z)))");
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)re.d, re.n, PCRE2_CASELESS, &ec, &eo, NULL);
	free(re.d);
	if (c)
		pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	return c;
}

/* Perl's \s in a byte string */
static bool perl_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

/* A TLD of nc in s[0..n) right after a dot, ending where a label does:
 * the cheap test that lets most text skip the regex. */
static bool tld_after_dot(const struct netconf *nc, const char *s, size_t n, size_t dot)
{
	size_t j = dot + 1;
	while (j < n && (isalnum((unsigned char)s[j]) || s[j] == '-'))
		j++;
	size_t len = j - dot - 1;
	if (len < 2 || len > 63 || (j + 1 < n && s[j] == '.' && isalnum((unsigned char)s[j + 1])))
		return false;
	char t[64];
	for (size_t k = 0; k < len; k++)
		t[k] = (char)tolower((unsigned char)s[dot + 1 + k]);
	t[len] = 0;
	return strlist_has(nc->tld, nc->ntld, t);
}

/* What SpamAssassin makes of a match of the regex (_process_text_uri_list):
 * cut at a ')' with no '(' before it, trailing punctuation dropped, then
 * "http://" (or "ftp://") put before it. Of a domain match (3) only when
 * its host is a valid name (is_fqdn_valid); of an address match (2) only
 * when a '/' comes two octets or more before its last '@' (any other is an
 * e-mail address, lib/mime.c's), its host what comes before the '/'. A
 * domain match with a '@' in its path is an address to SpamAssassin
 * unless the same holds, and is left out. The result is appended to out
 * with its host unless it is there already. */
static void bare_add(struct bare_uris *out, const char *s, size_t n, const char *host, size_t hn, bool addr)
{
	if (out->n >= BARE_MAX)
		return;
	size_t open = 0;
	while (open < n && s[open] != '(')
		open++;
	for (size_t k = open; k > 0; k--)
		if (s[k - 1] == ')') {
			n = k - 1;
			break;
		}
	while (n && strchr("-~!@#^&*()_+=:;'?,.", s[n - 1]))
		n--;
	const char *slash = memchr(s, '/', n), *at = memrchr(s, '@', n);
	if (!n || !memchr(s, '.', n) || (at && (!slash || at < slash + 2)) || (addr && !at) ||
	    (addr && (strncasecmp(s, "cid:", 4) == 0 || strncasecmp(s, "mid:", 4) == 0 ||
		      strncasecmp(s, "mailto:", 7) == 0)))
		return;
	if (addr) {
		host = s;
		hn = (size_t)(slash - s);
	}
	char *h = xstrndup(host, hn);
	for (char *c = h; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (!addr && !fqdn_ok(h)) {
		free(h);
		return;
	}
	struct sbuf u = {0};
	sb_adds(&u, strncasecmp(s, "ftp.", 4) == 0 ? "ftp://" : "http://");
	sb_add(&u, s, n);
	for (size_t i = 0; i < out->n; i++)
		if (strcmp(out->uri[i], sb_str(&u)) == 0) {
			free(u.d);
			free(h);
			return;
		}
	if (out->n == out->cap) {
		out->cap = out->cap ? 2 * out->cap : 8;
		out->uri = xrealloc(out->uri, out->cap * sizeof(char *));
		out->host = xrealloc(out->host, out->cap * sizeof(char *));
	}
	out->uri[out->n] = (char *)sb_str(&u);
	out->host[out->n++] = h;
}

void bare_uris_find(const struct spam_engine *e, char *const *lines, const size_t *lens, size_t nlines,
		    struct bare_uris *out)
{
	memset(out, 0, sizeof(*out));
	const struct netconf *nc = e->net;
	if (!e->bare_re)
		return;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(e->bare_re, NULL);
	for (size_t li = 0; li < nlines && out->n < BARE_MAX; li++) {
		const char *s = lines[li];
		size_t n = lens[li], done = 0; /* searched up to done */
		for (const char *d = memchr(s, '.', n); d; d = memchr(d + 1, '.', n - (size_t)(d + 1 - s))) {
			size_t dot = (size_t)(d - s);
			if (dot < done || dot == 0 || !tld_after_dot(nc, s, n, dot))
				continue;
			/* No match spans white space, and the regex looks at most
			 * three octets back: the white-space-free run around the
			 * dot is searched alone, as the whole line would be. */
			size_t from = dot, to = dot;
			while (from > 0 && !perl_space((unsigned char)s[from - 1]))
				from--;
			while (to < n && !perl_space((unsigned char)s[to]))
				to++;
			for (size_t at = from; at < to;) {
				if (pcre2_match(e->bare_re, (PCRE2_SPTR)s, to, at, 0, md, NULL) < 0)
					break;
				PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
				if (ov[6] != PCRE2_UNSET)
					bare_add(out, s + ov[6], ov[7] - ov[6], s + ov[8], ov[9] - ov[8],
						 false);
				else if (ov[4] != PCRE2_UNSET)
					bare_add(out, s + ov[4], ov[5] - ov[4], NULL, 0, true);
				at = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
			}
			done = to;
		}
	}
	pcre2_match_data_free(md);
}

void bare_uris_free(struct bare_uris *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->uri[i]);
		free(b->host[i]);
	}
	free(b->uri);
	free(b->host);
	memset(b, 0, sizeof(*b));
}

const struct bare_uris *msg_bare_uris(struct msgctx *m)
{
	if (!m->bare_of) {
		build_text(m, R_BODY); /* may borrow the net's lines and their domains */
		if (!m->bare_of) {
			bare_uris_find(m->e, m->lines, m->lens, m->nlines, &m->bare);
			m->bare_of = &m->bare;
		}
	}
	return m->bare_of;
}
