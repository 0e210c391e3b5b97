/*
 * test_dmarcrec.c - the DMARC record parser, alignment and evaluation
 * (dmarcrec.c), table-driven:
 * - records: v=DMARC1 first (else not a record), tags in any order with
 *   white space, case-insensitive keywords, unknown tags ignored, first of
 *   a repeated tag kept, invalid optional values falling back to defaults,
 *   missing/invalid p= or invalid sp= -> p=none with a valid rua=, else
 *   invalid (RFC 7489 6.6.3);
 * - alignment: relaxed (same organizational domain) and strict (same
 *   domain), with a small suffix table standing in for the PSL;
 * - evaluation: pass by DKIM or SPF alignment, fail, p vs sp (record at the
 *   organizational domain), pct sampling, results kept from discovery;
 * - an SPF or DKIM temperror that would have aligned: temperror with no
 *   disposition when nothing aligned passes, never fail.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "dmarcrec.h"
#include "t.h"

/* Organizational domain: the last two labels, three under co.uk. */
static bool org(void *arg, const char *d, char *out, size_t n)
{
	(void)arg;
	size_t len = strlen(d);
	int want = len > 6 && strcmp(d + len - 6, ".co.uk") == 0 ? 3 : 2;
	int dots = 0;
	const char *p = d + len;
	while (p > d) {
		p--;
		if (*p == '.' && ++dots == want) {
			p++;
			break;
		}
	}
	snprintf(out, n, "%s", p);
	return dots >= want - 1;
}

static void test_records(void)
{
	struct dmarc_record r;
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=reject", &r), DMARC_REC_OK);
	CHECK_INT(r.p, DMARC_P_REJECT);
	CHECK_INT(r.sp, DMARC_P_REJECT);
	CHECK_INT(r.pct, 100);
	CHECK(!r.adkim_strict && !r.aspf_strict);
	CHECK_INT(dmarc_record_parse(
			  " v = DMARC1 ;p=quarantine; sp=none ;adkim=s;aspf=s; pct=20;"
			  " rua=mailto:agg@example.com,mailto:x@example.org!10m; ruf=mailto:f@example.com;"
			  " fo=1; ri=3600; xyz=unknown",
			  &r),
		  DMARC_REC_OK);
	CHECK_INT(r.p, DMARC_P_QUARANTINE);
	CHECK_INT(r.sp, DMARC_P_NONE);
	CHECK(r.sp_given);
	CHECK(r.adkim_strict && r.aspf_strict);
	CHECK_INT(r.pct, 20);
	CHECK_STR(r.rua, "mailto:agg@example.com,mailto:x@example.org!10m");
	CHECK_STR(r.ruf, "mailto:f@example.com");
	CHECK_STR(r.fo, "1");
	CHECK_INT(r.ri, 3600);
	CHECK(r.rua_valid);
	/* v= must come first, exactly DMARC1 */
	CHECK_INT(dmarc_record_parse("p=reject; v=DMARC1", &r), DMARC_REC_NOT_DMARC);
	CHECK_INT(dmarc_record_parse("v=DMARC2; p=reject", &r), DMARC_REC_NOT_DMARC);
	CHECK_INT(dmarc_record_parse("v=spf1 -all", &r), DMARC_REC_NOT_DMARC);
	CHECK_INT(dmarc_record_parse("", &r), DMARC_REC_NOT_DMARC);
	CHECK_INT(dmarc_record_parse("v=DMARC1p=reject", &r), DMARC_REC_NOT_DMARC);
	CHECK(dmarc_is_record("v=dmarc1; p=none"));
	CHECK(!dmarc_is_record("v=DMARC10; p=none"));
	/* keywords case-insensitive, first of a repeated tag kept */
	CHECK_INT(dmarc_record_parse("v=DMARC1; P=Reject; p=none", &r), DMARC_REC_OK);
	CHECK_INT(r.p, DMARC_P_REJECT);
	/* invalid optional values: defaults */
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=none; pct=101; adkim=x; aspf=strict", &r), DMARC_REC_OK);
	CHECK_INT(r.pct, 100);
	CHECK(!r.adkim_strict && !r.aspf_strict);
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=none; pct=0", &r), DMARC_REC_OK);
	CHECK_INT(r.pct, 0);
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=none; pct=-1", &r), DMARC_REC_OK);
	CHECK_INT(r.pct, 100);
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=none; pct=1000", &r), DMARC_REC_OK);
	CHECK_INT(r.pct, 100);
	/* no or invalid p=, invalid sp=: p=none with a valid rua=, else invalid */
	CHECK_INT(dmarc_record_parse("v=DMARC1", &r), DMARC_REC_INVALID);
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=bogus", &r), DMARC_REC_INVALID);
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=reject; sp=bogus", &r), DMARC_REC_INVALID);
	CHECK_INT(dmarc_record_parse("v=DMARC1; p=bogus; rua=mailto:a@example.com", &r),
		  DMARC_REC_P_NONE_FALLBACK);
	CHECK_INT(r.p, DMARC_P_NONE);
	CHECK_INT(r.sp, DMARC_P_NONE);
	CHECK_INT(dmarc_record_parse("v=DMARC1; rua=mailto:", &r), DMARC_REC_INVALID);
	CHECK_INT(dmarc_record_parse("v=DMARC1; rua=nourl", &r), DMARC_REC_INVALID);
	CHECK_INT(dmarc_record_parse("v=DMARC1; rua=mailto:a@b!x", &r), DMARC_REC_INVALID);
	CHECK_INT(dmarc_record_parse("v=DMARC1; rua=bad, https://r.example.com/x", &r),
		  DMARC_REC_P_NONE_FALLBACK);
	/* a rua= longer than is kept: the URIs that fit, not a cut one
	 * (cut, dmarc@example.com.au would be dmarc@example.com) */
	char rec[1400], first[600];
	snprintf(first, sizeof(first), "mailto:%0467d@example.com", 0);
	snprintf(rec, sizeof(rec), "v=DMARC1; p=none; rua=%s,mailto:dmarc@example.com.au", first);
	CHECK_INT(dmarc_record_parse(rec, &r), DMARC_REC_OK);
	CHECK_STR(r.rua, first);
	CHECK(r.rua_valid);
	snprintf(rec, sizeof(rec), "v=DMARC1; p=none; rua=%s%s", first, first);
	CHECK_INT(dmarc_record_parse(rec, &r), DMARC_REC_OK);
	CHECK_STR(r.rua, "");
}

static void test_alignment(void)
{
	CHECK(dmarc_aligned("example.com", "example.com", true, org, NULL));
	CHECK(dmarc_aligned("Example.COM.", "example.com", true, org, NULL));
	CHECK(!dmarc_aligned("mail.example.com", "example.com", true, org, NULL));
	CHECK(dmarc_aligned("mail.example.com", "example.com", false, org, NULL));
	CHECK(dmarc_aligned("a.example.com", "b.example.com", false, org, NULL));
	CHECK(!dmarc_aligned("example.org", "example.com", false, org, NULL));
	CHECK(dmarc_aligned("x.example.co.uk", "example.co.uk", false, org, NULL));
	CHECK(!dmarc_aligned("other.co.uk", "example.co.uk", false, org, NULL));
	CHECK(!dmarc_aligned("", "example.com", false, org, NULL));
	CHECK(!dmarc_aligned("exa mple.com", "example.com", false, org, NULL));
	char d[DMARC_DOMAIN_MAX];
	CHECK(dmarc_domain_norm("A.B.", d, sizeof(d)));
	CHECK_STR(d, "a.b");
	CHECK(!dmarc_domain_norm("a..b", d, sizeof(d)));
	CHECK(!dmarc_domain_norm("[1.2.3.4]", d, sizeof(d)));
}

static void setup(struct dmarc_eval *e, const char *from, const char *rec, bool at_org)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->from_domain, sizeof(e->from_domain), "%s", from);
	org(NULL, from, e->org_domain, sizeof(e->org_domain));
	if (rec) {
		e->have_record = dmarc_record_parse(rec, &e->rec) == DMARC_REC_OK;
		e->record_at_org = at_org;
	}
}

static void dkim(struct dmarc_eval *e, const char *d, int pass)
{
	snprintf(e->dkim[e->ndkim].domain, DMARC_DOMAIN_MAX, "%s", d);
	e->dkim[e->ndkim++].result = pass;
}

static void test_eval(void)
{
	struct dmarc_eval e;
	/* DKIM aligned, relaxed */
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	dkim(&e, "other.org", 1);
	dkim(&e, "mail.example.com", 1);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_PASS);
	CHECK(e.dkim_aligned && !e.dkim[0].aligned && e.dkim[1].aligned);
	CHECK_INT(e.disposition, DMARC_P_NONE);
	/* strict: the same signature does not align */
	setup(&e, "example.com", "v=DMARC1; p=reject; adkim=s", false);
	dkim(&e, "mail.example.com", 1);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	CHECK_INT(e.disposition, DMARC_P_REJECT);
	/* a failing aligned signature does not count */
	setup(&e, "example.com", "v=DMARC1; p=quarantine", false);
	dkim(&e, "example.com", 0);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	CHECK_INT(e.disposition, DMARC_P_QUARANTINE);
	/* SPF aligned relaxed, not strict; SPF fail never aligns */
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	snprintf(e.spf.domain, sizeof(e.spf.domain), "bounce.example.com");
	e.spf.result = DMARC_SPF_PASS;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_PASS);
	CHECK(e.spf_aligned);
	e.rec.aspf_strict = true;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	e.rec.aspf_strict = false;
	e.spf.result = DMARC_SPF_SOFTFAIL;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	/* sp= applies to a record found at the organizational domain */
	setup(&e, "sub.example.co.uk", "v=DMARC1; p=reject; sp=quarantine", true);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_STR(e.org_domain, "example.co.uk");
	CHECK_INT(e.policy, DMARC_P_QUARANTINE);
	CHECK_INT(e.disposition, DMARC_P_QUARANTINE);
	setup(&e, "sub.example.co.uk", "v=DMARC1; p=reject", true);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.policy, DMARC_P_REJECT);
	setup(&e, "example.co.uk", "v=DMARC1; p=reject; sp=none", false);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.policy, DMARC_P_REJECT);
	/* pct: sampled out -> the next milder policy */
	setup(&e, "example.com", "v=DMARC1; p=reject; pct=50", false);
	dmarc_evaluate(&e, 49, org, NULL);
	CHECK_INT(e.disposition, DMARC_P_REJECT);
	CHECK_INT(e.override, DMARC_O_NONE);
	dmarc_evaluate(&e, 50, org, NULL);
	CHECK_INT(e.disposition, DMARC_P_QUARANTINE);
	CHECK_INT(e.override, DMARC_O_SAMPLED_OUT);
	setup(&e, "example.com", "v=DMARC1; p=quarantine; pct=0", false);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	CHECK_INT(e.disposition, DMARC_P_NONE);
	CHECK_INT(e.override, DMARC_O_SAMPLED_OUT);
	/* p=none: fail, no disposition */
	setup(&e, "example.com", "v=DMARC1; p=none", false);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	CHECK_INT(e.disposition, DMARC_P_NONE);
	/* no record: none; temperror from discovery is kept */
	setup(&e, "example.com", NULL, false);
	dkim(&e, "example.com", 1);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_NONE);
	CHECK(e.dkim_aligned);
	setup(&e, "example.com", NULL, false);
	e.result = DMARC_R_TEMPERROR;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_TEMPERROR);
	CHECK_INT(e.disposition, DMARC_P_NONE);
}

/* An identifier's temperror: temperror when it would have aligned and
 * nothing aligned passes; never fail, never a disposition. */
static void test_temperror(void)
{
	struct dmarc_eval e;
	/* an aligned DKIM key lookup that failed, an unaligned SPF pass */
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	dkim(&e, "example.com", DMARC_DKIM_TEMPERROR);
	snprintf(e.spf.domain, sizeof(e.spf.domain), "other.org");
	e.spf.result = DMARC_SPF_PASS;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_TEMPERROR);
	CHECK_INT(e.disposition, DMARC_P_NONE);
	CHECK_INT(e.policy, DMARC_P_REJECT);
	CHECK(!e.dkim_aligned && !e.dkim[0].aligned);
	/* relaxed: a subdomain's signature would have aligned */
	setup(&e, "example.com", "v=DMARC1; p=quarantine", false);
	dkim(&e, "mail.example.com", DMARC_DKIM_TEMPERROR);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_TEMPERROR);
	CHECK_INT(e.disposition, DMARC_P_NONE);
	/* strict: it would not have, so fail */
	setup(&e, "example.com", "v=DMARC1; p=reject; adkim=s", false);
	dkim(&e, "mail.example.com", DMARC_DKIM_TEMPERROR);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	CHECK_INT(e.disposition, DMARC_P_REJECT);
	/* an unaligned identifier's temperror: fail */
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	dkim(&e, "other.org", DMARC_DKIM_TEMPERROR);
	snprintf(e.spf.domain, sizeof(e.spf.domain), "other.org");
	e.spf.result = DMARC_SPF_TEMPERROR;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	CHECK_INT(e.disposition, DMARC_P_REJECT);
	/* an aligned SPF temperror; strict aspf refuses a subdomain's */
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	dkim(&e, "example.com", DMARC_DKIM_FAIL);
	snprintf(e.spf.domain, sizeof(e.spf.domain), "bounce.example.com");
	e.spf.result = DMARC_SPF_TEMPERROR;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_TEMPERROR);
	CHECK_INT(e.disposition, DMARC_P_NONE);
	e.rec.aspf_strict = true;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_FAIL);
	/* an aligned pass wins over another identifier's temperror */
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	dkim(&e, "example.com", DMARC_DKIM_TEMPERROR);
	dkim(&e, "mail.example.com", DMARC_DKIM_PASS);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_PASS);
	setup(&e, "example.com", "v=DMARC1; p=reject", false);
	dkim(&e, "example.com", DMARC_DKIM_TEMPERROR);
	snprintf(e.spf.domain, sizeof(e.spf.domain), "example.com");
	e.spf.result = DMARC_SPF_PASS;
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_PASS);
	/* no record: none, whatever the identifiers */
	setup(&e, "example.com", NULL, false);
	dkim(&e, "example.com", DMARC_DKIM_TEMPERROR);
	dmarc_evaluate(&e, 0, org, NULL);
	CHECK_INT(e.result, DMARC_R_NONE);
}

int main(void)
{
	test_records();
	test_alignment();
	test_eval();
	test_temperror();
	return t_done();
}
