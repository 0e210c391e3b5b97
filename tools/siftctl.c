/*
 * siftctl - the administrator's tool.
 *
 *   siftctl [-c FILE] [-o name=value]... test MESSAGE [options]
 *       runs a stored message through filterd's plugin chain (same code,
 *       same configuration file) without an MTA and prints the verdict.
 *   siftctl [-c FILE] reload [filterd|policyd]
 *       asks a running daemon to reload its configuration through its
 *       control socket and waits for the outcome.
 *   siftctl [-c FILE] [-o ...] check [filterd|policyd]
 *       checks a configuration file and its plugins: runs the daemon's own
 *       -t (the daemon installed next to siftctl), so the checks are the
 *       daemon's, unknown parameter names included.
 *
 *   siftctl [-c FILE] [-o ...] quarantine|params ...
 *       the quarantine store; the parameter tables (siftctl-quarantine.c,
 *       siftctl-params.c).
 *   siftctl [-c FILE] [-o ...] PLUGIN TOOL [ARGS]
 *       a plugin's own command (`dkim genkey`, `spam lint`, ...), from the
 *       plugin's table of struct sift_tool (siftctl-tools.c).
 *
 * `--help` after any command prints that command's usage. Options of a
 * command may come before or after its operands.
 *
 * Single-threaded.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "siftctl.h"

static struct sift_opts opts;
static struct sift_gen *load(enum sift_daemon d);

static const struct siftctl_cmd *const core_cmds[] = {
	&siftctl_quarantine_cmd,
	&siftctl_params_cmd,
	NULL,
};

static const char test_usage[] =
	"  test FILE [--profile inbound|originating] [--client IP] [--client-name NAME]\n"
	"       [--helo NAME] [--from ADDR] [--to ADDR]... [--auth LOGIN] [--json]\n"
	"       run a stored message through filterd's plugin chain and print the\n"
	"       action, SMTP reply, header changes, symbols and score (options may\n"
	"       come before or after FILE; plugins that load in the background, such\n"
	"       as the ClamAV database, are waited for: clamav_ready_wait 300s)\n";
static const char check_usage[] =
	"  check [filterd|policyd]\n"
	"       check the configuration and plugins as the daemon's -t does (unknown\n"
	"       parameter names are errors); exit 0 or 1\n";
static const char reload_usage[] =
	"  reload [filterd|policyd] [--timeout SECONDS]\n"
	"       make a running daemon reload its configuration through its control\n"
	"       socket (filterd_control_socket, policyd_control_socket) and wait for\n"
	"       the outcome: exit 0 when the new configuration runs, 1 with the\n"
	"       reason when it does not (the daemon keeps the running one)\n";

static const char status_usage[] =
	"  status [filterd|policyd] [--json] [--timeout SECONDS]\n"
	"       a running daemon's health and counters (pid, uptime, generation,\n"
	"       last reload, plugin errors and latency, ClamAV database age,\n"
	"       actions, top symbols), from its control socket; --json prints the\n"
	"       status document (as /status.json on metrics_listen)\n";

static void usage(FILE *out)
{
	fprintf(out, "usage: siftctl [-c FILE] [-o name=value]... COMMAND [ARGS]\n"
		     "  -c FILE   configuration file (default " SIFT_SYSCONFDIR "/filterd.conf; for\n"
		     "            `check policyd`, `reload policyd` and `status policyd`,\n"
		     "            " SIFT_SYSCONFDIR "/policyd.conf)\n"
		     "  -o N=V    override a setting (repeatable)\n"
		     "  COMMAND --help   prints the usage of COMMAND\n"
		     "commands:\n");
	fputs(test_usage, out);
	fputs(check_usage, out);
	fputs(reload_usage, out);
	fputs(status_usage, out);
	for (const struct siftctl_cmd *const *c = core_cmds; *c; c++)
		fputs((*c)->usage, out);
	siftctl_tools_usage(out, &opts);
}

/* GNU getopt keeps the ordering mode of its first call (siftctl's own
 * options, "+": stop at the command word) until a call with optind 0: a
 * command's options may then follow its operands. */
static void getopt_restart(void)
{
	char *argv[] = {(char *)"siftctl", NULL};
	optind = 0;
	opterr = 0;
	(void)getopt(1, argv, "");
	opterr = 1;
	optind = 1;
}

struct sift_gen *siftctl_gen(const struct sift_opts *o, enum sift_daemon d, char **err_r)
{
	struct sift_config *cfg = sift_opts_config(o, "", NULL, err_r);
	if (!cfg)
		return NULL;
	/* The daemons' own parameters are not in siftctl: `siftctl check`
	 * runs the daemon's -t for them. */
	sift_config_known(cfg, "filterd_", NULL);
	sift_config_known(cfg, "policyd_", NULL);
	/* A command-line tool waits for plugins that load in the background
	 * (the ClamAV database) instead of answering tempfail, bounded. */
	if (!sift_config_raw(cfg, "clamav_ready_wait", NULL)) {
		sift_config_known(cfg, "clamav_ready_wait", NULL);
		if (sift_config_set(cfg, "clamav_ready_wait = 300s", "siftctl", err_r) < 0) {
			sift_config_free(cfg);
			return NULL;
		}
	}
	struct sift_gen *g = sift_gen_new(d, cfg, err_r);
	if (!g)
		sift_config_free(cfg);
	return g;
}

static struct sift_gen *load(enum sift_daemon d)
{
	char *err = NULL;
	struct sift_gen *g = siftctl_gen(&opts, d, &err);
	if (!g) {
		fprintf(stderr, "siftctl: %s\n", err);
		exit(1);
	}
	return g;
}

char *siftctl_too_large(const char *file)
{
	return sift_asprintf("%s: larger than " SIFT_TOOL_MESSAGE_MAX_TEXT
			     ", the largest message siftctl reads; not read",
			     file);
}

/* A FILE that reads in, SIFT_TOOL_MESSAGE_MAX bytes at most: reading past
 * them is a read error, with over set. */
struct bounded {
	FILE *in;
	size_t left;
	bool over;
};

static ssize_t bounded_read(void *cookie, char *buf, size_t size)
{
	struct bounded *b = cookie;
	if (b->left == 0) {
		if (getc(b->in) == EOF)
			return ferror(b->in) ? -1 : 0;
		b->over = true;
		errno = EFBIG;
		return -1;
	}
	size_t n = fread(buf, 1, size < b->left ? size : b->left, b->in);
	b->left -= n;
	return n == 0 && ferror(b->in) ? -1 : (ssize_t)n;
}

/* `siftctl test`: the options, given to the session as the MTA would
 * give them (connect data, commands and milter macros). */
struct test_opts {
	const char *profile, *client, *client_name, *helo, *from, *auth;
	const char **to;
	size_t nto;
	bool json;
};

static const char *test_macro(void *arg, const char *name)
{
	const struct test_opts *o = arg;
	if (strcmp(name, "i") == 0)
		return "SIFTCTL";
	if (strcmp(name, "{auth_authen}") == 0)
		return o->auth;
	if (strcmp(name, "{client_ptr}") == 0)
		return o->client_name;
	return NULL;
}

/* Returns the index of the message file, or -1 after a usage error. */
static int test_args(int argc, char **argv, struct test_opts *o)
{
	static const struct option lo[] = {
		{"profile", required_argument, NULL, 'P'},
		{"client", required_argument, NULL, 'C'},
		{"client-name", required_argument, NULL, 'N'},
		{"helo", required_argument, NULL, 'H'},
		{"from", required_argument, NULL, 'F'},
		{"to", required_argument, NULL, 'T'},
		{"auth", required_argument, NULL, 'A'},
		{"json", no_argument, NULL, 'J'},
		{NULL, 0, NULL, 0},
	};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		const char **dst = c == 'P'   ? &o->profile
				   : c == 'C' ? &o->client
				   : c == 'N' ? &o->client_name
				   : c == 'H' ? &o->helo
				   : c == 'F' ? &o->from
				   : c == 'A' ? &o->auth
					      : NULL;
		if (dst) {
			*dst = optarg;
		} else if (c == 'T') {
			o->to = sift_realloc(o->to, (o->nto + 1) * sizeof(*o->to));
			o->to[o->nto++] = optarg;
		} else if (c == 'J') {
			o->json = true;
		} else {
			fputs(test_usage, stderr);
			return -1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "siftctl test: one message file expected\n");
		return -1;
	}
	unsigned char a[16];
	if (inet_pton(AF_INET, o->client, a) != 1 && inet_pton(AF_INET6, o->client, a) != 1) {
		fprintf(stderr, "siftctl test: --client \"%s\": not an IPv4 or IPv6 address\n", o->client);
		return -1;
	}
	if (o->profile && strcmp(o->profile, "inbound") != 0 && strcmp(o->profile, "originating") != 0) {
		fprintf(stderr, "siftctl test: --profile is inbound or originating\n");
		return -1;
	}
	return optind;
}

/* The SMTP session filterd would see for this message, through the same
 * code (lib/session.c). Sets *rcpt_level when the verdict is every
 * recipient's refusal (the MTA then aborts the message). */
static enum sift_verdict test_session(struct sift_session *ss, const struct test_opts *o,
				      struct sift_msg *src, const char **rejected_rcpt, bool *rcpt_level)
{
	enum sift_verdict v = sift_session_connect(ss, o->client_name, o->client, NULL);
	if (v == SIFT_DUNNO)
		v = sift_session_helo(ss, o->helo);
	if (v == SIFT_DUNNO)
		v = sift_session_mail(ss, o->from ? o->from : "");
	size_t accepted = 0;
	enum sift_verdict refused = SIFT_DUNNO;
	const char *last_refused = NULL;
	for (size_t i = 0; v == SIFT_DUNNO && i < o->nto; i++) {
		enum sift_verdict rv = sift_session_rcpt(ss, o->to[i]);
		if (rv == SIFT_DUNNO) {
			accepted++;
		} else if (rv == SIFT_DISCARD) {
			v = rv;
		} else {
			if (!*rejected_rcpt)
				*rejected_rcpt = o->to[i];
			refused = rv;
			last_refused = o->to[i];
		}
	}
	if (v == SIFT_DUNNO && accepted == 0 && last_refused) {
		/* every recipient refused: the MTA sends no DATA; the result
		 * holds the last refusal's reply */
		v = refused;
		*rejected_rcpt = last_refused;
		*rcpt_level = true;
	}
	if (v == SIFT_DUNNO)
		v = sift_session_data(ss);
	if (v != SIFT_DUNNO)
		return v;
	/* The content stages need no reply: the MTA sends them all, a final
	 * verdict of theirs is given at end of message. */
	return sift_session_content(ss, src);
}

static void json_opt(struct sift_buf *b, const char *key, const char *value)
{
	sift_buf_printf(b, ",\"%s\":", key);
	if (value)
		sift_json_str(b, value);
	else
		sift_buf_adds(b, "null");
}

static const char *const edit_ops[] = {"add", "insert", "change"};

static void test_print_json(struct sift_session *ss, enum sift_verdict v, const char *reply,
			    const char *rejected_rcpt)
{
	const struct sift_result *r = sift_ctx_result(sift_session_ctx(ss));
	struct sift_buf b = {0};
	sift_buf_adds(&b, "{\"action\":");
	sift_json_str(&b, sift_session_action(ss, v));
	sift_buf_adds(&b, ",\"profile\":");
	sift_json_str(&b, sift_profile_names[sift_ctx_profile(sift_session_ctx(ss))]);
	json_opt(&b, "reply", reply);
	json_opt(&b, "decided_by", r->decided_by);
	sift_buf_printf(&b, ",\"score\":%.3f,\"hold\":%s", r->score, r->hold ? "true" : "false");
	if (r->hold)
		json_opt(&b, "hold_reason", r->hold_reason);
	if (sift_session_release_id(ss))
		json_opt(&b, "released", sift_session_release_id(ss));
	sift_buf_adds(&b, ",\"symbols\":[");
	for (const struct sift_symbol *s = r->symbols; s; s = s->next) {
		sift_buf_adds(&b, "{\"name\":");
		sift_json_str(&b, s->name);
		sift_buf_printf(&b, ",\"score\":%.3f", s->score);
		if (s->option)
			json_opt(&b, "option", s->option);
		sift_buf_adds(&b, s->next ? "}," : "}");
	}
	sift_buf_adds(&b, "],\"headers\":[");
	for (const struct sift_edit *e = r->edits; e; e = e->next) {
		sift_buf_adds(&b, "{\"op\":");
		sift_json_str(&b, e->value ? edit_ops[e->op] : "delete");
		sift_buf_printf(&b, ",\"index\":%u", e->idx);
		json_opt(&b, "name", e->name);
		json_opt(&b, "value", e->value);
		sift_buf_adds(&b, e->next ? "}," : "}");
	}
	sift_buf_adds(&b, "]");
	if (rejected_rcpt)
		json_opt(&b, "rejected_recipient", rejected_rcpt);
	sift_buf_adds(&b, "}\n");
	fputs(sift_buf_str(&b), stdout);
	sift_buf_free(&b);
}

/* What plugins put in a result (reply texts, symbol options, header
 * values, hold reasons) comes from the message: printed escaped, it
 * cannot drive the terminal. */
static void test_line(const char *label, const char *text)
{
	fputs(label, stdout);
	siftctl_put_text(stdout, text ? text : "", false);
	fputc('\n', stdout);
}

static void test_print_text(struct sift_session *ss, enum sift_verdict v, const char *reply,
			    const char *rejected_rcpt)
{
	const struct sift_result *r = sift_ctx_result(sift_session_ctx(ss));
	printf("action: %s\n", sift_session_action(ss, v));
	printf("profile: %s\n", sift_profile_names[sift_ctx_profile(sift_session_ctx(ss))]);
	if (reply)
		test_line("reply: ", reply);
	if (r->decided_by)
		printf("decided by: %s\n", r->decided_by);
	if (rejected_rcpt)
		test_line("rejected recipient: ", rejected_rcpt);
	if (sift_session_release_id(ss))
		printf("released: %s (delivered without scanning)\n", sift_session_release_id(ss));
	if (r->hold)
		test_line("hold: ", r->hold_reason);
	printf("score: %.3f\n", r->score);
	for (const struct sift_symbol *s = r->symbols; s; s = s->next) {
		printf("symbol: %s(%.3f)%s", s->name, s->score, s->option ? " " : "");
		test_line("", s->option);
	}
	for (const struct sift_edit *e = r->edits; e; e = e->next) {
		if (e->op == SIFT_EDIT_ADD)
			printf("header add: %s: ", e->name);
		else
			printf("header %s #%u: %s: ", e->value ? edit_ops[e->op] : "delete", e->idx, e->name);
		test_line("", e->value);
	}
}

static int cmd_test(int argc, char **argv)
{
	struct test_opts o = {.client = "127.0.0.1", .client_name = "localhost", .helo = "localhost"};
	int fi = test_args(argc, argv, &o);
	if (fi < 0) {
		free(o.to);
		return 1;
	}
	const char *file = argv[fi];
	FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	if (!fp) {
		free(o.to);
		fprintf(stderr, "siftctl test: %s: %s\n", file, strerror(errno));
		return 1;
	}
	struct sift_gen *g = load(SIFT_SIFTCTL);
	const struct sift_common_conf *cc = sift_gen_common(g);
	struct sift_msg *src = sift_msg_new((size_t)cc->message_memory_limit, cc->tmpdir);
	char *err = NULL;
	struct bounded bd = {.in = fp, .left = SIFT_TOOL_MESSAGE_MAX};
	FILE *in = fopencookie(&bd, "rb", (cookie_io_functions_t){.read = bounded_read});
	if (!in || sift_msg_read_file(src, in, &err) < 0) {
		if (bd.over) {
			free(err);
			err = siftctl_too_large(file);
			fprintf(stderr, "siftctl test: %s\n", err);
		} else
			fprintf(stderr, "siftctl test: %s: %s\n", file, err ? err : strerror(errno));
		free(err);
		if (in)
			fclose(in);
		if (fp != stdin)
			fclose(fp);
		sift_msg_free(src);
		sift_gen_unref(g);
		free(o.to);
		return 1;
	}
	fclose(in);
	if (fp != stdin)
		fclose(fp);
	const char *defrcpt = "postmaster@localhost";
	if (!o.nto) {
		o.to = &defrcpt;
		o.nto = 1;
	}
	struct sift_session *ss = sift_session_new(g, SIFT_SIFTCTL, test_macro, &o);
	if (o.profile)
		sift_session_force_profile(ss, strcmp(o.profile, "originating") == 0 ? SIFT_ORIGINATING
										     : SIFT_INBOUND);
	const char *rejected_rcpt = NULL;
	bool rcpt_level = false;
	enum sift_verdict v = test_session(ss, &o, src, &rejected_rcpt, &rcpt_level);
	char *reply = NULL;
	if (v == SIFT_REJECT || v == SIFT_TEMPFAIL) {
		const char *code, *xcode, *text;
		sift_result_reply(sift_ctx_result(sift_session_ctx(ss)), v, &code, &xcode, &text);
		reply = sift_reply_format(code, xcode, text, false);
	}
	if (o.json)
		test_print_json(ss, v, reply, rejected_rcpt);
	else
		test_print_text(ss, v, reply, rejected_rcpt);
	free(reply);
	if (rcpt_level)
		sift_session_abort(ss);
	else
		sift_session_end(ss, v);
	sift_session_free(ss);
	sift_msg_free(src);
	if (o.to != &defrcpt)
		free(o.to);
	sift_gen_unref(g);
	return 0;
}

/* Writes the bytes of in to out as a terminal may show them: control
 * characters (C0 but LF and, with tab, TAB; DEL; C1 as UTF-8 encodes them,
 * 0xc2 0x80..0x9f) as \xHH, and CR LF as LF. A sender, recipient, reason or
 * message is the sender's text, and what a control socket answers is
 * whoever listens there: written as it is, an escape sequence in it would
 * drive the administrator's terminal (retitle it, clear the listing, hide a
 * line). Other bytes, UTF-8 and 8-bit text, are kept. */
void siftctl_put_safe(FILE *in, FILE *out, bool tab)
{
	int c;
	while ((c = getc(in)) != EOF) {
		if (c == '\r' || c == 0xc2) {
			int d = getc(in);
			if (c == '\r' && d == '\n') {
				putc('\n', out);
				continue;
			}
			if (c == 0xc2 && d >= 0x80 && d <= 0x9f) {
				fprintf(out, "\\xc2\\x%02x", d);
				continue;
			}
			if (d != EOF)
				ungetc(d, in);
		}
		if ((c >= 0x20 && c != 0x7f) || c == '\n' || (c == '\t' && tab))
			putc(c, out);
		else
			fprintf(out, "\\x%02x", c);
	}
}

void siftctl_put_text(FILE *out, const char *text, bool tab)
{
	if (!*text)
		return;
	FILE *in = fmemopen((void *)text, strlen(text), "r");
	if (!in) {
		fputs("?", out);
		return;
	}
	siftctl_put_safe(in, out, tab);
	fclose(in);
}

/* "filterd" (default) or "policyd" from the operand, with the matching
 * default configuration file; NULL after an error message. */
static const char *which_daemon(const char *cmd, int argc, char **argv)
{
	const char *which = "filterd";
	if (optind < argc - 1 || (optind == argc - 1 && strcmp(argv[optind], "filterd") != 0 &&
				  strcmp(argv[optind], "policyd") != 0)) {
		fprintf(stderr, "siftctl %s: filterd or policyd expected\n", cmd);
		return NULL;
	}
	if (optind == argc - 1)
		which = argv[optind];
	if (strcmp(which, "policyd") == 0 && strcmp(opts.config_file, SIFT_SYSCONFDIR "/filterd.conf") == 0)
		opts.config_file = SIFT_SYSCONFDIR "/policyd.conf";
	return which;
}

/* The control socket of `which` from its configuration file (malloc'd);
 * NULL after an error message. */
static char *control_path(const char *cmd, const char *which)
{
	bool pol = strcmp(which, "policyd") == 0;
	char *err = NULL;
	struct sift_config *cfg = sift_opts_config(&opts, "", NULL, &err);
	if (!cfg) {
		fprintf(stderr, "siftctl: %s\n", err);
		free(err);
		return NULL;
	}
	const char *name = pol ? "policyd_control_socket" : "filterd_control_socket";
	char *path = sift_config_get(cfg, name, &err);
	if (!path && err) {
		fprintf(stderr, "siftctl %s: %s\n", cmd, err);
		free(err);
		sift_config_free(cfg);
		return NULL;
	}
	if (!path)
		path = sift_strdup(pol ? SIFT_POLICYD_CONTROL_SOCKET : SIFT_FILTERD_CONTROL_SOCKET);
	if (!*path) {
		fprintf(stderr, "siftctl %s: %s is empty in %s: %s has no control socket\n", cmd, name,
			opts.config_file, which);
		free(path);
		sift_config_free(cfg);
		return NULL;
	}
	sift_config_free(cfg);
	return path;
}

static int cmd_status(int argc, char **argv);

static int cmd_reload(int argc, char **argv)
{
	static const struct option lo[] = {
		{"timeout", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	long timeout_s = 900;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'T':
			timeout_s = strtol(optarg, &end, 10);
			if (*end || timeout_s < 1 || timeout_s > 86400) {
				fprintf(stderr, "siftctl reload: --timeout: seconds, 1..86400\n");
				return 1;
			}
			break;
		default:
			fputs(reload_usage, stderr);
			return 1;
		}
	}
	const char *which = which_daemon("reload", argc, argv);
	if (!which)
		return 1;
	char *path = control_path("reload", which);
	if (!path)
		return 1;
	char *answer = NULL, *err = NULL;
	int rc = sift_control_reload(path, timeout_s * 1000, &answer, &err);
	/* The answer is printed as text only: see siftctl_put_safe. */
	if (rc < 0) {
		fprintf(stderr, "siftctl reload: %s: reload failed: ", which);
		siftctl_put_text(stderr, err, true);
		fputc('\n', stderr);
	} else {
		printf("siftctl reload: %s: ", which);
		siftctl_put_text(stdout, answer, true);
		putchar('\n');
	}
	free(answer);
	free(err);
	free(path);
	return rc < 0 ? 1 : 0;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option lo[] = {
		{"json", no_argument, NULL, 'j'},
		{"timeout", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	long timeout_s = 30;
	bool json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		char *end;
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'T':
			timeout_s = strtol(optarg, &end, 10);
			if (*end || timeout_s < 1 || timeout_s > 3600) {
				fprintf(stderr, "siftctl status: --timeout: seconds, 1..3600\n");
				return 1;
			}
			break;
		default:
			fputs(status_usage, stderr);
			return 1;
		}
	}
	const char *which = which_daemon("status", argc, argv);
	if (!which)
		return 1;
	char *path = control_path("status", which);
	if (!path)
		return 1;
	char *answer = NULL, *err = NULL;
	int rc = sift_control_query(path, json ? "status" : "summary", timeout_s * 1000, &answer, &err);
	if (rc < 0) {
		fprintf(stderr, "siftctl status: %s: ", which);
		siftctl_put_text(stderr, err, true);
		fputc('\n', stderr);
	} else {
		siftctl_put_text(stdout, answer, true);
		putchar('\n');
	}
	free(answer);
	free(err);
	free(path);
	return rc < 0 ? 1 : 0;
}

/* The daemon program installed next to siftctl (in a build tree:
 * ../filterd/filterd); NULL when there is none. */
static char *daemon_path(const char *which)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = 0;
	char *dir = dirname(self);
	char *cand[2] = {sift_asprintf("%s/%s", dir, which), sift_asprintf("%s/../%s/%s", dir, which, which)};
	char *found = NULL;
	for (int i = 0; i < 2; i++) {
		if (!found && access(cand[i], X_OK) == 0)
			found = cand[i];
		else
			free(cand[i]);
	}
	return found;
}

static int cmd_check(int argc, char **argv)
{
	optind = 1;
	if (getopt(argc, argv, "") != -1) {
		fputs(check_usage, stderr);
		return 1;
	}
	const char *which = which_daemon("check", argc, argv);
	if (!which)
		return 1;
	char *prog = daemon_path(which);
	if (!prog) {
		fprintf(stderr, "siftctl check: no %s program next to siftctl\n", which);
		return 1;
	}
	char **av = sift_calloc(2 * opts.n_overrides + 6, sizeof(char *));
	size_t k = 0;
	av[k++] = prog;
	av[k++] = (char *)"-t";
	av[k++] = (char *)"-c";
	av[k++] = (char *)opts.config_file;
	for (size_t i = 0; i < opts.n_overrides; i++) {
		av[k++] = (char *)"-o";
		av[k++] = opts.overrides[i];
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "siftctl check: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		execv(prog, av);
		fprintf(stderr, "siftctl check: %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR) {
			fprintf(stderr, "siftctl check: waitpid: %s\n", strerror(errno));
			return 1;
		}
	free(av);
	free(prog);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* `siftctl COMMAND ... --help`: the command's usage on stdout. */
static bool wants_help(int argc, char **argv)
{
	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--") == 0)
			return false;
		if (strcmp(argv[k], "--help") == 0)
			return true;
	}
	return false;
}

static int run(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	int i = sift_opts_parse(argc, argv, &opts, SIFT_SYSCONFDIR "/filterd.conf");
	if (i == -2) {
		usage(stdout);
		return 0;
	}
	if (i < 0 || i >= argc) {
		usage(stderr);
		return 1;
	}
	sift_log_init("siftctl", true, opts.debug ? LOG_DEBUG : LOG_WARNING);
	getopt_restart();
	const char *cmd = argv[i];
	bool help = wants_help(argc - i, argv + i);
	static const struct {
		const char *name;
		int (*run)(int, char **);
		const char *usage;
	} core[] = {{"test", cmd_test, test_usage},
		    {"check", cmd_check, check_usage},
		    {"reload", cmd_reload, reload_usage},
		    {"status", cmd_status, status_usage}};
	for (size_t k = 0; k < sizeof(core) / sizeof(core[0]); k++)
		if (strcmp(cmd, core[k].name) == 0) {
			if (help) {
				printf("usage: siftctl [-c FILE] [-o name=value]...\n%s", core[k].usage);
				return 0;
			}
			/* getopt's messages start with argv[0]: "siftctl reload:
			 * option '--timeout' requires an argument" */
			char *name = sift_asprintf("siftctl %s", cmd);
			argv[i] = name;
			int rc = core[k].run(argc - i, argv + i);
			free(name);
			return rc;
		}
	for (const struct siftctl_cmd *const *c = core_cmds; *c; c++)
		if (strcmp(cmd, (*c)->name) == 0) {
			if (help) {
				printf("usage: siftctl [-c FILE] [-o name=value]...\n%s", (*c)->usage);
				return 0;
			}
			char *name = sift_asprintf("siftctl %s", cmd);
			argv[i] = name;
			int rc = (*c)->run(argc - i, argv + i, &opts);
			free(name);
			return rc;
		}
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	int rc = siftctl_tool(&opts, argc - i, argv + i, help);
	if (rc >= 0)
		return rc;
	fprintf(stderr, "siftctl: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 1;
}

int main(int argc, char **argv)
{
	int rc = run(argc, argv);
	/* Every command's output, the plugins' tools' too: what could not be
	 * written (a full disk, a closed pipe with SIGPIPE ignored) is a
	 * failure, not an exit 0 that printed nothing. */
	errno = 0;
	int e = fflush(stdout) != 0 ? errno : 0;
	if (e || ferror(stdout)) {
		fprintf(stderr, "siftctl: cannot write the output: %s\n", e ? strerror(e) : "write error");
		return 1;
	}
	return rc;
}
