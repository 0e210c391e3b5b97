/*
 * test_native.c - the checks in C that stand in for Hyperscan on some
 * regex shapes (native.c): which regexes get one and of what shape, which
 * are left to Hyperscan, what a few texts give, and, against PCRE2 on
 * generated texts, that a check passes every text its regex matches (and
 * fails most of the others, or it would filter nothing). The shared pass
 * of several words or sequence checks against each alone.
 */
#include "../internal.h"
#include "t.h"

static bool possible(const struct native_pf *n, const char *s)
{
	struct native_memo memo = {0};
	return native_possible(n, s, strlen(s), &memo);
}

/* The shape native_prefilter gives pat: "run MIN", "words MIN x N",
 * "seq POSITIONS", "-". */
static const char *shape(const char *pat, const char *flags)
{
	static char buf[64];
	struct native_pf *n = native_prefilter(pat, flags);
	if (!n)
		snprintf(buf, sizeof(buf), "-");
	else if (n->seq)
		snprintf(buf, sizeof(buf), "seq %u", n->seq);
	else if (n->words)
		snprintf(buf, sizeof(buf), "words %u x %u", n->min, n->words);
	else
		snprintf(buf, sizeof(buf), "run %u", n->min);
	native_free(n);
	return buf;
}

static void shape_checks(void)
{
	/* the stock rules that get one */
	CHECK_STR(shape("\\b(?:[a-z]{8,}[\\s\\.]+){6}", ""), "words 8 x 6");
	CHECK_STR(shape("\\b(?:[a-z]{5,}[\\s\\.]+){10}", NULL), "words 5 x 10");
	CHECK_STR(shape("\\s[A-Z]?[a-z]{1,15}\\s(?![a-z]{10,20}\\s)[a-z]{0,10}(?!-?\\d{1,5}-)(?!\\d{10}\\s)"
			"(?:(?!--)[-0-9a-f]){10,64}(?:[g-z][a-z]{0,10})?\\s[A-Z]?[a-z]{1,15}\\b",
			""),
		  "run 10");
	CHECK_STR(shape("\\b[A-Za-z][a-z]{0,20}[,;)]?\\s[A-Z]{16,}[a-z]?\\s[A-Za-z][a-z]{1,15}\\b", ""),
		  "run 16");
	/* a long run, whatever its class (__LONGLINE) */
	CHECK_STR(shape("^[^\\r\\n]{998}", NULL), "run 998");
	CHECK_STR(shape("[a-z0-9]{128,}", "i"), "run 128");
	/* the longest count wins */
	CHECK_STR(shape("[A-Z]{8}x[0-9]{12}y[A-F]{9}", NULL), "run 12");
	/* words: no \b, a bounded word, a lazy or possessive separator */
	CHECK_STR(shape("(?:[A-Z]{3,9}[ ,]+?){4,}", NULL), "words 3 x 4");
	CHECK_STR(shape("(?:[0-9]{2}[-]++){3}", NULL), "words 2 x 3");

	/* left to Hyperscan */
	CHECK_STR(shape("[A-Z]{7}", NULL), "-");		/* too short a run */
	CHECK_STR(shape("[a-z0-9]{26}", NULL), "-");		/* most lowercase letters */
	CHECK_STR(shape("[A-Z]{16}", "i"), "-");		/* caseless: all of them */
	CHECK_STR(shape("[^\\r\\n]{100}", NULL), "-");		/* too large a class */
	CHECK_STR(shape("[[:xdigit:]]{12}", NULL), "-");	/* POSIX: taken as anything */
	CHECK_STR(shape("[A-Z]{16}|x", NULL), "-");		/* top-level alternation */
	CHECK_STR(shape("(?:[A-Z]{16}|x)", NULL), "-");		/* not top level */
	CHECK_STR(shape("(?:[A-Z]{16})?", NULL), "-");		/* optional */
	CHECK_STR(shape("[A-Z]{0,16}", NULL), "-");		/* optional */
	CHECK_STR(shape("(?i)[A-Z]{16}", NULL), "-");		/* options mid-regex */
	CHECK_STR(shape("(*UCP)[A-Z]{16}", NULL), "-");		/* a verb */
	CHECK_STR(shape("[A-Z]{16}", "x"), "-");		/* extended mode */
	CHECK_STR(shape("\\Q[\\E[A-Z]{16}", NULL), "-");	/* \Q...\E */
	CHECK_STR(shape("(?:[a-z]{4,}[a-z ]+){3}", NULL), "-"); /* classes overlap */
	CHECK_STR(shape("(?:[a-z]{4,}[ ]+){1}", NULL), "-");	/* one word */
	CHECK_STR(shape("(?:[a-z]{4,}[ ]*){3}", NULL), "-");	/* separators optional */
	CHECK_STR(shape("(?:[a-z]{4,}[ ]+){3}x", NULL), "-");	/* more after it */
	CHECK_STR(shape("(?:[a-z]{4,}[ ]+x){3}", NULL), "-");	/* more in it */
	CHECK_STR(shape("abc", NULL), "-");
	CHECK(native_prefilter(NULL, NULL) == NULL);

	/* sequences: look-alike letters (25_replace.cf's, shortened) */
	static const char lookalike[] =
		"(?!money)(?:[mM\xcc]|rn|[\xc9][\xb1])(?:[goO0u\xbc]|[\xc3][\x92\x93])"
		"(?:[nN\xcd]|[\xc3][\x91\xb1])(?:[eE3\xb8]|&\\#(?:10[12]|x65);)"
		"(?:[yY\xbe]|[\xc3][\x9d\xbd])";
	CHECK_STR(shape(lookalike, "i"), "seq 5");
	/* with <inter W1><post P2>: each letter {1,2}, \W? between */
	CHECK_STR(shape("\\b(?:[pP\xd1]){1,2}\\W?(?:[hH\xb9]){1,2}\\W?(?:[aA@4]){1,2}\\W?(?:[rR]|[\xc5][\x94]"
			"){1,2}"
			"\\W?(?:[mM]|rn){1,2}\\W?(?:[aA@4]){1,2}",
			"i"),
		  "seq 6");
	/* the first NATIVE_SEQ_MAX (8) positions of a longer one */
	CHECK_STR(shape("[pP1][hH4][eE3][nN][tT7][eE3][rR][mM][iI1][nN][eE3]", NULL), "seq 8");
	CHECK_STR(shape("[a-c][d-f][g-i][j-l][m-o]", NULL), "seq 5");
	CHECK_STR(shape("[a-c][d-f][g-i][j-l]", NULL), "-");		   /* four positions */
	CHECK_STR(shape("[a-c][d-f][g-i][j-l]?[m-o]", NULL), "-");	   /* one optional */
	CHECK_STR(shape("[a-i][d-f][g-i][j-l][m-o]", NULL), "-");	   /* nine lowercase letters */
	CHECK_STR(shape("[a-c]x[yY]z[d-f][g-i]", "i"), "-");		   /* a literal of three */
	CHECK_STR(shape("[a-c]x[yY]\\W?z[d-f][g-i]", "i"), "seq 6");	   /* a gap breaks it */
	CHECK_STR(shape("([a-c])[d-f]\\1[g-i][j-l][m-o]", NULL), "seq 5"); /* a back reference: a gap */
	CHECK_STR(shape("[a-c][d-f][g-i][j-l][m-o]|x", NULL), "-");	   /* top-level alternation */
	CHECK_STR(shape("[a-c][d-f][g-i][j-l][m-o]", "x"), "-");	   /* extended mode */
	CHECK_STR(shape("[a-c][d-f][g-i](?x)[j-l][m-o]", NULL), "-");	   /* extended mode set */

	/* what a few texts give */
	struct native_pf *w = native_prefilter("\\b(?:[a-z]{5,}[\\s\\.]+){3}", NULL);
	CHECK(possible(w, "alpha bravo charlie "));
	CHECK(possible(w, "alpha. bravo..  charlie."));
	CHECK(!possible(w, "alpha bravo charlie")); /* no separator after the last */
	CHECK(!possible(w, "alpha bravo, charlie delta "));
	CHECK(!possible(w, "alpha bravo ab charlie delta "));
	CHECK(possible(w, "ab alpha bravo ab charlie delta echoes "));
	CHECK(!possible(w, "alpha bravo Charlie delta "));
	CHECK(!possible(w, ""));
	native_free(w);
	struct native_pf *r = native_prefilter("x(?:(?!--)[-0-9a-f]){10,64}", NULL);
	CHECK(possible(r, "id 0123456789"));
	CHECK(possible(r, "deadbeef-01"));
	CHECK(possible(r, "0123456789"));
	CHECK(!possible(r, "012345678 abcdef"));
	CHECK(!possible(r, "facade faced"));
	CHECK(!possible(r, ""));
	native_free(r);
	struct native_pf *ll = native_prefilter("^[^\\r\\n]{998}", "m");
	char *lines = xmalloc(4000);
	memset(lines, 'x', 3999);
	lines[3999] = 0;
	lines[997] = lines[1995] = lines[2993] = '\n'; /* 997, 997, 997, 1005 octets */
	CHECK(possible(ll, lines));
	lines[3500] = '\r';
	CHECK(!possible(ll, lines));
	lines[1995] = 'x'; /* 1995 */
	CHECK(possible(ll, lines));
	CHECK(!possible(ll, "short\nlines\n"));
	memset(lines, 'x', 999);
	lines[0] = '\n';
	lines[999] = 0; /* 998 after the newline */
	CHECK(possible(ll, lines));
	lines[998] = '\n';
	CHECK(!possible(ll, lines));
	free(lines);
	native_free(ll);
	struct native_pf *q = native_prefilter(lookalike, "i");
	CHECK(possible(q, "your m0ney"));
	CHECK(possible(q, "MONEY")); /* the lookahead is not checked: PCRE2 says no */
	CHECK(possible(q, "rnOn&#101;y"));
	CHECK(possible(q, "m\xc3\x93n3Y"));
	CHECK(!possible(q, "honey"));
	CHECK(!possible(q, "mon-ey")); /* no gap allowed */
	CHECK(!possible(q, "y3nom"));
	native_free(q);
}

static void random_text(char *buf, size_t cap, const char *alphabet)
{
	size_t n = t_rnd((unsigned)cap - 1), k = strlen(alphabet);
	for (size_t i = 0; i < n; i++)
		buf[i] = alphabet[t_rnd((unsigned)k)];
	buf[n] = 0;
}

/* pat compiled by PCRE2, caseless with an 'i' in flags; NULL on error. */
static pcre2_code *compile(const char *pat, const char *flags)
{
	int ec;
	PCRE2_SIZE eo;
	return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, strchr(flags, 'i') ? PCRE2_CASELESS : 0,
			     &ec, &eo, NULL);
}

static bool pcre_matches(pcre2_code *c, pcre2_match_data *md, const char *s)
{
	return pcre2_match(c, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL) >= 0;
}

/* Every text the regex matches passes its check; some do not. */
static void superset_checks(void)
{
	static const struct {
		const char *pat, *flags, *alphabet;
	} cases[] = {
		{"\\b(?:[a-z]{3,}[\\s\\.]+){3}", "", "abcde  .,X\t"},
		{"\\b(?:[a-z]{2,}[\\s\\.]+){4}", "", "aabb. \n-Z"},
		{"(?:[A-Z]{2,4}[,;]+){3,}", "", "AB,;c "},
		{"(?:[a-z]{3,}[ ]+){2}", "i", "aBc D "},
		{"[A-Z]{8,}", "", "ABCDe "},
		{"\\s(?:(?!--)[-0-9a-f]){8,64}\\s", "", "0a-f g  "},
		{"[A-F]{8}", "i", "aBcDeF g"},
		{"\\b[A-Za-z][a-z]{0,3}\\s[A-Z]{8,}[a-z]?\\s", "", "AAABBz  "},
		{"(?:x|y)[\\x80-\\xff]{8}", "", "xy\xc3\xa9\x80 a"},
		{"(?!mon)(?:[mM]|rn)(?:[o0]){1,2}\\W?(?:[nN]|&#1;)[eE3]\\W?[yY]", "i", "mMrno0nN&#1;eE3yY -"},
		{"(?:[a-c]|xy)[_\\W]{0,2}[d-f]+(?:g|\\xc3\\xa9)[h-i]{1,2}(?=j)[jk](?<!x)", "",
		 "abcxy_ -dfg\xc3\xa9hijk"},
		{"^[^\\r\\n]{130}", "m", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\n\r"},
	};
	pcre2_match_data *md = pcre2_match_data_create(4, NULL);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct native_pf *n = native_prefilter(cases[c].pat, cases[c].flags);
		CHECK(n != NULL);
		if (!n)
			continue;
		pcre2_code *re = compile(cases[c].pat, cases[c].flags);
		CHECK(re != NULL);
		unsigned matched = 0, missed = 0, refused = 0;
		char text[160];
		for (int i = 0; i < 40000 && re; i++) {
			random_text(text, sizeof(text), cases[c].alphabet);
			bool m = pcre_matches(re, md, text), p = possible(n, text);
			matched += m;
			missed += m && !p;
			refused += !p;
		}
		if (missed || getenv("NATIVE_VERBOSE"))
			fprintf(stderr, "%s: %u of %u matches missed, %u refused\n", cases[c].pat, missed,
				matched, refused);
		CHECK(missed == 0);
		CHECK(matched > 50);   /* the texts exercise the regex */
		CHECK(refused > 1000); /* and the check filters */
		pcre2_code_free(re);
		native_free(n);
	}
	pcre2_match_data_free(md);
}

/* Three words checks in one pass answer as each alone. */
static void shared_checks(void)
{
	const char *pats[] = {"\\b(?:[a-z]{4,}[\\s\\.]+){3}", "\\b(?:[a-z]{3,}[\\s\\.]+){4}",
			      "\\b(?:[a-z]{2,}[\\s\\.]+){5}", "(?:[a-z]{2,}[,]+){2}"};
	struct native_pf *v[4], *alone[4];
	for (int k = 0; k < 4; k++) {
		v[k] = native_prefilter(pats[k], NULL);
		alone[k] = native_prefilter(pats[k], NULL);
	}
	native_share(v, 4);
	CHECK(v[0]->lead == v[0] && v[1]->lead == v[0] && v[2]->lead == v[0]);
	CHECK(v[0]->nshared == 3 && v[1]->slot == 1 && v[2]->slot == 2);
	CHECK(v[3]->lead == v[3] && v[3]->nshared == 1); /* other classes */
	unsigned differ = 0, passed = 0;
	char text[200];
	for (int i = 0; i < 40000; i++) {
		random_text(text, sizeof(text), "abcde  ..,X");
		struct native_memo memo = {0}; /* one text: one pass */
		for (int k = 0; k < 4; k++) {
			bool a = native_possible(v[k], text, strlen(text), &memo);
			differ += a != possible(alone[k], text);
			passed += a;
		}
	}
	CHECK(differ == 0);
	CHECK(passed > 1000);
	for (int k = 0; k < 4; k++) {
		native_free(v[k]);
		native_free(alone[k]);
	}
}

/* Sequence checks side by side, in more than one table, answer as each
 * alone. */
static void seq_shared_checks(void)
{
	enum { N = 120 }; /* 120 checks of 5-8 positions: more than one table */
	struct native_pf *v[N], *alone[N];
	const char *letters = "abcdefgh";
	for (int k = 0; k < N; k++) {
		char pat[256] = "";
		int npos = 5 + k % 4;
		for (int i = 0; i < npos; i++) {
			char item[32];
			/* two letters a position, from k's own order */
			snprintf(item, sizeof(item), "[%c%c]%s", letters[(k + i) % 8],
				 letters[(k * 3 + i * 5 + 1) % 8], i % 2 ? "\\W?" : "");
			strcat(pat, item);
		}
		v[k] = native_prefilter(pat, NULL);
		alone[k] = native_prefilter(pat, NULL);
		CHECK(v[k] && v[k]->seq == (unsigned)npos);
		if (!v[k] || !alone[k])
			return;
	}
	native_share(v, N);
	unsigned leads = 0;
	for (int k = 0; k < N; k++)
		leads += v[k]->lead == v[k];
	CHECK(leads >= 2);
	CHECK(v[1]->lead == v[0] && v[1]->tab == NULL);
	unsigned differ = 0, passed = 0;
	char text[200];
	for (int i = 0; i < 4000; i++) {
		random_text(text, sizeof(text), "abcdefgh -");
		struct native_memo memo = {0};
		for (int k = 0; k < N; k++) {
			bool a = native_possible(v[k], text, strlen(text), &memo);
			differ += a != possible(alone[k], text);
			passed += a;
		}
	}
	CHECK(differ == 0);
	CHECK(passed > 1000);
	CHECK(passed < 4000u * N / 2);
	for (int k = 0; k < N; k++) {
		native_free(v[k]);
		native_free(alone[k]);
	}
}

/* PCRE2's count, as scan.c's count_matches makes it: the next search
 * from the end of each match, at most max. */
static int pcre_count(pcre2_code *c, pcre2_match_data *md, const char *s, int max)
{
	size_t len = strlen(s), off = 0;
	int n = 0;
	while (n < max && off <= len && pcre2_match(c, (PCRE2_SPTR)s, len, off, 0, md, NULL) >= 0) {
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		n++;
		off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
	}
	return n;
}

/* Counters: which regexes get one, and that each counts as PCRE2 does. */
static void counter_checks(void)
{
	struct native_pf *c = native_counter("e", NULL);
	CHECK(c && c->nalt == 1);
	native_free(c);
	c = native_counter("(?:e|\\xc3[\\xa8-\\xab]|\\xd0\\xb5)", "i");
	CHECK(c && c->nalt == 3 && c->alen[1] == 2);
	native_free(c);
	static const char *const refused[] = {
		"e+",	  "e{2}",    "^e",
		"e$",	  "\\be",    "e|",
		"(?:e|)", "(e)",     "(?:e|(?:f))",
		"(?=e)e", ".",	     "[[:alpha:]]",
		"[\\d]",  "\\d",     "\\x{65}",
		"\\x6",	  "\\Qe\\E", "abcde",
		"(?:ab",  "",	     "(?:a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t|u|v|w|x|y|z|A|B|C|D|E|F|G)",
		NULL};
	for (const char *const *p = refused; *p; p++) {
		c = native_counter(*p, NULL);
		if (c)
			fprintf(stderr, "counter for %s\n", *p);
		CHECK(c == NULL);
		native_free(c);
	}
	CHECK(native_counter("e", "x") == NULL && native_counter("e", "m") == NULL);
	CHECK(native_counter("[^a]", "i") == NULL); /* guard.c's reader folds after negating */

	static const struct {
		const char *pat, *flags, *alphabet;
	} cases[] = {
		{"e", "", "eEa\xc3\xa9 "},
		{"(?:e|\\xc3[\\xa8\\xa9\\xaa\\xab]|\\xd0\\xb5|\\xd3[\\x07\\xa9])", "",
		 "eE\xc3\xa8\xa9\xd0\xb5\xd3\x07 a"},
		{"(?:ab|a|b)", "", "abc"},
		{"(?:b|ab|a)", "i", "aAbB "},
		{"(?:[a-c]x|a)", "i", "abcxX"},
		{"(?:\\.\\x2e|[^.]\\.)", "", ".a "},
		{"[-\\]x]y", "", "-]xy"},
		{"(?:[^ab]b|a)", "", "abcAB"},
	};
	pcre2_match_data *md = pcre2_match_data_create(4, NULL);
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		c = native_counter(cases[k].pat, cases[k].flags);
		CHECK(c != NULL);
		pcre2_code *re = compile(cases[k].pat, cases[k].flags);
		CHECK(re != NULL);
		unsigned differ = 0, counted = 0;
		char text[160];
		for (int i = 0; c && re && i < 20000; i++) {
			random_text(text, sizeof(text), cases[k].alphabet);
			int max = i % 3 ? 1000 : 3;
			int want = pcre_count(re, md, text, max),
			    got = native_count(c, text, strlen(text), max);
			differ += want != got;
			counted += want > 1;
			if (want != got && differ < 3)
				fprintf(stderr, "%s: %d, PCRE2 %d on \"%s\"\n", cases[k].pat, got, want,
					text);
		}
		CHECK(differ == 0);
		CHECK(counted > 1000); /* the texts hold several matches */
		pcre2_code_free(re);
		native_free(c);
	}
	pcre2_match_data_free(md);
}

int main(void)
{
	shape_checks();
	superset_checks();
	shared_checks();
	seq_shared_checks();
	counter_checks();
	return t_done();
}
