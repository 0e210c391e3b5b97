/*
 * policy-load.c - load client for Postfix policy servers (policyd, or any
 * check_policy_service server).
 *
 *   policy-load -c CONCURRENCY (-n REQUESTS | -d SECONDS)
 *               [-f request-file | -D DOMAINS [-o OFFSET]]
 *               inet:HOST:PORT | unix:/path
 *
 * Each of CONCURRENCY threads keeps one persistent connection and sends one
 * request at a time, waiting for the reply before sending the next, as each
 * Postfix smtpd process does. Every round trip is timed. At the end it
 * prints the number of requests, requests/s, p50/p99/max latency in ms and
 * the number of errors (connect/read/write failures, replies without
 * "action=", connections closed by the server; a failed connection is
 * re-opened).
 *
 * The request file holds one request (name=value lines); a final empty line
 * is added when missing. Without -f a typical RCPT-stage request is sent.
 *
 * -D DOMAINS: every request is a new transaction (its own `instance`) with
 * sender u<k>@d<k>.bench.test, k = OFFSET + (request number % DOMAINS), from
 * client 192.0.2.10: each request needs its own SPF evaluation, and with a
 * fresh OFFSET and DOMAINS >= requests every domain is new (cold cache). The
 * summary then also counts the replies carrying "Received-SPF: pass"
 * (case-insensitive) as "pass N".
 *
 * Threading: the threads share only an atomic request counter (for -n) and
 * the stop time; each keeps its own latency array, merged after join.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* strcasestr */
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char default_request[] = "request=smtpd_access_policy\n"
				      "protocol_state=RCPT\n"
				      "protocol_name=ESMTP\n"
				      "client_address=192.0.2.10\n"
				      "client_name=mail.example.net\n"
				      "client_port=50123\n"
				      "reverse_client_name=mail.example.net\n"
				      "helo_name=mail.example.net\n"
				      "sender=alice@example.net\n"
				      "recipient=bob@example.org\n"
				      "recipient_count=0\n"
				      "queue_id=\n"
				      "instance=1a2b.65f0c1d2.3e4f5.0\n"
				      "size=1234\n"
				      "sasl_method=\n"
				      "sasl_username=\n"
				      "sasl_sender=\n"
				      "encryption_protocol=TLSv1.3\n"
				      "policy_context=\n"
				      "\n";

static const char *request;
static size_t request_len;
static const char *endpoint;
static long long total_requests; /* -n, 0 = use duration */
static atomic_llong issued;
static double stop_at;		      /* -d: monotonic seconds */
static long n_domains, domain_offset; /* -D, -o */
static atomic_long passes;

struct worker {
	pthread_t tid;
	int id;
	double *lat; /* ms */
	size_t n, cap;
	long errors;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_endpoint(void)
{
	if (strncmp(endpoint, "unix:", 5) == 0) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (strlen(endpoint + 5) >= sizeof(sun.sun_path))
			return -1;
		strcpy(sun.sun_path, endpoint + 5);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
	const char *hp = endpoint;
	if (strncmp(hp, "inet:", 5) == 0)
		hp += 5;
	char host[256];
	const char *colon = strrchr(hp, ':');
	const char *port;
	if (!colon) {
		strcpy(host, "127.0.0.1");
		port = hp;
	} else {
		size_t n = (size_t)(colon - hp);
		if (n >= sizeof(host))
			return -1;
		memcpy(host, hp, n);
		host[n] = 0;
		port = colon + 1;
		if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
			memmove(host, host + 1, n - 2);
			host[n - 2] = 0;
		}
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads one reply (up to "\n\n"); 0 ok, -1 error or bad reply. */
static int read_reply(int fd)
{
	char buf[8192];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = 0;
		if (n >= 2 && buf[n - 1] == '\n' && buf[n - 2] == '\n') {
			if (strncmp(buf, "action=", 7) != 0)
				return -1;
			if (n_domains && strcasestr(buf, "Received-SPF: pass"))
				atomic_fetch_add(&passes, 1);
			return 0;
		}
		if (n >= sizeof(buf) - 1)
			return -1;
	}
}

/* Claims the next request: false when done; *seq_r is its number. */
static bool more(long long *seq_r)
{
	long long i = atomic_fetch_add(&issued, 1);
	*seq_r = i;
	if (total_requests > 0)
		return i < total_requests;
	return now_s() < stop_at;
}

/* -D: request number i as a new transaction from a sender domain of its own. */
static size_t domain_request(char *buf, size_t size, int thread, long long i)
{
	long k = domain_offset + (long)(i % n_domains);
	int n = snprintf(buf, size,
			 "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
			 "client_address=192.0.2.10\nclient_name=mail.bench.test\n"
			 "reverse_client_name=mail.bench.test\nhelo_name=mail.bench.test\n"
			 "sender=u%ld@d%ld.bench.test\nrecipient=bob@sift.test\nrecipient_count=0\n"
			 "queue_id=\ninstance=%d.%ld.%lld\nsize=1000\nsasl_method=\nsasl_username=\n"
			 "sasl_sender=\npolicy_context=\n\n",
			 k, k, thread, domain_offset, i);
	return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

static void *run(void *arg)
{
	struct worker *w = arg;
	int fd = -1;
	long long seq;
	char dreq[1024];
	while (more(&seq)) {
		const char *req = request;
		size_t req_len = request_len;
		if (n_domains) {
			req = dreq;
			req_len = domain_request(dreq, sizeof(dreq), w->id, seq);
		}
		if (fd < 0 && (fd = connect_endpoint()) < 0) {
			w->errors++;
			usleep(10000);
			continue;
		}
		double t0 = now_s();
		if (write_all(fd, req, req_len) < 0 || read_reply(fd) < 0) {
			w->errors++;
			close(fd);
			fd = -1;
			continue;
		}
		double ms = (now_s() - t0) * 1000.0;
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 4096;
			w->lat = realloc(w->lat, w->cap * sizeof(double));
			if (!w->lat) {
				perror("realloc");
				exit(2);
			}
		}
		w->lat[w->n++] = ms;
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static char *read_request_file(const char *path, size_t *len_r)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		perror(path);
		exit(2);
	}
	size_t cap = 4096, n = 0, r;
	char *buf = malloc(cap + 3);
	while (buf && (r = fread(buf + n, 1, cap - n, fp)) > 0) {
		n += r;
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 3);
	}
	fclose(fp);
	if (!buf) {
		perror("malloc");
		exit(2);
	}
	/* Make it end with exactly one empty line. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0) {
		fprintf(stderr, "%s: empty request\n", path);
		exit(2);
	}
	buf[n++] = '\n';
	buf[n++] = '\n';
	buf[n] = 0;
	*len_r = n;
	return buf;
}

static void usage(void)
{
	fprintf(stderr, "usage: policy-load -c CONCURRENCY (-n REQUESTS | -d SECONDS) "
			"[-f request-file | -D DOMAINS [-o OFFSET]] inet:HOST:PORT|unix:/path\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int conc = 1, opt;
	double duration = 0;
	request = default_request;
	request_len = strlen(default_request);
	while ((opt = getopt(argc, argv, "c:n:d:f:D:o:h")) != -1) {
		switch (opt) {
		case 'c':
			conc = atoi(optarg);
			break;
		case 'n':
			total_requests = atoll(optarg);
			break;
		case 'd':
			duration = atof(optarg);
			break;
		case 'f':
			request = read_request_file(optarg, &request_len);
			break;
		case 'D':
			n_domains = atol(optarg);
			if (n_domains < 1)
				usage();
			break;
		case 'o':
			domain_offset = atol(optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1 || conc < 1 || (total_requests <= 0) == (duration <= 0))
		usage();
	endpoint = argv[optind];

	struct worker *ws = calloc((size_t)conc, sizeof(*ws));
	if (!ws) {
		perror("calloc");
		return 2;
	}
	double t0 = now_s();
	stop_at = t0 + duration;
	for (int i = 0; i < conc; i++) {
		ws[i].id = i;
		if (pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
			perror("pthread_create");
			return 2;
		}
	}
	size_t total = 0;
	long errors = 0;
	for (int i = 0; i < conc; i++) {
		pthread_join(ws[i].tid, NULL);
		total += ws[i].n;
		errors += ws[i].errors;
	}
	double elapsed = now_s() - t0;
	double *all = malloc((total ? total : 1) * sizeof(double));
	size_t k = 0;
	for (int i = 0; i < conc; i++) {
		if (ws[i].n)
			memcpy(all + k, ws[i].lat, ws[i].n * sizeof(double));
		k += ws[i].n;
		free(ws[i].lat);
	}
	qsort(all, total, sizeof(double), cmp_double);
	double p50 = total ? all[total / 2] : 0;
	double p99 = total ? all[(size_t)((double)(total - 1) * 0.99)] : 0;
	double mx = total ? all[total - 1] : 0;
	printf("concurrency %d: %zu requests in %.2f s: %.0f requests/s, "
	       "latency p50 %.3f ms, p99 %.3f ms, max %.3f ms, errors %ld",
	       conc, total, elapsed, elapsed > 0 ? (double)total / elapsed : 0.0, p50, p99, mx, errors);
	if (n_domains)
		printf(", pass %ld", atomic_load(&passes));
	printf("\n");
	free(all);
	free(ws);
	return errors ? 1 : 0;
}
