/*
 * siftctl-ratelimit.c - `siftctl ratelimit show|reset KEY` and
 * `siftctl ratelimit stats`: read or clear the counters of the ratelimit
 * plugin of a running policyd or filterd.
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
 * ratelimit_control = yes.
 *
 * Single-threaded; every wait is bounded (10 s).
 */
#include <errno.h>
#include <strings.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "siftctl.h"

#define RL_TIMEOUT_MS	  10000
#define RL_DEFAULT_SOCKET "/run/sift/ratelimit.sock"

static int rl_connect(const char *path, char **err_r)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err_r = sift_asprintf("socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		*err_r = sift_asprintf("connect %s: %s", path, strerror(errno));
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
	char *req = sift_asprintf("command=%s\nkey=%s\n\n", cmd, key ? key : "");
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
		if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
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
		char *on = sift_config_get(cfg, "ratelimit_control", &err);
		free(err);
		err = NULL;
		bool enabled =
			on &&
			(strcasecmp(sift_trim(on), "yes") == 0 || strcasecmp(sift_trim(on), "true") == 0 ||
			 strcasecmp(sift_trim(on), "on") == 0 || strcmp(sift_trim(on), "1") == 0);
		free(on);
		char *path = sift_config_get(cfg, "ratelimit_control_socket", &err);
		free(err);
		err = NULL;
		sift_config_free(cfg);
		if (!enabled) {
			free(path);
			fprintf(stderr,
				"siftctl ratelimit: ratelimit_control is off in the configuration: set "
				"ratelimit_control = yes (and ratelimit_control_socket) or give --socket "
				"PATH\n");
			return 1;
		}
		ep_alloc = path && *sift_trim(path) ? sift_strdup(sift_trim(path))
						    : sift_strdup(RL_DEFAULT_SOCKET);
		free(path);
		ep = ep_alloc;
	}
	int rc = 1;
	char *action = rl_ask(ep, cmd, key, &err);
	if (!action) {
		fprintf(stderr, "siftctl ratelimit: %s\n", err ? err : "no answer");
		free(err);
		goto out;
	}
	if (strncmp(action, "INFO ratelimit", 14) != 0) {
		fprintf(stderr, "siftctl ratelimit: %s answered \"%s\"\n", ep, action);
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
	.usage = "  ratelimit show [RULE:]VALUE | reset [RULE:]VALUE | stats [--socket PATH]\n"
		 "       show or clear the ratelimit plugin's counters (VALUE as the rule's key\n"
		 "       builds it: 192.0.2.0/24, alice, bob@example.net|example.org) or its\n"
		 "       store-failure and over-limit counts, asking the running daemon over\n"
		 "       its control socket (--socket, else ratelimit_control_socket of -c FILE,\n"
		 "       which needs ratelimit_control = yes)\n",
};
