/*
 * siftctl.h - siftctl's subcommands. Each plugin area has its own file
 * (siftctl-dkim.c, ...) with one entry point; argv[0] is the command word
 * ("dkim"), opts holds the common -c/-o options already parsed. Return the
 * exit status. Usage text: a static string printed by `siftctl help`.
 */
#ifndef SIFTCTL_H
#define SIFTCTL_H
#include "sift.h"

struct siftctl_cmd {
	const char *name;
	int (*run)(int argc, char **argv, struct sift_opts *opts);
	const char *usage;
};
extern const struct siftctl_cmd siftctl_dkim_cmd, siftctl_spf_cmd, siftctl_quarantine_cmd, siftctl_spam_cmd,
	siftctl_ratelimit_cmd;
extern const struct siftctl_cmd siftctl_params_cmd;

/* Loads the configuration (opts) and builds a generation for daemon d;
 * exits 1 with a message on error. */
struct sift_gen *siftctl_load(struct sift_opts *opts, enum sift_daemon d);
#endif
