/*
 * addrparse.c - bounded RFC 5322 address-list parser (see addrparse.h).
 *
 * Two passes: a tokenizer turns the value into atoms (atext and '.', 8-bit
 * bytes allowed as in RFC 6532), quoted strings, domain literals and
 * specials, dropping white space, folding and comments (nested up to 32
 * deep); then a small recursive descent reads address = mailbox / group,
 * mailbox = name-addr / addr-spec, with the obsolete forms Postfix and
 * mail clients accept (phrases with dots, routes, empty list elements).
 * Everything is bounded: input length, token count, output sizes, nesting.
 * Pure functions on the caller's buffers; thread-safe.
 */
#include "addrparse.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define AP_MAX_TOKENS	     1024
#define AP_MAX_COMMENT_DEPTH 32

enum tt { T_ATOM, T_QSTR, T_DLIT, T_SPECIAL };

struct tok {
	enum tt t;
	char c;	       /* T_SPECIAL */
	const char *s; /* T_ATOM/T_DLIT: raw text; T_QSTR: inside the quotes */
	size_t len;
	bool space_before;
};

static bool is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true; /* RFC 6532 UTF-8 */
	if (isalnum(c))
		return true;
	return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static int tokenize(const char *s, struct tok *toks, int max, const char **why)
{
	int n = 0;
	bool space = false;
	const char *p = s;
	while (*p) {
		unsigned char c = (unsigned char)*p;
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			space = true;
			p++;
			continue;
		}
		if (c == '(') {
			int depth = 0;
			do {
				if (*p == '\\' && p[1])
					p++;
				else if (*p == '(') {
					if (++depth > AP_MAX_COMMENT_DEPTH) {
						*why = "comments nested too deep";
						return -1;
					}
				} else if (*p == ')')
					depth--;
				p++;
			} while (*p && depth > 0);
			if (depth > 0) {
				*why = "unterminated comment";
				return -1;
			}
			space = true;
			continue;
		}
		if (n == max) {
			*why = "too many tokens";
			return -1;
		}
		struct tok *t = &toks[n++];
		t->space_before = space;
		space = false;
		if (c == '"') {
			const char *q = ++p;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p != '"') {
				*why = "unterminated quoted string";
				return -1;
			}
			t->t = T_QSTR;
			t->s = q;
			t->len = (size_t)(p - q);
			p++;
		} else if (c == '[') {
			const char *q = p;
			while (*p && *p != ']') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (*p != ']') {
				*why = "unterminated domain literal";
				return -1;
			}
			p++;
			t->t = T_DLIT;
			t->s = q;
			t->len = (size_t)(p - q);
		} else if (is_atext(c)) {
			const char *q = p;
			while (*p && is_atext((unsigned char)*p))
				p++;
			t->t = T_ATOM;
			t->s = q;
			t->len = (size_t)(p - q);
		} else if (strchr("<>@,;:\\)]", c)) {
			t->t = T_SPECIAL;
			t->c = (char)c;
			t->s = p;
			t->len = 1;
			p++;
		} else {
			*why = "control character";
			return -1;
		}
	}
	return n;
}

/* ---- output helpers -------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t n, len;
	bool overflow;
};

static void sb_add(struct sbuf *b, const char *s, size_t len)
{
	if (b->len + len + 1 > b->n) {
		b->overflow = true;
		len = b->n - b->len - 1;
	}
	memcpy(b->p + b->len, s, len);
	b->len += len;
	b->p[b->len] = 0;
}

static void sb_unquote(struct sbuf *b, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\\' && i + 1 < len)
			i++;
		if (s[i] == '\r' || s[i] == '\n')
			continue; /* folding inside quotes */
		sb_add(b, &s[i], 1);
	}
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes one RFC 2047 encoded word "=?charset?E?text?=" (bytes, charset
 * ignored) into b. Returns false if s is not one. */
static bool decode_ew(struct sbuf *b, const char *s, size_t len)
{
	if (len < 8 || s[0] != '=' || s[1] != '?' || s[len - 2] != '?' || s[len - 1] != '=')
		return false;
	const char *q1 = memchr(s + 2, '?', len - 4);
	if (!q1 || q1 + 3 > s + len - 2 || q1[2] != '?')
		return false;
	char enc = (char)toupper((unsigned char)q1[1]);
	const char *t = q1 + 3, *end = s + len - 2;
	if (enc == 'B') {
		unsigned acc = 0;
		int bits = 0;
		for (; t < end; t++) {
			if (*t == '=')
				break;
			int v = b64val((unsigned char)*t);
			if (v < 0)
				return false;
			acc = (acc << 6) | (unsigned)v;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				char ch = (char)((acc >> bits) & 0xff);
				sb_add(b, &ch, 1);
			}
		}
		return true;
	}
	if (enc == 'Q') {
		for (; t < end; t++) {
			char ch = *t;
			if (ch == '_')
				ch = ' ';
			else if (ch == '=' && t + 2 < end && hexval((unsigned char)t[1]) >= 0 &&
				 hexval((unsigned char)t[2]) >= 0) {
				ch = (char)(hexval((unsigned char)t[1]) * 16 + hexval((unsigned char)t[2]));
				t += 2;
			}
			sb_add(b, &ch, 1);
		}
		return true;
	}
	return false;
}

/* Where the encoded word starting at p ("=?cs?E?text?=") ends: at its
 * final "?=" (returned pointer is that '?'), or NULL. */
static const char *ew_end(const char *p)
{
	const char *q = strchr(p + 2, '?');
	if (!q || !q[1] || q[2] != '?')
		return NULL;
	return strstr(q + 3, "?=");
}

/* Display name from the words toks[a..b): encoded words decoded, adjacent
 * encoded words joined without the white space between them. */
static void display_name(const struct tok *toks, int a, int b, char *out, size_t n)
{
	struct sbuf sb = {out, n, 0, false};
	out[0] = 0;
	bool prev_ew = false;
	for (int i = a; i < b; i++) {
		const struct tok *t = &toks[i];
		size_t mark = sb.len;
		bool ew = false;
		if (i > a)
			sb_add(&sb, " ", 1);
		size_t after_space = sb.len;
		if (t->t == T_ATOM) {
			ew = decode_ew(&sb, t->s, t->len);
			if (!ew)
				sb_add(&sb, t->s, t->len);
		} else if (t->t == T_QSTR) {
			/* Lenient: encoded words inside quotes, as clients send. */
			char tmp[AP_MAX_DISPLAY];
			struct sbuf tb = {tmp, sizeof(tmp), 0, false};
			tmp[0] = 0;
			sb_unquote(&tb, t->s, t->len);
			size_t st = 0;
			while (st < tb.len) {
				const char *ewb = strstr(tmp + st, "=?");
				const char *ewe = ewb ? ew_end(ewb) : NULL;
				if (!ewb || !ewe) {
					sb_add(&sb, tmp + st, tb.len - st);
					break;
				}
				sb_add(&sb, tmp + st, (size_t)(ewb - (tmp + st)));
				if (!decode_ew(&sb, ewb, (size_t)(ewe + 2 - ewb)))
					sb_add(&sb, ewb, (size_t)(ewe + 2 - ewb));
				st = (size_t)(ewe + 2 - tmp);
			}
		} else if (t->t == T_SPECIAL || t->t == T_DLIT) {
			sb_add(&sb, t->s, t->len);
		}
		if (ew && prev_ew && i > a) {
			/* drop the space between two encoded words */
			memmove(out + mark, out + after_space, sb.len - after_space + 1);
			sb.len -= after_space - mark;
		}
		prev_ew = ew;
	}
}

/* addr-spec from toks[a..b): local-part "@" domain. */
static int addr_spec(const struct tok *toks, int a, int b, char *out, size_t n, const char **why)
{
	/* Obsolete route inside angle brackets: "@a,@b:" before the address. */
	for (int i = b - 1; i >= a; i--)
		if (toks[i].t == T_SPECIAL && toks[i].c == ':') {
			a = i + 1;
			break;
		}
	int at = -1;
	for (int i = a; i < b; i++)
		if (toks[i].t == T_SPECIAL && toks[i].c == '@')
			at = i;
	if (at < 0) {
		*why = "address without @";
		return -1;
	}
	if (at == a || at == b - 1) {
		*why = "empty local part or domain";
		return -1;
	}
	struct sbuf sb = {out, n, 0, false};
	out[0] = 0;
	for (int i = a; i < at; i++) {
		if (toks[i].t == T_ATOM)
			sb_add(&sb, toks[i].s, toks[i].len);
		else if (toks[i].t == T_QSTR)
			sb_unquote(&sb, toks[i].s, toks[i].len);
		else {
			*why = "bad local part";
			return -1;
		}
	}
	sb_add(&sb, "@", 1);
	size_t dom = sb.len;
	for (int i = at + 1; i < b; i++) {
		if (toks[i].t == T_ATOM || toks[i].t == T_DLIT)
			sb_add(&sb, toks[i].s, toks[i].len);
		else {
			*why = "bad domain";
			return -1;
		}
	}
	if (sb.overflow) {
		*why = "address too long";
		return -1;
	}
	for (char *p = out + dom; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* One mailbox in toks[a..b) (no top-level ',' or ';' inside). */
static int mailbox(const struct tok *toks, int a, int b, struct ap_mailbox *m, const char **why)
{
	int lt = -1, gt = -1;
	for (int i = a; i < b; i++) {
		if (toks[i].t != T_SPECIAL)
			continue;
		if (toks[i].c == '<' && lt < 0)
			lt = i;
		else if (toks[i].c == '>' && lt >= 0)
			gt = i;
	}
	if (lt >= 0) {
		if (gt < 0 || gt != b - 1) {
			*why = "bad angle address";
			return -1;
		}
		for (int i = a; i < lt; i++)
			if (toks[i].t == T_SPECIAL && toks[i].c != '.') {
				*why = "special character in display name";
				return -1;
			}
		display_name(toks, a, lt, m->display, sizeof(m->display));
		return addr_spec(toks, lt + 1, gt, m->addr, sizeof(m->addr), why);
	}
	m->display[0] = 0;
	return addr_spec(toks, a, b, m->addr, sizeof(m->addr), why);
}

int ap_parse(const char *value, struct ap_mailbox *out, int max, const char **why)
{
	static const char *dummy;
	if (!why)
		why = &dummy;
	if (strlen(value) > AP_MAX_INPUT) {
		*why = "header value too long";
		return -1;
	}
	struct tok toks[AP_MAX_TOKENS];
	int nt = tokenize(value, toks, AP_MAX_TOKENS, why);
	if (nt < 0)
		return -1;
	int count = 0, i = 0;
	while (i < nt) {
		if (toks[i].t == T_SPECIAL && toks[i].c == ',') {
			i++; /* obsolete empty list element */
			continue;
		}
		/* The extent of this address: to the next top-level ','; a ':'
		 * before any '<' makes it a group that ends at ';'. */
		int j = i, colon = -1;
		bool in_angle = false;
		for (; j < nt; j++) {
			if (toks[j].t != T_SPECIAL)
				continue;
			char c = toks[j].c;
			if (c == '<')
				in_angle = true;
			else if (c == '>')
				in_angle = false;
			else if (c == ':' && !in_angle && colon < 0) {
				colon = j;
				break;
			} else if (c == ',' && !in_angle)
				break;
		}
		if (colon >= 0) {
			/* group: display-name ":" [mailbox-list] ";" */
			int k = colon + 1;
			for (;;) {
				while (k < nt && toks[k].t == T_SPECIAL && toks[k].c == ',')
					k++;
				if (k >= nt) {
					*why = "group without ;";
					return -1;
				}
				if (toks[k].t == T_SPECIAL && toks[k].c == ';') {
					k++;
					break;
				}
				int e = k;
				in_angle = false;
				for (; e < nt; e++) {
					if (toks[e].t != T_SPECIAL)
						continue;
					if (toks[e].c == '<')
						in_angle = true;
					else if (toks[e].c == '>')
						in_angle = false;
					else if (!in_angle && (toks[e].c == ',' || toks[e].c == ';'))
						break;
				}
				if (count == max) {
					*why = "too many addresses";
					return -1;
				}
				if (mailbox(toks, k, e, &out[count], why) < 0)
					return -1;
				count++;
				k = e;
			}
			i = k;
			continue;
		}
		if (count == max) {
			*why = "too many addresses";
			return -1;
		}
		if (mailbox(toks, i, j, &out[count], why) < 0)
			return -1;
		count++;
		i = j;
	}
	return count;
}

static bool local_char(unsigned char c)
{
	return isalnum(c) || (c && strchr("._%+-=!#$&'*/?^`{|}~", c));
}

int ap_find_address_like(const char *text, char *out, size_t n)
{
	for (const char *at = strchr(text, '@'); at; at = strchr(at + 1, '@')) {
		const char *l = at;
		while (l > text && local_char((unsigned char)l[-1]))
			l--;
		const char *r = at + 1;
		bool dot = false;
		while (*r && (isalnum((unsigned char)*r) || *r == '.' || *r == '-')) {
			if (*r == '.' && r[1] && isalnum((unsigned char)r[1]))
				dot = true;
			r++;
		}
		while (r > at + 1 && r[-1] == '.')
			r--;
		if (l == at || !dot || (size_t)(r - l) + 1 > n)
			continue;
		size_t len = (size_t)(r - l);
		for (size_t i = 0; i < len; i++)
			out[i] = (char)tolower((unsigned char)l[i]);
		out[len] = 0;
		return 1;
	}
	return 0;
}
