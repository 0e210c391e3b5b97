/*
 * fuzz_dmarcreport.c - libFuzzer target for reading DMARC aggregate report
 * rows back (plugins/dmarc/dmarcreport.c, dmarc_report_parse: the lines of
 * a file store, TAB-separated fields) and making the reports of them
 * (dmarcxml.c: Appendix C XML, gzip).
 *
 * The input is a row file as the plugin appends it. Checked: only complete
 * lines are read, every row taken has all its fields and a positive count,
 * the counts add up to at most the number of lines; each policy domain's
 * report is well-formed at its ends, has no raw '<' or '&' from a field
 * (every '<' opens one of our tags, every '&' an entity), and compresses.
 * Replayed over tests/fuzz/corpus/dmarcreport/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/dmarc/dmarcreport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_xml(const char *x)
{
	size_t n = strlen(x);
	if (strncmp(x, "<?xml", 5) != 0 || n < 12 || strcmp(x + n - 12, "</feedback>\n") != 0)
		abort();
	for (const char *p = x; (p = strpbrk(p, "<&")); p++) {
		if (*p == '&' && strncmp(p, "&amp;", 5) && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) &&
		    strncmp(p, "&quot;", 6) && strncmp(p, "&apos;", 6))
			abort();
		if (*p == '<' && !(p[1] == '/' || p[1] == '?' || (p[1] >= 'a' && p[1] <= 'z')))
			abort();
	}
}

static int cmp_domain(const void *a, const void *b)
{
	const struct dmarc_row *x = *(const struct dmarc_row *const *)a,
			       *y = *(const struct dmarc_row *const *)b;
	return strcmp(x->f[RF_DOMAIN], y->f[RF_DOMAIN]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 1 << 16)
		return 0;
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = 0;
	size_t lines = 0;
	for (size_t i = 0; i < size; i++)
		lines += data[i] == '\n';
	struct dmarc_rows rows = {0};
	dmarc_report_parse(text, strlen(text), &rows);
	long long total = 0;
	const struct dmarc_row **v = calloc(rows.n + 1, sizeof(*v));
	for (size_t i = 0; i < rows.n; i++) {
		for (int k = 0; k < RF_MAX; k++)
			if (!rows.v[i].f[k])
				abort();
		if (rows.v[i].count <= 0)
			abort();
		total += rows.v[i].count;
		v[i] = &rows.v[i];
	}
	if (total > (long long)lines)
		abort();
	qsort(v, rows.n, sizeof(*v), cmp_domain);
	struct dmarc_report_conf rc = {.store = "",
				       .org_name = "Fuzz <&> Org",
				       .email = "a@b.example",
				       .extra_contact = "x",
				       .domain = "mx.example",
				       .sendmail = ""};
	for (size_t i = 0; i < rows.n;) {
		size_t j = i + 1;
		while (j < rows.n && strcmp(v[j]->f[RF_DOMAIN], v[i]->f[RF_DOMAIN]) == 0)
			j++;
		char *xml = dmarc_report_xml(&rc, v + i, j - i, v[i]->f[RF_DOMAIN], 0, 86399);
		check_xml(xml);
		unsigned char *gz = NULL;
		size_t gzlen = 0;
		if (dmarc_gzip(xml, strlen(xml), &gz, &gzlen) < 0)
			abort();
		free(gz);
		free(xml);
		i = j;
	}
	free(v);
	dmarc_rows_free(&rows);
	free(text);
	return 0;
}
