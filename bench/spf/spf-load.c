/*
 * spf-load.c - load client for SPF policy servers (policyd with the spf
 * plugin, postfix-policyd-spf-python, postfix-policyd-spf-perl).
 *
 *   spf-load -c CONCURRENCY -n REQUESTS -D DOMAINS [-o OFFSET] HOST:PORT
 *
 * Each of CONCURRENCY threads keeps one persistent connection and sends one
 * RCPT request at a time, as a Postfix smtpd process does. Every request is
 * a new transaction (its own `instance`) with sender u<k>@d<k>.bench.test,
 * k = OFFSET + (request number % DOMAINS): so each request needs an SPF
 * evaluation, and with DOMAINS = REQUESTS and a fresh OFFSET every domain
 * is new (cold cache). Prints requests/s, p50/p99/max latency, errors and
 * how many replies carried "Received-SPF: pass" (case-insensitive).
 *
 * Threading: threads share an atomic request counter; latencies are kept
 * per thread and merged after join.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in target;
static long total, ndomains, offset;
static atomic_long next_req, errors, passes;

struct th {
	double *lat;
	long n;
	int id;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int conn(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct timeval tv = {30, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&target, sizeof(target)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void *run(void *arg)
{
	struct th *t = arg;
	int fd = conn();
	char req[1024], buf[8192];
	for (;;) {
		long i = atomic_fetch_add(&next_req, 1);
		if (i >= total)
			break;
		long k = offset + i % ndomains;
		int len = snprintf(req, sizeof(req),
				   "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
				   "client_address=192.0.2.10\nclient_name=mail.bench.test\n"
				   "reverse_client_name=mail.bench.test\nhelo_name=mail.bench.test\n"
				   "sender=u%ld@d%ld.bench.test\nrecipient=bob@sift.test\nrecipient_count=0\n"
				   "queue_id=\ninstance=%d.%ld.%ld\nsize=1000\nsasl_method=\nsasl_username=\n"
				   "sasl_sender=\npolicy_context=\n\n",
				   k, k, t->id, offset, i);
		double t0 = now();
		if (fd < 0 && (fd = conn()) < 0) {
			atomic_fetch_add(&errors, 1);
			continue;
		}
		if (write(fd, req, (size_t)len) != len) {
			atomic_fetch_add(&errors, 1);
			close(fd);
			fd = -1;
			continue;
		}
		size_t got = 0;
		int ok = 0;
		while (got < sizeof(buf) - 1) {
			ssize_t r = read(fd, buf + got, sizeof(buf) - 1 - got);
			if (r <= 0)
				break;
			got += (size_t)r;
			buf[got] = 0;
			if (strstr(buf, "\n\n")) {
				ok = 1;
				break;
			}
		}
		if (!ok || strncmp(buf, "action=", 7) != 0) {
			atomic_fetch_add(&errors, 1);
			close(fd);
			fd = -1;
			continue;
		}
		if (strcasestr(buf, "Received-SPF: pass"))
			atomic_fetch_add(&passes, 1);
		t->lat[t->n++] = (now() - t0) * 1000.0;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int conc = 1, opt;
	total = 1000;
	ndomains = 1000;
	while ((opt = getopt(argc, argv, "c:n:D:o:")) != -1) {
		switch (opt) {
		case 'c':
			conc = atoi(optarg);
			break;
		case 'n':
			total = atol(optarg);
			break;
		case 'D':
			ndomains = atol(optarg);
			break;
		case 'o':
			offset = atol(optarg);
			break;
		default:
			fprintf(stderr,
				"usage: spf-load -c N -n REQUESTS -D DOMAINS [-o OFFSET] HOST:PORT\n");
			return 2;
		}
	}
	if (optind >= argc || conc < 1 || conc > 256 || total < 1 || ndomains < 1) {
		fprintf(stderr, "usage: spf-load -c N -n REQUESTS -D DOMAINS [-o OFFSET] HOST:PORT\n");
		return 2;
	}
	char host[64];
	const char *colon = strrchr(argv[optind], ':');
	if (!colon || (size_t)(colon - argv[optind]) >= sizeof(host))
		return 2;
	memcpy(host, argv[optind], (size_t)(colon - argv[optind]));
	host[colon - argv[optind]] = 0;
	target.sin_family = AF_INET;
	target.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &target.sin_addr) != 1)
		return 2;
	pthread_t tids[256];
	struct th ths[256];
	double t0 = now();
	for (int i = 0; i < conc; i++) {
		ths[i].lat = calloc((size_t)total, sizeof(double));
		ths[i].n = 0;
		ths[i].id = i;
		pthread_create(&tids[i], NULL, run, &ths[i]);
	}
	for (int i = 0; i < conc; i++)
		pthread_join(tids[i], NULL);
	double el = now() - t0;
	double *all = calloc((size_t)total, sizeof(double));
	long n = 0;
	for (int i = 0; i < conc; i++) {
		memcpy(all + n, ths[i].lat, (size_t)ths[i].n * sizeof(double));
		n += ths[i].n;
		free(ths[i].lat);
	}
	qsort(all, (size_t)n, sizeof(double), cmp);
	printf("concurrency %d: %ld requests in %.2f s: %.0f requests/s, latency p50 %.3f ms, "
	       "p99 %.3f ms, max %.3f ms, errors %ld, pass %ld\n",
	       conc, n, el, n / el, n ? all[n / 2] : 0, n ? all[(long)(n * 0.99)] : 0, n ? all[n - 1] : 0,
	       atomic_load(&errors), atomic_load(&passes));
	free(all);
	return 0;
}
