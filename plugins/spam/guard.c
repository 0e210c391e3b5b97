/*
 * guard.c - first-character guards on the branches of large alternations.
 *
 * PCRE2 tries the branches of an alternation one after the other, and
 * descends into each branch's nested groups before it finds that the
 * octet at hand cannot start it. The stock ruleset's form rules
 * (__FILL_THIS_FORM_*, 3 KB once ReplaceTags has expanded them) are
 * alternations of a dozen groups of field names, each an alternation of
 * its own, tried at nearly every octet of every line; Perl compiles such
 * alternations into a trie, PCRE2 does not. So before compiling a regex,
 * each branch (of an alternation of GUARD_MIN_BRANCHES or more) that
 * cannot match the empty string, does not start with a plain character
 * test already, and whose first octet is one of a known set gets a
 * lookahead for that set, (?=[...]): one class test instead of the
 * descent. Every match of the branch begins with an octet of the set,
 * so the lookahead succeeds wherever the branch could match: what the
 * regex matches, where, and which branch wins are unchanged (capture
 * numbers too: a lookahead captures nothing).
 *
 * The pattern is read as PCRE syntax; extended mode, conditionals,
 * \Q...\E, UTF patterns and anything this reader does not take leave it
 * as written. Sets are taken in both cases of each letter, whatever the
 * flags.
 */
#include "internal.h"

#define GUARD_MIN_BRANCHES 3
#define GUARD_MAX_SET	   200 /* octets: a larger set hardly filters */
#define GUARD_MAX_DEPTH	   64
#define GUARD_MAX_INSERTS  4096

static void fs_add(struct fset *s, unsigned c)
{
	s->w[c >> 6] |= 1ull << (c & 63);
}

static void fs_or(struct fset *d, const struct fset *s)
{
	for (int i = 0; i < 4; i++)
		d->w[i] |= s->w[i];
}

static void fs_all(struct fset *s)
{
	memset(s, 0xff, sizeof(*s));
}

/* Both cases of every letter. */
static void fs_fold(struct fset *s)
{
	for (unsigned c = 'a'; c <= 'z'; c++)
		if (fs_has(s, c) || fs_has(s, c - 'a' + 'A')) {
			fs_add(s, c);
			fs_add(s, c - 'a' + 'A');
		}
}

/* What a node may begin with: the first octets of its non-empty matches,
 * and whether it matches the empty string; all: every octet any of its
 * matches may consume (not folded). */
struct first {
	struct fset set, all;
	bool nullable;
	bool simple; /* a sequence that starts with one character that must match (a class
		      * test of its own: a guard would add one) */
};

struct insert {
	size_t at;
	struct fset set;
};

struct gparser {
	const char *pat, *p;
	bool bad;
	int depth;
	struct insert *ins;
	size_t nins, cap;
};

static void add_insert(struct gparser *g, size_t at, const struct fset *set)
{
	if (g->nins == GUARD_MAX_INSERTS) {
		g->bad = true;
		return;
	}
	if (g->nins == g->cap) {
		g->cap = g->cap ? g->cap * 2 : 32;
		g->ins = xrealloc(g->ins, g->cap * sizeof(*g->ins));
	}
	g->ins[g->nins++] = (struct insert){at, *set};
}

static int hexv(int c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
				      : -1;
}

static void class_escape(int c, struct fset *s)
{
	for (unsigned i = 0; i < 256; i++) {
		bool in = c == 'd' || c == 'D'	 ? i >= '0' && i <= '9'
			  : c == 'w' || c == 'W' ? (i < 128 && isalnum((int)i)) || i == '_'
			  : c == 's' || c == 'S' ? i == ' ' || (i >= 9 && i <= 13)
			  : c == 'h' || c == 'H' ? i == ' ' || i == '\t' || i == 0xa0
						 : (i >= 10 && i <= 13) || i == 0x85;
		if (c >= 'A' && c <= 'Z')
			in = !in;
		if (in)
			fs_add(s, i);
	}
}

/* An escape after the backslash: its octet (0-255), -1 for a class
 * escape (its octets added to s), -2 for one not taken. */
static int escape(struct gparser *g, struct fset *s)
{
	int c = (unsigned char)*g->p;
	if (!c)
		return -2;
	g->p++;
	switch (c) {
	case 'd':
	case 'D':
	case 'w':
	case 'W':
	case 's':
	case 'S':
	case 'h':
	case 'H':
	case 'v':
	case 'V':
		class_escape(c, s);
		return -1;
	case 't':
		return '\t';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 'f':
		return '\f';
	case 'e':
		return 27;
	case 'a':
		return 7;
	case 'x': {
		int v = 0, nd = 0;
		if (*g->p == '{') {
			const char *q = g->p + 1;
			while (hexv(*q) >= 0 && nd < 8) {
				v = v * 16 + hexv(*q++);
				nd++;
			}
			if (*q != '}' || !nd || v > 255)
				return -2;
			g->p = q + 1;
			return v;
		}
		while (nd < 2 && hexv(*g->p) >= 0) {
			v = v * 16 + hexv(*g->p++);
			nd++;
		}
		return v;
	}
	default:
		return isalnum(c) ? -2 : c;
	}
}

/* A class after its '[': the octets it matches. */
static bool read_class(struct gparser *g, struct fset *out)
{
	struct fset s = {{0}};
	bool neg = *g->p == '^';
	if (neg)
		g->p++;
	for (bool first = true;; first = false) {
		int c = (unsigned char)*g->p;
		if (!c)
			return false;
		if (c == ']' && !first) {
			g->p++;
			break;
		}
		if (c == '[' && g->p[1] == ':') {
			const char *e = strstr(g->p + 2, ":]");
			if (!e)
				return false;
			fs_all(&s); /* a POSIX class: taken as anything */
			g->p = e + 2;
			continue;
		}
		int v;
		if (c == '\\') {
			g->p++;
			if (*g->p == 'b') {
				g->p++;
				v = 8;
			} else if ((v = escape(g, &s)) == -2)
				return false;
		} else {
			v = c;
			g->p++;
		}
		if (v == -1)
			continue;
		if (*g->p == '-' && g->p[1] && g->p[1] != ']') {
			g->p++;
			int w;
			if (*g->p == '\\') {
				g->p++;
				struct fset t = {{0}};
				if ((w = escape(g, &t)) < 0)
					return false;
			} else if (*g->p == '[')
				return false;
			else
				w = (unsigned char)*g->p++;
			if (w < v)
				return false;
			for (int i = v; i <= w; i++)
				fs_add(&s, (unsigned)i);
			continue;
		}
		fs_add(&s, (unsigned)v);
	}
	if (neg)
		for (int i = 0; i < 4; i++)
			s.w[i] = ~s.w[i];
	*out = s;
	return true;
}

bool regex_class_set(const char *p, bool caseless, struct fset *out)
{
	struct gparser g = {.pat = p, .p = p + 1};
	if (*p != '[' || !read_class(&g, out))
		return false;
	if (caseless)
		fs_fold(out);
	return true;
}

static struct first parse_alt(struct gparser *g);

/* Skips a quantifier; *zero when it allows no repetition at all ({0}, ?, *). */
static bool quantifier(struct gparser *g, bool *zero)
{
	char c = *g->p;
	if (c == '*' || c == '?') {
		*zero = true;
		g->p++;
	} else if (c == '+') {
		*zero = false;
		g->p++;
	} else if (c == '{') {
		const char *q = g->p + 1;
		if (!isdigit((unsigned char)*q))
			return false;
		long lo = 0;
		for (; isdigit((unsigned char)*q); q++)
			lo = lo < 100000 ? lo * 10 + (*q - '0') : lo;
		if (*q == ',') {
			q++;
			while (isdigit((unsigned char)*q))
				q++;
		}
		if (*q != '}')
			return false; /* a literal brace */
		g->p = q + 1;
		*zero = lo == 0;
	} else
		return false;
	if (*g->p == '?' || *g->p == '+')
		g->p++;
	return true;
}

/* One atom: false at the end of a sequence (or on error). */
static bool atom(struct gparser *g, struct first *f)
{
	char c = *g->p;
	memset(f, 0, sizeof(*f));
	if (!c || c == '|' || c == ')')
		return false;
	if (c == '(') {
		g->p++;
		if (++g->depth > GUARD_MAX_DEPTH || *g->p == '*') {
			g->bad = true;
			return false;
		}
		bool zero_width = false;
		if (*g->p == '?') {
			const char *q = g->p + 1, *e;
			if (*q == ':' || *q == '>' || *q == '|')
				g->p = q + 1;
			else if (*q == '=' || *q == '!' || (*q == '<' && (q[1] == '=' || q[1] == '!'))) {
				zero_width = true;
				g->p = q + (*q == '<' ? 2 : 1);
			} else if (*q == '<' || *q == '\'' || (*q == 'P' && q[1] == '<')) {
				if (!(e = strpbrk(q + 1, ">'"))) {
					g->bad = true;
					return false;
				}
				g->p = e + 1;
			} else if (*q == '#' || *q == '&' || *q == 'R' || isdigit((unsigned char)*q) ||
				   (*q == 'P' && (q[1] == '>' || q[1] == '=')) ||
				   ((*q == '-' || *q == '+') && isdigit((unsigned char)q[1]))) {
				if (!(e = strchr(q, ')'))) {
					g->bad = true;
					return false;
				}
				g->p = e + 1;
				g->depth--;
				if (*q == '#')
					f->nullable = true; /* a comment */
				else {
					fs_all(&f->set); /* a call or back reference: anything */
					fs_all(&f->all);
					f->nullable = true;
				}
				return true;
			} else {
				const char *k = q;
				while (*k && strchr("imsnUJ-^", *k))
					k++;
				if (*k == ')') { /* (?i) */
					g->p = k + 1;
					g->depth--;
					f->nullable = true;
					return true;
				}
				if (*k != ':') {
					g->bad = true; /* extended mode, conditionals ... */
					return false;
				}
				g->p = k + 1;
			}
		}
		struct first in = parse_alt(g);
		if (g->bad || *g->p != ')') {
			g->bad = true;
			return false;
		}
		g->p++;
		g->depth--;
		if (zero_width)
			f->nullable = true; /* what a lookaround reads is not consumed */
		else
			*f = in;
		return true;
	}
	if (c == '[') {
		g->p++;
		if (!read_class(g, &f->set)) {
			g->bad = true;
			return false;
		}
		f->all = f->set;
		return true;
	}
	if (c == '\\') {
		g->p++;
		char k = *g->p;
		if (k && strchr("bBAzZ", k)) {
			g->p++;
			f->nullable = true;
			return true;
		}
		if (k == 'R' || k == 'X' || (k == 'N' && g->p[1] != '{')) {
			g->p++;
			fs_all(&f->set);
			fs_all(&f->all);
			return true;
		}
		if ((k >= '1' && k <= '9') || k == 'g' || k == 'k') {
			g->p++;
			if (*g->p == '{' || *g->p == '<' || *g->p == '\'') {
				const char *e = strpbrk(g->p, "}>'");
				if (!e) {
					g->bad = true;
					return false;
				}
				g->p = e + 1;
			} else
				while (isdigit((unsigned char)*g->p) || *g->p == '-')
					g->p++;
			fs_all(&f->set);
			fs_all(&f->all);
			f->nullable = true;
			return true;
		}
		int v = escape(g, &f->set);
		if (v == -2) {
			g->bad = true; /* \K, \G, \Q, \p, octal ... */
			return false;
		}
		if (v >= 0)
			fs_add(&f->set, (unsigned)v);
		f->all = f->set;
		return true;
	}
	g->p++;
	if (c == '.')
		fs_all(&f->set);
	else if (c == '^' || c == '$')
		f->nullable = true;
	else if (c == '*' || c == '+' || c == '?') {
		g->bad = true;
		return false;
	} else
		fs_add(&f->set, (unsigned char)c);
	f->all = f->set;
	return true;
}

static struct first parse_seq(struct gparser *g)
{
	struct first s = {.nullable = true};
	for (bool first = true;; first = false) {
		const char *at = g->p;
		struct first f;
		if (!atom(g, &f))
			break;
		/* one character: no group, no lookaround, not empty */
		bool one = *at != '(' && !f.nullable;
		bool zero;
		while (quantifier(g, &zero))
			if (zero)
				f.nullable = true;
		if (first)
			s.simple = one && !f.nullable;
		if (s.nullable)
			fs_or(&s.set, &f.set);
		fs_or(&s.all, &f.all);
		s.nullable = s.nullable && f.nullable;
	}
	return s;
}

static struct first parse_alt(struct gparser *g)
{
	size_t *starts = NULL, n = 0, cap = 0;
	struct first *br = NULL;
	struct first all = {.nullable = false};
	for (;;) {
		size_t at = (size_t)(g->p - g->pat);
		struct first f = parse_seq(g);
		if (g->bad)
			break;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			starts = xrealloc(starts, cap * sizeof(*starts));
			br = xrealloc(br, cap * sizeof(*br));
		}
		starts[n] = at;
		br[n++] = f;
		fs_or(&all.set, &f.set);
		fs_or(&all.all, &f.all);
		all.nullable = all.nullable || f.nullable;
		if (*g->p != '|')
			break;
		g->p++;
	}
	if (!g->bad && n >= GUARD_MIN_BRANCHES)
		for (size_t i = 0; i < n; i++) {
			if (br[i].nullable || br[i].simple)
				continue;
			fs_fold(&br[i].set);
			int k = fs_count(&br[i].set);
			if (k > 0 && k <= GUARD_MAX_SET)
				add_insert(g, starts[i], &br[i].set);
		}
	free(starts);
	free(br);
	return all;
}

static int cmp_insert(const void *a, const void *b)
{
	size_t x = ((const struct insert *)a)->at, y = ((const struct insert *)b)->at;
	return x < y ? -1 : x > y;
}

char *guard_pattern(const char *pat, const char *flags)
{
	if (flags && strchr(flags, 'x'))
		return NULL;
	struct gparser g = {.pat = pat, .p = pat};
	parse_alt(&g);
	if (g.bad || *g.p || !g.nins) {
		free(g.ins);
		return NULL;
	}
	qsort(g.ins, g.nins, sizeof(*g.ins), cmp_insert);
	struct sbuf b = {0};
	size_t from = 0;
	for (size_t i = 0; i < g.nins; i++) {
		sb_add(&b, pat + from, g.ins[i].at - from);
		from = g.ins[i].at;
		sb_adds(&b, "(?=[");
		for (unsigned c = 0; c < 256; c++) {
			if (!fs_has(&g.ins[i].set, c))
				continue;
			unsigned d = c;
			while (d < 255 && fs_has(&g.ins[i].set, d + 1))
				d++;
			char x[16];
			snprintf(x, sizeof(x), d > c ? "\\x%02x-\\x%02x" : "\\x%02x", c, d);
			sb_adds(&b, x);
			c = d;
		}
		sb_adds(&b, "])");
	}
	sb_adds(&b, pat + from);
	free(g.ins);
	return b.d;
}

int regex_items(const char *pat, struct regex_item *items, int max)
{
	struct gparser g = {.pat = pat, .p = pat};
	int n = 0;
	for (;;) {
		struct first f;
		if (!atom(&g, &f))
			break;
		bool zero;
		while (quantifier(&g, &zero))
			if (zero)
				f.nullable = true;
		if (n == max) {
			g.bad = true;
			break;
		}
		fs_fold(&f.all);
		items[n++] = (struct regex_item){.all = f.all, .nullable = f.nullable};
	}
	free(g.ins); /* the guards the groups' alternations would get */
	return g.bad || *g.p ? -1 : n;
}
