/*
 * test_prefix.c - the prefixes Hyperscan prefilters slow regexes with
 * (prefix.c): where the cut falls, what leaves a pattern whole, and that
 * every subject the whole regex matches is matched by its prefix (PCRE2).
 * The relaxed regexes of prefilter_relax: what they become, what is left
 * alone, and that they match every subject the regex matches. The reversed
 * regexes of prefilter_reverse: what they become, what is refused, and
 * that each matches the reversed text of every match of its regex. The
 * widened regexes of prefilter_widen: what they become, what is left
 * alone, and that they match every subject the regex matches. The counts
 * of prefilter_chain: which regexes get one, and that a match has at
 * least that many starts of the relaxed regex after its own.
 */
#include <stdio.h>

#include "../internal.h"
#include "t.h"

static pcre2_code *re(const char *p, size_t n, bool caseless)
{
	int err;
	PCRE2_SIZE off;
	return pcre2_compile((PCRE2_SPTR)p, n, caseless ? PCRE2_CASELESS : 0, &err, &off, NULL);
}

static bool matches(pcre2_code *c, const char *s)
{
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
	int rc = pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
	pcre2_match_data_free(md);
	return rc >= 0;
}

/* The prefix of pat, "" when the pattern stays whole. */
static const char *prefix_of(const char *pat, const char *flags)
{
	static char buf[512];
	size_t n = prefilter_prefix(pat, flags);
	snprintf(buf, sizeof(buf), "%.*s", (int)n, pat);
	return buf;
}

#define FUZZY                                                                                        \
	"(?!money)(?:[mM\\xcc]|rn|[\\xc9][\\xb1]){1,2}\\W{0,2}(?:[oO0]|[\\xce][\\xbf]){1,2}\\W{0,2}" \
	"(?:[nN]|[\\xd0][\\xbf]){1,2}\\W{0,2}(?:[eE3]){1,2}\\W{0,2}(?:[yY\\xbe]){1,2}\\W{0,2}(?:[sS\\$])\\b"

/* The text of r (freed), "" for NULL: what a prefilter_* call made. */
static const char *text_of(char *r)
{
	static char buf[1024];
	snprintf(buf, sizeof(buf), "%s", r ? r : "");
	free(r);
	return buf;
}

/* prefilter_relax(pat, NULL, count), "" when it leaves pat alone */
static const char *relaxed(const char *pat, unsigned count)
{
	return text_of(prefilter_relax(pat, NULL, count));
}

/* Every subject pat matches, loose (its first n octets) matches too,
 * caselessly; pat matches at least min of them. */
static void check_superset(const char *pat, const char *loose, size_t n, const char *const *subjects, int min)
{
	pcre2_code *whole = re(pat, PCRE2_ZERO_TERMINATED, true), *lc = loose ? re(loose, n, true) : NULL;
	CHECK(whole && lc);
	int hits = 0;
	for (const char *const *s = subjects; whole && lc && *s; s++)
		if (matches(whole, *s)) {
			hits++;
			if (!matches(lc, *s))
				fprintf(stderr, "%s: \"%s\" not matched by %.*s\n", pat, *s, (int)n, loose);
			CHECK(matches(lc, *s));
		}
	if (hits < min)
		fprintf(stderr, "%s: %d subject(s)\n", pat, hits);
	CHECK(hits >= min);
	pcre2_code_free(whole);
	pcre2_code_free(lc);
}

static void relax_checks(void)
{
	/* large repeats unbounded, small ones kept, a lower bound under the
	 * count kept, lazy kept, possessive dropped */
	CHECK(strcmp(relaxed("a{1,100}b{0,3}c{2}d{2,50}e{5}f{0,30}?g{1,9}+h", 8),
		     "a+b{0,3}c{2}d{2,}e{5}f*?g+h") == 0);
	CHECK(strcmp(relaxed("a{1,100}b{0,3}c{2}d{2,50}e{5}", 3), "a+b*c{2}d{2,}e+") == 0);
	CHECK(strcmp(relaxed("(?:x|yz){5}", 3), "(?:x|yz)+") == 0);
	/* braces that are no quantifier, escaped or in a class, stay */
	CHECK(strcmp(relaxed("a{x}[{1,9}]\\{1,9}b{1,9}", 3), "a{x}[{1,9}]\\{1,9}b+") == 0);
	/* left alone: nothing to change, negative lookarounds, conditionals,
	 * verbs, \Q, extended mode */
	CHECK(prefilter_relax("ab{1,2}c", NULL, 3) == NULL);
	CHECK(prefilter_relax("(?!ab{1,9})c{1,9}", NULL, 3) == NULL);
	CHECK(prefilter_relax("(?<!a)c{1,9}", NULL, 3) == NULL);
	CHECK(prefilter_relax("(?(1)a|b)c{1,9}", NULL, 3) == NULL);
	CHECK(prefilter_relax("(*UTF)c{1,9}", NULL, 3) == NULL);
	CHECK(prefilter_relax("\\Qa{1,9}\\Ec{1,9}", NULL, 3) == NULL);
	CHECK(prefilter_relax("c{1,9}", "ix", 3) == NULL);
	CHECK(strcmp(relaxed("(?=ab{1,9})c{1,9}", 3), "(?=ab+)c+") == 0);
	/* what hs_pattern does to a prefilter: only the largest repeats */
	CHECK(strcmp(relaxed("<a\\s[^>]{0,2048}\\bhref=.{1,15}x{16}", RELAX_PREFILTER_COUNT),
		     "<a\\s[^>]*\\bhref=.{1,15}x+") == 0);
	CHECK(prefilter_relax("[a-z]{5,15}\\s{0,10}", NULL, RELAX_PREFILTER_COUNT) == NULL);
	/* every subject the regex matches, the relaxed one matches */
	const char *pats[] = {
		"(?:(?:your|full)[\\s,:]{1,5})?(?:name|address){1,3}(?:[-=_.:\\s]{1,100}|\\sor\\s){3}",
		"\\b(?:[a-z]{5,}[\\s.]+){4}x", "^\\s?(?:\\d{1,3}[).:]{1,80})\\s?(?:name|age)s?:[ _]{3,100}$",
		NULL};
	const char *subjects[] = {"your name: address or name___",
				  "full, name\t\taddress   name  or ",
				  "abcde fghij klmno pqrst x",
				  "abcdefgh. ijklmnop..qrstuvw xyzab x",
				  "1) name: ___",
				  "12.. ages:    ",
				  "name address",
				  "",
				  "abcde x",
				  NULL};
	static const unsigned counts[] = {RELAX_COUNT_2, RELAX_COUNT_1, RELAX_PREFILTER_COUNT};
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++)
		for (const char **p = pats; *p; p++) {
			unsigned count = counts[k];
			char *r = prefilter_relax(*p, "i", count);
			/* no repeat of 8 or more in the second: left alone */
			CHECK((r == NULL) == (count >= 8 && p == pats + 1));
			if (!r)
				continue;
			check_superset(*p, r, PCRE2_ZERO_TERMINATED, subjects, 2);
			free(r);
		}
}

/* The starts a relaxed regex rel has in s: the offsets where an anchored
 * match of it begins (what the starts database, its reverse scanned
 * backwards, reports), in at[], their count returned. */
static size_t starts_of(pcre2_code *rel, const char *s, unsigned *at, size_t max)
{
	size_t n = 0, len = strlen(s);
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(rel, NULL);
	for (size_t q = 0; q <= len && n < max; q++)
		if (pcre2_match(rel, (PCRE2_SPTR)s, len, q, PCRE2_ANCHORED, md, NULL) >= 0)
			at[n++] = (unsigned)q;
	pcre2_match_data_free(md);
	return n;
}

/* prefilter_chain: which regexes get a count, and that every offset where
 * the regex matches has at least that many starts of its relaxed form
 * after it. */
static void chain_checks(void)
{
	CHECK(prefilter_chain("(?:ab|c){5}", NULL) == 4);
	CHECK(prefilter_chain("(ab){3}", "i") == 2);
	CHECK(prefilter_chain("(?>ab|c){4,}", NULL) == 3);
	CHECK(prefilter_chain("(?:ab){5}?", NULL) == 4);
	/* {2} stays as it is in the relaxed form, {2,50} becomes {2,}: no
	 * offset the starts give can be left out */
	CHECK(prefilter_chain("(?:ab){2}", NULL) == 0);
	CHECK(prefilter_chain("(?:ab){2,50}", NULL) == 0);
	/* a group that may match nothing, more than one item, an alternation,
	 * a lookaround or named group, no count, a negative lookaround (the
	 * relaxed form is refused: the starts are of the whole regex),
	 * extended mode */
	CHECK(prefilter_chain("(?:a?b*){5}", NULL) == 0);
	CHECK(prefilter_chain("x(?:ab){5}", NULL) == 0);
	CHECK(prefilter_chain("(?:ab){5}x", NULL) == 0);
	CHECK(prefilter_chain("(?:ab){5}|c", NULL) == 0);
	CHECK(prefilter_chain("(?=ab){5}", NULL) == 0);
	CHECK(prefilter_chain("(?<n>ab){5}", NULL) == 0);
	CHECK(prefilter_chain("(?:ab)+", NULL) == 0);
	CHECK(prefilter_chain("(?:(?!x)ab){5}", NULL) == 0);
	CHECK(prefilter_chain("(?:ab){5}", "x") == 0);
	CHECK(prefilter_chain("(?:ab){5", NULL) == 0);
	CHECK(prefilter_chain("[ab]{5}", NULL) == 0);

	const char *pats[] = {
		"(?:(?:your\\s)?(?:name|address|phone)[:\\s]{1,5}(?:_{1,100}\\s?|(?:or|and)\\s)){3}",
		"(?:(?:your\\s)?(?:name|address|phone)[:\\s]{1,5}(?:_{1,100}\\s?|(?:or|and)\\s)){5}",
		"(?:a|ab|b){4}", NULL};
	const char *subjects[] = {"your name: __ address:___ phone ___",
				  "name and address or phone: __ name: _ your phone __ address _",
				  "name: __ name: __",
				  "ababab abbab aaaa b",
				  "",
				  NULL};
	int seen = 0;
	for (const char **p = pats; *p; p++) {
		unsigned need = prefilter_chain(*p, "i");
		CHECK(need > 0);
		char *rs = prefilter_relax(*p, "i", RELAX_COUNT_2);
		pcre2_code *fw = re(*p, PCRE2_ZERO_TERMINATED, true),
			   *rel = rs ? re(rs, PCRE2_ZERO_TERMINATED, true) : NULL;
		CHECK(fw && rel);
		for (const char **s = subjects; fw && rel && *s; s++) {
			unsigned at[128];
			size_t n = starts_of(rel, *s, at, 128), len = strlen(*s);
			pcre2_match_data *md = pcre2_match_data_create_from_pattern(fw, NULL);
			for (size_t p0 = 0; p0 <= len; p0++) {
				if (pcre2_match(fw, (PCRE2_SPTR)*s, len, p0, PCRE2_ANCHORED, md, NULL) < 0)
					continue;
				size_t after = 0;
				for (size_t j = 0; j < n; j++)
					after += at[j] > p0;
				if (after < need)
					fprintf(stderr, "%s at %zu of \"%s\": %zu starts after, %u needed\n",
						*p, p0, *s, after, need);
				CHECK(after >= need);
				seen++;
			}
			pcre2_match_data_free(md);
		}
		pcre2_code_free(fw);
		pcre2_code_free(rel);
		free(rs);
	}
	CHECK(seen >= 8); /* the subjects hold matches */
}

/* prefilter_reverse(pat, NULL), "" when refused */
static const char *reversed(const char *pat)
{
	return text_of(prefilter_reverse(pat, NULL));
}

static void reverse_checks(void)
{
	CHECK(strcmp(reversed("abc"), "cba") == 0);
	CHECK(strcmp(reversed("a(?:bc|de)f"), "f(?:cb|ed)a") == 0);
	CHECK(strcmp(reversed("x|yz"), "x|zy") == 0);
	CHECK(strcmp(reversed("a\\d+[xy]{2,3}?\\x41"), "\\x41[xy]{2,3}?\\d+a") == 0);
	CHECK(strcmp(reversed("(?i:ab)c"), "c(?i:ba)") == 0);
	CHECK(strcmp(reversed("(?i)abc"), "(?i)cba") == 0);
	CHECK(strcmp(reversed("(?<n>ab)(c)"), "(?:c)(?:ba)") == 0);
	CHECK(strcmp(reversed("(?>ab)c*+d"), "dc*(?:ba)") == 0);
	/* assertions dropped, word boundaries kept */
	CHECK(strcmp(reversed("^a(?=b)(?<!c)\\Ab$"), "ba") == 0);
	CHECK(strcmp(reversed("\\bab\\B"), "\\Bba\\b") == 0);
	/* a brace that is no quantifier is a character */
	CHECK(strcmp(reversed("a{x}"), "}x{a") == 0);
	/* refused */
	CHECK(prefilter_reverse("(a)\\1", NULL) == NULL);
	CHECK(prefilter_reverse("a(?i)b", NULL) == NULL);
	CHECK(prefilter_reverse("(?(1)a|b)", NULL) == NULL);
	CHECK(prefilter_reverse("(*UTF)a", NULL) == NULL);
	CHECK(prefilter_reverse("(a)(?1)", NULL) == NULL);
	CHECK(prefilter_reverse("a\\Kb", NULL) == NULL);
	CHECK(prefilter_reverse("\\Qab\\E", NULL) == NULL);
	CHECK(prefilter_reverse("ab", "ix") == NULL);
	/* every match of the regex, reversed, is a match of the reverse */
	const char *pats[] = {"(?:your\\s)?(?:name|addr(?:ess)?|phone)[:\\s]{1,3}_{2,}(?:\\s|,\\s?)",
			      "\\b(?:[a-z]{3,}[\\s.]+){2}(?:x|yz)\\b", "(?i:AB)c+(?=d)|e{2}f?", NULL};
	const char *subjects[] = {"your name: __ address ___, phone:___ ",
				  "abc def. yz ghi jkl x",
				  "abcccd ee eef",
				  "name __",
				  "",
				  NULL};
	for (const char **p = pats; *p; p++) {
		char *r = prefilter_reverse(*p, NULL);
		CHECK(r != NULL);
		pcre2_code *fw = re(*p, PCRE2_ZERO_TERMINATED, true),
			   *bw = r ? re(r, PCRE2_ZERO_TERMINATED, true) : NULL;
		CHECK(fw && bw);
		int matches_seen = 0;
		for (const char **s = subjects; fw && bw && *s; s++) {
			size_t n = strlen(*s);
			pcre2_match_data *md = pcre2_match_data_create_from_pattern(fw, NULL);
			for (size_t at = 0; at <= n; at++) {
				if (pcre2_match(fw, (PCRE2_SPTR)*s, n, at, PCRE2_ANCHORED, md, NULL) < 0)
					continue;
				PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
				char rev[128];
				size_t k = 0;
				for (size_t i = ov[1]; i > ov[0] && k < sizeof(rev) - 1; i--)
					rev[k++] = (*s)[i - 1];
				pcre2_match_data *md2 = pcre2_match_data_create_from_pattern(bw, NULL);
				int rc = pcre2_match(bw, (PCRE2_SPTR)rev, k, 0,
						     PCRE2_ANCHORED | PCRE2_ENDANCHORED, md2, NULL);
				pcre2_match_data_free(md2);
				if (rc < 0)
					fprintf(stderr, "%s: the reverse of \"%.*s\" not matched by %s\n", *p,
						(int)(ov[1] - ov[0]), *s + ov[0], r);
				CHECK(rc >= 0);
				matches_seen++;
			}
			pcre2_match_data_free(md);
		}
		CHECK(matches_seen >= 2);
		pcre2_code_free(fw);
		pcre2_code_free(bw);
		free(r);
	}
}

/* prefilter_widen(pat, flags), "" when it leaves pat alone */
static const char *widened(const char *pat, const char *flags)
{
	return text_of(prefilter_widen(pat, flags));
}

/* A letter of 25_replace.cf, shortened: ASCII, Latin-1, two-, three- and
 * four-octet UTF-8 look-alikes and an entity. */
#define TAG_O                                                                                             \
	"(?:[oO0\\xd2\\xf6]|[\\xc3][\\x92\\x93\\xb6]|[\\xce][\\x9f\\xbf]|[\\xe1](?:[\\xb9][\\x8c-\\x93]|" \
	"[\\xbd][\\x80-\\x8d])|[\\xf0][\\x9d](?:[\\x90][\\x8e\\xa8]|[\\x91][\\x82])|&\\#(?:79|111);)"
#define TAG_K "(?:[kK]|[\\xc4][\\xb6\\xb7]|[\\xd0][\\x9a\\xba])"

static void widen_checks(void)
{
	/* a class of high octets only, and an alternative of them only */
	CHECK(strcmp(widened("[\\xc3][\\x80\\x81]a", NULL), "[\\x80-\\xff][\\x80-\\xff]a") == 0);
	CHECK(strcmp(widened("(?:[aA\\xc0]|[\\xc3][\\xa0]|\\xc4\\x80)b", NULL),
		     "(?:[aA\\x80-\\xff]|[\\x80-\\xff]+)b") == 0);
	/* a class's own high octets go (the range has them); a range from
	 * a low octet to a high one leaves the class as it was */
	CHECK(strcmp(widened("[a\\xe9b\\xc0-\\xc5c-d]", NULL), "[abc-d\\x80-\\xff]") == 0);
	CHECK(strcmp(widened("[a-\\xe9]", NULL), "[a-\\xe9\\x80-\\xff]") == 0);
	/* a literal '-' after a range that goes: escaped, not a-z */
	CHECK(strcmp(widened("x[a\\xEC-\\xEF-z]y", NULL), "x[a\\-z\\x80-\\xff]y") == 0);
	CHECK(strcmp(widened("[\\x9\\xc3f]", NULL), "[\\x9\\xc3f\\x80-\\xff]") == 0); /* not \\x9f */
	/* a character reference spelled digit by digit: any digits */
	CHECK(strcmp(widened("(?:[aA\\xe0]|&\\#(?:9[78]|1(?:072|x4)|x61);)b", NULL),
		     "(?:[aA\\x80-\\xff]|&\\#[0-9a-fA-FxX]+;)b") == 0);
	CHECK(strcmp(widened("(?:[a\\xe0]|&\\#(?:amp|97);)", NULL), "(?:[a\\x80-\\xff]|&\\#(?:amp|97);)") ==
	      0);
	CHECK(strcmp(widened("(?:[\\xc3][\\x8c-\\x93]|[\\xe1](?:[\\xb9][\\x80]|[\\xbd][\\x81]))x", NULL),
		     "[\\x80-\\xff]+x") == 0);
	/* repeated, captured, looked ahead: still a run, numbering kept */
	CHECK(strcmp(widened("(?:[\\xc3][\\x80]){1,2}([\\xc4][\\x80])(?=[\\xc5])a", NULL),
		     "[\\x80-\\xff]+([\\x80-\\xff]+)(?=[\\x80-\\xff]+)a") == 0);
	CHECK(strcmp(widened("(?:[\\xc3][\\x80])?a", NULL), "[\\x80-\\xff]*a") == 0);
	CHECK(strcmp(widened("\\xc3+a", NULL), "[\\x80-\\xff]+a") == 0);
	/* widened once for all; ']' first and '-' last left alone */
	CHECK(prefilter_widen("(?:[a\\xc0\\x80-\\xff]|[\\x80-\\xff]+)(?:)b", NULL) == NULL);
	CHECK(prefilter_widen("[]\\xc3][\\xc3-]", NULL) == NULL);
	/* an alternative written twice is written once */
	CHECK(strcmp(widened("(?:ab|[\\xc3]|ab|[\\xc4])", NULL), "(?:ab|[\\x80-\\xff]+)") == 0);
	/* an end anchor before the end matches the empty string; at the end
	 * it stays */
	CHECK(strcmp(widened("(?:$|\\W)ab(?:\\W|$)", NULL), "(?:(?:)|\\W)ab(?:\\W|$)") == 0);
	CHECK(strcmp(widened("ab$", NULL), "") == 0);
	/* left alone: negative lookarounds, negated classes, ASCII, named
	 * and atomic groups, verbs, extended mode */
	CHECK(strcmp(widened("(?![\\xc3][\\x80])(?<![\\xc4])a[^\\xc5]", NULL), "") == 0);
	/* a lookbehind stays fixed-length: as written (PCRE2 refused the
	 * widened run) */
	CHECK(strcmp(widened("(?<=a\\xd7\\xd7)b[\\xc3]", NULL), "(?<=a\\xd7\\xd7)b[\\x80-\\xff]") == 0);
	CHECK(strcmp(widened("(?<=[\\xc3][\\x80])b", NULL), "") == 0);
	CHECK(strcmp(widened("\\bab[cd]+\\x41", NULL), "") == 0);
	CHECK(prefilter_widen("(?<n>[\\xc3])", NULL) == NULL);
	CHECK(prefilter_widen("(?>[\\xc3])", NULL) == NULL);
	CHECK(prefilter_widen("(*UTF)[\\xc3]", NULL) == NULL);
	CHECK(prefilter_widen("[\\xc3]", "ix") == NULL);
	CHECK(prefilter_widen("(?x)[\\xc3] # $", NULL) == NULL);
	CHECK(prefilter_widen("(?i:a(?sx:[\\xc3]))", NULL) == NULL);
	CHECK(prefilter_widen("(?:[\\xc3]", NULL) == NULL);
	CHECK(strcmp(widened("(?i)[\\xc3](?i:[\\xc4]b)", NULL), "(?i)[\\x80-\\xff](?i:[\\x80-\\xff]b)") == 0);
	/* every subject the regex matches, the widened one matches */
	const char *pats[] = {"(?:^|\\W)(?=" TAG_O ")(?!ok)" TAG_O TAG_K "(?:$|\\W)",
			      "(?:$|\\W)" TAG_O "{1,2}\\W?" TAG_K "+", NULL};
	const char *subjects[] = {"an ok here",
				  " 0K!",
				  "x \xc3\x93k y",
				  "\xc3\xb6\xd0\xba",
				  "\xf0\x9d\x90\x8e\xc4\xb6 ",
				  " \xe1\xb9\x90-K",
				  " &#111;k",
				  "o",
				  "",
				  "\xc3\x96\xc3\x96 k",
				  "a - b",
				  NULL};
	for (const char **p = pats; *p; p++) {
		char *w = prefilter_widen(*p, "i");
		CHECK(w != NULL);
		check_superset(*p, w, PCRE2_ZERO_TERMINATED, subjects, 4);
		free(w);
	}
	char *w = prefilter_widen("\\s[a\\xEC-\\xEF-z]\\s", NULL);
	CHECK(w != NULL);
	check_superset("\\s[a\\xEC-\\xEF-z]\\s", w ? w : "", PCRE2_ZERO_TERMINATED, subjects, 1);
	free(w);
}

/* prefilter_ascii(pat, NULL): "" when it leaves pat alone, "-" when
 * nothing can match an ASCII line */
static const char *ascii_of(const char *pat)
{
	char *a = prefilter_ascii(pat, NULL);
	if (a && !*a) {
		free(a);
		return "-";
	}
	return text_of(a);
}

/* Every ASCII subject (no '&') pat matches, its form for such lines
 * matches; prefilter_split's pieces together match what pat does. */
static void ascii_checks(void)
{
	/* a group left out could be one a backreference or call names (one
	 * that stays is kept: the named one further down) */
	CHECK(prefilter_ascii("(a[\\xc3])?b\\1", NULL) == NULL);
	CHECK(prefilter_ascii("(?:$|\\2S|b;(m (f\\xdcb)))W", NULL) == NULL);
	CHECK(prefilter_ascii("(?<n>a[\\xc3])?b(?1)", NULL) == NULL);
	CHECK(strcmp(ascii_of("(a[\\xc3])?b(c)"), "b(c)") == 0);
	/* a widened look-alike letter: the letter alone */
	CHECK(strcmp(ascii_of("(?:[aA\\x80-\\xff]|[\\x80-\\xff]+|&\\#[0-9a-fA-FxX]+;)b"), "(?:[aA])b") == 0);
	/* high octets (escaped or not) and '&' cannot match: an optional
	 * item goes, an alternative goes, a sequence with one is gone */
	CHECK(strcmp(ascii_of("a(?:\\xc3\\xa9)?b"), "a(?:)b") == 0);
	CHECK(strcmp(ascii_of("\\x9(?:\\xc3)?f"), "\\x9(?:)f") == 0); /* not \\x9f */
	CHECK(strcmp(ascii_of("[\\x9\\xc3f]"), "") == 0);
	CHECK(strcmp(ascii_of("a\xc3\xa9|b"), "b") == 0);
	CHECK(strcmp(ascii_of("x&amp;y|z\\&|\\x26q|w"), "w") == 0);
	CHECK(strcmp(ascii_of("[\\xc3][\\xa9]"), "-") == 0);
	CHECK(strcmp(ascii_of("(?:[\\xc3]|&)+x"), "-") == 0);
	/* classes: their high octets and '&' go; negated ones, ranges from a
	 * low to a high octet, lookarounds and option groups stay as written */
	CHECK(strcmp(ascii_of("[a\\xe9\\x80-\\xff&b]"), "[ab]") == 0);
	CHECK(strcmp(ascii_of("[^\\xe9]|[a-\\xff]|(?=[\\xc3])a|(?i:\\xc3)"), "") == 0);
	CHECK(strcmp(ascii_of("(?<n>a|\\xc3)\\k<n>"), "(?<n>a)\\k<n>") == 0);
	CHECK(prefilter_ascii("[\\xc3] # x", "x") == NULL);
	/* extended mode set midway (a comment is no item), verbs */
	CHECK(prefilter_ascii("a(?x) b # & \\xc3\n|c", NULL) == NULL);
	CHECK(prefilter_ascii("(?ix)a|\\xc3", NULL) == NULL);
	CHECK(prefilter_ascii("(*UTF)k|\xe2\x84\xaa", NULL) == NULL);
	CHECK(strcmp(ascii_of("(?i)a|\\xc3"), "(?i)a") == 0);
	CHECK(prefilter_ascii("(?:\\xc3", NULL) == NULL);
	/* a long run of items that cannot match: read in a loop */
	static char amps[200003];
	memset(amps, '&', 200000);
	strcpy(amps + 200000, "|b");
	CHECK(strcmp(ascii_of(amps), "b") == 0);
	const char *pats[] = {"(?:^|\\W)(?=" TAG_O ")(?!ok)" TAG_O TAG_K "(?:$|\\W)",
			      "(?:$|\\W)" TAG_O "{1,2}\\W?" TAG_K "+", NULL};
	const char *subjects[] = {"an ok here", " 0K!", "0k", "o", "", " ook k", "OK", " 00 k", NULL};
	for (const char **p = pats; *p; p++) {
		char *a = prefilter_ascii(*p, "i");
		CHECK(a != NULL && *a);
		if (a)
			check_superset(*p, a, PCRE2_ZERO_TERMINATED, subjects, 2);
		free(a);
	}
	/* the longest top-level group that no quantifier follows, one piece
	 * an alternative */
	char *sp = prefilter_split("(?:^|\\s)(?:ab|c(?:d|e)|[|])[.,]", NULL);
	CHECK(sp && strcmp(sp, "(?:^|\\s)(?:ab)[.,]\n(?:^|\\s)(?:c(?:d|e))[.,]\n(?:^|\\s)(?:[|])[.,]") == 0);
	free(sp);
	CHECK(prefilter_split("(?:ab|cd)+x", NULL) == NULL);
	CHECK(prefilter_split("(?:ab|cd)x|y", NULL) == NULL);
	CHECK(prefilter_split("(?:abcd)x", NULL) == NULL);
	CHECK(prefilter_split("(?:a|b) c", "x") == NULL);
	/* a piece would lose or renumber the group referred to */
	CHECK(prefilter_split("(?:a|(b))x\\1", NULL) == NULL);
	CHECK(prefilter_split("(?:a|(?<n>b))x\\k<n>", NULL) == NULL);
	CHECK(prefilter_split("(?:a|(b))x(?1)", NULL) == NULL);
	CHECK(prefilter_split("(?:a|(b))x(?(1)c|d)", NULL) == NULL);
	CHECK(prefilter_split("(?:$|\\2S|b;(m (f)))W", NULL) == NULL);
	/* named groups, octal escapes in a class and option groups are no
	 * references */
	CHECK(strcmp(text_of(prefilter_split("(?:a|(?P<n>b)|[\\1])(?-i:x)", NULL)),
		     "(?:a)(?-i:x)\n(?:(?P<n>b))(?-i:x)\n(?:[\\1])(?-i:x)") == 0);
	char many[4 * SPLIT_MAX_PIECES + 16] = "x(?:";
	for (int k = 0; k < SPLIT_MAX_PIECES; k++)
		strcat(many, k ? "|ab" : "ab");
	strcat(many, ")y");
	sp = prefilter_split(many, NULL);
	CHECK(sp != NULL);
	free(sp);
	strcpy(many + strlen(many) - 2, "|c)y");
	CHECK(prefilter_split(many, NULL) == NULL);
}

int main(void)
{
	/* the cut: after the third item that must match, lookarounds and
	 * optional items not counted */
	CHECK(strcmp(prefix_of(FUZZY, "i"),
		     "(?!money)(?:[mM\\xcc]|rn|[\\xc9][\\xb1]){1,2}\\W{0,2}(?:[oO0]|[\\xce][\\xbf]){1,2}"
		     "\\W{0,2}(?:[nN]|[\\xd0][\\xbf]){1,2}") == 0);
	CHECK(strcmp(prefix_of("\\b[a-z]+\\s+[a-z]+\\d{2}[,;]+[A-Z]{3,}\\w", NULL), "\\b[a-z]+\\s+[a-z]+") ==
	      0);
	CHECK(strcmp(prefix_of("(?i)[a]+\\x41[b]+\\x{42}+[c]+[d]+[e]", NULL), "(?i)[a]+\\x41[b]+") == 0);
	/* left whole: too few classes, too few items, top-level alternation,
	 * extended mode, syntax this reader does not know */
	CHECK(prefilter_prefix("\\bcheap\\s+viagra\\s+now\\b", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]?[f]*[g]{0,3}", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+|[d]+[e]+[f]+[g]+[h]+[i]+", NULL) == 0);
	CHECK(prefilter_prefix("[a]+ [b]+ [c]+ [d]+ [e]+ [f]+", "x") == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]+\\Q[f]+\\E", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]+(?#x)[f]+", NULL) == 0);
	CHECK(prefilter_prefix("(*UTF)[a]+[b]+[c]+[d]+[e]+[f]+", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]+(?:[f]+", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]+[f", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]+\\", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+[c]+[d]+[e]+)", NULL) == 0);
	/* an escape or a UTF-8 character is never cut in two */
	CHECK(strcmp(prefix_of("\\x{e9}+\\101[b]+\\cA+[c]+[d]+", NULL), "\\x{e9}+\\101[b]+") == 0);
	CHECK(strcmp(prefix_of("\xc3\xa9+[b]+\\p{L}+[c]+[d]+", NULL), "\xc3\xa9+[b]+\\p{L}+") == 0);
	/* a '{' that is no quantifier this reader knows ({,2} is one in
	 * newer PCRE2) leaves the pattern whole */
	CHECK(prefilter_prefix("[a]+{[b]+[c]+[d]+[e]+[f]+", NULL) == 0);
	CHECK(prefilter_prefix("[a]+[b]+{,2}[c]+[d]+[e]+[f]+", NULL) == 0);
	CHECK(strcmp(prefix_of("[a]{2}[b]{1,}?[c]{0,3}+[d]{1}[e]*[f]+[g]{3,4}[h]{2,}", NULL),
		     "[a]{2}[b]{1,}?[c]{0,3}+[d]{1}") == 0);
	CHECK(prefilter_prefix("[a]{2}[b]{1,}?[c]{0,3}+[d]{1}[e]*[f]+[g]{3,4}[h]", NULL) == 0);

	/* the cut points of a pattern Hyperscan refuses whole: after every
	 * item that must match, at most max, none for a pattern left whole */
	size_t cuts[4];
	CHECK(prefilter_cuts("(?:^|\\W)(?!x)ab?c{0,2}[de]+(?:f|$)g", NULL, cuts, 4) == 4);
	CHECK(cuts[0] == 8 && cuts[1] == 14 && cuts[2] == 27 && cuts[3] == 34);
	CHECK(prefilter_cuts("abc", NULL, cuts, 2) == 2 && cuts[1] == 2);
	CHECK(prefilter_cuts("a|b", NULL, cuts, 4) == 0);
	CHECK(prefilter_cuts("a b c", "x", cuts, 4) == 0);

	/* every subject the whole regex matches, its prefix matches */
	const char *pats[] = {FUZZY, "\\b[a-z]+\\s+[a-z]+\\d{2}[,;]+[A-Z]{3,}\\w",
			      "(?:^|\\W)(?=[pP])(?!paypal)[pP]+[aA4@]+[yY]+[pP]+\\W?[aA4@]+[lL1]", NULL};
	const char *subjects[] = {
		"m0ney",       "rnoney", "MONEYS",     "m o n e y",    "money", "a bc12,ABCd",
		"x zz99;QQQQ", "PayPal", "P4yp4l now", "p@yp-@1",      "",	"plain text",
		"mm00nneeyy",  "m0neys", "rnoneys ",   "a b1 c2,ABC_", NULL};
	for (const char **p = pats; *p; p++) {
		size_t n = prefilter_prefix(*p, "i");
		CHECK(n > 0);
		check_superset(*p, *p, n, subjects, 2);
	}
	relax_checks();
	reverse_checks();
	chain_checks();
	widen_checks();
	ascii_checks();
	return t_done();
}
