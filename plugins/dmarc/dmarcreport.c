/*
 * dmarcreport.c - the aggregate report rows (see dmarcreport.h): one
 * message's row, recorded by the dmarc plugin at end of message; read
 * back, counted and deleted by `siftctl dmarc report`.
 *
 * Threading: dmarc_report_record is called from filterd's worker threads;
 * it keeps no state of its own (the key-value store is thread-safe, and
 * appends to a file are single write(2) calls on O_APPEND descriptors).
 * The reading functions are siftctl's, single-threaded.
 */
#include "dmarcreport.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DAY_SECONDS 86400

void dbuf_add(struct dbuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (!s)
			abort();
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = 0;
}

void dbuf_printf(struct dbuf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		dbuf_add(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);
	if (!big)
		abort();
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	dbuf_add(b, big, (size_t)n);
	free(big);
}

void dbuf_xml(struct dbuf *b, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '&':
			dbuf_add(b, "&amp;", 5);
			break;
		case '<':
			dbuf_add(b, "&lt;", 4);
			break;
		case '>':
			dbuf_add(b, "&gt;", 4);
			break;
		case '"':
			dbuf_add(b, "&quot;", 6);
			break;
		case '\'':
			dbuf_add(b, "&apos;", 6);
			break;
		default:
			dbuf_add(b, (unsigned char)*s < 32 || *s == 127 ? "?" : s, 1);
		}
	}
}

/* ---- one message's row -------------------------------------------------- */

/* A field value in printable ASCII: no TAB, CR, LF or other control
 * characters, and no octet a report's UTF-8 could not hold (rua= and fo=
 * are as published). */
static void field(struct dbuf *b, const char *s, bool last)
{
	for (; *s; s++)
		dbuf_add(b, (unsigned char)*s < 32 || (unsigned char)*s >= 127 ? "?" : s, 1);
	if (!last)
		dbuf_add(b, "\t", 1);
}

/* The client address as the report's IPAddress type wants it: IPv4
 * dotted, IPv6 as eight groups (the schema has no "::" form). */
static bool report_ip(const char *in, char *out, size_t n)
{
	unsigned char a[16];
	if (inet_pton(AF_INET, in, a) == 1)
		return (size_t)snprintf(out, n, "%u.%u.%u.%u", a[0], a[1], a[2], a[3]) < n;
	if (inet_pton(AF_INET6, in, a) != 1)
		return false;
	size_t k = 0;
	for (int i = 0; i < 16 && k < n; i += 2)
		k += (size_t)snprintf(out + k, n - k, "%s%x", i ? ":" : "", (unsigned)(a[i] << 8 | a[i + 1]));
	return k < n;
}

bool dmarc_report_row(const struct dmarc_eval *e, const char *client_ip, const char *sender_domain, char *out,
		      size_t n)
{
	char ip[64];
	if (!e->have_record || !e->rec.rua_valid || !client_ip || !report_ip(client_ip, ip, sizeof(ip)))
		return false;
	if (e->result != DMARC_R_PASS && e->result != DMARC_R_FAIL)
		return false;
	struct dbuf b = {0};
	const struct dmarc_record *r = &e->rec;
	char pct[16];
	snprintf(pct, sizeof(pct), "%d", r->pct);
	field(&b, "1", false);
	field(&b, e->record_at_org ? e->org_domain : e->from_domain, false);
	field(&b, r->adkim_strict ? "s" : "r", false);
	field(&b, r->aspf_strict ? "s" : "r", false);
	field(&b, dmarc_policy_names[r->p], false);
	field(&b, dmarc_policy_names[r->sp], false);
	field(&b, pct, false);
	field(&b, r->fo[0] ? r->fo : "0", false);
	field(&b, r->rua, false);
	field(&b, ip, false);
	field(&b, dmarc_policy_names[e->disposition], false);
	field(&b, e->dkim_aligned ? "pass" : "fail", false);
	field(&b, e->spf_aligned ? "pass" : "fail", false);
	field(&b, dmarc_override_names[e->override], false);
	field(&b, e->from_domain, false);
	field(&b, sender_domain ? sender_domain : "", false);
	field(&b, e->spf.domain, false);
	field(&b, sender_domain && *sender_domain ? "mfrom" : "helo", false);
	field(&b, dmarc_spf_names[e->spf.result], false);
	/* The DKIM results that fit: 16 signatures of long domains do not,
	 * and a row without the last ones is better than no row. */
	for (size_t i = 0; i < e->ndkim; i++) {
		size_t before = b.len;
		dbuf_printf(&b, "%s%s:%s", i ? "," : "", e->dkim[i].domain,
			    dmarc_dkim_names[e->dkim[i].result]);
		if (b.s && b.len >= n) {
			b.len = before;
			b.s[before] = 0;
			break;
		}
	}
	bool ok = b.s && b.len < n;
	if (ok)
		memcpy(out, b.s, b.len + 1);
	free(b.s);
	return ok;
}

void dmarc_report_day(time_t t, char out[11], time_t *begin_r)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
	if (begin_r)
		*begin_r = t - t % DAY_SECONDS;
}

/* FNV-1a, 64 bits, in hex: the row's key in the state store. */
static void row_hash(const char *s, char out[17])
{
	uint64_t h = 14695981039346656037ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static const char *file_dir(const struct dmarc_report_conf *rc)
{
	return strncmp(rc->store, "file:", 5) == 0 ? rc->store + 5 : NULL;
}

/*
 * Rows in the state store, per day: "c:HASH" counts a row's messages,
 * "t:HASH" holds its text, "i:1".."i:N" list the hashes (N in "n"). The
 * first message of a row indexes it: a slot in the list, then the text.
 * The text is written last, so a row with a text is listed. When indexing
 * fails part way (the store gone for a moment), the count stays and the
 * row is indexed again by the next of its messages whose count is a power
 * of two and that finds no text: a row is lost from the report only when
 * the store fails for it and it gets no second message. A row listed twice
 * (two messages indexing it at once, a retry) is read once.
 */
static int kv_index(const struct sift_host *host, const char *row, const char *day, const char *hash,
		    long ttl)
{
	char key[96];
	long long n;
	snprintf(key, sizeof(key), "dmarc:n:%s", day);
	if (host->kv_incr(key, 1, ttl, &n) < 0)
		return -1;
	snprintf(key, sizeof(key), "dmarc:i:%s:%lld", day, n);
	if (host->kv_set(key, hash, ttl) < 0)
		return -1;
	snprintf(key, sizeof(key), "dmarc:t:%s:%s", day, hash);
	return host->kv_set(key, row, ttl) < 0 ? -1 : 0;
}

static int kv_record(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *row,
		     const char *day)
{
	char hash[17], key[96];
	long ttl = (long)rc->retention;
	long long count;
	row_hash(row, hash);
	snprintf(key, sizeof(key), "dmarc:c:%s:%s", day, hash);
	if (host->kv_incr(key, 1, ttl, &count) < 0)
		return -1;
	if (count == 1)
		return kv_index(host, row, day, hash, ttl);
	if (count < 1 || (count & (count - 1)) != 0)
		return 0;
	snprintf(key, sizeof(key), "dmarc:t:%s:%s", day, hash);
	char *v = NULL;
	int g = host->kv_get(key, &v);
	free(v);
	return g < 0 ? -1 : g == 0 ? 0 : kv_index(host, row, day, hash, ttl);
}

int dmarc_report_record(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *row,
			time_t now)
{
	char day[11];
	dmarc_report_day(now, day, NULL);
	const char *dir = file_dir(rc);
	if (!dir)
		return kv_record(host, rc, row, day);
	char path[4200];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.rows", dir, day) >= sizeof(path))
		return -1;
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -1;
	size_t len = strlen(row);
	char line[DMARC_ROW_MAX + 1];
	if (len >= sizeof(line) - 1) {
		close(fd);
		return -1;
	}
	memcpy(line, row, len);
	line[len++] = '\n';
	ssize_t w = write(fd, line, len);
	int saved = errno;
	close(fd);
	errno = saved;
	return w == (ssize_t)len ? 0 : -1;
}

/* ---- reading back (siftctl) ---------------------------------------------- */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	struct dbuf b = {0};
	char tmp[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	dbuf_add(&b, tmp, strlen(tmp));
	return b.s;
}

static bool valid_day(const char *s)
{
	int y, m, d;
	char tail;
	return strlen(s) == 10 && sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3 && m >= 1 && m <= 12 &&
	       d >= 1 && d <= 31;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void push_day(char ***v, size_t *n, const char *day)
{
	char **nv = realloc(*v, (*n + 1) * sizeof(char *));
	if (!nv)
		abort();
	*v = nv;
	nv[(*n)++] = strdup(day);
}

int dmarc_report_days(const struct sift_host *host, const struct dmarc_report_conf *rc, time_t now,
		      char ***days_r, size_t *n_r, char **err_r)
{
	char today[11];
	dmarc_report_day(now, today, NULL);
	*days_r = NULL;
	*n_r = 0;
	const char *dir = file_dir(rc);
	if (dir) {
		DIR *d = opendir(dir);
		if (!d) {
			*err_r = xasprintf("%s: %s", dir, strerror(errno));
			return -1;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			char day[11];
			if (strlen(de->d_name) != 15 || strcmp(de->d_name + 10, ".rows") != 0)
				continue;
			memcpy(day, de->d_name, 10);
			day[10] = 0;
			if (valid_day(day) && strcmp(day, today) < 0)
				push_day(days_r, n_r, day);
		}
		closedir(d);
		if (*n_r)
			qsort(*days_r, *n_r, sizeof(char *), cmp_str);
		return 0;
	}
	long long ndays = rc->retention / 1000 / DAY_SECONDS + 1;
	for (long long i = ndays; i >= 1; i--) {
		char day[11], key[64], *v = NULL;
		dmarc_report_day(now - (time_t)(i * DAY_SECONDS), day, NULL);
		snprintf(key, sizeof(key), "dmarc:n:%s", day);
		int rc_get = host->kv_get(key, &v);
		free(v);
		if (rc_get < 0) {
			*err_r = xasprintf("state_store: cannot read %s", key);
			return -1;
		}
		if (rc_get == 0)
			push_day(days_r, n_r, day);
	}
	return 0;
}

/* Takes text (malloc'd) as a row of count messages; false (text freed)
 * when it is not a row of this format. */
static bool add_row(struct dmarc_rows *rows, char *text, long long count, size_t seq)
{
	struct dmarc_row r = {.text = text, .count = count, .seq = seq};
	char *p = text;
	size_t k = 0;
	for (; k < RF_MAX; k++) {
		r.f[k] = p;
		char *tab = strchr(p, '\t');
		if (!tab)
			break;
		*tab = 0;
		p = tab + 1;
	}
	if (k != RF_MAX - 1 || strcmp(r.f[RF_VERSION], "1") != 0 || count <= 0) {
		free(text);
		return false;
	}
	if (rows->n == rows->cap) {
		rows->cap = rows->cap ? rows->cap * 2 : 64;
		rows->v = realloc(rows->v, rows->cap * sizeof(*rows->v));
		if (!rows->v)
			abort();
	}
	rows->v[rows->n++] = r;
	return true;
}

struct line {
	char *s;
	size_t seq;
};

static int cmp_line(const void *a, const void *b)
{
	const struct line *x = a, *y = b;
	int c = strcmp(x->s, y->s);
	return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

void dmarc_report_parse(const char *text, size_t len, struct dmarc_rows *rows)
{
	struct line *lines = NULL;
	size_t n = 0, cap = 0;
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			break; /* a line being written */
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			lines = realloc(lines, cap * sizeof(*lines));
			if (!lines)
				abort();
		}
		lines[n].s = strndup(p, (size_t)(nl - p));
		lines[n].seq = n;
		n++;
		p = nl + 1;
	}
	if (n)
		qsort(lines, n, sizeof(*lines), cmp_line);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && strcmp(lines[j].s, lines[i].s) == 0)
			free(lines[j++].s);
		add_row(rows, lines[i].s, (long long)(j - i), lines[j - 1].seq);
		i = j;
	}
	free(lines);
}

/* A day's file of rows, read whole into b: 1, 0 when there is none, or -1
 * with *err_r. At most SIFT_TOOL_MESSAGE_MAX bytes, siftctl's bound on what
 * it reads into memory: a larger file (or endless input, /dev/zero) is
 * refused and left as it is, not read until the memory runs out. */
static int file_read(const char *path, struct dbuf *b, char **err_r)
{
	FILE *fp = fopen(path, "r");
	if (!fp) {
		if (errno == ENOENT)
			return 0;
		*err_r = xasprintf("%s: %s", path, strerror(errno));
		return -1;
	}
	char chunk[65536];
	size_t got;
	while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		if (got > SIFT_TOOL_MESSAGE_MAX - b->len) {
			fclose(fp);
			free(b->s);
			*b = (struct dbuf){0};
			*err_r = xasprintf(
				"%s: larger than %s, the largest file of rows siftctl reads; not read, "
				"left as it is",
				path, SIFT_TOOL_MESSAGE_MAX_TEXT);
			return -1;
		}
		dbuf_add(b, chunk, got);
	}
	bool bad = ferror(fp);
	fclose(fp);
	if (bad) {
		free(b->s);
		*b = (struct dbuf){0};
		*err_r = xasprintf("%s: read error", path);
		return -1;
	}
	return 1;
}

static int file_load(const char *dir, const char *day, struct dmarc_rows *rows, char **err_r)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s.rows", dir, day);
	struct dbuf b = {0};
	int r = file_read(path, &b, err_r);
	if (r <= 0)
		return r;
	dmarc_report_parse(b.s ? b.s : "", b.len, rows);
	free(b.s);
	return 0;
}

static int kv_load(const struct sift_host *host, const char *day, struct dmarc_rows *rows, char **err_r)
{
	char key[96], *v = NULL;
	snprintf(key, sizeof(key), "dmarc:n:%s", day);
	int g = host->kv_get(key, &v);
	long long n = g == 0 && v ? strtoll(v, NULL, 10) : 0;
	free(v);
	if (g < 0) {
		*err_r = xasprintf("state_store: cannot read %s", key);
		return -1;
	}
	/* the listed hashes, each once (see kv_index), in the order they
	 * were listed */
	struct line *hashes = NULL;
	size_t nh = 0;
	for (long long i = 1; i <= n; i++) {
		char *hash = NULL;
		snprintf(key, sizeof(key), "dmarc:i:%s:%lld", day, i);
		if (host->kv_get(key, &hash) == 0 && hash && strlen(hash) == 16) {
			if (nh % 256 == 0) {
				struct line *nv = realloc(hashes, (nh + 256) * sizeof(*hashes));
				if (!nv)
					abort();
				hashes = nv;
			}
			hashes[nh].s = hash;
			hashes[nh].seq = nh;
			nh++;
		} else
			free(hash);
	}
	if (nh)
		qsort(hashes, nh, sizeof(*hashes), cmp_line);
	for (size_t i = 0; i < nh; i++) {
		if (i > 0 && strcmp(hashes[i].s, hashes[i - 1].s) == 0)
			continue;
		char *count = NULL, *text = NULL;
		snprintf(key, sizeof(key), "dmarc:c:%s:%s", day, hashes[i].s);
		host->kv_get(key, &count);
		snprintf(key, sizeof(key), "dmarc:t:%s:%s", day, hashes[i].s);
		host->kv_get(key, &text);
		if (text && count)
			add_row(rows, text, strtoll(count, NULL, 10), hashes[i].seq);
		else
			free(text);
		free(count);
	}
	for (size_t i = 0; i < nh; i++)
		free(hashes[i].s);
	free(hashes);
	return 0;
}

int dmarc_report_load(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *day,
		      struct dmarc_rows *rows, char **err_r)
{
	const char *dir = file_dir(rc);
	return dir ? file_load(dir, day, rows, err_r) : kv_load(host, day, rows, err_r);
}

int dmarc_report_remove(const struct sift_host *host, const struct dmarc_report_conf *rc, const char *day,
			char **err_r)
{
	const char *dir = file_dir(rc);
	char key[4200], *v = NULL;
	if (dir) {
		snprintf(key, sizeof(key), "%s/%s.rows", dir, day);
		if (unlink(key) < 0 && errno != ENOENT) {
			*err_r = xasprintf("%s: %s", key, strerror(errno));
			return -1;
		}
		return 0;
	}
	snprintf(key, sizeof(key), "dmarc:n:%s", day);
	long long n = host->kv_get(key, &v) == 0 && v ? strtoll(v, NULL, 10) : 0;
	free(v);
	int bad = 0;
	for (long long i = 1; i <= n; i++) {
		char *hash = NULL;
		snprintf(key, sizeof(key), "dmarc:i:%s:%lld", day, i);
		if (host->kv_get(key, &hash) == 0 && hash && strlen(hash) == 16) {
			char k2[96];
			snprintf(k2, sizeof(k2), "dmarc:c:%s:%s", day, hash);
			bad |= host->kv_del(k2) < 0;
			snprintf(k2, sizeof(k2), "dmarc:t:%s:%s", day, hash);
			bad |= host->kv_del(k2) < 0;
		}
		free(hash);
		bad |= host->kv_del(key) < 0;
	}
	snprintf(key, sizeof(key), "dmarc:n:%s", day);
	bad |= host->kv_del(key) < 0;
	if (bad) {
		*err_r = xasprintf("state_store: cannot delete the rows of %s", day);
		return -1;
	}
	return 0;
}

struct span {
	const char *s;
	size_t len;
};

static int cmp_span(const void *key, const void *elem)
{
	const struct span *k = key;
	const char *d = *(const char *const *)elem;
	size_t dl = strlen(d);
	int c = memcmp(k->s, d, k->len < dl ? k->len : dl);
	return c ? c : k->len < dl ? -1 : k->len > dl;
}

/* Is text[0..len) a row of one of the domains (sorted with strcmp)? */
static bool row_of(const char *text, size_t len, const char *const *domains, size_t n)
{
	if (len < 2 || text[0] != '1' || text[1] != '\t')
		return false;
	const char *tab = memchr(text + 2, '\t', len - 2);
	struct span k = {text + 2, tab ? (size_t)(tab - text - 2) : 0};
	return tab && bsearch(&k, domains, n, sizeof(*domains), cmp_span) != NULL;
}

/* The file store: DAY.rows rewritten (a new file renamed over it) with
 * the other lines. */
static int file_remove_domains(const char *dir, const char *day, const char *const *domains, size_t n,
			       char **err_r)
{
	char path[4200], tmp[4220];
	snprintf(path, sizeof(path), "%s/%s.rows", dir, day);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	struct dbuf in = {0}, out = {0};
	int r = file_read(path, &in, err_r);
	if (r <= 0)
		return r;
	for (const char *p = in.s, *end = in.s + in.len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		if (!nl || !row_of(p, len - 1, domains, n))
			dbuf_add(&out, p, len);
		p += len;
	}
	free(in.s);
	int status = 0;
	if (out.len == 0) {
		if (unlink(path) < 0 && errno != ENOENT) {
			*err_r = xasprintf("%s: %s", path, strerror(errno));
			status = -1;
		}
		return status;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	ssize_t w = fd < 0 ? -1 : write(fd, out.s, out.len);
	if (fd < 0 || w != (ssize_t)out.len || fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		*err_r = xasprintf("%s: %s", tmp,
				   w >= 0 && w != (ssize_t)out.len ? "short write" : strerror(errno));
		if (fd >= 0)
			unlink(tmp);
		status = -1;
	}
	free(out.s);
	return status;
}

int dmarc_report_remove_domains(const struct sift_host *host, const struct dmarc_report_conf *rc,
				const char *day, const char *const *domains, size_t n, char **err_r)
{
	const char *dir = file_dir(rc);
	if (dir)
		return file_remove_domains(dir, day, domains, n, err_r);
	/* the state store: the count and text of each of the domains' rows;
	 * their index entries, left, lead to nothing (see kv_load) */
	char key[96], *v = NULL;
	snprintf(key, sizeof(key), "dmarc:n:%s", day);
	long long count = host->kv_get(key, &v) == 0 && v ? strtoll(v, NULL, 10) : 0;
	free(v);
	int bad = 0;
	for (long long i = 1; i <= count; i++) {
		char *hash = NULL, *text = NULL, k2[96];
		snprintf(key, sizeof(key), "dmarc:i:%s:%lld", day, i);
		if (host->kv_get(key, &hash) == 0 && hash && strlen(hash) == 16) {
			snprintf(k2, sizeof(k2), "dmarc:t:%s:%s", day, hash);
			if (host->kv_get(k2, &text) == 0 && text && row_of(text, strlen(text), domains, n)) {
				bad |= host->kv_del(k2) < 0;
				snprintf(k2, sizeof(k2), "dmarc:c:%s:%s", day, hash);
				bad |= host->kv_del(k2) < 0;
			}
		}
		free(text);
		free(hash);
	}
	if (bad) {
		*err_r = xasprintf("state_store: cannot delete the sent rows of %s", day);
		return -1;
	}
	return 0;
}

void dmarc_rows_free(struct dmarc_rows *rows)
{
	for (size_t i = 0; i < rows->n; i++)
		free(rows->v[i].text);
	free(rows->v);
	rows->v = NULL;
	rows->n = rows->cap = 0;
}

int dmarc_report_check_store(const struct dmarc_report_conf *rc, char **err_r)
{
	if (!*rc->store || strcmp(rc->store, "state") == 0)
		return 0;
	const char *dir = file_dir(rc);
	if (!dir || dir[0] != '/') {
		*err_r = xasprintf("dmarc_report_store: %s: empty, state or file:/DIRECTORY", rc->store);
		return -1;
	}
	struct stat st;
	if (stat(dir, &st) < 0 && (errno != ENOENT || mkdir(dir, 0750) < 0 || stat(dir, &st) < 0)) {
		*err_r = xasprintf("dmarc_report_store: %s: %s", dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		*err_r = xasprintf("dmarc_report_store: %s: not a directory", dir);
		return -1;
	}
	return 0;
}
