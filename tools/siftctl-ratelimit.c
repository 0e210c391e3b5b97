/*
 * siftctl-ratelimit.c - `siftctl ratelimit show|reset KEY` and
 * `siftctl ratelimit stats`: read or clear the counters of the ratelimit
 * plugin of a running policyd.
 *
 * The counters live in policyd's state store, which with the default
 * memory: store exists only inside the policyd process; so this command
 * asks policyd itself, over its policy socket, with a control request
 * (request=sift_ratelimit, command=..., key=...) that the ratelimit plugin
 * answers when ratelimit_control = yes. The same works for redis: stores,
 * where any policyd sharing the Redis gives the same answer.
 *
 * The endpoint is --policyd ENDPOINT, else the first policyd_listen entry
 * of the configuration (-c, e.g. /etc/sift/policyd.conf), else
 * inet:127.0.0.1:8892. The request first goes out as an inbound one; if no
 * plugin answers (ratelimit only in originating_plugins), it is sent again
 * as an authenticated (originating) one.
 *
 * Single-threaded; every wait is bounded (10 s).
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "siftctl.h"

#define RL_TIMEOUT_MS 10000

static int rl_connect(const char *ep, char **err_r)
{
	if (strncmp(ep, "unix:", 5) == 0) {
		struct sockaddr_un sun = {.sun_family = AF_UNIX};
		if (strlen(ep + 5) >= sizeof(sun.sun_path)) {
			*err_r = sift_asprintf("socket path too long: %s", ep + 5);
			return -1;
		}
		strcpy(sun.sun_path, ep + 5);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			*err_r = sift_asprintf("connect %s: %s", ep, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
		return fd;
	}
	const char *hp = ep;
	if (strncmp(hp, "inet6:", 6) == 0)
		hp += 6;
	else if (strncmp(hp, "inet:", 5) == 0)
		hp += 5;
	char *host, *port;
	const char *colon = strrchr(hp, ':');
	if (!colon) {
		host = sift_strdup("127.0.0.1");
		port = sift_strdup(hp);
	} else {
		host = sift_strndup(hp, (size_t)(colon - hp));
		port = sift_strdup(colon + 1);
	}
	if (host[0] == '[') {
		size_t n = strlen(host);
		memmove(host, host + 1, n);
		if (n >= 2 && host[n - 2] == ']')
			host[n - 2] = 0;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *ai = NULL;
	int gr = getaddrinfo(host, port, &hints, &ai);
	free(host);
	free(port);
	if (gr != 0) {
		*err_r = sift_asprintf("bad endpoint %s: %s", ep, gai_strerror(gr));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		*err_r = sift_asprintf("connect %s: %s", ep, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* Sends one request and returns the action (malloc'd) or NULL. */
static char *rl_ask(const char *ep, const char *cmd, const char *key, bool auth, char **err_r)
{
	int fd = rl_connect(ep, err_r);
	if (fd < 0)
		return NULL;
	char *req = sift_asprintf("request=sift_ratelimit\ncommand=%s\nkey=%s\nprotocol_state=CONTROL\n"
				  "instance=siftctl.%ld\n%s\n",
				  cmd, key ? key : "", (long)getpid(), auth ? "sasl_username=siftctl\n" : "");
	size_t off = 0, len = strlen(req);
	while (off < len) {
		ssize_t w = write(fd, req + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			*err_r = sift_asprintf("write %s: %s", ep, strerror(errno));
			free(req);
			close(fd);
			return NULL;
		}
		off += (size_t)w;
	}
	free(req);
	struct sift_buf b = {0};
	long long deadline = sift_now_ms() + RL_TIMEOUT_MS;
	char *res = NULL;
	for (;;) {
		const char *s = b.len ? sift_buf_str(&b) : "";
		if (b.len && strstr(s, "\n\n"))
			break;
		long long left = deadline - sift_now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			*err_r = sift_asprintf("%s: no answer within %ds", ep, RL_TIMEOUT_MS / 1000);
			goto out;
		}
		char tmp[4096];
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			*err_r = sift_asprintf("%s closed the connection without an answer", ep);
			goto out;
		}
		if (b.len + (size_t)r > 65536) {
			*err_r = sift_asprintf("%s: answer too long", ep);
			goto out;
		}
		sift_buf_add(&b, tmp, (size_t)r);
	}
	const char *a = strstr(sift_buf_str(&b), "action=");
	if (!a) {
		*err_r = sift_asprintf("%s: answer without action=", ep);
		goto out;
	}
	a += 7;
	res = sift_strndup(a, strcspn(a, "\n"));
out:
	sift_buf_free(&b);
	close(fd);
	return res;
}

static int rl_run(int argc, char **argv, struct sift_opts *opts)
{
	const char *ep = NULL, *cmd = NULL, *key = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--policyd") == 0 && i + 1 < argc)
			ep = argv[++i];
		else if (!cmd)
			cmd = argv[i];
		else if (!key)
			key = argv[i];
		else {
			fprintf(stderr, "siftctl ratelimit: unexpected argument \"%s\"\n", argv[i]);
			return 2;
		}
	}
	if (!cmd ||
	    ((strcmp(cmd, "show") == 0 || strcmp(cmd, "reset") == 0) ? !key : strcmp(cmd, "stats") != 0)) {
		fputs(siftctl_ratelimit_cmd.usage, stderr);
		return 2;
	}
	if (key && (strchr(key, '\n') || strlen(key) > 1000)) {
		fprintf(stderr, "siftctl ratelimit: bad key\n");
		return 2;
	}
	char *err = NULL, *ep_alloc = NULL;
	if (!ep) {
		struct sift_config *cfg = sift_opts_config(opts, "", NULL, &err);
		if (!cfg) {
			fprintf(stderr, "siftctl: %s\n", err);
			free(err);
			return 1;
		}
		char *listen = sift_config_get(cfg, "policyd_listen", &err);
		free(err);
		err = NULL;
		if (listen && *sift_trim(listen)) {
			char **items = sift_split_list(listen);
			if (items[0])
				ep_alloc = sift_strdup(items[0]);
			free(items);
		}
		free(listen);
		sift_config_free(cfg);
		ep = ep_alloc ? ep_alloc : "inet:127.0.0.1:8892";
	}
	int rc = 1;
	char *action = rl_ask(ep, cmd, key, false, &err);
	if (action && strncmp(action, "INFO ratelimit", 14) != 0) {
		free(action);
		action = rl_ask(ep, cmd, key, true, &err);
	}
	if (!action) {
		fprintf(stderr, "siftctl ratelimit: %s\n", err ? err : "no answer");
		free(err);
		goto out;
	}
	if (strncmp(action, "INFO ratelimit", 14) != 0) {
		fprintf(stderr,
			"siftctl ratelimit: policyd at %s answered \"%s\": is the ratelimit plugin "
			"loaded, with ratelimit_control = yes?\n",
			ep, action);
		free(action);
		goto out;
	}
	/* "INFO ratelimit[: text] ; line ; line" */
	const char *p = action + 14;
	if (*p == ':')
		p += 2;
	bool error = strstr(action, "store error") != NULL || strstr(action, "usage:") != NULL ||
		     strstr(action, "disabled") != NULL;
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
	if (strstr(action, "no rule matches"))
		error = true;
	rc = error ? 1 : 0;
	free(action);
out:
	free(ep_alloc);
	return rc;
}

const struct siftctl_cmd siftctl_ratelimit_cmd = {
	.name = "ratelimit",
	.run = rl_run,
	.usage = "  ratelimit show [RULE:]VALUE | reset [RULE:]VALUE | stats [--policyd ENDPOINT]\n"
		 "       show or clear the ratelimit plugin's counters (VALUE as the rule's key\n"
		 "       builds it: 192.0.2.0/24, alice, bob@example.net|example.org) or its\n"
		 "       store-failure and over-limit counts, asking the running policyd\n"
		 "       (endpoint: --policyd, else policyd_listen of -c FILE)\n",
};
