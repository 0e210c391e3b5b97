/*
 * map.c - lookup tables in Postfix syntax and with Postfix semantics, so that
 * an administrator's existing tables work unchanged:
 *
 *   texthash:/path  `key value` lines; keys folded (sift_casefold: Unicode
 *                   case folding as Postfix with smtputf8; lookups too); the
 *                   first of duplicate keys wins (with a warning),
 *                   as postmap(1) does. A key with white space is written
 *                   in double quotes, `\` escapes the next character; both
 *                   stay part of the key, as in postmap(1): the line
 *                   `"john doe"@example.com REJECT` matches the key
 *                   "john doe"@example.com, quotes included.
 *   pcre:/path      pcre_table(5): `/regex/flags result`, `!/regex/ result`,
 *                   `if /regex/` ... `endif` (nesting, `if !/regex/`), flags
 *                   i (toggles caseless, which is ON by default) m s x A E U
 *                   (X accepted, no effect with PCRE2); `$1`, `${1}`, `$(1)`
 *                   and `$$` in results. Patterns are byte-oriented (no UTF
 *                   mode), compiled with the JIT where available.
 *   regexp:/path    regexp_table(5): the same with POSIX extended regexps;
 *                   flags i (caseless, on by default), x (extended, on by
 *                   default), m (newline-sensitive).
 *   cidr:/path      cidr_table(5): `network/prefix result`, `address result`,
 *                   `!network result`, `if [!]network` ... `endif`; IPv4 and
 *                   IPv6, the address or the whole network optionally in []
 *                   ([2001:db8::]/32, [2001:db8::/32]); first match wins; a
 *                   key that is not an IP address is simply not found.
 *                   Unlike Postfix, an IPv4-mapped IPv6 key (::ffff:192.0.2.1)
 *                   is looked up as the IPv4 address.
 *   inline:{ key=value, { key = value with spaces } }  (keys folded; a later
 *                   duplicate wins, as in Postfix)
 *   static:value, static:{ value with spaces }
 *   hash:/path, btree:/path, lmdb:/path, cdb:/path
 *                   the indexed files that postmap(1) makes from /path
 *                   (/path.db, /path.lmdb, /path.cdb), read-only, looked up
 *                   and reopened after a change as Postfix does: map_idx.c.
 *
 * Files follow Postfix's line rules (continuation lines start with white
 * space, `#` comment lines, blank lines ignored). Where Postfix merely warns
 * and skips a rule (bad regexp, unknown flag, out-of-range $n, empty result,
 * IF without ENDIF, host bits set in a cidr network), sift_map_open fails
 * with "file:line: ..." instead, so that a broken table is noticed at
 * startup (`-t`) rather than silently half-working. File size and logical
 * line length are bounded (MAP_MAX_FILE, MAP_MAX_LINE); POSIX regexps whose
 * bounded repetitions glibc would expand into hundreds of megabytes
 * (a{1,10000}) are refused; PCRE2 matching runs under match, depth and
 * heap limits, and hitting one makes the lookup fail (-1) rather than spin.
 * A match that outgrows the JIT's stack (long keys: the JIT ignores the
 * depth limit and has PCRE2's default 32 KiB stack) is run again by the
 * interpreter under those limits, so that it is answered as Postfix
 * answers it.
 *
 * Threading and ownership: a map is built by sift_map_open and immutable
 * afterwards (an indexed table's file handle, which map_idx.c reopens under
 * its own mutex, aside); lookups from any number of threads are safe (PCRE2
 * match data is allocated per lookup, the match context is only read).
 * Results are malloc'd for the caller.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "sift.h"
#include "map_idx.h"

#define MAP_MAX_FILE SIFT_TABLE_FILE_MAX /* bytes per table file */
#define MAP_MAX_LINE SIFT_TABLE_LINE_MAX /* bytes per logical line */
#define MAP_MAX_NEST 1000		 /* if/endif nesting */
#define RX_MAX_COST  2000.0		 /* expanded size of a POSIX regexp, see rx_too_complex */
/* PCRE2 matching: steps, backtracking depth (the interpreter's), and the
 * interpreter's heap for that backtracking, per lookup. */
#define PCRE_MATCH_LIMIT   1000000
#define PCRE_DEPTH_LIMIT   10000
#define PCRE_HEAP_LIMIT_KB (32u << 10)

enum map_type { M_TEXTHASH, M_PCRE, M_REGEXP, M_CIDR, M_INLINE, M_STATIC, M_INDEXED };

struct kv {
	char *key, *value;
	size_t seq; /* input order, to resolve duplicates */
	int lineno;
};

enum rule_op { R_MATCH, R_IF, R_ENDIF };

struct rule {
	enum rule_op op;
	bool negate;
	int lineno;
	size_t endif;	     /* R_IF: index of the matching R_ENDIF */
	char *result;	     /* R_MATCH */
	pcre2_code *re;	     /* pcre */
	regex_t *rx;	     /* regexp */
	struct sift_net net; /* cidr */
};

struct sift_map {
	enum map_type type;
	char *spec;
	struct kv *kv; /* texthash, inline: sorted by key, unique */
	size_t nkv;
	char *value; /* static */
	struct rule *rules;
	size_t nrules;
	uint32_t max_pairs; /* pcre, regexp: most groups of a rule, plus one */
	pcre2_match_context *mctx;
	struct map_idx *idx; /* hash, btree, lmdb, cdb */
};

/* ---- errors and files ---------------------------------------------------- */

static char *errf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *errf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = sift_vasprintf(fmt, ap);
	va_end(ap);
	return s;
}

static int read_all(const char *path, char **data_r, size_t *len_r, char **err_r)
{
	if (sift_read_file(path, MAP_MAX_FILE, data_r, len_r) == 0)
		return 0;
	if (errno == EFBIG)
		*err_r = errf("%s: file too large (limit %u bytes)", path, MAP_MAX_FILE);
	else if (errno == ESPIPE)
		*err_r = errf("%s: a FIFO or socket, not a file", path);
	else
		*err_r = errf("cannot open %s: %s", path, strerror(errno));
	return -1;
}

static void rtrim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
}

/* ---- texthash and inline: sorted key/value arrays ------------------------- */

static int kv_cmp(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void kv_add(struct sift_map *m, size_t *cap, const char *key, size_t klen, const char *value,
		   size_t vlen, int lineno)
{
	if (m->nkv == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		m->kv = sift_realloc(m->kv, *cap * sizeof(*m->kv));
	}
	struct kv *e = &m->kv[m->nkv];
	char *raw = sift_strndup(key, klen);
	e->key = sift_casefold(raw);
	free(raw);
	e->value = sift_strndup(value, vlen);
	e->seq = m->nkv++;
	e->lineno = lineno;
}

/* Sorts and removes duplicates, keeping the first (texthash) or the last
 * (inline) of each key. */
static void kv_finish(struct sift_map *m, bool keep_last, const char *path)
{
	if (m->nkv == 0)
		return;
	qsort(m->kv, m->nkv, sizeof(*m->kv), kv_cmp);
	size_t o = 0;
	for (size_t i = 0; i < m->nkv; i++) {
		if (o > 0 && strcmp(m->kv[o - 1].key, m->kv[i].key) == 0) {
			if (path)
				sift_log(LOG_WARNING, "%s:%d: duplicate entry: \"%s\" (keeping line %d)",
					 path, m->kv[i].lineno, m->kv[i].key, m->kv[o - 1].lineno);
			if (keep_last) {
				free(m->kv[o - 1].key);
				free(m->kv[o - 1].value);
				m->kv[o - 1] = m->kv[i];
			} else {
				free(m->kv[i].key);
				free(m->kv[i].value);
			}
			continue;
		}
		m->kv[o++] = m->kv[i];
	}
	m->nkv = o;
}

static int open_texthash(struct sift_map *m, const char *path, char **err_r)
{
	char *data;
	size_t len, cap = 0;
	if (read_all(path, &data, &len, err_r) < 0)
		return -1;
	const char *p = data, *end = data + len, *why = NULL;
	int lineno = 0, first = 0, r, rc = 0;
	struct sift_buf line = {0};
	while ((r = sift_next_logical_line(&p, end, &lineno, &line, &first, &why, MAP_MAX_LINE)) != 0) {
		if (r < 0) {
			*err_r = errf("%s:%d: %s", path, first, why);
			rc = -1;
			break;
		}
		char *s = line.data;
		rtrim(s);
		/* The key ends at the first white space outside double quotes;
		 * a backslash takes the next character as it is. Quotes and
		 * backslashes stay part of the key, as in postmap(1) (Postfix
		 * 3.2 and later): "john doe"@example.com is looked up as
		 * written, with its quotes. */
		size_t klen = 0;
		bool quoted = false;
		for (; s[klen]; klen++) {
			if (s[klen] == '\\') {
				if (s[klen + 1])
					klen++;
			} else if (s[klen] == '"') {
				quoted = !quoted;
			} else if (!quoted && isspace((unsigned char)s[klen])) {
				break;
			}
		}
		if (quoted) {
			*err_r = errf("%s:%d: unbalanced '\"' in key", path, first);
			rc = -1;
			break;
		}
		const char *v = s + klen;
		while (isspace((unsigned char)*v))
			v++;
		if (*v == 0) {
			*err_r = errf("%s:%d: expected format: key whitespace value", path, first);
			rc = -1;
			break;
		}
		kv_add(m, &cap, s, klen, v, strlen(v), first);
	}
	sift_buf_free(&line);
	free(data);
	if (rc == 0)
		kv_finish(m, false, path);
	return rc;
}

/* Index of the '}' closing the '{' at s[i], or (size_t)-1. */
static size_t brace_end(const char *s, size_t i)
{
	int lvl = 0;
	for (; s[i]; i++) {
		if (s[i] == '{')
			lvl++;
		else if (s[i] == '}' && --lvl == 0)
			return i;
	}
	return (size_t)-1;
}

/* "{ a=b, { c = d e } }" (the text after "inline:"). */
static int open_inline(struct sift_map *m, const char *text, char **err_r)
{
	size_t n = strlen(text), cap = 0;
	if (n < 2 || text[0] != '{' || brace_end(text, 0) != n - 1) {
		*err_r = errf("bad syntax: \"%s\"; need \"inline:{name=value...}\"", m->spec);
		return -1;
	}
	char *body = sift_strndup(text + 1, n - 2);
	int rc = 0;
	for (size_t i = 0; body[i];) {
		while (body[i] == ',' || isspace((unsigned char)body[i]))
			i++;
		if (!body[i])
			break;
		char *item, *k, *v;
		if (body[i] == '{') {
			size_t c = brace_end(body, i);
			if (c == (size_t)-1) {
				*err_r = errf("missing '}' in \"%s\"", m->spec);
				rc = -1;
				break;
			}
			body[c] = 0;
			item = body + i + 1;
			i = c + 1;
		} else {
			size_t l = 0;
			while (body[i + l] && body[i + l] != ',' && !isspace((unsigned char)body[i + l]))
				l++;
			item = body + i;
			i += l;
			if (body[i])
				body[i++] = 0;
		}
		char *eq = strchr(item, '=');
		if (!eq) {
			*err_r = errf("missing '=' after attribute name \"%s\" in \"%s\"", sift_trim(item),
				      m->spec);
			rc = -1;
			break;
		}
		*eq = 0;
		k = sift_trim(item);
		v = sift_trim(eq + 1);
		if (!*k || !*v) {
			*err_r = errf("empty %s in \"%s\"", *k ? "value" : "name", m->spec);
			rc = -1;
			break;
		}
		kv_add(m, &cap, k, strlen(k), v, strlen(v), 0);
	}
	free(body);
	if (rc == 0 && m->nkv == 0) {
		*err_r = errf("bad syntax: \"%s\"; need \"inline:{name=value...}\"", m->spec);
		rc = -1;
	}
	if (rc == 0)
		kv_finish(m, true, NULL);
	return rc;
}

static int kv_lookup(const struct sift_map *m, const char *key, char **result_r)
{
	char *k = sift_casefold(key);
	size_t lo = 0, hi = m->nkv;
	int rc = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(k, m->kv[mid].key);
		if (c == 0) {
			*result_r = sift_strdup(m->kv[mid].value);
			rc = 1;
			break;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	free(k);
	return rc;
}

/* ---- $n substitution in regexp results ------------------------------------ */

/* Walks a result text: calls lit for literal text and sub for $n. Returns
 * 0, or -1 with *why set (syntax). Mirrors Postfix's mac_parse(). */
struct subst {
	struct sift_buf *out;
	const char *subject;
	const size_t *so, *eo; /* group offsets, SIZE_MAX = unset */
	size_t ngroups;
	long maxref; /* prescan: largest $n */
};

static int subst_walk(const char *s, struct subst *x, const char **why)
{
	while (*s) {
		const char *d = strchr(s, '$');
		size_t lit = d ? (size_t)(d - s) : strlen(s);
		if (x->out)
			sift_buf_add(x->out, s, lit);
		s += lit;
		if (!*s)
			break;
		s++; /* the '$' */
		const char *name;
		size_t nlen;
		if (*s == '$') {
			if (x->out)
				sift_buf_add(x->out, "$", 1);
			s++;
			continue;
		} else if (*s == '{' || *s == '(') {
			char open = *s, close = open == '{' ? '}' : ')';
			int lvl = 0;
			const char *p = s;
			for (; *p; p++) {
				if (*p == open)
					lvl++;
				else if (*p == close && --lvl == 0)
					break;
			}
			if (!*p) {
				*why = open == '{' ? "unbalanced '{' in result" : "unbalanced '(' in result";
				return -1;
			}
			name = s + 1;
			nlen = (size_t)(p - s - 1);
			s = p + 1;
		} else {
			name = s;
			while (isalnum((unsigned char)*s) || *s == '_')
				s++;
			nlen = (size_t)(s - name);
		}
		if (nlen == 0) {
			*why = "empty macro name in result";
			return -1;
		}
		long n = 0;
		for (size_t i = 0; i < nlen; i++) {
			if (!isdigit((unsigned char)name[i])) {
				*why = "non-numeric replacement index in result";
				return -1;
			}
			if (n < 100000)
				n = n * 10 + (name[i] - '0');
		}
		if (n < 1) {
			*why = "out of range replacement index \"0\"";
			return -1;
		}
		if (n > x->maxref)
			x->maxref = n;
		if (x->out && (size_t)n < x->ngroups && x->so[n] != SIZE_MAX)
			sift_buf_add(x->out, x->subject + x->so[n], x->eo[n] - x->so[n]);
	}
	return 0;
}

/* ---- pcre, regexp, cidr ---------------------------------------------------- */

struct rparse {
	struct sift_map *m;
	const char *path;
	int lineno;
	char **err_r;
	size_t cap;
	size_t *stack; /* open IFs */
	size_t depth, scap;
};

static int rerr(struct rparse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int rerr(struct rparse *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = sift_vasprintf(fmt, ap);
	va_end(ap);
	*p->err_r = errf("%s:%d: %s", p->path, p->lineno, s);
	free(s);
	return -1;
}

static struct rule *rule_add(struct rparse *p, enum rule_op op)
{
	struct sift_map *m = p->m;
	if (m->nrules == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 32;
		m->rules = sift_realloc(m->rules, p->cap * sizeof(*m->rules));
	}
	struct rule *r = &m->rules[m->nrules++];
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->lineno = p->lineno;
	return r;
}

/* "if" / "endif" keyword at s (case-insensitive, not followed by a letter,
 * digit or '_'). */
static bool keyword(const char *s, const char *kw)
{
	size_t n = strlen(kw);
	return strncasecmp(s, kw, n) == 0 && !isalnum((unsigned char)s[n]) && s[n] != '_';
}

/* Whether s starts an interval "{m,n}" as glibc reads one: a backslash in
 * the braces is skipped ("a{\,255}" is "a{,255}" to regcomp, which then
 * expands it). */
static bool rx_interval(const char *s)
{
	if (*s != '{')
		return false;
	for (s++; *s == '\\'; s++)
		;
	return isdigit((unsigned char)*s) || *s == ',';
}

/* A repetition operator at s: *, +, ? or an interval. */
static bool rx_rep(const char *s)
{
	return *s == '*' || *s == '+' || *s == '?' || rx_interval(s);
}

/* glibc's regcomp expands bounded repetitions ({n,m}), with memory that
 * grows faster than linearly: a{1,10000} takes half a gigabyte. Estimates
 * the expanded size (atoms, groups multiplied by their bounds, x+ copied
 * as xx*) and refuses patterns above RX_MAX_COST. Stacked repetition
 * operators (a+??...), undefined in POSIX, cost glibc cubic time in their
 * number: more than two in a row are refused. So is a repeated group that
 * matches no character, only positions ("()", "(^)", "(\b)"): glibc's
 * closure of its empty transitions takes seconds for (^){1,255} and
 * longer than a minute for (){5}{1,255}, and it can only match the empty
 * string. */
static bool rx_too_complex(const char *re)
{
	double sum[64], last = 0;
	bool eats[64]; /* the group has an atom that matches a character */
	int sp = 0, run = 0;
	sum[0] = 0;
	eats[0] = false;
	for (const char *s = re; *s; s++) {
		run = rx_rep(s) ? run + 1 : 0;
		if (run > 2)
			return true;
		if (*s == '(') {
			if (++sp >= 64)
				return true;
			sum[sp] = 0;
			eats[sp] = false;
			last = 0;
			continue;
		}
		if (*s == ')' && sp > 0) {
			bool e = eats[sp];
			double v = sum[sp--];
			if (!e && rx_rep(s + 1))
				return true;
			eats[sp] = eats[sp] || e;
			last = v < 1 ? 1 : v;
			sum[sp] += last;
		} else if (rx_interval(s)) {
			double m = 0, v = 0;
			for (s++; isdigit((unsigned char)*s) || *s == ',' || *s == '\\'; s++) {
				if (*s == '\\')
					continue;
				if (*s == ',') {
					v = 0;
					continue;
				}
				v = v * 10 + (*s - '0');
				if (v > m)
					m = v;
				if (m > RX_MAX_COST)
					return true;
			}
			if (last < 1)
				last = 1;
			sum[sp] += last * m;
			last *= m + 1;
			if (!*s)
				break;
		} else if (*s == '+') {
			/* x+ becomes xx*: stacked +'s double the size each */
			sum[sp] += last;
			last *= 2;
		} else if (*s == '*' || *s == '?') {
			/* no copy */
		} else if (*s == '|') {
			last = 0;
		} else {
			if (*s == '\\' && s[1]) {
				s++;
				if (!strchr("bB<>`'", *s))
					eats[sp] = true;
			} else if (*s == '[') {
				eats[sp] = true;
				/* a bracket expression is one atom: []x] and [^]x] */
				const char *p = s + 1;
				if (*p == '^')
					p++;
				if (*p == ']')
					p++;
				while (*p && *p != ']')
					p++;
				s = *p ? p : p - 1;
			} else if (*s != '^' && *s != '$') {
				eats[sp] = true;
			}
			last = 1;
			sum[sp] += 1;
		}
		if (sum[sp] > RX_MAX_COST || last > RX_MAX_COST)
			return true;
	}
	return false;
}

/* Compiles /pattern/flags at *sp into r; advances *sp past the flags. */
static int parse_regex(struct rparse *p, char **sp, struct rule *r, uint32_t *ncap_r)
{
	char *s = *sp;
	char delim = *s;
	if (!delim || isspace((unsigned char)delim) || delim == '\\')
		return rerr(p, "missing regular expression delimiter");
	char *pat = ++s;
	while (*s && *s != delim) {
		if (*s == '\\' && s[1])
			s++;
		s++;
	}
	if (*s != delim)
		return rerr(p, "missing closing delimiter '%c' of regular expression", delim);
	*s++ = 0;

	if (p->m->type == M_PCRE) {
		uint32_t opts = PCRE2_CASELESS;
		for (; *s && !isspace((unsigned char)*s); s++) {
			switch (*s) {
			case 'i':
				opts ^= PCRE2_CASELESS;
				break;
			case 'm':
				opts ^= PCRE2_MULTILINE;
				break;
			case 's':
				opts ^= PCRE2_DOTALL;
				break;
			case 'x':
				opts ^= PCRE2_EXTENDED;
				break;
			case 'A':
				opts ^= PCRE2_ANCHORED;
				break;
			case 'E':
				opts ^= PCRE2_DOLLAR_ENDONLY;
				break;
			case 'U':
				opts ^= PCRE2_UNGREEDY;
				break;
			case 'X':
				break;
			default:
				return rerr(p, "unknown regexp option \"%c\"", *s);
			}
		}
		int ec;
		PCRE2_SIZE off;
		r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &ec, &off, NULL);
		if (!r->re) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(ec, msg, sizeof(msg));
			return rerr(p, "error in regex at offset %zu: %s", (size_t)off, (char *)msg);
		}
		(void)pcre2_jit_compile(r->re, PCRE2_JIT_COMPLETE); /* failure: interpreter */
		uint32_t n = 0;
		pcre2_pattern_info(r->re, PCRE2_INFO_CAPTURECOUNT, &n);
		*ncap_r = n;
		if (n + 1 > p->m->max_pairs)
			p->m->max_pairs = n + 1;
	} else {
		int cflags = REG_EXTENDED | REG_ICASE;
		for (; *s && !isspace((unsigned char)*s); s++) {
			switch (*s) {
			case 'i':
				cflags ^= REG_ICASE;
				break;
			case 'x':
				cflags ^= REG_EXTENDED;
				break;
			case 'm':
				cflags ^= REG_NEWLINE;
				break;
			default:
				return rerr(p, "unknown regexp option \"%c\"", *s);
			}
		}
		if (rx_too_complex(pat))
			return rerr(p, "regular expression too complex (bounded or stacked repetitions)");
		r->rx = sift_malloc(sizeof(*r->rx));
		int ec = regcomp(r->rx, pat, cflags);
		if (ec) {
			char msg[256];
			regerror(ec, r->rx, msg, sizeof(msg));
			free(r->rx);
			r->rx = NULL;
			return rerr(p, "error in regex: %s", msg);
		}
		*ncap_r = (uint32_t)r->rx->re_nsub;
		if (*ncap_r + 1 > p->m->max_pairs)
			p->m->max_pairs = *ncap_r + 1;
	}
	*sp = s;
	return 0;
}

/* cidr: [!]network at *sp (up to white space). */
static int parse_net(struct rparse *p, char **sp, struct rule *r)
{
	char *s = *sp;
	if (*s == '!') {
		r->negate = true;
		s++;
	}
	char *tok = s;
	while (*s && !isspace((unsigned char)*s))
		s++;
	char save = *s;
	*s = 0;
	int rc = 0;
	if (sift_net_parse(tok, false, &r->net) < 0) {
		struct sift_net loose;
		if (sift_net_parse(tok, true, &loose) == 0) {
			char a[INET6_ADDRSTRLEN];
			inet_ntop(loose.family, loose.addr, a, sizeof(a));
			rc = rerr(p,
				  "non-null host address bits in \"%s\", perhaps you should use "
				  "\"%s%s%s/%d\" instead",
				  tok, loose.family == AF_INET6 ? "[" : "", a,
				  loose.family == AF_INET6 ? "]" : "", loose.prefix);
		} else {
			rc = rerr(p, "bad network address \"%s\"", tok);
		}
	}
	*s = save;
	*sp = s;
	return rc;
}

static int parse_rule(struct rparse *p, char *line)
{
	struct sift_map *m = p->m;
	rtrim(line);
	char *s = line;
	if (keyword(s, "endif")) {
		s += 5;
		while (isspace((unsigned char)*s))
			s++;
		if (*s)
			return rerr(p, "text after ENDIF");
		if (p->depth == 0)
			return rerr(p, "ENDIF without matching IF");
		size_t ifi = p->stack[--p->depth];
		rule_add(p, R_ENDIF);
		m->rules[ifi].endif = m->nrules - 1;
		return 0;
	}
	bool is_if = keyword(s, "if");
	if (is_if) {
		s += 2;
		while (isspace((unsigned char)*s))
			s++;
		if (p->depth >= MAP_MAX_NEST)
			return rerr(p, "IF nested too deeply");
	}
	struct rule *r = rule_add(p, is_if ? R_IF : R_MATCH);
	uint32_t ncap = 0;
	if (m->type == M_CIDR) {
		if (parse_net(p, &s, r) < 0)
			return -1;
	} else {
		if (*s == '!') {
			r->negate = true;
			s++;
		}
		if (parse_regex(p, &s, r, &ncap) < 0)
			return -1;
	}
	while (isspace((unsigned char)*s))
		s++;
	if (is_if) {
		if (*s)
			return rerr(p, "text after IF condition");
		if (p->depth == p->scap) {
			p->scap = p->scap ? p->scap * 2 : 16;
			p->stack = sift_realloc(p->stack, p->scap * sizeof(*p->stack));
		}
		p->stack[p->depth++] = m->nrules - 1;
		return 0;
	}
	if (!*s)
		return rerr(p, "no result (empty results are not allowed)");
	if (m->type != M_CIDR) {
		struct subst x = {0};
		const char *why = NULL;
		if (subst_walk(s, &x, &why) < 0)
			return rerr(p, "%s", why);
		if (x.maxref > 0 && r->negate)
			return rerr(p, "$number found in negative match result");
		if (x.maxref > (long)ncap)
			return rerr(p, "out of range replacement index \"%ld\"", x.maxref);
	}
	r->result = sift_strdup(s);
	return 0;
}

static int open_rules(struct sift_map *m, const char *path, char **err_r)
{
	char *data;
	size_t len;
	if (read_all(path, &data, &len, err_r) < 0)
		return -1;
	struct rparse p = {.m = m, .path = path, .err_r = err_r};
	const char *s = data, *end = data + len, *why = NULL;
	int first = 0, r, rc = 0, lineno = 0;
	struct sift_buf line = {0};
	while ((r = sift_next_logical_line(&s, end, &lineno, &line, &first, &why, MAP_MAX_LINE)) != 0) {
		p.lineno = first;
		if (r < 0) {
			rc = rerr(&p, "%s", why);
			break;
		}
		if ((rc = parse_rule(&p, line.data)) < 0)
			break;
	}
	if (rc == 0 && p.depth > 0) {
		p.lineno = m->rules[p.stack[p.depth - 1]].lineno;
		rc = rerr(&p, "IF has no matching ENDIF");
	}
	free(p.stack);
	sift_buf_free(&line);
	free(data);
	if (rc == 0 && m->type == M_PCRE) {
		m->mctx = pcre2_match_context_create(NULL);
		pcre2_set_match_limit(m->mctx, PCRE_MATCH_LIMIT);
		pcre2_set_depth_limit(m->mctx, PCRE_DEPTH_LIMIT);
		pcre2_set_heap_limit(m->mctx, PCRE_HEAP_LIMIT_KB);
	}
	return rc;
}

/* Tests rule r against key: 1 match, 0 no match, -1 error. Fills x with
 * the groups for substitution. */
static int rule_test(const struct sift_map *m, const struct rule *r, const char *key, size_t klen, int fam,
		     const unsigned char *addr, pcre2_match_data *md, regmatch_t *pm, size_t npm, size_t *so,
		     size_t *eo, size_t *ngroups)
{
	*ngroups = 0;
	if (m->type == M_CIDR)
		return sift_net_match(&r->net, fam, addr);
	if (m->type == M_PCRE) {
		int rc = pcre2_match(r->re, (PCRE2_SPTR)key, klen, 0, 0, md, m->mctx);
		/* The JIT code runs on PCRE2's default JIT stack (32 KiB) and
		 * ignores the depth limit: a group repeated once per character
		 * outgrows it at about a kilobyte of key. The interpreter then
		 * answers, under the match, depth and heap limits. */
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
			rc = pcre2_match(r->re, (PCRE2_SPTR)key, klen, 0, PCRE2_NO_JIT, md, m->mctx);
		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc < 0)
			return -1;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		uint32_t n = pcre2_get_ovector_count(md);
		if (n > npm)
			n = (uint32_t)npm;
		for (uint32_t i = 0; i < n; i++) {
			bool unset = ov[2 * i] == PCRE2_UNSET || i >= (uint32_t)rc;
			so[i] = unset ? SIZE_MAX : ov[2 * i];
			eo[i] = unset ? SIZE_MAX : ov[2 * i + 1];
		}
		*ngroups = n;
		return 1;
	}
	int rc = regexec(r->rx, key, npm, pm, 0);
	if (rc == REG_NOMATCH)
		return 0;
	if (rc != 0)
		return -1;
	for (size_t i = 0; i < npm; i++) {
		bool unset = pm[i].rm_so < 0;
		so[i] = unset ? SIZE_MAX : (size_t)pm[i].rm_so;
		eo[i] = unset ? SIZE_MAX : (size_t)pm[i].rm_eo;
	}
	*ngroups = npm;
	return 1;
}

static int rules_lookup(const struct sift_map *m, const char *key, char **result_r)
{
	int fam = 0;
	unsigned char addr[16];
	if (m->type == M_CIDR && sift_addr_parse(key, &fam, addr) < 0)
		return 0;
	size_t npm = m->max_pairs ? m->max_pairs : 1;
	pcre2_match_data *md = NULL;
	regmatch_t *pm = NULL;
	if (m->type == M_PCRE)
		md = pcre2_match_data_create((uint32_t)npm, NULL);
	else if (m->type == M_REGEXP)
		pm = sift_calloc(npm, sizeof(*pm));
	size_t *so = sift_calloc(npm, sizeof(*so)), *eo = sift_calloc(npm, sizeof(*eo));
	size_t ng = 0, klen = strlen(key);
	int rc = 0;
	for (size_t i = 0; i < m->nrules;) {
		const struct rule *r = &m->rules[i];
		if (r->op == R_ENDIF) {
			i++;
			continue;
		}
		int t = rule_test(m, r, key, klen, fam, addr, md, pm, npm, so, eo, &ng);
		if (t < 0) {
			rc = -1;
			break;
		}
		bool hit = (t == 1) != r->negate;
		if (r->op == R_IF) {
			i = hit ? i + 1 : r->endif + 1;
			continue;
		}
		if (!hit) {
			i++;
			continue;
		}
		if (m->type == M_CIDR) {
			*result_r = sift_strdup(r->result);
		} else {
			struct sift_buf out = {0};
			struct subst x = {.out = &out,
					  .subject = key,
					  .so = so,
					  .eo = eo,
					  .ngroups = r->negate ? 0 : ng};
			const char *why;
			(void)subst_walk(r->result, &x, &why); /* checked at open */
			*result_r = (char *)sift_buf_str(&out);
		}
		rc = 1;
		break;
	}
	if (md)
		pcre2_match_data_free(md);
	free(pm);
	free(so);
	free(eo);
	return rc;
}

/* ---- open/lookup/free ------------------------------------------------------ */

struct sift_map *sift_map_open(const char *spec, char **err_r)
{
	char *dummy = NULL;
	if (!err_r)
		err_r = &dummy;
	*err_r = NULL;
	if (!spec) {
		*err_r = sift_strdup("no map given");
		free(dummy);
		return NULL;
	}
	char *sp = sift_strdup(spec);
	char *t = sift_trim(sp);
	char *colon = strchr(t, ':');
	static const struct {
		const char *name;
		enum map_type type;
	} types[] = {{"texthash", M_TEXTHASH}, {"pcre", M_PCRE},     {"regexp", M_REGEXP},
		     {"cidr", M_CIDR},	       {"inline", M_INLINE}, {"static", M_STATIC}};
	int ti = -1;
	if (colon && map_idx_type(t, (size_t)(colon - t)))
		ti = -2;
	else if (colon)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strlen(types[i].name) == (size_t)(colon - t) &&
			    strncmp(types[i].name, t, (size_t)(colon - t)) == 0)
				ti = (int)i;
	if (ti == -1) {
		*err_r = colon ? errf("unsupported map type \"%.*s\" in \"%s\" (use hash, btree, lmdb, "
				      "cdb, texthash, pcre, regexp, cidr, inline or static)",
				      (int)(colon - t), t, t)
			       : errf("bad map \"%s\": need type:name", t);
		free(sp);
		free(dummy);
		return NULL;
	}
	struct sift_map *m = sift_calloc(1, sizeof(*m));
	m->type = ti == -2 ? M_INDEXED : types[ti].type;
	m->spec = sift_strdup(t);
	const char *name = colon + 1;
	int rc;
	switch (m->type) {
	case M_STATIC: {
		char *v = sift_strdup(name);
		char *vt = v;
		size_t vl = strlen(v);
		if (vl >= 2 && v[0] == '{' && v[vl - 1] == '}') {
			v[vl - 1] = 0;
			vt = sift_trim(v + 1);
		}
		if (!*vt) {
			*err_r = errf("bad syntax: \"%s\": empty value", m->spec);
			rc = -1;
		} else {
			m->value = sift_strdup(vt);
			rc = 0;
		}
		free(v);
		break;
	}
	case M_INLINE:
		rc = open_inline(m, name, err_r);
		break;
	default:
		if (!*name) {
			*err_r = errf("bad map \"%s\": no file name", m->spec);
			rc = -1;
		} else if (m->type == M_INDEXED) {
			*colon = 0;
			m->idx = map_idx_open(t, name, err_r);
			rc = m->idx ? 0 : -1;
		} else if (m->type == M_TEXTHASH) {
			rc = open_texthash(m, name, err_r);
		} else {
			rc = open_rules(m, name, err_r);
		}
		break;
	}
	free(sp);
	if (rc < 0) {
		if (!*err_r)
			*err_r = errf("cannot open map \"%s\"", m->spec);
		sift_map_free(m);
		m = NULL;
	}
	free(dummy);
	return m;
}

void sift_map_free(struct sift_map *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nkv; i++) {
		free(m->kv[i].key);
		free(m->kv[i].value);
	}
	free(m->kv);
	for (size_t i = 0; i < m->nrules; i++) {
		struct rule *r = &m->rules[i];
		free(r->result);
		if (r->re)
			pcre2_code_free(r->re);
		if (r->rx) {
			regfree(r->rx);
			free(r->rx);
		}
	}
	free(m->rules);
	map_idx_free(m->idx);
	if (m->mctx)
		pcre2_match_context_free(m->mctx);
	free(m->value);
	free(m->spec);
	free(m);
}

int sift_map_lookup(const struct sift_map *map, const char *key, char **result_r)
{
	*result_r = NULL;
	if (!map || !key)
		return 0;
	switch (map->type) {
	case M_STATIC:
		*result_r = sift_strdup(map->value);
		return 1;
	case M_TEXTHASH:
	case M_INLINE:
		return kv_lookup(map, key, result_r);
	case M_INDEXED:
		return map_idx_lookup(map->idx, key, result_r);
	default:
		return rules_lookup(map, key, result_r);
	}
}

const char *sift_map_spec(const struct sift_map *map)
{
	return map ? map->spec : "";
}

bool sift_map_is_pattern(const struct sift_map *map)
{
	return map && (map->type == M_PCRE || map->type == M_REGEXP || map->type == M_CIDR);
}
