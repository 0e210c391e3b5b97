/*
 * filterd.h - what filterd's files share: its parameters and the milter
 * glue's entry points.
 */
#ifndef FILTERD_H
#define FILTERD_H
#include <stdbool.h>

#include "sift.h"

struct filterd_conf {
	const char *listen;
	const char *user;
	const char *pid_file;
	const char *socket_mode;
	const char *socket_group;
	long long backlog;
	long long milter_timeout;
	long long command_deadline;
	long long content_deadline;
	int tcp_tuning;
};
extern const struct sift_param filterd_params[];
extern bool filterd_tcp_tuning;

/* Registers the callbacks and opens the listening socket; 0 or -1 + err. */
int filterd_milter_setup(const struct filterd_conf *conf, char **err_r);
/* Runs libmilter's loop until stopped. */
int filterd_milter_run(void);
#endif
