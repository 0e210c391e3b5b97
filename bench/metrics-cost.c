/*
 * metrics-cost.c - the CPU the metrics cost per message (lib/metrics.c and
 * the hook timing in lib/host.c), measured with getrusage (user + system
 * time of this process), single-threaded:
 *
 *   record   sift_metrics_record for one message: action and profile
 *            counters, the history tick, three plugins' verdicts and
 *            latency histograms, the whole-message histogram, five symbol
 *            hits and the copy into the ring of recent messages;
 *   timing   the clock reads of the hook timing: one per timed hook call
 *            and one per chain run; the per-header calls are not timed, so
 *            a message through three plugins with eom hooks takes 4 reads
 *            (the cost of one read is printed too: timing the 36 header
 *            calls of this message as well would take 12 x 4 more);
 *   message  a whole message through the chain (sift_session: mail, rcpt,
 *            data, 12 headers, eoh, one body chunk, eom, end) with the
 *            same three do-nothing plugins, metrics included, for scale.
 *
 * Usage: build/bench/metrics-cost [MESSAGES] (default 200000).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "sift.h"

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

static const struct sift_host *host;

static int mc_init(const struct sift_host *h, void *conf, char **err_r)
{
	host = h;
	return 0;
}

static enum sift_verdict mc_header(struct sift_ctx *ctx, const struct sift_header *h)
{
	return SIFT_DUNNO;
}

static enum sift_verdict mc_eom(struct sift_ctx *ctx)
{
	return SIFT_DUNNO;
}

static enum sift_verdict mc_eom_symbols(struct sift_ctx *ctx)
{
	static const char *const names[] = {"BAYES_00", "SIFT_RDNS_NONE", "DKIM_VALID", "SPF_PASS",
					    "HTML_MESSAGE"};
	for (size_t i = 0; i < 5; i++)
		host->symbol(ctx, names[i], 0.5, NULL);
	return SIFT_DUNNO;
}

#define MC_PLUGIN(N, EOM)                       \
	static const struct sift_plugin N = {   \
		SIFT_PLUGIN_INIT,               \
		.name = #N,                     \
		.description = "metrics bench", \
		.daemons = SIFT_D_FILTERD,      \
		.init = mc_init,                \
		.header = mc_header,            \
		.eom = EOM,                     \
	};
MC_PLUGIN(mc1, mc_eom)
MC_PLUGIN(mc2, mc_eom)
MC_PLUGIN(mc3, mc_eom_symbols)

static const char *macro(void *arg, const char *name)
{
	return strcmp(name, "i") == 0 ? "4ABCDEF123" : NULL;
}

static void one_message(struct sift_session *s)
{
	static const char body[] = "Hello,\r\nthis is a message of a few lines.\r\n\r\nBye\r\n";
	sift_session_mail(s, "<sender@example.test>");
	sift_session_rcpt(s, "<user@sift.test>");
	sift_session_data(s);
	for (int h = 0; h < 12; h++)
		sift_session_header(s, "X-Header", " a value of some length for the header");
	sift_session_eoh(s);
	sift_session_body(s, body, sizeof(body) - 1);
	enum sift_verdict v = sift_session_eom(s);
	sift_session_end(s, v);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	if (n < 1000)
		n = 1000;
	sift_log_init("metrics-cost", true, LOG_CRIT);
	sift_metrics_init(SIFT_FILTERD);
	sift_plugin_builtin(&mc1);
	sift_plugin_builtin(&mc2);
	sift_plugin_builtin(&mc3);
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	static const char *const lines[] = {"plugin_directory = /nonexistent",
					    "inbound_plugins = mc1 mc2 mc3",
					    "quarantine_directory = /nonexistent", "tmpdir = /tmp"};
	char *err = NULL;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		if (sift_config_set(cfg, lines[i], "bench", &err) < 0)
			sift_fatal("%s", err);
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	if (!g)
		sift_fatal("%s", err);
	sift_gen_set_current(g);
	struct sift_session *s = sift_session_new(g, SIFT_FILTERD, macro, NULL);
	sift_session_connect(s, "client.example", "192.0.2.1", "4711");
	sift_session_helo(s, "client.example");

	/* a whole message, for scale */
	for (long i = 0; i < n / 10; i++)
		one_message(s);
	double t0 = cpu_s();
	for (long i = 0; i < n; i++)
		one_message(s);
	double msg_us = (cpu_s() - t0) / (double)n * 1e6;

	/* sift_metrics_record alone, on a message with three plugins run and
	 * five symbols */
	sift_session_mail(s, "<sender@example.test>");
	sift_session_rcpt(s, "<user@sift.test>");
	sift_session_data(s);
	sift_session_eoh(s);
	sift_session_eom(s);
	struct sift_ctx *ctx = sift_session_ctx(s);
	struct sift_pstat *ps;
	size_t np = sift_ctx_pstats(ctx, &ps);
	t0 = cpu_s();
	for (long i = 0; i < n; i++) {
		for (size_t k = 0; k < np; k++) {
			ps[k].ran = true;
			ps[k].ns = 1000 + (long long)k * 50000;
		}
		sift_metrics_record(ctx, "accept");
	}
	double rec_us = (cpu_s() - t0) / (double)n * 1e6;
	sift_session_end(s, SIFT_DUNNO);

	/* the clock reads around the hooks */
	volatile long long sink = 0;
	t0 = cpu_s();
	for (long i = 0; i < n * 2; i++) {
		long long a = sift_now_ns();
		sink += sift_now_ns() - a;
	}
	double read_us = (cpu_s() - t0) / (double)(n * 4) * 1e6, clock_us = 4 * read_us;

	printf("messages:             %ld\n", n);
	printf("record per message:   %.3f us CPU (sift_metrics_record)\n", rec_us);
	printf("timing per message:   %.3f us CPU (4 clock reads of %.1f ns)\n", clock_us, read_us * 1000);
	printf("metrics per message:  %.3f us CPU\n", rec_us + clock_us);
	printf("whole message:        %.3f us CPU (3 do-nothing plugins, metrics included)\n", msg_us);
	sift_session_quit(s);
	sift_session_free(s);
	sift_gen_set_current(NULL);
	return sink == -1;
}
