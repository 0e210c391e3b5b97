/*
 * tool.c - the ratelimit plugin's siftctl tools: `siftctl ratelimit
 * show|reset KEY` and `siftctl ratelimit stats` read or clear the counters
 * of the ratelimit plugin of a running policyd or filterd.
 *
 * The counters live in the daemon's state store, which with the default
 * memory: store exists only inside the daemon; so this command asks the
 * daemon itself, over the plugin's control socket (ratelimit_control = yes,
 * ratelimit_control_socket, a unix socket with its own mode and group:
 * never the policy socket, which any local process can reach). The request
 * is `command=...` and `key=...` lines and an empty line; the answer one
 * `action=INFO ratelimit ...` line and an empty line.
 *
 * The socket is --socket PATH, else ratelimit_control_socket of the
 * configuration (-c, e.g. /etc/sift/policyd.conf), which must have
 * ratelimit_control = yes (siftctl parses the ratelimit_* settings into the
 * conf block; the plugin is not initialised, so nothing is bound here).
 *
 * Single-threaded (in siftctl); every wait is bounded (10 s).
 */
#include <errno.h>
#include <stdarg.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sift/plugin.h"
#include "tool.h"

#define RL_TIMEOUT_MS 10000
/* 64 rules, 3 metrics, values up to 640 bytes: well under this */
#define RL_ANSWER_MAX	  (1024 * 1024)
#define RL_DEFAULT_SOCKET "/run/sift/ratelimit.sock"

static const char key_usage[] = "[RULE:]VALUE [--socket PATH]";
static const char stats_usage[] = "[--socket PATH]";

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		perror("siftctl ratelimit");
		exit(1);
	}
	return s;
}

/* A growing buffer for the answer. */
struct rbuf {
	char *data;
	size_t len;
};

static void rbuf_add(struct rbuf *b, const char *p, size_t n)
{
	char *d = realloc(b->data, b->len + n + 1);
	if (!d) {
		perror("siftctl ratelimit");
		exit(1);
	}
	memcpy(d + b->len, p, n);
	b->len += n;
	d[b->len] = 0;
	b->data = d;
}

static int rl_connect(const char *path, char **err_r)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err_r = xasprintf("socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* connect() waits while the daemon's backlog is full (a daemon that
	 * does not accept), the request's write() while it does not read:
	 * both bounded. */
	struct timeval tv = {.tv_sec = RL_TIMEOUT_MS / 1000, .tv_usec = (RL_TIMEOUT_MS % 1000) * 1000};
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == EAGAIN)
			*err_r = xasprintf("connect %s: not accepted within %ds", path, RL_TIMEOUT_MS / 1000);
		else
			*err_r = xasprintf("connect %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Sends one request and returns the action (malloc'd) or NULL. */
static char *rl_ask(const char *ep, const char *cmd, const char *key, char **err_r)
{
	int fd = rl_connect(ep, err_r);
	if (fd < 0)
		return NULL;
	char *req = xasprintf("command=%s\nkey=%s\n\n", cmd, key ? key : "");
	size_t off = 0, len = strlen(req);
	while (off < len) {
		ssize_t w = write(fd, req + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			*err_r = xasprintf("write %s: %s", ep, strerror(errno));
			free(req);
			close(fd);
			return NULL;
		}
		off += (size_t)w;
	}
	free(req);
	struct rbuf b = {0};
	long long deadline = now_ms() + RL_TIMEOUT_MS;
	char *res = NULL;
	for (;;) {
		const char *s = b.len ? b.data : "";
		if (b.len && strstr(s, "\n\n"))
			break;
		long long left = deadline - now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			*err_r = xasprintf("%s: no answer within %ds", ep, RL_TIMEOUT_MS / 1000);
			goto out;
		}
		char tmp[4096];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*err_r = xasprintf("%s closed the connection without an answer", ep);
			goto out;
		}
		if (b.len + (size_t)r > RL_ANSWER_MAX) {
			*err_r = xasprintf("%s: answer too long", ep);
			goto out;
		}
		rbuf_add(&b, tmp, (size_t)r);
	}
	const char *a = strstr(b.data ? b.data : "", "action=");
	if (!a) {
		*err_r = xasprintf("%s: answer without action=", ep);
		goto out;
	}
	a += 7;
	res = strndup(a, strcspn(a, "\n"));
out:
	free(b.data);
	close(fd);
	return res;
}

/* Prints the lines of an "INFO ratelimit[: text] ; line ; line" action;
 * returns the exit status the answer means. */
static int print_answer(const char *ep, const char *action)
{
	if (strncmp(action, "INFO ratelimit", 14) != 0) {
		fprintf(stderr, "siftctl ratelimit: %s answered \"%s\"\n", ep, action);
		return 1;
	}
	const char *p = action + 14;
	if (*p == ':')
		p += 2;
	bool error = strstr(action, "store error") != NULL || strstr(action, "usage:") != NULL ||
		     strstr(action, "disabled") != NULL || strstr(action, "no rule matches") != NULL ||
		     strstr(action, " ; not found: ") != NULL;
	while (*p) {
		while (*p == ' ' || *p == ';')
			p++;
		size_t n = 0;
		while (p[n] && !(p[n] == ' ' && p[n + 1] == ';' && p[n + 2] == ' '))
			n++;
		if (n)
			printf("%.*s\n", (int)n, p);
		p += n;
	}
	return error ? 1 : 0;
}

/* show KEY, reset KEY, stats: argv[0] is the command. */
static int rl_run(const struct sift_host *host, void *conf, int argc, char **argv)
{
	const char *ep = NULL, *cmd = argv[0], *key = NULL;
	bool keyed = strcmp(cmd, "stats") != 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--socket") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr,
					"siftctl ratelimit %s: option --socket needs a value (--socket "
					"PATH)\n",
					cmd);
				return 2;
			}
			ep = argv[++i];
		} else if (keyed && !key)
			key = argv[i];
		else {
			fprintf(stderr, "siftctl ratelimit: unexpected argument \"%s\"\n", argv[i]);
			return 2;
		}
	}
	if (keyed && !key) {
		fprintf(stderr, "usage: siftctl ratelimit %s %s\n", cmd, key_usage);
		return 2;
	}
	if (key && (strchr(key, '\n') || strlen(key) > 1000)) {
		fprintf(stderr, "siftctl ratelimit: bad key\n");
		return 2;
	}
	if (!ep && !conf) {
		fprintf(stderr, "siftctl ratelimit: the configuration cannot be read: give -c FILE or "
				"--socket PATH\n");
		return 1;
	}
	if (!ep && !rl_conf_control(conf)) {
		fprintf(stderr, "siftctl ratelimit: ratelimit_control is off in the configuration: set "
				"ratelimit_control = yes (and ratelimit_control_socket) or give --socket "
				"PATH\n");
		return 1;
	}
	if (!ep)
		ep = *rl_conf_control_socket(conf) ? rl_conf_control_socket(conf) : RL_DEFAULT_SOCKET;
	char *err = NULL;
	char *action = rl_ask(ep, cmd, key, &err);
	if (!action) {
		fprintf(stderr, "siftctl ratelimit: %s\n", err ? err : "no answer");
		free(err);
		return 1;
	}
	int rc = print_answer(ep, action);
	free(action);
	return rc;
}

const struct sift_tool rl_tools[] = {
	{"show", key_usage,
	 "show a counter of the ratelimit plugin (VALUE as the rule's key builds it:\n"
	 "192.0.2.0/24, alice, bob@example.net|example.org), asking the running daemon\n"
	 "over its control socket (--socket, else ratelimit_control_socket of -c FILE,\n"
	 "which needs ratelimit_control = yes)",
	 SIFT_TOOL_CONF_OPTIONAL, rl_run},
	{"reset", key_usage, "clear that counter (as show asks)", SIFT_TOOL_CONF_OPTIONAL, rl_run},
	{"stats", stats_usage, "the store-failure and over-limit counts and the rules (as show asks)",
	 SIFT_TOOL_CONF_OPTIONAL, rl_run},
	{NULL, NULL, NULL, 0, NULL},
};
