/*
 * dmarcxml.c - an aggregate report (RFC 7489 7.2 and Appendix C) from the
 * recorded rows of one policy domain and one day: the XML, its gzip
 * compression, the file name and the report mail of 7.2.1.1.
 *
 * The XML has no namespace (as receivers send it) and follows the element
 * order of the Appendix C schema (tests/dmarc-rua.xsd). policy_published
 * is the first row's: the caller puts the newest first (a domain whose
 * record changed during the day gets the newer record). Our site_policy override, which the schema does not
 * name, is reported as type "other" with that comment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "dmarcreport.h"

static void elem(struct dbuf *b, const char *indent, const char *name, const char *value)
{
	dbuf_printf(b, "%s<%s>", indent, name);
	dbuf_xml(b, value);
	dbuf_printf(b, "</%s>\n", name);
}

static void metadata(struct dbuf *b, const struct dmarc_report_conf *rc, const char *report_id, time_t begin,
		     time_t end)
{
	dbuf_printf(b, "  <report_metadata>\n");
	elem(b, "    ", "org_name", rc->org_name);
	elem(b, "    ", "email", rc->email);
	if (*rc->extra_contact)
		elem(b, "    ", "extra_contact_info", rc->extra_contact);
	elem(b, "    ", "report_id", report_id);
	dbuf_printf(b,
		    "    <date_range>\n      <begin>%lld</begin>\n      <end>%lld</end>\n    </date_range>\n",
		    (long long)begin, (long long)end);
	dbuf_printf(b, "  </report_metadata>\n");
}

static void policy_published(struct dbuf *b, const struct dmarc_row *r)
{
	dbuf_printf(b, "  <policy_published>\n");
	elem(b, "    ", "domain", r->f[RF_DOMAIN]);
	elem(b, "    ", "adkim", r->f[RF_ADKIM]);
	elem(b, "    ", "aspf", r->f[RF_ASPF]);
	elem(b, "    ", "p", r->f[RF_P]);
	elem(b, "    ", "sp", r->f[RF_SP]);
	elem(b, "    ", "pct", r->f[RF_PCT]);
	elem(b, "    ", "fo", r->f[RF_FO]);
	dbuf_printf(b, "  </policy_published>\n");
}

static void auth_results(struct dbuf *b, const struct dmarc_row *r)
{
	dbuf_printf(b, "    <auth_results>\n");
	const char *p = r->f[RF_DKIM];
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		char one[300];
		if (n < sizeof(one)) {
			memcpy(one, p, n);
			one[n] = 0;
			char *colon = strrchr(one, ':');
			if (colon) {
				*colon = 0;
				dbuf_printf(b, "      <dkim>\n");
				elem(b, "        ", "domain", one);
				elem(b, "        ", "result", colon + 1);
				dbuf_printf(b, "      </dkim>\n");
			}
		}
		p += n + (comma != NULL);
	}
	dbuf_printf(b, "      <spf>\n");
	elem(b, "        ", "domain", r->f[RF_SPF_DOMAIN]);
	elem(b, "        ", "scope", r->f[RF_SPF_SCOPE]);
	elem(b, "        ", "result", r->f[RF_SPF_RESULT]);
	dbuf_printf(b, "      </spf>\n");
	dbuf_printf(b, "    </auth_results>\n");
}

static void record(struct dbuf *b, const struct dmarc_row *r)
{
	dbuf_printf(b, "  <record>\n    <row>\n");
	elem(b, "      ", "source_ip", r->f[RF_IP]);
	dbuf_printf(b, "      <count>%lld</count>\n", r->count);
	dbuf_printf(b, "      <policy_evaluated>\n");
	elem(b, "        ", "disposition", r->f[RF_DISPOSITION]);
	elem(b, "        ", "dkim", r->f[RF_DKIM_ALIGNED]);
	elem(b, "        ", "spf", r->f[RF_SPF_ALIGNED]);
	const char *o = r->f[RF_OVERRIDE];
	if (*o) {
		bool known = strcmp(o, "sampled_out") == 0 || strcmp(o, "local_policy") == 0;
		dbuf_printf(b, "        <reason>\n");
		elem(b, "          ", "type", known ? o : "other");
		if (!known)
			elem(b, "          ", "comment", o);
		dbuf_printf(b, "        </reason>\n");
	}
	dbuf_printf(b, "      </policy_evaluated>\n    </row>\n");
	dbuf_printf(b, "    <identifiers>\n");
	elem(b, "      ", "envelope_from", r->f[RF_ENVELOPE_FROM]);
	elem(b, "      ", "header_from", r->f[RF_HEADER_FROM]);
	dbuf_printf(b, "    </identifiers>\n");
	auth_results(b, r);
	dbuf_printf(b, "  </record>\n");
}

char *dmarc_report_xml(const struct dmarc_report_conf *rc, const struct dmarc_row *const *rows, size_t n,
		       const char *report_id, time_t begin, time_t end)
{
	struct dbuf b = {0};
	dbuf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feedback>\n  <version>1.0</version>\n");
	metadata(&b, rc, report_id, begin, end);
	if (n)
		policy_published(&b, rows[0]);
	for (size_t i = 0; i < n; i++)
		record(&b, rows[i]);
	dbuf_printf(&b, "</feedback>\n");
	return b.s;
}

int dmarc_gzip(const char *data, size_t len, unsigned char **out_r, size_t *len_r)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	uLong bound = deflateBound(&z, (uLong)len);
	unsigned char *out = malloc(bound);
	if (!out) {
		deflateEnd(&z);
		return -1;
	}
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)bound;
	int rc = deflate(&z, Z_FINISH);
	*len_r = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(out);
		return -1;
	}
	*out_r = out;
	return 0;
}

char *dmarc_report_filename(const struct dmarc_report_conf *rc, const char *domain, time_t begin, time_t end)
{
	struct dbuf b = {0};
	dbuf_printf(&b, "%s!%s!%lld!%lld.xml.gz", rc->domain, domain, (long long)begin, (long long)end);
	return b.s;
}

static void base64(struct dbuf *b, const unsigned char *p, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t col = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		char q[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
			     i + 2 < n ? tab[v & 63] : '='};
		dbuf_add(b, q, 4);
		if ((col += 4) == 76) {
			dbuf_add(b, "\r\n", 2);
			col = 0;
		}
	}
	if (col)
		dbuf_add(b, "\r\n", 2);
}

char *dmarc_report_mail(const struct dmarc_report_conf *rc, const char *domain, const char *report_id,
			const char *filename, const unsigned char *gz, size_t gzlen, const char *to,
			time_t now)
{
	struct dbuf b = {0};
	char date[64], boundary[64];
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	snprintf(boundary, sizeof(boundary), "=_dmarc_%lld_%08x", (long long)now,
		 (unsigned)crc32(0, (const Bytef *)report_id, (uInt)strlen(report_id)));
	dbuf_printf(&b, "From: %s\r\nTo: %s\r\nDate: %s\r\n", rc->email, to, date);
	dbuf_printf(&b, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", domain, rc->domain,
		    report_id);
	dbuf_printf(&b, "Message-ID: <%s@%s>\r\nMIME-Version: 1.0\r\n", report_id, rc->domain);
	dbuf_printf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary);
	dbuf_printf(&b, "This is a DMARC aggregate report (RFC 7489) in MIME format.\r\n\r\n");
	dbuf_printf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	dbuf_printf(&b, "DMARC aggregate report for %s from %s (%s).\r\nReport-ID: %s\r\n\r\n", domain,
		    rc->domain, rc->org_name, report_id);
	dbuf_printf(&b, "--%s\r\nContent-Type: application/gzip; name=\"%s\"\r\n", boundary, filename);
	dbuf_printf(&b, "Content-Transfer-Encoding: base64\r\n");
	dbuf_printf(&b, "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", filename);
	base64(&b, gz, gzlen);
	dbuf_printf(&b, "\r\n--%s--\r\n", boundary);
	return b.s;
}
