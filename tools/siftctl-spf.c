/*
 * siftctl-spf.c - `siftctl spf check IP SENDER [HELO]`: evaluates SPF as
 * policyd's spf plugin does and prints the result, the matching mechanism,
 * the explanation, the Received-SPF header policyd would add and the
 * action it would answer (what spfquery does for admins).
 *
 * Same code and resolver: the configuration (-c, -o) is loaded as policyd
 * loads it, which sets up the shared DNS resolver (dns_servers,
 * dns_timeout) and initialises the spf plugin when policyd's plugin lists
 * name it. The plugin's exported sift_spf_check() then runs the plugin's
 * own evaluation with its own settings (spf_*). When the lists do not name
 * spf, the plugin file from plugin_directory is loaded and initialised
 * with the spf_* settings here.
 *
 * Single-threaded; exits 0 when a result was computed, 1 on errors, 2 on
 * bad usage.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include "siftctl.h"

typedef int (*spf_check_fn)(const char *ip, const char *sender, const char *helo, char **report_r);

static int spf_run(int argc, char **argv, struct sift_opts *opts)
{
	if (argc < 4 || argc > 5 || strcmp(argv[1], "check") != 0) {
		fprintf(stderr,
			"usage: siftctl [-c file] [-o name=value] spf check IP SENDER [HELO]\n"
			"       (SENDER \"\" or <> is the null sender: the HELO identity is checked)\n");
		return 2;
	}
	const char *ip = argv[2];
	const char *sender = argv[3];
	const char *helo = argc > 4 ? argv[4] : "";
	if (strcmp(sender, "<>") == 0)
		sender = "";
	int fam;
	unsigned char addr[16];
	if (sift_addr_parse(ip, &fam, addr) < 0) {
		fprintf(stderr, "siftctl spf: not an IP address: %s\n", ip);
		return 2;
	}
	struct sift_gen *g = siftctl_load(opts, SIFT_POLICYD);
	const struct sift_common_conf *cc = sift_gen_common(g);
	char *path = sift_asprintf("%s/spf.so", cc->plugin_directory);
	char *err = NULL;
	const struct sift_plugin *p = sift_plugin_load(path, &err);
	if (!p) {
		fprintf(stderr, "siftctl spf: %s\n", err);
		return 1;
	}
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
	spf_check_fn check = h ? (spf_check_fn)dlsym(h, "sift_spf_check") : NULL;
	if (!check) {
		fprintf(stderr, "siftctl spf: %s has no sift_spf_check\n", path);
		return 1;
	}
	char *report = NULL;
	int rc = check(ip, sender, helo, &report);
	void *block = NULL;
	if (rc < 0) {
		/* Not initialised by the generation: do it with the spf_* settings. */
		block = sift_calloc(1, p->conf_size);
		if (sift_params_parse(sift_gen_config(g), "spf_", p->params, block, &err) < 0 ||
		    p->init(&sift_host_table, block, &err) < 0) {
			fprintf(stderr, "siftctl spf: %s\n", err ? err : "init failed");
			return 1;
		}
		rc = check(ip, sender, helo, &report);
	}
	if (rc < 0 || !report) {
		fprintf(stderr, "siftctl spf: evaluation failed\n");
		return 1;
	}
	fputs(report, stdout);
	free(report);
	if (block) {
		if (p->release)
			p->release(block);
		sift_params_free(p->params, block);
		free(block);
	}
	free(path);
	sift_gen_unref(g);
	return 0;
}

const struct siftctl_cmd siftctl_spf_cmd = {
	.name = "spf",
	.run = spf_run,
	.usage = "       siftctl spf check IP SENDER [HELO]  (evaluate SPF as policyd's spf plugin does;\n"
		 "       prints result, explanation, the Received-SPF header and the policy action)\n",
};
