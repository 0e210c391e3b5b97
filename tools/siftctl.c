/*
 * siftctl - the administrator's tool.
 *
 *   siftctl [-c FILE] [-o name=value]... test MESSAGE [options]
 *       runs a stored message through filterd's plugin chain (same code,
 *       same configuration file) without an MTA and prints the verdict.
 *   siftctl [-c FILE] reload [filterd|policyd]
 *       asks a running daemon to reload its configuration.
 *   siftctl [-c FILE] [-o ...] check
 *       checks a configuration file and its plugins (as filterd -t).
 *
 * Single-threaded.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "siftctl.h"

static struct sift_opts opts;
static struct sift_gen *load(enum sift_daemon d);

static const struct siftctl_cmd *const plugin_cmds[] = {
#ifdef SIFTCTL_HAVE_DKIM
	&siftctl_dkim_cmd,
#endif
#ifdef SIFTCTL_HAVE_SPF
	&siftctl_spf_cmd,
#endif
#ifdef SIFTCTL_HAVE_QUARANTINE
	&siftctl_quarantine_cmd,
#endif
#ifdef SIFTCTL_HAVE_SPAM
	&siftctl_spam_cmd,
#endif
#ifdef SIFTCTL_HAVE_RATELIMIT
	&siftctl_ratelimit_cmd,
#endif
	&siftctl_params_cmd,
	NULL,
};

static void usage(FILE *out)
{
	fprintf(out, "usage: siftctl [-c FILE] [-o name=value]... COMMAND [ARGS]\n"
		     "  -c FILE   configuration file (default " SIFT_SYSCONFDIR "/filterd.conf; for\n"
		     "            `reload policyd`, " SIFT_SYSCONFDIR "/policyd.conf)\n"
		     "  -o N=V    override a setting (repeatable)\n"
		     "commands:\n"
		     "  test FILE [--profile inbound|originating] [--client IP] [--client-name NAME]\n"
		     "       [--helo NAME] [--from ADDR] [--to ADDR]... [--auth LOGIN] [--json]\n"
		     "       run a stored message through filterd's plugin chain and print the\n"
		     "       action, SMTP reply, header changes, symbols and score\n"
		     "  check      check the configuration and plugins (exit 0 or 1)\n"
		     "  reload [filterd|policyd]\n"
		     "       make a running daemon reload its configuration (SIGUSR1 to filterd,\n"
		     "       SIGHUP to policyd; the pid comes from filterd_pid_file/policyd_pid_file)\n");
	for (const struct siftctl_cmd *const *c = plugin_cmds; *c; c++)
		fputs((*c)->usage, out);
}

struct sift_gen *siftctl_load(struct sift_opts *o, enum sift_daemon d)
{
	if (o != &opts)
		opts = *o;
	return load(d);
}

static struct sift_gen *load(enum sift_daemon d)
{
	char *err = NULL;
	struct sift_config *cfg = sift_opts_config(&opts, "", NULL, &err);
	if (!cfg) {
		fprintf(stderr, "siftctl: %s\n", err);
		exit(1);
	}
	/* The daemons' own parameters are not ours to check: filterd -t and
	 * policyd -t warn about unknown names; siftctl stays quiet. */
	sift_log_set_level(LOG_ERR);
	struct sift_gen *g = sift_gen_new(d, cfg, &err);
	sift_log_set_level(opts.debug ? LOG_DEBUG : LOG_WARNING);
	if (!g) {
		fprintf(stderr, "siftctl: %s\n", err);
		exit(1);
	}
	return g;
}

static void json_str(struct sift_buf *b, const char *s)
{
	sift_buf_add(b, "\"", 1);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			sift_buf_add(b, "\\", 1);
			sift_buf_add(b, s, 1);
		} else if (c < 0x20)
			sift_buf_printf(b, "\\u%04x", c);
		else
			sift_buf_add(b, s, 1);
	}
	sift_buf_add(b, "\"", 1);
}

static const char *action_of(enum sift_verdict v, const struct sift_result *r)
{
	switch (v) {
	case SIFT_REJECT:
		return "reject";
	case SIFT_TEMPFAIL:
		return "tempfail";
	case SIFT_DISCARD:
		return "discard";
	default:
		return r->hold ? "hold" : "accept";
	}
}

static int cmd_test(int argc, char **argv)
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
	const char *profile = NULL, *client = "127.0.0.1", *client_name = "localhost", *helo = "localhost";
	const char *from = NULL, *auth = NULL;
	const char **to = NULL;
	size_t nto = 0;
	bool json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'P':
			profile = optarg;
			break;
		case 'C':
			client = optarg;
			break;
		case 'N':
			client_name = optarg;
			break;
		case 'H':
			helo = optarg;
			break;
		case 'F':
			from = optarg;
			break;
		case 'T':
			to = sift_realloc(to, (nto + 1) * sizeof(*to));
			to[nto++] = optarg;
			break;
		case 'A':
			auth = optarg;
			break;
		case 'J':
			json = true;
			break;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "siftctl test: one message file expected\n");
		return 1;
	}
	const char *file = argv[optind];
	FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	if (!fp) {
		fprintf(stderr, "siftctl test: %s: %s\n", file, strerror(errno));
		return 1;
	}
	struct sift_gen *g = load(SIFT_SIFTCTL);
	const struct sift_common_conf *cc = sift_gen_common(g);
	struct sift_msg *src = sift_msg_new((size_t)cc->message_memory_limit, cc->tmpdir);
	char *err = NULL;
	if (sift_msg_read_file(src, fp, &err) < 0) {
		fprintf(stderr, "siftctl test: %s: %s\n", file, err);
		return 1;
	}
	if (fp != stdin)
		fclose(fp);

	struct sift_ctx *ctx = sift_ctx_new(g, SIFT_SIFTCTL);
	sift_ctx_set(ctx, SIFT_I_CLIENT_ADDR, client);
	sift_ctx_set(ctx, SIFT_I_CLIENT_NAME, client_name);
	sift_ctx_set(ctx, SIFT_I_CLIENT_PTR, client_name);
	if (profile) {
		if (strcmp(profile, "inbound") == 0)
			sift_ctx_force_profile(ctx, SIFT_INBOUND);
		else if (strcmp(profile, "originating") == 0)
			sift_ctx_force_profile(ctx, SIFT_ORIGINATING);
		else {
			fprintf(stderr, "siftctl test: --profile is inbound or originating\n");
			return 1;
		}
	}
	sift_ctx_choose_profile(ctx);
	enum sift_verdict v = sift_run(ctx, SIFT_PH_CONNECT);
	if (v == SIFT_DUNNO) {
		sift_ctx_set(ctx, SIFT_I_HELO, helo);
		v = sift_run(ctx, SIFT_PH_HELO);
	}
	sift_ctx_msg_begin(ctx);
	sift_ctx_set(ctx, SIFT_I_QUEUE_ID, "SIFTCTL");
	const char *rejected_rcpt = NULL;
	if (v == SIFT_DUNNO) {
		sift_ctx_set(ctx, SIFT_I_SENDER, from ? from : "");
		sift_ctx_set(ctx, SIFT_I_SASL_USERNAME, auth);
		sift_ctx_choose_profile(ctx);
		v = sift_run(ctx, SIFT_PH_MAIL);
	}
	char *defrcpt = NULL;
	if (!nto) {
		defrcpt = sift_strdup("postmaster@localhost");
		to = sift_realloc(to, sizeof(*to));
		to[nto++] = defrcpt;
	}
	size_t accepted = 0;
	for (size_t i = 0; v == SIFT_DUNNO && i < nto; i++) {
		sift_ctx_set(ctx, SIFT_I_RCPT, to[i]);
		enum sift_verdict rv = sift_run(ctx, SIFT_PH_RCPT);
		if (rv == SIFT_DUNNO) {
			sift_ctx_add_rcpt(ctx, to[i]);
			accepted++;
		} else if (rv == SIFT_DISCARD)
			v = rv;
		else if (!rejected_rcpt) {
			rejected_rcpt = to[i];
			if (accepted == 0 && i == nto - 1)
				v = rv; /* every recipient refused: report it */
		}
	}
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_DATA);
	for (size_t i = 0; v == SIFT_DUNNO && i < sift_msg_header_count(src); i++) {
		const struct sift_header *h = sift_msg_header(src, i);
		v = sift_run_header(ctx, h->name, h->value);
	}
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_EOH);
	char buf[65535];
	long n;
	long long off = 0;
	while (v == SIFT_DUNNO && (n = sift_msg_body_read(src, off, buf, sizeof(buf))) > 0) {
		v = sift_run_body(ctx, buf, (size_t)n);
		off += n;
	}
	if (v == SIFT_DUNNO)
		v = sift_run(ctx, SIFT_PH_EOM);

	const struct sift_result *r = sift_ctx_result(ctx);
	const char *action = action_of(v, r);
	char *reply = NULL;
	if (v == SIFT_REJECT || v == SIFT_TEMPFAIL)
		reply = sift_asprintf(
			"%s %s %s", r->reply_code ? r->reply_code : (v == SIFT_REJECT ? "550" : "451"),
			r->reply_xcode ? r->reply_xcode : (v == SIFT_REJECT ? "5.7.1" : "4.7.1"),
			r->reply_text ? r->reply_text
				      : (v == SIFT_REJECT ? "Message rejected" : "Try again later"));
	static const char *const ops[] = {"add", "insert", "change"};
	if (json) {
		struct sift_buf b = {0};
		sift_buf_adds(&b, "{\"action\":");
		json_str(&b, action);
		sift_buf_adds(&b, ",\"profile\":");
		json_str(&b, sift_profile_names[sift_ctx_profile(ctx)]);
		sift_buf_adds(&b, ",\"reply\":");
		if (reply)
			json_str(&b, reply);
		else
			sift_buf_adds(&b, "null");
		sift_buf_adds(&b, ",\"decided_by\":");
		if (r->decided_by)
			json_str(&b, r->decided_by);
		else
			sift_buf_adds(&b, "null");
		sift_buf_printf(&b, ",\"score\":%.3f,\"hold\":%s", r->score, r->hold ? "true" : "false");
		if (r->hold) {
			sift_buf_adds(&b, ",\"hold_reason\":");
			json_str(&b, r->hold_reason);
		}
		sift_buf_adds(&b, ",\"symbols\":[");
		for (const struct sift_symbol *s = r->symbols; s; s = s->next) {
			sift_buf_adds(&b, "{\"name\":");
			json_str(&b, s->name);
			sift_buf_printf(&b, ",\"score\":%.3f", s->score);
			if (s->option) {
				sift_buf_adds(&b, ",\"option\":");
				json_str(&b, s->option);
			}
			sift_buf_adds(&b, s->next ? "}," : "}");
		}
		sift_buf_adds(&b, "],\"headers\":[");
		for (const struct sift_edit *e = r->edits; e; e = e->next) {
			sift_buf_adds(&b, "{\"op\":");
			json_str(&b, e->value ? ops[e->op] : "delete");
			sift_buf_printf(&b, ",\"index\":%u,\"name\":", e->idx);
			json_str(&b, e->name);
			sift_buf_adds(&b, ",\"value\":");
			if (e->value)
				json_str(&b, e->value);
			else
				sift_buf_adds(&b, "null");
			sift_buf_adds(&b, e->next ? "}," : "}");
		}
		sift_buf_adds(&b, "]");
		if (rejected_rcpt) {
			sift_buf_adds(&b, ",\"rejected_recipient\":");
			json_str(&b, rejected_rcpt);
		}
		sift_buf_adds(&b, "}\n");
		fputs(sift_buf_str(&b), stdout);
		sift_buf_free(&b);
	} else {
		printf("action: %s\n", action);
		printf("profile: %s\n", sift_profile_names[sift_ctx_profile(ctx)]);
		if (reply)
			printf("reply: %s\n", reply);
		if (r->decided_by)
			printf("decided by: %s\n", r->decided_by);
		if (rejected_rcpt)
			printf("rejected recipient: %s\n", rejected_rcpt);
		if (r->hold)
			printf("hold: %s\n", r->hold_reason ? r->hold_reason : "");
		printf("score: %.3f\n", r->score);
		for (const struct sift_symbol *s = r->symbols; s; s = s->next)
			printf("symbol: %s(%.3f)%s%s\n", s->name, s->score, s->option ? " " : "",
			       s->option ? s->option : "");
		for (const struct sift_edit *e = r->edits; e; e = e->next) {
			if (e->op == SIFT_EDIT_ADD)
				printf("header add: %s: %s\n", e->name, e->value);
			else
				printf("header %s #%u: %s: %s\n", e->value ? ops[e->op] : "delete", e->idx,
				       e->name, e->value ? e->value : "");
		}
	}
	free(reply);
	sift_ctx_msg_end(ctx, v != SIFT_DUNNO);
	sift_ctx_free(ctx);
	sift_msg_free(src);
	free(defrcpt);
	free(to);
	sift_gen_unref(g);
	return 0;
}

static int cmd_reload(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "filterd";
	bool pol = strcmp(which, "policyd") == 0;
	if (!pol && strcmp(which, "filterd") != 0) {
		fprintf(stderr, "siftctl reload: filterd or policyd\n");
		return 1;
	}
	if (pol && strcmp(opts.config_file, SIFT_SYSCONFDIR "/filterd.conf") == 0)
		opts.config_file = SIFT_SYSCONFDIR "/policyd.conf";
	char *err = NULL;
	struct sift_config *cfg = sift_opts_config(&opts, "", NULL, &err);
	if (!cfg) {
		fprintf(stderr, "siftctl: %s\n", err);
		return 1;
	}
	char *pidfile = sift_config_get(cfg, pol ? "policyd_pid_file" : "filterd_pid_file", &err);
	if (!pidfile || !*pidfile) {
		fprintf(stderr, "siftctl reload: %s_pid_file is not set in %s\n", which, opts.config_file);
		return 1;
	}
	FILE *fp = fopen(pidfile, "r");
	int pid = 0;
	if (!fp || fscanf(fp, "%d", &pid) != 1 || pid <= 1) {
		fprintf(stderr, "siftctl reload: cannot read a pid from %s\n", pidfile);
		return 1;
	}
	fclose(fp);
	if (kill(pid, pol ? SIGHUP : SIGUSR1) < 0) {
		fprintf(stderr, "siftctl reload: %s (pid %d): %s\n", which, pid, strerror(errno));
		return 1;
	}
	printf("siftctl: asked %s (pid %d) to reload\n", which, pid);
	free(pidfile);
	sift_config_free(cfg);
	return 0;
}

int main(int argc, char **argv)
{
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
	const char *cmd = argv[i];
	if (strcmp(cmd, "test") == 0)
		return cmd_test(argc - i, argv + i);
	if (strcmp(cmd, "reload") == 0)
		return cmd_reload(argc - i, argv + i);
	if (strcmp(cmd, "check") == 0) {
		struct sift_gen *g = load(SIFT_SIFTCTL);
		printf("siftctl: configuration OK (%zu plugin%s)\n", sift_gen_plugin_count(g),
		       sift_gen_plugin_count(g) == 1 ? "" : "s");
		sift_gen_unref(g);
		return 0;
	}
	for (const struct siftctl_cmd *const *c = plugin_cmds; *c; c++)
		if (strcmp(cmd, (*c)->name) == 0)
			return (*c)->run(argc - i, argv + i, &opts);
	if (strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "siftctl: unknown command \"%s\"\n", cmd);
	usage(stderr);
	return 1;
}
