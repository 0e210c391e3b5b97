/*
 * fuzz_rules.c - libFuzzer target for the spam plugin's rules parser and
 * compiler (plugins/spam): the input is a rules file, loaded through
 * spam_engine_new_text (PCRE2 only, no Hyperscan: fast, and the parser and
 * compiler are the same). A ruleset that loads is linted and scores a small
 * fixed message (so that eval: arguments, metas, tflags and header targets
 * from the input run); one that does not must say why. Leaks are findings
 * (LeakSanitizer). The input whole is also read as one regex by the
 * readers that derive Hyperscan prefilters from a rule's regex (prefix.c:
 * top-level cuts, relaxed repeats, the reverse) and as one with a native
 * check or a counter (native.c) against PCRE2. Replayed over tests/fuzz/corpus/rules/
 * in every build by replay.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/spam/engine.h"
#include "../../plugins/spam/internal.h"
#include "mailsyntax.h"
#include "mime.h"
#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char message[] =
	"Received: from mail.example.org (mail.example.org [192.0.2.7])\r\n"
	"\tby mx.example.net (Postfix) with ESMTP id 4AB12C3D;\r\n"
	"\tTue, 1 Dec 2026 10:00:00 +0100 (CET)\r\n"
	"Received: from [10.0.0.2] (helo=client) by mail.example.org with esmtpa\r\n"
	"\t(envelope-from <alice@example.org>) id 1abc; Tue, 1 Dec 2026 09:59:58 +0100\r\n"
	"From: \"Alice\" <alice@example.org>\r\n"
	"To: bob@example.net, carol@example.net\r\n"
	"Reply-To: alice@freemail.example\r\n"
	"Subject: =?UTF-8?B?SGVsbG8gV09STEQ=?= FREE money\r\n"
	"Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n"
	"Message-ID: <abc.123@example.org>\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/alternative; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"Hello Bob, click http://www.example.com/x?y=1 for FREE money.\r\n"
	"--b1\r\n"
	"Content-Type: text/html; charset=utf-8\r\n"
	"\r\n"
	"<html><head><title>t</title></head><body><font size=+3 color=white>hi</font>"
	"<a href=\"http://click.example.com/\">click <img src=x.png width=300 height=200></a>"
	"<!-- comment --><form action=\"mailto:a@b\"></form></body></html>\r\n"
	"--b1--\r\n";

static struct sift_mime *mime;

static void score(const struct spam_engine *e)
{
	if (!mime)
		mime = sift_mime_parse_message((const unsigned char *)message, sizeof(message) - 1, NULL);
	if (!mime)
		abort();
	static const char *const names[] = {"SPF_PASS", "DKIM_VALID"};
	static const double scores[] = {-0.5, 0.1};
	struct spam_input in = {.mime = mime,
				.nsyms = 2,
				.sym_names = names,
				.sym_scores = scores,
				.helo = "client.example.org",
				.client_addr = "192.0.2.7",
				.client_name = "mail.example.org",
				.addrlist_parse = sift_addrlist_parse};
	struct spam_result r;
	if (spam_engine_check(e, &in, &r) != 0)
		abort();
	for (size_t i = 1; i < r.nhits; i++)
		if (strcmp(r.hits[i - 1].name, r.hits[i].name) > 0)
			abort();
	char *status = spam_format_status(&r, 2, 5, r.score >= 5);
	if (!status)
		abort();
	free(status);
	spam_result_free(&r);
}

/* pat compiled by PCRE2, caseless when ci; NULL on error. */
static pcre2_code *compile_ci(const char *pat, int ci)
{
	int ec;
	PCRE2_SIZE eo;
	return pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, ci ? PCRE2_CASELESS : 0, &ec, &eo, NULL);
}

/* The input as one regex with a native check (native.c): the check passes
 * every text PCRE2 matches it in (the input itself, a few fixed texts),
 * in both cases. */
static void native(const char *pat)
{
	static const char *const texts[] = {
		"alpha bravo charlie delta echoes foxtrot golfing hotels indiana juliett ",
		"ID 0123456789abcdef-0000 AAAAAAAAAAAAAAAAAAAAAA zz",
		"id 0123456789 ok",
		"a  b.. c\t\n",
		"your rn0n&#101;y, ph-a-r-m-a-c-y, V1AGRA \xc3\xa9",
		"",
		NULL};
	for (int ci = 0; ci < 2; ci++) {
		struct native_pf *n = native_prefilter(pat, ci ? "i" : NULL);
		if (!n)
			continue;
		pcre2_code *re = compile_ci(pat, ci);
		pcre2_match_data *md = re ? pcre2_match_data_create_from_pattern(re, NULL) : NULL;
		pcre2_match_context *mc = pcre2_match_context_create(NULL);
		pcre2_set_match_limit(mc, 100000);
		for (int t = -1; md && mc && (t < 0 || texts[t]); t++) {
			const char *s = t < 0 ? pat : texts[t];
			struct native_memo memo = {0};
			if (pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, mc) >= 0 &&
			    !native_possible(n, s, strlen(s), &memo))
				abort();
		}
		pcre2_match_context_free(mc);
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		native_free(n);
	}
}

/* The input as one regex with a counter (native.c): it counts what PCRE2's
 * repeated search counts, in the input and a few fixed texts, in both
 * cases. */
static void counter(const char *pat)
{
	static const char *const texts[] = {"eee \xc3\xa9t\xc3\xa9 e\xd0\xb5"
					    "e",
					    "abcabc aab ba-]x.y", "", NULL};
	for (int ci = 0; ci < 2; ci++) {
		struct native_pf *n = native_counter(pat, ci ? "i" : NULL);
		if (!n)
			continue;
		pcre2_code *re = compile_ci(pat, ci);
		if (!re) { /* the engine gives counters to compiled rules only */
			native_free(n);
			continue;
		}
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
		for (int t = -1; md && (t < 0 || texts[t]); t++) {
			const char *s = t < 0 ? pat : texts[t];
			size_t len = strlen(s), off = 0;
			int want = 0;
			while (off <= len && pcre2_match(re, (PCRE2_SPTR)s, len, off, 0, md, NULL) >= 0) {
				PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
				want++;
				off = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
			}
			if (native_count(n, s, len, 1000) != (want < 1000 ? want : 1000))
				abort();
		}
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		native_free(n);
	}
}

/* The input as one regex: the prefilter readers never read past its end,
 * a relaxed pattern is never longer than the regex, and a widened one
 * compiles wherever the regex does. */
static void prefilters(const uint8_t *data, size_t size)
{
	char *pat = malloc(size + 1);
	if (!pat)
		return;
	memcpy(pat, data, size);
	pat[size] = 0;
	size_t cuts[PREFIX_MAX_FALLBACK];
	int n = prefilter_cuts(pat, "i", cuts, PREFIX_MAX_FALLBACK);
	for (int k = 0; k < n; k++)
		if (cuts[k] > strlen(pat))
			abort();
	if (prefilter_prefix(pat, NULL) > strlen(pat))
		abort();
	for (unsigned count = 3; count <= 8; count += 5) {
		char *r = prefilter_relax(pat, NULL, count);
		if (r && (strlen(r) > strlen(pat) || strcmp(r, pat) == 0))
			abort();
		free(r);
	}
	/* a widened regex compiles wherever the regex does, unless it grows
	 * past PCRE2's size limit as (\xff){6366} does (the widened form is
	 * for Hyperscan, which takes it, or names it and leaves the rule to
	 * PCRE2), and is widened once for all */
	char *wide = prefilter_widen(pat, "i");
	if (wide) {
		int ec;
		PCRE2_SIZE eo;
		pcre2_code *a =
			pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec, &eo, NULL);
		pcre2_code *b = a ? pcre2_compile((PCRE2_SPTR)wide, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS,
						  &ec, &eo, NULL)
				  : NULL;
		if (a && !b && ec != PCRE2_ERROR_PATTERN_TOO_LARGE)
			abort();
		pcre2_code_free(a);
		pcre2_code_free(b);
		char *again = prefilter_widen(wide, "i");
		if (again)
			abort();
	}
	free(wide);
	/* the form for ASCII lines and the pieces of a split compile wherever
	 * the regex does */
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *whole = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
	char *ascii = prefilter_ascii(pat, NULL);
	if (ascii && *ascii) {
		pcre2_code *c = pcre2_compile((PCRE2_SPTR)ascii, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
		if (whole && !c)
			abort();
		pcre2_code_free(c);
	}
	free(ascii);
	char *parts = prefilter_split(pat, NULL);
	for (char *p = parts, *nl; p; p = nl ? nl + 1 : NULL) {
		if ((nl = strchr(p, '\n')))
			*nl = 0;
		pcre2_code *c = pcre2_compile((PCRE2_SPTR)p, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
		if (whole && !c)
			abort();
		pcre2_code_free(c);
	}
	free(parts);
	pcre2_code_free(whole);
	/* the reverse of the reverse reads as a regex again */
	char *rev = prefilter_reverse(pat, NULL);
	if (rev) {
		char *back = prefilter_reverse(rev, NULL);
		if (!back)
			abort();
		free(back);
	}
	free(rev);
	native(pat);
	counter(pat);
	free(pat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	prefilters(data, size);
	struct spam_engine_opts o = {.use_hyperscan = 0};
	char *err = NULL;
	struct spam_engine *e = spam_engine_new_text(&o, "fuzz.cf", (const char *)data, size, &err);
	if (!e) {
		/* refused: with a reason */
		if (!err || !*err)
			abort();
		free(err);
		return 0;
	}
	if (err)
		abort();
	FILE *devnull = fopen("/dev/null", "w");
	if (devnull) {
		spam_engine_lint(e, devnull, 1);
		fclose(devnull);
	}
	char buf[512];
	spam_engine_stats(e, buf, sizeof(buf));
	score(e);
	spam_engine_free(e);
	return 0;
}
