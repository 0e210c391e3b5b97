/*
 * fakeserver.h - the listening side of a fuzz target's fake server (a
 * clamd, a Redis) on a unix socket of its own: the target's thread accepts
 * on the descriptor and answers with the fuzzer's input.
 */
#ifndef SIFT_FUZZ_FAKESERVER_H
#define SIFT_FUZZ_FAKESERVER_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The server's state: the input it answers with (data, size; pos: how
 * much is sent), under mu; its socket's path and listening descriptor. */
struct fake_server {
	pthread_mutex_t mu;
	const uint8_t *data;
	size_t size, pos;
	char path[108];
	int lfd;
};
#define FAKE_SERVER_INIT                                   \
	{                                                  \
		.mu = PTHREAD_MUTEX_INITIALIZER, .lfd = -1 \
	}

/* Listens on /tmp/sift-fuzz-NAME-PID.sock (its path in path[n]); aborts if
 * it cannot. SIGPIPE is ignored, as the daemons do: a closed socket is
 * EPIPE. */
static inline int fake_listen(const char *name, char *path, size_t n)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(path, n, "/tmp/sift-fuzz-%s-%d.sock", name, (int)getpid());
	unlink(path);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0)
		abort();
	return fd;
}

#endif
