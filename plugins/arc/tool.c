/*
 * tool.c - the arc plugin's siftctl commands:
 *
 *   siftctl arc verify [FILE...]   the ARC chain's result, as filterd finds
 *                                  it: "cv=pass sets=N oldest-pass=N",
 *                                  "cv=none", "cv=fail instance=N
 *                                  reason=...", or "cv=temperror
 *                                  instance=N reason=..." when a key
 *                                  lookup failed temporarily (exit 0
 *                                  unless a chain fails or is temperror)
 *   siftctl arc sign FILE (--domain D --selector S | --key NAME)
 *                                  prints the message with our ARC set
 *                                  (the chain verified first, cv= as found;
 *                                  nothing sealed on a temperror)
 *
 * Both run the message through a chain of the arc plugin alone
 * (host->tool_message, the inbound profile, client 127.0.0.1) with the
 * configuration plus the settings they need; keys come from arc_key_table
 * (by default dkim_key_table). Single-threaded (in siftctl).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arc.h"

static const char sign_usage[] = "FILE (--domain DOMAIN --selector SELECTOR | --key NAME)";

struct tool_state {
	const char *file;
	int status;
};

/* "arc=fail (i=2 reason) smtp.remote-ip=..." from our A-R value. */
static void print_cv(const char *file, const char *ar)
{
	const char *a = ar ? strstr(ar, "arc=") : NULL;
	if (!a) {
		printf("%s: cv=none (no result)\n", file);
		return;
	}
	char res[16] = "", com[600] = "";
	sscanf(a, "arc=%15[a-z]", res);
	/* the comment after the result, up to its matching ')': reasons
	 * have parentheses of their own ("malformed ARC-Seal (cv=)") */
	const char *op = strchr(a, '('), *cp = NULL;
	const char *semi = strchr(a, ';');
	for (int depth = 0, k = 0; op && op[k] && !cp; k++)
		if (op[k] == '(')
			depth++;
		else if (op[k] == ')' && --depth == 0)
			cp = op + k;
	if (op && cp && (!semi || op < semi))
		snprintf(com, sizeof(com), "%.*s", (int)(cp - op - 1), op + 1);
	if (strcmp(res, "fail") == 0 || strcmp(res, "temperror") == 0) {
		unsigned i = 0;
		int used = 0;
		sscanf(com, "i=%u %n", &i, &used);
		printf("%s: cv=%s instance=%u reason=\"%s\"\n", file, res, i, com + used);
	} else if (strcmp(res, "pass") == 0) {
		unsigned sets = 0, op_i = 0;
		const char *o = strstr(a, "header.oldest-pass=");
		sscanf(com, "sets=%u", &sets);
		if (o)
			sscanf(o, "header.oldest-pass=%u", &op_i);
		printf("%s: cv=pass sets=%u oldest-pass=%u\n", file, sets, op_i);
	} else
		printf("%s: cv=%s\n", file, res);
}

static void verify_done(void *arg, const struct sift_tool_message *m)
{
	struct tool_state *st = arg;
	const char *ar = NULL;
	for (size_t i = 0; i < m->header_count; i++)
		if (strcasecmp(m->headers[i].name, "Authentication-Results") == 0)
			ar = m->headers[i].value;
	print_cv(st->file, ar);
	if (!ar || strstr(ar, "arc=fail") || strstr(ar, "arc=temperror"))
		st->status = 1;
}

static int tool_verify(const struct sift_host *host, void *conf, int argc, char **argv)
{
	static const char *const extra[] = {"arc_verify = yes", "arc_add_auth_results = yes",
					    "arc_sign_profiles =", "arc_sign_recipients =", NULL};
	int status = 0;
	char *stdin_only[] = {(char *)"-", NULL};
	char **files = argc > 1 ? argv + 1 : stdin_only;
	for (; *files; files++) {
		struct tool_state st = {*files, 0};
		char *err = NULL;
		if (host->tool_message(*files, "arc", "inbound", extra, verify_done, &st, &err) < 0) {
			fprintf(stderr, "siftctl arc: %s\n", err);
			free(err);
			st.status = 1;
		}
		status |= st.status;
	}
	return status;
}

/* One queued field, with the message's line ends. */
static void print_field(const struct sift_header *h, bool crlf)
{
	printf("%s: ", h->name);
	for (const char *p = h->value; *p; p++)
		if (*p != '\r') {
			if (*p == '\n' && crlf)
				putchar('\r');
			putchar(*p);
		}
	fputs(crlf ? "\r\n" : "\n", stdout);
}

static void sign_done(void *arg, const struct sift_tool_message *m)
{
	struct tool_state *st = arg;
	bool crlf = m->len && memmem(m->data, m->len, "\r\n", 2) != NULL;
	static const char *const order[] = {"ARC-Seal", "ARC-Message-Signature",
					    "ARC-Authentication-Results"};
	const struct sift_header *found[3] = {NULL, NULL, NULL};
	for (size_t i = 0; i < m->header_count; i++)
		for (int k = 0; k < 3; k++)
			if (strcasecmp(m->headers[i].name, order[k]) == 0)
				found[k] = &m->headers[i];
	if (m->verdict != SIFT_DUNNO || !found[0] || !found[1] || !found[2]) {
		fprintf(stderr, "siftctl arc sign: %s: not sealed (see the log above)\n", st->file);
		return;
	}
	for (int k = 0; k < 3; k++)
		print_field(found[k], crlf);
	fwrite(m->data, 1, m->len, stdout);
	st->status = 0;
}

static int tool_sign(const struct sift_host *host, void *conf, int argc, char **argv)
{
	static const struct option opts[] = {{"domain", required_argument, NULL, 'd'},
					     {"selector", required_argument, NULL, 's'},
					     {"key", required_argument, NULL, 'k'},
					     {NULL, 0, NULL, 0}};
	const char *domain = NULL, *selector = NULL, *key = NULL;
	int c;
	/* getopt's messages start with argv[0], as siftctl's own commands' do */
	argv[0] = (char *)"siftctl arc sign";
	optind = 1;
	while ((c = getopt_long(argc, argv, "d:s:k:", opts, NULL)) != -1) {
		if (c == 'd')
			domain = optarg;
		else if (c == 's')
			selector = optarg;
		else if (c == 'k')
			key = optarg;
		else
			goto usage;
	}
	if (optind != argc - 1 || (!key && (!domain || !selector)))
		goto usage;
	const struct arc_conf *cf = conf;
	struct dk_keytable kt;
	char *err = NULL;
	if (dk_keytable_load(cf->key_table, false, &kt, &err) < 0) {
		fprintf(stderr, "siftctl arc sign: arc_key_table: %s\n", err);
		free(err);
		return 1;
	}
	const struct dk_key *k =
		key ? dk_keytable_find(&kt, key) : dk_keytable_find_ds(&kt, domain, selector);
	if (!k) {
		fprintf(stderr, "siftctl arc sign: no such key in arc_key_table\n");
		dk_keytable_free(&kt);
		return 1;
	}
	char *setting = NULL;
	if (asprintf(&setting, "arc_sign_key = %s", k->name) < 0)
		setting = NULL;
	const char *extra[] = {setting, "arc_sign_profiles = inbound", "arc_verify = yes", NULL};
	struct tool_state st = {argv[optind], 1};
	if (setting && host->tool_message(argv[optind], "arc", "inbound", extra, sign_done, &st, &err) < 0) {
		fprintf(stderr, "siftctl arc: %s\n", err);
		free(err);
	}
	free(setting);
	dk_keytable_free(&kt);
	return st.status;
usage:
	fprintf(stderr, "usage: siftctl arc sign %s\n", sign_usage);
	return 1;
}

const struct sift_tool arc_tools[] = {
	{"verify", "[FILE...]",
	 "verify ARC chains as filterd does: prints cv= (exit 0 unless one fails or is temperror)", 0,
	 tool_verify},
	{"sign", sign_usage, "print the message with an ARC set sealed with that key of arc_key_table", 0,
	 tool_sign},
	{NULL, NULL, NULL, 0, NULL},
};
