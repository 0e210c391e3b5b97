/*
 * tool.c - `siftctl spf check IP SENDER [HELO]`: evaluates SPF as policyd's
 * spf plugin does and prints the result, the matching mechanism, the
 * explanation, the Received-SPF header policyd would add and the action it
 * would answer (what spfquery does for admins).
 *
 * Same code and resolver: siftctl initialises the plugin with the
 * configuration (-c, -o: the spf_* settings, dns_servers, dns_timeout), and
 * the plugin's own evaluation runs (spf_tool_report in spf.c).
 *
 * Single-threaded (in siftctl); exits 0 when a result was computed, 1 on
 * errors, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool.h"

static const char check_usage[] = "IP SENDER [HELO]";

/* An IPv4 or IPv6 address, optionally in brackets. */
static int ip_ok(const char *ip)
{
	char buf[64];
	size_t n = strlen(ip);
	if (n >= 2 && ip[0] == '[' && ip[n - 1] == ']') {
		ip++;
		n -= 2;
	}
	if (n >= sizeof(buf))
		return 0;
	memcpy(buf, ip, n);
	buf[n] = 0;
	unsigned char a[16];
	return inet_pton(AF_INET, buf, a) == 1 || inet_pton(AF_INET6, buf, a) == 1;
}

static int tool_check(const struct sift_host *host, void *conf, int argc, char **argv)
{
	/* it takes no option: name the one given rather than miscount */
	for (int i = 1; i < argc; i++)
		if (strncmp(argv[i], "--", 2) == 0) {
			fprintf(stderr, "siftctl spf check: unknown option %s\n", argv[i]);
			argc = 0;
			break;
		}
	if (argc < 3 || argc > 4) {
		fprintf(stderr,
			"usage: siftctl [-c file] [-o name=value] spf check %s\n"
			"       (SENDER \"\" or <> is the null sender: the HELO identity is checked)\n",
			check_usage);
		return 2;
	}
	const char *ip = argv[1];
	const char *sender = argv[2];
	const char *helo = argc > 3 ? argv[3] : "";
	if (strcmp(sender, "<>") == 0)
		sender = "";
	if (!ip_ok(ip)) {
		fprintf(stderr, "siftctl spf: not an IP address: %s\n", ip);
		return 2;
	}
	char *report = NULL;
	if (spf_tool_report(conf, ip, sender, helo, &report) < 0 || !report) {
		fprintf(stderr, "siftctl spf: evaluation failed\n");
		free(report);
		return 1;
	}
	fputs(report, stdout);
	free(report);
	return 0;
}

const struct sift_tool spf_tools[] = {
	{"check", check_usage,
	 "evaluate SPF as policyd's spf plugin does; prints result, explanation,\n"
	 "the Received-SPF header and the policy action (SENDER \"\" or <>: the null sender)",
	 SIFT_TOOL_INIT, tool_check},
	{NULL, NULL, NULL, 0, NULL},
};
