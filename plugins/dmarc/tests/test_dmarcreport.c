/*
 * test_dmarcreport.c - aggregate report rows in the core's in-memory
 * key-value store (state_store = memory:, dmarc_report_store = state),
 * where recording and reporting must happen in one process: messages'
 * rows recorded through a host whose kv_* functions are the core's memory
 * store, read back, counted, turned into the reports of each policy domain
 * (printed for test_report.py to validate against the schema), deleted.
 * Also: a row for a message without rua= or without a record is not made;
 * a row with a bad field count is ignored when read back; a row whose
 * first message met a store error at each step of its indexing is
 * reported by its later messages, once, with every message counted.
 * Deleting the rows of the domains whose reports went out keeps the
 * others', in both stores.
 *
 * Usage: test_dmarcreport DIR (DIR: a scratch directory, for the file
 * store's check of the same rows).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dmarcreport.h"
#include "sift.h"

static struct sift_kv *kv;
static int fails;

#define CHECK(c, what)                                       \
	do {                                                 \
		if (!(c)) {                                  \
			fprintf(stderr, "FAIL: %s\n", what); \
			fails++;                             \
		} else                                       \
			fprintf(stderr, "ok   %s\n", what);  \
	} while (0)

static int k_get(const char *key, char **v)
{
	return sift_kv_get(kv, key, v);
}
/* writes to keys starting with this fail, as when the store is gone */
static const char *failing;

static bool fails_now(const char *key)
{
	return failing && strncmp(key, failing, strlen(failing)) == 0;
}
static int k_set(const char *key, const char *v, long ttl)
{
	return fails_now(key) ? -1 : sift_kv_set(kv, key, v, ttl);
}
static int k_incr(const char *key, long long d, long ttl, long long *v)
{
	return fails_now(key) ? -1 : sift_kv_incr(kv, key, d, ttl, v);
}
static int k_del(const char *key)
{
	return sift_kv_del(kv, key);
}

static void eval(struct dmarc_eval *e, const char *from, bool pass, const char *rua)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->from_domain, sizeof(e->from_domain), "%s", from);
	snprintf(e->org_domain, sizeof(e->org_domain), "%s", from);
	snprintf(e->spf.domain, sizeof(e->spf.domain), "%s", from);
	e->spf.result = pass ? DMARC_SPF_PASS : DMARC_SPF_FAIL;
	e->spf_aligned = pass;
	snprintf(e->dkim[0].domain, sizeof(e->dkim[0].domain), "%s", from);
	e->dkim[0].result = 1;
	snprintf(e->dkim[1].domain, sizeof(e->dkim[1].domain), "list.example");
	e->ndkim = 2;
	e->have_record = true;
	e->rec.p = e->rec.sp = DMARC_P_QUARANTINE;
	e->rec.pct = 50;
	snprintf(e->rec.rua, sizeof(e->rec.rua), "%s", rua);
	e->rec.rua_valid = *rua != 0;
	e->result = pass ? DMARC_R_PASS : DMARC_R_FAIL;
	e->dkim_aligned = true;
	e->policy = DMARC_P_QUARANTINE;
	e->disposition = pass ? DMARC_P_NONE : DMARC_P_QUARANTINE;
	if (!pass) {
		e->disposition = DMARC_P_NONE;
		e->override = DMARC_O_SITE_ACTION;
	}
}

static size_t report_all(const struct sift_host *h, const struct dmarc_report_conf *rc, const char *day,
			 time_t begin)
{
	struct dmarc_rows rows = {0};
	char *err = NULL;
	CHECK(dmarc_report_load(h, rc, day, &rows, &err) == 0, "rows loaded");
	size_t reports = 0;
	const char *domains[] = {"one.example", "two.example"};
	for (int d = 0; d < 2; d++) {
		const struct dmarc_row *v[8];
		size_t n = 0;
		long long total = 0;
		for (size_t i = 0; i < rows.n && n < 8; i++)
			if (strcmp(rows.v[i].f[RF_DOMAIN], domains[d]) == 0) {
				v[n++] = &rows.v[i];
				total += rows.v[i].count;
			}
		if (!n)
			continue;
		char *xml = dmarc_report_xml(rc, v, n, "id-1", begin, begin + 86399);
		fputs(xml, stdout);
		unsigned char *gz = NULL;
		size_t gzlen = 0;
		CHECK(dmarc_gzip(xml, strlen(xml), &gz, &gzlen) == 0 && gzlen > 18 && gz[0] == 0x1f &&
			      gz[1] == 0x8b,
		      "gzip");
		free(gz);
		free(xml);
		CHECK(d == 0 ? n == 2 && total == 4 : n == 1 && total == 1, "rows and counts of a domain");
		reports++;
	}
	dmarc_rows_free(&rows);
	return reports;
}

int main(int argc, char **argv)
{
	char *err = NULL;
	kv = sift_kv_open("memory:", &err);
	if (!kv || argc < 2)
		return 2;
	struct sift_host h = {.struct_size = sizeof(h),
			      .kv_get = k_get,
			      .kv_set = k_set,
			      .kv_incr = k_incr,
			      .kv_del = k_del};
	struct dmarc_report_conf rc = {.store = "state",
				       .retention = 86400000LL * 7,
				       .org_name = "Example & Co",
				       .email = "postmaster@mx.example",
				       .extra_contact = "",
				       .domain = "mx.example",
				       .sendmail = "/bin/false"};
	struct dmarc_eval e;
	char row[DMARC_ROW_MAX];
	time_t now = time(NULL), begin;
	char day[11];
	dmarc_report_day(now, day, &begin);
	/* one.example: 3 identical passing messages + 1 failing; two.example: 1 */
	for (int i = 0; i < 5; i++) {
		eval(&e, i < 4 ? "one.example" : "two.example", i != 3, "mailto:r@one.example");
		CHECK(dmarc_report_row(&e, i == 4 ? "::1" : "192.0.2.1", "one.example", row, sizeof(row)),
		      "row made");
		CHECK(dmarc_report_record(&h, &rc, row, now) == 0, "row recorded (memory)");
	}
	/* 16 DKIM results of 250-octet domains do not fit a row: the row
	 * keeps those that fit */
	eval(&e, "one.example", true, "mailto:r@one.example");
	for (size_t i = 0; i < DMARC_MAX_DKIM; i++) {
		memset(e.dkim[i].domain, 'd', 250);
		e.dkim[i].domain[250] = 0;
		e.dkim[i].result = 1;
	}
	e.ndkim = DMARC_MAX_DKIM;
	CHECK(dmarc_report_row(&e, "192.0.2.1", "one.example", row, sizeof(row)) &&
		      strlen(row) < sizeof(row) && strstr(row, ":pass,") != NULL,
	      "16 long DKIM results: a row, with those that fit");
	eval(&e, "three.example", true, "");
	CHECK(!dmarc_report_row(&e, "192.0.2.1", "", row, sizeof(row)), "no rua=: no row");
	eval(&e, "three.example", true, "mailto:r@three.example");
	e.have_record = false;
	CHECK(!dmarc_report_row(&e, "192.0.2.1", "", row, sizeof(row)), "no record: no row");
	/* the rows of one.example (its report sent) deleted, two.example's
	 * (its sendmail failed) kept */
	const char *sent[] = {"one.example"};
	struct dmarc_rows left = {0};
	CHECK(dmarc_report_remove_domains(&h, &rc, day, sent, 1, &err) == 0 &&
		      dmarc_report_load(&h, &rc, day, &left, &err) == 0 && left.n == 1 &&
		      strcmp(left.v[0].f[RF_DOMAIN], "two.example") == 0,
	      "memory store: a sent domain's rows deleted, the other's kept");
	dmarc_rows_free(&left);
	for (int i = 0; i < 4; i++) {
		eval(&e, "one.example", i != 3, "mailto:r@one.example");
		dmarc_report_row(&e, "192.0.2.1", "one.example", row, sizeof(row));
		CHECK(dmarc_report_record(&h, &rc, row, now) == 0, "row recorded again (memory)");
	}
	CHECK(sift_kv_set(kv, "dmarc:n:0000-00-00", "1", 0) == 0, "a stray day");
	CHECK(report_all(&h, &rc, day, begin) == 2, "memory store: two reports");
	CHECK(dmarc_report_remove(&h, &rc, day, &err) == 0, "rows removed");
	char *v = NULL, key[64];
	snprintf(key, sizeof(key), "dmarc:n:%s", day);
	CHECK(sift_kv_get(kv, key, &v) == 1 && report_all(&h, &rc, day, begin) == 0, "nothing left");
	free(v);
	/* A store error at each step of a new row's indexing: the row is
	 * listed again by a later message, read once, every message counted. */
	const char *steps[] = {"dmarc:n:", "dmarc:i:", "dmarc:t:"};
	for (int s = 0; s < 3; s++) {
		eval(&e, "one.example", true, "mailto:r@one.example");
		dmarc_report_row(&e, "192.0.2.9", "one.example", row, sizeof(row));
		failing = steps[s];
		CHECK(dmarc_report_record(&h, &rc, row, now) < 0, "a store error is reported");
		failing = NULL;
		for (int i = 0; i < 4; i++)
			CHECK(dmarc_report_record(&h, &rc, row, now) == 0,
			      "later messages of the row recorded");
		struct dmarc_rows kr = {0};
		char what[96];
		snprintf(what, sizeof(what), "failed %s...: one row of 5 messages", steps[s]);
		CHECK(dmarc_report_load(&h, &rc, day, &kr, &err) == 0 && kr.n == 1 && kr.v[0].count == 5,
		      what);
		dmarc_rows_free(&kr);
		CHECK(dmarc_report_remove(&h, &rc, day, &err) == 0, "rows removed");
	}
	/* The same rows in the file store, plus a line of another format. */
	char spec[4200];
	snprintf(spec, sizeof(spec), "file:%s", argv[1]);
	struct dmarc_report_conf fc = rc;
	fc.store = spec;
	CHECK(dmarc_report_check_store(&fc, &err) == 0, "file store directory made");
	for (int i = 0; i < 5; i++) {
		eval(&e, i < 4 ? "one.example" : "two.example", i != 3, "mailto:r@one.example");
		dmarc_report_row(&e, i == 4 ? "::1" : "192.0.2.1", "one.example", row, sizeof(row));
		CHECK(dmarc_report_record(&h, &fc, row, now) == 0, "row recorded (file)");
	}
	CHECK(dmarc_report_record(&h, &fc, "2\tfuture\tformat", now) == 0, "a line of another format");
	struct dmarc_rows rows = {0};
	CHECK(dmarc_report_load(&h, &fc, day, &rows, &err) == 0 && rows.n == 3,
	      "file store: three rows, one ignored");
	dmarc_rows_free(&rows);
	CHECK(dmarc_report_remove_domains(&h, &fc, day, sent, 1, &err) == 0 &&
		      dmarc_report_load(&h, &fc, day, &rows, &err) == 0 && rows.n == 1 &&
		      strcmp(rows.v[0].f[RF_DOMAIN], "two.example") == 0,
	      "file store: a sent domain's rows deleted, the other's kept");
	dmarc_rows_free(&rows);
	CHECK(dmarc_report_remove(&h, &fc, day, &err) == 0, "file rows removed");
	sift_kv_free(kv);
	return fails ? 1 : 0;
}
