/*
 * dmarctool.h - what the dmarc plugin's siftctl tools (tool.c) share with
 * the plugin (dmarc.c): the conf block's report settings and
 * organizational-domain function, and the hook `siftctl dmarc check` runs
 * the plugin's own evaluation through.
 */
#ifndef SIFT_DMARCTOOL_H
#define SIFT_DMARCTOOL_H

#include <stdbool.h>
#include <stddef.h>

#include "dmarcrec.h"
#include "dmarcreport.h"
#include "sift/plugin.h"

/* `siftctl dmarc check`: SPF and DKIM results given on the command line
 * (replacing the ones the chain found), and the evaluation handed back.
 * Set only by the tool, in siftctl (NULL in the daemons); when set, the
 * plugin records no report row. */
struct dmarc_check {
	bool have_spf, have_dkim;
	struct dmarc_auth spf;
	struct dmarc_auth dkim[DMARC_MAX_DKIM];
	size_t ndkim;
	bool ran;
	struct dmarc_eval eval;
};
extern struct dmarc_check *dmarc_check_hook;
void dmarc_check_inputs(const struct dmarc_check *k, struct dmarc_eval *e);

const struct dmarc_report_conf *dmarc_conf_report(const void *conf);
bool dmarc_conf_orgdomain(void *conf, const char *domain, char *out, size_t n);

extern const struct sift_tool dmarc_tools[];

#endif
