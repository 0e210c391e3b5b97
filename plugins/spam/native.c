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
 * Three shapes:
 * - a run: a top-level item, a class C repeated {m,} with m at least
 *   NATIVE_MIN_RUN (or a group of lookaheads and such a class, as
 *   (?:(?!--)[-0-9a-f]){10,64}), C leaving out most lowercase letters
 *   (any C when m is NATIVE_LONG_RUN or more: full's __LONGLINE,
 *   ^[^\r\n]{998}). Every match holds m octets of C in a row. The check
 *   looks at the last octet of a window of m first: one outside C rules
 *   out the window.
 * - words: the whole regex is (?:[C]{k,}[S]+){n}, after \b or nothing,
 *   with C and S disjoint. Every match holds n maximal runs of C, each of
 *   k octets or more, each followed by octets of S only up to the next
 *   (a run ends where S begins, since C and S are disjoint, and the next
 *   begins where S ends); after the last, one octet of S at least. The
 *   words checks of a group with the same C and S share one pass.
 * - a sequence: the look-alike rules (FUZZY_*: (?!money)<M><O><N><E><Y>,
 *   each letter an alternation of look-alike octets, UTF-8 sequences and
 *   character references, optionally repeated and with \W? between)
 *   give Hyperscan no literal to start from. The regex's top-level items
 *   that must match are positions, each with the octets any match of it
 *   may consume (B); the octets of the items that may match nothing
 *   (\W?, a lookaround counts none) are added to the position before
 *   them (its gap, G). Every match consumes octets of B1, then of B1 or
 *   G1, then one of B2, ...: a bit-parallel automaton (a position is
 *   entered by an octet of its B from the one before it, or from nothing
 *   for the first, and kept by an octet of its B or G) reaches the last
 *   position on every text the regex matches. Only rules that Hyperscan
 *   could not start from a literal are taken (no three positions in a
 *   row of one letter, both cases, and no gap), and only their first
 *   NATIVE_SEQ_MAX positions; the sequence checks of a group share a
 *   pass, NATIVE_SEQ_WORDS words of 64 positions (vectors of four words,
 *   one instruction each where the CPU has AVX2).
 * And one matcher: a counter, for a multiple rule whose regex is an
 * alternation of sequences of one to NATIVE_COUNT_LEN octets, each a
 * literal or a class (__E_LIKE_LETTER: e or one of its look-alikes in
 * UTF-8, counted up to 320 on every line; __LOWER_E: e). PCRE2 found each
 * match with a call of its own; native_count finds the same ones (the
 * leftmost offset where an alternative matches, the first alternative in
 * order, the next search from its end) in one loop, and PCRE2 is not
 * called. Only what this reader knows exactly is taken: literals, \xHH,
 * escaped punctuation and classes of those, no POSIX class, no other
 * escape, no quantifier, no assertion.
 * Only the top level of a regex is read (no top-level alternation, no
 * extended mode, no options set mid-regex, no UTF-mode regex; the
 * sequence reader, guard.c's, takes (?i) and the like, its sets holding
 * both cases of every letter, but not (?x)); anything this reader does
 * not know leaves the rule to Hyperscan. A check passes
 * every text the regex matches, so the hits stay the same: PCRE2 decides.
 */
#include <ctype.h>
#include <limits.h>

#include "internal.h"

/* A class of more octets than this filters too little to be worth it
 * ([^\r\n], a POSIX class this reader takes as anything). */
#define NATIVE_MAX_CLASS 192
/* A run's class takes at most this many of the 26 lowercase letters. */
#define NATIVE_MAX_LOWER 8
/* A sequence check: at least this many positions, of which the first
 * NATIVE_SEQ_MAX are checked; items read at most. */
#define NATIVE_SEQ_MIN	 5
#define NATIVE_SEQ_MAX	 8
#define NATIVE_SEQ_ITEMS 256

/* A run this long or longer is checked whatever its class: a window's
 * last octet outside the class skips the whole window (__LONGLINE's
 * [^\r\n]{998} looks at a few octets of each 998). */
#define NATIVE_LONG_RUN 128

/* The class at p as octets: caseless adds both cases; a class with a
 * member of 0x80 or above is taken as all of those (a superset). False
 * for one this reader does not take or that takes more than max octets. */
static bool class_octets(const char *p, bool caseless, struct fset *set, unsigned max)
{
	if (!regex_class_set(p, caseless, set))
		return false;
	if (set->w[2] | set->w[3])
		set->w[2] = set->w[3] = ~0ull;
	return (unsigned)fs_count(set) <= max;
}

/* Whether the group at p..e is (?:X[C]), X zero or more lookaheads: C's
 * octets in *set. */
static bool group_class(const char *p, const char *e, bool caseless, struct fset *set, unsigned max)
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
	return ce && ce + 1 == e && *ce == ')' && class_octets(q, caseless, set, max);
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
	if (!class_octets(c, caseless, &in, NATIVE_MAX_CLASS) ||
	    !class_octets(s, caseless, &sep, NATIVE_MAX_CLASS))
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

/* Lowercase letters in s. */
static unsigned lower_count(const struct fset *s)
{
	unsigned n = 0;
	for (unsigned o = 'a'; o <= 'z'; o++)
		n += fs_has(s, o);
	return n;
}

/* The run shape: the top-level item that repeats a class the most times
 * (at least NATIVE_MIN_RUN; a class of more than NATIVE_MAX_CLASS octets
 * only NATIVE_LONG_RUN times or more). */
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
			is_class = e && class_octets(p, caseless, &set, 256);
		} else if (*p == '(') {
			/* options set mid-regex change what follows */
			if (p[1] == '?' && p[2] != ':' && p[2] != '=' && p[2] != '!' && p[2] != '<' &&
			    p[2] != '>')
				return NULL;
			if (p[1] == '*') /* a verb: (*UTF) and the like */
				return NULL;
			e = regex_group_end(p);
			is_class = e && group_class(p, e, caseless, &set, 256);
		} else if (*p == '\\')
			e = regex_escape_end(p);
		else
			e = p + 1;
		if (!e)
			return NULL;
		unsigned long lo, hi;
		const char *q = regex_quantifier(e, &lo, &hi);
		if (is_class && lo >= NATIVE_MIN_RUN && lo > best_n &&
		    (lo >= NATIVE_LONG_RUN || fs_count(&set) <= NATIVE_MAX_CLASS)) {
			best = set;
			best_n = lo;
		}
		p = q;
	}
	if (!best_n)
		return NULL;
	/* ordinary text is mostly lowercase letters: a class that takes most
	 * of them finds a run to look at in nearly every word, where
	 * Hyperscan's scan is as cheap (unless the run is long) */
	if (best_n < NATIVE_LONG_RUN && lower_count(&best) > NATIVE_MAX_LOWER)
		return NULL;
	struct native_pf *np = xcalloc(1, sizeof(*np));
	for (unsigned o = 0; o < 256; o++)
		np->kind[o] = fs_has(&best, o) ? NATIVE_IN : 0;
	np->min = best_n > UINT_MAX ? UINT_MAX : (unsigned)best_n;
	return np;
}

/* One letter in both cases, or one octet that is not a letter: what
 * Hyperscan takes as a literal's character. */
static bool literal_octet(const struct fset *s)
{
	int n = fs_count(s);
	if (n == 1)
		return true;
	if (n != 2)
		return false;
	for (unsigned o = 'a'; o <= 'z'; o++)
		if (fs_has(s, o))
			return fs_has(s, o - 'a' + 'A');
	return false;
}

/* The sequence shape: positions from the top-level items (guard.c reads
 * them, letters in both cases whatever the flags: a superset). */
static struct native_pf *seq_shape(const char *pat)
{
	struct regex_item *it = xcalloc(NATIVE_SEQ_ITEMS, sizeof(*it));
	int n = regex_items(pat, it, NATIVE_SEQ_ITEMS);
	struct fset b[NATIVE_SEQ_MAX], gap[NATIVE_SEQ_MAX];
	unsigned k = 0, lit = 0, total = 0;
	bool ok = n > 0;
	for (int i = 0; ok && i < n; i++) {
		if (!fs_count(&it[i].all))
			continue; /* a lookaround, an anchor */
		if (it[i].nullable) {
			if (k && k <= NATIVE_SEQ_MAX)
				for (int w = 0; w < 4; w++)
					gap[k - 1].w[w] |= it[i].all.w[w];
			if (k)
				lit = 0; /* a gap ends a literal */
			continue;
		}
		/* a literal of three or more: Hyperscan starts from it */
		lit = literal_octet(&it[i].all) ? lit + 1 : 0;
		if (lit >= 3 || fs_count(&it[i].all) > NATIVE_MAX_CLASS ||
		    lower_count(&it[i].all) > NATIVE_MAX_LOWER)
			ok = false;
		else if (k < NATIVE_SEQ_MAX) {
			b[k] = it[i].all;
			gap[k++] = it[i].all;
		}
		total++;
	}
	free(it);
	if (!ok || total < NATIVE_SEQ_MIN)
		return NULL;
	struct native_pf *np = xcalloc(1, sizeof(*np));
	np->seq = k;
	np->slot = k - 1;
	np->tab = xcalloc(1, sizeof(*np->tab));
	np->tab->first[0] = 1;
	np->tab->used = k;
	for (unsigned i = 0; i < k; i++)
		for (unsigned o = 0; o < 256; o++) {
			if (fs_has(&b[i], o))
				np->tab->enter[o][0] |= 1ull << i;
			if (fs_has(&gap[i], o))
				np->tab->stay[o][0] |= 1ull << i;
		}
	return np;
}

struct native_pf *native_prefilter(const char *pat, const char *flags)
{
	if (!pat || (flags && strchr(flags, 'x')))
		return NULL;
	bool caseless = flags && strchr(flags, 'i');
	struct native_pf *np = words_shape(pat, caseless);
	if (!np)
		np = run_shape(pat, caseless);
	return np ? np : seq_shape(pat);
}

/* One octet of a counter at p: a literal, \xHH, an escaped punctuation
 * character or a class of such (no POSIX class, no other escape, not
 * negated when caseless: the octets must be exactly the regex's); its
 * end, NULL for anything else. */
static const char *count_item(const char *p, bool caseless, struct fset *set)
{
	memset(set, 0, sizeof(*set));
	if (*p == '[') {
		const char *e = regex_class_end(p);
		/* caseless, guard.c's reader folds a negated class after
		 * negating it: [^a] would take a and A back */
		if (!e || (caseless && p[1] == '^'))
			return NULL;
		for (const char *q = p + 1; q < e - 1; q++) {
			if (q[0] == '[' && q[1] == ':')
				return NULL;
			if (*q != '\\')
				continue;
			if (q[1] == 'x' && isxdigit((unsigned char)q[2]) && isxdigit((unsigned char)q[3]))
				q += 3;
			else if (ispunct((unsigned char)q[1]))
				q++;
			else
				return NULL;
		}
		return regex_class_set(p, caseless, set) ? e : NULL;
	}
	unsigned c;
	const char *e;
	if (*p == '\\') {
		if (p[1] == 'x' && isxdigit((unsigned char)p[2]) && isxdigit((unsigned char)p[3])) {
			char hex[3] = {p[2], p[3], 0};
			c = (unsigned)strtoul(hex, NULL, 16);
			e = p + 4;
		} else if (ispunct((unsigned char)p[1])) {
			c = (unsigned char)p[1];
			e = p + 2;
		} else
			return NULL;
	} else if (!*p || strchr("()|.^$*+?{}[]", *p))
		return NULL;
	else {
		c = (unsigned char)*p;
		e = p + 1;
	}
	set->w[c >> 6] |= 1ull << (c & 63);
	if (caseless && c < 128 && isalpha((int)c)) {
		unsigned o = (unsigned)(isupper((int)c) ? tolower((int)c) : toupper((int)c));
		set->w[o >> 6] |= 1ull << (o & 63);
	}
	return e;
}

struct native_pf *native_counter(const char *pat, const char *flags)
{
	if (!pat || (flags && strpbrk(flags, "xm")))
		return NULL;
	bool caseless = flags && strchr(flags, 'i');
	const char *p = pat, *end = pat + strlen(pat);
	/* one non-capturing group around it all, or none */
	if (strncmp(p, "(?:", 3) == 0 && regex_group_end(p) == end) {
		p += 3;
		end--;
	}
	struct fset set[NATIVE_COUNT_ALTS * NATIVE_COUNT_LEN];
	unsigned char alen[NATIVE_COUNT_ALTS];
	unsigned nalt = 0, k = 0;
	for (;;) {
		if (p == end || *p == '|') {
			if (!k || nalt == NATIVE_COUNT_ALTS)
				return NULL; /* an empty alternative, or too many */
			alen[nalt++] = (unsigned char)k;
			k = 0;
			if (p == end)
				break;
			p++;
			continue;
		}
		if (k == NATIVE_COUNT_LEN || nalt == NATIVE_COUNT_ALTS)
			return NULL;
		struct fset *o = &set[nalt * NATIVE_COUNT_LEN + k];
		const char *q = count_item(p, caseless, o);
		if (!q || q > end || !fs_count(o))
			return NULL;
		unsigned long lo, hi;
		if (regex_quantifier(q, &lo, &hi) != q)
			return NULL; /* a quantifier */
		k++;
		p = q;
	}
	struct native_pf *np = xcalloc(1, sizeof(*np));
	np->nalt = nalt;
	memcpy(np->alen, alen, nalt);
	np->aset = xmalloc(nalt * NATIVE_COUNT_LEN * sizeof(struct fset));
	memcpy(np->aset, set, nalt * NATIVE_COUNT_LEN * sizeof(struct fset));
	np->afirst = xcalloc(256, sizeof(uint32_t));
	for (unsigned a = 0; a < nalt; a++)
		for (unsigned o = 0; o < 256; o++)
			if (fs_has(&set[a * NATIVE_COUNT_LEN], o))
				np->afirst[o] |= 1u << a;
	return np;
}

int native_count(const struct native_pf *n, const char *s, size_t len, int max)
{
	const unsigned char *u = (const unsigned char *)s;
	int found = 0;
	for (size_t i = 0; i < len && found < max;) {
		uint32_t cand = n->afirst[u[i]];
		size_t step = 1;
		while (cand) {
			unsigned a = (unsigned)__builtin_ctz(cand);
			cand &= cand - 1;
			size_t l = n->alen[a];
			if (l > len - i)
				continue;
			size_t k = 1;
			while (k < l && fs_has(&n->aset[a * NATIVE_COUNT_LEN + k], u[i + k]))
				k++;
			if (k == l) {
				found++;
				step = l;
				break;
			}
		}
		i += step;
	}
	return found;
}

void native_free(struct native_pf *n)
{
	if (n) {
		free(n->tab);
		free(n->aset);
		free(n->afirst);
	}
	free(n);
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

/* Places sequence check b in lead table t, if there is room: its
 * positions in one word. */
static bool seq_place(struct native_seqtab *t, struct native_pf *b)
{
	unsigned at = t->used, w = at / 64, off = at % 64;
	if (off + b->seq > 64) {
		w++;
		off = 0;
	}
	if (w >= NATIVE_SEQ_WORDS)
		return false;
	const struct native_seqtab *own = b->tab;
	for (unsigned o = 0; o < 256; o++) {
		t->enter[o][w] |= own->enter[o][0] << off;
		t->stay[o][w] |= own->stay[o][0] << off;
	}
	t->first[w] |= 1ull << off;
	t->used = w * 64 + off + b->seq;
	b->slot = w * 64 + off + b->seq - 1;
	return true;
}

/* The sequence checks of v, side by side in as few tables as fit. */
static void seq_share(struct native_pf *const *v, size_t n)
{
	struct native_pf *lead = NULL;
	struct native_seqtab *t = NULL;
	for (size_t i = 0; i < n; i++) {
		struct native_pf *b = v[i];
		if (!b->seq || b->lead)
			continue;
		if (!t || !seq_place(t, b)) {
			if (lead) {
				free(lead->tab);
				lead->tab = t;
			}
			lead = b;
			t = xcalloc(1, sizeof(*t));
			seq_place(t, b);
		}
		b->lead = lead;
		if (b != lead) {
			free(b->tab);
			b->tab = NULL;
		}
	}
	if (lead) {
		free(lead->tab);
		lead->tab = t;
	}
}

void native_share(struct native_pf *const *v, size_t n)
{
	seq_share(v, n);
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

/* Every sequence check of t over s at once: the positions reached, as
 * bits. Four words to a vector: 256-bit instructions where the CPU has
 * them, pairs of 128-bit ones otherwise. The table is malloc'd (16-octet
 * alignment): the vectors are read unaligned. */
typedef uint64_t seqvec __attribute__((vector_size(32), aligned(8)));
#define SEQ_VECS (NATIVE_SEQ_WORDS / 4)

static inline __attribute__((always_inline)) void seq_run(const struct native_seqtab *t,
							  const unsigned char *s, size_t len, uint64_t *out)
{
	seqvec d[SEQ_VECS] = {0}, seen[SEQ_VECS] = {0}, first[SEQ_VECS];
	memcpy(first, t->first, sizeof(first));
	for (size_t i = 0; i < len; i++) {
		const seqvec *en = (const seqvec *)t->enter[s[i]], *st = (const seqvec *)t->stay[s[i]];
#pragma GCC unroll 4
		for (int v = 0; v < SEQ_VECS; v++) {
			d[v] = ((((d[v] << 1) & ~first[v]) | first[v]) & en[v]) | (d[v] & st[v]);
			seen[v] |= d[v];
		}
	}
	memcpy(out, seen, sizeof(seen));
}

__attribute__((target("avx2"))) static void seq_pass_avx2(const struct native_seqtab *t,
							  const unsigned char *s, size_t len, uint64_t *out)
{
	seq_run(t, s, len, out);
}

static void seq_pass(const struct native_seqtab *t, const unsigned char *s, size_t len, uint64_t *out)
{
	static int avx2 = -1; /* threads racing here store the same answer */
	int has = __atomic_load_n(&avx2, __ATOMIC_RELAXED);
	if (has < 0) {
		__builtin_cpu_init();
		has = __builtin_cpu_supports("avx2") != 0;
		__atomic_store_n(&avx2, has, __ATOMIC_RELAXED);
	}
	if (has)
		seq_pass_avx2(t, s, len, out);
	else
		seq_run(t, s, len, out);
}

bool native_memoized(const struct native_pf *n, const struct native_memo *memo)
{
	return (n->seq || n->words) && memo->lead == (n->lead ? n->lead : n);
}

bool native_possible(const struct native_pf *n, const char *s, size_t len, struct native_memo *memo)
{
	if (n->nalt) /* a counter: count_matches counts */
		return true;
	if (n->seq) {
		const struct native_pf *lead = n->lead ? n->lead : n;
		if (memo->lead != lead) {
			seq_pass(lead->tab, (const unsigned char *)s, len, memo->bits);
			memo->lead = lead;
		}
		return memo->bits[n->slot / 64] >> (n->slot % 64) & 1;
	}
	if (!n->words)
		return has_run(n, (const unsigned char *)s, len);
	const struct native_pf *lead = n->lead ? n->lead : n;
	if (memo->lead != lead) {
		if (lead->nshared)
			memo->bits[0] = words_pass(lead, (const unsigned char *)s, len);
		else { /* not linked (native_share not called): alone */
			struct native_pf one = *n;
			one.shared[0] = n;
			one.nshared = 1;
			memo->bits[0] = words_pass(&one, (const unsigned char *)s, len);
		}
		memo->lead = lead;
	}
	return memo->bits[0] >> n->slot & 1;
}
