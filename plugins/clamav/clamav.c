/*
 * clamav.c - virus scanning with ClamAV in filterd.
 *
 * At end of message the whole message as received (headers "Name:value",
 * a blank line, the body; CRLF), preceded by an mbox "From " line so that
 * ClamAV recognises it as mail, is scanned with mail and archive parsing
 * on. The message is never copied whole: it is read from the host's one
 * copy (host->message_read: memory up to message_memory_limit, the spool
 * file beyond) in pieces (struct scan_src), either
 *   - in process with libclamav (clamav_mode = library; engine.c: one
 *     engine shared by all threads, reloaded in the background), through a
 *     libclamav map whose pages are read in as the scan reaches them and
 *     dropped again by libclamav's aging, or
 *   - by an external clamd over zINSTREAM (clamav_mode = clamd; clamd.c),
 *     in chunks of 256 KiB.
 * Messages over clamav_max_size are not scanned (clamav_limit_action), nor,
 * in library mode, messages over clamav_max_filesize (ClamAV's file size
 * limit applies to the message itself; see engine.c).
 *
 * Verdicts:
 *   clean    X-Virus-Scanned: ClamAV <version> at <host> (configurable);
 *   virus    log "Blocked INFECTED (<name>) from=<..> to=<..>", symbol
 *            CLAMAV_VIRUS, an optional rate-limited notification to the
 *            administrator (notify.c), then the profile's action: reject
 *            (554 5.7.1), discard, or quarantine (the host's store, then
 *            discard; a failed store is a tempfail);
 *   limit    over size, encrypted or over-limit archive: pass with a note in
 *            the header and the log, tempfail or reject (clamav_limit_action);
 *   failure  scanner unavailable, timeout, error, database not loaded yet:
 *            tempfail 451 4.7.1, or accept with "X-Virus-Scanned: failed"
 *            (clamav_fail_action).
 *
 * Threading: the configuration block is read-only after init; the engine
 * manager, the clamd client and the notifier lock their own state. Each
 * configuration generation owns a notifier thread; the engine manager (and
 * its watcher thread) is shared by generations with the same settings. Both
 * threads are started in init and joined in release. Nothing forks.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>

#include "clamav-int.h"

const struct sift_host *clamav_host;
#define host clamav_host

/* Put in front of the message so that ClamAV recognises mail. */
static const char from_line[] = "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\r\n";
#define FROM_LEN (sizeof(from_line) - 1)

enum mode { MODE_LIBRARY, MODE_CLAMD };
enum action { ACT_REJECT, ACT_DISCARD, ACT_QUARANTINE };
enum limit_action { LIM_PASS, LIM_TEMPFAIL, LIM_REJECT };
enum fail_action { FAIL_TEMPFAIL, FAIL_ACCEPT };

struct clamav_conf {
	int mode;
	const char *database_directory;
	long long database_check_interval;
	long long ready_wait;
	const char *tmpdir;
	int official_only, pua;
	long long max_scansize, max_filesize, max_recursion, max_files, max_scantime;
	long long max_scans, scan_wait;
	int alert_encrypted, alert_exceeds_max;
	long long max_size;
	int limit_action;
	const char *const *clamd_servers;
	long long clamd_connect_timeout, clamd_timeout, clamd_max_streams, clamd_stream_wait;
	int inbound_action, originating_action;
	long long virus_score;
	int fail_action;
	const char *header_name, *header_value, *failed_header_value;
	const char *notify_recipient, *notify_sender, *notify_relay;
	long long notify_timeout, notify_limit, notify_window, notify_queue_size;
	/* derived at init */
	struct engine_mgr *mgr;
	struct clamd_client *clamd;
	struct notifier *notifier;
	unsigned heuristic;
};

#define OFF(f) offsetof(struct clamav_conf, f)
static const struct sift_param params[] = {
	{"mode", SIFT_P_ENUM, "library", 0, 0, OFF(mode), "library|clamd",
	 "library: libclamav in filterd; clamd: an external clamd over zINSTREAM"},
	{"database_directory", SIFT_P_STRING, "/var/lib/clamav", 0, 0, OFF(database_directory), NULL,
	 "library mode: the signature database directory (freshclam's)"},
	{"database_check_interval", SIFT_P_TIME, "60s", 100, 86400000LL, OFF(database_check_interval), NULL,
	 "library mode: how often the database directory is checked for changes"},
	{"ready_wait", SIFT_P_TIME, "0", 0, 3600000LL, OFF(ready_wait), NULL,
	 "library mode: how long a scan waits for the first engine before clamav_fail_action"},
	{"tmpdir", SIFT_P_STRING, "", 0, 0, OFF(tmpdir), NULL,
	 "library mode: where the plugin creates its private directory for ClamAV's temporary files "
	 "(empty: /dev/shm when it is a tmpfs, else $TMPDIR or /tmp)"},
	{"official_only", SIFT_P_BOOL, "no", 0, 0, OFF(official_only), NULL,
	 "library mode: load only official (signed) signatures"},
	{"pua", SIFT_P_BOOL, "no", 0, 0, OFF(pua), NULL, "library mode: load PUA signatures"},
	{"max_scansize", SIFT_P_SIZE, "100m", 0, 1LL << 40, OFF(max_scansize), NULL,
	 "library mode: ClamAV MaxScanSize (data scanned per message, 0 = ClamAV default)"},
	{"max_filesize", SIFT_P_SIZE, "25m", 0, 1LL << 40, OFF(max_filesize), NULL,
	 "library mode: ClamAV MaxFileSize (largest file inside a message, and the message itself: a larger "
	 "one is not scanned, clamav_limit_action; 0 = ClamAV default)"},
	{"max_recursion", SIFT_P_INT, "16", 0, 1000, OFF(max_recursion), NULL,
	 "library mode: ClamAV MaxRecursion (nested archives, 0 = ClamAV default)"},
	{"max_files", SIFT_P_INT, "10000", 0, 100000000, OFF(max_files), NULL,
	 "library mode: ClamAV MaxFiles (files per message, 0 = ClamAV default)"},
	{"max_scantime", SIFT_P_TIME, "120s", 0, 3600000LL, OFF(max_scantime), NULL,
	 "library mode: ClamAV MaxScanTime (0 = ClamAV default); a scan that runs out of time is a "
	 "failure (clamav_fail_action)"},
	{"max_scans", SIFT_P_INT, "8", 1, 100000, OFF(max_scans), NULL,
	 "library mode: concurrent scans at most (libclamav holds the decoded parts of each: about twice "
	 "the message's size)"},
	{"scan_wait", SIFT_P_TIME, "30s", 0, 3600000LL, OFF(scan_wait), NULL,
	 "library mode: how long a scan waits for its turn (clamav_max_scans) before clamav_fail_action"},
	{"alert_encrypted", SIFT_P_BOOL, "yes", 0, 0, OFF(alert_encrypted), NULL,
	 "library mode: report encrypted archives and documents (then clamav_limit_action)"},
	{"alert_exceeds_max", SIFT_P_BOOL, "yes", 0, 0, OFF(alert_exceeds_max), NULL,
	 "library mode: report content over ClamAV's limits (then clamav_limit_action); the scan time "
	 "limit is always a failure"},
	{"max_size", SIFT_P_SIZE, "25m", 1024, 1LL << 32, OFF(max_size), NULL,
	 "larger messages are not scanned (clamav_limit_action)"},
	{"limit_action", SIFT_P_ENUM, "pass", 0, 0, OFF(limit_action), "pass|tempfail|reject",
	 "over-size message, encrypted or over-limit content: pass with a note, tempfail or reject"},
	{"clamd_servers", SIFT_P_LIST, "unix:/run/clamav/clamd.ctl", 0, 0, OFF(clamd_servers), NULL,
	 "clamd mode: servers in failover order (unix:/path, inet:host:port)"},
	{"clamd_connect_timeout", SIFT_P_TIME, "5s", 10, 600000, OFF(clamd_connect_timeout), NULL,
	 "clamd mode: connect timeout per server"},
	{"clamd_timeout", SIFT_P_TIME, "120s", 100, 3600000LL, OFF(clamd_timeout), NULL,
	 "clamd mode: time limit of one scan, all servers included"},
	{"clamd_max_streams", SIFT_P_INT, "16", 1, 100000, OFF(clamd_max_streams), NULL,
	 "clamd mode: concurrent streams to clamd at most"},
	{"clamd_stream_wait", SIFT_P_TIME, "30s", 0, 3600000LL, OFF(clamd_stream_wait), NULL,
	 "clamd mode: how long a scan waits for a free stream"},
	{"inbound_action", SIFT_P_ENUM, "reject", 0, 0, OFF(inbound_action), "reject|discard|quarantine",
	 "what an infected message gets in the inbound profile"},
	{"originating_action", SIFT_P_ENUM, "reject", 0, 0, OFF(originating_action),
	 "reject|discard|quarantine", "what an infected message gets in the originating profile"},
	{"virus_score", SIFT_P_INT, "100", -1000000, 1000000, OFF(virus_score), NULL,
	 "score of the CLAMAV_VIRUS symbol"},
	{"fail_action", SIFT_P_ENUM, "tempfail", 0, 0, OFF(fail_action), "tempfail|accept",
	 "scanner down, timeout, error, database not ready: tempfail, or accept with the failed header"},
	{"header_name", SIFT_P_STRING, "X-Virus-Scanned", 0, 0, OFF(header_name), NULL,
	 "header added to scanned mail (empty: none)"},
	{"header_value", SIFT_P_STRING, "ClamAV %v at %h", 0, 0, OFF(header_value), NULL,
	 "its value; %v = ClamAV version, %h = host name, %% = %"},
	{"failed_header_value", SIFT_P_STRING, "failed", 0, 0, OFF(failed_header_value), NULL,
	 "header value when clamav_fail_action = accept let an unscanned message through"},
	{"notify_recipient", SIFT_P_STRING, "", 0, 0, OFF(notify_recipient), NULL,
	 "address notified of each infected message (empty: no notifications)"},
	{"notify_sender", SIFT_P_STRING, "", 0, 0, OFF(notify_sender), NULL,
	 "envelope sender of notifications (empty: the null sender)"},
	{"notify_relay", SIFT_P_STRING, "127.0.0.1:25", 0, 0, OFF(notify_relay), NULL,
	 "SMTP server notifications are sent to (host:port or unix:/path)"},
	{"notify_timeout", SIFT_P_TIME, "30s", 100, 600000, OFF(notify_timeout), NULL,
	 "time limit for sending one notification"},
	{"notify_limit", SIFT_P_INT, "10", 0, 1000000, OFF(notify_limit), NULL,
	 "notifications per clamav_notify_window at most (0 = unlimited)"},
	{"notify_window", SIFT_P_TIME, "1h", 1000, 86400000LL * 30, OFF(notify_window), NULL,
	 "the rate-limit window of notifications"},
	{"notify_queue_size", SIFT_P_INT, "100", 1, 100000, OFF(notify_queue_size), NULL,
	 "notifications waiting to be sent at most (more are dropped)"},
	SIFT_PARAM_END,
};
#undef OFF

static char *xstrdup_err(const char *s)
{
	char *r = strdup(s);
	return r ? r : NULL;
}

/* Library mode: the scans in progress in this process, all profiles and
 * configuration generations together (libclamav's memory is the
 * process's); the limit is clamav_max_scans of the configuration loaded
 * last. */
static struct slots lib_scans;
static pthread_once_t lib_scans_once = PTHREAD_ONCE_INIT;
static void lib_scans_init(void)
{
	slots_init(&lib_scans, 1);
}

static int clamav_init(const struct sift_host *h, void *cv, char **err_r)
{
	host = h;
	struct clamav_conf *c = cv;
	if (h->struct_size < offsetof(struct sift_host, message_read) + sizeof(h->message_read)) {
		*err_r = xstrdup_err("this host has no message reader (host->message_read): too old");
		return -1;
	}
	if (c->mode == MODE_LIBRARY) {
		/* ClamAV sees the message as one file, the From line added in
		 * front of it included: that line does not count against
		 * clamav_max_filesize, so that with max_size <= max_filesize
		 * (the defaults: 25m both) every message the plugin scans fits
		 * the engine's file size limit. */
		long long max_file = c->max_filesize ? c->max_filesize + (long long)FROM_LEN : 0;
		if (c->max_filesize && c->max_size > c->max_filesize)
			h->log(NULL, LOG_WARNING,
			       "clamav: clamav_max_size (%lld) is over clamav_max_filesize (%lld): messages "
			       "between the two are not scanned (ClamAV sees the message as one file), "
			       "clamav_limit_action applies to them",
			       c->max_size, c->max_filesize);
		struct engine_settings s = {
			.dbdir = c->database_directory,
			.tmpdir = c->tmpdir,
			.check_interval_ms = c->database_check_interval,
			.max_scansize = c->max_scansize,
			.max_filesize = max_file,
			.max_recursion = c->max_recursion,
			.max_files = c->max_files,
			.max_scantime = c->max_scantime,
			.official_only = c->official_only,
			.pua = c->pua,
		};
		if (!*c->database_directory) {
			*err_r = xstrdup_err("clamav_database_directory is empty");
			return -1;
		}
		if (!(c->mgr = engine_mgr_get(&s, err_r)))
			return -1;
		pthread_once(&lib_scans_once, lib_scans_init);
		slots_set_max(&lib_scans, c->max_scans);
		c->heuristic = (c->alert_encrypted ? CL_HEUR_ENCRYPTED : 0) |
			       (c->alert_exceeds_max ? CL_HEUR_EXCEEDS : 0);
	} else {
		c->clamd = clamd_new(c->clamd_servers, c->clamd_connect_timeout, c->clamd_timeout,
				     c->clamd_max_streams, c->clamd_stream_wait, err_r);
		if (!c->clamd)
			return -1;
	}
	if (*c->notify_recipient) {
		c->notifier = notifier_new(c->notify_relay, c->notify_sender, c->notify_recipient,
					   c->notify_timeout, c->notify_queue_size, err_r);
		if (!c->notifier) {
			engine_mgr_put(c->mgr);
			clamd_free(c->clamd);
			c->mgr = NULL;
			c->clamd = NULL;
			return -1;
		}
	}
	return 0;
}

static void clamav_release(void *cv)
{
	struct clamav_conf *c = cv;
	notifier_free(c->notifier);
	engine_mgr_put(c->mgr);
	clamd_free(c->clamd);
	c->notifier = NULL;
	c->mgr = NULL;
	c->clamd = NULL;
}

/* ---- helpers ------------------------------------------------------------------ */

/* Expands %v, %h, %% of header_value. */
static char *expand_value(struct sift_ctx *ctx, const char *tmpl, const char *version)
{
	const char *hn = host->get(ctx, SIFT_I_MYHOSTNAME);
	if (!hn)
		hn = "localhost";
	size_t cap = strlen(tmpl) + strlen(hn) * 4 + strlen(version) * 4 + 1, len = 0;
	char *out = host->msg_alloc(ctx, cap);
	for (const char *p = tmpl; *p && len + 1 < cap; p++) {
		const char *ins = NULL;
		if (*p == '%' && p[1] == 'v')
			ins = version;
		else if (*p == '%' && p[1] == 'h')
			ins = hn;
		else if (*p == '%' && p[1] == '%')
			ins = "%";
		if (ins) {
			size_t l = strlen(ins);
			if (len + l >= cap)
				break;
			memcpy(out + len, ins, l);
			len += l;
			p++;
		} else
			out[len++] = *p;
	}
	out[len] = 0;
	return out;
}

static const char *scanner_version(const struct clamav_conf *c)
{
	if (c->mode == MODE_LIBRARY)
		return engine_version();
	const char *v = clamd_version(c->clamd);
	return v ? v : "(clamd)";
}

/* Ours replaces any header of that name in the message: a sender could
 * otherwise put "X-Virus-Scanned: ClamAV ... at <our host>" above it (or
 * on a message we then fail to scan), and readers take the first. */
static void add_header(struct sift_ctx *ctx, const struct clamav_conf *c, const char *value)
{
	if (!*c->header_name)
		return;
	unsigned cnt = 0;
	size_t n = host->header_count(ctx);
	for (size_t i = 0; i < n; i++) {
		const struct sift_header *h = host->header(ctx, i);
		if (h && h->name && strcasecmp(h->name, c->header_name) == 0)
			cnt++;
	}
	for (unsigned k = cnt; k >= 1; k--) /* highest first: the indexes below stay valid */
		host->header_change(ctx, c->header_name, k, NULL);
	host->header_add(ctx, c->header_name, value);
}

/* Recipients joined with ",", in message memory. */
static const char *rcpt_list(struct sift_ctx *ctx)
{
	size_t n = host->rcpt_count(ctx), len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(host->rcpt(ctx, i)) + 1;
	char *s = host->msg_alloc(ctx, len);
	s[0] = 0;
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(s, ",");
		strcat(s, host->rcpt(ctx, i));
	}
	return s;
}

/* Appends to a malloc'd string; keeps NULL on allocation failure. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};
static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t nc = (b->cap ? b->cap * 2 : 4096);
		while (nc < b->len + n + 1)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = 0;
}
static void sb_adds(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

static void notify(struct sift_ctx *ctx, const struct clamav_conf *c, const char *virus, const char *action)
{
	if (!c->notifier)
		return;
	if (c->notify_limit > 0) {
		long long w = c->notify_window;
		long long bucket = (long long)time(NULL) * 1000 / w;
		char key[64];
		snprintf(key, sizeof(key), "clamav:notify:%lld", bucket);
		long long v = 0;
		if (host->kv_incr(key, 1, (long)(w + 60000 < 0x7fffffff ? w + 60000 : 0x7fffffff), &v) < 0) {
			host->log(ctx, LOG_WARNING, "notification not sent: rate-limit store unavailable");
			return;
		}
		if (v > c->notify_limit) {
			if (v == c->notify_limit + 1)
				host->log(ctx, LOG_WARNING,
					  "notification rate limit reached (%lld per window): further "
					  "notifications "
					  "suppressed",
					  c->notify_limit);
			return;
		}
	}
	const char *qid = host->get(ctx, SIFT_I_QUEUE_ID);
	const char *sender = host->get(ctx, SIFT_I_SENDER);
	const char *client = host->get(ctx, SIFT_I_CLIENT_ADDR);
	const char *cname = host->get(ctx, SIFT_I_CLIENT_NAME);
	const char *hn = host->get(ctx, SIFT_I_MYHOSTNAME);
	struct sbuf b = {0};
	char line[512];
	snprintf(line, sizeof(line), "From: Sift virus scanner <%s>\r\n",
		 *c->notify_sender ? c->notify_sender : "MAILER-DAEMON");
	sb_adds(&b, line);
	sb_adds(&b, "To: <");
	sb_adds(&b, c->notify_recipient);
	sb_adds(&b, ">\r\nSubject: VIRUS (");
	sb_adds(&b, virus);
	sb_adds(&b, ") in mail FROM <");
	sb_adds(&b, sender ? sender : "");
	sb_adds(&b, ">\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n\r\n");
	sb_adds(&b, "A virus was found in a message.\r\n\r\nVirus:      ");
	sb_adds(&b, virus);
	sb_adds(&b, "\r\nAction:     ");
	sb_adds(&b, action);
	sb_adds(&b, "\r\nQueue id:   ");
	sb_adds(&b, qid ? qid : "unknown");
	sb_adds(&b, "\r\nClient:     ");
	sb_adds(&b, cname ? cname : "unknown");
	sb_adds(&b, " [");
	sb_adds(&b, client ? client : "unknown");
	sb_adds(&b, "]\r\nSender:     <");
	sb_adds(&b, sender ? sender : "");
	sb_adds(&b, ">\r\n");
	for (size_t i = 0, n = host->rcpt_count(ctx); i < n; i++) {
		sb_adds(&b, "Recipient:  <");
		sb_adds(&b, host->rcpt(ctx, i));
		sb_adds(&b, ">\r\n");
	}
	sb_adds(&b, "\r\nThe message's header:\r\n\r\n");
	for (size_t i = 0, n = host->header_count(ctx); i < n && b.len < 256 * 1024; i++) {
		const struct sift_header *h = host->header(ctx, i);
		sb_adds(&b, h->name);
		sb_adds(&b, ":");
		sb_adds(&b, h->value);
		sb_adds(&b, "\r\n");
	}
	if (b.oom || !b.p) {
		free(b.p);
		host->log(ctx, LOG_WARNING, "notification not sent: out of memory");
		return;
	}
	if (!notifier_send(c->notifier, hn, b.p))
		host->log(ctx, LOG_WARNING, "notification dropped: queue full");
	free(b.p);
}

long src_read(const struct scan_src *s, long long off, void *buf, size_t len)
{
	if (off < 0)
		return -1;
	if (off >= s->size)
		return 0;
	if ((long long)len > s->size - off)
		len = (size_t)(s->size - off);
	size_t got = 0;
	if (off < (long long)FROM_LEN) {
		got = FROM_LEN - (size_t)off < len ? FROM_LEN - (size_t)off : len;
		memcpy(buf, from_line + off, got);
	}
	while (got < len) {
		long long moff = off + (long long)got - (long long)FROM_LEN;
		long n = host->message_read(s->ctx, moff, (char *)buf + got, len - got);
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (long)got;
}

static enum sift_verdict on_failure(struct sift_ctx *ctx, const struct clamav_conf *c, const char *why)
{
	if (c->fail_action == FAIL_ACCEPT) {
		host->log(ctx, LOG_WARNING,
			  "scan failed (%s): accepted unscanned (clamav_fail_action = accept)", why);
		add_header(ctx, c, c->failed_header_value);
		return SIFT_DUNNO;
	}
	host->log(ctx, LOG_WARNING, "scan failed (%s): tempfail", why);
	host->reply(ctx, "451", "4.7.1", "Virus scanner unavailable, try again later");
	return SIFT_TEMPFAIL;
}

static enum sift_verdict on_limit(struct sift_ctx *ctx, const struct clamav_conf *c, const char *what)
{
	switch (c->limit_action) {
	case LIM_TEMPFAIL:
		host->log(ctx, LOG_NOTICE, "not fully scanned (%s): tempfail", what);
		host->reply(ctx, "452", "4.3.1", "Message could not be scanned, try again later");
		return SIFT_TEMPFAIL;
	case LIM_REJECT:
		host->log(ctx, LOG_NOTICE, "not fully scanned (%s): reject", what);
		host->reply(ctx, "554", "5.7.1", "Message could not be scanned for viruses");
		return SIFT_REJECT;
	default: {
		host->log(ctx, LOG_NOTICE, "not fully scanned (%s): passed", what);
		const char *v = expand_value(ctx, c->header_value, scanner_version(c));
		size_t n = strlen(v) + strlen(what) + 32;
		char *hv = host->msg_alloc(ctx, n);
		snprintf(hv, n, "%s (not fully scanned: %s)", v, what);
		add_header(ctx, c, hv);
		return SIFT_DUNNO;
	}
	}
}

static enum sift_verdict on_virus(struct sift_ctx *ctx, const struct clamav_conf *c, const char *name)
{
	const char *profile = host->get(ctx, SIFT_I_PROFILE);
	int act =
		(profile && strcmp(profile, "originating") == 0) ? c->originating_action : c->inbound_action;
	const char *sender = host->get(ctx, SIFT_I_SENDER);
	host->log(ctx, LOG_WARNING, "Blocked INFECTED (%s) from=<%s> to=<%s>", name, sender ? sender : "",
		  rcpt_list(ctx));
	host->symbol(ctx, "CLAMAV_VIRUS", (double)c->virus_score, name);
	static const char *const act_names[] = {"rejected", "discarded", "quarantined"};
	char text[400];
	switch (act) {
	case ACT_DISCARD:
		notify(ctx, c, name, act_names[act]);
		return SIFT_DISCARD;
	case ACT_QUARANTINE: {
		char reason[300];
		snprintf(reason, sizeof(reason), "virus %s", name);
		char *id = NULL;
		/* the alert once the message is in the store: a failed store
		 * is a tempfail, and each retry of the sender would alert again */
		if (host->quarantine(ctx, reason, &id) < 0) {
			host->reply(ctx, "451", "4.7.1", "Quarantine failed, try again later");
			return SIFT_TEMPFAIL;
		}
		free(id);
		notify(ctx, c, name, act_names[act]);
		return SIFT_DISCARD;
	}
	default:
		notify(ctx, c, name, act_names[act]);
		snprintf(text, sizeof(text), "Message rejected: virus found (%s)", name);
		host->reply(ctx, "554", "5.7.1", text);
		return SIFT_REJECT;
	}
}

static enum sift_verdict clamav_eom(struct sift_ctx *ctx)
{
	const struct clamav_conf *c = host->conf(ctx);
	long long size = host->message_size(ctx);
	if (size < 0)
		return on_failure(ctx, c, "cannot read the message");
	if (size > c->max_size) {
		char what[96];
		snprintf(what, sizeof(what), "message size %lld over clamav_max_size %lld", size,
			 c->max_size);
		return on_limit(ctx, c, what);
	}
	/* ClamAV would not scan a message over its file size limit at all
	 * (engine.c): the same as over clamav_max_size. */
	if (c->mode == MODE_LIBRARY && c->max_filesize && size > c->max_filesize) {
		char what[112];
		snprintf(what, sizeof(what), "message size %lld over clamav_max_filesize %lld", size,
			 c->max_filesize);
		return on_limit(ctx, c, what);
	}
	struct scan_src src = {.ctx = ctx, .size = size + (long long)FROM_LEN};
	char name[256];
	enum scan_result r;
	long left = host->time_left_ms(ctx);
	long margin = left > 2000 ? 1000 : left / 2;
	if (c->mode == MODE_LIBRARY) {
		long long start = clock_ms(), turn = start + c->scan_wait;
		if (turn > start + left - margin)
			turn = start + left - margin;
		if (!slots_take(&lib_scans, turn)) {
			snprintf(name, sizeof(name), "too many concurrent scans (clamav_max_scans %lld)",
				 c->max_scans);
			r = SCAN_FAILED;
		} else {
			left -= (long)(clock_ms() - start);
			long wait = (long)c->ready_wait;
			if (wait > left - margin)
				wait = left - margin;
			r = engine_scan(c->mgr, &src, c->heuristic, wait, name, sizeof(name));
			slots_give(&lib_scans);
		}
	} else
		r = clamd_scan(c->clamd, &src, clock_ms() + left - margin, name, sizeof(name));
	switch (r) {
	case SCAN_CLEAN:
		add_header(ctx, c, expand_value(ctx, c->header_value, scanner_version(c)));
		return SIFT_DUNNO;
	case SCAN_VIRUS:
		return on_virus(ctx, c, name);
	case SCAN_LIMIT:
		return on_limit(ctx, c, name);
	default:
		return on_failure(ctx, c, name);
	}
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "clamav",
	.description = "virus scanning with ClamAV (libclamav in process or clamd), quarantine, admin alerts",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS,
	.flags = SIFT_F_NEED_BODY | SIFT_F_VIRUS_SCAN,
	.params = params,
	.conf_size = sizeof(struct clamav_conf),
	.init = clamav_init,
	.release = clamav_release,
	.eom = clamav_eom,
};
