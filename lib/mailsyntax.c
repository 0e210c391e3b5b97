/*
 * lib/mailsyntax.c - mail header syntax (see mailsyntax.h): the RFC 5322
 * address-list parser, the RFC 2047 decoder and the charset and transfer
 * decodings they share with lib/mime.c.
 *
 * Why our own code: the parse runs on every message in the milter's hot
 * path, on hostile input, and every consumer (senderlogin's ownership
 * check, DKIM's signing domain, the spam rules' From:addr) must see the
 * same structure; each loop here is bounded by the limits in mailsyntax.h.
 * Charset conversion uses glibc's iconv (fast paths for ASCII, UTF-8 and
 * Windows-1252 avoid it for most mail), with SpamAssassin's choices of
 * charset (sift_body_to_utf8, sift_word_to_utf8).
 */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailsyntax.h"
#include "sift.h"

/* ---- UTF-8 helpers -------------------------------------------------------- */

void sift_put_utf8(struct sift_buf *b, unsigned long cp)
{
	char o[4];
	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		cp = 0xfffd;
	if (cp < 0x80) {
		o[0] = (char)cp;
		sift_buf_add(b, o, 1);
	} else if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		sift_buf_add(b, o, 2);
	} else if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		sift_buf_add(b, o, 3);
	} else {
		o[0] = (char)(0xf0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[3] = (char)(0x80 | (cp & 0x3f));
		sift_buf_add(b, o, 4);
	}
}

/* Length of the valid UTF-8 sequence at s (1..4) or 0. */
size_t sift_utf8_seq(const unsigned char *s, size_t n)
{
	if (s[0] < 0x80)
		return 1;
	size_t len;
	unsigned long cp;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* The number of ASCII octets s starts with, eight at a time: most text
 * is ASCII, and needs no look at its sequences. */
static size_t ascii_prefix(const unsigned char *s, size_t n)
{
	size_t i = 0;
	for (; n - i >= 8; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080ull)
			break;
	}
	while (i < n && s[i] < 0x80)
		i++;
	return i;
}

size_t sift_utf8_chars(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, cont = 0;
	for (; n - i >= 8; i += 8) {
		uint64_t w;
		memcpy(&w, u + i, 8);
		/* bit 7 of each octet 10xxxxxx, then their number */
		uint64_t c = w & ~(w << 1) & 0x8080808080808080ull;
		cont += (size_t)(((c >> 7) * 0x0101010101010101ull) >> 56);
	}
	for (; i < n; i++)
		cont += (u[i] & 0xc0) == 0x80;
	return n - cont;
}

bool sift_is_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		i += ascii_prefix(s + i, n - i);
		if (i == n)
			break;
		size_t l = sift_utf8_seq(s + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

/* Appends s as UTF-8: valid sequences kept, other octets taken as
 * Latin-1. Returns false if any octet was not valid UTF-8. */
bool sift_add_utf8_or_latin1(struct sift_buf *b, const unsigned char *s, size_t n)
{
	bool ok = true;
	size_t start = 0;
	for (size_t i = 0; i < n;) {
		i += ascii_prefix(s + i, n - i);
		if (i == n)
			break;
		size_t l = sift_utf8_seq(s + i, n - i);
		if (l) {
			i += l;
			continue;
		}
		sift_buf_add(b, s + start, i - start);
		sift_put_utf8(b, s[i]);
		ok = false;
		i++;
		start = i;
	}
	sift_buf_add(b, s + start, n - start);
	return ok;
}

static bool cs_is(const char *cs, const char *a)
{
	return strcasecmp(cs, a) == 0;
}

/* Converts s from charset cs with iconv, appended to b: 1 done, -1 the
 * charset is unknown (nothing appended), 0 octets were invalid in it (then
 * strict: nothing appended; else each invalid octet is U+FFFD). */
static int iconv_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n, bool strict)
{
	char csname[64];
	snprintf(csname, sizeof(csname), "%s", cs);
	if (strcasecmp(csname, "ks_c_5601-1987") == 0)
		snprintf(csname, sizeof(csname), "CP949");
	iconv_t cd = iconv_open("UTF-8", csname);
	if (cd == (iconv_t)-1)
		return -1;
	bool ok = true;
	char *in = (char *)s;
	size_t inleft = n;
	char out[4096];
	struct sift_buf u = {0};
	while (inleft > 0) {
		char *op = out;
		size_t oleft = sizeof(out);
		size_t r = iconv(cd, &in, &inleft, &op, &oleft);
		sift_buf_add(&u, out, (size_t)(op - out));
		if (r == (size_t)-1) {
			if (errno == E2BIG)
				continue;
			/* EILSEQ or EINVAL: skip one octet */
			ok = false;
			if (strict)
				break;
			sift_put_utf8(&u, 0xfffd);
			in++;
			inleft--;
			iconv(cd, NULL, NULL, NULL, NULL);
		}
	}
	iconv_close(cd);
	/* iconv may pass through what its UTF-8 allows and ours does not
	 * (5- and 6-octet forms): each invalid octet becomes U+FFFD. */
	const unsigned char *us = (const unsigned char *)u.data;
	if (strict && ok && !sift_is_utf8(us, u.len))
		ok = false;
	if (strict && !ok) {
		sift_buf_free(&u);
		return 0;
	}
	for (size_t i = 0; i < u.len;) {
		size_t l = sift_utf8_seq(us + i, u.len - i);
		if (l) {
			sift_buf_add(b, us + i, l);
			i += l;
		} else {
			sift_put_utf8(b, 0xfffd);
			ok = false;
			i++;
		}
	}
	sift_buf_free(&u);
	return ok ? 1 : 0;
}

/* Converts n octets in charset cs to UTF-8, appended to b. Returns false if
 * the charset is unknown or octets were invalid (converted best effort). */
bool sift_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n)
{
	if (!cs || !*cs || cs_is(cs, "us-ascii") || cs_is(cs, "utf-8") || cs_is(cs, "utf8") ||
	    cs_is(cs, "ascii") || cs_is(cs, "unknown-8bit") || cs_is(cs, "x-unknown")) {
		bool ok = sift_add_utf8_or_latin1(b, s, n);
		return ok || !*cs || !(cs_is(cs, "utf-8") || cs_is(cs, "utf8"));
	}
	if (cs_is(cs, "iso-8859-1") || cs_is(cs, "latin1") || cs_is(cs, "iso8859-1") ||
	    cs_is(cs, "iso_8859-1")) {
		for (size_t i = 0; i < n; i++) {
			if (s[i] < 0x80) {
				size_t j = i;
				while (j < n && s[j] < 0x80)
					j++;
				sift_buf_add(b, s + i, j - i);
				i = j - 1;
			} else
				sift_put_utf8(b, s[i]);
		}
		return true;
	}
	if (sift_is_utf8(s, n)) {
		/* pure ASCII (or already UTF-8): nothing to convert for
		 * ASCII-compatible charsets */
		bool ascii = true;
		for (size_t i = 0; i < n && ascii; i++)
			if (s[i] >= 0x80)
				ascii = false;
		if (ascii && !(strncasecmp(cs, "utf-16", 6) == 0 || strncasecmp(cs, "utf-32", 6) == 0 ||
			       strncasecmp(cs, "ucs", 3) == 0 || strncasecmp(cs, "utf-7", 5) == 0 ||
			       strncasecmp(cs, "iso-2022", 8) == 0)) {
			sift_buf_add(b, s, n);
			return true;
		}
	}
	int r = iconv_to_utf8(b, cs, s, n, false);
	if (r < 0)
		sift_add_utf8_or_latin1(b, s, n);
	return r > 0;
}

/* Windows-1252's 0x80-0x9f; 0 for the five octets it leaves undefined
 * (U+FFFD, as Perl's Encode decodes them). */
static const unsigned short cp1252_c1[32] = {
	0x20ac, 0,	0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
	0x2039, 0x0152, 0,	0x017d, 0,	0,	0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
	0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,	0x017e, 0x0178,
};

bool sift_add_cp1252(struct sift_buf *b, const unsigned char *s, size_t n)
{
	bool ok = true;
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x80)
			continue;
		sift_buf_add(b, s + start, i - start);
		unsigned long cp = s[i] >= 0xa0 ? s[i] : cp1252_c1[s[i] - 0x80];
		if (!cp) {
			cp = 0xfffd;
			ok = false;
		}
		sift_put_utf8(b, cp);
		start = i + 1;
	}
	sift_buf_add(b, s + start, n - start);
	return ok;
}

static bool has_8bit(const unsigned char *s, size_t n)
{
	return ascii_prefix(s, n) < n;
}

/* The charsets SpamAssassin's Node::_normalize names: US-ASCII
 * (/^(?:US-)?ASCII\z/i), UTF-8 (/^UTF-?8\z/i), and the ones it decodes as
 * Windows-1252 (/^(?:ISO-?8859-1|Windows-1252|CP1252)\z/i: a declared
 * ISO-8859-1 is nearly always Windows-1252, its 0x80-0x9f smart quotes
 * and euro sign; "latin1" and "iso_8859-1" are not in that list, Perl's
 * Encode reads them as ISO-8859-1 proper). */
static bool cs_ascii(const char *cs)
{
	return cs_is(cs, "us-ascii") || cs_is(cs, "ascii");
}

static bool cs_utf8(const char *cs)
{
	return cs_is(cs, "utf-8") || cs_is(cs, "utf8");
}

static bool cs_w1252(const char *cs)
{
	return cs_is(cs, "iso-8859-1") || cs_is(cs, "iso8859-1") || cs_is(cs, "windows-1252") ||
	       cs_is(cs, "cp1252");
}

/* A text part's charset, as SpamAssassin 4 reads it (Node::_normalize,
 * normalize_charset on, without Encode::Detect::Detector): text with 8-bit
 * octets that is valid UTF-8 is UTF-8, whatever is declared (mislabelled
 * UTF-8 is common); otherwise the declared charset if the text is valid in
 * it (ISO-8859-1 read as Windows-1252); otherwise (undeclared, US-ASCII,
 * UTF-8, an unknown charset, or octets invalid in the declared one) the
 * whole text is Windows-1252. 7-bit text is converted as sift_to_utf8
 * does. */
bool sift_body_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n)
{
	if (!cs)
		cs = "";
	if (!has_8bit(s, n))
		return sift_to_utf8(b, cs, s, n);
	if (sift_is_utf8(s, n)) {
		sift_buf_add(b, s, n);
		return true;
	}
	if (!*cs || cs_ascii(cs) || cs_w1252(cs))
		return sift_add_cp1252(b, s, n) || !cs_w1252(cs);
	if (!cs_utf8(cs) && iconv_to_utf8(b, cs, s, n, true) > 0)
		return true;
	sift_add_cp1252(b, s, n);
	return false;
}

/* An RFC 2047 word's octets (B or Q decoded) to UTF-8, as SpamAssassin
 * converts them (_normalize insisting on the declared charset): no UTF-8
 * guess; US-ASCII and UTF-8 as declared, an invalid octet or sequence
 * becoming U+FFFD; ISO-8859-1 as Windows-1252; another known charset with
 * U+FFFD for what is invalid in it; an unknown one as Windows-1252. */
bool sift_word_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n)
{
	if (!has_8bit(s, n))
		return sift_to_utf8(b, cs, s, n);
	if (cs_w1252(cs))
		return sift_add_cp1252(b, s, n);
	bool ascii = cs_ascii(cs);
	if (ascii || cs_utf8(cs)) {
		bool ok = true;
		for (size_t i = 0; i < n;) {
			size_t l = ascii ? (s[i] < 0x80) : sift_utf8_seq(s + i, n - i);
			if (l) {
				sift_buf_add(b, s + i, l);
				i += l;
				continue;
			}
			/* one U+FFFD for a lead octet and the continuation
			 * octets after it (Perl's Encode), one for each other */
			size_t want = ascii		      ? 1
				      : (s[i] & 0xe0) == 0xc0 ? 2
				      : (s[i] & 0xf0) == 0xe0 ? 3
				      : (s[i] & 0xf8) == 0xf0 ? 4
							      : 1;
			size_t k = i + 1;
			while (k < n && k < i + want && (s[k] & 0xc0) == 0x80)
				k++;
			sift_put_utf8(b, 0xfffd);
			ok = false;
			i = k;
		}
		return ok;
	}
	int r = iconv_to_utf8(b, cs, s, n, false);
	if (r < 0)
		sift_add_cp1252(b, s, n);
	return r > 0;
}

/* ---- transfer decodings ---------------------------------------------------- */

/* base64 alphabet value of an octet, -1 for anything else */
static const signed char b64tab[256] = {
	['A'] = 0,  ['B'] = 1,	['C'] = 2,  ['D'] = 3,	['E'] = 4,  ['F'] = 5,	['G'] = 6,  ['H'] = 7,
	['I'] = 8,  ['J'] = 9,	['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15,
	['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
	['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31,
	['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39,
	['o'] = 40, ['p'] = 41, ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
	['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
	['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['+'] = 62, ['/'] = 63,
};

static int b64val(unsigned char c)
{
	/* the table's zeros are 'A' only: every other octet maps to -1 */
	return b64tab[c] || c == 'A' ? b64tab[c] : -1;
}

/* Tolerant base64: skips white space and junk (flagged). A '=' ends the
 * group of four it pads (the bits short of an octet dropped) and decoding
 * goes on after it, as SpamAssassin and mail clients read a body made of
 * separately padded pieces: stopping there would let a short first piece
 * hide the rest of the part from every rule. Whole groups of four
 * alphabet octets on a group boundary (nearly all of a well-formed body)
 * are decoded at once. */
void sift_b64_decode(struct sift_buf *out, const unsigned char *s, size_t n, bool *bad)
{
	unsigned long acc = 0;
	int bits = 0;
	unsigned char tmp[3072];
	size_t t = 0;
	for (size_t i = 0; i < n; i++) {
		if (bits == 0 && i + 4 <= n && t + 3 <= sizeof(tmp)) {
			int a = b64val(s[i]), b = b64val(s[i + 1]), c = b64val(s[i + 2]),
			    d = b64val(s[i + 3]);
			if ((a | b | c | d) >= 0 && s[i] != '=') {
				unsigned long v = (unsigned long)a << 18 | (unsigned long)b << 12 |
						  (unsigned long)c << 6 | (unsigned long)d;
				tmp[t++] = (unsigned char)(v >> 16);
				tmp[t++] = (unsigned char)(v >> 8);
				tmp[t++] = (unsigned char)v;
				i += 3;
				if (t == sizeof(tmp)) {
					sift_buf_add(out, tmp, t);
					t = 0;
				}
				continue;
			}
		}
		unsigned char c = s[i];
		if (c == '=') {
			if (bits >= 6) /* one character of a group: no octet */
				*bad = true;
			bits = 0;
			acc = 0;
			continue;
		}
		int v = b64val(c);
		if (v < 0) {
			if (c != '\r' && c != '\n' && c != ' ' && c != '\t')
				*bad = true;
			continue;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			tmp[t++] = (unsigned char)(acc >> bits);
			if (t == sizeof(tmp)) {
				sift_buf_add(out, tmp, t);
				t = 0;
			}
		}
	}
	if (bits >= 6)
		*bad = true;
	sift_buf_add(out, tmp, t);
}

int sift_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Quoted-printable; hdr: '_' is a space (RFC 2047 Q). */
void sift_qp_decode(struct sift_buf *out, const unsigned char *s, size_t n, bool hdr, bool *bad)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (!hdr && (c == ' ' || c == '\t')) {
			/* RFC 2045 6.7 (and SpamAssassin's qp_decode): white
			 * space at the end of a body line is transport padding,
			 * deleted */
			size_t j = i;
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j < n && (s[j] == '\n' || (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n'))) {
				sift_buf_add(out, s + start, i - start);
				start = j;
			}
			i = j - 1;
			continue;
		}
		if (c != '=' && !(hdr && c == '_'))
			continue;
		sift_buf_add(out, s + start, i - start);
		if (c == '_') {
			sift_buf_add(out, " ", 1);
			start = i + 1;
			continue;
		}
		if (i + 2 < n && sift_hexval(s[i + 1]) >= 0 && sift_hexval(s[i + 2]) >= 0) {
			unsigned char v = (unsigned char)(sift_hexval(s[i + 1]) * 16 + sift_hexval(s[i + 2]));
			sift_buf_add(out, &v, 1);
			i += 2;
		} else {
			/* soft line break: "=" then optional white space then EOL */
			size_t j = i + 1;
			while (j < n && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j < n && s[j] == '\r')
				j++;
			if (j < n && s[j] == '\n') {
				i = j;
			} else if (j >= n) {
				i = n - 1;
			} else {
				*bad = true;
				sift_buf_add(out, "=", 1);
			}
		}
		start = i + 1;
	}
	if (start < n)
		sift_buf_add(out, s + start, n - start);
}

/* ---- headers --------------------------------------------------------------- */

/* Converts the octets of the adjacent encoded words in w (B/Q-decoded,
 * in charset cs), if *pending, to UTF-8 into o, and empties w.
 * SpamAssassin's _decode_header (bugs 7249, 7307) merges adjacent words of
 * one charset before converting: RFC 2047 section 5 forbids splitting a
 * multi-octet character across words, but mail does it, and a character
 * split (or a stateful charset such as ISO-2022-JP) converted word by word
 * becomes mojibake. */
static void flush_word(struct sift_buf *o, struct sift_buf *w, char *cs, bool *pending, unsigned *flags)
{
	if (!*pending)
		return;
	*pending = false;
	char *star = strchr(cs, '*'); /* RFC 2231 language */
	if (star)
		*star = 0;
	if (!sift_word_to_utf8(o, cs, (const unsigned char *)(w->data ? w->data : ""), w->len))
		*flags |= SIFT_MIME_F_BAD_CHARSET;
	cs[0] = 0;
	w->len = 0;
}

bool sift_header_has_words(const char *name)
{
	static const char *const none[] = {"Received",	 "Message-ID",	"Resent-Message-ID",
					   "Date",	 "Resent-Date", "MIME-Version",
					   "References", "In-Reply-To", NULL};
	for (const char *const *k = none; *k; k++)
		if (strcasecmp(name, *k) == 0)
			return false;
	return strncasecmp(name, "List-", 5) != 0;
}

/* Unfolds (drops CR and LF), decodes RFC 2047 words (when words) and 8-bit
 * octets into UTF-8, trims; at most maxlen input bytes. */
void sift_header_decode_into(struct sift_buf *o, const char *v, size_t n, size_t maxlen, bool words,
			     unsigned *flags)
{
	if (n > maxlen) {
		n = maxlen;
		*flags |= SIFT_MIME_F_TRUNCATED;
	}
	/* unfold: a line break and the white space after it become one space
	 * (as SpamAssassin and most MUAs show folded headers) */
	struct sift_buf u = {0};
	for (size_t i = 0; i < n; i++) {
		if (v[i] == '\r' || v[i] == '\n') {
			size_t j = i;
			while (j < n && (v[j] == '\r' || v[j] == '\n'))
				j++;
			if (j < n && (v[j] == ' ' || v[j] == '\t')) {
				while (j < n && (v[j] == ' ' || v[j] == '\t'))
					j++;
				sift_buf_add(&u, " ", 1);
			}
			i = j - 1;
			continue;
		}
		size_t e = i + 1;
		while (e < n && v[e] != '\r' && v[e] != '\n')
			e++;
		sift_buf_add(&u, v + i, e - i);
		i = e - 1;
	}
	const unsigned char *s = (const unsigned char *)(u.data ? u.data : "");
	size_t len = u.len, i = 0;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	while (i < len && (s[i] == ' ' || s[i] == '\t'))
		i++;
	/* raw 8-bit octets (RFC 6532 allows UTF-8 only): the value is kept
	 * when it is valid UTF-8, else the whole value is read as
	 * Windows-1252, as SpamAssassin's _decode_header reads it
	 * (_normalize(value, 'UTF-8'): no UTF-8, so its Windows-1252 guess) */
	bool raw_utf8 = sift_is_utf8(s + i, len - i);
	size_t pend_ws = 0, pend_start = 0; /* white space after an encoded word */
	bool last_encoded = false;
	struct sift_buf tmp = {0}; /* the B/Q-decoded octets of adjacent words */
	char word_cs[64] = "";	   /* their charset */
	bool pending = false;
	while (i < len) {
		if (words && s[i] == '=' && i + 1 < len && s[i + 1] == '?') {
			/* =?charset?E?text?= */
			const unsigned char *cs = s + i + 2;
			const unsigned char *q1 = memchr(cs, '?', len - (size_t)(cs - s));
			if (q1 && q1 + 2 < s + len && q1[2] == '?') {
				unsigned char enc = (unsigned char)toupper(q1[1]);
				const unsigned char *txt = q1 + 3;
				/* the encoded text holds no '?' (RFC 2047 section 5, as
				 * SpamAssassin reads it): it ends at the next '?', which
				 * must be followed by '='; the search never goes past the
				 * next encoded word's start, so a value full of unclosed
				 * words costs a single pass */
				const unsigned char *end = memchr(txt, '?', len - (size_t)(txt - s));
				if (end && !(end + 1 < s + len && end[1] == '='))
					end = NULL;
				if (end && (enc == 'B' || enc == 'Q')) {
					char csn[64];
					size_t cl = (size_t)(q1 - cs);
					if (cl >= sizeof(csn))
						cl = sizeof(csn) - 1;
					memcpy(csn, cs, cl);
					csn[cl] = 0;
					/* the white space between two encoded words
					 * is dropped (RFC 2047 section 6.2); a word in
					 * the charset of the word before it (as
					 * written, language included) adds its octets
					 * to that word's */
					pend_ws = 0;
					if (!pending || strcasecmp(word_cs, csn) != 0) {
						flush_word(o, &tmp, word_cs, &pending, flags);
						memcpy(word_cs, csn, cl + 1);
						pending = true;
					}
					bool bad = false;
					if (enc == 'B')
						sift_b64_decode(&tmp, txt, (size_t)(end - txt), &bad);
					else
						sift_qp_decode(&tmp, txt, (size_t)(end - txt), true, &bad);
					i = (size_t)(end - s) + 2;
					last_encoded = true;
					continue;
				}
			}
		}
		if (s[i] == ' ' || s[i] == '\t') {
			size_t j = i;
			while (j < len && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (last_encoded) {
				pend_start = i;
				pend_ws = j - i;
			} else
				sift_buf_add(o, s + i, j - i);
			i = j;
			continue;
		}
		flush_word(o, &tmp, word_cs, &pending, flags);
		if (pend_ws) {
			sift_buf_add(o, s + pend_start, pend_ws);
			pend_ws = 0;
		}
		last_encoded = false;
		size_t j = i;
		while (j < len && s[j] != ' ' && s[j] != '\t' &&
		       !(s[j] == '=' && j + 1 < len && s[j + 1] == '?'))
			j++;
		if (j == i)
			j++;
		if (raw_utf8)
			sift_buf_add(o, s + i, j - i);
		else if (has_8bit(s + i, j - i)) {
			sift_add_cp1252(o, s + i, j - i);
			*flags |= SIFT_MIME_F_8BIT_HEADER;
		} else
			sift_buf_add(o, s + i, j - i);
		i = j;
	}
	flush_word(o, &tmp, word_cs, &pending, flags);
	sift_buf_free(&tmp);
	sift_buf_free(&u);
}

char *sift_header_decode(const char *value)
{
	struct sift_buf o = {0};
	unsigned flags = 0;
	sift_header_decode_into(&o, value, strlen(value), SIFT_ADDR_MAX_INPUT, true, &flags);
	char *r = sift_strdup(sift_buf_str(&o));
	sift_buf_free(&o);
	return r;
}

/* ---- the address-list parser ------------------------------------------------
 * Two passes: a tokenizer turns the value into atoms (atext and '.', 8-bit
 * octets as in RFC 6532), quoted strings, domain literals and specials,
 * dropping white space, folding and comments (nested up to
 * SIFT_ADDR_MAX_COMMENT deep); then a small recursive descent reads
 * address = mailbox / group, mailbox = name-addr / addr-spec, with the
 * obsolete forms mail clients send (phrases with dots, routes inside the
 * angle brackets, empty list elements) and leniencies where mail clients
 * and SpamAssassin read one structure: an unquoted '@' in a display name
 * ("bob@example.net" without the quotes) is part of the name, and a group
 * whose ';' is missing at the end of the value ends there. Everything else is refused with a reason, so
 * that every consumer sees one structure: an unbalanced bracket or quote,
 * text after an address, two addresses without a comma, a group inside a
 * group, a domain that is not a dot-atom or a literal, invalid UTF-8 in a
 * domain, a control character. Octets of a local part that are not UTF-8
 * (legacy 8-bit mail) are taken as Latin-1.
 */

enum tt { T_ATOM, T_QSTR, T_DLIT, T_SPECIAL };

struct tok {
	enum tt t;
	char c;	       /* T_SPECIAL */
	bool space;    /* white space or a comment before it */
	const char *s; /* T_ATOM/T_DLIT: raw text; T_QSTR: inside the quotes */
	size_t len;
	const char *cmt; /* the first comment after it (inside the parentheses) */
	size_t cmtlen;
};

struct lex {
	const char *p;
	struct tok *toks;
	int n, cap;
	const char *why;
};

static bool is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true; /* RFC 6532 UTF-8, checked where it matters */
	if (isalnum(c))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static bool is_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

/* Skips a comment at *p == '('; false when unterminated or too deep. */
static bool lex_comment(struct lex *x)
{
	int depth = 0;
	const char *p = x->p;
	do {
		if (*p == '\\' && p[1])
			p++;
		else if (*p == '(') {
			if (++depth > SIFT_ADDR_MAX_COMMENT) {
				x->why = "comments nested too deep";
				return false;
			}
		} else if (*p == ')')
			depth--;
		p++;
	} while (*p && depth > 0);
	if (depth > 0) {
		x->why = "unterminated comment";
		return false;
	}
	x->p = p;
	return true;
}

/* A quoted string (close == '"') or a domain literal (close == ']') at
 * x->p; t gets the inside (quoted string) or the whole (literal). */
static bool lex_delimited(struct lex *x, struct tok *t, char close)
{
	const char *start = x->p++;
	while (*x->p && *x->p != close) {
		unsigned char c = (unsigned char)*x->p;
		bool quoted = false;
		if (c == '\\') {
			if (!x->p[1])
				break;
			x->p++;
			c = (unsigned char)*x->p;
			quoted = true;
		}
		if (quoted && (c == '\r' || c == '\n')) { /* a line break is no character */
			x->why = "control character in quoted string";
			return false;
		}
		if (is_ctl(c) ||
		    (close == ']' && (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '['))) {
			x->why = close == ']' ? "bad domain literal" : "control character in quoted string";
			return false;
		}
		x->p++;
	}
	if (*x->p != close) {
		x->why = close == ']' ? "unterminated domain literal" : "unterminated quoted string";
		return false;
	}
	x->p++;
	if (close == '"') {
		t->t = T_QSTR;
		t->s = start + 1;
		t->len = (size_t)(x->p - start - 2);
	} else {
		t->t = T_DLIT;
		t->s = start;
		t->len = (size_t)(x->p - start);
	}
	return true;
}

static int tokenize(struct lex *x)
{
	bool space = false;
	while (*x->p) {
		unsigned char c = (unsigned char)*x->p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = true;
			x->p++;
			continue;
		}
		if (c == '(') {
			const char *start = x->p;
			if (!lex_comment(x))
				return -1;
			if (x->n && !x->toks[x->n - 1].cmt) {
				x->toks[x->n - 1].cmt = start + 1;
				x->toks[x->n - 1].cmtlen = (size_t)(x->p - start - 2);
			}
			space = true;
			continue;
		}
		if (x->n == x->cap) { /* SIFT_ADDR_MAX_TOKENS: a token takes an octet at least */
			x->why = "too many tokens";
			return -1;
		}
		struct tok *t = &x->toks[x->n++];
		t->space = space;
		t->cmt = NULL;
		t->cmtlen = 0;
		space = false;
		if (c == '"' || c == '[') {
			if (!lex_delimited(x, t, c == '"' ? '"' : ']'))
				return -1;
		} else if (is_atext(c)) {
			t->t = T_ATOM;
			t->s = x->p;
			while (*x->p && is_atext((unsigned char)*x->p))
				x->p++;
			t->len = (size_t)(x->p - t->s);
		} else if (strchr("<>@,;:\\)]", c)) {
			t->t = T_SPECIAL;
			t->c = (char)c;
			t->s = x->p++;
			t->len = 1;
		} else {
			x->why = "control character";
			return -1;
		}
	}
	return x->n;
}

static bool is_sp(const struct tok *t, char c)
{
	return t->t == T_SPECIAL && t->c == c;
}

/* One parsed mailbox before packing. */
struct mb_tmp {
	char *addr; /* local@domain, malloc'd */
	size_t local_len;
	char *display; /* malloc'd */
	char *comment; /* malloc'd */
};

struct parse {
	struct tok *toks;
	int nt;
	struct mb_tmp *mb;
	size_t count;
	const char *why;
};

/* Local part from toks[a..b): words (atoms, quoted strings) joined by dots;
 * unquoted, folding dropped. */
static bool local_part(struct parse *ps, int a, int b, struct sift_buf *o)
{
	for (int i = a; i < b; i++) {
		const struct tok *t = &ps->toks[i];
		if (t->t != T_ATOM && t->t != T_QSTR) {
			ps->why = is_sp(t, '@') ? "more than one @" : "bad local part";
			return false;
		}
		if (i > a) {
			const struct tok *p = &ps->toks[i - 1];
			bool dot = (p->t == T_ATOM && p->s[p->len - 1] == '.') ||
				   (t->t == T_ATOM && t->s[0] == '.');
			if (!dot) {
				ps->why = "words of a local part without a dot between them";
				return false;
			}
		}
		if (t->t == T_ATOM) {
			sift_buf_add(o, t->s, t->len);
			continue;
		}
		for (size_t k = 0; k < t->len; k++) {
			if (t->s[k] == '\\' && k + 1 < t->len)
				k++;
			else if (t->s[k] == '\r' || t->s[k] == '\n')
				continue; /* folding inside the quotes */
			sift_buf_add(o, t->s + k, 1);
		}
	}
	return true;
}

/* Domain from toks[a..b): one domain literal, or atoms forming a dot-atom
 * (labels not empty); lower-cased. */
static bool domain_part(struct parse *ps, int a, int b, struct sift_buf *o)
{
	size_t start = o->len;
	if (b - a == 1 && ps->toks[a].t == T_DLIT) {
		sift_buf_add(o, ps->toks[a].s, ps->toks[a].len);
	} else {
		for (int i = a; i < b; i++) {
			const struct tok *t = &ps->toks[i];
			if (t->t != T_ATOM) {
				ps->why = t->t == T_DLIT ? "bad domain literal" : "bad domain";
				return false;
			}
			if (i > a && ps->toks[i - 1].s[ps->toks[i - 1].len - 1] != '.' && t->s[0] != '.') {
				ps->why = "text after the domain";
				return false;
			}
			sift_buf_add(o, t->s, t->len);
		}
		const char *d = o->data + start;
		size_t dl = o->len - start;
		if (d[0] == '.' || d[dl - 1] == '.' || memmem(d, dl, "..", 2)) {
			ps->why = "empty label in the domain";
			return false;
		}
	}
	if (o->len - start > SIFT_ADDR_MAX_DOMAIN) {
		ps->why = "domain too long";
		return false;
	}
	for (size_t k = start; k < o->len; k++)
		o->data[k] = (char)tolower((unsigned char)o->data[k]);
	return true;
}

/* addr-spec from toks[a..b) into m->addr. */
static bool addr_spec(struct parse *ps, int a, int b, struct mb_tmp *m)
{
	int at = -1;
	for (int i = b - 1; i >= a && at < 0; i--)
		if (is_sp(&ps->toks[i], '@'))
			at = i;
	if (at < 0) {
		ps->why = "address without @";
		return false;
	}
	if (at == a || at == b - 1) {
		ps->why = "empty local part or domain";
		return false;
	}
	struct sift_buf o = {0};
	bool ok = local_part(ps, a, at, &o);
	if (ok && !sift_is_utf8((const unsigned char *)o.data, o.len)) {
		/* Legacy 8-bit local parts (not RFC 6532): their octets are
		 * taken as Latin-1, one code point each, so that the address
		 * gives its octets back (header text of undeclared 8-bit
		 * octets is read as Windows-1252, as SpamAssassin reads it,
		 * which leaves five octets without a character). */
		struct sift_buf u = {0};
		sift_add_utf8_or_latin1(&u, (const unsigned char *)o.data, o.len);
		sift_buf_free(&o);
		o = u;
	}
	size_t ll = o.len;
	if (ok && (ll == 0 || ll > SIFT_ADDR_MAX_LOCAL)) {
		ps->why = ll ? "local part too long" : "empty local part or domain";
		ok = false;
	}
	if (ok) {
		sift_buf_add(&o, "@", 1);
		ok = domain_part(ps, at + 1, b, &o);
	}
	if (ok && !sift_is_utf8((const unsigned char *)o.data + ll + 1, o.len - ll - 1)) {
		ps->why = "invalid UTF-8 in the domain";
		ok = false;
	}
	if (!ok) {
		sift_buf_free(&o);
		return false;
	}
	m->addr = sift_strndup(o.data, o.len);
	m->local_len = ll;
	sift_buf_free(&o);
	return true;
}

/* Appends quoted-string or comment text: quoted pairs unescaped, folding
 * dropped. */
static void add_unquoted(struct sift_buf *o, const char *s, size_t len)
{
	for (size_t k = 0; k < len; k++) {
		if (s[k] == '\\' && k + 1 < len)
			k++;
		else if (s[k] == '\r' || s[k] == '\n')
			continue;
		sift_buf_add(o, s + k, 1);
	}
}

/* Display name from the words toks[a..b): quoted strings unquoted, words
 * joined as written (one space where there was white space), then RFC 2047
 * decoded (leniently inside quoted strings too, as clients send). */
static char *display_name(const struct parse *ps, int a, int b)
{
	struct sift_buf o = {0};
	for (int i = a; i < b; i++) {
		const struct tok *t = &ps->toks[i];
		if (i > a && t->space)
			sift_buf_add(&o, " ", 1);
		if (t->t != T_QSTR)
			sift_buf_add(&o, t->s, t->len);
		else
			add_unquoted(&o, t->s, t->len);
	}
	char *r = sift_header_decode(sift_buf_str(&o));
	sift_buf_free(&o);
	return r;
}

/* An obsolete route "@a,@b:" in toks[a..b) (b is the ':'). */
static bool route(struct parse *ps, int a, int b)
{
	bool want_at = true;
	for (int i = a; i < b; i++) {
		const struct tok *t = &ps->toks[i];
		if (is_sp(t, ',')) {
			want_at = true;
			continue;
		}
		if (!want_at || !is_sp(t, '@') || i + 1 >= b ||
		    (ps->toks[i + 1].t != T_ATOM && ps->toks[i + 1].t != T_DLIT)) {
			ps->why = "bad route";
			return false;
		}
		i++;
		while (i + 1 < b && ps->toks[i + 1].t == T_ATOM)
			i++; /* "@a . example" */
		want_at = false;
	}
	return true;
}

/* One mailbox in toks[a..b) (no top-level ',' or ';' inside). */
static bool mailbox(struct parse *ps, int a, int b)
{
	if (ps->count == SIFT_ADDR_MAX_MBOXES) {
		ps->why = "too many addresses";
		return false;
	}
	struct mb_tmp *m = &ps->mb[ps->count];
	int lt = -1;
	for (int i = a; i < b && lt < 0; i++)
		if (is_sp(&ps->toks[i], '<'))
			lt = i;
	if (lt < 0) {
		for (int i = a; i < b; i++)
			if (ps->toks[i].t == T_SPECIAL && ps->toks[i].c != '@' && ps->toks[i].c != ',') {
				ps->why = ps->toks[i].c == '>' ? "bad angle address" : "bad address";
				return false;
			}
		if (!addr_spec(ps, a, b, m))
			return false;
		/* The old form "addr (Real Name)": the comment is kept apart. */
		const struct tok *last = &ps->toks[b - 1];
		if (last->cmt) {
			struct sift_buf o = {0};
			add_unquoted(&o, last->cmt, last->cmtlen);
			m->comment = sift_header_decode(sift_buf_str(&o));
			sift_buf_free(&o);
		} else
			m->comment = sift_strdup("");
		m->display = sift_strdup("");
		ps->count++;
		return true;
	}
	if (!is_sp(&ps->toks[b - 1], '>') || b - 1 == lt) {
		ps->why = !is_sp(&ps->toks[b - 1], '>') ? "bad angle address" : "address without @";
		return false;
	}
	for (int i = a; i < lt; i++)
		if (ps->toks[i].t == T_DLIT || (ps->toks[i].t == T_SPECIAL && ps->toks[i].c != '@')) {
			ps->why = "special character in display name";
			return false;
		}
	int s = lt + 1, e = b - 1, colon = -1;
	for (int i = s; i < e; i++) {
		const struct tok *t = &ps->toks[i];
		if (is_sp(t, '<') || is_sp(t, '>') || (is_sp(t, ':') && colon >= 0)) {
			ps->why = "bad angle address";
			return false;
		}
		if (is_sp(t, ':'))
			colon = i;
	}
	if (colon >= 0) {
		if (!route(ps, s, colon))
			return false;
		s = colon + 1;
	}
	for (int i = s; i < e; i++)
		if (ps->toks[i].t == T_SPECIAL && ps->toks[i].c != '@') {
			ps->why = "bad address";
			return false;
		}
	if (!addr_spec(ps, s, e, m))
		return false;
	m->display = display_name(ps, a, lt);
	m->comment = sift_strdup("");
	ps->count++;
	return true;
}

/* Where the address starting at toks[i] ends: the next ',' (or, in a
 * group, ';') outside angle brackets; *colon set when a ':' outside angle
 * brackets comes first (a group). */
static int extent(const struct parse *ps, int i, bool in_group, int *colon)
{
	bool in_angle = false;
	*colon = -1;
	for (; i < ps->nt; i++) {
		const struct tok *t = &ps->toks[i];
		if (t->t != T_SPECIAL)
			continue;
		if (t->c == '<')
			in_angle = true;
		else if (t->c == '>')
			in_angle = false;
		else if (in_angle)
			continue;
		else if (t->c == ',' || (in_group && t->c == ';'))
			break;
		else if (t->c == ':') {
			*colon = i;
			break;
		}
	}
	return i;
}

/* group = display-name ":" [mailbox-list] ";" from toks[i], the ':' at
 * colon. Returns the index after the ';' or -1. */
static int group(struct parse *ps, int i, int colon)
{
	if (colon == i) {
		ps->why = "group without a name";
		return -1;
	}
	for (int k = i; k < colon; k++)
		if (ps->toks[k].t != T_ATOM && ps->toks[k].t != T_QSTR) {
			ps->why = "bad group name";
			return -1;
		}
	int k = colon + 1;
	for (;;) {
		while (k < ps->nt && is_sp(&ps->toks[k], ','))
			k++;
		if (k >= ps->nt)
			return k; /* the ';' missing at the end: closed there */
		if (is_sp(&ps->toks[k], ';'))
			return k + 1;
		int c2;
		int e = extent(ps, k, true, &c2);
		if (c2 >= 0) {
			ps->why = "group inside a group";
			return -1;
		}
		if (!mailbox(ps, k, e))
			return -1;
		k = e;
	}
}

static bool address_list(struct parse *ps)
{
	int i = 0;
	while (i < ps->nt) {
		if (is_sp(&ps->toks[i], ',')) {
			i++; /* obsolete empty list element */
			continue;
		}
		int colon;
		int j = extent(ps, i, false, &colon);
		if (colon >= 0) {
			j = group(ps, i, colon);
			if (j < 0)
				return false;
			if (j < ps->nt && !is_sp(&ps->toks[j], ',')) {
				ps->why = "text after a group";
				return false;
			}
		} else if (!mailbox(ps, i, j))
			return false;
		i = j;
	}
	return true;
}

/* One block: the header, the mailboxes, then their strings. */
static struct sift_addrs *pack(const struct parse *ps)
{
	size_t size = sizeof(struct sift_addrs) + ps->count * sizeof(struct sift_mailbox);
	for (size_t i = 0; i < ps->count; i++)
		size += 2 * (strlen(ps->mb[i].addr) + 1) + strlen(ps->mb[i].display) + 1 +
			strlen(ps->mb[i].comment) + 1;
	struct sift_addrs *r = sift_calloc(1, size);
	char *p = (char *)&r->mb[ps->count];
	for (size_t i = 0; i < ps->count; i++) {
		const struct mb_tmp *m = &ps->mb[i];
		struct sift_mailbox *o = &r->mb[i];
		size_t al = strlen(m->addr);
		o->addr = memcpy(p, m->addr, al + 1);
		p += al + 1;
		o->local = memcpy(p, m->addr, al + 1);
		p[m->local_len] = 0;
		o->domain = p + m->local_len + 1;
		p += al + 1;
		size_t dl = strlen(m->display);
		o->display = memcpy(p, m->display, dl + 1);
		p += dl + 1;
		size_t cl = strlen(m->comment);
		o->comment = memcpy(p, m->comment, cl + 1);
		p += cl + 1;
	}
	r->count = ps->count;
	return r;
}

struct sift_addrs *sift_addrlist_parse(const char *value)
{
	struct parse ps = {0};
	struct lex x = {value ? value : "", NULL, 0, 0, NULL};
	size_t len = strlen(x.p);
	if (len > SIFT_ADDR_MAX_INPUT)
		ps.why = "header value too long";
	else {
		/* As many tokens as the value can hold, not the most any value
		 * can: a short From field does not take 100 KB (its malloc and
		 * free at the heap's top made glibc grow and shrink the heap,
		 * a system call and TLB flush, for each field parsed). */
		x.cap = len < SIFT_ADDR_MAX_TOKENS ? (int)len + 1 : SIFT_ADDR_MAX_TOKENS;
		x.toks = sift_malloc((size_t)x.cap * sizeof(*x.toks));
		ps.nt = tokenize(&x);
		ps.why = x.why;
	}
	if (ps.nt > 0) {
		ps.toks = x.toks;
		ps.mb = sift_malloc((size_t)ps.nt < SIFT_ADDR_MAX_MBOXES
					    ? (size_t)ps.nt * sizeof(*ps.mb)
					    : SIFT_ADDR_MAX_MBOXES * sizeof(*ps.mb));
		if (!address_list(&ps) && !ps.why)
			ps.why = "bad address list";
	}
	struct sift_addrs *r;
	if (ps.why) {
		r = sift_calloc(1, sizeof(*r));
		r->error = ps.why;
	} else
		r = pack(&ps);
	for (size_t i = 0; i < ps.count; i++) {
		free(ps.mb[i].addr);
		free(ps.mb[i].display);
		free(ps.mb[i].comment);
	}
	free(ps.mb);
	free(x.toks);
	return r;
}

size_t sift_header_name_len(const char *line, size_t len, size_t *colon)
{
	size_t n = 0;
	while (n < len && (unsigned char)line[n] > 32 && (unsigned char)line[n] < 127 && line[n] != ':')
		n++;
	size_t c = n;
	while (c < len && (line[c] == ' ' || line[c] == '\t'))
		c++;
	if (n == 0 || c >= len || line[c] != ':')
		return 0;
	*colon = c;
	return n;
}
