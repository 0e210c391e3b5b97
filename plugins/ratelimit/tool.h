/*
 * tool.h - the ratelimit plugin's siftctl tools (tool.c: `siftctl ratelimit
 * show|reset|stats`) and what they read from the plugin's conf block
 * (ratelimit.c).
 */
#ifndef SIFT_RATELIMIT_TOOL_H
#define SIFT_RATELIMIT_TOOL_H

#include "sift/plugin.h"

extern const struct sift_tool rl_tools[];

/* ratelimit_control and ratelimit_control_socket of a parsed conf block. */
int rl_conf_control(const void *conf);
const char *rl_conf_control_socket(const void *conf);

#endif
