/*
 * lib/mime.c - a bounded MIME parser: headers unfolded and RFC 2047-decoded,
 * the part tree (multipart/, message/rfc822 and message/global), base64 and
 * quoted-printable decoding, charsets converted to UTF-8, HTML rendered to
 * text, URIs extracted from text and HTML attributes.
 *
 * Why our own code rather than GMime and libxml2's HTML parser: the parse
 * runs on every message in the milter's hot path; this one works in place
 * over the body buffer with a single arena (no per-part objects, no
 * reference counting), and every loop is bounded by explicit limits (depth,
 * parts, headers, decoded bytes, URIs) so a hostile message costs at most a
 * small multiple of its size. The HTML renderer is a tokenizer, not a tree
 * builder: for body rules we need the visible text, the links and a few
 * statistics, not a DOM, and a tokenizer cannot blow up on broken nesting.
 * Charset conversion uses glibc's iconv (fast paths for ASCII, UTF-8 and
 * Windows-1252 avoid it for most mail), with SpamAssassin's choices of
 * charset (sift_body_to_utf8, sift_word_to_utf8).
 *
 * Threading: no shared state; a parse and its result belong to one thread at
 * a time. Ownership: everything hangs off the returned struct and is freed
 * by sift_mime_free().
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "html.h"
#include "mailsyntax.h"
#include "mime.h"
#include "sift.h"

/* ---- arena ---------------------------------------------------------------- */

struct ablock {
	struct ablock *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

struct impl {
	struct sift_mime pub; /* first: the public view */
	struct ablock *arena;
	struct sift_mime_part *parts;
	const struct sift_html **html; /* per part, NULL but for HTML leaves */
	size_t nparts, pcap;
	struct sift_mime_uri *uris;
	size_t nuris, ucap;
	size_t *uset; /* hash set of the URIs: index in uris + 1, 0 empty */
	size_t uset_cap;
	struct sift_mime_limits lim;
	size_t decoded;
};

static void *a_alloc(struct impl *m, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct ablock *b = m->arena;
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		b = sift_malloc(sizeof(*b) + cap);
		b->cap = cap;
		b->used = 0;
		b->next = m->arena;
		m->arena = b;
	}
	void *p = b->data + b->used;
	b->used += n;
	return p;
}

static char *a_strndup(struct impl *m, const char *s, size_t n)
{
	char *p = a_alloc(m, n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

/* A raw header value: the copy starts with a NUL and the white space that
 * followed the colon, and the pointer returned is past that white space
 * (struct sift_mime_header.raw), so that a reader can step back over it. */
static const char *a_raw(struct impl *m, const char *v, size_t n)
{
	char *p = a_alloc(m, n + 2);
	p[0] = 0;
	memcpy(p + 1, v, n);
	p[n + 1] = 0;
	size_t k = 0;
	while (k < n && (v[k] == ' ' || v[k] == '\t'))
		k++;
	return p + 1 + k;
}

static char *a_buf(struct impl *m, struct sift_buf *b)
{
	char *p = a_strndup(m, b->data ? b->data : "", b->len);
	b->len = 0;
	return p;
}

static const struct sift_mime_limits default_limits = {
	.max_depth = 20,
	.max_parts = 500,
	.max_headers = 1000,
	.max_header_len = 16384,
	.max_decoded = 8u << 20,
	.max_uris = 1000,
};

/* The raw value of the last header `name`: a part with two Content-Type
 * (or Content-Transfer-Encoding, Content-Disposition) fields is read as
 * SpamAssassin reads it, by the last one. */
static const char *hget(const struct sift_mime_header *h, size_t n, const char *name)
{
	for (size_t i = n; i > 0; i--)
		if (strcasecmp(h[i - 1].name, name) == 0)
			return h[i - 1].raw;
	return NULL;
}

static bool word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Appends the parameter value at q to o (when o is not NULL): a quoted
 * string (unescaped, line breaks dropped) or a token up to white space, ';'
 * or the end. False when there is no value at q: an empty token, or one
 * that runs into a '"' (SpamAssassin's (?=[\s;]|$) after a boundary). */
static bool param_value(struct sift_buf *o, const char *q)
{
	if (*q == '"') {
		for (q++; *q && *q != '"'; q++) {
			if (*q == '\\' && q[1])
				q++;
			if (o && *q != '\r' && *q != '\n')
				sift_buf_add(o, q, 1);
		}
		return true;
	}
	const char *e = q;
	while (*e && *e != ';' && *e != '"' && *e != ' ' && *e != '\t' && *e != '\r' && *e != '\n')
		e++;
	if (*e == '"' || e == q)
		return false;
	if (o)
		sift_buf_add(o, q, (size_t)(e - q));
	return true;
}

/* Appends to o the value at q of an RFC 2231 extended parameter (name*=,
 * name*N*=): %XX decoded; the first one (first) starts with
 * charset'language', whose charset goes to cs. */
static void ext_value(struct sift_buf *o, const char *q, bool first, char *cs, size_t cssize)
{
	struct sift_buf t = {0};
	param_value(&t, q);
	const char *s = t.data ? t.data : "", *e = s + t.len;
	if (first) {
		const char *a = memchr(s, '\'', t.len);
		const char *b = a ? memchr(a + 1, '\'', (size_t)(e - a - 1)) : NULL;
		if (b) {
			snprintf(cs, cssize, "%.*s", (int)(a - s), s);
			s = b + 1;
		}
	}
	for (; s < e; s++) {
		if (*s == '%' && s + 2 < e && sift_hexval((unsigned char)s[1]) >= 0 &&
		    sift_hexval((unsigned char)s[2]) >= 0) {
			char c = (char)(sift_hexval((unsigned char)s[1]) * 16 +
					sift_hexval((unsigned char)s[2]));
			sift_buf_add(o, &c, 1);
			s += 2;
		} else
			sift_buf_add(o, s, 1);
	}
	sift_buf_free(&t);
}

#define MAX_SEGMENTS 64

/* Looks up one parameter of a Content-Type or Content-Disposition value
 * "type/subtype; a=b; c="d"". The name is found where SpamAssassin's
 * parse_content_type finds it, /\bname\s*=\s*.../: at any word boundary of
 * the value, not only after a ';', so "multipart/mixed boundary=XX" (no
 * ';') has its boundary and "text/plain charset=koi8-r" its charset; the
 * first match wins.
 *
 * RFC 2231: an extended value (name*=charset'lang'%XX) or continuations
 * (name*0=, name*1*=, ...: joined by their number, whatever their order,
 * as SpamAssassin and mail clients join them; only the ones marked '*'
 * %XX-decoded, the charset from the first) are taken before a plain
 * name=. When utf8 is not NULL, a value with a declared charset is
 * converted to UTF-8 and *utf8 set (the caller decodes nothing more);
 * else the octets are returned as they are. */
static char *ct_param(struct impl *m, const char *v, const char *name, bool *utf8)
{
	if (utf8)
		*utf8 = false;
	if (!v)
		return NULL;
	size_t nl = strlen(name);
	const char *plain = NULL, *ext = NULL;
	const char *seg[MAX_SEGMENTS] = {0};
	bool segenc[MAX_SEGMENTS] = {0}, anyseg = false;
	for (const char *p = v; *p; p++) {
		if ((p > v && word_char(p[-1])) || strncasecmp(p, name, nl) != 0)
			continue;
		const char *q = p + nl;
		long idx = -1;
		bool enc = false;
		if (*q == '*') {
			q++;
			if (isdigit((unsigned char)*q)) {
				idx = 0;
				for (; isdigit((unsigned char)*q); q++)
					if (idx < MAX_SEGMENTS)
						idx = idx * 10 + (*q - '0');
				if (*q == '*') {
					enc = true;
					q++;
				}
			} else
				enc = true;
		}
		while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
			q++;
		if (*q != '=')
			continue;
		q++;
		while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
			q++;
		if (!param_value(NULL, q))
			continue;
		if (idx >= 0) {
			if (idx < MAX_SEGMENTS && !seg[idx]) {
				seg[idx] = q;
				segenc[idx] = enc;
				anyseg = true;
			}
		} else if (enc) {
			if (!ext)
				ext = q;
		} else if (!plain)
			plain = q;
	}
	struct sift_buf val = {0};
	char cs[64] = "";
	if (ext)
		ext_value(&val, ext, true, cs, sizeof(cs));
	else if (anyseg) {
		for (size_t i = 0; i < MAX_SEGMENTS; i++) {
			if (!seg[i])
				continue;
			if (segenc[i])
				ext_value(&val, seg[i], i == 0, cs, sizeof(cs));
			else
				param_value(&val, seg[i]);
		}
	} else if (plain)
		param_value(&val, plain);
	else
		return NULL;
	if (utf8 && *cs) {
		struct sift_buf u = {0};
		if (!sift_to_utf8(&u, cs, (const unsigned char *)(val.data ? val.data : ""), val.len))
			m->pub.flags |= SIFT_MIME_F_BAD_CHARSET;
		sift_buf_free(&val);
		val = u;
		*utf8 = true;
	}
	char *r = a_buf(m, &val);
	sift_buf_free(&val);
	return r;
}

static char *ct_type(struct impl *m, const char *v, const char *def)
{
	if (!v)
		return a_strndup(m, def, strlen(def));
	while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
		v++;
	size_t n = 0;
	while (v[n] && v[n] != ';' && v[n] != ' ' && v[n] != '\t' && v[n] != '\r' && v[n] != '\n' &&
	       v[n] != '(')
		n++;
	if (n == 0 || !memchr(v, '/', n))
		return a_strndup(m, def, strlen(def));
	char *t = a_strndup(m, v, n);
	return sift_lowercase(t);
}

/* Parses a header block at s (LF or CRLF lines) until the empty line. Sets
 * *body_r to the offset of the body. A line that is not a field (nor the
 * continuation of one) ends the block and is the body's first line. A line
 * starting with white space before any field is read as SpamAssassin reads
 * it: in the header of a MIME part (part true, Message::_parse_multipart)
 * it starts the body, its text is the part's text; in the header of a
 * message (top level, message/rfc822), a folded line with no field to
 * continue, it is skipped (Message::new drops it as a broken field). */
static void parse_header_block(struct impl *m, const unsigned char *s, size_t n, bool part,
			       struct sift_mime_header **h_r, size_t *nh_r, size_t *body_r)
{
	size_t cap = 8, nh = 0;
	struct sift_mime_header *h = sift_malloc(cap * sizeof(*h));
	size_t i = 0;
	struct sift_buf dec = {0};
	while (i < n) {
		const unsigned char *eol = memchr(s + i, '\n', n - i);
		size_t le = eol ? (size_t)(eol - s) : n;
		size_t ll = le - i;
		if (ll && s[le - 1] == '\r')
			ll--;
		if (ll == 0) {
			i = eol ? le + 1 : n;
			break;
		}
		size_t line0 = i;
		size_t coff, nlen = sift_header_name_len((const char *)s + i, ll, &coff);
		if (!nlen) {
			m->pub.flags |= SIFT_MIME_F_BAD_HEADER;
			if (!part && (s[i] == ' ' || s[i] == '\t')) { /* stray continuation */
				i = eol ? le + 1 : n;
				continue;
			}
			break; /* the body starts here */
		}
		/* value: this line and continuation lines */
		size_t vstart = i + coff + 1, vend = eol ? le + 1 : n;
		while (vend < n && (s[vend] == ' ' || s[vend] == '\t')) {
			const unsigned char *e2 = memchr(s + vend, '\n', n - vend);
			vend = e2 ? (size_t)(e2 - s) + 1 : n;
		}
		i = vend;
		if (nh >= m->lim.max_headers) {
			m->pub.flags |= SIFT_MIME_F_TRUNCATED;
			continue;
		}
		size_t ve = vend;
		while (ve > vstart && (s[ve - 1] == '\n' || s[ve - 1] == '\r'))
			ve--;
		size_t vs = vstart;
		while (vs < ve && (s[vs] == ' ' || s[vs] == '\t'))
			vs++;
		if (nh == cap)
			h = sift_realloc(h, (cap *= 2) * sizeof(*h));
		h[nh].name = a_strndup(m, (const char *)s + line0, nlen);
		h[nh].raw = a_raw(m, (const char *)s + vstart, ve - vstart);
		dec.len = 0;
		sift_header_decode_into(&dec, (const char *)s + vs, ve - vs, m->lim.max_header_len,
					sift_header_has_words(h[nh].name), &m->pub.flags);
		h[nh].value = a_buf(m, &dec);
		nh++;
	}
	sift_buf_free(&dec);
	struct sift_mime_header *ah = a_alloc(m, (nh ? nh : 1) * sizeof(*ah));
	memcpy(ah, h, nh * sizeof(*ah));
	free(h);
	*h_r = ah;
	*nh_r = nh;
	*body_r = i;
}

/* ---- URIs ------------------------------------------------------------------ */

/* The URI set hashes with SipHash-1-3 under a key drawn once per process:
 * URIs chosen to share a probe chain of a fixed hash (FNV-1a collisions
 * are cheap to find) would make every repeat compare with all of them. */
static uint64_t uri_key[2];
static pthread_once_t uri_key_once = PTHREAD_ONCE_INIT;

static void uri_key_init(void)
{
	if (getrandom(uri_key, sizeof(uri_key), GRND_NONBLOCK) != (ssize_t)sizeof(uri_key)) {
		/* no entropy yet (early boot): something that varies */
		uri_key[0] = (uint64_t)sift_now_ms() ^ (uint64_t)(uintptr_t)&uri_key;
		uri_key[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
	}
}

static uint64_t uri_hash(const char *s, size_t len)
{
	return sift_siphash(uri_key[0], uri_key[1], s, len);
}

static void uri_host(struct impl *m, struct sift_mime_uri *u)
{
	const char *s = u->uri;
	const char *p = strstr(s, "://");
	const char *h;
	if (strncasecmp(s, "mailto:", 7) == 0) {
		const char *at = strchr(s, '@');
		h = at ? at + 1 : s + strlen(s);
	} else if (p)
		h = p + 3;
	else
		h = s;
	size_t n = strcspn(h, "/?#:\\ ");
	const char *at = memchr(h, '@', n);
	if (at && strncasecmp(s, "mailto:", 7) != 0) {
		h = at + 1;
		n = strcspn(h, "/?#:\\ ");
	}
	if (strncasecmp(s, "mailto:", 7) == 0)
		n = strcspn(h, "?>\"' ");
	char *r = a_strndup(m, h, n);
	sift_lowercase(r);
	while (n && r[n - 1] == '.')
		r[--n] = 0;
	u->host = r;
}

static void add_uri(struct impl *m, const char *s, size_t n, unsigned flags, long part)
{
	while (n && (isspace((unsigned char)*s))) {
		s++;
		n--;
	}
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	if (n == 0 || n > 2048)
		return;
	if (m->nuris >= m->lim.max_uris) {
		m->pub.flags |= SIFT_MIME_F_TRUNCATED;
		return;
	}
	/* a URI seen before: one probe or a few of the set, not a
	 * comparison with every URI kept */
	pthread_once(&uri_key_once, uri_key_init);
	if (m->uset_cap == 0) {
		m->uset_cap = 64;
		m->uset = sift_calloc(m->uset_cap, sizeof(*m->uset));
	}
	if ((m->nuris + 1) * 2 > m->uset_cap) {
		size_t nc = m->uset_cap * 2;
		size_t *ns = sift_calloc(nc, sizeof(*ns));
		for (size_t i = 0; i < m->nuris; i++) {
			size_t k = uri_hash(m->uris[i].uri, strlen(m->uris[i].uri)) & (nc - 1);
			while (ns[k])
				k = (k + 1) & (nc - 1);
			ns[k] = i + 1;
		}
		free(m->uset);
		m->uset = ns;
		m->uset_cap = nc;
	}
	size_t k = uri_hash(s, n) & (m->uset_cap - 1);
	while (m->uset[k]) {
		struct sift_mime_uri *x = &m->uris[m->uset[k] - 1];
		if (strnlen(x->uri, n + 1) == n && memcmp(x->uri, s, n) == 0) {
			x->flags |= flags;
			return;
		}
		k = (k + 1) & (m->uset_cap - 1);
	}
	char *u = a_strndup(m, s, n);
	if (m->nuris == m->ucap) {
		m->ucap = m->ucap ? m->ucap * 2 : 16;
		m->uris = sift_realloc(m->uris, m->ucap * sizeof(*m->uris));
	}
	m->uset[k] = m->nuris + 1;
	struct sift_mime_uri *x = &m->uris[m->nuris++];
	x->uri = u;
	x->flags = flags;
	x->part = part;
	uri_host(m, x);
}

static bool uri_char(unsigned char c)
{
	return c > 32 && c != '<' && c != '>' && c != '"' && c != '`' && c != '{' && c != '}' && c != '|' &&
	       c != '^' && c != 127;
}

static bool email_char(unsigned char c)
{
	return isalnum(c) || c == '.' || c == '_' || c == '-' || c == '+' || c == '=';
}

/* Bare e-mail addresses in text become mailto: URIs (as mail clients
 * linkify them and SpamAssassin lists them). */
static void text_emails(struct impl *m, const char *t, size_t n, long part)
{
	for (size_t i = 1; i + 3 < n; i++) {
		if (t[i] != '@') {
			const char *at = memchr(t + i, '@', n - i);
			if (!at)
				break;
			i = (size_t)(at - t);
			if (i + 3 >= n)
				break;
		}
		if (!email_char((unsigned char)t[i - 1]))
			continue;
		size_t s = i;
		while (s > 0 && email_char((unsigned char)t[s - 1]) && i - s < 64)
			s--;
		if (s >= 7 && strncasecmp(t + s - 7, "mailto:", 7) == 0)
			continue; /* already found as a mailto: URI */
		if (s > 0 && (t[s - 1] == '/' || t[s - 1] == ':'))
			continue; /* part of a URI's user info */
		size_t e = i + 1, dots = 0, last_dot = 0;
		while (e < n && (isalnum((unsigned char)t[e]) || t[e] == '-' || t[e] == '.') && e - i < 255) {
			if (t[e] == '.') {
				dots++;
				last_dot = e;
			}
			e++;
		}
		/* trailing dots end the sentence, not the domain: then the
		 * last dot is the last one before them (one backward scan,
		 * not one whole scan per dot dropped) */
		if (e > i + 1 && t[e - 1] == '.') {
			while (e > i + 1 && t[e - 1] == '.') {
				e--;
				dots--;
			}
			last_dot = 0;
			for (size_t k = e; k > i + 1 && !last_dot; k--)
				if (t[k - 1] == '.')
					last_dot = k - 1;
		}
		if (!dots || !last_dot || e - last_dot - 1 < 2 || s == i)
			continue;
		bool alpha_tld = true;
		for (size_t k = last_dot + 1; k < e; k++)
			if (!isalpha((unsigned char)t[k]))
				alpha_tld = false;
		if (!alpha_tld)
			continue;
		struct sift_buf b = {0};
		sift_buf_adds(&b, "mailto:");
		sift_buf_add(&b, t + s, e - s);
		add_uri(m, b.data, b.len, SIFT_URI_F_TEXT, part);
		sift_buf_free(&b);
		i = e;
	}
}

/* The first c in t[from..n), n when none. */
static size_t next_of(const char *t, size_t n, size_t from, char c)
{
	if (from >= n)
		return n;
	if (t[from] == c) /* runs of dots: no call */
		return from;
	const char *p = memchr(t + from, c, n - from);
	return p ? (size_t)(p - t) : n;
}

/* Finds http(s)://, ftp://, www. and mailto: URIs in UTF-8 text. */
static void text_uris(struct impl *m, const char *t, size_t n, long part)
{
	text_emails(m, t, n, part);
	/* A URI starting at i has its ':' at i+3 (ftp) to i+6 (mailto) or
	 * its '.' at i+3 (www.): the octets with neither ahead are skipped
	 * (nc, nd: the first ':' and '.' at i+3 or after). */
	size_t nc = 0, nd = 0;
	for (size_t i = 0; i < n; i++) {
		if (nc < i + 3)
			nc = next_of(t, n, i + 3, ':');
		if (nd < i + 3)
			nd = next_of(t, n, i + 3, '.');
		size_t next = nc == n ? n : nc >= 6 ? nc - 6 : 0;
		if (nd < n && nd - 3 < next)
			next = nd - 3;
		if (next >= n)
			break;
		if (next > i)
			i = next;
		char c = (char)(t[i] | 0x20);
		if (c != 'h' && c != 'f' && c != 'w' && c != 'm')
			continue;
		if (i > 0 && (isalnum((unsigned char)t[i - 1]) || t[i - 1] == '.' || t[i - 1] == '/' ||
			      t[i - 1] == '@'))
			continue;
		size_t rest = n - i, skip = 0;
		bool www = false;
		if (rest > 7 && strncasecmp(t + i, "http://", 7) == 0)
			skip = 7;
		else if (rest > 8 && strncasecmp(t + i, "https://", 8) == 0)
			skip = 8;
		else if (rest > 6 && strncasecmp(t + i, "ftp://", 6) == 0)
			skip = 6;
		else if (rest > 4 && strncasecmp(t + i, "www.", 4) == 0)
			skip = 4, www = true;
		else if (rest > 7 && strncasecmp(t + i, "mailto:", 7) == 0)
			skip = 7;
		else
			continue;
		size_t j = i + skip;
		while (j < n && uri_char((unsigned char)t[j]))
			j++;
		while (j > i + skip && strchr(".,;:!?)]'*", t[j - 1]))
			j--;
		if (j == i + skip || (www && !isalnum((unsigned char)t[i + skip])))
			continue;
		if (www) {
			struct sift_buf b = {0};
			sift_buf_adds(&b, "http://");
			sift_buf_add(&b, t + i, j - i);
			add_uri(m, b.data, b.len, SIFT_URI_F_TEXT, part);
			sift_buf_free(&b);
		} else
			add_uri(m, t + i, j - i, SIFT_URI_F_TEXT, part);
		i = j - 1;
	}
}

/* ---- HTML ----------------------------------------------------------------- */

struct link_ctx {
	struct impl *m;
	long part;
};

static void html_link(void *arg, const char *uri, size_t len)
{
	struct link_ctx *lc = arg;
	add_uri(lc->m, uri, len, SIFT_URI_F_HTML, lc->part);
}

/* The characters of UTF-8 text t (n octets) that are not white space as
 * Perl's \s matches it in a character string: ASCII white space, U+0085,
 * U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
 * SpamAssassin's html_image_ratio divides this (non_space_len) by the
 * image area. */
static size_t non_space(const char *t, size_t n)
{
	/* 1: an ASCII octet that is not white space; 0: white space, or an
	 * octet of 0x80 or above (a sequence, decoded below) */
	static const unsigned char ascii_char[256] = {
		[0x00 ... 0x08] = 1, [0x0e ... 0x1f] = 1, [0x21 ... 0x7f] = 1};
	const unsigned char *s = (const unsigned char *)t;
	size_t chars = 0;
	for (size_t i = 0; i < n;) {
		if (s[i] < 0x80) {
			size_t k = i;
			for (; k < n && s[k] < 0x80; k++)
				chars += ascii_char[s[k]];
			i = k;
			continue;
		}
		size_t l = sift_utf8_seq(s + i, n - i);
		if (!l)
			l = 1;
		unsigned long cp = 0;
		if (l == 1)
			cp = s[i];
		else if (l == 2)
			cp = (s[i] & 0x1fUL) << 6 | (s[i + 1] & 0x3fUL);
		else if (l == 3)
			cp = (s[i] & 0x0fUL) << 12 | (s[i + 1] & 0x3fUL) << 6 | (s[i + 2] & 0x3fUL);
		bool space = cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || cp == 0x85 || cp == 0xa0 ||
			     cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
			     cp == 0x202f || cp == 0x205f || cp == 0x3000;
		chars += !space;
		i += l;
	}
	return chars;
}

/* d[0..n) in place with CR LF and a lone CR as LF, NULs dropped; returns
 * the new length. The spans between them are moved whole. */
static size_t lf_text(char *d, size_t n)
{
	if (!n)
		return 0;
	const char *cr = memchr(d, '\r', n), *nul = memchr(d, 0, n);
	size_t w = 0, k = 0;
	while (k < n) {
		size_t e = n;
		if (cr && (size_t)(cr - d) < e)
			e = (size_t)(cr - d);
		if (nul && (size_t)(nul - d) < e)
			e = (size_t)(nul - d);
		if (w != k)
			memmove(d + w, d + k, e - k);
		w += e - k;
		k = e;
		if (k == n)
			break;
		if (d[k++] == '\r') {
			if (k == n || d[k] != '\n')
				d[w++] = '\n';
			cr = memchr(d + k, '\r', n - k);
		} else
			nul = memchr(d + k, 0, n - k);
	}
	return w;
}

/* Renders the UTF-8 HTML of part idx (t[0..n)) into o through the one
 * tokenizer (lib/html.c), which also gives the part's statistics. */
static void html_part(struct impl *m, long idx, const char *t, size_t n, struct sift_buf *o)
{
	struct sift_html_scan hs = {0};
	struct link_ctx lc = {m, idx};
	sift_html_scan(t, n, o, &hs, html_link, &lc);
	struct sift_mime_part *p = &m->parts[idx];
	struct sift_html *st = a_alloc(m, sizeof(*st));
	*st = hs.stats;
	st->non_space_len = non_space(o->data, o->len);
	st->title = a_buf(m, &hs.title);
	st->anchor = a_buf(m, &hs.anchor);
	st->comments = a_buf(m, &hs.comments);
	if (st->nanchors) {
		struct sift_html_anchor *an = a_alloc(m, st->nanchors * sizeof(*an));
		const char *s = a_buf(m, &hs.anchors);
		for (size_t k = 0; k < st->nanchors; k++) {
			an[k].href = s;
			s += strlen(s) + 1;
			an[k].text = s;
			s += strlen(s) + 1;
		}
		st->anchors = an;
	}
	sift_html_scan_free(&hs);
	p->html_tags = st->tags;
	p->html_images = st->images;
	p->html_links = st->links;
	p->html_bad_tags = st->bad_tags;
	p->html_image_area = st->image_area;
	p->html_title = st->title;
	m->html[idx] = st;
}

/* ---- the part tree -------------------------------------------------------- */

static long new_part(struct impl *m, unsigned depth, long parent)
{
	if (m->nparts == m->pcap) {
		m->pcap = m->pcap ? m->pcap * 2 : 8;
		m->parts = sift_realloc(m->parts, m->pcap * sizeof(*m->parts));
		m->html = sift_realloc(m->html, m->pcap * sizeof(*m->html));
	}
	m->html[m->nparts] = NULL;
	struct sift_mime_part *p = &m->parts[m->nparts];
	memset(p, 0, sizeof(*p));
	p->depth = depth;
	p->parent = parent;
	p->html_title = "";
	return (long)m->nparts++;
}

/* The octets of a text part that are decoded and rendered: half of what
 * is left of max_decoded, and at least max_decoded / 8 (see parse_entity). */
static size_t text_cap(const struct impl *m)
{
	size_t avail = m->decoded < m->lim.max_decoded ? m->lim.max_decoded - m->decoded : 0;
	size_t floor = m->lim.max_decoded / 8;
	return avail / 2 > floor ? avail / 2 : floor;
}

/* Where to cut s (len octets) to at most max octets: after the last line
 * end in its second half, else at max. */
static size_t cut_at_line(const unsigned char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	for (size_t k = max; k > max / 2; k--)
		if (s[k - 1] == '\n')
			return k;
	return max;
}

static void parse_entity(struct impl *m, const struct sift_mime_header *h, size_t nh,
			 const unsigned char *body, size_t len, unsigned depth, long parent,
			 const char *deftype);

/* Whether s[k..len) is transport padding only (white space, the CR of a
 * CRLF line end). */
static bool padding_only(const unsigned char *s, size_t k, size_t len)
{
	for (; k < len; k++)
		if (s[k] != ' ' && s[k] != '\t' && s[k] != '\r')
			return false;
	return true;
}

/* Whether the line s (len octets, without its LF) is a delimiter of the
 * boundary b: 0 no, 1 a delimiter, 2 the close delimiter. RFC 2046 5.1.1:
 * "--" + boundary, then "--" for the close delimiter, then only white
 * space (transport padding) up to the line end; "--" + boundary + anything
 * else is body text, so that a boundary that prefixes another ("q" and
 * "qq"), a preamble line "--qq not a boundary", or a line "--q text"
 * inside a part never splits a part (as SpamAssassin and mail clients
 * read it: text after such a line is still the part's text). */
static int delimiter(const unsigned char *s, size_t len, const char *b, size_t bl)
{
	if (len < bl + 2 || s[0] != '-' || s[1] != '-' || memcmp(s + 2, b, bl) != 0)
		return 0;
	size_t k = bl + 2;
	if (padding_only(s, k, len))
		return 1;
	if (len - k >= 2 && s[k] == '-' && s[k + 1] == '-' && padding_only(s, k + 2, len))
		return 2;
	return 0;
}

/* Whether the line at s starts as /^[\041-\071\073-\176]+:/: a header
 * name (printable, no colon, no space) and its colon. */
static bool header_start(const unsigned char *s, size_t n)
{
	size_t k = 0;
	while (k < n && s[k] >= 041 && s[k] <= 0176 && s[k] != ':')
		k++;
	return k > 0 && k < n && s[k] == ':';
}

/* Splits a multipart body on its boundary and parses each part; false
 * when no line of the body is a delimiter (no part made). */
static bool parse_multipart(struct impl *m, long idx, const char *boundary, const unsigned char *s, size_t n,
			    unsigned depth)
{
	size_t bl = strlen(boundary);
	const char *subtype = m->parts[idx].type;
	const char *deftype = strcmp(subtype, "multipart/digest") == 0 ? "message/rfc822" : "text/plain";
	size_t i = 0;
	long part_start = -1; /* offset of the current part's first byte */
	bool closed = false, found = false;
	while (i < n) {
		const unsigned char *eol = memchr(s + i, '\n', n - i);
		size_t le = eol ? (size_t)(eol - s) : n;
		size_t next = eol ? le + 1 : n;
		int delim = delimiter(s + i, le - i, boundary, bl);
		if (delim) {
			found = true;
			bool close = delim == 2;
			if (part_start >= 0) {
				size_t end = i;
				if (end > (size_t)part_start && s[end - 1] == '\n')
					end--;
				if (end > (size_t)part_start && s[end - 1] == '\r')
					end--;
				if (m->nparts >= m->lim.max_parts) {
					m->pub.flags |= SIFT_MIME_F_TRUNCATED;
					return true;
				}
				const unsigned char *ps = s + part_start;
				size_t pl = end - (size_t)part_start;
				struct sift_mime_header *ph;
				size_t pnh, boff;
				parse_header_block(m, ps, pl, true, &ph, &pnh, &boff);
				parse_entity(m, ph, pnh, ps + boff, pl - boff, depth + 1, idx, deftype);
			}
			if (close) {
				closed = true;
				/* SpamAssassin's mime_epilogue_exists: a line after
				 * it with more than white space and dots */
				for (size_t k = next; k < n; k++)
					if (!isspace(s[k]) && s[k] != '.') {
						m->pub.flags |= SIFT_MIME_F_EPILOGUE;
						break;
					}
				break;
			}
			/* SpamAssassin's missing_mime_headers: the line after a
			 * delimiter, when there is one, does not start a header
			 * (/^[\041-\071\073-\176]+:/) */
			if (next < n && !header_start(s + next, n - next))
				m->pub.flags |= SIFT_MIME_F_NO_PART_HEADERS;
			part_start = (long)next;
		}
		i = next;
	}
	if (!closed) {
		m->pub.flags |= SIFT_MIME_F_MISSING_BOUNDARY;
		if (part_start >= 0 && (size_t)part_start < n && m->nparts < m->lim.max_parts) {
			const unsigned char *ps = s + part_start;
			size_t pl = n - (size_t)part_start;
			struct sift_mime_header *ph;
			size_t pnh, boff;
			parse_header_block(m, ps, pl, true, &ph, &pnh, &boff);
			parse_entity(m, ph, pnh, ps + boff, pl - boff, depth + 1, idx, deftype);
		}
	}
	return found;
}

/* SpamAssassin's /\.s?html?$/i on a part's name. */
static bool html_name(const char *fn)
{
	const char *dot = strrchr(fn, '.');
	if (!dot)
		return false;
	dot++;
	return strcasecmp(dot, "htm") == 0 || strcasecmp(dot, "html") == 0 || strcasecmp(dot, "shtm") == 0 ||
	       strcasecmp(dot, "shtml") == 0;
}

static void parse_entity(struct impl *m, const struct sift_mime_header *h, size_t nh,
			 const unsigned char *body, size_t len, unsigned depth, long parent,
			 const char *deftype)
{
	long idx = new_part(m, depth, parent);
	struct sift_mime_part *p = &m->parts[idx];
	p->headers = h;
	p->header_count = nh;
	const char *ct = hget(h, nh, "Content-Type");
	const char *type = ct_type(m, ct, deftype);
	const char *cs = ct_param(m, ct, "charset", NULL);
	const char *bd = ct_param(m, ct, "boundary", NULL);
	const char *cte = hget(h, nh, "Content-Transfer-Encoding");
	const char *cd = hget(h, nh, "Content-Disposition");
	bool fn_utf8;
	char *fn = ct_param(m, cd, "filename", &fn_utf8);
	if (!fn)
		fn = ct_param(m, ct, "name", &fn_utf8);
	char *enc = ct_type(m, NULL, "7bit");
	if (cte) {
		while (*cte == ' ' || *cte == '\t')
			cte++;
		size_t k = strcspn(cte, " \t\r\n;(");
		enc = sift_lowercase(a_strndup(m, cte, k));
	}
	char *csl = cs ? sift_lowercase(a_strndup(m, cs, strlen(cs))) : (char *)"";
	/* strip quotes/blanks in charset */
	p = &m->parts[idx];
	p->type = type;
	p->charset = csl;
	p->encoding = enc;
	p->boundary = bd ? bd : "";
	if (fn && fn_utf8) /* RFC 2231, converted from its charset */
		p->filename = fn;
	else if (fn) {
		struct sift_buf d = {0};
		sift_header_decode_into(&d, fn, strlen(fn), m->lim.max_header_len, true, &m->pub.flags);
		p->filename = a_buf(m, &d);
		sift_buf_free(&d);
	} else
		p->filename = "";
	if (cd) {
		while (*cd == ' ' || *cd == '\t')
			cd++;
		if (strncasecmp(cd, "attachment", 10) == 0)
			p->flags |= SIFT_MIME_P_ATTACHMENT;
	}
	p->raw = body;
	p->raw_len = len;
	p->data = body;
	p->data_len = len;

	if (strncmp(type, "multipart/", 10) == 0) {
		if (!bd || !*bd) {
			m->pub.flags |= SIFT_MIME_F_NO_BOUNDARY;
			type = p->type = "text/plain";
		} else if (depth >= m->lim.max_depth) {
			m->pub.flags |= SIFT_MIME_F_TRUNCATED;
			return;
		} else if (parse_multipart(m, idx, bd, body, len, depth)) {
			return;
		} else {
			/* no delimiter anywhere: the body is read as one text
			 * part, as SpamAssassin reads it, not as a preamble
			 * nobody scans */
			p = &m->parts[idx];
			type = p->type = "text/plain";
		}
	}
	/* A leaf named *.html, *.htm, *.shtml or *.shtm is read as text/html,
	 * whatever its declared type (p->type stays as declared): SpamAssassin
	 * renders it so (Node::effective_type, its bugs 6260 and 6439), and
	 * a page sent as application/octet-stream is still a page. */
	if (strncmp(type, "message/", 8) != 0 && html_name(p->filename))
		type = "text/html";
	/* transfer decoding, of the leaves someone reads (text, images) and
	 * of an encapsulated message. Other leaves (application/, audio/,
	 * video/: most of a large message's octets) are left encoded, data
	 * NULL: no plugin reads them decoded (a virus scanner takes the whole
	 * message), and decoding a 200 KB attachment cost more than scoring
	 * its message's text.
	 *
	 * The decoded octets (m->decoded: transfer decodings and renderings)
	 * are bounded by max_decoded, but a text part is never dropped for
	 * it: SpamAssassin renders every text part (its rules then scan the
	 * first body_part_scan_size octets of each), and a part left without
	 * text would let a message hide its text behind large or nested
	 * encoded layers (and score as an empty message). A text part is cut
	 * instead, to half of what is left of the budget or to
	 * max_decoded / 8, whichever is more (text_cap). That floor keeps the
	 * parse bounded: it is spent only on a text part's own octets, which
	 * lie in the message or in a decoded layer (itself within
	 * max_decoded), so all the text parts together cost at most a few
	 * times (message size + max_decoded). An encapsulated message that
	 * does not fit is decoded up to what is left, and parsed as far as
	 * that goes; an image that does not fit stays encoded. */
	bool bad = false;
	bool is_text = strncmp(type, "text/", 5) == 0;
	bool wanted = is_text || strncmp(type, "image/", 6) == 0 || strncmp(type, "message/", 8) == 0;
	size_t avail = m->decoded < m->lim.max_decoded ? m->lim.max_decoded - m->decoded : 0;
	size_t tcap = text_cap(m);
	if (strcmp(enc, "base64") == 0 || strcmp(enc, "quoted-printable") == 0) {
		if (!wanted) {
			p->data = NULL;
			p->data_len = 0;
			return;
		}
		/* the encoded octets to decode: the output is never longer
		 * than the input */
		size_t in = len;
		if (is_text && in > 2 * tcap)
			in = cut_at_line(body, len, 2 * tcap);
		else if (!is_text && in > avail) {
			if (avail == 0 || strncmp(type, "message/", 8) != 0) {
				m->pub.flags |= SIFT_MIME_F_TRUNCATED;
				return;
			}
			in = cut_at_line(body, len, avail);
		}
		if (in < len)
			m->pub.flags |= SIFT_MIME_F_TRUNCATED;
		struct sift_buf d = {0};
		if (enc[0] == 'b')
			sift_b64_decode(&d, body, in, &bad);
		else
			sift_qp_decode(&d, body, in, false, &bad);
		if (bad)
			m->pub.flags |= enc[0] == 'b' ? SIFT_MIME_F_BAD_BASE64 : SIFT_MIME_F_BAD_QP;
		m->decoded += d.len;
		p->data_len = d.len;
		p->data = (const unsigned char *)a_buf(m, &d);
		sift_buf_free(&d);
	}
	/* a message/rfc822 part, or a message/global one (RFC 6532: the
	 * same, with UTF-8 allowed in its header), is parsed as the message
	 * it holds, also when it is sent base64 or quoted-printable encoded
	 * (as SpamAssassin reads both: its text is scanned like any other).
	 * Other message/ types (delivery-status, feedback-report, partial,
	 * global-headers, ...) are not a header and a body; they stay
	 * leaves. */
	if (strcmp(type, "message/rfc822") == 0 || strcmp(type, "message/global") == 0) {
		if (depth >= m->lim.max_depth || m->nparts >= m->lim.max_parts) {
			m->pub.flags |= SIFT_MIME_F_TRUNCATED;
			return;
		}
		const unsigned char *mb = p->data;
		size_t ml = p->data_len;
		m->parts[idx].flags |= SIFT_MIME_P_MESSAGE;
		struct sift_mime_header *ph;
		size_t pnh, boff;
		parse_header_block(m, mb, ml, false, &ph, &pnh, &boff);
		parse_entity(m, ph, pnh, mb + boff, ml - boff, depth + 1, idx, "text/plain");
		return;
	}
	if (strncmp(type, "text/", 5) != 0)
		return;
	/* text/calendar and text/x-vcard are decoded, not rendered: no text,
	 * no URIs. SpamAssassin renders text/plain and text/html only
	 * (Node::rendered), with every other text/ type read as text/plain
	 * but these two (Util::parse_content_type, bug 4843): an invitation
	 * or a card attached is not the text a reader sees. Its decoded data
	 * is still rawbody text (x-vcard; calendar is left out there too). */
	if (strcmp(type, "text/calendar") == 0 || strcmp(type, "text/x-vcard") == 0)
		return;
	/* the text is cut to text_cap (above), never dropped */
	size_t tlen = p->data_len;
	if (tlen > tcap) {
		tlen = cut_at_line(p->data, tlen, tcap);
		m->pub.flags |= SIFT_MIME_F_TRUNCATED;
	}
	/* to UTF-8 with LF line ends */
	struct sift_buf u = {0};
	if (!sift_body_to_utf8(&u, csl, p->data, tlen))
		m->pub.flags |= SIFT_MIME_F_BAD_CHARSET;
	u.len = lf_text(u.data, u.len);
	if (strcmp(type, "text/html") == 0) {
		struct sift_buf r = {0};
		m->parts[idx].flags |= SIFT_MIME_P_HTML;
		html_part(m, idx, u.data ? u.data : "", u.len, &r);
		p = &m->parts[idx];
		p->text_len = r.len;
		p->text = a_buf(m, &r);
		sift_buf_free(&r);
	} else {
		p->text_len = u.len;
		p->text = a_buf(m, &u);
	}
	m->decoded += p->text_len;
	sift_buf_free(&u);
	text_uris(m, p->text, p->text_len, idx);
}

struct sift_mime *sift_mime_parse(const struct sift_header *hdrs, size_t nhdrs, const unsigned char *body,
				  size_t body_len, const struct sift_mime_limits *lim)
{
	struct impl *m = sift_calloc(1, sizeof(*m));
	m->lim = lim ? *lim : default_limits;
	if (!m->lim.max_depth)
		m->lim.max_depth = default_limits.max_depth;
	if (!m->lim.max_parts)
		m->lim.max_parts = default_limits.max_parts;
	if (!m->lim.max_headers)
		m->lim.max_headers = default_limits.max_headers;
	if (!m->lim.max_header_len)
		m->lim.max_header_len = default_limits.max_header_len;
	if (!m->lim.max_decoded)
		m->lim.max_decoded = default_limits.max_decoded;
	if (!m->lim.max_uris)
		m->lim.max_uris = default_limits.max_uris;
	size_t nh = nhdrs < m->lim.max_headers ? nhdrs : m->lim.max_headers;
	if (nh < nhdrs)
		m->pub.flags |= SIFT_MIME_F_TRUNCATED;
	struct sift_mime_header *h = a_alloc(m, (nh ? nh : 1) * sizeof(*h));
	struct sift_buf dec = {0};
	for (size_t i = 0; i < nh; i++) {
		const char *v = hdrs[i].value ? hdrs[i].value : "";
		h[i].name = a_strndup(m, hdrs[i].name, strlen(hdrs[i].name));
		h[i].raw = a_raw(m, v, strlen(v));
		while (*v == ' ' || *v == '\t')
			v++;
		dec.len = 0;
		sift_header_decode_into(&dec, v, strlen(v), m->lim.max_header_len,
					sift_header_has_words(h[i].name), &m->pub.flags);
		h[i].value = a_buf(m, &dec);
	}
	sift_buf_free(&dec);
	m->pub.body = body;
	m->pub.body_len = body_len;
	parse_entity(m, h, nh, body ? body : (const unsigned char *)"", body_len, 0, -1, "text/plain");
	m->pub.headers = h;
	m->pub.header_count = nh;
	m->pub.parts = m->parts;
	m->pub.html = m->html;
	m->pub.part_count = m->nparts;
	m->pub.uris = m->uris;
	m->pub.uri_count = m->nuris;
	free(m->uset);
	m->uset = NULL;
	return &m->pub;
}

struct sift_mime *sift_mime_parse_message(const unsigned char *msg, size_t len,
					  const struct sift_mime_limits *lim)
{
	struct impl tmp = {0};
	tmp.lim = lim ? *lim : default_limits;
	if (!tmp.lim.max_headers)
		tmp.lim.max_headers = default_limits.max_headers;
	if (!tmp.lim.max_header_len)
		tmp.lim.max_header_len = default_limits.max_header_len;
	/* header block into plain sift_header records (value as received) */
	struct sift_mime_header *ph;
	size_t nh, boff;
	size_t off = 0;
	if (len >= 5 && memcmp(msg, "From ", 5) == 0) { /* mbox separator */
		const unsigned char *e = memchr(msg, '\n', len);
		off = e ? (size_t)(e - msg) + 1 : len;
	}
	parse_header_block(&tmp, msg + off, len - off, false, &ph, &nh, &boff);
	struct sift_header *sh = sift_calloc(nh ? nh : 1, sizeof(*sh));
	for (size_t i = 0; i < nh; i++) {
		sh[i].name = ph[i].name;
		sh[i].value = sift_mime_header_lead(&ph[i]);
	}
	struct sift_mime *r = sift_mime_parse(sh, nh, msg + off + boff, len - off - boff, lim);
	r->flags |= tmp.pub.flags;
	free(sh);
	while (tmp.arena) {
		struct ablock *b = tmp.arena;
		tmp.arena = b->next;
		free(b);
	}
	return r;
}

void sift_mime_free(struct sift_mime *pub)
{
	if (!pub)
		return;
	struct impl *m = (struct impl *)pub;
	while (m->arena) {
		struct ablock *b = m->arena;
		m->arena = b->next;
		free(b);
	}
	free(m->parts);
	free(m->html);
	free(m->uris);
	free(m->uset);
	free(m);
}
