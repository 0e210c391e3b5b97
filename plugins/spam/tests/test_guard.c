/*
 * test_guard.c - first-character guards (guard.c): where they go, what
 * leaves a pattern as written, and that a guarded regex finds exactly the
 * matches of the regex as written (every match's start and end, in
 * order) on generated texts full of near misses.
 */
#include <stdio.h>

#include "../internal.h"
#include "t.h"

/* The guarded pattern, "" when it stays as written. */
static const char *guarded(const char *pat, const char *flags)
{
	static char buf[8192];
	char *g = guard_pattern(pat, flags);
	snprintf(buf, sizeof(buf), "%s", g ? g : "");
	free(g);
	return buf;
}

static pcre2_code *re(const char *p, const char *flags)
{
	int err;
	PCRE2_SIZE off;
	uint32_t o = 0;
	for (const char *f = flags; f && *f; f++)
		o |= *f == 'i' ? PCRE2_CASELESS : *f == 'm' ? PCRE2_MULTILINE : *f == 's' ? PCRE2_DOTALL : 0;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, o, &err, &off, NULL);
	if (c)
		pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);
	return c;
}

static const char *pieces[] = {
	"your ",  "Your full ", "name",	 "Name:",    "address",	 "ADDRESS",    "phone",	  " number",
	"city",	  "country",	"state", "zip code", "age",	 "sex",	       "1) ",	  "2. ",
	"3: ",	  "a) ",	"___",	 "....",     " ",	 "\n",	       ", ",	  "and ",
	"or ",	  "x",		"9",	 "foo",	     "bar baz ", "cheap",      "viagra",  "v1agra",
	"e-mail", "@",		"money", "(",	     ")",	 "[1]",	       "{2}",	  "#",
	"*",	  "telephone",	"fax",	 "copy of ", "current ", "occupation", "income",  "tel",
	"addres", "adress",	"post",	 "-",	     "\t",	 "Bank",       "account", "swift code",
	"\xe4",	  "\xc3\xa4",
};

/* Every match, start and end, in order, as a search of the whole text
 * finds them; into out (at most max pairs), their count. */
static int all_matches(pcre2_code *c, const char *s, size_t len, size_t *out, int max, pcre2_match_data *md)
{
	int n = 0;
	size_t off = 0;
	while (n < max && off <= len) {
		if (pcre2_match(c, (PCRE2_SPTR)s, len, off, 0, md, NULL) < 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		out[2 * n] = ov[0];
		out[2 * n + 1] = ov[1];
		n++;
		off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
	}
	return n;
}

/* The guarded regex finds the same matches as the written one. */
static void same(const char *pat, const char *flags, int texts)
{
	char *g = guard_pattern(pat, flags);
	CHECK(g != NULL);
	if (!g)
		return;
	pcre2_code *a = re(pat, flags), *b = re(g, flags);
	CHECK(a && b);
	if (!a || !b) {
		fprintf(stderr, "does not compile: %s\n", g);
		free(g);
		return;
	}
	pcre2_match_data *md = pcre2_match_data_create(32, NULL);
	char buf[2048];
	size_t ma[512], mb[512];
	int bad = 0, hit = 0;
	for (int t = 0; t < texts; t++) {
		size_t n = 0, want = 10 + t_rnd(600);
		while (n < want) {
			const char *p = pieces[t_rnd(sizeof(pieces) / sizeof(pieces[0]))];
			size_t l = strlen(p);
			if (n + l >= sizeof(buf))
				break;
			memcpy(buf + n, p, l);
			n += l;
		}
		buf[n] = 0;
		int x = all_matches(a, buf, n, ma, 256, md), y = all_matches(b, buf, n, mb, 256, md);
		hit += x > 0;
		if ((x != y || memcmp(ma, mb, 2 * (size_t)x * sizeof(size_t)) != 0) && bad++ < 3)
			fprintf(stderr, "%s: %d matches as written, %d guarded, on \"%s\"\n", pat, x, y, buf);
	}
	CHECK(bad == 0);
	CHECK(hit > 0); /* the texts exercise the pattern */
	pcre2_match_data_free(md);
	pcre2_code_free(a);
	pcre2_code_free(b);
	free(g);
}

#define FORM                                                                                            \
	"(?:(?:\\d[.):]|[a-c]\\))\\s?)?(?:(?:your|the)\\s)?(?:(?:full\\s|current\\s)?(?:name|ad+res+)|" \
	"(?:tel(?:e?phone)?|fax|mobile)(?:\\s(?:number|no))?|(?:(?:zip|post(?:al)?)(?:\\s?code)?|city|" \
	"st?ates?|country)|(?:e-?mail|bank\\s(?:account|name)|swift\\scode))[\\s:.,_-]{1,10}"

int main(void)
{
	/* a branch that starts with a group gets the octets it may begin with,
	 * in both cases; one that starts with a character test does not */
	CHECK(strcmp(guarded("x(?:ab|cd|(?:ef|Gh)i)", NULL),
		     "x(?:ab|cd|(?=[\\x45\\x47\\x65\\x67])(?:ef|Gh)i)") == 0);
	/* optional items: their octets and the next ones' */
	CHECK(strcmp(guarded("(?:a|b|(?:c)?\\d)", NULL), "(?:a|b|(?=[\\x30-\\x39\\x43\\x63])(?:c)?\\d)") ==
	      0);
	/* lookarounds and anchors are transparent */
	CHECK(strcmp(guarded("(?:a|b|(?!no)\\b(?:yes|ok))", "i"),
		     "(?:a|b|(?=[\\x4f\\x59\\x6f\\x79])(?!no)\\b(?:yes|ok))") == 0);
	/* left as written: too few branches, a branch that may be empty (no
	 * guard on it), a set too large, syntax not taken */
	CHECK(strcmp(guarded("(?:(?:a)b|(?:c)d)", NULL), "") == 0);
	CHECK(strcmp(guarded("(?:a|b|(?:c)?)", NULL), "") == 0);
	CHECK(strcmp(guarded("(?:a|b|(?:.|x)y)", NULL), "") == 0);
	CHECK(strcmp(guarded("(?:a|b|(?:c)d)", "x"), "") == 0);
	CHECK(strcmp(guarded("(?:a|b|(?:c)d)\\K", NULL), "") == 0);
	CHECK(strcmp(guarded("(?(1)a|b)(?:a|b|(?:c)d)", NULL), "") == 0);
	CHECK(strcmp(guarded("(?:a|b|(?:c)d", NULL), "") == 0);
	CHECK(strcmp(guarded("(?:a|b|(?:c)d))", NULL), "") == 0);
	CHECK(strcmp(guarded("[(?:a|b|(?:c)d)", NULL), "") == 0);
	/* a back reference or call may be anything: no guard through it */
	CHECK(strcmp(guarded("(a)(?:a|b|(?:\\1)x)", NULL), "") == 0);
	/* the top level is an alternation too; a class with escapes and ranges */
	CHECK(strcmp(guarded("a|b|(?:[\\d_]|[x-z])+q", NULL),
		     "a|b|(?=[\\x30-\\x39\\x58-\\x5a\\x5f\\x78-\\x7a])(?:[\\d_]|[x-z])+q") == 0);

	/* guarded regexes find the same matches, at the same places */
	same(FORM, "i", 3000);
	same("(?:" FORM "){2}", "i", 3000);
	same("^\\s?(?:(?:\\d[.):]|\\*)\\s?)?(?:name|(?:e-?mail|tel)|(?:your\\s)?(?:city|state))[\\s:]{0,3}$",
	     "im", 3000);
	same("(?<=\\s)(?:(?:your)\\s|(?:the)\\s|(?:a)\\s)?(?:(?:name|city)|(?:(?:e-)?mail)|(?:fax))", "i",
	     3000);
	same("(?:(?>ad+res+)|(?:tel)++|(?:v[1i]agra)*?x|(?:cheap)(?=\\s))", "", 3000);
	same("(?:(?:\\xe4|\\xc3\\xa4)|(?:ban)k|(?:acc)ount|[(\\[{](?:\\d)[)\\]}])", "i", 3000);
	/* case-sensitive outside, caseless inside: the guard takes both cases */
	same("(?:x|y|(?i:name|city)[\\s:]|(?:(?i)fax|tel)\\b)", NULL, 3000);

	return t_done();
}
