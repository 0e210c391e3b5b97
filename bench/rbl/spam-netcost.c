/*
 * spam-netcost.c - the CPU the spam plugin's network tests cost per
 * message: the same message scored N times by the engine without them and
 * N times with them (the lookups of a message planned at connect, end of
 * header and end of message, started through the shared resolver, collected
 * and read by the evals), answers from the resolver's cache after the first
 * message (warm, as for repeated relays and URIs). CPU is the process's
 * (getrusage: libunbound's and the resolver's threads included).
 *
 *   spam-netcost -s 127.0.0.1:PORT [-n N] [-c CLIENT] MESSAGE RULES...
 *
 * bench/rbl/spamnet.py runs it against tests/lib/dnsbl.py's lists with the
 * stock ruleset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../../plugins/spam/engine.h"
#include "mailsyntax.h"
#include "mime.h"
#include "sift.h"

static double cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000.0 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000.0;
}

static double wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* One message: scored, with its network lookups when net is set; returns
 * the score and the number of lookups in *nq. */
static double one(const struct spam_engine *e, const struct sift_mime *mime, const char *client, bool net,
		  size_t *nq)
{
	struct spam_input in = {.mime = mime, .client_addr = client, .addrlist_parse = sift_addrlist_parse};
	struct spam_net *n = NULL;
	if (net) {
		n = spam_net_new(e, sift_dns_start, sift_dns_wait);
		spam_net_client(n, client);
		spam_net_headers(n, &in);
		spam_net_uris(n, &in);
		spam_net_wait(n, &in, 2000);
		*nq = spam_net_count(n);
	}
	in.net = n;
	struct spam_result r;
	spam_engine_check(e, &in, &r);
	double s = r.score;
	spam_result_free(&r);
	spam_net_free(n);
	return s;
}

int main(int argc, char **argv)
{
	const char *server = NULL, *client = "127.0.0.1";
	long n = 200;
	int i = 1;
	for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
		if (strcmp(argv[i], "-s") == 0)
			server = argv[i + 1];
		else if (strcmp(argv[i], "-n") == 0)
			n = atol(argv[i + 1]);
		else if (strcmp(argv[i], "-c") == 0)
			client = argv[i + 1];
	}
	if (!server || argc - i < 2) {
		fprintf(stderr, "usage: spam-netcost -s DNSSERVER [-n N] [-c CLIENT] MESSAGE RULES...\n");
		return 2;
	}
	sift_log_init("spam-netcost", true, LOG_WARNING);
	char *err = NULL;
	if (sift_dns_init(server, 2000, &err) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	FILE *f = fopen(argv[i], "rb");
	if (!f) {
		perror(argv[i]);
		return 1;
	}
	static unsigned char buf[1 << 20];
	size_t len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	struct sift_mime *mime = sift_mime_parse_message(buf, len, NULL);
	struct spam_engine_opts o = {
		.paths = (const char *const *)argv + i + 1, .cache_dir = "", .score_set = SPAM_SET_NET};
	struct spam_engine *e = spam_engine_new(&o, &err);
	if (!e) {
		fprintf(stderr, "rules: %s\n", err);
		return 1;
	}
	size_t nq = 0;
	double with = one(e, mime, client, true, &nq), without = one(e, mime, client, false, &nq);
	double c0 = cpu_ms(), w0 = wall_ms();
	for (long k = 0; k < n; k++)
		one(e, mime, client, false, &nq);
	double c1 = cpu_ms(), w1 = wall_ms();
	for (long k = 0; k < n; k++)
		one(e, mime, client, true, &nq);
	double c2 = cpu_ms(), w2 = wall_ms();
	printf("messages %ld, lookups per message %zu, score %.3f without / %.3f with network tests\n", n, nq,
	       without, with);
	printf("without network tests: CPU %.3f ms/msg, wall %.3f ms/msg\n", (c1 - c0) / (double)n,
	       (w1 - w0) / (double)n);
	printf("with network tests:    CPU %.3f ms/msg, wall %.3f ms/msg\n", (c2 - c1) / (double)n,
	       (w2 - w1) / (double)n);
	printf("network tests cost:    CPU %.3f ms/msg (warm cache)\n", ((c2 - c1) - (c1 - c0)) / (double)n);
	spam_engine_free(e);
	sift_mime_free(mime);
	sift_dns_shutdown();
	return 0;
}
