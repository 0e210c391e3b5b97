/*
 * dns.c - the one shared DNS resolver of a Sift process, on libunbound.
 *
 * sift_dns_init() creates one libunbound context: either the system's
 * resolver (/etc/resolv.conf and /etc/hosts) or the given forwarders
 * ("127.0.0.1:5353", "[::1]:53", ...). libunbound keeps its cache; DNSSEC
 * validation happens only if a trust anchor is configured (none is by
 * default, so answers come back insecure). Names that libunbound would
 * answer locally by default (RFC 1918/TEST-NET reverse zones, test.,
 * home.arpa.) are sent to the servers too. libunbound runs its work in a
 * background thread of its own (ub_ctx_async(ctx, 1)).
 *
 * Queries (sift_dns_query) are thread-safe and bounded by a deadline:
 *   - the caller allocates a struct dns_q (its own mutex and condition
 *     variable, a reference count of 2 under that mutex: one for the caller,
 *     one for the libunbound callback), starts it with ub_resolve_async() and waits on
 *     its condition variable until the deadline (CLOCK_MONOTONIC);
 *   - a dedicated event thread of ours polls ub_fd() and calls ub_process(),
 *     which runs the callbacks; a callback stores the ub_result in the query,
 *     signals the caller and drops its reference;
 *   - on timeout the caller marks the query abandoned and calls ub_cancel().
 *     If the cancel succeeds, libunbound guarantees the callback will never
 *     run, so the caller drops the callback's reference as well. If it fails
 *     the callback is running or about to run on the event thread: it sees
 *     the abandoned flag, frees the ub_result and drops its own reference.
 *     Whoever drops the last reference frees the query, so neither side can
 *     touch freed memory.
 *   - The answer is converted by the caller into one malloc'd block (struct
 *     sift_dns_result, the pointer and length arrays, then the record data,
 *     each record NUL-terminated) so that the caller frees it with free().
 *
 * The answer cache: libunbound's own cache still costs a round trip through
 * its background thread and ours (pipes, two thread wake-ups) per query, which
 * is most of a policy request's cost when SPF asks three questions of which
 * all are cached. So the converted answers (OK, NXDOMAIN, NODATA with a TTL
 * above 0; never TEMPFAIL or errors) are kept here too, until their TTL
 * runs out: DNS_CACHE_SETS sets of DNS_CACHE_WAYS entries keyed by the
 * lower-cased name without its final dot and the type, under one mutex
 * (held for the lookup and one memcpy). A hit returns a copy of the block
 * with its pointers moved and ttl set to the seconds left, without any
 * syscall. A full set drops the entry that expires first; answers over
 * DNS_CACHE_MAX_BLOCK bytes are not kept, nor an answer that would take
 * the entries over DNS_CACHE_MAX_BYTES in all (expired entries make room
 * as they are found). Init and shutdown empty it.
 *
 * sift_dns_start() and sift_dns_wait() split a query in two, so that a
 * caller launches many queries at once and collects them later (against one
 * deadline): start looks in the answer cache and otherwise hands the query
 * to libunbound (it counts as active, as a waiting query does); wait waits
 * on its condition variable as above and releases it. sift_dns_query is the
 * two in one call.
 *
 * sift_dns_shutdown() wakes every waiting query (they return TEMPFAIL),
 * waits for them to leave, stops the event thread and deletes the context.
 * Queries made before init or after shutdown return TEMPFAIL.
 *
 * Status mapping: rcode NXDOMAIN -> SIFT_DNS_NXDOMAIN; NOERROR with data ->
 * OK; NOERROR without data -> NODATA; SERVFAIL, other rcodes, libunbound
 * errors and timeouts -> TEMPFAIL; a malformed name (too long, empty label,
 * label over 63 octets) or a bad type -> SIFT_DNS_ERROR.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unbound.h>
#include <unistd.h>

#include "sift.h"

#define DNS_RCODE_NXDOMAIN 3
#define DNS_T_TXT	   16
#define DNS_MAX_NAME	   253

#define DNS_CACHE_SETS	    8192 /* a power of two */
#define DNS_CACHE_WAYS	    4
#define DNS_CACHE_MAX_BLOCK 4096
#define DNS_CACHE_MAX_BYTES (8u << 20) /* what the entries hold, in all */

struct dns_cache_entry {
	uint32_t hash;
	int rrtype;
	long long expires; /* sift_now_ms() */
	size_t size;	   /* of the result block */
	size_t bytes;	   /* the entry and its block, for cache.bytes */
	struct sift_dns_result *r;
	char name[]; /* lower-cased, no final dot */
};

static struct {
	pthread_mutex_t mu;
	struct dns_cache_entry *e[DNS_CACHE_SETS][DNS_CACHE_WAYS];
	size_t bytes; /* held by the entries: at most DNS_CACHE_MAX_BYTES */
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void cache_flush(void);

/* Counters for the metrics (sift_dns_stats). */
static atomic_ullong stat_queries, stat_cache_hits, stat_timeouts;

void sift_dns_stats(unsigned long long *queries_r, unsigned long long *timeouts_r,
		    unsigned long long *cache_hits_r)
{
	*queries_r = atomic_load_explicit(&stat_queries, memory_order_relaxed);
	*timeouts_r = atomic_load_explicit(&stat_timeouts, memory_order_relaxed);
	*cache_hits_r = atomic_load_explicit(&stat_cache_hits, memory_order_relaxed);
}

struct dns_q {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int refs;	/* under mu */
	bool delivered; /* the callback stored a result */
	bool done;	/* the caller may stop waiting */
	bool abandoned; /* the caller gave up; callback frees */
	int err;	/* libunbound error from the callback */
	struct ub_result *res;
	struct dns_q *prev, *next; /* pending list, under g.mu */
};

static struct {
	pthread_mutex_t mu;	/* ctx, stopping, active, pending, running */
	pthread_cond_t idle;	/* active dropped to 0 */
	pthread_cond_t started; /* the event thread is in its loop */
	bool running;		/* under mu */
	struct ub_ctx *ctx;
	bool stopping;
	int active; /* queries inside sift_dns_query */
	struct dns_q *pending;
	long default_timeout;
	pthread_t thread;
	int wake[2]; /* wakes the event thread for shutdown */
	atomic_bool quit;
	atomic_bool up; /* between init and shutdown: the cache answers */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .idle = PTHREAD_COND_INITIALIZER,
       .started = PTHREAD_COND_INITIALIZER,
       .wake = {-1, -1}};

/* ---- the event thread ---------------------------------------------------- */

static void *event_thread(void *arg)
{
	struct ub_ctx *ctx = arg;
	struct pollfd fds[2] = {{.fd = ub_fd(ctx), .events = POLLIN}, {.fd = g.wake[0], .events = POLLIN}};
	pthread_mutex_lock(&g.mu);
	g.running = true;
	pthread_cond_broadcast(&g.started);
	pthread_mutex_unlock(&g.mu);
	while (!atomic_load(&g.quit)) {
		int n = poll(fds, 2, 1000);
		if (n < 0 && errno != EINTR) {
			sift_log(LOG_ERR, "dns: poll: %s", strerror(errno));
			struct timespec ts = {0, 100000000};
			nanosleep(&ts, NULL);
			continue;
		}
		if (n > 0 && (fds[0].revents & (POLLIN | POLLERR | POLLHUP))) {
			int err = ub_process(ctx);
			if (err)
				sift_log(LOG_ERR, "dns: ub_process: %s", ub_strerror(err));
		}
	}
	return NULL;
}

/* ---- init / shutdown ------------------------------------------------------ */

/* Turns "IP", "IP:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 address into
 * libunbound's "IP@PORT" form. A bare IPv6 address that could be read as
 * ADDRESS:PORT as well ("::1:5353") is refused. */
static char *parse_server(const char *tok, char **err_r)
{
	char host[64];
	const char *port = NULL;
	size_t hlen;
	if (tok[0] == '[') {
		const char *close = strchr(tok, ']');
		if (!close)
			goto bad;
		hlen = (size_t)(close - tok - 1);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, tok + 1, hlen);
		if (close[1] == ':')
			port = close + 2;
		else if (close[1])
			goto bad;
	} else {
		const char *c = strchr(tok, ':');
		if (c && strchr(c + 1, ':')) {
			c = NULL; /* bare IPv6 address */
			/* "::1:5353" is an IPv6 address, but it reads just as
			 * well as ::1 port 5353: refuse what could be either,
			 * rather than pick one. */
			const char *last = strrchr(tok, ':');
			size_t digits = strspn(last + 1, "0123456789");
			size_t head = (size_t)(last - tok);
			if (digits > 0 && digits <= 5 && !last[1 + digits] && head > 0 &&
			    head < sizeof(host)) {
				memcpy(host, tok, head);
				host[head] = 0;
				unsigned char b6[16];
				if (inet_pton(AF_INET6, host, b6) == 1) {
					*err_r = sift_asprintf(
						"dns: ambiguous server address \"%s\": write [%s]:%s for "
						"port %s of %s, or [%s] for the IPv6 address %s (port 53)",
						tok, host, last + 1, last + 1, host, tok, tok);
					return NULL;
				}
			}
		}
		hlen = c ? (size_t)(c - tok) : strlen(tok);
		if (hlen >= sizeof(host))
			goto bad;
		memcpy(host, tok, hlen);
		if (c)
			port = c + 1;
	}
	host[hlen] = 0;
	unsigned char buf[16];
	if (inet_pton(AF_INET, host, buf) != 1 && inet_pton(AF_INET6, host, buf) != 1)
		goto bad;
	long p = 53;
	if (port) {
		char *end;
		errno = 0;
		p = strtol(port, &end, 10);
		if (!*port || *end || errno || p < 1 || p > 65535)
			goto bad;
	}
	return sift_asprintf("%s@%ld", host, p);
bad:
	*err_r = sift_asprintf("dns: bad server address \"%s\" (want IP, IP:PORT or [IPv6]:PORT)", tok);
	return NULL;
}

static int set_option(struct ub_ctx *ctx, const char *opt, const char *val, char **err_r)
{
	int err = ub_ctx_set_option(ctx, opt, val);
	if (err) {
		*err_r = sift_asprintf("dns: option %s %s: %s", opt, val, ub_strerror(err));
		return -1;
	}
	return 0;
}

static int add_servers(struct ub_ctx *ctx, const char *servers, char **err_r);

static int configure(struct ub_ctx *ctx, const char *servers, char **err_r)
{
	int err;
	if ((err = ub_ctx_async(ctx, 1)) != 0) {
		*err_r = sift_asprintf("dns: ub_ctx_async: %s", ub_strerror(err));
		return -1;
	}
	/* A forwarder on 127.0.0.1 (a local unbound, the tests' server) is
	 * normal for us; keep probing a forwarder that timed out instead of
	 * blacklisting it for 15 minutes. */
	if (set_option(ctx, "do-not-query-localhost:", "no", err_r) < 0 ||
	    set_option(ctx, "infra-keep-probing:", "yes", err_r) < 0)
		return -1;
	/* libunbound's default is 16 outgoing UDP queries at a time: 16
	 * queries that get no answer (a list whose servers are down; our
	 * callers give up on them, libunbound keeps retrying each for a
	 * while) would hold every one of them, and all other queries of the
	 * process would wait behind them and time out. As many as the
	 * unbound daemon allows (with libevent, as Debian builds it). */
	if (set_option(ctx, "outgoing-range:", "4096", err_r) < 0)
		return -1;
	/* and 10 TCP connections at a time: an answer too large for UDP
	 * (the TXT records at a busy domain's apex that SPF reads, large
	 * DKIM keys) is asked again over TCP, and a burst of those waited
	 * behind each other until libunbound gave up on them (SERVFAIL, a
	 * tempfail for the mail) */
	if (set_option(ctx, "outgoing-num-tcp:", "128", err_r) < 0)
		return -1;
	/* libunbound answers some names itself by default (RFC 1918 and
	 * TEST-NET reverse zones, test., home.arpa.) with NXDOMAIN. The site's
	 * resolver may well serve those (PTRs of internal clients, test zones),
	 * so ask it; only localhost, onion. and invalid. stay local. */
	if (set_option(ctx, "unblock-lan-zones:", "yes", err_r) < 0 ||
	    set_option(ctx, "insecure-lan-zones:", "yes", err_r) < 0)
		return -1;
	if (add_servers(ctx, servers, err_r) < 0)
		return -1;
	/* Removing local zones finalises the context: keep this last. */
	static const char *const unlocal[] = {"test.", "home.arpa."};
	for (size_t i = 0; i < sizeof(unlocal) / sizeof(unlocal[0]); i++) {
		if ((err = ub_ctx_zone_remove(ctx, unlocal[i])) != 0) {
			*err_r = sift_asprintf("dns: local zone %s: %s", unlocal[i], ub_strerror(err));
			return -1;
		}
	}
	return 0;
}

static int add_servers(struct ub_ctx *ctx, const char *servers, char **err_r)
{
	int err;
	if (!servers || !*servers) {
		if ((err = ub_ctx_resolvconf(ctx, NULL)) != 0) {
			*err_r = sift_asprintf("dns: reading /etc/resolv.conf: %s", ub_strerror(err));
			return -1;
		}
		if ((err = ub_ctx_hosts(ctx, NULL)) != 0)
			sift_log(LOG_WARNING, "dns: reading /etc/hosts: %s", ub_strerror(err));
		return 0;
	}
	char *copy = sift_strdup(servers), *save = NULL;
	int rc = 0, n = 0;
	for (char *tok = strtok_r(copy, ", \t\r\n", &save); tok && rc == 0;
	     tok = strtok_r(NULL, ", \t\r\n", &save)) {
		char *fwd = parse_server(tok, err_r);
		if (!fwd) {
			rc = -1;
			break;
		}
		if ((err = ub_ctx_set_fwd(ctx, fwd)) != 0) {
			*err_r = sift_asprintf("dns: forwarder %s: %s", tok, ub_strerror(err));
			rc = -1;
		}
		free(fwd);
		n++;
	}
	free(copy);
	if (rc == 0 && n == 0) {
		*err_r = sift_strdup("dns: no server in dns_servers");
		rc = -1;
	}
	return rc;
}

int sift_dns_init(const char *servers, long default_timeout_ms, char **err_r)
{
	pthread_mutex_lock(&g.mu);
	bool busy = g.ctx != NULL;
	pthread_mutex_unlock(&g.mu);
	if (busy) {
		*err_r = sift_strdup("dns: resolver already initialised");
		return -1;
	}
	struct ub_ctx *ctx = ub_ctx_create();
	if (!ctx) {
		*err_r = sift_strdup("dns: cannot create libunbound context");
		return -1;
	}
	if (configure(ctx, servers, err_r) < 0) {
		ub_ctx_delete(ctx);
		return -1;
	}
	if (pipe2(g.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		*err_r = sift_asprintf("dns: pipe: %s", strerror(errno));
		ub_ctx_delete(ctx);
		return -1;
	}
	atomic_store(&g.quit, false);
	int e = pthread_create(&g.thread, NULL, event_thread, ctx);
	if (e) {
		*err_r = sift_asprintf("dns: pthread_create: %s", strerror(e));
		close(g.wake[0]);
		close(g.wake[1]);
		g.wake[0] = g.wake[1] = -1;
		ub_ctx_delete(ctx);
		return -1;
	}
	/* Returns once the thread is in its loop, done with what starting a
	 * thread allocates: a process that forks next (the spam plugin's
	 * Hyperscan compiler) then forks while no other thread is inside the
	 * allocator, which matters under the sanitizers, whose allocators take
	 * no lock around fork(). */
	pthread_mutex_lock(&g.mu);
	while (!g.running)
		pthread_cond_wait(&g.started, &g.mu);
	g.ctx = ctx;
	g.stopping = false;
	g.default_timeout = default_timeout_ms > 0 ? default_timeout_ms : 10000;
	pthread_mutex_unlock(&g.mu);
	cache_flush();
	atomic_store(&g.up, true);
	return 0;
}

void sift_dns_shutdown(void)
{
	pthread_mutex_lock(&g.mu);
	if (!g.ctx || g.stopping) {
		pthread_mutex_unlock(&g.mu);
		return;
	}
	g.stopping = true;
	atomic_store(&g.up, false);
	for (struct dns_q *q = g.pending; q; q = q->next) {
		pthread_mutex_lock(&q->mu);
		q->done = true;
		pthread_cond_signal(&q->cond);
		pthread_mutex_unlock(&q->mu);
	}
	while (g.active > 0)
		pthread_cond_wait(&g.idle, &g.mu);
	struct ub_ctx *ctx = g.ctx;
	pthread_mutex_unlock(&g.mu);

	atomic_store(&g.quit, true);
	ssize_t w = write(g.wake[1], "x", 1);
	(void)w;
	pthread_join(g.thread, NULL);
	pthread_mutex_lock(&g.mu);
	g.running = false;
	pthread_mutex_unlock(&g.mu);
	close(g.wake[0]);
	close(g.wake[1]);
	g.wake[0] = g.wake[1] = -1;
	/* Queries still in libunbound's hands were cancelled or abandoned by
	 * their callers; deleting the context drops them without callbacks. */
	ub_ctx_delete(ctx);

	cache_flush(); /* no query is left to add to it */

	pthread_mutex_lock(&g.mu);
	g.ctx = NULL;
	g.stopping = false;
	pthread_mutex_unlock(&g.mu);
}

/* ---- queries ----------------------------------------------------------------- */

/* Drops one reference. The count lives under q->mu (not an atomic) so that
 * the last holder's free is ordered after the other side's unlock, in a way
 * thread checkers (helgrind) can see too. */
static void q_unref(struct dns_q *q)
{
	pthread_mutex_lock(&q->mu);
	bool last = --q->refs == 0;
	pthread_mutex_unlock(&q->mu);
	if (!last)
		return;
	if (q->res)
		ub_resolve_free(q->res);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

static void q_callback(void *arg, int err, struct ub_result *res)
{
	struct dns_q *q = arg;
	pthread_mutex_lock(&q->mu);
	if (q->abandoned) {
		if (res)
			ub_resolve_free(res);
	} else {
		q->res = res;
		q->err = err;
		q->delivered = true;
		q->done = true;
		pthread_cond_signal(&q->cond);
	}
	pthread_mutex_unlock(&q->mu);
	q_unref(q);
}

/* Checks a name in text form: <= 253 octets without the final dot, labels
 * of 1..63 octets. "." (the root) is allowed. Escapes are counted as
 * written, which errs on the strict side. */
static bool name_ok(const char *name)
{
	size_t len = strlen(name);
	if (len == 0)
		return false;
	if (len == 1 && name[0] == '.')
		return true;
	if (name[len - 1] == '.')
		len--;
	if (len > DNS_MAX_NAME)
		return false;
	size_t label = 0;
	for (size_t i = 0; i < len; i++) {
		if (name[i] == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (++label > 63) {
			return false;
		}
	}
	return label > 0;
}

static struct sift_dns_result *make_result(enum sift_dns_status st, int rrtype)
{
	struct sift_dns_result *r = sift_calloc(1, sizeof(*r));
	r->status = st;
	r->rrtype = rrtype;
	return r;
}

/* Builds the one-block result from a libunbound answer; *size_r is the
 * block's size. */
static struct sift_dns_result *convert(const struct ub_result *u, int rrtype, size_t *size_r)
{
	*size_r = sizeof(struct sift_dns_result);
	if (u->rcode == DNS_RCODE_NXDOMAIN || (!u->havedata && u->nxdomain)) {
		struct sift_dns_result *r = make_result(SIFT_DNS_NXDOMAIN, rrtype);
		r->ttl = u->ttl > 0 ? (unsigned)u->ttl : 0;
		r->secure = u->secure;
		return r;
	}
	if (u->rcode != 0 || u->bogus)
		return make_result(SIFT_DNS_TEMPFAIL, rrtype);
	size_t count = 0, bytes = 0;
	if (u->havedata)
		for (; u->data[count]; count++)
			bytes += (size_t)u->len[count] + 1;
	if (count == 0) {
		struct sift_dns_result *r = make_result(SIFT_DNS_NODATA, rrtype);
		r->ttl = u->ttl > 0 ? (unsigned)u->ttl : 0;
		r->secure = u->secure;
		return r;
	}
	size_t head = sizeof(struct sift_dns_result);
	size_t ptrs = count * sizeof(unsigned char *);
	size_t lens = count * sizeof(size_t);
	*size_r = head + ptrs + lens + bytes;
	struct sift_dns_result *r = sift_malloc(*size_r);
	const unsigned char **rr = (const unsigned char **)((char *)r + head);
	size_t *len = (size_t *)((char *)r + head + ptrs);
	unsigned char *data = (unsigned char *)r + head + ptrs + lens;
	memset(r, 0, head);
	r->status = SIFT_DNS_OK;
	r->rrtype = rrtype;
	r->ttl = u->ttl > 0 ? (unsigned)u->ttl : 0;
	r->secure = u->secure;
	r->count = count;
	r->rr = rr;
	r->len = len;
	for (size_t i = 0; i < count; i++) {
		const unsigned char *src = (const unsigned char *)u->data[i];
		size_t n = (size_t)u->len[i];
		rr[i] = data;
		if (rrtype == DNS_T_TXT) {
			/* Concatenate the character-strings. The text is never
			 * longer than the rdata, so the space suffices. */
			size_t o = 0, t = 0;
			while (o < n) {
				size_t cl = src[o++];
				if (cl > n - o)
					cl = n - o; /* malformed: keep what is there */
				memcpy(data + t, src + o, cl);
				t += cl;
				o += cl;
			}
			data[t] = 0;
			len[i] = t;
			data += n + 1;
		} else {
			memcpy(data, src, n);
			data[n] = 0;
			len[i] = n;
			data += n + 1;
		}
	}
	return r;
}

/* ---- the answer cache ---------------------------------------------------------- */

/* The cache key: name lower-cased without its final dot; its FNV-1a hash. */
static size_t cache_key(const char *name, char *key, uint32_t *hash_r)
{
	size_t n = strlen(name);
	if (n > 1 && name[n - 1] == '.')
		n--;
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		key[i] = c;
		h = (h ^ (unsigned char)c) * 16777619u;
	}
	key[n] = 0;
	*hash_r = h;
	return n;
}

/* A copy of a result block of `size` bytes, its pointers moved into it. */
static struct sift_dns_result *block_copy(const struct sift_dns_result *src, size_t size)
{
	struct sift_dns_result *r = sift_malloc(size);
	memcpy(r, src, size);
	if (r->count) {
		ptrdiff_t d = (const char *)r - (const char *)src;
		r->rr = (const unsigned char **)((char *)src->rr + d);
		r->len = (size_t *)((char *)src->len + d);
		for (size_t i = 0; i < r->count; i++)
			r->rr[i] = (const unsigned char *)src->rr[i] + d;
	}
	return r;
}

static void cache_entry_free(struct dns_cache_entry *e)
{
	if (e) {
		free(e->r);
		free(e);
	}
}

static void cache_flush(void)
{
	pthread_mutex_lock(&cache.mu);
	for (size_t s = 0; s < DNS_CACHE_SETS; s++)
		for (size_t w = 0; w < DNS_CACHE_WAYS; w++) {
			cache_entry_free(cache.e[s][w]);
			cache.e[s][w] = NULL;
		}
	cache.bytes = 0;
	pthread_mutex_unlock(&cache.mu);
}

static struct sift_dns_result *cache_get(const char *key, uint32_t hash, int rrtype)
{
	struct sift_dns_result *r = NULL;
	long long now = sift_now_ms();
	pthread_mutex_lock(&cache.mu);
	struct dns_cache_entry **set = cache.e[hash & (DNS_CACHE_SETS - 1)];
	for (size_t w = 0; w < DNS_CACHE_WAYS; w++) {
		struct dns_cache_entry *e = set[w];
		if (!e || e->hash != hash || e->rrtype != rrtype || strcmp(e->name, key) != 0)
			continue;
		if (e->expires <= now) {
			cache.bytes -= e->bytes;
			cache_entry_free(e);
			set[w] = NULL;
			break;
		}
		r = block_copy(e->r, e->size);
		r->ttl = (unsigned)((e->expires - now + 999) / 1000);
		break;
	}
	pthread_mutex_unlock(&cache.mu);
	return r;
}

/* Keeps a copy of r (of `size` bytes) when it may be cached. */
static void cache_put(const char *key, size_t klen, uint32_t hash, const struct sift_dns_result *r,
		      size_t size)
{
	if (r->ttl == 0 || size > DNS_CACHE_MAX_BLOCK ||
	    (r->status != SIFT_DNS_OK && r->status != SIFT_DNS_NXDOMAIN && r->status != SIFT_DNS_NODATA))
		return;
	struct dns_cache_entry *e = sift_malloc(sizeof(*e) + klen + 1);
	memcpy(e->name, key, klen + 1);
	e->hash = hash;
	e->rrtype = r->rrtype;
	e->expires = sift_now_ms() + (long long)r->ttl * 1000;
	e->size = size;
	e->bytes = sizeof(*e) + klen + 1 + size;
	e->r = block_copy(r, size);
	pthread_mutex_lock(&cache.mu);
	struct dns_cache_entry **set = cache.e[hash & (DNS_CACHE_SETS - 1)];
	size_t victim = 0;
	for (size_t w = 0; w < DNS_CACHE_WAYS; w++) {
		struct dns_cache_entry *o = set[w];
		if (!o || (o->hash == hash && o->rrtype == e->rrtype && strcmp(o->name, key) == 0)) {
			victim = w;
			break;
		}
		if (o->expires < set[victim]->expires)
			victim = w;
	}
	struct dns_cache_entry *old = set[victim];
	size_t freed = old ? old->bytes : 0;
	if (cache.bytes - freed + e->bytes > DNS_CACHE_MAX_BYTES) {
		/* full: the answer is not kept */
		pthread_mutex_unlock(&cache.mu);
		cache_entry_free(e);
		return;
	}
	cache.bytes += e->bytes - freed;
	set[victim] = e;
	pthread_mutex_unlock(&cache.mu);
	cache_entry_free(old);
}

/* A started query (sift_dns_start): its name and type for the cache, the
 * libunbound query, or the answer the cache gave at once. */
struct sift_dns_pending {
	struct dns_q *q;	   /* NULL when answered at once */
	struct sift_dns_result *r; /* the answer when q is NULL */
	struct ub_ctx *ctx;
	int async_id, rrtype;
	uint32_t hash;
	size_t klen;
	long long started; /* sift_now_ms() */
	char key[DNS_MAX_NAME + 2];
};

struct sift_dns_pending *sift_dns_start(const char *name, int rrtype)
{
	struct sift_dns_pending *p = sift_calloc(1, sizeof(*p));
	p->rrtype = rrtype;
	p->started = sift_now_ms();
	if (!name || !name_ok(name) || rrtype < 1 || rrtype > 65535) {
		p->r = make_result(SIFT_DNS_ERROR, rrtype);
		return p;
	}
	p->klen = cache_key(name, p->key, &p->hash);
	atomic_fetch_add_explicit(&stat_queries, 1, memory_order_relaxed);
	if (atomic_load(&g.up)) {
		p->r = cache_get(p->key, p->hash, rrtype);
		if (p->r) {
			atomic_fetch_add_explicit(&stat_cache_hits, 1, memory_order_relaxed);
			return p;
		}
	}

	struct dns_q *q = sift_calloc(1, sizeof(*q));
	pthread_mutex_init(&q->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&q->cond, &ca);
	pthread_condattr_destroy(&ca);
	q->refs = 2;

	pthread_mutex_lock(&g.mu);
	if (!g.ctx || g.stopping) {
		pthread_mutex_unlock(&g.mu);
		q->refs = 1;
		q_unref(q);
		p->r = make_result(SIFT_DNS_TEMPFAIL, rrtype);
		return p;
	}
	p->ctx = g.ctx;
	g.active++;
	q->next = g.pending;
	if (g.pending)
		g.pending->prev = q;
	g.pending = q;
	pthread_mutex_unlock(&g.mu);
	p->q = q;

	int err = ub_resolve_async(p->ctx, name, rrtype, 1 /* IN */, q, q_callback, &p->async_id);
	if (err) {
		/* The callback will not run. */
		sift_log(LOG_WARNING, "dns: query %s/%d: %s", name, rrtype, ub_strerror(err));
		q_unref(q);
		p->r = make_result(err == UB_SYNTAX ? SIFT_DNS_ERROR : SIFT_DNS_TEMPFAIL, rrtype);
		pthread_mutex_lock(&q->mu);
		q->done = true; /* nothing to wait for */
		pthread_mutex_unlock(&q->mu);
	}
	return p;
}

/* The answer of a query whose wait ended: delivered or not. */
static struct sift_dns_result *pending_answer(struct sift_dns_pending *p)
{
	struct dns_q *q = p->q;
	pthread_mutex_lock(&q->mu);
	bool delivered = q->delivered;
	if (!delivered)
		q->abandoned = true;
	pthread_mutex_unlock(&q->mu);
	struct sift_dns_result *r;
	if (p->r) {
		r = p->r; /* ub_resolve_async failed */
	} else if (delivered) {
		if (q->err) {
			sift_log(LOG_DEBUG, "dns: query %s/%d: %s", p->key, p->rrtype, ub_strerror(q->err));
			r = make_result(SIFT_DNS_TEMPFAIL, p->rrtype);
		} else if (!q->res) {
			r = make_result(SIFT_DNS_TEMPFAIL, p->rrtype);
		} else {
			size_t size;
			r = convert(q->res, p->rrtype, &size);
			cache_put(p->key, p->klen, p->hash, r, size);
		}
	} else {
		sift_log(LOG_DEBUG, "dns: query %s/%d: timed out after %lld ms", p->key, p->rrtype,
			 sift_now_ms() - p->started);
		atomic_fetch_add_explicit(&stat_timeouts, 1, memory_order_relaxed);
		/* ub_cancel succeeds only if the callback will never run;
		 * then its reference is ours to drop. */
		if (ub_cancel(p->ctx, p->async_id) == UB_NOERROR)
			q_unref(q);
		r = make_result(SIFT_DNS_TEMPFAIL, p->rrtype);
	}
	pthread_mutex_lock(&g.mu);
	if (q->prev)
		q->prev->next = q->next;
	else
		g.pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	if (--g.active == 0)
		pthread_cond_broadcast(&g.idle);
	pthread_mutex_unlock(&g.mu);
	q_unref(q);
	return r;
}

struct sift_dns_result *sift_dns_wait(struct sift_dns_pending *p, long timeout_ms)
{
	if (!p)
		return make_result(SIFT_DNS_ERROR, 0);
	struct sift_dns_result *r;
	if (!p->q) {
		r = p->r;
	} else {
		if (timeout_ms > 0) {
			struct timespec deadline;
			sift_timespec_in(CLOCK_MONOTONIC, timeout_ms, &deadline);
			pthread_mutex_lock(&p->q->mu);
			while (!p->q->done)
				if (pthread_cond_timedwait(&p->q->cond, &p->q->mu, &deadline) == ETIMEDOUT)
					break;
			pthread_mutex_unlock(&p->q->mu);
		}
		r = pending_answer(p);
	}
	free(p);
	return r;
}

struct sift_dns_result *sift_dns_query(const char *name, int rrtype, long timeout_ms)
{
	if (timeout_ms <= 0) {
		pthread_mutex_lock(&g.mu);
		timeout_ms = g.default_timeout > 0 ? g.default_timeout : 10000;
		pthread_mutex_unlock(&g.mu);
	}
	return sift_dns_wait(sift_dns_start(name, rrtype), timeout_ms);
}

/* ---- wire-format helpers ----------------------------------------------------- */

int sift_dns_name_from_wire(const unsigned char *wire, size_t len, char *name_r, size_t n)
{
	size_t o = 0, out = 0;
	if (n == 0)
		return -1;
	for (;;) {
		if (o >= len)
			return -1;
		size_t l = wire[o++];
		if (l == 0)
			break;
		if (l > 63 || l > len - o)
			return -1; /* compression pointers or truncated data */
		if (out > 0) {
			if (out + 1 >= n)
				return -1;
			name_r[out++] = '.';
		}
		for (size_t i = 0; i < l; i++) {
			unsigned char c = wire[o + i];
			char esc[5];
			size_t el;
			if (c == '.' || c == '\\') {
				esc[0] = '\\';
				esc[1] = (char)c;
				el = 2;
			} else if (c <= 0x20 || c >= 0x7f) {
				snprintf(esc, sizeof(esc), "\\%03u", c);
				el = 4;
			} else {
				esc[0] = (char)c;
				el = 1;
			}
			if (out + el >= n)
				return -1;
			memcpy(name_r + out, esc, el);
			out += el;
		}
		o += l;
		if (o >= 255)
			return -1; /* with its final 0, over 255 octets (RFC 1035) */
	}
	if (out == 0) {
		if (n < 2)
			return -1;
		name_r[out++] = '.';
	}
	name_r[out] = 0;
	return (int)o;
}

int sift_dns_mx_name(const unsigned char *rr, size_t len, unsigned *pref_r, char *name_r, size_t n)
{
	if (len < 3)
		return -1;
	if (pref_r)
		*pref_r = (unsigned)rr[0] << 8 | rr[1];
	int used = sift_dns_name_from_wire(rr + 2, len - 2, name_r, n);
	return used < 0 ? -1 : 0;
}
