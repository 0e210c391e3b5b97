/*
 * tool.c - the dmarc plugin's siftctl tools:
 *
 *   report [--date YYYY-MM-DD] [--send] [--dir DIR] [--keep]
 *       the aggregate reports (RFC 7489 7.2) of the recorded rows
 *       (dmarc_report_store), one per policy domain and UTC day: every
 *       complete day recorded (or --date's), printed as XML; --dir writes
 *       each gzip-compressed under its 7.2.1.1 name; --send mails each to
 *       the mailto: addresses of the domain's rua= with the local sendmail
 *       (dmarc_report_sendmail), after the external-destination check of
 *       7.1 for addresses outside the domain's organizational domain. The
 *       rows of a domain are deleted once its report was written or sent
 *       (not with --keep, never when only printed); those of a domain
 *       whose sendmail failed stay for the next run (exit status 1). A
 *       --date of today (UTC) or later is only printed or written with
 *       --keep: the day is not over;
 *   check FILE [--spf RESULT:DOMAIN] [--dkim RESULT:DOMAIN]...
 *       the plugin's decision for the message in FILE: the message runs
 *       through a chain of the dkim plugin (which verifies its signatures,
 *       as filterd would) and the dmarc plugin, in the inbound profile;
 *       --spf and --dkim replace the SPF result (none without --spf: a
 *       file has no client) and the DKIM results. Prints the records used,
 *       the identifiers, `dmarc=RESULT` and `policy=...`.
 *
 * Single-threaded (in siftctl). fork/exec of sendmail is a tool's, never a
 * hook's.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dmarctool.h"

#define DNS_T_TXT 16

struct dmarc_check *dmarc_check_hook;

void dmarc_check_inputs(const struct dmarc_check *k, struct dmarc_eval *e)
{
	if (k->have_spf)
		e->spf = k->spf;
	else
		e->spf = (struct dmarc_auth){.result = DMARC_SPF_NONE};
	if (k->have_dkim) {
		memcpy(e->dkim, k->dkim, sizeof(e->dkim));
		e->ndkim = k->ndkim;
	}
}

/* ---- report ----------------------------------------------------------------- */

struct report_opts {
	const char *date, *dir;
	bool send, keep;
};

static int cmp_domain(const void *a, const void *b)
{
	const struct dmarc_row *x = *(const struct dmarc_row *const *)a,
			       *y = *(const struct dmarc_row *const *)b;
	int c = strcmp(x->f[RF_DOMAIN], y->f[RF_DOMAIN]);
	/* a domain's newest row first: its record (policy_published, rua=)
	 * is the one the report gives and goes to */
	return c ? c : x->seq > y->seq ? -1 : x->seq < y->seq;
}

/* RFC 7489 7.1: may reports for `domain` go to an address at rua_domain? */
static bool external_ok(const struct sift_host *host, void *conf, const char *domain, const char *rua_domain)
{
	char o1[DMARC_DOMAIN_MAX], o2[DMARC_DOMAIN_MAX], name[600];
	dmarc_conf_orgdomain(conf, domain, o1, sizeof(o1));
	dmarc_conf_orgdomain(conf, rua_domain, o2, sizeof(o2));
	if (strcasecmp(o1, o2) == 0)
		return true;
	snprintf(name, sizeof(name), "%s._report._dmarc.%s", domain, rua_domain);
	struct sift_dns_result *r = host->dns_query(name, DNS_T_TXT, 0);
	bool ok = false;
	for (size_t i = 0; r && r->status == SIFT_DNS_OK && i < r->count; i++)
		ok |= dmarc_is_record((const char *)r->rr[i]);
	if (!ok)
		fprintf(stderr,
			"siftctl dmarc report: %s: no v=DMARC1 record at %s (RFC 7489 7.1%s): not sent\n",
			rua_domain, name, r && r->status == SIFT_DNS_TEMPFAIL ? ", DNS failure" : "");
	free(r);
	return ok;
}

/* Milliseconds of the monotonic clock. */
static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes buf to the non-blocking fd by the deadline: 0, or an errno
 * (ETIMEDOUT when the reader took too long). */
static int write_all(int fd, const char *buf, size_t len, long long deadline)
{
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, buf + off, len - off);
		if (w >= 0) {
			off += (size_t)w;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return errno;
		long long left = deadline - now_ms();
		if (left <= 0)
			return ETIMEDOUT;
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		if (poll(&pfd, 1, left > 1000 ? 1000 : (int)left) < 0 && errno != EINTR)
			return errno;
	}
	return 0;
}

/* Pipes msg (CRLF lines, written with LF) into sendmail -i -f FROM -- TO.
 * 0, or -1 with what failed in why: sendmail's exit status, the signal
 * that ended it, the message not taken whole (a sendmail that exits
 * without reading it: EPIPE, never a SIGPIPE that would end siftctl and
 * the reports of the other domains with it), or a sendmail still running
 * after dmarc_report_sendmail_timeout (killed). */
static int sendmail(const struct dmarc_report_conf *rc, const char *to, const char *msg, char *why,
		    size_t whylen)
{
	size_t len = 0;
	char *buf = malloc(strlen(msg) + 1);
	if (!buf)
		abort();
	for (const char *s = msg; *s; s++)
		if (!(s[0] == '\r' && s[1] == '\n'))
			buf[len++] = *s;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(why, whylen, "pipe: %s", strerror(errno));
		free(buf);
		return -1;
	}
	long long deadline = now_ms() + rc->sendmail_timeout;
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, whylen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		free(buf);
		return -1;
	}
	if (pid == 0) {
		dup2(p[0], 0);
		execl(rc->sendmail, "sendmail", "-i", "-f", rc->email, "--", to, (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	struct sigaction ign = {.sa_handler = SIG_IGN}, old;
	sigemptyset(&ign.sa_mask);
	sigaction(SIGPIPE, &ign, &old);
	fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) | O_NONBLOCK);
	int werr = write_all(p[1], buf, len, deadline);
	/* a report not written whole must not reach the queue cut short: the
	 * EOF of the close would end sendmail's input there */
	bool killed = false;
	if (werr) {
		kill(pid, SIGKILL);
		killed = true;
	}
	if (close(p[1]) < 0 && !werr)
		werr = errno;
	sigaction(SIGPIPE, &old, NULL);
	free(buf);
	/* its exit, by the deadline; then it is killed (by its pid) */
	int st = 0;
	pid_t r;
	while ((r = waitpid(pid, &st, WNOHANG)) == 0 || (r < 0 && errno == EINTR)) {
		if (r == 0 && !killed && now_ms() >= deadline) {
			kill(pid, SIGKILL);
			killed = true;
		}
		if (r == 0)
			poll(NULL, 0, killed ? 10 : 50);
	}
	if (r < 0)
		snprintf(why, whylen, "waitpid: %s", strerror(errno));
	else if (werr == ETIMEDOUT || (killed && !werr))
		snprintf(why, whylen, "still running after %llds, killed", rc->sendmail_timeout / 1000);
	else if (WIFEXITED(st) && WEXITSTATUS(st) != 0)
		snprintf(why, whylen, "exit status %d%s%s", WEXITSTATUS(st),
			 werr ? ", the message not read: " : "", werr ? strerror(werr) : "");
	else if (werr)
		snprintf(why, whylen, "the message not read: %s", strerror(werr));
	else if (WIFSIGNALED(st))
		snprintf(why, whylen, "killed by signal %d", WTERMSIG(st));
	else
		return 0;
	return -1;
}

/* The size limit of a dmarc-uri ("!10m"), 0 when none. */
static unsigned long long uri_limit(const char *bang)
{
	if (!bang)
		return 0;
	char *end;
	unsigned long long n = strtoull(bang + 1, &end, 10);
	switch (*end | 0x20) {
	case 'k':
		return n << 10;
	case 'm':
		return n << 20;
	case 'g':
		return n << 30;
	case 't':
		return n << 40;
	default:
		return n;
	}
}

/* A mailto: URI's address with its percent-encoded octets decoded into
 * out (as long as in): RFC 7489 6.2 has ',' and '!' encoded, RFC 6068
 * more. False when an escape is malformed or decodes to a space or a
 * control character. */
static bool uri_decode(const char *in, char *out)
{
	char *o = out;
	for (const char *p = in; *p; p++) {
		unsigned v = (unsigned char)*p;
		if (*p == '%') {
			if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
				return false;
			char hex[3] = {p[1], p[2], 0};
			v = (unsigned)strtoul(hex, NULL, 16);
			p += 2;
		}
		if (v <= ' ' || v == 127)
			return false;
		*o++ = (char)v;
	}
	*o = 0;
	return true;
}

/* Mails one report to every mailto: address of rua. -1 when a sendmail
 * failed (the rows are then kept for the next run). */
static int send_report(const struct sift_host *host, void *conf, const char *rua, const char *domain,
		       const char *id, const char *fname, const unsigned char *gz, size_t gzlen)
{
	const struct dmarc_report_conf *rc = dmarc_conf_report(conf);
	char *list = strdup(rua), *save = NULL;
	int status = 0;
	for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
		u += strspn(u, " \t");
		u[strcspn(u, " \t")] = 0;
		if (strncasecmp(u, "mailto:", 7) != 0)
			continue;
		char *addr = u + 7, *bang = strchr(addr, '!'), *at;
		unsigned long long limit = uri_limit(bang);
		if (bang)
			*bang = 0;
		char dec[DMARC_URIS_MAX];
		if (strlen(addr) >= sizeof(dec) || !uri_decode(addr, dec)) {
			fprintf(stderr,
				"siftctl dmarc report: %s: %s: not an address once decoded: not sent\n",
				domain, addr);
			continue;
		}
		addr = dec;
		if (!(at = strrchr(addr, '@')) || !external_ok(host, conf, domain, at + 1))
			continue;
		/* The limit is on the report mail as it goes out: headers, the
		 * base64 of the compressed report and its line ends. */
		char *msg = dmarc_report_mail(rc, domain, id, fname, gz, gzlen, addr, time(NULL));
		size_t msglen = strlen(msg);
		if (limit && msglen > limit) {
			fprintf(stderr,
				"siftctl dmarc report: %s: the report mail (%zu bytes) is over the size "
				"limit of its rua= URI (%llu bytes): not sent\n",
				addr, msglen, limit);
			free(msg);
			continue;
		}
		char why[200];
		if (sendmail(rc, addr, msg, why, sizeof(why)) < 0) {
			fprintf(stderr, "siftctl dmarc report: %s: %s: %s failed (%s): not sent\n", domain,
				addr, rc->sendmail, why);
			status = -1;
		} else
			printf("sent %s to %s\n", fname, addr);
		free(msg);
	}
	free(list);
	return status;
}

static int write_report(const char *dir, const char *fname, const unsigned char *gz, size_t gzlen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, fname);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, gz, gzlen) != (ssize_t)gzlen || close(fd) < 0) {
		fprintf(stderr, "siftctl dmarc report: %s: %s\n", path, strerror(errno));
		return -1;
	}
	printf("wrote %s\n", path);
	return 0;
}

/* The reports of one policy domain's rows. */
static int one_report(const struct sift_host *host, void *conf, const struct report_opts *o,
		      const struct dmarc_row *const *rows, size_t n, time_t begin)
{
	const struct dmarc_report_conf *rc = dmarc_conf_report(conf);
	const char *domain = rows[0]->f[RF_DOMAIN];
	time_t end = begin + 86399;
	char id[400];
	snprintf(id, sizeof(id), "%lld.%s", (long long)begin, domain);
	char *xml = dmarc_report_xml(rc, rows, n, id, begin, end);
	if (!o->send && !o->dir) {
		fputs(xml, stdout);
		free(xml);
		return 0;
	}
	unsigned char *gz = NULL;
	size_t gzlen = 0;
	int status = dmarc_gzip(xml, strlen(xml), &gz, &gzlen);
	free(xml);
	char *fname = dmarc_report_filename(rc, domain, begin, end);
	if (status == 0 && o->dir)
		status = write_report(o->dir, fname, gz, gzlen);
	if (status == 0 && o->send)
		status = send_report(host, conf, rows[0]->f[RF_RUA], domain, id, fname, gz, gzlen);
	free(fname);
	free(gz);
	return status;
}

static int one_day(const struct sift_host *host, void *conf, const struct report_opts *o, const char *day)
{
	const struct dmarc_report_conf *rc = dmarc_conf_report(conf);
	struct dmarc_rows rows = {0};
	char *err = NULL;
	if (dmarc_report_load(host, rc, day, &rows, &err) < 0) {
		fprintf(stderr, "siftctl dmarc report: %s\n", err);
		free(err);
		return -1;
	}
	struct tm tm = {0};
	sscanf(day, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	time_t begin = timegm(&tm);
	const struct dmarc_row **v = calloc(rows.n + 1, sizeof(*v));
	for (size_t i = 0; i < rows.n; i++)
		v[i] = &rows.v[i];
	qsort(v, rows.n, sizeof(*v), cmp_domain);
	/* the domains whose reports went out (written, mailed): their rows
	 * are deleted even when another domain's sendmail failed, so that
	 * the next run does not send them again */
	const char **done = calloc(rows.n + 1, sizeof(*done));
	size_t ndone = 0;
	int status = 0;
	for (size_t i = 0; i < rows.n;) {
		size_t j = i + 1;
		while (j < rows.n && strcmp(v[j]->f[RF_DOMAIN], v[i]->f[RF_DOMAIN]) == 0)
			j++;
		if (one_report(host, conf, o, v + i, j - i, begin) < 0)
			status = -1;
		else
			done[ndone++] = v[i]->f[RF_DOMAIN];
		i = j;
	}
	if ((o->send || o->dir) && !o->keep) {
		int r = status == 0 ? dmarc_report_remove(host, rc, day, &err)
			: ndone	    ? dmarc_report_remove_domains(host, rc, day, done, ndone, &err)
				    : 0;
		if (r < 0) {
			fprintf(stderr, "siftctl dmarc report: %s\n", err);
			free(err);
			status = -1;
		}
	}
	free(done);
	free(v);
	dmarc_rows_free(&rows);
	return status;
}

static int tool_report(const struct sift_host *host, void *conf, int argc, char **argv)
{
	static const struct option lo[] = {{"date", required_argument, NULL, 'D'},
					   {"dir", required_argument, NULL, 'd'},
					   {"send", no_argument, NULL, 's'},
					   {"keep", no_argument, NULL, 'k'},
					   {NULL, 0, NULL, 0}};
	struct report_opts o = {0};
	int ch;
	/* getopt's messages start with argv[0], as siftctl's own commands' do */
	argv[0] = (char *)"siftctl dmarc report";
	optind = 1;
	while ((ch = getopt_long(argc, argv, "D:d:sk", lo, NULL)) != -1) {
		if (ch == 'D')
			o.date = optarg;
		else if (ch == 'd')
			o.dir = optarg;
		else if (ch == 's')
			o.send = true;
		else if (ch == 'k')
			o.keep = true;
		else
			return 2;
	}
	int y, m, d;
	char tail;
	if (o.date && (strlen(o.date) != 10 || sscanf(o.date, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
		       m < 1 || m > 12 || d < 1 || d > 31)) {
		fprintf(stderr, "siftctl dmarc report: --date %s: YYYY-MM-DD\n", o.date);
		return 2;
	}
	/* A day that is not over (UTC) is still being recorded: a report that
	 * deletes its rows would lose those filterd adds meanwhile, and the
	 * day's real report would come later with the same Report-ID and date
	 * range. Printing it, or --dir with --keep, is a look at the day so
	 * far. */
	char today[11];
	dmarc_report_day(time(NULL), today, NULL);
	if (o.date && strcmp(o.date, today) >= 0 && (o.send || (o.dir && !o.keep))) {
		fprintf(stderr,
			"siftctl dmarc report: --date %s: the day (UTC) is not over, its rows are still "
			"being recorded: %s once it is over (print it, or --dir DIR --keep, for the day so "
			"far)\n",
			o.date, o.send ? "--send it" : "--dir without --keep");
		return 2;
	}
	const struct dmarc_report_conf *rc = dmarc_conf_report(conf);
	if (!*rc->store) {
		fprintf(stderr, "siftctl dmarc report: dmarc_report_store is empty: nothing is recorded\n");
		return 0;
	}
	char **days = NULL, *err = NULL;
	size_t n = 0;
	if (o.date) {
		days = calloc(1, sizeof(char *));
		days[n++] = strdup(o.date);
	} else if (dmarc_report_days(host, rc, time(NULL), &days, &n, &err) < 0) {
		fprintf(stderr, "siftctl dmarc report: %s\n", err);
		free(err);
		return 1;
	}
	int status = 0;
	for (size_t i = 0; i < n; i++) {
		status |= one_day(host, conf, &o, days[i]);
		free(days[i]);
	}
	free(days);
	return status ? 1 : 0;
}

/* ---- check ------------------------------------------------------------------ */

/* RESULT:DOMAIN into a; the result is an SPF one (spf) or a DKIM one (pass,
 * temperror, anything else a failure). */
static bool parse_auth(const char *arg, bool spf, struct dmarc_auth *a)
{
	const char *colon = strchr(arg, ':');
	if (!colon || !dmarc_domain_norm(colon + 1, a->domain, sizeof(a->domain)))
		return false;
	size_t n = (size_t)(colon - arg);
	for (int k = 0; k < (spf ? DMARC_SPF_MAX : 0); k++)
		if (strlen(dmarc_spf_names[k]) == n && strncasecmp(arg, dmarc_spf_names[k], n) == 0) {
			a->result = k;
			return true;
		}
	if (!spf && (n == 4 && strncasecmp(arg, "pass", 4) == 0))
		a->result = DMARC_DKIM_PASS;
	else if (!spf && (n == 9 && strncasecmp(arg, "temperror", 9) == 0))
		a->result = DMARC_DKIM_TEMPERROR;
	else if (!spf && n > 0)
		a->result = DMARC_DKIM_FAIL;
	else
		return false;
	return true;
}

static void check_done(void *arg, const struct sift_tool_message *m)
{
	(void)arg;
	(void)m;
}

static void print_check(const struct dmarc_eval *e)
{
	printf("from: %s", e->from_domain[0] ? e->from_domain : "-");
	if (e->org_domain[0])
		printf(" (organizational domain %s)", e->org_domain);
	printf("\n");
	if (e->have_record) {
		const struct dmarc_record *r = &e->rec;
		printf("record: _dmarc.%s: v=DMARC1; p=%s; sp=%s; adkim=%c; aspf=%c; pct=%d%s%s\n",
		       e->record_at_org ? e->org_domain : e->from_domain, dmarc_policy_names[r->p],
		       dmarc_policy_names[r->sp], r->adkim_strict ? 's' : 'r', r->aspf_strict ? 's' : 'r',
		       r->pct, r->rua[0] ? "; rua=" : "", r->rua);
	} else
		printf("record: none%s%s%s\n", e->reason ? " (" : "", e->reason ? e->reason : "",
		       e->reason ? ")" : "");
	printf("spf: %s %s%s\n", dmarc_spf_names[e->spf.result], e->spf.domain[0] ? e->spf.domain : "-",
	       e->spf.aligned ? " aligned" : "");
	for (size_t i = 0; i < e->ndkim; i++)
		printf("dkim: %s %s%s\n", dmarc_dkim_names[e->dkim[i].result], e->dkim[i].domain,
		       e->dkim[i].aligned ? " aligned" : "");
	if (!e->ndkim)
		printf("dkim: none\n");
	printf("dmarc=%s\npolicy=%s\ndisposition=%s%s%s\n", dmarc_result_names[e->result],
	       dmarc_policy_names[e->policy], dmarc_policy_names[e->disposition],
	       e->override ? " override=" : "", dmarc_override_names[e->override]);
}

static int tool_check(const struct sift_host *host, void *conf, int argc, char **argv)
{
	(void)conf;
	static const struct option lo[] = {{"spf", required_argument, NULL, 's'},
					   {"dkim", required_argument, NULL, 'd'},
					   {NULL, 0, NULL, 0}};
	struct dmarc_check k = {0};
	int ch;
	/* getopt's messages start with argv[0], as siftctl's own commands' do */
	argv[0] = (char *)"siftctl dmarc check";
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:d:", lo, NULL)) != -1) {
		bool ok = ch == 's' ? (k.have_spf = parse_auth(optarg, true, &k.spf))
			  : ch == 'd'
				  ? k.ndkim < DMARC_MAX_DKIM && parse_auth(optarg, false, &k.dkim[k.ndkim++])
				  : false;
		if (ch == 'd')
			k.have_dkim = true;
		if (!ok) {
			fprintf(stderr, "siftctl dmarc check: bad option (--spf RESULT:DOMAIN, --dkim "
					"RESULT:DOMAIN)\n");
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "siftctl dmarc check: one FILE\n");
		return 2;
	}
	static const char *const with_dkim[] = {"dkim_verify = yes", "dkim_sign = no",
						"dmarc_report_store =", NULL};
	const char *const *alone = with_dkim + 2;
	char *err = NULL;
	dmarc_check_hook = &k;
	int rc = -1;
	if (!k.have_dkim) {
		rc = host->tool_message(argv[optind], "dkim dmarc", "inbound", with_dkim, check_done, NULL,
					&err);
		if (rc < 0)
			fprintf(stderr, "siftctl dmarc check: no DKIM verification (%s)\n", err);
	}
	if (rc < 0) {
		free(err);
		err = NULL;
		rc = host->tool_message(argv[optind], "dmarc", "inbound", alone, check_done, NULL, &err);
	}
	dmarc_check_hook = NULL;
	if (rc < 0 || !k.ran) {
		fprintf(stderr, "siftctl dmarc check: %s\n", err ? err : "the dmarc plugin did not run");
		free(err);
		return 1;
	}
	print_check(&k.eval);
	return 0;
}

const struct sift_tool dmarc_tools[] = {
	{"report", "[--date YYYY-MM-DD] [--send] [--dir DIR] [--keep]",
	 "the DMARC aggregate reports (RFC 7489) of the recorded rows: printed as XML,\n"
	 "written gzip-compressed into DIR, or mailed to the rua= addresses",
	 SIFT_TOOL_INIT, tool_report},
	{"check", "FILE [--spf RESULT:DOMAIN] [--dkim RESULT:DOMAIN]...",
	 "the dmarc plugin's decision for a message, with the records it used;\n"
	 "--spf/--dkim replace the SPF and DKIM results (else DKIM is verified by the dkim plugin)",
	 SIFT_TOOL_INIT, tool_check},
	{NULL, NULL, NULL, 0, NULL},
};
