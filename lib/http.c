/*
 * http.c - the metrics listener: a small HTTP/1.1 server for GET /metrics
 * (Prometheus text format 0.0.4), GET /status.json (the status document)
 * and GET / (the status page, lib/status.html embedded at build time).
 *
 * One thread accepts; each connection gets a thread of its own, at most
 * SIFT_HTTP_MAX_CONN at once from trusted clients and as many from the
 * others (more are answered 503 by the accepting thread and closed): so
 * clients that must send credentials cannot take the trusted scrapers'
 * slots by holding idle connections. A connection carries one request (Connection:
 * close): its head (request line and header lines, no body) must arrive
 * whole within SIFT_HTTP_TIMEOUT_S and fit in SIFT_HTTP_MAX_HEAD bytes and
 * SIFT_HTTP_MAX_HEADERS lines; the answer is written within the same
 * time. GET and HEAD only.
 *
 * Access: a client whose address is in metrics_trusted_networks (the
 * current configuration's; loopback by default) needs nothing; any other
 * needs a credential of metrics_auth_file, read at every such request
 * (owned by root or the daemon's user, no group or other permission bits:
 * anything else is refused and logged, and then no credential is valid):
 *     token = SECRET              for "Authorization: Bearer SECRET"
 *     basic = USER:PASSWORD       for "Authorization: Basic base64(USER:PASSWORD)"
 * compared in constant time; neither the file nor the header is ever
 * logged. Without a valid credential: 401.
 *
 * DNS rebinding: a request is served only when its Host (and its Origin,
 * when sent) names an IP address, localhost or a name of
 * metrics_allowed_hosts; anything else gets 421 Misdirected Request,
 * whoever the client is. A web page of a name the attacker controls,
 * once that name resolves to 127.0.0.1, would otherwise read the status
 * from the browser, a trusted loopback client.
 *
 * Before the first configuration runs (the plugins initialise, which may
 * take minutes) and after the last one is dropped at stop, there is no
 * trust list to judge a client by and nothing to report: every request
 * is answered 503 with Retry-After, not 401 (a browser would ask trusted
 * users for a password, a scraper would see an authentication failure).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"
#include "mailsyntax.h"

extern const char sift_status_html[];
extern const size_t sift_status_html_len;

/* ---- the request head ----------------------------------------------------- */

static bool tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The next line of head (CRLF or LF); NULL at the end. */
static const char *next_line(const char **pp, const char *end, size_t *len_r)
{
	const char *p = *pp;
	if (p >= end)
		return NULL;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	const char *stop = nl ? nl : end;
	*pp = nl ? nl + 1 : end;
	*len_r = (size_t)(stop - p);
	if (*len_r && p[*len_r - 1] == '\r')
		(*len_r)--;
	return p;
}

static int parse_request_line(const char *l, size_t n, struct sift_http_req *r, bool *v11)
{
	const char *sp1 = memchr(l, ' ', n);
	if (!sp1 || sp1 == l || sp1 - l > 16)
		return 400;
	for (const char *c = l; c < sp1; c++)
		if (!tchar((unsigned char)*c))
			return 400;
	const char *t = sp1 + 1, *end = l + n;
	const char *sp2 = memchr(t, ' ', (size_t)(end - t));
	if (!sp2)
		return 400;
	size_t vlen = (size_t)(end - sp2 - 1);
	const char *v = sp2 + 1;
	if (vlen < 5 || strncmp(v, "HTTP/", 5) != 0)
		return 400;
	if (vlen != 8 || (strncmp(v, "HTTP/1.1", 8) != 0 && strncmp(v, "HTTP/1.0", 8) != 0))
		return 505;
	*v11 = strncmp(v, "HTTP/1.1", 8) == 0;
	size_t tlen = (size_t)(sp2 - t);
	if (tlen == 0 || t[0] != '/')
		return 400;
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			return 400;
	size_t plen = strcspn(t, "?# ");
	if (plen > tlen)
		plen = tlen;
	if (plen >= sizeof(r->path))
		return 414;
	memcpy(r->path, t, plen);
	r->path[plen] = 0;
	size_t mlen = (size_t)(sp1 - l);
	if (mlen == 3 && strncmp(l, "GET", 3) == 0)
		r->head = false;
	else if (mlen == 4 && strncmp(l, "HEAD", 4) == 0)
		r->head = true;
	else
		return 405;
	return 0;
}

int sift_http_parse(const char *head, size_t len, struct sift_http_req *r)
{
	memset(r, 0, sizeof(*r));
	if (len > SIFT_HTTP_MAX_HEAD)
		return 431;
	if (memchr(head, 0, len))
		return 400;
	const char *p = head, *end = head + len, *l;
	size_t n;
	if (!(l = next_line(&p, end, &n)) || n == 0)
		return 400;
	bool v11 = false;
	int st = parse_request_line(l, n, r, &v11);
	if (st && st != 405)
		return st;
	int count = 0;
	bool ended = false;
	while ((l = next_line(&p, end, &n)) != NULL) {
		if (n == 0) {
			ended = true;
			break;
		}
		if (++count > SIFT_HTTP_MAX_HEADERS)
			return 431;
		const char *colon = memchr(l, ':', n);
		if (!colon || colon == l)
			return 400; /* also obs-fold: a line starting with white space */
		for (const char *c = l; c < colon; c++)
			if (!tchar((unsigned char)*c))
				return 400;
		for (const char *c = colon + 1; c < l + n; c++)
			if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
				return 400;
		const char *v = colon + 1, *ve = l + n;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vl = (size_t)(ve - v), nl = (size_t)(colon - l);
		if (nl == 13 && strncasecmp(l, "Authorization", 13) == 0) {
			if (vl >= sizeof(r->auth))
				return 431;
			memcpy(r->auth, v, vl);
			r->auth[vl] = 0;
		} else if ((nl == 4 && strncasecmp(l, "Host", 4) == 0) ||
			   (nl == 6 && strncasecmp(l, "Origin", 6) == 0)) {
			bool host = nl == 4;
			bool *seen = host ? &r->has_host : &r->has_origin;
			char *to = host ? r->host : r->origin;
			/* RFC 9112 3.2: more than one Host is 400; an Origin
			 * too long to be judged is refused as well. */
			if (*seen || vl >= sizeof(r->host))
				return 400;
			*seen = true;
			memcpy(to, v, vl);
			to[vl] = 0;
		}
	}
	if (!ended)
		return 400;
	if (st == 0 && v11 && !r->has_host)
		return 400; /* RFC 9112 3.2 */
	return st;
}

/* ---- the host a request names (DNS rebinding) ----------------------------- */

/* A browser sends the name of the page's address in Host and Origin: a
 * page of a name the attacker controls, whose address is then made to
 * resolve to 127.0.0.1, reaches this listener from the loopback (trusted)
 * with that name. Only names nobody else can own are served: IP
 * literals, localhost and the administrator's metrics_allowed_hosts. */
static bool name_eq(const char *a, size_t al, const char *b)
{
	size_t bl = strlen(b);
	if (bl > 1 && b[bl - 1] == '.')
		bl--;
	return al == bl && strncasecmp(a, b, al) == 0;
}

static bool host_allowed(const char *h, size_t n, const char *const *names)
{
	char buf[256];
	if (n == 0 || n >= sizeof(buf))
		return false;
	const char *port;
	if (h[0] == '[') {
		const char *rb = memchr(h, ']', n);
		if (!rb || (size_t)(rb - h - 1) >= INET6_ADDRSTRLEN)
			return false;
		memcpy(buf, h + 1, (size_t)(rb - h - 1));
		buf[rb - h - 1] = 0;
		struct in6_addr a6;
		if (inet_pton(AF_INET6, buf, &a6) != 1)
			return false;
		port = rb + 1;
	} else {
		const char *colon = memchr(h, ':', n);
		size_t hl = colon ? (size_t)(colon - h) : n;
		if (hl > 1 && h[hl - 1] == '.')
			hl--;
		memcpy(buf, h, hl);
		buf[hl] = 0;
		port = colon ? colon : h + n;
		struct in_addr a4;
		bool ok = hl > 0 && (inet_pton(AF_INET, buf, &a4) == 1 || name_eq(buf, hl, "localhost"));
		for (const char *const *nm = names; !ok && nm && *nm; nm++)
			ok = name_eq(buf, hl, *nm);
		if (!ok)
			return false;
	}
	if (port < h + n && *port++ != ':')
		return false;
	for (; port < h + n; port++)
		if (*port < '0' || *port > '9')
			return false;
	return true;
}

bool sift_http_host_allowed(const char *host, const char *const *names)
{
	return host && host_allowed(host, strlen(host), names);
}

bool sift_http_origin_allowed(const char *origin, const char *const *names)
{
	const char *sep = origin ? strstr(origin, "://") : NULL;
	if (!sep || sep == origin)
		return false; /* also "null" */
	/* a web page's: http or https (another scheme names no page of the
	 * listener's host) */
	size_t sl = (size_t)(sep - origin);
	if (!((sl == 4 && strncasecmp(origin, "http", 4) == 0) ||
	      (sl == 5 && strncasecmp(origin, "https", 5) == 0)))
		return false;
	/* a browser sends scheme://host[:port] (RFC 6454): anything after
	 * the host and port, a path or credentials, is not an origin */
	const char *h = sep + 3;
	size_t n = strcspn(h, "/?#@");
	if (h[n])
		return false;
	return host_allowed(h, n, names);
}

/* ---- credentials ---------------------------------------------------------------- */

/* Equal, in a time that depends on the lengths only. */
static bool ct_equal(const unsigned char *a, size_t la, const unsigned char *b, size_t lb)
{
	unsigned d = (unsigned)(la ^ lb);
	for (size_t i = 0; i < lb; i++)
		d |= (unsigned)((i < la ? a[i] : 0) ^ b[i]);
	return d == 0;
}

bool sift_http_auth_ok(const char *file_text, const char *authorization)
{
	if (!file_text || !authorization || !*authorization)
		return false;
	size_t sl = strcspn(authorization, " ");
	const char *cred = authorization + sl;
	while (*cred == ' ')
		cred++;
	bool bearer = sl == 6 && strncasecmp(authorization, "Bearer", 6) == 0;
	bool basic = sl == 5 && strncasecmp(authorization, "Basic", 5) == 0;
	if ((!bearer && !basic) || !*cred)
		return false;
	struct sift_buf dec = {0};
	if (basic) {
		bool bad = false;
		sift_b64_decode(&dec, (const unsigned char *)cred, strlen(cred), &bad);
		if (bad) {
			sift_buf_free(&dec);
			return false;
		}
		sift_buf_str(&dec);
	}
	const unsigned char *have = basic ? (const unsigned char *)dec.data : (const unsigned char *)cred;
	size_t hlen = basic ? dec.len : strlen(cred);
	bool ok = false;
	const char *p = file_text;
	while (*p) {
		size_t ll = strcspn(p, "\n");
		char *line = sift_strndup(p, ll);
		p += ll + (p[ll] == '\n');
		char *t = sift_trim(line), *eq = strchr(t, '=');
		if (*t && *t != '#' && eq) {
			*eq = 0;
			char *key = sift_trim(t), *val = sift_trim(eq + 1);
			bool match_kind =
				(bearer && strcmp(key, "token") == 0) || (basic && strcmp(key, "basic") == 0);
			if (match_kind && *val && ct_equal(have, hlen, (unsigned char *)val, strlen(val)))
				ok = true;
		}
		explicit_bzero(line, ll);
		free(line);
	}
	if (dec.data)
		explicit_bzero(dec.data, dec.len);
	sift_buf_free(&dec);
	return ok;
}

/* The auth file's text when it is safe to use; NULL (logged, at most once a
 * minute) when it is not. */
static char *auth_file_read(const char *path)
{
	static atomic_llong last_warn;
	const char *why = NULL;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	char *text = NULL;
	if (fd < 0)
		why = strerror(errno);
	else if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		why = "not a regular file";
	else if (st.st_uid != 0 && st.st_uid != geteuid())
		why = "owned by another user (want root or the daemon's user)";
	else if (st.st_mode & 077)
		why = "readable or writable by group or others (want mode 0600 or 0400)";
	else if (st.st_size > 4096)
		why = "larger than 4096 bytes";
	else {
		text = sift_calloc(1, (size_t)st.st_size + 1);
		ssize_t r = read(fd, text, (size_t)st.st_size);
		if (r < 0) {
			why = strerror(errno);
			free(text);
			text = NULL;
		}
	}
	if (fd >= 0)
		close(fd);
	long long now = sift_now_ms();
	if (why && now - atomic_load(&last_warn) > 60000) {
		atomic_store(&last_warn, now);
		sift_log(LOG_WARNING, "metrics_auth_file %s: %s; refusing every credential", path, why);
	}
	return text;
}

/* ---- the server --------------------------------------------------------------- */

static struct {
	int fd;
	atomic_int active[2]; /* connections served: [1] from trusted clients */
	char *endpoint;
} srv = {.fd = -1};

static bool peer_trusted(const struct sockaddr_storage *ss, const char *const *nets)
{
	int family;
	unsigned char addr[16] = {0};
	if (ss->ss_family == AF_INET) {
		family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			memcpy(addr, a6->s6_addr + 12, 4);
		} else {
			family = AF_INET6;
			memcpy(addr, a6->s6_addr, 16);
		}
	} else
		return false;
	for (; nets && *nets; nets++) {
		struct sift_net net;
		if (sift_net_parse(*nets, true, &net) == 0 && sift_net_match(&net, family, addr))
			return true;
	}
	return false;
}

/* Writes within SIFT_HTTP_TIMEOUT_S in all (each send is bounded by the
 * socket's SO_SNDTIMEO too): a client that reads slowly is dropped. */
static void send_all(int fd, const char *p, size_t len)
{
	long long deadline = sift_now_ms() + SIFT_HTTP_TIMEOUT_S * 1000;
	while (len && sift_now_ms() < deadline) {
		ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		len -= (size_t)w;
	}
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 414:
		return "URI Too Long";
	case 421:
		return "Misdirected Request";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Error";
	}
}

static void respond(int fd, int status, const char *type, const char *body, size_t len, bool head)
{
	struct sift_buf b = {0};
	sift_buf_printf(&b,
			"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
			"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
			status, reason(status), type, len);
	if (status == 401)
		sift_buf_adds(&b, "WWW-Authenticate: Basic realm=\"sift\", charset=\"UTF-8\"\r\n");
	if (status == 405)
		sift_buf_adds(&b, "Allow: GET, HEAD\r\n");
	if (status == 503)
		sift_buf_printf(&b, "Retry-After: %d\r\n", SIFT_HTTP_RETRY_AFTER_S);
	if (strncmp(type, "text/html", 9) == 0)
		sift_buf_adds(&b, "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
				  "style-src 'unsafe-inline'; img-src data:; connect-src 'self'\r\n"
				  "X-Frame-Options: DENY\r\n");
	sift_buf_adds(&b, "\r\n");
	if (!head)
		sift_buf_add(&b, body, len);
	send_all(fd, b.data, b.len);
	sift_buf_free(&b);
}

/* An error answer; head: to a HEAD request, whose answer has the
 * Content-Length of the GET's but no body (RFC 9110 9.3.2). */
static void respond_error(int fd, int status, bool head)
{
	char body[80];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	respond(fd, status, "text/plain; charset=utf-8", body, (size_t)n, head);
}

/* Reads the request head within the deadline: its length, or -1 with the
 * status to answer in *status_r (0: the client went away). */
static long read_head(int fd, char *buf, size_t cap, int *status_r)
{
	long long deadline = sift_now_ms() + SIFT_HTTP_TIMEOUT_S * 1000;
	size_t n = 0;
	for (;;) {
		long long left = deadline - sift_now_ms();
		if (left <= 0) {
			*status_r = 408;
			return -1;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			*status_r = pr == 0 ? 408 : 0;
			return -1;
		}
		ssize_t r = recv(fd, buf + n, cap - n, 0);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0) {
			*status_r = 0;
			return -1;
		}
		size_t from = n >= 3 ? n - 3 : 0;
		n += (size_t)r;
		for (size_t i = from; i < n; i++)
			if (buf[i] == '\n' && ((i >= 1 && buf[i - 1] == '\n') ||
					       (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
				return (long)(i + 1);
		if (n == cap) {
			*status_r = 431;
			return -1;
		}
	}
}

static void route(int fd, const struct sift_http_req *r)
{
	struct sift_gen *g = sift_gen_current();
	const struct sift_common_conf *c = g ? sift_gen_common(g) : NULL;
	struct sift_buf b = {0};
	if (strcmp(r->path, "/metrics") == 0) {
		sift_metrics_prometheus(&b, c ? c->quarantine_directory : NULL,
					c ? (long)c->metrics_symbols : 50);
		respond(fd, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len,
			r->head);
	} else if (strcmp(r->path, "/status.json") == 0) {
		sift_metrics_status_json(&b, c ? c->quarantine_directory : NULL);
		respond(fd, 200, "application/json", b.data, b.len, r->head);
	} else if (strcmp(r->path, "/") == 0 || strcmp(r->path, "/index.html") == 0)
		respond(fd, 200, "text/html; charset=utf-8", sift_status_html, sift_status_html_len, r->head);
	else
		respond_error(fd, 404, r->head);
	sift_buf_free(&b);
	sift_gen_unref(g);
}

struct conn_arg {
	int fd;
	bool trusted; /* at accept: which slots it takes */
	struct sockaddr_storage peer;
};

static bool trusted_now(const struct conn_arg *ca)
{
	struct sift_gen *g = sift_gen_current();
	const struct sift_common_conf *c = g ? sift_gen_common(g) : NULL;
	bool ok = c && peer_trusted(&ca->peer, c->metrics_trusted_networks);
	sift_gen_unref(g);
	return ok;
}

static bool authorised(const struct conn_arg *ca, const struct sift_http_req *r)
{
	bool ok = trusted_now(ca);
	struct sift_gen *g = sift_gen_current();
	const struct sift_common_conf *c = g ? sift_gen_common(g) : NULL;
	if (!ok && c && c->metrics_auth_file && *c->metrics_auth_file && r->auth[0]) {
		char *text = auth_file_read(c->metrics_auth_file);
		ok = sift_http_auth_ok(text, r->auth);
		if (text) {
			explicit_bzero(text, strlen(text));
			free(text);
		}
	}
	sift_gen_unref(g);
	return ok;
}

/* Whether the request names a host served here (Host, and Origin when
 * sent); logged, at most once a minute, when not. */
static bool request_host_ok(const struct sift_http_req *r, const struct sift_gen *g)
{
	static atomic_llong last_log;
	const struct sift_common_conf *c = g ? sift_gen_common(g) : NULL;
	const char *const *names = c ? c->metrics_allowed_hosts : NULL;
	const char *bad = NULL;
	if (r->has_host && !sift_http_host_allowed(r->host, names))
		bad = r->host;
	else if (r->has_origin && !sift_http_origin_allowed(r->origin, names))
		bad = r->origin;
	if (!bad)
		return true;
	long long now = sift_now_ms();
	if (now - atomic_load(&last_log) > 60000) {
		atomic_store(&last_log, now);
		char shown[80];
		size_t i = 0;
		for (; bad[i] && i < sizeof(shown) - 1; i++)
			shown[i] = bad[i] > 0x20 && bad[i] < 0x7f && bad[i] != '"' ? bad[i] : '?';
		shown[i] = 0;
		sift_log(LOG_NOTICE,
			 "metrics listener %s: refused a request naming \"%s\" (421): not an IP address, "
			 "localhost or a name of metrics_allowed_hosts",
			 srv.endpoint, shown);
	}
	return false;
}

static void *conn_thread(void *arg)
{
	struct conn_arg *ca = arg;
	struct timeval tv = {.tv_sec = 2};
	setsockopt(ca->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char *buf = sift_malloc(SIFT_HTTP_MAX_HEAD);
	int status = 0;
	long len = read_head(ca->fd, buf, SIFT_HTTP_MAX_HEAD, &status);
	struct sift_http_req r;
	if (len >= 0)
		status = sift_http_parse(buf, (size_t)len, &r);
	if (len >= 0 && status == 0) {
		struct sift_gen *g = sift_gen_current();
		bool running = g != NULL;
		bool misdirected = !request_host_ok(&r, g);
		sift_gen_unref(g);
		if (misdirected)
			respond_error(ca->fd, 421, r.head);
		else if (!running) {
			static const char body[] =
				"503 Service Unavailable: starting (the plugins initialise) "
				"or stopping\n";
			respond(ca->fd, 503, "text/plain; charset=utf-8", body, sizeof(body) - 1, r.head);
		} else if (authorised(ca, &r))
			route(ca->fd, &r);
		else
			respond_error(ca->fd, 401, r.head);
	} else if (status)
		/* a HEAD request that parsed as far as its method is one */
		respond_error(ca->fd, status, len >= 0 && r.head);
	free(buf);
	/* Uncounted before the client can see the end of the answer: a client
	 * that connects again right after it has its slot back. */
	atomic_fetch_sub(&srv.active[ca->trusted], 1);
	shutdown(ca->fd, SHUT_WR);
	close(ca->fd);
	free(ca);
	return NULL;
}

static void *accept_thread(void *arg)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 512 * 1024);
	for (;;) {
		struct conn_arg *ca = sift_calloc(1, sizeof(*ca));
		socklen_t sl = sizeof(ca->peer);
		ca->fd = accept4(srv.fd, (struct sockaddr *)&ca->peer, &sl, SOCK_CLOEXEC);
		if (ca->fd < 0) {
			int e = errno;
			free(ca);
			if (e == EINTR || e == ECONNABORTED)
				continue;
			if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
				sleep(1);
				continue;
			}
			sift_log(LOG_ERR, "metrics listener %s: accept: %s", srv.endpoint, strerror(e));
			break;
		}
		pthread_t th;
		ca->trusted = trusted_now(ca);
		atomic_int *active = &srv.active[ca->trusted];
		if (atomic_fetch_add(active, 1) >= SIFT_HTTP_MAX_CONN ||
		    pthread_create(&th, &attr, conn_thread, ca) != 0) {
			atomic_fetch_sub(active, 1);
			struct timeval tv = {.tv_sec = 1};
			setsockopt(ca->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			respond_error(ca->fd, 503, false); /* unread: GET or HEAD unknown */
			close(ca->fd);
			free(ca);
		}
	}
	pthread_attr_destroy(&attr);
	return arg;
}

int sift_http_start(const char *endpoint, char **err_r)
{
	if (!endpoint || !*endpoint)
		return 0;
	if (strncmp(endpoint, "inet:", 5) != 0 && strncmp(endpoint, "inet6:", 6) != 0) {
		*err_r = sift_asprintf("metrics_listen: bad endpoint \"%s\" (want inet:HOST:PORT or "
				       "inet6:[ADDR]:PORT)",
				       endpoint);
		return -1;
	}
	int fd = sift_listen(endpoint, 16, err_r);
	if (fd < 0) {
		char *e = sift_asprintf("metrics_listen: %s", *err_r);
		free(*err_r);
		*err_r = e;
		return -1;
	}
	srv.fd = fd;
	srv.endpoint = sift_strdup(endpoint);
	pthread_t th;
	if (pthread_create(&th, NULL, accept_thread, NULL) != 0) {
		*err_r = sift_asprintf("metrics_listen %s: cannot start its thread", endpoint);
		close(fd);
		srv.fd = -1;
		return -1;
	}
	pthread_detach(th);
	sift_log(LOG_INFO, "metrics listener on %s", endpoint);
	return 0;
}
