/*
 * evals_mime.c - eval: functions over the MIME structure and the body
 * texts, as SpamAssassin 4.0's BodyEval and MIMEEval compute them:
 * multipart_alternative_difference(_count), check_blank_line_ratio,
 * tvd_vertical_words, check_ma_non_text, check_mime_multipart_ratio,
 * check_for_ascii_text_illegal, check_abundant_unicode_ratio,
 * check_base64_length, check_for_uppercase, the faraway charset tests
 * (which never hit with SpamAssassin's default ok_locales "all", the only
 * setting Sift has), and ImageInfo's pixel_coverage and image_to_text_ratio.
 */
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"

/* parts[i]'s descendants are parts[i+1 .. end) */
static size_t subtree_end(const struct sift_mime *mm, size_t i)
{
	size_t j = i + 1;
	while (j < mm->part_count && mm->parts[j].depth > mm->parts[i].depth)
		j++;
	return j;
}

static bool is_leaf(const struct sift_mime *mm, size_t i)
{
	return strncmp(mm->parts[i].type, "multipart/", 10) != 0 &&
	       !(mm->parts[i].flags & SIFT_MIME_P_MESSAGE);
}

/* ---- multipart_alternative_difference ---- */

/* The distinct words of a multipart/alternative's parts, each with its
 * count in the HTML parts and in the others: one open-addressing table
 * (empty slots have no word). A word points into its part's text, which
 * outlives the table. */
struct wordent {
	uint64_t hash;
	const char *w;
	uint32_t len;
	int html, text; /* occurrences */
};
struct wordset {
	struct wordent *t;
	size_t n, cap; /* cap: a power of two, at most half full */
	size_t nhtml;  /* the words an HTML part has */
};

/* The word sets hash with SipHash-1-3 under a key drawn once per process:
 * words chosen to share a probe chain of a fixed hash (FNV-1a collisions
 * are cheap to find) would make every lookup walk the whole table. */
static uint64_t ws_key[2];
static pthread_once_t ws_key_once = PTHREAD_ONCE_INIT;

static void ws_key_init(void)
{
	if (getrandom(ws_key, sizeof(ws_key), GRND_NONBLOCK) != (ssize_t)sizeof(ws_key)) {
		/* no entropy yet (early boot): something that varies */
		ws_key[0] = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)&ws_key;
		ws_key[1] = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
	}
}

#define WS_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define WS_SIPROUND                   \
	do {                          \
		v0 += v1;             \
		v1 = WS_ROTL(v1, 13); \
		v1 ^= v0;             \
		v0 = WS_ROTL(v0, 32); \
		v2 += v3;             \
		v3 = WS_ROTL(v3, 16); \
		v3 ^= v2;             \
		v0 += v3;             \
		v3 = WS_ROTL(v3, 21); \
		v3 ^= v0;             \
		v2 += v1;             \
		v1 = WS_ROTL(v1, 17); \
		v1 ^= v2;             \
		v2 = WS_ROTL(v2, 32); \
	} while (0)

static uint64_t ws_hash(const char *w, size_t len)
{
	uint64_t k0 = ws_key[0], k1 = ws_key[1];
	uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
	uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
	const unsigned char *p = (const unsigned char *)w;
	size_t left = len;
	for (; left >= 8; p += 8, left -= 8) {
		uint64_t m = 0;
		for (int i = 0; i < 8; i++)
			m |= (uint64_t)p[i] << (8 * i);
		v3 ^= m;
		WS_SIPROUND;
		v0 ^= m;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < left; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	WS_SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	WS_SIPROUND;
	WS_SIPROUND;
	WS_SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* The entry of w, added with no occurrences when absent. */
static struct wordent *ws_get(struct wordset *s, const char *w, size_t len)
{
	if ((s->n + 1) * 2 > s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 256;
		struct wordent *t = xcalloc(nc, sizeof(*t));
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->t[i].w)
				continue;
			size_t h = s->t[i].hash & (nc - 1);
			while (t[h].w)
				h = (h + 1) & (nc - 1);
			t[h] = s->t[i];
		}
		free(s->t);
		s->t = t;
		s->cap = nc;
	}
	uint64_t hash = ws_hash(w, len);
	size_t h = hash & (s->cap - 1);
	for (; s->t[h].w; h = (h + 1) & (s->cap - 1))
		if (s->t[h].hash == hash && s->t[h].len == len && memcmp(s->t[h].w, w, len) == 0)
			return &s->t[h];
	s->t[h] = (struct wordent){hash, w, (uint32_t)len, 0, 0};
	s->n++;
	return &s->t[h];
}

/* Octet classes of Perl's split(/\s+/) and /\w/ as the C locale has
 * them (isspace, isalnum), with every octet above 127 a word octet */
enum { WS_OTHER, WS_SPACE, WS_WORD };
static const unsigned char ws_class[256] =
	{
		['\t'] = WS_SPACE,	 ['\n'] = WS_SPACE,	    ['\v'] = WS_SPACE,
		['\f'] = WS_SPACE,	 ['\r'] = WS_SPACE,	    [' '] = WS_SPACE,
		['0' ... '9'] = WS_WORD, ['A' ... 'Z'] = WS_WORD,   ['_'] = WS_WORD,
		['a' ... 'z'] = WS_WORD, [0x80 ... 0xff] = WS_WORD,
};

/* Perl's grep(/\w/, split(/\s+/, $text)), each word counted in s as an
 * HTML part's word or another part's */
static void ws_add_text(struct wordset *s, const char *t, size_t n, bool html)
{
	const unsigned char *u = (const unsigned char *)t;
	for (size_t i = 0; i < n;) {
		while (i < n && ws_class[u[i]] == WS_SPACE)
			i++;
		size_t j = i;
		unsigned char cls = 0;
		while (j < n && ws_class[u[j]] != WS_SPACE)
			cls |= ws_class[u[j++]];
		if (cls & WS_WORD) {
			struct wordent *e = ws_get(s, t + i, j - i);
			if (!html)
				e->text++;
			else if (e->html++ == 0)
				s->nhtml++;
		}
		i = j;
	}
}

struct madiff {
	double diff;
	size_t html, text;
};

static void madiff_compute(struct msgctx *m, struct madiff *md)
{
	const struct sift_mime *mm = m->mime;
	pthread_once(&ws_key_once, ws_key_init);
	/* the calendar invitation exception: multipart/alternative of
	 * text/html and text/calendar only */
	if (mm->part_count == 3 && strcmp(mm->parts[0].type, "multipart/alternative") == 0 &&
	    strcmp(mm->parts[1].type, "text/html") == 0 && strcmp(mm->parts[2].type, "text/calendar") == 0)
		return;
	for (size_t i = 0; i < mm->part_count; i++) {
		if (strcmp(mm->parts[i].type, "multipart/alternative") != 0)
			continue;
		struct wordset ws = {0};
		size_t end = subtree_end(mm, i);
		for (size_t k = i + 1; k < end && !msg_late(m); k++) {
			const struct sift_mime_part *p = &mm->parts[k];
			if (!p->text || strncmp(p->type, "text/", 5) != 0)
				continue;
			bool html = p->flags & SIFT_MIME_P_HTML;
			ws_add_text(&ws, p->text, p->text_len, html);
			if (!html)
				continue;
			const struct sift_html *hi = mm->html ? mm->html[k] : NULL;
			if (!ws.nhtml && hi && hi->images) { /* a word no split makes */
				struct wordent *e = ws_get(&ws, "\n", 1);
				if (e->html++ == 0)
					ws.nhtml++;
			}
		}
		/* an HTML word is left unless the other parts have it as often */
		size_t orig = 0, ntext = 0, left = 0;
		for (size_t e = 0; e < ws.cap; e++) {
			const struct wordent *w = &ws.t[e];
			orig += w->html > 0;
			ntext += w->text > 0;
			left += w->html > 0 && !(w->text > 0 && w->html - w->text < 1);
		}
		if (orig) {
			md->html = orig;
			md->text = ntext;
			double diff = (double)left / (double)orig * 100.0;
			if (diff > md->diff)
				md->diff = diff;
		}
		free(ws.t);
	}
}

/* the message's statistics, once */
static struct madiff madiff_get(struct msgctx *m)
{
	struct madiff md = {0};
	if (m->ev.madiff_done) {
		md.diff = m->ev.madiff;
		md.html = m->ev.madiff_html;
		md.text = m->ev.madiff_text;
		return md;
	}
	madiff_compute(m, &md);
	m->ev.madiff_done = true;
	m->ev.madiff = md.diff;
	m->ev.madiff_html = md.html;
	m->ev.madiff_text = md.text;
	return md;
}

static int ev_madiff(struct msgctx *m, const struct rule *r)
{
	struct madiff md = madiff_get(m);
	double mn = atof(eval_arg(r, 0));
	const char *mx = eval_arg(r, 1);
	return (mn == 0 || md.diff > mn) && (strcmp(mx, "undef") == 0 || md.diff <= atof(mx));
}

static int ev_madiff_count(struct msgctx *m, const struct rule *r)
{
	struct madiff md = madiff_get(m);
	if ((double)md.html <= atof(eval_arg(r, 1)))
		return 0;
	return (double)md.text / (double)md.html > atof(eval_arg(r, 0));
}

/* ---- body line statistics ---- */

/* check_blank_line_ratio(min, max[, minlines]) over the decoded text parts */
static int ev_blank_line_ratio(struct msgctx *m, const struct rule *r)
{
	double mn = atof(eval_arg(r, 0)), mx = atof(eval_arg(r, 1));
	long minlines = r->neval > 2 ? atol(eval_arg(r, 2)) : 1;
	if (minlines < 1)
		minlines = 1;
	long nlines = 0, blank = 0;
	if (!m->raws)
		build_raw(m);
	for (size_t i = 0; i < m->nraws; i++) {
		const char *s = m->raws[i], *e = s + m->rawlens[i];
		while (s < e) {
			const char *nl = memchr(s, '\n', (size_t)(e - s));
			const char *le = nl ? nl + 1 : e;
			bool nonspace = false;
			for (const char *c = s; c < le && !nonspace; c++)
				nonspace = !isspace((unsigned char)*c);
			nlines++;
			blank += !nonspace;
			s = le;
		}
	}
	double ratio = nlines < minlines ? -1 : 100.0 * (double)blank / (double)nlines;
	return (mn == 0 && ratio <= mx) || (ratio > mn && ratio <= mx);
}

/* tvd_vertical_words(min, max): the largest share of spaces in a body line */
static int ev_tvd_vertical_words(struct msgctx *m, const struct rule *r)
{
	double mn = atof(eval_arg(r, 0)), mx = atof(eval_arg(r, 1));
	if (mx >= 100)
		mx = 101;
	long best = -1;
	for (size_t i = 0; i < m->nlines; i++) {
		size_t l = m->lens[i]; /* octets: SpamAssassin's texts are not decoded */
		if (l <= 5)
			continue;
		size_t spaces = 0;
		for (size_t k = 0; k < m->lens[i]; k++)
			spaces += m->lines[i][k] == ' ';
		size_t non = l - spaces;
		long pct = spaces > non || non == 0 ? 100 : (long)(100 * spaces / non);
		if (pct > best)
			best = pct;
	}
	return (double)best >= mn && (double)best < mx;
}

/* ^(?:[A-Za-z0-9+/=]{60,76} ){2}: a line of base64 words */
static bool base64_words(const char *s, size_t n)
{
	size_t i = 0;
	for (int w = 0; w < 2; w++) {
		size_t k = 0;
		while (i + k < n && (isalnum((unsigned char)s[i + k]) || s[i + k] == '+' || s[i + k] == '/' ||
				     s[i + k] == '='))
			k++;
		if (k < 60 || k > 76 || i + k >= n || s[i + k] != ' ')
			return false;
		i += k + 1;
	}
	return true;
}

static const char *ct_charset(struct msgctx *m)
{
	return m->mime->parts[0].charset;
}

/* The share of upper case letters in the body lines with words (0 when
 * under 200 octets or in a charset likely to look like capitals) */
static double uppercase_pct(struct msgctx *m)
{
	/* charsets likely to look like capitals: CJK ones */
	static const char *const fp[] = {
		"iso-2022-jp",	  "iso-2022-kr", "euc-kr",	"euc-jp",      "shift_jis",
		"sjis",		  "big5",	 "gb2312",	"gbk",	       "gb18030",
		"ks_c_5601-1987", "cp949",	 "windows-949", "iso-2022-cn", NULL};
	const char *cs = ct_charset(m);
	for (const char *const *f = fp; *f; f++)
		if (*cs && strcasecmp(cs, *f) == 0)
			return 0;
	size_t len = 0, lower = 0, upper = 0;
	for (size_t i = 0; i < m->nlines; i++) {
		const char *s = m->lines[i];
		size_t n = m->lens[i];
		/* next unless /\S\s+\S/ */
		bool ok = false;
		for (size_t k = 1; k + 1 < n && !ok; k++)
			if (isspace((unsigned char)s[k]) && !isspace((unsigned char)s[k - 1])) {
				size_t j = k;
				while (j < n && isspace((unsigned char)s[j]))
					j++;
				ok = j < n;
			}
		if (!ok || base64_words(s, n))
			continue;
		len += n;
		/* islower, isdigit and isupper of the C locale, as ranges:
		 * no call a character */
		const unsigned char *u = (const unsigned char *)s;
		size_t lo = 0, up = 0;
		for (size_t k = 0; k < n; k++) {
			lo += ((unsigned char)(u[k] - 'a') < 26) | ((unsigned char)(u[k] - '0') < 10);
			up += (unsigned char)(u[k] - 'A') < 26;
		}
		lower += lo;
		upper += up;
	}
	if (len < 200 || upper + lower == 0)
		return 0;
	return 100.0 * (double)upper / (double)(upper + lower);
}

/* check_for_uppercase(min, max) */
static int ev_uppercase(struct msgctx *m, const struct rule *r)
{
	if (!m->ev.upper_done) {
		m->ev.upper = uppercase_pct(m);
		m->ev.upper_done = true;
	}
	double pct = m->ev.upper;
	return pct > 0 && pct > atof(eval_arg(r, 0)) && pct <= atof(eval_arg(r, 1));
}

/* ---- MIMEEval's per-part statistics (_check_attachments) ---- */

struct mimestats {
	int ascii_illegal;
	double unicode_ratio, multipart_ratio;
	size_t base64_len;
};

static size_t count_unicode_entities(const char *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i + 8 <= n; i++)
		if (s[i] == '&' && s[i + 1] == '#' && s[i + 2] == 'x' && isxdigit((unsigned char)s[i + 3]) &&
		    !islower((unsigned char)s[i + 3]) && isxdigit((unsigned char)s[i + 4]) &&
		    !islower((unsigned char)s[i + 4]) && isxdigit((unsigned char)s[i + 5]) &&
		    !islower((unsigned char)s[i + 5]) && isxdigit((unsigned char)s[i + 6]) &&
		    !islower((unsigned char)s[i + 6]) && s[i + 7] == ';') {
			c++;
			i += 7;
		}
	return c;
}

static bool part_disposition_attachment(const struct sift_mime_part *p)
{
	for (size_t k = 0; k < p->header_count; k++)
		if (strcasecmp(p->headers[k].name, "Content-Disposition") == 0)
			return strcasestr(p->headers[k].value, "attachment") != NULL;
	return false;
}

static void leaf_lines(const struct sift_mime_part *p, const char *type, bool alt, struct mimestats *ms,
		       size_t *normal, size_t *unicode, size_t *bytes)
{
	bool plain = strcmp(type, "text/plain") == 0;
	bool ascii = plain && (!*p->charset || strcmp(p->charset, "us-ascii") == 0);
	bool raw7 = plain && (strcmp(p->encoding, "7bit") == 0 || strcmp(p->encoding, "8bit") == 0);
	bool b64 = strstr(p->encoding, "base64") != NULL;
	bool count = alt && !part_disposition_attachment(p) && (plain || strcmp(type, "text/html") == 0);
	const char *s = (const char *)p->raw, *e = s + p->raw_len;
	while (s < e) {
		const char *nl = memchr(s, '\n', (size_t)(e - s));
		size_t l = (size_t)((nl ? nl + 1 : e) - s);
		/* SpamAssassin behind amavisd-new sees LF line ends, a milter
		 * CRLF ones: a CR before the LF is the line end, not part of
		 * the line, neither counted nor illegal (a bare CR still is). */
		size_t crlf = nl && l >= 2 && s[l - 2] == '\r';
		if (count)
			*bytes += l - crlf;
		if (ascii && !ms->ascii_illegal)
			for (size_t k = 0; k < l - 1 - crlf + !nl; k++) {
				unsigned char c = (unsigned char)s[k];
				if (c == 0 || c == '\r' || c >= 0x80) {
					ms->ascii_illegal = 1;
					break;
				}
			}
		if (raw7) {
			size_t sub = count_unicode_entities(s, l);
			*normal += l - crlf - sub * 8;
			*unicode += sub;
		}
		if (b64 && strcmp(type, "application/ics") != 0) {
			if (ms->base64_len < l - crlf) /* with its newline, as Perl's raw() lines */
				ms->base64_len = l - crlf;
		}
		s += l;
	}
}

static void mime_stats_compute(struct msgctx *m, struct mimestats *ms)
{
	const struct sift_mime *mm = m->mime;
	ms->multipart_ratio = 1.0;
	bool alt = false;
	size_t normal = 0, unicode = 0;
	long last_text = -1, last_html = -1;
	size_t text_bytes = 0, html_bytes = 0;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (strcmp(p->type, "multipart/alternative") == 0)
			alt = true;
		if (!is_leaf(mm, i))
			continue;
		size_t bytes = 0;
		leaf_lines(p, p->type, alt, ms, &normal, &unicode, &bytes);
		if (!part_disposition_attachment(p)) {
			if (strcmp(p->type, "text/html") == 0) {
				last_html = (long)i;
				html_bytes = bytes;
			} else if (strcmp(p->type, "text/plain") == 0) {
				last_text = (long)i;
				text_bytes = bytes;
			}
		}
	}
	if (normal)
		ms->unicode_ratio = (double)unicode / (double)normal;
	if (alt && last_text >= 0 && last_html >= 0 && html_bytes > 0)
		ms->multipart_ratio = (double)text_bytes / (double)html_bytes;
}

/* the message's statistics, once */
static void mime_stats(struct msgctx *m, struct mimestats *ms)
{
	memset(ms, 0, sizeof(*ms));
	if (!m->ev.stats_done) {
		mime_stats_compute(m, ms);
		m->ev.stats_done = true;
		m->ev.ascii_illegal = ms->ascii_illegal;
		m->ev.unicode_ratio = ms->unicode_ratio;
		m->ev.multipart_ratio = ms->multipart_ratio;
		m->ev.base64_len = ms->base64_len;
		return;
	}
	ms->ascii_illegal = m->ev.ascii_illegal;
	ms->unicode_ratio = m->ev.unicode_ratio;
	ms->multipart_ratio = m->ev.multipart_ratio;
	ms->base64_len = m->ev.base64_len;
}

static int ev_mime_multipart_ratio(struct msgctx *m, const struct rule *r)
{
	struct mimestats ms;
	mime_stats(m, &ms);
	return ms.multipart_ratio >= atof(eval_arg(r, 0)) && ms.multipart_ratio < atof(eval_arg(r, 1));
}

static int ev_ascii_text_illegal(struct msgctx *m, const struct rule *r)
{
	struct mimestats ms;
	mime_stats(m, &ms);
	return ms.ascii_illegal > 0;
}

static int ev_abundant_unicode_ratio(struct msgctx *m, const struct rule *r)
{
	const char *ra = eval_arg(r, 0);
	if (!re_match_lit("^\\d{0,3}\\.\\d{1,3}$", ra))
		return 0;
	struct mimestats ms;
	mime_stats(m, &ms);
	return ms.unicode_ratio >= atof(ra);
}

static int ev_base64_length(struct msgctx *m, const struct rule *r)
{
	struct mimestats ms;
	mime_stats(m, &ms);
	if (r->neval > 1 && (double)ms.base64_len > atof(eval_arg(r, 1)))
		return 0;
	return (double)ms.base64_len >= atof(eval_arg(r, 0));
}

/* check_ma_non_text: a multipart/alternative with a child part that is
 * neither text/..., multipart/related nor application/rtf */
static int ev_ma_non_text(struct msgctx *m, const struct rule *r)
{
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; i < mm->part_count; i++) {
		if (strcmp(mm->parts[i].type, "multipart/alternative") != 0)
			continue;
		size_t end = subtree_end(mm, i);
		for (size_t k = i + 1; k < end; k++) {
			const struct sift_mime_part *p = &mm->parts[k];
			if (p->depth != mm->parts[i].depth + 1)
				continue;
			if (strcmp(p->type, "multipart/related") == 0 ||
			    strcmp(p->type, "application/rtf") == 0 || strncmp(p->type, "text/", 5) == 0)
				continue;
			return 1;
		}
	}
	return 0;
}

/* ---- ImageInfo: pixel_coverage, image_to_text_ratio ---- */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Width x height of a decoded image as SpamAssassin's ImageInfo reads it
 * (0 when it finds none): GIF's logical screen, PNG's IHDR (looked for
 * at 8-octet steps, as ImageInfo does), JPEG's first start-of-frame. */
unsigned long long spam_image_area(int kind, const unsigned char *d, size_t n)
{
	unsigned long long w = 0, h = 0;
	if (kind == IMG_GIF) {
		if (n >= 10 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) {
			w = d[6] | (unsigned)d[7] << 8;
			h = d[8] | (unsigned)d[9] << 8;
		}
	} else if (kind == IMG_PNG) {
		if (n < 8 || memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0)
			return 0;
		for (size_t pos = 8; pos + 8 <= n; pos += 8) {
			uint32_t len = be32(d + pos);
			if (memcmp(d + pos + 4, "IEND", 4) == 0)
				break;
			if (memcmp(d + pos + 4, "IHDR", 4) == 0 && len == 13) {
				if (pos + 16 <= n) {
					w = be32(d + pos + 8);
					h = be32(d + pos + 12);
				}
				break;
			}
		}
	} else if (kind == IMG_JPEG) {
		if (n < 2 || d[0] != 0xFF || d[1] != 0xD8)
			return 0;
		size_t pos = 2;
		while (pos + 4 <= n) {
			unsigned mark = d[pos + 1], len = (unsigned)d[pos + 2] << 8 | d[pos + 3];
			if (d[pos] != 0xFF || mark == 0xDA || mark == 0xD9 || len < 2)
				break;
			pos += 4;
			size_t blen = len - 2 <= n - pos ? len - 2 : n - pos;
			if ((mark >= 0xC0 && mark <= 0xC3) || (mark >= 0xC5 && mark <= 0xC7) ||
			    (mark >= 0xC9 && mark <= 0xCB) || (mark >= 0xCD && mark <= 0xCF)) {
				if (blen >= 5) {
					h = (unsigned)d[pos + 1] << 8 | d[pos + 2];
					w = (unsigned)d[pos + 3] << 8 | d[pos + 4];
				}
				break;
			}
			pos += blen;
		}
	}
	return w && h ? w * h : 0;
}

/* The pixel area of the message's base64 image/gif, png, jpeg (jpg)
 * leaves, by kind and in all, once per message. */
static const unsigned long long *image_areas(struct msgctx *m)
{
	if (m->ev.img_done)
		return m->ev.img_area;
	m->ev.img_done = true;
	const struct sift_mime *mm = m->mime;
	for (size_t i = 0; i < mm->part_count; i++) {
		const struct sift_mime_part *p = &mm->parts[i];
		if (!is_leaf(mm, i) || strcmp(p->encoding, "base64") != 0 ||
		    strncmp(p->type, "image/", 6) != 0)
			continue;
		const char *t = p->type + 6;
		int kind = strcmp(t, "gif") == 0			     ? IMG_GIF
			   : strcmp(t, "png") == 0			     ? IMG_PNG
			   : strcmp(t, "jpeg") == 0 || strcmp(t, "jpg") == 0 ? IMG_JPEG
									     : -1;
		if (kind < 0)
			continue;
		unsigned long long a = spam_image_area(kind, p->data, p->data_len);
		m->ev.img_area[kind] += a;
		m->ev.img_area[IMG_ALL] += a;
	}
	return m->ev.img_area;
}

static int image_kind(const char *t)
{
	return strcmp(t, "all") == 0	? IMG_ALL
	       : strcmp(t, "gif") == 0	? IMG_GIF
	       : strcmp(t, "png") == 0	? IMG_PNG
	       : strcmp(t, "jpeg") == 0 ? IMG_JPEG
					: -1;
}

/* ImageInfo's result_check: min <= v (<= max, < max with nomaxequal) */
static int in_range(const struct rule *r, int imin, double v, bool nomaxequal)
{
	if (v < atof(eval_arg(r, imin)))
		return 0;
	if (r->neval > imin + 1) {
		double mx = atof(eval_arg(r, imin + 1));
		if (v > mx || (nomaxequal && v == mx))
			return 0;
	}
	return 1;
}

/* pixel_coverage(type, min[, max]): the images' area in pixels */
static int ev_pixel_coverage(struct msgctx *m, const struct rule *r)
{
	int k = image_kind(eval_arg(r, 0));
	if (k < 0 || r->neval < 2)
		return 0;
	return in_range(r, 1, (double)image_areas(m)[k], false);
}

/* image_to_text_ratio(type, min, max): the length of the texts a rule of
 * its kind sees (body: the rendered text with the Subject line; rawbody:
 * the decoded text parts) per pixel of image */
static int ev_image_to_text_ratio(struct msgctx *m, const struct rule *r)
{
	int k = image_kind(eval_arg(r, 0));
	if (k < 0 || r->neval < 3)
		return 0;
	unsigned long long area = image_areas(m)[k];
	size_t len = 0;
	if (r->type == R_RAWBODY) {
		if (!m->raws)
			build_raw(m);
		for (size_t i = 0; i < m->nraws; i++)
			len += m->rawlens[i];
	} else {
		if (!m->lines)
			build_body(m);
		for (size_t i = 0; i < m->nlines; i++)
			len += m->lens[i];
	}
	if (!len || !area)
		return 0;
	return in_range(r, 1, (double)len / (double)area, true);
}

/* the faraway charset tests: SpamAssassin returns 0 when ok_locales is
 * "all" (its default; Sift has no ok_locales setting) */
static int ev_faraway(struct msgctx *m, const struct rule *r)
{
	return 0;
}

const struct evaldef evals_mime[] = {
	{"multipart_alternative_difference", ev_madiff},
	{"multipart_alternative_difference_count", ev_madiff_count},
	{"check_blank_line_ratio", ev_blank_line_ratio},
	{"tvd_vertical_words", ev_tvd_vertical_words},
	{"check_for_uppercase", ev_uppercase},
	{"check_mime_multipart_ratio", ev_mime_multipart_ratio},
	{"check_for_ascii_text_illegal", ev_ascii_text_illegal},
	{"check_abundant_unicode_ratio", ev_abundant_unicode_ratio},
	{"check_base64_length", ev_base64_length},
	{"check_ma_non_text", ev_ma_non_text},
	{"check_for_faraway_charset", ev_faraway},
	{"check_for_faraway_charset_in_headers", ev_faraway},
	{"html_charset_faraway", ev_faraway},
	{"pixel_coverage", ev_pixel_coverage},
	{"image_to_text_ratio", ev_image_to_text_ratio},
	{NULL, NULL},
};
