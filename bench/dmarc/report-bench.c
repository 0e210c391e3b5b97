/*
 * report-bench.c - the DMARC aggregate reports' costs, CPU time (getrusage):
 *
 *   recording: what the dmarc plugin adds per message when
 *     dmarc_report_store is set (the row serialized, then counted in the
 *     state store through the core's key-value store, or appended to the
 *     day's file), for MESSAGES messages spread over ROWS distinct rows;
 *   reporting: what `siftctl dmarc report` spends per row: the day's rows
 *     read back and counted, grouped by policy domain (DOMAINS of them),
 *     the Appendix C XML made and gzip-compressed.
 *
 * Usage: report-bench [--messages N] [--rows N] [--domains N]
 *                     [--state-store SPEC] [--dir DIR]
 * SPEC is a state_store value (default memory:; redis:127.0.0.1:6379 for a
 * Redis); DIR a scratch directory for the file store (default a new one in
 * /var/tmp, removed afterwards). Prints messages/s, CPU per message,
 * rows/s and the peak RSS.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dmarcreport.h"
#include "sift.h"

static struct sift_kv *kv;

static int k_get(const char *key, char **v)
{
	return sift_kv_get(kv, key, v);
}
static int k_set(const char *key, const char *v, long ttl)
{
	return sift_kv_set(kv, key, v, ttl);
}
static int k_incr(const char *key, long long d, long ttl, long long *v)
{
	return sift_kv_incr(kv, key, d, ttl, v);
}
static int k_del(const char *key)
{
	return sift_kv_del(kv, key);
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* Message i's evaluation: row i % rows (client, domain and results vary). */
static void eval(struct dmarc_eval *e, long i, long rows, long domains, char *ip, size_t n)
{
	long r = i % rows;
	memset(e, 0, sizeof(*e));
	snprintf(e->from_domain, sizeof(e->from_domain), "d%ld.example", r % domains);
	snprintf(e->org_domain, sizeof(e->org_domain), "%s", e->from_domain);
	snprintf(e->spf.domain, sizeof(e->spf.domain), "mail.d%ld.example", r % domains);
	e->spf.result = r % 3 ? DMARC_SPF_PASS : DMARC_SPF_FAIL;
	e->spf_aligned = r % 3 != 0;
	snprintf(e->dkim[0].domain, sizeof(e->dkim[0].domain), "%s", e->from_domain);
	e->dkim[0].result = r % 2;
	e->dkim_aligned = r % 2;
	e->ndkim = 1;
	e->have_record = true;
	e->rec.p = e->rec.sp = DMARC_P_REJECT;
	e->rec.pct = 100;
	snprintf(e->rec.rua, sizeof(e->rec.rua), "mailto:dmarc@d%ld.example", r % domains);
	e->rec.rua_valid = true;
	e->result = e->spf_aligned || e->dkim_aligned ? DMARC_R_PASS : DMARC_R_FAIL;
	e->disposition = e->result == DMARC_R_PASS ? DMARC_P_NONE : DMARC_P_REJECT;
	snprintf(ip, n, "198.51.%ld.%ld", (r / domains / 250) % 250, (r / domains) % 250 + 1);
}

static void record(const char *what, const struct sift_host *h, const struct dmarc_report_conf *rc,
		   long messages, long rows, long domains, time_t now)
{
	double t0 = cpu_s();
	long bad = 0;
	for (long i = 0; i < messages; i++) {
		struct dmarc_eval e;
		char ip[32], row[DMARC_ROW_MAX];
		eval(&e, i, rows, domains, ip, sizeof(ip));
		if (!dmarc_report_row(&e, ip, "mail.example", row, sizeof(row)) ||
		    dmarc_report_record(h, rc, row, now) < 0)
			bad++;
	}
	double cpu = cpu_s() - t0;
	printf("record %-28s %8ld messages  %9.0f msgs/s CPU  %6.2f us CPU/msg%s\n", what, messages,
	       messages / cpu, cpu / messages * 1e6, bad ? "  (FAILURES)" : "");
}

static int cmp_domain(const void *a, const void *b)
{
	const struct dmarc_row *x = *(const struct dmarc_row *const *)a,
			       *y = *(const struct dmarc_row *const *)b;
	return strcmp(x->f[RF_DOMAIN], y->f[RF_DOMAIN]);
}

static void report(const char *what, const struct sift_host *h, const struct dmarc_report_conf *rc,
		   const char *day, time_t begin)
{
	double t0 = cpu_s();
	struct dmarc_rows rows = {0};
	char *err = NULL;
	if (dmarc_report_load(h, rc, day, &rows, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	double t1 = cpu_s();
	size_t xml_bytes = 0, gz_bytes = 0, reports = 0;
	const struct dmarc_row **v = calloc(rows.n + 1, sizeof(*v));
	for (size_t i = 0; i < rows.n; i++)
		v[i] = &rows.v[i];
	qsort(v, rows.n, sizeof(*v), cmp_domain);
	for (size_t i = 0; i < rows.n;) {
		size_t j = i + 1;
		while (j < rows.n && strcmp(v[j]->f[RF_DOMAIN], v[i]->f[RF_DOMAIN]) == 0)
			j++;
		char *xml = dmarc_report_xml(rc, v + i, j - i, "bench", begin, begin + 86399);
		unsigned char *gz = NULL;
		size_t gzlen = 0;
		dmarc_gzip(xml, strlen(xml), &gz, &gzlen);
		xml_bytes += strlen(xml);
		gz_bytes += gzlen;
		reports++;
		free(xml);
		free(gz);
		i = j;
	}
	double cpu = cpu_s() - t0;
	printf("report %-28s %8zu rows  %9.0f rows/s CPU (read %.0f%%)  %zu reports, %zu KB XML, %zu KB gz\n",
	       what, rows.n, rows.n / cpu, (t1 - t0) / cpu * 100, reports, xml_bytes >> 10, gz_bytes >> 10);
	free(v);
	dmarc_rows_free(&rows);
}

int main(int argc, char **argv)
{
	long messages = 200000, rows = 5000, domains = 50;
	const char *spec = "memory:", *dir = NULL;
	static const struct option lo[] = {
		{"messages", required_argument, NULL, 'm'}, {"rows", required_argument, NULL, 'r'},
		{"domains", required_argument, NULL, 'd'},  {"state-store", required_argument, NULL, 's'},
		{"dir", required_argument, NULL, 'D'},	    {NULL, 0, NULL, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "m:r:d:s:D:", lo, NULL)) != -1) {
		if (ch == 'm')
			messages = atol(optarg);
		else if (ch == 'r')
			rows = atol(optarg);
		else if (ch == 'd')
			domains = atol(optarg);
		else if (ch == 's')
			spec = optarg;
		else if (ch == 'D')
			dir = optarg;
		else
			return 2;
	}
	char *err = NULL, tmpl[] = "/var/tmp/sift-dmarc-bench-XXXXXX";
	kv = sift_kv_open(spec, &err);
	if (!kv || messages <= 0 || rows <= 0 || domains <= 0) {
		fprintf(stderr, "report-bench: %s\n", err ? err : "bad numbers");
		return 1;
	}
	if (!dir && !(dir = mkdtemp(tmpl))) {
		perror("mkdtemp");
		return 1;
	}
	struct sift_host h = {.struct_size = sizeof(h),
			      .kv_get = k_get,
			      .kv_set = k_set,
			      .kv_incr = k_incr,
			      .kv_del = k_del};
	struct dmarc_report_conf rc = {.store = "state",
				       .retention = 86400000LL * 7,
				       .org_name = "Bench",
				       .email = "postmaster@mx.example",
				       .extra_contact = "",
				       .domain = "mx.example",
				       .sendmail = "/bin/false"};
	char fspec[4200], day[11], what[64];
	snprintf(fspec, sizeof(fspec), "file:%s", dir);
	struct dmarc_report_conf fc = rc;
	fc.store = fspec;
	time_t now = time(NULL), begin;
	dmarc_report_day(now, day, &begin);
	snprintf(what, sizeof(what), "state (%.16s)", spec);
	record(what, &h, &rc, messages, rows, domains, now);
	record("file", &h, &fc, messages, rows, domains, now);
	report(what, &h, &rc, day, begin);
	report("file", &h, &fc, day, begin);
	dmarc_report_remove(&h, &rc, day, &err);
	dmarc_report_remove(&h, &fc, day, &err);
	if (dir == tmpl)
		rmdir(tmpl);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	printf("peak RSS %ld KB\n", ru.ru_maxrss);
	sift_kv_free(kv);
	return 0;
}
