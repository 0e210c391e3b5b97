/*
 * tool.c - the spam plugin's siftctl tools (`siftctl spam ...`).
 *
 *   siftctl spam check [--from ADDR] [--json] [--profile|--profile-patterns] FILE...
 *       scores each message like `spamassassin -t`: the score, the verdict
 *       and the tests hit with their scores and descriptions, plus the
 *       X-Spam-Status line filterd would add; with --profile, instead,
 *       where the scoring time of all the messages went (by rule kind, and
 *       the rules that cost the most PCRE2 time); --profile-patterns adds
 *       each Hyperscan pattern's cost alone over the same texts (slow);
 *   siftctl spam lint [-v]
 *       rule errors with file:line (the same list that makes filterd -t,
 *       a start or a reload fail; exit status 1), unknown eval: functions
 *       (their rules are skipped), with -v warnings and the patterns that
 *       Hyperscan refused (matched by PCRE2 alone);
 *   siftctl spam compile
 *       compiles the Hyperscan databases into spam_cache_directory, so that
 *       filterd starts on Hyperscan at once; exit status 1 on failure;
 *   siftctl spam mime FILE
 *       dumps the MIME parse (parts, decoded headers, text, URIs);
 *   siftctl spam learn|forget|stats|import (Bayes: bayes_tool.c).
 *
 * siftctl initialises the plugin with the configuration (-c/-o) as filterd
 * would (rule loading and compilation), alone in its chain; the tools use
 * the engine of that conf block. Messages are read and parsed by the host
 * (host->tool_message). Single-threaded (in siftctl).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "sift/plugin.h"

static const char check_usage[] = "[--from ADDR] [--json] [--profile|--profile-patterns] FILE...";

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* The engine of conf, or NULL after a message. */
static const struct spam_engine *engine_of(const void *conf)
{
	const struct spam_engine *e = conf ? spam_tool_engine(conf) : NULL;
	if (!e)
		fprintf(stderr, "siftctl spam: the spam plugin has no rules loaded\n");
	return e;
}

static long long usecs(const struct timespec *a, const struct timespec *b)
{
	return (b->tv_sec - a->tv_sec) * 1000000LL + (b->tv_nsec - a->tv_nsec) / 1000;
}

struct check_state {
	const struct spam_engine *e;
	const char *file, *from;
	struct sift_addrs *(*addrlist_parse)(const char *value); /* the host's */
	bool json;
	struct spam_profile *profile;
	struct bayes *bayes;
	double tag, tag2, spam_from;
	struct timespec ts0, cpu0; /* CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID */
};

static void print_json(const struct check_state *st, const struct spam_result *r, const char *sc, bool spam,
		       const char *status, long long us, long long cpu_us)
{
	printf("{\"file\":");
	json_str(st->file);
	printf(",\"score\":%s,\"spam\":%s,\"required\":%g,\"ms\":%lld,\"us\":%lld,\"cpu_us\":%lld,\"tests\":"
	       "[",
	       sc, spam ? "true" : "false", st->tag2, us / 1000, us, cpu_us);
	for (size_t k = 0; k < r->nhits; k++) {
		char v[32];
		spam_fmt_num(v, sizeof(v), r->hits[k].score);
		printf("%s{\"name\":", k ? "," : "");
		json_str(r->hits[k].name);
		printf(",\"score\":%s}", v);
	}
	printf("],\"status\":");
	json_str(status);
	printf("}\n");
}

static void check_done(void *arg, const struct sift_tool_message *m)
{
	const struct check_state *st = arg;
	struct spam_input in = {.mime = m->mime,
				.envelope_from = st->from,
				.addrlist_parse = st->addrlist_parse,
				.bayes = st->bayes,
				.profile = st->profile};
	struct spam_result r;
	spam_engine_check(st->e, &in, &r);
	if (st->profile) {
		spam_result_free(&r);
		return;
	}
	struct timespec ts1, cpu1;
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
	long long us = usecs(&st->ts0, &ts1), cpu_us = usecs(&st->cpu0, &cpu1);
	char sc[32];
	spam_fmt_num(sc, sizeof(sc), r.score);
	bool spam = r.score >= st->spam_from;
	char *status = spam_format_status(&r, st->tag, st->tag2, spam);
	if (st->json) {
		print_json(st, &r, sc, spam, status, us, cpu_us);
	} else {
		printf("%s: %s, score=%s required=%g\n", st->file, spam ? "SPAM" : "ham", sc, st->tag2);
		printf(" pts rule name              description\n");
		printf("---- ---------------------- "
		       "--------------------------------------------------\n");
		for (size_t k = 0; k < r.nhits; k++)
			printf("%4.1f %-22s %s\n", r.hits[k].score, r.hits[k].name,
			       r.hits[k].describe ? r.hits[k].describe : "");
		printf("X-Spam-Status: %s\n\n", status);
	}
	free(status);
	spam_result_free(&r);
}

static int tool_check(const struct sift_host *host, void *conf, int argc, char **argv)
{
	struct check_state st = {.addrlist_parse = host->addrlist_parse};
	bool profile = false, patterns = false;
	/* Options may come before or after the files (kept in argv[1..nf]);
	 * "--" ends the options. */
	int nf = 0;
	bool opts = true;
	for (int i = 1; i < argc; i++) {
		if (!opts || argv[i][0] != '-' || !argv[i][1])
			argv[1 + nf++] = argv[i];
		else if (strcmp(argv[i], "--") == 0)
			opts = false;
		else if (strcmp(argv[i], "--from") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr,
					"siftctl spam check: option --from needs a value (--from ADDR)\n");
				return 2;
			}
			st.from = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0)
			st.json = true;
		else if (strcmp(argv[i], "--profile") == 0)
			profile = true;
		else if (strcmp(argv[i], "--profile-patterns") == 0)
			profile = patterns = true;
		else {
			fprintf(stderr, "siftctl spam check: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	argc = 1 + nf;
	int i = 1;
	if (i >= argc) {
		fprintf(stderr, "usage: siftctl spam check %s\n", check_usage);
		return 2;
	}
	st.e = engine_of(conf);
	if (!st.e)
		return 1;
	st.bayes = spam_tool_bayes(conf);
	if (profile)
		st.profile = spam_profile_new(st.e, patterns);
	/* the inbound levels, as the plugin parsed them */
	double lv[2][3];
	spam_tool_levels(conf, lv);
	st.tag = isfinite(lv[0][0]) ? lv[0][0] : 0;
	st.tag2 = isfinite(lv[0][1]) ? lv[0][1] : 0;
	st.spam_from = lv[0][1];
	int rc = 0;
	for (; i < argc; i++) {
		st.file = argv[i];
		clock_gettime(CLOCK_MONOTONIC, &st.ts0);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &st.cpu0);
		char *err = NULL;
		if (host->tool_message(argv[i], NULL, NULL, NULL, check_done, &st, &err) < 0) {
			fprintf(stderr, "siftctl spam: %s\n", err);
			free(err);
			rc = 1;
		}
	}
	if (st.profile) {
		spam_profile_print(st.e, st.profile, stdout, 25);
		if (patterns)
			spam_profile_patterns(st.e, st.profile, stdout, 25);
		spam_profile_free(st.profile);
	}
	return rc;
}

static int tool_lint(const struct sift_host *host, void *conf, int argc, char **argv)
{
	bool verbose = argc == 2 && strcmp(argv[1], "-v") == 0;
	if (argc > 2 || (argc == 2 && !verbose)) {
		fprintf(stderr,
			"siftctl spam lint: unexpected argument \"%s\"\nusage: siftctl spam lint [-v]\n",
			strcmp(argv[1], "-v") ? argv[1] : argv[2]);
		return 2;
	}
	const struct spam_engine *e = engine_of(conf);
	if (!e)
		return 1;
	int errors = spam_engine_lint(e, stdout, verbose);
	printf("%d error(s)\n", errors);
	return errors ? 1 : 0;
}

static int tool_compile(const struct sift_host *host, void *conf, int argc, char **argv)
{
	if (argc > 1) {
		fprintf(stderr, "usage: siftctl [-c FILE] spam compile\n");
		return 2;
	}
	const struct spam_engine *e = engine_of(conf);
	if (!e)
		return 1;
	struct timespec ts0, ts1;
	clock_gettime(CLOCK_MONOTONIC, &ts0);
	char *err = NULL;
	int rc = spam_engine_hs_wait(e, &err);
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	double s = (double)usecs(&ts0, &ts1) / 1e6;
	if (rc < 0)
		fprintf(stderr, "siftctl spam compile: %s\n", err ? err : "failed");
	else
		printf("%s (%.1f s)\n",
		       rc == 1 ? "Hyperscan cache up to date" : "Hyperscan databases compiled and cached", s);
	free(err);
	return rc < 0 ? 1 : 0;
}

static void mime_done(void *arg, const struct sift_tool_message *msg)
{
	const struct sift_mime *m = msg->mime;
	printf("flags: 0x%x\n", m->flags);
	for (size_t i = 0; i < m->header_count; i++)
		printf("header %s: %s\n", m->headers[i].name, m->headers[i].value);
	for (size_t i = 0; i < m->part_count; i++) {
		const struct sift_mime_part *p = &m->parts[i];
		printf("part %zu: depth %u parent %ld type %s charset %s encoding %s filename '%s' raw %zu "
		       "data %zu\n",
		       i, p->depth, p->parent, p->type, p->charset, p->encoding, p->filename, p->raw_len,
		       p->data_len);
		if (p->text)
			printf("--- text (%zu) ---\n%s\n--- end ---\n", p->text_len, p->text);
	}
	for (size_t i = 0; i < m->uri_count; i++)
		printf("uri %s host %s flags %u part %ld\n", m->uris[i].uri, m->uris[i].host,
		       m->uris[i].flags, m->uris[i].part);
}

static int tool_mime(const struct sift_host *host, void *conf, int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: siftctl spam mime FILE\n");
		return 2;
	}
	char *err = NULL;
	if (host->tool_message(argv[1], NULL, NULL, NULL, mime_done, NULL, &err) < 0) {
		fprintf(stderr, "siftctl spam: %s\n", err);
		free(err);
		return 1;
	}
	return 0;
}

const struct sift_tool spam_tools[] = {
	{"check", check_usage, "score messages, list the tests hit", SIFT_TOOL_INIT, tool_check},
	{"lint", "[-v]", "rule errors, unknown evals, PCRE2 fallbacks", SIFT_TOOL_INIT, tool_lint},
	{"compile", "", "fill spam_cache_directory with Hyperscan databases", SIFT_TOOL_INIT, tool_compile},
	{"mime", "FILE", "dump the MIME parse of a message", SIFT_TOOL_NO_CONF, tool_mime},
	{"learn", "--spam|--ham PATH...", "learn messages into Bayes (files, directories, mbox, Maildir)",
	 SIFT_TOOL_INIT, spam_tool_learn},
	{"forget", "PATH...", "forget learned messages (files, directories, mbox, Maildir)", SIFT_TOOL_INIT,
	 spam_tool_learn},
	{"stats", "", "Bayes database: messages and tokens learned", SIFT_TOOL_INIT, spam_tool_bayes_stats},
	{"import", "FILE", "import an sa-learn --backup dump into the Bayes database", SIFT_TOOL_INIT,
	 spam_tool_import},
	{"dump", "", "print the Bayes database as sa-learn --backup does (lmdb, memory)", SIFT_TOOL_INIT,
	 spam_tool_dump},
	{"tokens", "FILE", "list the Bayes tokens of a message (hash and text)", SIFT_TOOL_INIT,
	 spam_tool_tokens},
	{NULL, NULL, NULL, 0, NULL},
};
