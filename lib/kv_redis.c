/*
 * kv_redis.c - the "redis:" key-value backend (hiredis), so that several
 * filterd/policyd processes on several hosts share one set of counters
 * (rate limits, greylisting). Redis is the distributed engine; this file is
 * only a careful client.
 *
 * Spec (the value of state_store):
 *   redis:HOST:PORT[,option=value...]      redis:127.0.0.1:6379, redis:localhost:6379
 *   redis:[IPV6]:PORT[,...]                redis:[::1]:6379
 *   redis:unix:/PATH[,...]                 redis:unix:/run/redis/redis.sock
 * Options (comma separated, no spaces needed):
 *   password=SECRET    AUTH after connecting (never logged)
 *   username=NAME      Redis 6 ACL user (AUTH NAME SECRET)
 *   db=N               SELECT N after connecting (default 0)
 *   prefix=TEXT        prepended to every key (default "sift:")
 *   connect_timeout=T  resolve + connect (and AUTH/SELECT) deadline (default
 *                      500ms)
 *   timeout=T          deadline of one command (default 500ms): sending it
 *                      and its whole reply, not only each read and write;
 *                      a reply over RDS_MAX_REPLY bytes fails the command
 *   pool=N             connections at most (default 16); a caller finding
 *                      all of them busy waits up to `timeout` for one
 *   retry_interval=T   after a failed connect, calls fail at once for this
 *                      long instead of each waiting for connect_timeout
 *                      (default 1s); then the next call tries again
 * Times take the units of the configuration (ms s m h; bare = seconds).
 *
 * Atomic increment-with-expiry runs server-side as one Lua script (EVALSHA,
 * falling back to EVAL when Redis answers NOSCRIPT, e.g. after a restart or
 * SCRIPT FLUSH): EXISTS, INCRBY, and PEXPIRE only when the key was created,
 * which is exactly the memory: backend's semantics. Redis runs a script
 * atomically, so concurrent increments from any number of hosts are exact.
 * A batch of writes (sift_kv_write: counts, sets, deletes, as the spam
 * plugin's Bayes learning makes them) is one EVAL too: Redis executes a
 * command only once it has read all of it, and a script alone, so the
 * batch lands whole or not at all, even when the connection is lost while
 * it is being sent.
 *
 * A HOST that is a name is resolved for each new connection through the
 * process's shared resolver (lib/dns.c: its cache, dns_servers, and
 * /etc/hosts when it uses the system's resolver), A records first, AAAA
 * when there is none; resolving and connecting share the connect_timeout
 * deadline (hiredis would call getaddrinfo(), which nothing bounds: a dead
 * DNS server would hold every caller for the libc resolver's retries). A
 * name is not resolved once at configuration load: a daemon that starts
 * while DNS is down still starts (as it does while Redis is down), and a
 * reconnect follows the name to a new address (failover by DNS) once the
 * cached answer's TTL has run out. A process without the shared resolver
 * (sift_dns_init not called) cannot use a name: give an address.
 *
 * Connections: a pool of at most `pool` connections, created lazily. Each
 * call takes one connection for its command and gives it back. A connection
 * with an I/O or protocol error is closed, never reused; the next call opens
 * a new one, so a restarted Redis is picked up without restarting the
 * daemon. A command failing with end-of-file or a reset on a connection
 * that sat idle in the pool (the typical sign of a Redis restart: the old
 * server is gone and never executed it) is retried once on a fresh
 * connection; a timeout is never retried, since the command may have run.
 * Failures return -1 (the caller decides between fail-open and tempfail);
 * a connect failure and the recovery are each logged once.
 *
 * Threading: the pool is protected by one mutex and a condition variable; a
 * connection is used by one thread at a time (hiredis contexts are not
 * thread-safe). No lock is held during network I/O.
 */
#ifdef SIFT_HAVE_REDIS

#include <arpa/inet.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "kv_impl.h"
#include "sift.h"

#define RDS_DEFAULT_POOL 16
#define RDS_MAX_POOL	 1024

static const char incr_script[] = "local e = redis.call('EXISTS', KEYS[1])\n"
				  "local v = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
				  "if e == 0 and tonumber(ARGV[2]) > 0 then\n"
				  "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
				  "end\n"
				  "return v\n";

struct rds_conn {
	redisContext *c;
	struct rds_conn *next;
};

struct kv_redis {
	/* configuration (read-only after open) */
	char *host; /* NULL for unix sockets */
	int port;
	char *path; /* unix socket path */
	char *password, *username;
	long long db;
	char *prefix;
	size_t prefix_len;
	long long connect_timeout, timeout, retry_interval; /* ms */
	size_t pool_max;
	char *where; /* "127.0.0.1:6379" or "unix:/path", for logs */

	/* state, under mu */
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct rds_conn *idle;
	size_t total;	      /* open or being opened */
	long long down_until; /* sift_now_ms(); 0 = up */
	bool down_logged;
	char sha[41]; /* the script's SHA1 as Redis reported it */
	/* command errors: logged at most once per CMD_ERR_LOG_MS, with the
	 * number left unsaid since (a slow Redis fails every call) */
	long long err_logged_at;
	unsigned long err_unsaid;
};

#define CMD_ERR_LOG_MS 10000

/* A failed command, logged unless one was within CMD_ERR_LOG_MS. */
static void cmd_error(struct kv_redis *r, const char *cmd, const char *why)
{
	long long now = sift_now_ms();
	pthread_mutex_lock(&r->mu);
	bool say = r->err_logged_at == 0 || now - r->err_logged_at >= CMD_ERR_LOG_MS;
	unsigned long unsaid = r->err_unsaid;
	if (say) {
		r->err_logged_at = now;
		r->err_unsaid = 0;
	} else {
		r->err_unsaid++;
	}
	pthread_mutex_unlock(&r->mu);
	if (!say)
		return;
	if (unsaid)
		sift_log(LOG_ERR,
			 "state store redis %s: %s: %s (and %lu more failed calls since the last such line)",
			 r->where, cmd, why, unsaid);
	else
		sift_log(LOG_ERR, "state store redis %s: %s: %s", r->where, cmd, why);
}

/* ---- spec parsing ------------------------------------------------------------ */

static int parse_opt_time(const char *name, const char *v, long long *r, char **err_r)
{
	if (sift_parse_time_ms(v, r) < 0 || *r <= 0 || *r > 3600000) {
		*err_r = sift_asprintf("redis: bad %s value \"%s\"", name, v);
		return -1;
	}
	return 0;
}

static int parse_opt_int(const char *name, const char *v, long long min, long long max, long long *r,
			 char **err_r)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (!*v || *end || errno || x < min || x > max) {
		*err_r = sift_asprintf("redis: bad %s value \"%s\" (%lld..%lld)", name, v, min, max);
		return -1;
	}
	*r = x;
	return 0;
}

static void rds_free_cfg(struct kv_redis *r)
{
	free(r->host);
	free(r->path);
	free(r->password);
	free(r->username);
	free(r->prefix);
	free(r->where);
}

static int parse_spec(struct kv_redis *r, const char *params, char **err_r)
{
	r->db = 0;
	r->connect_timeout = 500;
	r->timeout = 500;
	r->retry_interval = 1000;
	r->pool_max = RDS_DEFAULT_POOL;
	r->prefix = sift_strdup("sift:");

	char *copy = sift_strdup(params);
	char *save = NULL;
	char *addr = strtok_r(copy, ",", &save);
	int rc = -1;
	if (!addr || !*sift_trim(addr)) {
		*err_r = sift_strdup("redis: missing address (redis:HOST:PORT or redis:unix:/PATH)");
		goto out;
	}
	addr = sift_trim(addr);
	if (strncmp(addr, "unix:", 5) == 0) {
		if (addr[5] != '/') {
			*err_r = sift_asprintf("redis: unix socket path must be absolute: \"%s\"", addr + 5);
			goto out;
		}
		r->path = sift_strdup(addr + 5);
		r->where = sift_asprintf("unix:%s", r->path);
	} else {
		const char *portp;
		if (addr[0] == '[') {
			char *close = strchr(addr, ']');
			if (!close || close[1] != ':') {
				*err_r = sift_asprintf("redis: bad address \"%s\" (want [IPV6]:PORT)", addr);
				goto out;
			}
			r->host = sift_strndup(addr + 1, (size_t)(close - addr - 1));
			portp = close + 2;
		} else {
			char *colon = strrchr(addr, ':');
			if (!colon || colon == addr) {
				*err_r = sift_asprintf("redis: bad address \"%s\" (want HOST:PORT)", addr);
				goto out;
			}
			r->host = sift_strndup(addr, (size_t)(colon - addr));
			portp = colon + 1;
		}
		long long port;
		if (parse_opt_int("port", portp, 1, 65535, &port, err_r) < 0)
			goto out;
		r->port = (int)port;
		r->where = sift_asprintf("%s:%d", r->host, r->port);
	}
	bool after_password = false;
	for (char *it = strtok_r(NULL, ",", &save); it; it = strtok_r(NULL, ",", &save)) {
		it = sift_trim(it);
		if (!*it)
			continue;
		char *eq = strchr(it, '=');
		if (!eq) {
			/* after password=, this may be the rest of a password
			 * with a comma: not quoted */
			*err_r = after_password
					 ? sift_strdup("redis: option without value after password= (a "
						       "password cannot contain a comma)")
					 : sift_asprintf("redis: option without value: \"%s\"", it);
			goto out;
		}
		after_password = false;
		*eq = 0;
		const char *v = eq + 1;
		long long n;
		if (strcmp(it, "password") == 0) {
			free(r->password);
			r->password = sift_strdup(v);
			after_password = true;
		} else if (strcmp(it, "username") == 0) {
			free(r->username);
			r->username = sift_strdup(v);
		} else if (strcmp(it, "db") == 0) {
			if (parse_opt_int("db", v, 0, 1000000, &r->db, err_r) < 0)
				goto out;
		} else if (strcmp(it, "prefix") == 0) {
			free(r->prefix);
			r->prefix = sift_strdup(v);
		} else if (strcmp(it, "connect_timeout") == 0) {
			if (parse_opt_time(it, v, &r->connect_timeout, err_r) < 0)
				goto out;
		} else if (strcmp(it, "timeout") == 0) {
			if (parse_opt_time(it, v, &r->timeout, err_r) < 0)
				goto out;
		} else if (strcmp(it, "retry_interval") == 0) {
			if (parse_opt_time(it, v, &r->retry_interval, err_r) < 0)
				goto out;
		} else if (strcmp(it, "pool") == 0) {
			if (parse_opt_int("pool", v, 1, RDS_MAX_POOL, &n, err_r) < 0)
				goto out;
			r->pool_max = (size_t)n;
		} else {
			*err_r = sift_asprintf("redis: unknown option \"%s\"", it);
			goto out;
		}
	}
	if (r->username && !r->password) {
		*err_r = sift_strdup("redis: username needs a password");
		goto out;
	}
	r->prefix_len = strlen(r->prefix);
	rc = 0;
out:
	free(copy);
	return rc;
}

/* ---- connections ------------------------------------------------------------- */

static struct timeval tv_of(long long ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	return tv;
}

/* The most reply bytes one command reads (a server that sends more is
 * treated as broken). */
#define RDS_MAX_REPLY (8u << 20)

static void *cmd_fail(redisContext *c, int type, int err, const char *what)
{
	c->err = type;
	snprintf(c->errstr, sizeof(c->errstr), "%s", what);
	errno = err;
	return NULL;
}

/* Waits until fd is ready for events or deadline (sift_now_ms) passes. */
static int wait_fd(redisContext *c, short events, long long deadline)
{
	for (;;) {
		long long left = deadline - sift_now_ms();
		if (left <= 0)
			return -1;
		struct pollfd pfd = {.fd = c->fd, .events = events};
		int n = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* One command, sent and answered within ms milliseconds in all (the
 * socket timeouts bound each read and write only, so a server trickling
 * its answer could hold the caller for ever), its reply read up to
 * RDS_MAX_REPLY bytes. The reply, or NULL with c->err set (the connection
 * is then closed by rds_give: an answer may still be on its way). */
static redisReply *cmd_by(redisContext *c, int argc, const char **argv, const size_t *lens, long long ms)
{
	long long deadline = sift_now_ms() + ms;
	if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK)
		return NULL;
	int done = 0;
	while (!done) {
		if (wait_fd(c, POLLOUT, deadline) < 0)
			return cmd_fail(c, REDIS_ERR_IO, ETIMEDOUT, "command not sent within the timeout");
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return NULL;
	}
	size_t got = 0;
	for (;;) {
		void *reply = NULL;
		if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
			return NULL;
		if (reply)
			return reply;
		if (wait_fd(c, POLLIN, deadline) < 0)
			return cmd_fail(c, REDIS_ERR_IO, ETIMEDOUT, "no whole answer within the timeout");
		char buf[16384];
		ssize_t n = read(c->fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return cmd_fail(c, REDIS_ERR_IO, errno, strerror(errno));
		if (n == 0)
			return cmd_fail(c, REDIS_ERR_EOF, 0, "Server closed the connection");
		got += (size_t)n;
		if (got > RDS_MAX_REPLY)
			return cmd_fail(c, REDIS_ERR_OTHER, EMSGSIZE, "answer over 8 MB");
		if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK)
			return cmd_fail(c, REDIS_ERR_PROTOCOL, EPROTO, c->reader->errstr);
	}
}

/* Runs one setup command; returns the reply or NULL (error put in *why). */
static int setup_cmd(redisContext *c, long long ms, char **why, int argc, const char **argv)
{
	redisReply *rep = cmd_by(c, argc, argv, NULL, ms);
	if (!rep) {
		*why = sift_strdup(c->errstr[0] ? c->errstr : "connection error");
		return -1;
	}
	int rc = 0;
	if (rep->type == REDIS_REPLY_ERROR) {
		*why = sift_asprintf("%s: %.*s", argv[0], (int)rep->len, rep->str);
		rc = -1;
	}
	freeReplyObject(rep);
	return rc;
}

/* The addresses of r->host as text ("192.0.2.1", "2001:db8::1"), through
 * the process's shared resolver (lib/dns.c: its cache, its dns_servers,
 * /etc/hosts when it uses the system's) by `deadline`: the A records, or
 * the AAAA records when there is no A. hiredis would resolve a name with
 * getaddrinfo(), which no timeout bounds. NULL-terminated, malloc'd (free
 * each and the array); NULL with *why. */
static char **rds_resolve(const struct kv_redis *r, long long deadline, char **why)
{
	static const int types[2] = {1 /* A */, 28 /* AAAA */};
	struct sift_dns_pending *p[2] = {sift_dns_start(r->host, types[0]),
					 sift_dns_start(r->host, types[1])};
	char **addrs = NULL;
	size_t n = 0;
	enum sift_dns_status st = SIFT_DNS_NODATA;
	for (int i = 0; i < 2; i++) {
		long long left = deadline - sift_now_ms();
		/* An AAAA answer is not waited for once A gave addresses. */
		struct sift_dns_result *res = sift_dns_wait(p[i], n || left <= 0 ? 0 : (long)left);
		if (n) {
			free(res);
			continue;
		}
		if (res->status != SIFT_DNS_OK && res->status != SIFT_DNS_NODATA && st != SIFT_DNS_NXDOMAIN)
			st = res->status;
		for (size_t j = 0; j < res->count; j++) {
			char text[INET6_ADDRSTRLEN];
			int af = res->len[j] == 4 ? AF_INET : AF_INET6;
			if ((res->len[j] != 4 && res->len[j] != 16) ||
			    !inet_ntop(af, res->rr[j], text, sizeof(text)))
				continue;
			addrs = sift_realloc(addrs, (n + 2) * sizeof(char *));
			addrs[n++] = sift_strdup(text);
			addrs[n] = NULL;
		}
		free(res);
	}
	if (!n)
		*why = sift_asprintf("resolving %s: %s", r->host,
				     st == SIFT_DNS_NXDOMAIN ? "no such name"
				     : st == SIFT_DNS_TEMPFAIL
					     ? "no answer within the connect timeout (or a DNS failure)"
				     : st == SIFT_DNS_NODATA ? "no address"
							     : "bad name");
	return addrs;
}

/* A TCP connection to r->host, by `deadline`: to the address itself, or to
 * each address of the name in turn (rds_resolve) until one answers. */
static redisContext *rds_connect_tcp(struct kv_redis *r, long long deadline, char **why)
{
	unsigned char bin[16];
	if (inet_pton(AF_INET, r->host, bin) == 1 || inet_pton(AF_INET6, r->host, bin) == 1)
		return redisConnectWithTimeout(r->host, r->port, tv_of(r->connect_timeout));
	char **addrs = rds_resolve(r, deadline, why);
	if (!addrs)
		return NULL;
	redisContext *c = NULL;
	for (size_t i = 0; addrs[i]; i++) {
		long long left = deadline - sift_now_ms();
		if (left <= 0) {
			if (!c)
				*why = sift_asprintf("%s: no connection within the connect timeout", r->host);
			break;
		}
		if (c)
			redisFree(c);
		c = redisConnectWithTimeout(addrs[i], r->port, tv_of(left));
		if (!c || !c->err)
			break;
	}
	for (size_t i = 0; addrs[i]; i++)
		free(addrs[i]);
	free(addrs);
	return c;
}

/* Opens and prepares one connection (no lock held). NULL + *why. */
static redisContext *rds_connect(struct kv_redis *r, char *sha_r, char **why)
{
	struct timeval ctv = tv_of(r->connect_timeout);
	long long deadline = sift_now_ms() + r->connect_timeout;
	redisContext *c =
		r->path ? redisConnectUnixWithTimeout(r->path, ctv) : rds_connect_tcp(r, deadline, why);
	if (!c) {
		if (!*why)
			*why = sift_strdup("out of memory");
		return NULL;
	}
	if (c->err) {
		*why = sift_strdup(c->errstr);
		redisFree(c);
		return NULL;
	}
	/* Setup under the connect deadline, then the command timeout. */
	redisSetTimeout(c, ctv);
	if (r->password) {
		const char *argv[3] = {"AUTH", r->username ? r->username : r->password, r->password};
		if (setup_cmd(c, r->connect_timeout, why, r->username ? 3 : 2, argv) < 0)
			goto fail;
	}
	if (r->db) {
		char db[24];
		snprintf(db, sizeof(db), "%lld", r->db);
		const char *argv[2] = {"SELECT", db};
		if (setup_cmd(c, r->connect_timeout, why, 2, argv) < 0)
			goto fail;
	}
	{
		const char *argv[3] = {"SCRIPT", "LOAD", incr_script};
		redisReply *rep = cmd_by(c, 3, argv, NULL, r->connect_timeout);
		if (!rep) {
			*why = sift_strdup(c->errstr[0] ? c->errstr : "connection error");
			goto fail;
		}
		if (rep->type != REDIS_REPLY_STRING || rep->len != 40) {
			*why = sift_asprintf("SCRIPT LOAD: %.*s", (int)(rep->str ? rep->len : 0),
					     rep->str ? rep->str : "");
			freeReplyObject(rep);
			goto fail;
		}
		memcpy(sha_r, rep->str, 40);
		sha_r[40] = 0;
		freeReplyObject(rep);
	}
	redisSetTimeout(c, tv_of(r->timeout));
	return c;
fail:
	redisFree(c);
	return NULL;
}

/* Takes a connection: an idle one (*reused_r = true), or a new one. NULL
 * when Redis is down, the pool is exhausted past the timeout, or the
 * connect failed. */
/* An idle connection the server has closed (restarted, its idle
 * timeout) or written to unasked is readable: it is not reused, so that a
 * command is not sent into it and then resent (see stale_conn_error). */
static bool closed_by_server(const redisContext *c)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	return poll(&p, 1, 0) != 0;
}

static redisContext *rds_take(struct kv_redis *r, bool *reused_r, bool force_new)
{
	long long deadline = sift_now_ms() + r->timeout;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		if (r->down_until && sift_now_ms() < r->down_until) {
			pthread_mutex_unlock(&r->mu);
			return NULL;
		}
		if (r->idle && !force_new) {
			struct rds_conn *pc = r->idle;
			r->idle = pc->next;
			redisContext *c = pc->c;
			free(pc);
			if (closed_by_server(c)) {
				redisFree(c);
				r->total--;
				continue;
			}
			pthread_mutex_unlock(&r->mu);
			*reused_r = true;
			return c;
		}
		if (r->total < r->pool_max || (force_new && r->idle)) {
			if (force_new && r->idle && r->total >= r->pool_max) {
				/* Replace an idle connection: likely stale too. */
				struct rds_conn *pc = r->idle;
				r->idle = pc->next;
				redisFree(pc->c);
				free(pc);
				r->total--;
			}
			r->total++;
			pthread_mutex_unlock(&r->mu);
			char sha[41], *why = NULL;
			redisContext *c = rds_connect(r, sha, &why);
			pthread_mutex_lock(&r->mu);
			if (!c) {
				r->total--;
				r->down_until = sift_now_ms() + r->retry_interval;
				if (!r->down_logged)
					sift_log(LOG_ERR,
						 "state store redis %s: %s; calls fail until it is back "
						 "(next attempt in %lldms)",
						 r->where, why ? why : "connect failed", r->retry_interval);
				r->down_logged = true;
				pthread_cond_broadcast(&r->cond);
				pthread_mutex_unlock(&r->mu);
				free(why);
				return NULL;
			}
			memcpy(r->sha, sha, sizeof(sha));
			if (r->down_logged)
				sift_log(LOG_NOTICE, "state store redis %s: connected again", r->where);
			r->down_logged = false;
			r->down_until = 0;
			pthread_mutex_unlock(&r->mu);
			*reused_r = false;
			return c;
		}
		long long left = deadline - sift_now_ms();
		if (left <= 0) {
			pthread_mutex_unlock(&r->mu);
			sift_log(LOG_WARNING, "state store redis %s: all %zu connections busy for %lldms",
				 r->where, r->pool_max, r->timeout);
			return NULL;
		}
		struct timespec ts;
		sift_timespec_in(CLOCK_MONOTONIC, left, &ts);
		pthread_cond_timedwait(&r->cond, &r->mu, &ts);
	}
}

/* Gives a connection back; a broken one (c->err) is closed. */
static void rds_give(struct kv_redis *r, redisContext *c)
{
	pthread_mutex_lock(&r->mu);
	if (c->err) {
		redisFree(c);
		r->total--;
	} else {
		struct rds_conn *pc = sift_malloc(sizeof(*pc));
		pc->c = c;
		pc->next = r->idle;
		r->idle = pc;
	}
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->mu);
}

/* True when a failure on a reused connection means the server closed it
 * before reading our command, so that sending it again is safe. A closed
 * idle connection is seen before it is used (closed_by_server); what is
 * left is a close in the instant between that check and the send, or a
 * server that died after running the command. So a command that counts
 * (INCRBY, the scripts) is not sent again: a learn or a rate-limit hit
 * counted twice is worse than one call that fails. */
static bool stale_conn_error(const redisContext *c, const char *cmd)
{
	if (strcmp(cmd, "EVAL") == 0 || strcmp(cmd, "EVALSHA") == 0 || strncmp(cmd, "INCR", 4) == 0)
		return false;
	if (c->err == REDIS_ERR_EOF)
		return true;
	return c->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE);
}

/* Runs one command. Returns the reply (caller frees) or NULL on a
 * transport failure (logged); then *maybe_r (when not NULL) tells whether
 * the command may have run: it was handed to a connection, and no answer
 * came (a timeout, a connection lost), as against never sent (Redis down,
 * no free connection). */
static redisReply *rds_command_x(struct kv_redis *r, int argc, const char **argv, const size_t *lens,
				 bool *maybe_r)
{
	if (maybe_r)
		*maybe_r = false;
	bool force_new = false;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = false;
		redisContext *c = rds_take(r, &reused, force_new);
		if (!c)
			return NULL;
		/* EVALSHA with the SHA this connection's server knows (its
		 * argv has at most 8 items); other commands go as they are. */
		const char *av[8];
		size_t al[8];
		for (int i = 0; i < argc && i < 8; i++) {
			av[i] = argv[i];
			al[i] = lens[i];
		}
		char sha[41];
		bool evalsha = strcmp(argv[0], "EVALSHA") == 0;
		if (evalsha) {
			pthread_mutex_lock(&r->mu);
			memcpy(sha, r->sha, sizeof(sha));
			pthread_mutex_unlock(&r->mu);
			av[1] = sha;
			al[1] = 40;
		}
		redisReply *rep = cmd_by(c, argc, evalsha ? av : argv, evalsha ? al : lens, r->timeout);
		if (rep && rep->type == REDIS_REPLY_ERROR && evalsha &&
		    strncmp(rep->str, "NOSCRIPT", 8) == 0) {
			/* Script cache flushed: EVAL sends the body (and caches it). */
			freeReplyObject(rep);
			av[0] = "EVAL";
			al[0] = 4;
			av[1] = incr_script;
			al[1] = strlen(incr_script);
			rep = cmd_by(c, argc, av, al, r->timeout);
		}
		if (rep) {
			rds_give(r, c);
			return rep;
		}
		if (maybe_r)
			*maybe_r = true;
		bool retry = reused && attempt == 0 && stale_conn_error(c, argv[0]);
		if (!retry)
			cmd_error(r, argv[0], c->errstr[0] ? c->errstr : "I/O error");
		if (!c->err)
			c->err = REDIS_ERR_OTHER;
		rds_give(r, c);
		if (!retry)
			return NULL;
		force_new = true;
	}
	return NULL;
}

static redisReply *rds_command(struct kv_redis *r, int argc, const char **argv, const size_t *lens)
{
	return rds_command_x(r, argc, argv, lens, NULL);
}

/* ---- the backend functions ---------------------------------------------------- */

static void *rds_open(const char *params, char **err_r)
{
	struct kv_redis *r = sift_calloc(1, sizeof(*r));
	if (parse_spec(r, params, err_r) < 0) {
		rds_free_cfg(r);
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca; /* waits on the monotonic clock: a clock step does not move them */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* Not connecting here: a Redis that is down at startup must not keep
	 * the daemon from starting (the plugins' failure policy applies). */
	return r;
}

static void rds_free(void *impl)
{
	struct kv_redis *r = impl;
	struct rds_conn *pc, *next;
	for (pc = r->idle; pc; pc = next) {
		next = pc->next;
		redisFree(pc->c);
		free(pc);
	}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cond);
	rds_free_cfg(r);
	free(r);
}

/* prefix + key in buf (malloc'd when long). */
static char *full_key(struct kv_redis *r, const char *key, size_t *len_r, char *buf, size_t bufsz)
{
	size_t kl = strlen(key), n = r->prefix_len + kl;
	char *p = n + 1 <= bufsz ? buf : sift_malloc(n + 1);
	memcpy(p, r->prefix, r->prefix_len);
	memcpy(p + r->prefix_len, key, kl + 1);
	*len_r = n;
	return p;
}

static int rds_get(void *impl, const char *key, char **val_r)
{
	struct kv_redis *r = impl;
	char kb[256];
	size_t kl;
	char *k = full_key(r, key, &kl, kb, sizeof(kb));
	const char *argv[2] = {"GET", k};
	size_t lens[2] = {3, kl};
	redisReply *rep = rds_command(r, 2, argv, lens);
	if (k != kb)
		free(k);
	if (!rep)
		return -1;
	int rc;
	if (rep->type == REDIS_REPLY_NIL)
		rc = 1;
	else if (rep->type == REDIS_REPLY_STRING) {
		*val_r = sift_strndup(rep->str, rep->len);
		rc = 0;
	} else
		rc = -1;
	freeReplyObject(rep);
	return rc;
}

static int rds_set(void *impl, const char *key, const char *val, long ttl_ms)
{
	struct kv_redis *r = impl;
	char kb[256], ttl[24];
	size_t kl;
	char *k = full_key(r, key, &kl, kb, sizeof(kb));
	snprintf(ttl, sizeof(ttl), "%ld", ttl_ms);
	const char *argv[5] = {"SET", k, val, "PX", ttl};
	size_t lens[5] = {3, kl, strlen(val), 2, strlen(ttl)};
	redisReply *rep = rds_command(r, ttl_ms > 0 ? 5 : 3, argv, lens);
	if (k != kb)
		free(k);
	if (!rep)
		return -1;
	int rc = rep->type == REDIS_REPLY_STATUS ? 0 : -1;
	freeReplyObject(rep);
	return rc;
}

static int rds_incr(void *impl, const char *key, long long delta, long ttl_ms, long long *val_r)
{
	struct kv_redis *r = impl;
	char kb[256], d[24], ttl[24];
	size_t kl;
	char *k = full_key(r, key, &kl, kb, sizeof(kb));
	snprintf(d, sizeof(d), "%lld", delta);
	snprintf(ttl, sizeof(ttl), "%ld", ttl_ms > 0 ? ttl_ms : 0);
	const char *argv[6] = {"EVALSHA", "", "1", k, d, ttl};
	size_t lens[6] = {7, 0, 1, kl, strlen(d), strlen(ttl)};
	bool maybe = false;
	redisReply *rep = rds_command_x(r, 6, argv, lens, &maybe);
	if (k != kb)
		free(k);
	if (!rep) /* sent without an answer: it may have counted */
		return maybe ? -2 : -1;
	int rc = -1;
	if (rep->type == REDIS_REPLY_INTEGER) {
		if (val_r)
			*val_r = rep->integer;
		rc = 0;
	}
	freeReplyObject(rep);
	return rc;
}

static int rds_del(void *impl, const char *key)
{
	struct kv_redis *r = impl;
	char kb[256];
	size_t kl;
	char *k = full_key(r, key, &kl, kb, sizeof(kb));
	const char *argv[2] = {"DEL", k};
	size_t lens[2] = {3, kl};
	redisReply *rep = rds_command(r, 2, argv, lens);
	if (k != kb)
		free(k);
	if (!rep)
		return -1;
	int rc = rep->type == REDIS_REPLY_INTEGER ? (rep->integer > 0 ? 0 : 1) : -1;
	freeReplyObject(rep);
	return rc;
}

/* The prefixed keys as an argv after `head` items, with room for `tail`
 * more after them (malloc'd, freed by argv_free). */
static void argv_keys(struct kv_redis *r, const char *const *keys, size_t n, size_t head, size_t tail,
		      const char ***av_r, size_t **al_r)
{
	const char **av = sift_malloc((head + n + tail + 1) * sizeof(char *));
	size_t *al = sift_malloc((head + n + tail + 1) * sizeof(size_t));
	for (size_t i = 0; i < n; i++) {
		size_t kl;
		av[head + i] = full_key(r, keys[i], &kl, NULL, 0);
		al[head + i] = kl;
	}
	*av_r = av;
	*al_r = al;
}

static void argv_free(const char **av, size_t *al, size_t head, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)av[head + i]);
	free(av);
	free(al);
}

/* MGET: one command, one round trip. */
static int rds_mget(void *impl, const char *const *keys, size_t n, char **vals_r)
{
	struct kv_redis *r = impl;
	const char **av;
	size_t *al;
	argv_keys(r, keys, n, 1, 0, &av, &al);
	av[0] = "MGET";
	al[0] = 4;
	redisReply *rep = rds_command(r, (int)n + 1, av, al);
	argv_free(av, al, 1, n);
	if (!rep)
		return -1;
	int rc = -1;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == n) {
		for (size_t i = 0; i < n; i++) {
			redisReply *e = rep->element[i];
			vals_r[i] = e->type == REDIS_REPLY_STRING ? sift_strndup(e->str, e->len) : NULL;
		}
		rc = 0;
	}
	freeReplyObject(rep);
	return rc;
}

static const char incr_many_script[] = "local ttl = tonumber(ARGV[#ARGV])\n"
				       "for i, k in ipairs(KEYS) do\n"
				       "  local v = redis.call('INCRBY', k, ARGV[i])\n"
				       "  if v <= 0 then redis.call('DEL', k)\n"
				       "  elseif ttl > 0 then redis.call('PEXPIRE', k, ttl) end\n"
				       "end\n"
				       "return #KEYS\n";

/* Runs an EVAL of argc items (av/al from argv_keys, n keys after 3 head
 * items; num: their number texts) whose answer is an integer: 0, or -1
 * (an error answer logged). Frees av, al and num. */
static int eval_int(struct kv_redis *r, int argc, const char **av, size_t *al, size_t n, char *num)
{
	redisReply *rep = rds_command(r, argc, av, al);
	argv_free(av, al, 3, n);
	free(num);
	if (!rep)
		return -1;
	int rc = rep->type == REDIS_REPLY_INTEGER ? 0 : -1;
	if (rc < 0 && rep->type == REDIS_REPLY_ERROR)
		cmd_error(r, "EVAL", rep->str);
	freeReplyObject(rep);
	return rc;
}

/* One script: every increment of the batch at once, atomically. */
static int rds_incr_many(void *impl, const char *const *keys, const long long *deltas, size_t n, long ttl_ms)
{
	struct kv_redis *r = impl;
	const char **av;
	size_t *al;
	argv_keys(r, keys, n, 3, n + 1, &av, &al);
	char nk[24], ttl[24];
	snprintf(nk, sizeof(nk), "%zu", n);
	snprintf(ttl, sizeof(ttl), "%ld", ttl_ms > 0 ? ttl_ms : 0);
	av[0] = "EVAL";
	al[0] = 4;
	av[1] = incr_many_script;
	al[1] = strlen(incr_many_script);
	av[2] = nk;
	al[2] = strlen(nk);
	char *num = sift_malloc(n * 24 + 1);
	for (size_t i = 0; i < n; i++) {
		char *d = num + i * 24;
		snprintf(d, 24, "%lld", deltas[i]);
		av[3 + n + i] = d;
		al[3 + n + i] = strlen(d);
	}
	av[3 + 2 * n] = ttl;
	al[3 + 2 * n] = strlen(ttl);
	return eval_int(r, (int)(4 + 2 * n), av, al, n, num);
}

/* sift_kv_write: KEYS the keys, ARGV three per write (op c/s/d, value or
 * delta, ttl). Redis runs a script alone, and only once it has read the
 * whole command: a connection lost while sending it runs none of it. A
 * write failing at run time would leave the earlier ones made (Redis has no
 * rollback), so the one that can (INCRBY on a key that holds no integer;
 * GET fails at once on a key of another type) is checked first. */
static const char write_script[] =
	"local n = #KEYS\n"
	"for i = 1, n do\n"
	"  if ARGV[3 * i - 2] == 'c' then\n"
	"    local v = redis.call('GET', KEYS[i])\n"
	"    if v and (#v > 18 or not string.match(v, '^-?%d+$')) then\n"
	"      return redis.error_reply('ERR ' .. KEYS[i] .. ' holds no integer')\n"
	"    end\n"
	"  end\n"
	"end\n"
	"for i = 1, n do\n"
	"  local k, o, v = KEYS[i], ARGV[3 * i - 2], ARGV[3 * i - 1]\n"
	"  local ttl = tonumber(ARGV[3 * i])\n"
	"  if o == 'c' then\n"
	"    if redis.call('INCRBY', k, v) <= 0 then redis.call('DEL', k)\n"
	"    elseif ttl > 0 then redis.call('PEXPIRE', k, ttl) end\n"
	"  elseif o == 's' and ttl > 0 then redis.call('SET', k, v, 'PX', ttl)\n"
	"  elseif o == 's' then redis.call('SET', k, v)\n"
	"  else redis.call('DEL', k) end\n"
	"end\n"
	"return n\n";

/* One script, one command, one round trip: all the writes or none. */
static int rds_write(void *impl, const struct sift_kv_op *ops, size_t n)
{
	struct kv_redis *r = impl;
	const char **av;
	size_t *al;
	const char **keys = sift_malloc((n ? n : 1) * sizeof(char *));
	for (size_t i = 0; i < n; i++)
		keys[i] = ops[i].key;
	argv_keys(r, keys, n, 3, 3 * n, &av, &al);
	free(keys);
	char nk[24];
	snprintf(nk, sizeof(nk), "%zu", n);
	av[0] = "EVAL";
	al[0] = 4;
	av[1] = write_script;
	al[1] = strlen(write_script);
	av[2] = nk;
	al[2] = strlen(nk);
	char *num = sift_malloc(n * 48 + 1); /* per write: delta, ttl */
	for (size_t i = 0; i < n; i++) {
		const struct sift_kv_op *o = &ops[i];
		char *d = num + i * 48, *t = d + 24;
		size_t a = 3 + n + 3 * i;
		snprintf(d, 24, "%lld", o->delta);
		snprintf(t, 24, "%ld", o->ttl_ms > 0 ? o->ttl_ms : 0);
		av[a] = o->op == SIFT_KV_COUNT ? "c" : o->op == SIFT_KV_SET ? "s" : "d";
		al[a] = 1;
		av[a + 1] = o->op == SIFT_KV_SET ? o->val : o->op == SIFT_KV_COUNT ? d : "";
		al[a + 1] = strlen(av[a + 1]);
		av[a + 2] = t;
		al[a + 2] = strlen(t);
	}
	return eval_int(r, (int)(3 + 4 * n), av, al, n, num);
}

const struct kv_backend sift_kv_redis = {
	.type = "redis",
	.open = rds_open,
	.get = rds_get,
	.set = rds_set,
	.incr = rds_incr,
	.del = rds_del,
	.mget = rds_mget,
	.incr_many = rds_incr_many,
	.write = rds_write,
	.free = rds_free,
};

#else
/* Built without hiredis: kv.c reports "redis" as unavailable. */
typedef int sift_kv_redis_unavailable;
#endif
