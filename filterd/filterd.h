/*
 * filterd.h - what filterd's files share: its parameters and the milter
 * engines' entry points (libmilter: milter.c; native: engine.h).
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
	long long packet_timeout; /* a begun packet, and the negotiation */
	long long command_deadline;
	long long content_deadline;
	int tcp_tuning;
	int engine; /* FILTERD_ENGINE_* */
	long long max_connections;
	long long shutdown_timeout;
	const char *control_socket;
};
enum { FILTERD_ENGINE_NATIVE = 0, FILTERD_ENGINE_LIBMILTER = 1 };
extern const struct sift_param filterd_params[];
#ifdef FILTERD_HAVE_LIBMILTER
/* TCP options on the sockets libmilter accepts (tcpfix.c). */
extern bool filterd_tcp_tuning;
#endif

/* Mode and group of a unix listening socket (filterd_socket_mode,
 * filterd_socket_group; owner filterd_user when root); 0 or -1 + err. */
int filterd_socket_perms(const struct filterd_conf *conf, const char *path, char **err_r);

#ifdef FILTERD_HAVE_LIBMILTER
/* The libmilter engine (milter.c), in builds with the libmilter feature.
 * Registers the callbacks and opens the listening socket; 0 or -1 + err. */
int filterd_milter_setup(const struct filterd_conf *conf, char **err_r);
/* Runs libmilter's loop until stopped. */
int filterd_milter_run(void);
#endif
#endif
