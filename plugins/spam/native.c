/*
 * native.c - prefilters checked in C for regex shapes Hyperscan scans
 * slowly.
 *
 * A counted class with no literal to start from (__HEXHASHWORD_S2EU's
 * [-0-9a-f]{10,64}, __UC_GIBB_OBFU's [A-Z]{16,}) or a run of long words
 * (__LONGWORDS_*: \b(?:[a-z]{8,}[\s\.]+){6}) is an automaton Hyperscan
 * runs over every octet of every line, whatever the rest of the database
 * holds: the stock ruleset's five such body rules are a sixth of its
 * body scan on the MX mix. The same conditions are a loop over the octets
 * in C, and ordinary text rarely passes them. A body rule with such a
 * shape leaves its group's Hyperscan database, and PCRE2 matches it only
 * on the lines its check passes.
 *
 * Two shapes:
 * - a run: a top-level item, a class C repeated {m,} with m at least
 *   NATIVE_MIN_RUN (or a group of lookaheads and such a class, as
 *   (?:(?!--)[-0-9a-f]){10,64}), C leaving out most lowercase letters.
 *   Every match holds m octets of C in a row. The check looks at the last
 *   octet of a window of m first: one outside C rules out the window.
 * - words: the whole regex is (?:[C]{k,}[S]+){n}, after \b or nothing,
 *   with C and S disjoint. Every match holds n maximal runs of C, each of
 *   k octets or more, each followed by octets of S only up to the next
 *   (a run ends where S begins, since C and S are disjoint, and the next
 *   begins where S ends); after the last, one octet of S at least. The
 *   words checks of a group with the same C and S share one pass.
 * Only the top level of a regex is read (no top-level alternation, no
 * extended mode, no options set mid-regex, no UTF-mode regex); anything
 * this reader does not know leaves the rule to Hyperscan. A check passes
 * every text the regex matches, so the hits stay the same: PCRE2 decides.
 */
#include <limits.h>

#include "internal.h"

/* A class of more octets than this filters too little to be worth it
 * ([^\r\n], a POSIX class this reader takes as anything). */
#define NATIVE_MAX_CLASS 192
/* A run's class takes at most this many of the 26 lowercase letters. */
#define NATIVE_MAX_LOWER 8

/* The class at p as octets: caseless adds both cases; a class with a
 * member of 0x80 or above is taken as all of those (a superset). False
 * for one this reader does not take or that takes too much. */
static bool class_octets(const char *p, bool caseless, struct fset *set)
{
	if (!regex_class_set(p, caseless, set))
		return false;
	if (set->w[2] | set->w[3])
		set->w[2] = set->w[3] = ~0ull;
	return fs_count(set) <= NATIVE_MAX_CLASS;
}

/* Whether the group at p..e is (?:X[C]), X zero or more lookaheads: C's
 * octets in *set. */
static bool group_class(const char *p, const char *e, bool caseless, struct fset *set)
{
	if (strncmp(p, "(?:", 3) != 0)
		return false;
	const char *q = p + 3;
	while (q[0] == '(' && q[1] == '?' && (q[2] == '=' || q[2] == '!')) {
		q = regex_group_end(q);
		if (!q || q >= e)
			return false;
	}
	if (*q != '[')
		return false;
	const char *ce = regex_class_end(q);
	return ce && ce + 1 == e && *ce == ')' && class_octets(q, caseless, set);
}

/* The words shape: pat is [\b](?:[C]{k,}[S]+){n}. */
static struct native_pf *words_shape(const char *pat, bool caseless)
{
	const char *p = pat;
	if (strncmp(p, "\\b", 2) == 0)
		p += 2;
	if (strncmp(p, "(?:[", 4) != 0)
		return NULL;
	const char *ge = regex_group_end(p);
	if (!ge)
		return NULL;
	unsigned long n, hi, k, lo;
	const char *end = regex_quantifier(ge, &n, &hi);
	if (*end || n < 2)
		return NULL;
	/* the word: [C]{k,} */
	const char *c = p + 3, *ce = regex_class_end(c);
	if (!ce)
		return NULL;
	const char *s = regex_quantifier(ce, &k, &hi);
	if (k < 1 || *s != '[')
		return NULL;
	/* the separators: [S]+, the group's last item */
	const char *se = regex_class_end(s);
	if (!se || *regex_quantifier(se, &lo, &hi) != ')' || lo != 1 || hi != ULONG_MAX ||
	    regex_quantifier(se, &lo, &hi) + 1 != ge)
		return NULL;
	struct fset in, sep;
	if (!class_octets(c, caseless, &in) || !class_octets(s, caseless, &sep))
		return NULL;
	struct native_pf *np = xcalloc(1, sizeof(*np));
	for (unsigned o = 0; o < 256; o++) {
		np->kind[o] = (unsigned char)((fs_has(&in, o) ? NATIVE_IN : 0) |
					      (fs_has(&sep, o) ? NATIVE_SEP : 0));
		if (np->kind[o] == (NATIVE_IN | NATIVE_SEP)) { /* not disjoint */
			free(np);
			return NULL;
		}
	}
	np->min = k > UINT_MAX ? UINT_MAX : (unsigned)k;
	np->words = n > UINT_MAX ? UINT_MAX : (unsigned)n;
	return np;
}

/* The run shape: the top-level item that repeats a class the most times
 * (at least NATIVE_MIN_RUN). */
static struct native_pf *run_shape(const char *pat, bool caseless)
{
	struct fset best = {{0}}, set;
	unsigned long best_n = 0;
	for (const char *p = pat; *p;) {
		const char *e;
		bool is_class = false;
		if (*p == '|' || *p == ')')
			return NULL; /* a top-level alternation (or a stray ')') */
		if (*p == '[') {
			e = regex_class_end(p);
			is_class = e && class_octets(p, caseless, &set);
		} else if (*p == '(') {
			/* options set mid-regex change what follows */
			if (p[1] == '?' && p[2] != ':' && p[2] != '=' && p[2] != '!' && p[2] != '<' &&
			    p[2] != '>')
				return NULL;
			if (p[1] == '*') /* a verb: (*UTF) and the like */
				return NULL;
			e = regex_group_end(p);
			is_class = e && group_class(p, e, caseless, &set);
		} else if (*p == '\\')
			e = regex_escape_end(p);
		else
			e = p + 1;
		if (!e)
			return NULL;
		unsigned long lo, hi;
		const char *q = regex_quantifier(e, &lo, &hi);
		if (is_class && lo >= NATIVE_MIN_RUN && lo > best_n) {
			best = set;
			best_n = lo;
		}
		p = q;
	}
	if (!best_n)
		return NULL;
	/* ordinary text is mostly lowercase letters: a class that takes most
	 * of them finds a run to look at in nearly every word, where
	 * Hyperscan's scan is as cheap */
	unsigned lower = 0;
	for (unsigned o = 'a'; o <= 'z'; o++)
		lower += fs_has(&best, o);
	if (lower > NATIVE_MAX_LOWER)
		return NULL;
	struct native_pf *np = xcalloc(1, sizeof(*np));
	for (unsigned o = 0; o < 256; o++)
		np->kind[o] = fs_has(&best, o) ? NATIVE_IN : 0;
	np->min = best_n > UINT_MAX ? UINT_MAX : (unsigned)best_n;
	return np;
}

struct native_pf *native_prefilter(const char *pat, const char *flags)
{
	if (!pat || (flags && strchr(flags, 'x')))
		return NULL;
	bool caseless = flags && strchr(flags, 'i');
	struct native_pf *np = words_shape(pat, caseless);
	return np ? np : run_shape(pat, caseless);
}

/* min octets of the class in a row: the window's last octet is looked at
 * first, and one outside the class skips the whole window. */
static bool has_run(const struct native_pf *n, const unsigned char *s, size_t len)
{
	size_t m = n->min, i = 0;
	while (i <= len && m <= len - i) {
		size_t e = i + m - 1;
		if (!(n->kind[s[e]] & NATIVE_IN)) {
			i = e + 1;
			continue;
		}
		size_t k = e;
		while (k > i && n->kind[s[k - 1]] & NATIVE_IN)
			k--;
		if (k == i)
			return true;
		size_t j = e + 1;
		while (j < len && n->kind[s[j]] & NATIVE_IN)
			j++;
		if (j - k >= m)
			return true;
		i = j + 1;
	}
	return false;
}

/* The words checks of lead: for each (its shared[]), maximal runs of the
 * class, each of min octets or more and followed by separators up to the
 * next, words of them in a row, the last followed by one separator at
 * least. One pass for them all: run counts the octets of the class so
 * far; at the end of a run each check counts it in its row when it
 * qualifies and its row was not broken since the last (pending). The
 * answers as bits, by slot. */
static unsigned words_pass(const struct native_pf *lead, const unsigned char *s, size_t len)
{
	const unsigned char *kind = lead->kind;
	unsigned n = lead->nshared, row[NATIVE_MAX_SHARED] = {0}, min[NATIVE_MAX_SHARED],
		 words[NATIVE_MAX_SHARED], bits = 0, all = (1u << n) - 1;
	bool pending[NATIVE_MAX_SHARED] = {0};
	for (unsigned k = 0; k < n; k++) {
		min[k] = lead->shared[k]->min;
		words[k] = lead->shared[k]->words;
	}
	size_t run = 0;
	bool broken = false; /* since the last run ended: an octet neither in the class nor a separator */
	for (size_t i = 0; i < len; i++) {
		unsigned c = kind[s[i]];
		if (c & NATIVE_IN) {
			run++;
			continue;
		}
		if (run) { /* a run ends here */
			bool sep = c & NATIVE_SEP;
			for (unsigned k = 0; k < n; k++) {
				if (run >= min[k] && sep) {
					if (!pending[k] || broken)
						row[k] = 0;
					if (++row[k] >= words[k])
						bits |= 1u << k;
					pending[k] = true;
				} else
					pending[k] = false;
			}
			if (bits == all)
				break;
			broken = !sep;
			run = 0;
		} else if (!(c & NATIVE_SEP))
			broken = true;
	}
	return bits;
}

void native_share(struct native_pf *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct native_pf *a = v[i];
		if (!a->words || a->lead)
			continue;
		a->lead = a;
		a->slot = 0;
		a->shared[a->nshared++] = a;
		for (size_t j = i + 1; j < n && a->nshared < NATIVE_MAX_SHARED; j++) {
			struct native_pf *b = v[j];
			if (b->words && !b->lead && memcmp(a->kind, b->kind, sizeof(a->kind)) == 0) {
				b->lead = a;
				b->slot = a->nshared;
				a->shared[a->nshared++] = b;
			}
		}
	}
}

bool native_possible(const struct native_pf *n, const char *s, size_t len, struct native_memo *memo)
{
	if (!n->words)
		return has_run(n, (const unsigned char *)s, len);
	const struct native_pf *lead = n->lead ? n->lead : n;
	if (memo->lead != lead) {
		if (lead->nshared)
			memo->bits = words_pass(lead, (const unsigned char *)s, len);
		else { /* not linked (native_share not called): alone */
			struct native_pf one = *n;
			one.shared[0] = n;
			one.nshared = 1;
			memo->bits = words_pass(&one, (const unsigned char *)s, len);
		}
		memo->lead = lead;
	}
	return memo->bits >> n->slot & 1;
}
