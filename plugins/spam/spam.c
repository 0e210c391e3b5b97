/*
 * spam.c - the `spam` plugin for filterd: scores each message with a
 * SpamAssassin-compatible rule engine (engine.c) and acts on the score as
 * amavisd-new does, per profile:
 *   tag level:  X-Spam-Score, X-Spam-Level and X-Spam-Status headers
 *               ("Yes, score=10.326 tagged_above=2 required=6.2 tests=[...]
 *               autolearn=no autolearn_force=no");
 *   tag2 level: X-Spam-Flag: YES and a subject prefix ("***SPAM*** ");
 *   kill level: reject (554 5.7.1), discard, quarantine, or tempfail.
 * Incoming X-Spam-* headers are removed so that senders cannot forge them.
 * One log line per message: "Passed CLEAN", "Passed SPAM" or "Blocked SPAM"
 * with the score and the tests hit; every rule hit is also added as a
 * symbol (host->symbol) so that filterd's summary shows it.
 *
 * Rules are loaded and compiled for PCRE2-JIT in init (once per
 * configuration generation; a reload builds the new generation in the
 * background and connections keep the old one), so that scoring starts at
 * once; the Hyperscan databases come from the cache or a background compile
 * and take over when ready (see engine.c). The engine is shared by all
 * threads. Scores from other plugins (SPF, DKIM, ClamAV symbols) are passed
 * to the engine: rule files weigh them with `symbol_score NAME SCORE` or use
 * them in `eval:check_sift_symbol('NAME')` and metas.
 */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "bayes.h"
#include "engine.h"
#include "sift/plugin.h"

struct spam_conf {
	const char *const *rules;
	const char *cache_directory;
	int hyperscan;
	const char *tag_level, *tag2_level, *kill_level;
	const char *originating_tag_level, *originating_tag2_level, *originating_kill_level;
	int kill_action;
	const char *subject_tag;
	const char *reject_text;
	long long max_size;
	long long body_scan_size;
	int strip_headers;
	int use_bayes;
	const char *bayes_store;
	int bayes_auto_learn;
	const char *bayes_auto_learn_threshold_nonspam, *bayes_auto_learn_threshold_spam;
	long long bayes_min_spam_num, bayes_min_ham_num, bayes_expiry_max_db_size;
	long long bayes_token_ttl, bayes_seen_ttl;
	int dns_available;
	long long dns_timeout, compile_timeout, compile_jobs;
	/* derived */
	struct bayes *bayes;
	struct spam_engine *engine;
	double level[2][3]; /* [profile][tag, tag2, kill]; INFINITY = off */
};

enum { KILL_REJECT, KILL_DISCARD, KILL_QUARANTINE, KILL_TEMPFAIL, KILL_PASS };

static const struct sift_host *host;

#define OFF(f) offsetof(struct spam_conf, f)
static const struct sift_param params[] = {
	{"rules", SIFT_P_LIST, "/usr/share/spamassassin /etc/spamassassin", 0, 0, OFF(rules), NULL,
	 "rule files or directories in SpamAssassin syntax (directories: *.pre, then *.cf)"},
	{"cache_directory", SIFT_P_STRING, SIFT_CACHEDIR "/spam", 0, 0, OFF(cache_directory), NULL,
	 "where compiled Hyperscan databases are cached (siftctl spam compile fills it; empty: no cache)"},
	{"hyperscan", SIFT_P_BOOL, "yes", 0, 0, OFF(hyperscan), NULL,
	 "match regexes through Hyperscan databases (no: PCRE2-JIT only)"},
	{"tag_level", SIFT_P_STRING, "2", 0, 0, OFF(tag_level), NULL,
	 "score from which X-Spam-Status/Score/Level are added (none: never, -inf: always)"},
	{"tag2_level", SIFT_P_STRING, "6.2", 0, 0, OFF(tag2_level), NULL,
	 "score from which a message is spam: X-Spam-Flag: YES and the subject tag"},
	{"kill_level", SIFT_P_STRING, "6.9", 0, 0, OFF(kill_level), NULL,
	 "score from which kill_action applies (none: never)"},
	{"originating_tag_level", SIFT_P_STRING, "", 0, 0, OFF(originating_tag_level), NULL,
	 "tag_level for the originating profile (empty: as inbound)"},
	{"originating_tag2_level", SIFT_P_STRING, "", 0, 0, OFF(originating_tag2_level), NULL,
	 "tag2_level for the originating profile (empty: as inbound)"},
	{"originating_kill_level", SIFT_P_STRING, "", 0, 0, OFF(originating_kill_level), NULL,
	 "kill_level for the originating profile (empty: as inbound)"},
	{"kill_action", SIFT_P_ENUM, "reject", 0, 0, OFF(kill_action),
	 "reject|discard|quarantine|tempfail|pass", "what happens at kill_level"},
	{"subject_tag", SIFT_P_STRING, "***SPAM*** ", 0, 0, OFF(subject_tag), NULL,
	 "prefix added to the Subject at tag2_level (empty: none)"},
	{"reject_text", SIFT_P_STRING, "Message rejected as spam", 0, 0, OFF(reject_text), NULL,
	 "text of the 554 5.7.1 reply at kill_level"},
	{"max_size", SIFT_P_SIZE, "512k", 0, 0, OFF(max_size), NULL,
	 "larger messages are not scored (logged as Passed UNCHECKED)"},
	{"body_scan_size", SIFT_P_SIZE, "50000", 0, 0, OFF(body_scan_size), NULL,
	 "octets of each text part that body rules see (SpamAssassin's body_part_scan_size)"},
	{"strip_headers", SIFT_P_BOOL, "yes", 0, 0, OFF(strip_headers), NULL,
	 "remove X-Spam-Flag/Score/Level/Status headers that arrive with the message"},
	{"use_bayes", SIFT_P_BOOL, "yes", 0, 0, OFF(use_bayes), NULL,
	 "Bayes: BAYES_* rules and score sets 2/3 once bayes_min_spam_num and _ham_num messages are learned"},
	{"bayes_store", SIFT_P_STRING, "lmdb:" SIFT_STATEDIR "/bayes", 0, 0, OFF(bayes_store), NULL,
	 "where Bayes counts live: lmdb:DIRECTORY, redis (the state_store, shared by several hosts) or "
	 "memory"},
	{"bayes_auto_learn", SIFT_P_BOOL, "yes", 0, 0, OFF(bayes_auto_learn), NULL,
	 "learn messages scored clearly ham or spam (SpamAssassin's autolearn rules)"},
	{"bayes_auto_learn_threshold_nonspam", SIFT_P_STRING, "0.1", 0, 0,
	 OFF(bayes_auto_learn_threshold_nonspam), NULL,
	 "autolearn as ham below these points (without Bayes rules)"},
	{"bayes_auto_learn_threshold_spam", SIFT_P_STRING, "12.0", 0, 0, OFF(bayes_auto_learn_threshold_spam),
	 NULL, "autolearn as spam from these points (and 3 header and 3 body points)"},
	{"bayes_min_spam_num", SIFT_P_INT, "200", 0, 1000000000, OFF(bayes_min_spam_num), NULL,
	 "spam messages learned before Bayes scores"},
	{"bayes_min_ham_num", SIFT_P_INT, "200", 0, 1000000000, OFF(bayes_min_ham_num), NULL,
	 "ham messages learned before Bayes scores"},
	{"bayes_expiry_max_db_size", SIFT_P_INT, "150000", 0, 1000000000, OFF(bayes_expiry_max_db_size), NULL,
	 "tokens kept (lmdb, memory): beyond, the oldest by receive date go, as SpamAssassin expires; 0 = no "
	 "expiry"},
	{"bayes_token_ttl", SIFT_P_TIME, "0", 0, 31536000000LL, OFF(bayes_token_ttl), NULL,
	 "redis: a token key expires this long after it was last learned (0 = never)"},
	{"bayes_seen_ttl", SIFT_P_TIME, "8d", 0, 31536000000LL, OFF(bayes_seen_ttl), NULL,
	 "redis: a message's seen entry (learned as spam or ham) expires this long after the learn (0 = "
	 "never)"},
	{"dns_available", SIFT_P_BOOL, "no", 0, 0, OFF(dns_available), NULL,
	 "run the network tests (DNS block lists of relays, senders and URIs; score sets 1 and 3)"},
	{"dns_timeout", SIFT_P_TIME, "10s", 100, 120000, OFF(dns_timeout), NULL,
	 "one deadline for all DNS list lookups of a message, from the last one started (end of message)"},
	{"compile_timeout", SIFT_P_TIME, "30m", 1000, 86400000, OFF(compile_timeout), NULL,
	 "the background Hyperscan compile is stopped after this long (matching stays on PCRE2-JIT)"},
	{"compile_jobs", SIFT_P_INT, "2", 1, 64, OFF(compile_jobs), NULL,
	 "rule groups the Hyperscan compiler builds at the same time (at most the CPUs online)"},
	SIFT_PARAM_END,
};
#undef OFF

static int parse_level(const char *s, double dflt, double *v, char **err_r, const char *name)
{
	if (!s || !*s) {
		*v = dflt;
		return 0;
	}
	if (strcasecmp(s, "none") == 0 || strcasecmp(s, "off") == 0 || strcasecmp(s, "inf") == 0) {
		*v = INFINITY;
		return 0;
	}
	if (strcasecmp(s, "-inf") == 0 || strcasecmp(s, "always") == 0) {
		*v = -INFINITY;
		return 0;
	}
	char *end;
	*v = strtod(s, &end);
	if (end == s || *end) {
		if (asprintf(err_r, "spam_%s: not a number: %s", name, s) < 0)
			*err_r = NULL;
		return -1;
	}
	return 0;
}

static void engine_log(int level, const char *msg)
{
	if (host)
		host->log(NULL, level, "%s", msg);
}

/* Gives the heap the parser and the compiler left free back to the system
 * (megabytes of rule text and temporary lists after a load, a whole
 * ruleset after a release), so that a reload does not keep its peak. */
static void heap_trim(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

/* The Bayes classifier of the conf block (NULL when use_bayes = no). */
static int bayes_init(const struct sift_host *h, struct spam_conf *c, char **err_r)
{
	if (!c->use_bayes)
		return 0;
	struct bayes_opts o = {
		.min_spam_num = c->bayes_min_spam_num,
		.min_ham_num = c->bayes_min_ham_num,
		.auto_learn = c->bayes_auto_learn,
		.max_db_size = c->bayes_expiry_max_db_size,
		.seen_ttl = c->bayes_seen_ttl / 1000, /* ms, as every SIFT_P_TIME */
		.max_token_length = 15,
	};
	char *end1, *end2;
	o.autolearn_nonspam = strtod(c->bayes_auto_learn_threshold_nonspam, &end1);
	o.autolearn_spam = strtod(c->bayes_auto_learn_threshold_spam, &end2);
	if (*end1 || *end2 || end1 == c->bayes_auto_learn_threshold_nonspam ||
	    end2 == c->bayes_auto_learn_threshold_spam) {
		*err_r = strdup("spam_bayes_auto_learn_threshold_*: not a number");
		return -1;
	}
	char *err = NULL;
	struct bstore *st =
		bstore_open(c->bayes_store, h, (long)c->bayes_token_ttl, (long)c->bayes_seen_ttl, &err);
	if (!st) {
		/* as SpamAssassin without a usable database: no Bayes, set 0/1 */
		h->log(NULL, LOG_WARNING, "spam_bayes_store: %s; Bayes is off", err ? err : "cannot open");
		free(err);
		return 0;
	}
	c->bayes = calloc(1, sizeof(*c->bayes));
	if (!c->bayes) {
		st->ops->close(st);
		return -1;
	}
	c->bayes->st = st;
	c->bayes->o = o;
	pthread_mutex_init(&c->bayes->learn_lock, NULL);
	pthread_mutex_init(&c->bayes->touch_lock, NULL);
	c->bayes->log = engine_log;
	/* the worker also writes the tokens' atimes that scans refresh */
	if ((o.auto_learn || st->touches) && bayes_autolearn_start(c->bayes) < 0)
		h->log(NULL, LOG_WARNING, "spam: no autolearn thread; autolearn waits for the Bayes store");
	return 0;
}

static int spam_init(const struct sift_host *h, void *cp, char **err_r)
{
	struct spam_conf *c = cp;
	host = h;
	if (h->struct_size < offsetof(struct sift_host, addrlist_parse) + sizeof(h->addrlist_parse)) {
		*err_r = strdup("host too old: no mime()/symbol_get()/addrlist_parse()");
		return -1;
	}
	if (h->abi_minor < 12) {
		/* the HTML statistics and MIME flags the evals read */
		*err_r = strdup("host too old: the HTML statistics and MIME flags of plugin ABI minor 12");
		return -1;
	}
	if (c->dns_available && h->struct_size < offsetof(struct sift_host, dns_wait) + sizeof(h->dns_wait)) {
		*err_r = strdup("spam_dns_available: host too old: no dns_start()/dns_wait()");
		return -1;
	}
	if (parse_level(c->tag_level, 2, &c->level[0][0], err_r, "tag_level") < 0 ||
	    parse_level(c->tag2_level, 6.2, &c->level[0][1], err_r, "tag2_level") < 0 ||
	    parse_level(c->kill_level, 6.9, &c->level[0][2], err_r, "kill_level") < 0 ||
	    parse_level(c->originating_tag_level, c->level[0][0], &c->level[1][0], err_r,
			"originating_tag_level") < 0 ||
	    parse_level(c->originating_tag2_level, c->level[0][1], &c->level[1][1], err_r,
			"originating_tag2_level") < 0 ||
	    parse_level(c->originating_kill_level, c->level[0][2], &c->level[1][2], err_r,
			"originating_kill_level") < 0)
		return -1;
	struct spam_engine_opts o = {
		.paths = c->rules,
		.cache_dir = c->cache_directory,
		.use_hyperscan = c->hyperscan,
		.body_scan_size = (size_t)c->body_scan_size,
		.score_set = (c->use_bayes ? SPAM_SET_BAYES : 0) | (c->dns_available ? SPAM_SET_NET : 0),
		.compile_timeout_ms = c->compile_timeout,
		.compile_jobs = (int)c->compile_jobs,
		.log = engine_log,
	};
	long long t0 = 0;
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		t0 = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	}
	char *err = NULL;
	c->engine = spam_engine_new(&o, &err);
	if (!c->engine) {
		if (asprintf(err_r, "spam_rules: %s", err ? err : "cannot load") < 0)
			*err_r = NULL;
		free(err);
		return -1;
	}
	if (bayes_init(h, c, err_r) < 0) {
		spam_engine_free(c->engine);
		c->engine = NULL;
		return -1;
	}
	heap_trim();
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	long long t1 = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	char stats[512];
	spam_engine_stats(c->engine, stats, sizeof(stats));
	char req[32];
	spam_fmt_num(req, sizeof(req), c->level[0][1]);
	h->log(NULL, LOG_INFO, "%s; spam from required=%s (spam_tag2_level); loaded in %lld ms", stats, req,
	       t1 - t0);
	return 0;
}

static void spam_release(void *cp)
{
	struct spam_conf *c = cp;
	if (c->bayes) {
		bayes_autolearn_stop(c->bayes);
		c->bayes->st->ops->close(c->bayes->st);
		pthread_mutex_destroy(&c->bayes->learn_lock);
		pthread_mutex_destroy(&c->bayes->touch_lock);
		free(c->bayes->touch); /* none: bayes_autolearn_stop wrote them */
		free(c->bayes);
		c->bayes = NULL;
	}
	spam_engine_free(c->engine);
	c->engine = NULL;
	heap_trim();
}

static const char *const xspam[] = {"X-Spam-Flag", "X-Spam-Score", "X-Spam-Level", "X-Spam-Status", NULL};

/* X-Spam-Status folded before 78 columns: a separating space becomes
 * CRLF + space, so that unfolding (dropping the CRLF) restores the line. */
static char *fold(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(n * 3 + 1);
	if (!o)
		return NULL;
	size_t w = 0, col = 15; /* "X-Spam-Status: " */
	const char *p = s;
	while (*p) {
		const char *sp = strchr(p, ' ');
		size_t wl = sp ? (size_t)(sp - p) : strlen(p);
		if (p != s) {
			if (col + 1 + wl > 78) {
				memcpy(o + w, "\r\n ", 3);
				w += 3;
				col = 1;
			} else {
				o[w++] = ' ';
				col++;
			}
		}
		memcpy(o + w, p, wl);
		w += wl;
		col += wl;
		p += wl;
		if (*p == ' ')
			p++;
	}
	o[w] = 0;
	return o;
}

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* "<a>,<b>" for the log line, cut short before rcpts fills up. */
static void rcpt_list(struct sift_ctx *ctx, char *rcpts, size_t size)
{
	size_t nr = host->rcpt_count(ctx);
	rcpts[0] = 0;
	for (size_t i = 0; i < nr && strlen(rcpts) < size - 80; i++) {
		char one[300];
		snprintf(one, sizeof(one), "%s<%s>", i ? "," : "", host->rcpt(ctx, i));
		strncat(rcpts, one, size - strlen(rcpts) - 1);
	}
}

/* Scores the message with the other plugins' symbols and the connection
 * data; -1 when out of memory. */
static int score_message(struct sift_ctx *ctx, const struct spam_conf *c, const struct sift_mime *mime,
			 const char *from, const char *client, const struct spam_net *net,
			 struct spam_result *r)
{
	size_t ns = host->symbol_count(ctx);
	const char **names = calloc(ns + 1, sizeof(char *));
	double *scores = calloc(ns + 1, sizeof(double));
	if (!names || !scores) {
		free(names);
		free(scores);
		return -1;
	}
	for (size_t i = 0; i < ns; i++)
		host->symbol_get(ctx, i, &names[i], &scores[i], NULL);
	long left = host->time_left_ms(ctx);
	struct timespec tn;
	clock_gettime(CLOCK_MONOTONIC, &tn);
	struct spam_input in = {
		.mime = mime,
		.envelope_from = from,
		.nsyms = ns,
		.sym_names = names,
		.sym_scores = scores,
		.helo = host->get(ctx, SIFT_I_HELO),
		.client_addr = client,
		.client_name = host->get(ctx, SIFT_I_CLIENT_NAME),
		.addrlist_parse = host->addrlist_parse,
		.bayes = c->bayes,
		.net = net,
		/* left is 0 when the deadline has passed already (the message's
		 * MIME parse took it): then the scoring stops at once */
		.deadline_ms = (long)((long long)tn.tv_sec * 1000 + tn.tv_nsec / 1000000 + left),
	};
	spam_engine_check(c->engine, &in, r);
	free(names);
	free(scores);
	return 0;
}

/* Incoming X-Spam-* headers removed: senders cannot forge them. */
static void strip_xspam(struct sift_ctx *ctx, const struct sift_mime *mime)
{
	for (const char *const *x = xspam; *x; x++) {
		unsigned cnt = 0;
		for (size_t i = 0; i < mime->header_count; i++)
			if (strcasecmp(mime->headers[i].name, *x) == 0)
				cnt++;
		for (unsigned k = cnt; k >= 1; k--)
			host->header_change(ctx, *x, k, NULL);
	}
}

/* The tag level's headers. */
static void add_headers(struct sift_ctx *ctx, double score, const char *sc, const char *status, bool is_spam)
{
	if (is_spam)
		host->header_add(ctx, "X-Spam-Flag", "YES");
	host->header_add(ctx, "X-Spam-Score", sc);
	char level[65];
	int stars = score >= 1 ? (int)score : 0;
	if (stars > 64)
		stars = 64;
	memset(level, '*', (size_t)stars);
	level[stars] = 0;
	host->header_add(ctx, "X-Spam-Level", level);
	char *f = fold(status);
	host->header_add(ctx, "X-Spam-Status", f ? f : status);
	free(f);
}

/* The tag2 level's subject prefix. A tag that does not end in white
 * space is followed by one space, as SpamAssassin's rewrite_header
 * Subject writes it: a configured value loses its trailing white space
 * (as in Postfix's main.cf), so `spam_subject_tag = [SPAM]` must not give
 * "[SPAM]offer". */
static void tag_subject(struct sift_ctx *ctx, const struct spam_conf *c, const struct sift_mime *mime)
{
	const char *subj = NULL;
	for (size_t i = 0; i < mime->header_count; i++)
		if (strcasecmp(mime->headers[i].name, "Subject") == 0) {
			subj = mime->headers[i].raw;
			break;
		}
	size_t tl = strlen(c->subject_tag);
	bool space = tl && !isspace((unsigned char)c->subject_tag[tl - 1]) && subj && *subj &&
		     !isspace((unsigned char)*subj);
	char *ns2 = NULL;
	if (asprintf(&ns2, "%s%s%s", c->subject_tag, space ? " " : "", subj ? subj : "") >= 0) {
		if (subj)
			host->header_change(ctx, "Subject", 1, ns2);
		else
			host->header_add(ctx, "Subject", ns2);
		free(ns2);
	}
}

/* The kill level's action; *done and *what for the log line. */
static enum sift_verdict kill_verdict(struct sift_ctx *ctx, const struct spam_conf *c, const char *sc,
				      const char **done, const char **what)
{
	enum sift_verdict v = SIFT_DUNNO;
	*done = "Blocked";
	*what = "SPAM";
	switch (c->kill_action) {
	case KILL_REJECT:
		host->reply(ctx, "554", "5.7.1", c->reject_text);
		v = SIFT_REJECT;
		break;
	case KILL_DISCARD:
		v = SIFT_DISCARD;
		break;
	case KILL_TEMPFAIL:
		host->reply(ctx, "451", "4.7.1", "Try again later");
		v = SIFT_TEMPFAIL;
		break;
	case KILL_QUARANTINE: {
		char *id = NULL;
		char reason[64];
		snprintf(reason, sizeof(reason), "spam, score=%s", sc);
		if (host->quarantine(ctx, reason, &id) < 0) {
			*done = "Tempfailed";
			v = SIFT_TEMPFAIL;
		} else {
			v = SIFT_DISCARD;
			*what = "SPAM (quarantined)";
		}
		free(id);
		break;
	}
	}
	return v;
}

/* The message's log line: the tests part of the status, the Message-ID. */
static void log_result(struct sift_ctx *ctx, const struct sift_mime *mime, const char *done, const char *what,
		       const char *client, const char *from, const char *rcpts, const char *sc,
		       const char *status, long long size, long long t0)
{
	long long t1 = now_us();
	const char *tests = strstr(status, "tests=[");
	char *tshort = NULL;
	if (tests) {
		tshort = strdup(tests);
		char *e = tshort ? strchr(tshort, ']') : NULL;
		if (e)
			e[1] = 0;
	}
	const char *mid = NULL;
	for (size_t i = 0; i < mime->header_count; i++)
		if (strcasecmp(mime->headers[i].name, "Message-ID") == 0) {
			mid = mime->headers[i].value;
			break;
		}
	host->log(ctx, LOG_INFO, "%s %s, [%s] <%s> -> %s, Message-ID: %s, Hits: %s, %s, size: %lld, %.1f ms",
		  done, what, client ? client : "", from ? from : "", rcpts, mid ? mid : "", sc,
		  tshort ? tshort : "", size, (double)(t1 - t0) / 1000.0);
	free(tshort);
}

/* ---- network tests: the lookups of a message, started as early as their
 * data is known (connect, end of header), collected at end of message ---- */

struct spam_conn {
	struct spam_net *net; /* the current message's lookups */
};

static long long mono_ms(void)
{
	return now_us() / 1000;
}

static struct spam_net *conn_net(struct sift_ctx *ctx, const struct spam_conf *c)
{
	struct spam_conn *sc = host->conn(ctx);
	if (!sc->net && c->dns_available)
		sc->net = spam_net_new(c->engine, host->dns_start, host->dns_wait);
	return sc->net;
}

static void net_release(struct sift_ctx *ctx)
{
	struct spam_conn *sc = host->conn(ctx);
	spam_net_free(sc->net);
	sc->net = NULL;
}

static enum sift_verdict spam_connect(struct sift_ctx *ctx)
{
	spam_net_client(conn_net(ctx, host->conf(ctx)), host->get(ctx, SIFT_I_CLIENT_ADDR));
	return SIFT_DUNNO;
}

static enum sift_verdict spam_eoh(struct sift_ctx *ctx)
{
	struct spam_net *n = conn_net(ctx, host->conf(ctx));
	if (!n)
		return SIFT_DUNNO;
	/* the headers alone, as the engine reads them from a parsed message */
	size_t nh = host->header_count(ctx);
	struct sift_mime_header *hs = calloc(nh ? nh : 1, sizeof(*hs));
	if (!hs)
		return SIFT_DUNNO;
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = host->header(ctx, i);
		const char *v = h->value;
		while (*v == ' ' || *v == '\t')
			v++;
		hs[i] = (struct sift_mime_header){.name = h->name, .raw = v, .value = v};
	}
	struct sift_mime m = {.headers = hs, .header_count = nh};
	struct spam_input in = {.mime = &m,
				.envelope_from = host->get(ctx, SIFT_I_SENDER),
				.client_addr = host->get(ctx, SIFT_I_CLIENT_ADDR),
				.addrlist_parse = host->addrlist_parse};
	spam_net_headers(n, &in);
	free(hs);
	return SIFT_DUNNO;
}

/* The answers of the message's lookups, the URIs' started now, against
 * spam_dns_timeout (and the MTA's own limit); NULL without network tests. */
static struct spam_net *net_collect(struct sift_ctx *ctx, const struct spam_conf *c,
				    const struct sift_mime *mime, const char *from, const char *client)
{
	struct spam_net *n = conn_net(ctx, c);
	if (!n)
		return NULL;
	long left = host->time_left_ms(ctx);
	struct spam_input in = {.mime = mime,
				.envelope_from = from,
				.client_addr = client,
				.addrlist_parse = host->addrlist_parse,
				.deadline_ms = (long)(mono_ms() + left / 2)};
	spam_net_headers(n, &in); /* when end of header did not run (siftctl) */
	spam_net_uris(n, &in);
	long long t0 = mono_ms();
	size_t failed = spam_net_wait(n, &in, (long)c->dns_timeout);
	if (failed)
		host->log(ctx, LOG_INFO,
			  "%zu of %zu DNS list lookups failed or timed out (after %lld ms): "
			  "their rules do not hit",
			  failed, spam_net_count(n), mono_ms() - t0);
	return n;
}

static void spam_msg_end(struct sift_ctx *ctx)
{
	net_release(ctx);
}

static void spam_close(struct sift_ctx *ctx)
{
	net_release(ctx);
}

static enum sift_verdict spam_eom(struct sift_ctx *ctx)
{
	struct spam_conf *c = host->conf(ctx);
	long long t0 = now_us();
	const char *from = host->get(ctx, SIFT_I_SENDER);
	char rcpts[512];
	rcpt_list(ctx, rcpts, sizeof(rcpts));
	const char *client = host->get(ctx, SIFT_I_CLIENT_ADDR);
	long long size = host->body_size(ctx);
	if (size > c->max_size) {
		host->log(ctx, LOG_INFO, "Passed UNCHECKED, [%s] <%s> -> %s, size: %lld (over spam_max_size)",
			  client ? client : "", from ? from : "", rcpts, size);
		return SIFT_DUNNO;
	}
	const struct sift_mime *mime = host->mime(ctx);
	if (!mime) {
		host->log(ctx, LOG_ERR, "no message to score");
		return SIFT_ERROR;
	}
	struct spam_net *net = net_collect(ctx, c, mime, from, client);
	struct spam_result r;
	int rc = score_message(ctx, c, mime, from, client, net, &r);
	net_release(ctx);
	if (rc < 0)
		return SIFT_ERROR;
	if (r.timed_out) {
		host->log(ctx, LOG_WARNING, "scoring ran out of time");
		spam_result_free(&r);
		return SIFT_ERROR;
	}
	const char *prof = host->get(ctx, SIFT_I_PROFILE);
	int pi = prof && strcmp(prof, "originating") == 0 ? 1 : 0;
	double tag = c->level[pi][0], tag2 = c->level[pi][1], kill_level = c->level[pi][2];
	bool is_spam = r.score >= tag2;
	bool is_kill = r.score >= kill_level && c->kill_action != KILL_PASS;

	for (size_t i = 0; i < r.nhits; i++)
		host->symbol(ctx, r.hits[i].name, r.hits[i].score, NULL);
	if (c->strip_headers)
		strip_xspam(ctx, mime);
	char sc[32];
	spam_fmt_num(sc, sizeof(sc), r.score);
	double t1d = isfinite(tag) ? tag : 0, t2d = isfinite(tag2) ? tag2 : 0;
	char *status = spam_format_status(&r, t1d, t2d, is_spam);
	if (r.score >= tag)
		add_headers(ctx, r.score, sc, status, is_spam);
	if (is_spam && c->subject_tag[0] && !is_kill)
		tag_subject(ctx, c, mime);
	enum sift_verdict v = SIFT_DUNNO;
	const char *what = is_spam ? "SPAM" : "CLEAN";
	const char *done = "Passed";
	if (is_kill)
		v = kill_verdict(ctx, c, sc, &done, &what);
	log_result(ctx, mime, done, what, client, from, rcpts, sc, status, size, t0);
	free(status);
	spam_result_free(&r);
	return v;
}

const struct spam_engine *spam_tool_engine(const void *conf)
{
	return ((const struct spam_conf *)conf)->engine;
}

struct bayes *spam_tool_bayes(const void *conf)
{
	return ((const struct spam_conf *)conf)->bayes;
}

void spam_tool_levels(const void *conf, double out[2][3])
{
	memcpy(out, ((const struct spam_conf *)conf)->level, sizeof(((const struct spam_conf *)conf)->level));
}

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "spam",
	.description = "SpamAssassin-compatible rule engine with amavisd-style levels",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS | SIFT_A_CHGHDRS | SIFT_A_QUARANTINE,
	.flags = SIFT_F_NEED_BODY,
	.params = params,
	.conf_size = sizeof(struct spam_conf),
	.conn_size = sizeof(struct spam_conn),
	.init = spam_init,
	.release = spam_release,
	.connect = spam_connect,
	.eoh = spam_eoh,
	.eom = spam_eom,
	.msg_end = spam_msg_end,
	.close = spam_close,
	.tools = spam_tools,
};
