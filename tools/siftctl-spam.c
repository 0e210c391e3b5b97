/*
 * siftctl-spam.c - `siftctl spam ...`: the spam plugin from the command line.
 *
 *   siftctl spam check [--from ADDR] [--json] FILE...
 *       scores each message like `spamassassin -t`: the score, the verdict
 *       and the tests hit with their scores and descriptions, plus the
 *       X-Spam-Status line filterd would add;
 *   siftctl spam lint [-v]
 *       rule errors with file:line (the same list that makes filterd -t,
 *       a start or a reload fail; exit status 1), unknown eval: functions
 *       (their rules are skipped), with -v warnings and the patterns that
 *       Hyperscan refused (matched by PCRE2 alone);
 *   siftctl spam compile
 *       compiles the Hyperscan databases into spam_cache_directory, so that
 *       filterd starts on Hyperscan at once; exit status 1 on failure;
 *   siftctl spam mime FILE
 *       dumps the MIME parse (parts, decoded headers, text, URIs).
 *
 * The configuration (-c/-o) is loaded as filterd would, which initialises the
 * spam plugin (rule loading and compilation); the engine is then reached
 * through the plugin's exported `spam_tool_api`. Single-threaded.
 */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "../plugins/spam/engine.h"
#include "mime.h"
#include "siftctl.h"

static const struct spam_tool_api *get_api(struct sift_gen *g)
{
	const struct sift_common_conf *cc = sift_gen_common(g);
	char *path = sift_asprintf("%s/spam.so", cc->plugin_directory);
	void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	free(path);
	if (!h)
		return NULL;
	const struct spam_tool_api *api = dlsym(h, "spam_tool_api");
	return api && api->version == 1 ? api : NULL;
}

static unsigned char *slurp(const char *path, size_t *len_r)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!fp)
		return NULL;
	struct sift_buf b = {0};
	char tmp[65536];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
		sift_buf_add(&b, tmp, n);
	if (fp != stdin)
		fclose(fp);
	sift_buf_str(&b);
	*len_r = b.len;
	return (unsigned char *)b.data;
}

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

/* The configuration's generation and its spam engine, or NULL (said on
 * stderr, nothing left to free) when the spam plugin is not loaded. */
static const struct spam_engine *load_engine(struct sift_opts *opts, struct sift_gen **g_r,
					     const struct spam_tool_api **api_r)
{
	struct sift_gen *g = siftctl_load(opts, SIFT_FILTERD);
	const struct spam_tool_api *api = get_api(g);
	const struct spam_engine *e = api ? api->current() : NULL;
	if (!e) {
		fprintf(stderr, "siftctl spam: the spam plugin is not loaded (inbound_plugins)\n");
		sift_gen_unref(g);
		return NULL;
	}
	*g_r = g;
	*api_r = api;
	return e;
}

static int cmd_check(int argc, char **argv, struct sift_opts *opts)
{
	const char *from = NULL;
	bool json = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
			from = argv[++i];
		else if (strcmp(argv[i], "--json") == 0)
			json = true;
		else {
			fprintf(stderr, "siftctl spam check: unknown option %s\n", argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "usage: siftctl spam check [--from ADDR] [--json] FILE...\n");
		return 2;
	}
	struct sift_gen *g;
	const struct spam_tool_api *api;
	const struct spam_engine *e = load_engine(opts, &g, &api);
	if (!e)
		return 1;
	/* the inbound levels, as the plugin parsed them */
	double lv[2][3];
	api->levels(lv);
	double tag = isfinite(lv[0][0]) ? lv[0][0] : 0, tag2 = isfinite(lv[0][1]) ? lv[0][1] : 0;
	int rc = 0;
	for (; i < argc; i++) {
		size_t len;
		unsigned char *msg = slurp(argv[i], &len);
		if (!msg) {
			perror(argv[i]);
			rc = 1;
			continue;
		}
		struct timespec ts0, ts1;
		clock_gettime(CLOCK_MONOTONIC, &ts0);
		struct sift_mime *m = sift_mime_parse_message(msg, len, NULL);
		struct spam_input in = {.mime = m, .envelope_from = from};
		struct spam_result r;
		api->check(e, &in, &r);
		clock_gettime(CLOCK_MONOTONIC, &ts1);
		long long us = (ts1.tv_sec - ts0.tv_sec) * 1000000LL + (ts1.tv_nsec - ts0.tv_nsec) / 1000;
		long long t = us / 1000;
		char sc[32];
		api->fmt_num(sc, sizeof(sc), r.score);
		bool spam = r.score >= lv[0][1];
		char *status = api->status(&r, tag, tag2, spam);
		if (json) {
			printf("{\"file\":");
			json_str(argv[i]);
			printf(",\"score\":%s,\"spam\":%s,\"required\":%g,\"ms\":%lld,\"us\":%lld,\"tests\":"
			       "[",
			       sc, spam ? "true" : "false", tag2, t, us);
			for (size_t k = 0; k < r.nhits; k++) {
				char v[32];
				api->fmt_num(v, sizeof(v), r.hits[k].score);
				printf("%s{\"name\":", k ? "," : "");
				json_str(r.hits[k].name);
				printf(",\"score\":%s}", v);
			}
			printf("],\"status\":");
			json_str(status);
			printf("}\n");
		} else {
			printf("%s: %s, score=%s required=%g\n", argv[i], spam ? "SPAM" : "ham", sc, tag2);
			printf(" pts rule name              description\n");
			printf("---- ---------------------- "
			       "--------------------------------------------------\n");
			for (size_t k = 0; k < r.nhits; k++)
				printf("%4.1f %-22s %s\n", r.hits[k].score, r.hits[k].name,
				       r.hits[k].describe ? r.hits[k].describe : "");
			printf("X-Spam-Status: %s\n\n", status);
		}
		free(status);
		api->result_free(&r);
		sift_mime_free(m);
		free(msg);
	}
	sift_gen_unref(g);
	return rc;
}

static int cmd_lint(int argc, char **argv, struct sift_opts *opts)
{
	int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
	struct sift_gen *g;
	const struct spam_tool_api *api;
	const struct spam_engine *e = load_engine(opts, &g, &api);
	if (!e)
		return 1;
	int errors = api->lint(e, stdout, verbose);
	printf("%d error(s)\n", errors);
	sift_gen_unref(g);
	return errors ? 1 : 0;
}

static int cmd_compile(int argc, char **argv, struct sift_opts *opts)
{
	if (argc > 1) {
		fprintf(stderr, "usage: siftctl [-c FILE] spam compile\n");
		return 2;
	}
	struct sift_gen *g;
	const struct spam_tool_api *api;
	const struct spam_engine *e = load_engine(opts, &g, &api);
	if (!e)
		return 1;
	struct timespec ts0, ts1;
	clock_gettime(CLOCK_MONOTONIC, &ts0);
	char *err = NULL;
	int rc = api->compile(e, &err);
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	double s = (double)(ts1.tv_sec - ts0.tv_sec) + (double)(ts1.tv_nsec - ts0.tv_nsec) / 1e9;
	if (rc < 0)
		fprintf(stderr, "siftctl spam compile: %s\n", err ? err : "failed");
	else
		printf("%s (%.1f s)\n",
		       rc == 1 ? "Hyperscan cache up to date" : "Hyperscan databases compiled and cached", s);
	free(err);
	sift_gen_unref(g);
	return rc < 0 ? 1 : 0;
}

static int cmd_mime(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: siftctl spam mime FILE\n");
		return 2;
	}
	size_t len;
	unsigned char *msg = slurp(argv[1], &len);
	if (!msg) {
		perror(argv[1]);
		return 1;
	}
	struct sift_mime *m = sift_mime_parse_message(msg, len, NULL);
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
	sift_mime_free(m);
	free(msg);
	return 0;
}

static int spam_run(int argc, char **argv, struct sift_opts *opts)
{
	if (argc < 2) {
		fprintf(stderr, "%s", siftctl_spam_cmd.usage);
		return 2;
	}
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 1, argv + 1, opts);
	if (strcmp(argv[1], "lint") == 0)
		return cmd_lint(argc - 1, argv + 1, opts);
	if (strcmp(argv[1], "mime") == 0)
		return cmd_mime(argc - 1, argv + 1);
	if (strcmp(argv[1], "compile") == 0)
		return cmd_compile(argc - 1, argv + 1, opts);
	fprintf(stderr, "%s", siftctl_spam_cmd.usage);
	return 2;
}

const struct siftctl_cmd siftctl_spam_cmd = {
	.name = "spam",
	.run = spam_run,
	.usage = "  spam check [--from ADDR] [--json] FILE...  score messages, list the tests hit\n"
		 "  spam lint [-v]                  rule errors, unknown evals, PCRE2 fallbacks\n"
		 "  spam compile                    fill spam_cache_directory with Hyperscan databases\n"
		 "  spam mime FILE                  dump the MIME parse of a message\n",
};
