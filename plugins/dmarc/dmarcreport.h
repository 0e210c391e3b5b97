/*
 * dmarcreport.h - DMARC aggregate reports (RFC 7489 7.2): what the dmarc
 * plugin records per message, where, and how `siftctl dmarc report` reads
 * it back and turns it into Appendix C XML, compressed and mailed.
 *
 * A row is one message's report data (struct dmarc_eval and the client
 * address) serialized as one line of TAB-separated fields (enum
 * dmarc_row_field). Identical rows of one UTC day are counted together.
 * Stores (dmarc_report_store):
 *   "state"     the core's key-value store (state_store, host->kv_*):
 *               dmarc:c:DAY:HASH  the row's message count (kv_incr)
 *               dmarc:t:DAY:HASH  the row's text
 *               dmarc:n:DAY       how many distinct rows the day has
 *               dmarc:i:DAY:N     the HASH of the day's Nth row
 *               all with the expiry dmarc_report_retention; a message
 *               costs one kv_incr once its row is known;
 *   "file:DIR"  one line per message appended to DIR/DAY.rows (one
 *               write(2) on an O_APPEND descriptor), counted when read.
 */
#ifndef SIFT_DMARCREPORT_H
#define SIFT_DMARCREPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "dmarcrec.h"
#include "sift/plugin.h"

/* The report settings (dmarc_report_*), part of the plugin's conf block. */
struct dmarc_report_conf {
	const char *store; /* "", "state" or "file:DIR" */
	long long retention;
	const char *org_name, *email, *extra_contact, *domain, *sendmail;
	long long sendmail_timeout; /* ms: one sendmail run, the message written and its exit */
};

enum dmarc_row_field {
	RF_VERSION, /* "1" */
	RF_DOMAIN,  /* policy_published: where the record was found */
	RF_ADKIM,
	RF_ASPF,
	RF_P,
	RF_SP,
	RF_PCT,
	RF_FO,
	RF_RUA,
	RF_IP, /* row */
	RF_DISPOSITION,
	RF_DKIM_ALIGNED, /* pass / fail */
	RF_SPF_ALIGNED,
	RF_OVERRIDE,	/* "" or dmarc_override_names[] */
	RF_HEADER_FROM, /* identifiers */
	RF_ENVELOPE_FROM,
	RF_SPF_DOMAIN, /* auth_results */
	RF_SPF_SCOPE,  /* mfrom / helo */
	RF_SPF_RESULT,
	RF_DKIM, /* "domain:result,..." */
	RF_MAX
};

#define DMARC_ROW_MAX 4096

struct dmarc_row {
	char *text; /* malloc'd; split into f[] in place */
	const char *f[RF_MAX];
	long long count;
	size_t seq; /* when in the day: the line of its last message (file
		     * store), the order it was first listed (state store) */
};

struct dmarc_rows {
	struct dmarc_row *v;
	size_t n, cap;
};

/* A growing string (the plugin cannot use the core's). */
struct dbuf {
	char *s;
	size_t len, cap;
};
void dbuf_add(struct dbuf *b, const void *p, size_t n);
void dbuf_printf(struct dbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Text with &, <, >, " and ' as XML entities; control characters as '?'. */
void dbuf_xml(struct dbuf *b, const char *s);

/* Checks dmarc_report_store (init): a file: directory is made when
 * missing. 0, or -1 with *err_r (malloc'd). */
int dmarc_report_check_store(const struct dmarc_report_conf *rc, char **err_r);

/* The row of a message whose record asks for aggregate reports (have_record
 * and rec.rua_valid); false when it is not reportable. sender_domain is
 * the MAIL FROM domain ("" for the null sender). */
bool dmarc_report_row(const struct dmarc_eval *e, const char *client_ip, const char *sender_domain, char *out,
		      size_t n);
/* Stores one message's row under the UTC day of now. 0, or -1 with errno
 * or a store failure. */
int dmarc_report_record(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *row,
			time_t now);

/* "YYYY-MM-DD" of t (UTC) into out (11 bytes); the day's start in *begin_r. */
void dmarc_report_day(time_t t, char out[11], time_t *begin_r);
/* The days with rows, oldest first, before today (UTC) for the file store;
 * for the state store the days of the retention period. malloc'd array of
 * malloc'd strings. */
int dmarc_report_days(const struct sift_host *host, const struct dmarc_report_conf *rc, time_t now,
		      char ***days_r, size_t *n_r, char **err_r);
/* The rows of one day, identical rows counted together. */
int dmarc_report_load(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *day,
		      struct dmarc_rows *rows, char **err_r);
/* The rows of a file store's text (complete lines only), identical ones
 * counted together (seq: the line of the last); lines of another format
 * are skipped. */
void dmarc_report_parse(const char *text, size_t len, struct dmarc_rows *rows);
/* Deletes the day's rows (after its reports went out). */
int dmarc_report_remove(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *day,
			char **err_r);
/* Deletes the day's rows of the policy domains domains[0..n-1] (those
 * whose reports went out; sorted with strcmp) and keeps the others'. */
int dmarc_report_remove_domains(const struct sift_host *host, const struct dmarc_report_conf *rc,
				const char *day, const char *const *domains, size_t n, char **err_r);
void dmarc_rows_free(struct dmarc_rows *rows);

/* ---- dmarcxml.c: the report and its mail ---- */

/* One report: Appendix C XML of rows (all of one policy domain), malloc'd. */
char *dmarc_report_xml(const struct dmarc_report_conf *rc, const struct dmarc_row *const *rows, size_t n,
		       const char *report_id, time_t begin, time_t end);
/* gzip (RFC 1952) of data; 0 or -1. */
int dmarc_gzip(const char *data, size_t len, unsigned char **out_r, size_t *len_r);
/* The 7.2.1.1 file name: receiver!policy-domain!begin!end.xml.gz */
char *dmarc_report_filename(const struct dmarc_report_conf *rc, const char *domain, time_t begin, time_t end);
/* The report mail (RFC 7489 7.2.1.1) to `to`, CRLF line ends, malloc'd. */
char *dmarc_report_mail(const struct dmarc_report_conf *rc, const char *domain, const char *report_id,
			const char *filename, const unsigned char *gz, size_t gzlen, const char *to,
			time_t now);

#endif
