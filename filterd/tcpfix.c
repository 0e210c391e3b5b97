/*
 * tcpfix.c - TCP socket options for the MTA connections libmilter accepts.
 *
 * Over TCP, milter traffic is a ping-pong of small packets. With Nagle's
 * algorithm on one side and delayed ACKs on the other, two stalls of about
 * 40 ms hit every message: Postfix writes the DATA-stage macros and the DATA
 * command as two small writes (the second waits for our ACK of the first,
 * which the kernel delays), and replies written as several small packets
 * wait in the same way. That caps a milter at about 11 messages/s per SMTP
 * session over inet.
 *
 * libmilter does not hand out its sockets, so filterd links libmilter
 * statically and wraps (ld --wrap) accept, read and close: an accepted TCP
 * socket gets TCP_NODELAY (our writes leave at once) and is remembered in a
 * bitmap; after each read on such a socket TCP_QUICKACK is set again (Linux
 * clears it after a while), so Postfix's small writes are acknowledged at
 * once. Calls from the rest of the process reach the real functions after a
 * bitmap test. Thread-safe: the bitmap is updated with atomic operations.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "filterd.h"

int __real_accept(int fd, struct sockaddr *addr, socklen_t *len);
ssize_t __real_read(int fd, void *buf, size_t n);
int __real_close(int fd);
int __wrap_accept(int fd, struct sockaddr *addr, socklen_t *len);
ssize_t __wrap_read(int fd, void *buf, size_t n);
int __wrap_close(int fd);

#define MAX_TRACKED 65536
static _Atomic unsigned long tracked[MAX_TRACKED / (8 * sizeof(unsigned long))];
bool filterd_tcp_tuning = true;

static void mark(int fd, bool on)
{
	if (fd < 0 || fd >= MAX_TRACKED)
		return;
	unsigned long bit = 1UL << (fd % (8 * sizeof(unsigned long)));
	if (on)
		atomic_fetch_or(&tracked[fd / (8 * sizeof(unsigned long))], bit);
	else
		atomic_fetch_and(&tracked[fd / (8 * sizeof(unsigned long))], ~bit);
}

static bool is_marked(int fd)
{
	if (fd < 0 || fd >= MAX_TRACKED)
		return false;
	unsigned long bit = 1UL << (fd % (8 * sizeof(unsigned long)));
	return atomic_load_explicit(&tracked[fd / (8 * sizeof(unsigned long))], memory_order_relaxed) & bit;
}

int __wrap_accept(int fd, struct sockaddr *addr, socklen_t *len)
{
	int s = __real_accept(fd, addr, len);
	if (s < 0 || !filterd_tcp_tuning)
		return s;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(s, (struct sockaddr *)&ss, &sl) == 0 &&
	    (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)) {
		int one = 1;
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		mark(s, true);
	}
	return s;
}

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
	ssize_t r = __real_read(fd, buf, n);
	if (r > 0 && is_marked(fd)) {
		int saved = errno, one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		errno = saved;
	}
	return r;
}

int __wrap_close(int fd)
{
	mark(fd, false);
	return __real_close(fd);
}
