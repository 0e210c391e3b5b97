/*
 * tool.h - the spf plugin's siftctl tool (tool.c: `siftctl spf check`) and
 * what it uses from spf.c.
 */
#ifndef SIFT_SPF_TOOL_H
#define SIFT_SPF_TOOL_H

#include "sift/plugin.h"

extern const struct sift_tool spf_tools[];

/* Evaluates SPF for (ip, sender, helo) with conf (an initialised spf
 * configuration) and writes the report siftctl prints (malloc'd) to
 * *report_r: result, identity, sender, domain, mechanism, problem,
 * explanation, lookups, the Received-SPF header and the policy action.
 * Returns the result (enum spf_result) or -1. */
int spf_tool_report(const void *conf, const char *ip, const char *sender, const char *helo, char **report_r);

#endif
