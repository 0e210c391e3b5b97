/*
 * prefix.c - a shorter prefilter for the regexes Hyperscan scans slowly.
 *
 * The "fuzzy" rules of the stock ruleset (FUZZY_PHARMACY, TVD_FUZZY_*: a
 * word spelt with a class of look-alikes for every letter, each repeated
 * {1,2} and separated by \W{0,2}) become NFAs that Hyperscan runs at every
 * octet, or are too large for a database at all and PCRE2 runs them on
 * every line. The first few items of such a pattern make a small DFA that
 * Hyperscan scans at full speed and that ordinary text rarely matches. Any
 * match of a regex begins with a match of each of its top-level prefixes,
 * so the prefix is a valid prefilter: PCRE2 still confirms every candidate
 * with the whole regex, and the hits stay the same.
 *
 * Only the top level of the pattern is read (no top-level alternation, no
 * extended mode); anything this reader does not know leaves the pattern
 * whole.
 */
#include <limits.h>

#include "internal.h"

const char *regex_class_end(const char *p)
{
	p++;
	if (*p == '^')
		p++;
	if (*p == ']')
		p++;
	while (*p && *p != ']') {
		if (*p == '\\') {
			if (!p[1])
				return NULL;
			p += 2;
		} else if (p[0] == '[' && p[1] == ':') {
			const char *e = strstr(p + 2, ":]");
			if (!e)
				return NULL;
			p = e + 2;
		} else
			p++;
	}
	return *p ? p + 1 : NULL;
}

const char *regex_escape_end(const char *p)
{
	unsigned char c = (unsigned char)p[1];
	if (!c || c == 'Q' || c == 'E')
		return NULL;
	p += 2;
	if (c == 'c')
		return *p ? p + 1 : NULL;
	if (c >= '0' && c <= '9') {
		for (int k = 0; k < 2 && *p >= '0' && *p <= '9'; k++)
			p++;
		return p;
	}
	if ((c == 'x' || c == 'o' || c == 'p' || c == 'P' || c == 'g' || c == 'k' || c == 'N') &&
	    (*p == '{' || ((c == 'g' || c == 'k') && (*p == '<' || *p == '\'')))) {
		char close = *p == '{' ? '}' : *p == '<' ? '>' : '\'';
		const char *e = strchr(p + 1, close);
		return e ? e + 1 : NULL;
	}
	if (c == 'x')
		for (int k = 0; k < 2 && isxdigit((unsigned char)*p); k++)
			p++;
	else if ((c == 'p' || c == 'P') && *p)
		p++;
	return p;
}

const char *regex_group_end(const char *p)
{
	int depth = 0;
	while (*p) {
		if (*p == '\\') {
			p = regex_escape_end(p);
			if (!p)
				return NULL;
			continue;
		}
		if (*p == '[') {
			p = regex_class_end(p);
			if (!p)
				return NULL;
			continue;
		}
		if (*p == '(')
			depth++;
		else if (*p == ')' && --depth == 0)
			return p + 1;
		p++;
	}
	return NULL;
}

const char *regex_quantifier(const char *p, unsigned long *lo, unsigned long *hi)
{
	const char *start = p;
	*lo = *hi = 1;
	if (*p == '*' || *p == '?' || *p == '+') {
		*lo = *p == '+';
		*hi = *p == '?' ? 1 : ULONG_MAX;
		p++;
	} else if (*p == '{') {
		char *q;
		if (!isdigit((unsigned char)p[1]))
			return p; /* a literal '{' */
		unsigned long l = strtoul(p + 1, &q, 10), h = l;
		if (*q == ',') {
			q++;
			h = isdigit((unsigned char)*q) ? strtoul(q, &q, 10) : ULONG_MAX;
		}
		if (*q != '}')
			return p;
		*lo = l;
		*hi = h;
		p = q + 1;
	} else
		return p;
	if (p > start && (*p == '?' || *p == '+'))
		p++;
	return p;
}

/* Past the quantifier at p, if any. *optional: it allows no occurrence;
 * *repeated: it allows more than one. */
static const char *quantifier_end(const char *p, bool *optional, bool *repeated)
{
	unsigned long lo, hi;
	const char *e = regex_quantifier(p, &lo, &hi);
	*optional = lo == 0;
	*repeated = hi > 1;
	return e;
}

/* The top-level items of pat: the end of each that must match in cuts[]
 * (at most max), their count returned (-1: a pattern this reader leaves
 * whole); *nrep: how many of them may repeat. */
static int walk(const char *pat, const char *flags, size_t *cuts, int max, unsigned *nrep)
{
	if (flags && strchr(flags, 'x'))
		return -1;
	const char *p = pat;
	int nmand = 0;
	*nrep = 0;
	while (*p) {
		const char *s = p;
		bool zero_width = false;
		if (*p == '|' || *p == ')' || *p == '*' || *p == '+' || *p == '?' || *p == '{')
			return -1;
		if (*p == '\\') {
			p = regex_escape_end(p);
			if (!p)
				return -1;
			zero_width = strchr("bBAzZGK", s[1]) != NULL;
		} else if (*p == '[') {
			p = regex_class_end(p);
		} else if (*p == '(') {
			p = regex_group_end(p);
			if (s[1] == '*' || (s[1] == '?' && s[2] == '#'))
				return -1; /* verbs, comments */
			/* lookarounds and option settings: (?=, (?!, (?<=, (?<!, (?i) */
			zero_width =
				s[1] == '?' &&
				(s[2] == '=' || s[2] == '!' ||
				 (s[2] == '<' && (s[3] == '=' || s[3] == '!')) ||
				 (p && p[-1] == ')' && strspn(s + 2, "imnsxJU-^") == (size_t)(p - s) - 3));
		} else if (*p == '^' || *p == '$') {
			p++;
			zero_width = true;
		} else {
			/* one literal character, with its UTF-8 continuation octets */
			p++;
			while ((*p & 0xc0) == 0x80)
				p++;
		}
		if (!p)
			return -1;
		bool optional, repeated;
		p = quantifier_end(p, &optional, &repeated);
		if (zero_width || optional)
			continue;
		if (nmand < max)
			cuts[nmand] = (size_t)(p - pat);
		nmand++;
		*nrep += repeated;
	}
	return nmand;
}

size_t prefilter_prefix(const char *pat, const char *flags)
{
	size_t cuts[PREFIX_ITEMS];
	unsigned nrep;
	int n = walk(pat, flags, cuts, PREFIX_ITEMS, &nrep);
	return n >= PREFIX_ITEMS && nrep >= PREFIX_MIN_REPEATED ? cuts[PREFIX_ITEMS - 1] : 0;
}

int prefilter_cuts(const char *pat, const char *flags, size_t *cuts, int max)
{
	unsigned nrep;
	int n = walk(pat, flags, cuts, max, &nrep);
	return n < 0 ? 0 : n < max ? n : max;
}

/*
 * A looser regex for the long patterns Hyperscan cannot take exactly.
 *
 * The stock ruleset's form rules (__FILL_THIS_FORM_*) are too large for an
 * exact Hyperscan database because of their bounded repeats: {1,100} of a
 * class is a hundred automaton states, {0,3} of a group of field names
 * three copies of it. In prefilter mode Hyperscan takes them by dropping
 * so much that every line of a message is a candidate, and PCRE2 then runs
 * the whole regex at every offset of every line. The same regex with each
 * large repeat made unbounded (X{1,100} as X+, X{0,3} as X*, X{5} as X+)
 * matches wherever the original does and fits an exact database: the lines
 * it finds are few, PCRE2 still confirms each. Every other prefilter gets
 * the same with a higher count (RELAX_PREFILTER_COUNT): fewer states for
 * Hyperscan to run over every octet.
 *
 * A repeat whose count (lower or upper bound) is min_count or more becomes
 * unbounded, keeping a lower bound below min_count ({2,50} -> {2,}, {3,5}
 * -> + when min_count is 3). A possessive repeat loses its '+' (possessive
 * matches are a subset of greedy ones). Negative lookarounds are refused,
 * as is anything that changes meaning with the text around it: a looser
 * pattern inside (?!...) would match less. NULL: left as it is.
 */
char *prefilter_relax(const char *pat, const char *flags, unsigned min_count)
{
	if (flags && strchr(flags, 'x'))
		return NULL;
	size_t n = strlen(pat);
	char *out = xmalloc(n + 1), *o = out;
	bool changed = false;
	const char *p = pat;
	while (*p) {
		const char *s = p;
		if (*p == '\\') {
			p = regex_escape_end(p);
			if (!p)
				goto refuse;
		} else if (*p == '[') {
			p = regex_class_end(p);
			if (!p)
				goto refuse;
		} else if (*p == '(') {
			if (p[1] == '*' || (p[1] == '?' && (p[2] == '#' || p[2] == '(' || p[2] == '!' ||
							    (p[2] == '<' && p[3] == '!'))))
				goto refuse; /* verbs, comments, conditionals, negative lookarounds */
			p++;
		} else if (*p == '{' && isdigit((unsigned char)p[1])) {
			bool optional, repeated;
			const char *q = quantifier_end(p, &optional, &repeated);
			if (q == p) { /* a literal '{' */
				*o++ = *p++;
				continue;
			}
			char *e;
			unsigned long lo = strtoul(p + 1, &e, 10), hi = lo;
			if (*e == ',')
				hi = isdigit((unsigned char)e[1]) ? strtoul(e + 1, NULL, 10) : 0;
			if (lo < min_count && hi < min_count) {
				memcpy(o, p, (size_t)(q - p));
				o += q - p;
			} else {
				if (lo == 0)
					*o++ = '*';
				else if (lo == 1 || lo >= min_count)
					*o++ = '+';
				else
					o += sprintf(o, "{%lu,}", lo);
				if (q[-1] == '?') /* lazy: the same language */
					*o++ = '?';
				changed = true;
			}
			p = q;
			continue;
		} else
			p++;
		memcpy(o, s, (size_t)(p - s));
		o += p - s;
	}
	*o = 0;
	if (changed)
		return out;
refuse:
	free(out);
	return NULL;
}

/*
 * The reverse of a regex, for finding where its matches may start.
 *
 * Hyperscan reports where matches end. Scanning a line backwards with the
 * reversed regex reports, for every match of the regex, the offset where
 * it starts. PCRE2 can then try the regex anchored at those offsets only,
 * instead of at every offset of the line: the first offset where the
 * anchored match succeeds is where the unanchored search would have found
 * it, since the search tries offsets left to right and an offset where no
 * match starts fails either way.
 *
 * The reversed regex may match more than the regex reversed (never less):
 * assertions are dropped (^ $ \A \z \Z \G, lookarounds), atomic groups and
 * possessive repeats become plain ones. Word boundaries read both sides
 * and stay. Refused (NULL): backreferences, recursion and subroutine
 * calls, conditionals, verbs, \Q...\E, branch resets, option settings that
 * are not at the start of the regex (their scope runs to the end of the
 * group), extended mode.
 */
#define REV_MAX_DEPTH 64

static bool rev_alt(const char **pp, struct sbuf *out, int depth);

/* One sequence (up to '|', ')' or the end) reversed into out. */
static bool rev_seq(const char **pp, struct sbuf *out, int depth)
{
	/* items as [start, end) of their reversed text in tmp, then emitted
	 * last first */
	struct sbuf tmp = {0};
	size_t *at = NULL, nat = 0, capat = 0;
	const char *p = *pp;
	bool ok = true;
	while (ok && *p && *p != '|' && *p != ')') {
		const char *s = p;
		bool drop = false;
		size_t start = tmp.n;
		if (*p == '\\') {
			unsigned char c = (unsigned char)p[1];
			if ((c >= '1' && c <= '9') || c == 'g' || c == 'k' || c == 'K') {
				ok = false;
				break;
			}
			p = regex_escape_end(p);
			if (!p) {
				ok = false;
				break;
			}
			drop = c == 'A' || c == 'z' || c == 'Z' || c == 'G';
			if (!drop)
				sb_add(&tmp, s, (size_t)(p - s));
		} else if (*p == '[') {
			p = regex_class_end(p);
			if (!p) {
				ok = false;
				break;
			}
			sb_add(&tmp, s, (size_t)(p - s));
		} else if (*p == '(') {
			const char *body;
			if (p[1] == '*' || (p[1] == '?' && strchr("(|R&P+-0123456789", p[2]) && p[2] &&
					    !(p[2] == 'P' && p[3] == '<') &&
					    !(p[2] == '-' && p[3] && isalpha((unsigned char)p[3])))) {
				ok = false; /* verbs, conditionals, branch resets, calls */
				break;
			}
			if (p[1] == '?' && (p[2] == '=' || p[2] == '!' || p[2] == '#' ||
					    (p[2] == '<' && (p[3] == '=' || p[3] == '!')))) {
				p = regex_group_end(p); /* lookarounds, comments: dropped */
				if (!p) {
					ok = false;
					break;
				}
				drop = true;
			} else {
				if (p[1] != '?')
					body = p + 1;
				else if (p[2] == ':' || p[2] == '>')
					body = p + 3;
				else if (p[2] == '<' || p[2] == '\'' || (p[2] == 'P' && p[3] == '<')) {
					char close = p[2] == '\'' ? '\'' : '>';
					body = strchr(p + 3, close);
					if (!body) {
						ok = false;
						break;
					}
					body++;
				} else {
					/* (?flags:...) or a bare (?flags) */
					size_t k = strspn(p + 2, "imnsxJU-^");
					if (p[2 + k] != ':') {
						ok = false;
						break;
					}
					body = p + 3 + k;
				}
				if (depth >= REV_MAX_DEPTH) {
					ok = false;
					break;
				}
				/* a capture or atomic group becomes (?: ; flags are kept */
				if (p[1] == '?' && p[2] != '<' && p[2] != '\'' && p[2] != 'P' && p[2] != '>')
					sb_add(&tmp, p, (size_t)(body - p));
				else
					sb_add(&tmp, "(?:", 3);
				const char *q = body;
				if (!rev_alt(&q, &tmp, depth + 1) || *q != ')') {
					ok = false;
					break;
				}
				sb_add(&tmp, ")", 1);
				p = q + 1;
			}
		} else if (*p == '^' || *p == '$') {
			p++;
			drop = true;
		} else {
			p++;
			sb_add(&tmp, s, 1);
		}
		bool optional, repeated;
		const char *q = quantifier_end(p, &optional, &repeated);
		if (!drop && q > p) {
			size_t n = (size_t)(q - p);
			if (q[-1] == '+' && n > 1) /* possessive: plain */
				n--;
			sb_add(&tmp, p, n);
		}
		p = q;
		if (drop)
			tmp.n = start;
		else {
			if (nat + 2 > capat) {
				capat = capat ? capat * 2 : 16;
				at = xrealloc(at, capat * sizeof(size_t));
			}
			at[nat++] = start;
		}
	}
	if (ok)
		for (size_t k = nat; k-- > 0;) {
			size_t end = k + 1 < nat ? at[k + 1] : tmp.n;
			sb_add(out, tmp.d + at[k], end - at[k]);
		}
	if (!out->d)
		sb_add(out, "", 0);
	free(tmp.d);
	free(at);
	*pp = p;
	return ok;
}

static bool rev_alt(const char **pp, struct sbuf *out, int depth)
{
	for (;;) {
		if (!rev_seq(pp, out, depth))
			return false;
		if (**pp != '|')
			return true;
		sb_add(out, "|", 1);
		(*pp)++;
	}
}

char *prefilter_reverse(const char *pat, const char *flags)
{
	if (flags && strchr(flags, 'x'))
		return NULL;
	struct sbuf out = {0};
	const char *p = pat;
	/* options at the very start apply to the whole regex: they stay first */
	if (p[0] == '(' && p[1] == '?') {
		size_t k = strspn(p + 2, "imnsxJU-^");
		if (k && p[2 + k] == ')') {
			if (memchr(p + 2, 'x', k))
				return NULL;
			sb_add(&out, p, k + 3);
			p += k + 3;
		}
	}
	if (!rev_alt(&p, &out, 0) || *p) {
		free(out.d);
		return NULL;
	}
	return out.d;
}

/* The lower bound of the repeat of pat when pat is one group (plain,
 * non-capturing or atomic) and its quantifier, else 0. */
static unsigned long outer_repeat(const char *pat)
{
	if (pat[0] != '(' || (pat[1] == '?' && pat[2] != ':' && pat[2] != '>') || pat[1] == '*')
		return 0;
	const char *e = regex_group_end(pat);
	unsigned long lo, hi;
	if (!e)
		return 0;
	const char *q = regex_quantifier(e, &lo, &hi);
	return q > e && !*q ? lo : 0;
}

unsigned prefilter_chain(const char *pat, const char *flags)
{
	unsigned long n = outer_repeat(pat);
	struct regex_item it[2];
	if (n < 2 || (flags && strchr(flags, 'x')) || regex_items(pat, it, 2) != 1 || it[0].nullable)
		return 0;
	char *rel = prefilter_relax(pat, flags, RELAX_COUNT_2);
	unsigned long k = outer_repeat(rel ? rel : pat);
	free(rel);
	return k >= 1 && k < n && n - k < 1000 ? (unsigned)(n - k) : 0;
}

/*
 * A cheaper prefilter for the look-alike letters of the stock ruleset.
 *
 * The replace_tag letters (25_replace.cf) spell each letter as an
 * alternation of dozens of UTF-8 and Latin-1 sequences: [\xc3][\x80\x81],
 * [\xf0][\x9d](?:[\x90][\x84\x9e]|...). Hyperscan builds automaton states
 * for every octet class of those; the rules written with them (FUZZY_*,
 * __LOTSA_MONEY_*, __PCT_FOR_YOU_*, ...) cost about half of the body rules'
 * scan, and the longest (__YOUR_PASSWORD) exceed Hyperscan's pattern
 * length. Seen by a prefilter, an octet of 0x80 or above may be any such
 * octet:
 *   - a class that lists one takes all 128 (a negated class is left alone);
 *   - an alternative made of such octets only (classes, \xHH escapes,
 *     groups of them) is any run of them, [\x80-\xff]+, and repeated
 *     alternatives are written once;
 *   - an end anchor before the end of the pattern, which Hyperscan refuses
 *     ((?:$|\W)...), matches the empty string instead.
 * Each step only adds matches: the pattern matches wherever the original
 * does, and PCRE2 confirms every candidate with the original as before.
 * Negative lookarounds are copied as they are (a looser pattern there
 * would match less).
 */
#define WIDE_HIGH      "[\\x80-\\xff]"
#define WIDE_RUN       "[\\x80-\\xff]+"
#define WIDE_MAX_DEPTH 64

static bool hex_high(const char *p)
{
	return p[0] == '\\' && p[1] == 'x' && isxdigit((unsigned char)p[2]) &&
	       isxdigit((unsigned char)p[3]) && strchr("89abcdefABCDEF", p[2]);
}

/* What a class [...] at p..e holds: 2 only octets of 0x80 and above, 1
 * some, 0 none (or a class left as it is). */
static int class_high(const char *p, const char *e)
{
	/* negated; or ']' first or '-' last, where a range added would read
	 * differently */
	if (p[1] == '^' || p[1] == ']' || e[-2] == '-')
		return 0;
	bool high = false, low = false, prev_high = false;
	for (const char *q = p + 1; q < e - 1; q++) {
		bool was = prev_high;
		prev_high = false;
		if (hex_high(q)) {
			high = prev_high = true;
			q += 3;
		} else if ((unsigned char)*q >= 0x80)
			high = prev_high = true;
		else if (*q == '-' && was && (hex_high(q + 1) || (unsigned char)q[1] >= 0x80))
			; /* a range between two such octets */
		else {
			low = true;
			if (*q == '\\' && q[1])
				q++;
		}
	}
	/* a class that takes them all already stays */
	size_t n = (size_t)(e - p), k = sizeof("\\x80-\\xff]") - 1;
	if (high && low && n > k && memcmp(e - k, "\\x80-\\xff]", k) == 0)
		return 0;
	return high ? (low ? 1 : 2) : 0;
}

/* s..s+n is an escape that the octets written after it could lengthen
 * ("\\x9" then "f" reads "\\x9f"): left as the last thing before what a
 * rewrite drops, it would change. */
static bool short_escape(const char *s, size_t n)
{
	return s[0] == '\\' && n < 4 &&
	       ((s[1] == 'x' && (n < 3 || s[2] != '{')) || isdigit((unsigned char)s[1]));
}

/* The class p..e (its '[' to past its ']', neither negated nor with ']'
 * first) written to out without the members that only match octets of
 * 0x80 and above, nor, with amp, those that only match '&' (an octet, an
 * escape, or a range whose two ends go), then tail. *kept and *dropped
 * count the members written and left out. False, writing nothing, when
 * this reader does not take the class apart or a range joins a member
 * that goes to one that stays; also when a member goes right after a
 * short escape, which what follows it would lengthen. */
static bool class_without(const char *p, const char *e, bool amp, const char *tail, struct sbuf *out,
			  size_t *kept, size_t *dropped)
{
	struct tok {
		const char *s;
		size_t n;
		bool gone, dash;
	} t[512];
	size_t n = 0;
	for (const char *q = p + 1; q < e - 1 && n < sizeof(t) / sizeof(t[0]);) {
		struct tok k = {q, 1, false, false};
		if (hex_high(q))
			k.n = 4, k.gone = true;
		else if ((unsigned char)*q >= 0x80)
			k.gone = true;
		else if (*q == '\\') {
			const char *x = regex_escape_end(q);
			if (!x || x > e - 1)
				return false;
			k.n = (size_t)(x - q);
			k.gone = amp && k.n == 2 && q[1] == '&';
		} else if (*q == '[' && q[1] == ':') {
			const char *c = strstr(q + 2, ":]");
			if (!c || c >= e - 1)
				return false;
			k.n = (size_t)(c + 2 - q);
		} else {
			k.dash = *q == '-';
			k.gone = amp && *q == '&';
		}
		t[n++] = k;
		q += k.n;
	}
	if (n == sizeof(t) / sizeof(t[0]))
		return false;
	struct sbuf o = {0};
	sb_adds(&o, "[");
	*kept = *dropped = 0;
	bool after_short = false; /* the last octets kept end with a short escape */
	for (size_t i = 0; i < n; i++) {
		const struct tok *last = &t[i];
		bool gone = t[i].gone;
		if (i + 2 < n && t[i + 1].dash) { /* a range */
			if (t[i].gone != t[i + 2].gone) {
				free(o.d);
				return false;
			}
			if (!gone)
				sb_add(&o, t[i].s, (size_t)(t[i + 2].s + t[i + 2].n - t[i].s));
			i += 2;
			last = &t[i];
		} else if (!gone && t[i].dash) {
			/* a literal '-' (after a range, or first): escaped, since
			 * the members dropped around it may leave it between two
			 * that would read as a range ("a\xEC-\xEF-z" is not a-z) */
			sb_adds(&o, "\\-");
		} else if (!gone)
			sb_add(&o, t[i].s, t[i].n);
		if (gone && after_short) {
			free(o.d);
			return false;
		}
		if (!gone)
			after_short = short_escape(last->s, last->n);
		++*(gone ? dropped : kept);
	}
	sb_adds(&o, tail);
	sb_adds(out, sb_str(&o));
	free(o.d);
	return true;
}

/* The class p..e (class_high() 1) as it is widened: its members below
 * 0x80 and "\x80-\xff" (the high octets it names are in that range).
 * False, leaving out alone, as class_without. */
static bool class_widened(const char *p, const char *e, struct sbuf *out)
{
	size_t kept, dropped;
	return class_without(p, e, false, "\\x80-\\xff]", out, &kept, &dropped);
}

static bool widen_alt(const char **pp, struct sbuf *out, bool *all_high, int depth);

/* One sequence (up to '|', ')' or the end) into out; *all_high: it is
 * one or more octets of 0x80 and above and nothing else. */
static bool widen_seq(const char **pp, struct sbuf *out, bool *all_high, int depth)
{
	const char *p = *pp;
	bool high = true, any = false;
	while (*p && *p != '|' && *p != ')') {
		const char *s = p;
		bool item_high = false;
		struct sbuf item = {0};
		/* negative lookarounds (a wider pattern inside would match
		 * less) and lookbehinds (PCRE2 takes only fixed lengths
		 * there, which a widened run is not) stay as written */
		if (p[0] == '(' && p[1] == '?' &&
		    (p[2] == '!' || (p[2] == '<' && (p[3] == '!' || p[3] == '=')))) {
			p = regex_group_end(p);
			if (!p)
				return false;
			sb_add(&item, s, (size_t)(p - s));
		} else if (*p == '(') {
			/* (, (?:, (?=, (?i:...: the opening kept, the inside widened */
			const char *in = p + 1;
			if (*in == '*')
				return false; /* a verb */
			if (*in == '?') {
				in++;
				if (*in == '=' || *in == ':')
					in++;
				else {
					size_t k = strspn(in, "imnsxJU-^");
					if (memchr(in, 'x', k))
						return false; /* extended mode: comments */
					in += k;
					if (*in == ')') { /* (?i): an option setting */
						in++;
						sb_add(out, s, (size_t)(in - s));
						p = in;
						high = false;
						continue;
					}
					if (*in != ':' || in == s + 2)
						return false; /* named, atomic, verbs, ... */
					in++;
				}
			}
			bool capture = s[1] != '?', look = in[-1] == '=';
			struct sbuf inner = {0};
			bool inner_high = false;
			p = in;
			if (!widen_alt(&p, &inner, &inner_high, depth + 1) || *p != ')') {
				free(inner.d);
				return false;
			}
			p++;
			if (inner_high && !look && !capture) {
				sb_adds(&item, WIDE_RUN);
				item_high = true;
			} else {
				sb_add(&item, s, (size_t)(in - s));
				sb_adds(&item, sb_str(&inner));
				sb_adds(&item, ")");
			}
			free(inner.d);
		} else if (*p == '[') {
			p = regex_class_end(p);
			if (!p)
				return false;
			int h = class_high(s, p);
			if (h == 2) {
				sb_adds(&item, WIDE_HIGH);
				item_high = true;
			} else if (h == 1) {
				if (!class_widened(s, p, &item)) {
					size_t len = (size_t)(p - s);
					sb_add(&item, s, len > 1 ? len - 1 : 0);
					sb_adds(&item, "\\x80-\\xff]");
				}
			} else
				sb_add(&item, s, (size_t)(p - s));
		} else if (*p == '\\') {
			p = regex_escape_end(p);
			if (!p)
				return false;
			if (p - s == 4 && hex_high(s)) {
				sb_adds(&item, WIDE_HIGH);
				item_high = true;
			} else
				sb_add(&item, s, (size_t)(p - s));
		} else if (*p == '$' && p[strspn(p + 1, ")") + 1]) {
			p++;
			sb_adds(&item, "(?:)");
		} else {
			p++;
			item_high = (unsigned char)*s >= 0x80;
			sb_add(&item, s, 1);
		}
		bool optional, repeated;
		const char *q = quantifier_end(p, &optional, &repeated);
		if (q != p) {
			if (item_high && strcmp(sb_str(&item), WIDE_RUN) == 0) {
				/* [\x80-\xff]+ repeated: still a run, or none */
				free(item.d);
				item = (struct sbuf){0};
				sb_adds(&item, optional ? "[\\x80-\\xff]*" : WIDE_RUN);
			} else
				sb_add(&item, p, (size_t)(q - p));
			item_high = false;
			p = q;
		}
		high &= item_high;
		any = true;
		sb_adds(out, sb_str(&item));
		free(item.d);
	}
	*pp = p;
	*all_high = high && any;
	return true;
}

/* An alternative "&\#(?:1(?:0(?:13|2[458])|...)|x53c);": a numeric
 * character reference whose digits only are spelled out (the entities of
 * the look-alike letters of 25_replace.cf, 100 to 300 octets each). A
 * prefilter may take any number there: "&\#[0-9a-fA-FxX]+;" matches
 * wherever it does, and is the same text for every letter. */
static bool entity_digits(const char *t)
{
	size_t n = strlen(t);
	if (n < 5 || strncmp(t, "&\\#", 3) != 0 || t[n - 1] != ';')
		return false;
	return strspn(t + 3, "0123456789abcdefABCDEFxX()?:|[]-{},+*") == n - 4;
}

/* An alternation (up to ')' or the end) into out; alternatives of high
 * octets only become one [\x80-\xff]+, and each alternative is written
 * once. *all_high: every alternative is such. */
static bool widen_alt(const char **pp, struct sbuf *out, bool *all_high, int depth)
{
	if (depth > WIDE_MAX_DEPTH)
		return false;
	const char *p = *pp;
	char **alts = NULL;
	size_t n = 0;
	bool ok = true, high = true;
	for (;;) {
		struct sbuf a = {0};
		bool ah = false;
		if (!widen_seq(&p, &a, &ah, depth)) {
			free(a.d);
			ok = false;
			break;
		}
		if (ah) {
			free(a.d);
			a = (struct sbuf){0};
			sb_adds(&a, WIDE_RUN);
		}
		high &= ah;
		const char *t = sb_str(&a);
		if (entity_digits(t)) {
			free(a.d);
			a = (struct sbuf){0};
			sb_adds(&a, "&\\#[0-9a-fA-FxX]+;");
			t = sb_str(&a);
		}
		bool dup = false;
		for (size_t k = 0; k < n && !dup; k++)
			dup = strcmp(alts[k], t) == 0;
		if (dup)
			free(a.d);
		else {
			alts = xrealloc(alts, (n + 1) * sizeof(*alts));
			alts[n++] = a.d;
		}
		if (*p != '|')
			break;
		p++;
	}
	for (size_t k = 0; k < n; k++) {
		if (ok && k)
			sb_adds(out, "|");
		if (ok)
			sb_adds(out, alts[k]);
		free(alts[k]);
	}
	free(alts);
	*pp = p;
	*all_high = ok && high;
	return ok;
}

char *prefilter_widen(const char *pat, const char *flags)
{
	if (flags && strchr(flags, 'x'))
		return NULL;
	struct sbuf out = {0};
	const char *p = pat;
	bool high;
	if (!widen_alt(&p, &out, &high, 0) || *p || strcmp(sb_str(&out), pat) == 0) {
		free(out.d);
		return NULL;
	}
	return (char *)sb_str(&out);
}

/* Whether pat refers to a group by number or name (a backreference, a
 * call, a conditional), or this reader cannot tell: a piece of it may
 * refer to another group than the whole regex does, or to none. */
static bool regex_refers(const char *pat)
{
	for (const char *p = pat; *p;) {
		if (*p == '[') {
			p = regex_class_end(p);
		} else if (*p == '\\') {
			unsigned char c = (unsigned char)p[1];
			if ((c >= '1' && c <= '9') || c == 'g' || c == 'k')
				return true;
			p = regex_escape_end(p);
		} else if (p[0] == '(' && p[1] == '?' && p[2] && strchr("(R&+-0123456789P", p[2]) &&
			   !(p[2] == 'P' && p[3] == '<') && !(p[2] == '-' && isalpha((unsigned char)p[3]))) {
			return true;
		} else
			p++;
		if (!p)
			return true;
	}
	return false;
}

char *prefilter_split(const char *pat, const char *flags)
{
	if ((flags && strchr(flags, 'x')) || strchr(pat, '\n') || regex_refers(pat))
		return NULL;
	/* the longest top-level "(?:...)" that no quantifier follows */
	const char *best = NULL, *best_end = NULL;
	for (const char *p = pat; *p;) {
		const char *s = p;
		if (*p == '\\')
			p = regex_escape_end(p);
		else if (*p == '[')
			p = regex_class_end(p);
		else if (*p == '(') {
			p = regex_group_end(p);
			bool optional, repeated;
			if (p && strncmp(s, "(?:", 3) == 0 && quantifier_end(p, &optional, &repeated) == p &&
			    (!best || p - s > best_end - best))
				best = s, best_end = p;
		} else if (*p == '|')
			return NULL; /* a top-level alternation: the pieces would be it */
		else
			p++;
		if (!p)
			return NULL;
	}
	if (!best)
		return NULL;
	/* its alternatives, each between the text before and after it */
	struct sbuf out = {0};
	size_t pieces = 0;
	const char *a = best + 3;
	for (const char *p = a;;) {
		if (*p == '\\')
			p = regex_escape_end(p);
		else if (*p == '[')
			p = regex_class_end(p);
		else if (*p == '(')
			p = regex_group_end(p);
		else if (*p == '|' || p == best_end - 1) {
			if (pieces == SPLIT_MAX_PIECES) {
				free(out.d);
				return NULL;
			}
			if (pieces++)
				sb_adds(&out, "\n");
			sb_add(&out, pat, (size_t)(best - pat));
			sb_adds(&out, "(?:");
			sb_add(&out, a, (size_t)(p - a));
			sb_adds(&out, ")");
			sb_adds(&out, best_end);
			if (p == best_end - 1)
				break;
			a = ++p;
			continue;
		} else
			p++;
		if (!p || p >= best_end) {
			free(out.d);
			return NULL;
		}
	}
	if (pieces < 2) {
		free(out.d);
		return NULL;
	}
	return (char *)sb_str(&out);
}

/* ---- a prefilter for the lines of ASCII text ----------------------------- */

/* On a line with no octet of 0x80 or above and no '&', an item that
 * matches only such octets (a look-alike letter in UTF-8, a numeric
 * character reference) cannot match. ascii_* write what is left of the
 * pattern to out and say whether it is "dead": it cannot match there. */
static bool ascii_alt(const char **pp, struct sbuf *out, bool *dead, int depth);

/* The class p..e (past its ']') without its octets of 0x80 and above and
 * its '&' (class_without); *dead when nothing is left. False when it is
 * left as it is (negated, nothing to leave out, what class_without does
 * not take apart). */
static bool ascii_class(const char *p, const char *e, struct sbuf *out, bool *dead)
{
	if (p[1] == '^' || p[1] == ']')
		return false;
	struct sbuf o = {0};
	size_t kept, dropped;
	if (!class_without(p, e, true, "]", &o, &kept, &dropped) || !dropped) {
		free(o.d);
		return false;
	}
	*dead = !kept;
	if (kept)
		sb_adds(out, sb_str(&o));
	free(o.d);
	return true;
}

static bool ascii_seq(const char **pp, struct sbuf *out, bool *dead, int depth)
{
	const char *p = *pp;
	*dead = false; /* once set, the rest is read only to find its end */
	while (*p && *p != '|' && *p != ')') {
		const char *s = p;
		struct sbuf item = {0};
		bool idead = false;
		if (*p == '(') {
			const char *in = p + 1;
			/* verbs ((*UTF) changes what an octet is) and extended
			 * mode (a comment would read as items): not this reader's */
			size_t opt = in[0] == '?' ? strspn(in + 1, "imnsxJU-^") : 0;
			if (*in == '*' || (opt && memchr(in + 1, 'x', opt))) {
				free(item.d);
				return false;
			}
			if (*in == '?') {
				in++;
				if (*in == ':' || *in == '>')
					in++;
				else if (*in == 'P' && in[1] == '<')
					in = strchr(in, '>');
				else if (*in == '<' && in[1] != '=' && in[1] != '!')
					in = strchr(in, '>');
				else if (*in == '\'')
					in = strchr(in + 1, '\'');
				else
					in = NULL; /* lookarounds, options, conditionals: as written */
				if (in && (*in == '>' || *in == '\''))
					in++;
			}
			if (!in) {
				p = regex_group_end(p);
				if (!p) {
					free(item.d);
					return false;
				}
				sb_add(&item, s, (size_t)(p - s));
			} else {
				struct sbuf inner = {0};
				p = in;
				if (!ascii_alt(&p, &inner, &idead, depth + 1) || *p != ')') {
					free(inner.d);
					free(item.d);
					return false;
				}
				p++;
				sb_add(&item, s, (size_t)(in - s));
				sb_adds(&item, sb_str(&inner));
				sb_adds(&item, ")");
				free(inner.d);
			}
		} else if (*p == '[') {
			p = regex_class_end(p);
			if (!p) {
				free(item.d);
				return false;
			}
			if (!ascii_class(s, p, &item, &idead))
				sb_add(&item, s, (size_t)(p - s));
		} else if (*p == '\\') {
			p = regex_escape_end(p);
			if (!p) {
				free(item.d);
				return false;
			}
			idead = (p - s == 4 && hex_high(s)) || (p - s == 2 && s[1] == '&') ||
				(p - s == 4 && strncasecmp(s, "\\x26", 4) == 0);
			sb_add(&item, s, (size_t)(p - s));
		} else {
			p++;
			idead = (unsigned char)*s >= 0x80 || *s == '&';
			sb_add(&item, s, 1);
		}
		bool optional, repeated;
		const char *q = quantifier_end(p, &optional, &repeated);
		if (idead && !optional)
			*dead = true;
		if (!*dead && !idead) {
			sb_add(&item, p, (size_t)(q - p));
			sb_adds(out, sb_str(&item));
		} else if (!*dead && out->n)  /* an optional item gone: what follows */
			sb_adds(out, "(?:)"); /* is not read with what went before */
		free(item.d);
		p = q;
	}
	*pp = p;
	return true;
}

static bool ascii_alt(const char **pp, struct sbuf *out, bool *dead, int depth)
{
	if (depth > WIDE_MAX_DEPTH)
		return false;
	const char *p = *pp;
	bool all_dead = true, first = true;
	for (;;) {
		struct sbuf a = {0};
		bool d;
		if (!ascii_seq(&p, &a, &d, depth)) {
			free(a.d);
			return false;
		}
		if (!d) {
			if (!first)
				sb_adds(out, "|");
			sb_adds(out, sb_str(&a));
			first = all_dead = false;
		}
		free(a.d);
		if (*p != '|')
			break;
		p++;
	}
	*pp = p;
	*dead = all_dead;
	return true;
}

/* The capturing groups of pat: ( not followed by ?, and the named ones. */
static int captures(const char *pat)
{
	int n = 0;
	for (const char *p = pat; p && *p;) {
		if (*p == '[')
			p = regex_class_end(p);
		else if (*p == '\\')
			p = regex_escape_end(p);
		else {
			n += p[0] == '(' && (p[1] != '?' || p[2] == '\'' || (p[2] == 'P' && p[3] == '<') ||
					     (p[2] == '<' && p[3] != '=' && p[3] != '!'));
			p++;
		}
	}
	return n;
}

char *prefilter_ascii(const char *pat, const char *flags)
{
	if (flags && strchr(flags, 'x'))
		return NULL;
	struct sbuf out = {0};
	const char *p = pat;
	bool dead;
	if (!ascii_alt(&p, &out, &dead, 0) || *p) {
		free(out.d);
		return NULL;
	}
	if (dead) {
		free(out.d);
		return xstrdup("");
	}
	/* a capturing group left out: the rest may refer to another group
	 * than the regex does, or to none */
	if (strcmp(sb_str(&out), pat) == 0 ||
	    (regex_refers(pat) && captures(sb_str(&out)) != captures(pat))) {
		free(out.d);
		return NULL;
	}
	return (char *)sb_str(&out);
}
