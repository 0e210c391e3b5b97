/*
 * daemon.c - what filterd, policyd and siftctl share around their main():
 * the common command line (-c -o -f -d -n -p -t), building the configuration
 * from the file and overrides, dropping privileges, the pid file and
 * listening sockets. Startup code: single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sift.h"

int sift_opts_parse(int argc, char **argv, struct sift_opts *o, const char *default_conf)
{
	int c;
	if (!o->config_file)
		o->config_file = default_conf;
	optind = 1;
	while ((c = getopt(argc, argv, "+c:o:fdnpPth")) != -1) {
		switch (c) {
		case 'c':
			o->config_file = optarg;
			break;
		case 'o':
			o->overrides = sift_realloc(o->overrides, (o->n_overrides + 1) * sizeof(char *));
			o->overrides[o->n_overrides++] = optarg;
			break;
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->debug = true;
			break;
		case 'n':
			o->print_nondefault = true;
			break;
		case 'p':
			o->print_all = true;
			break;
		case 'P':
			o->print_table = true;
			break;
		case 't':
			o->test_only = true;
			break;
		case 'h':
			return -2;
		default:
			return -1;
		}
	}
	return optind;
}

struct sift_config *sift_opts_config(const struct sift_opts *o, const char *prefix,
				     const struct sift_param *tab, char **err_r)
{
	if (o->print_table) {
		sift_params_dump(stdout, prefix, tab);
		exit(fflush(stdout) == 0 ? 0 : 1);
	}
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	if (tab)
		sift_config_defaults(cfg, prefix ? prefix : "", tab);
	if (sift_config_load(cfg, o->config_file, false, err_r) < 0)
		goto fail;
	for (size_t i = 0; i < o->n_overrides; i++)
		if (sift_config_set(cfg, o->overrides[i], "-o", err_r) < 0)
			goto fail;
	return cfg;
fail:
	sift_config_free(cfg);
	return NULL;
}

void sift_params_dump(FILE *out, const char *prefix, const struct sift_param *tab)
{
	static const char *const types[] = {"",	      "bool", "int", "time", "size",
					    "string", "list", "map", "enum"};
	for (const struct sift_param *p = tab; p && p->name; p++)
		fprintf(out, "%s%s\t%s\t%s\t%lld\t%lld\t%s\t%s\n", prefix ? prefix : "", p->name,
			(unsigned)p->type < sizeof(types) / sizeof(types[0]) ? types[p->type] : "?",
			p->def ? p->def : "", p->min, p->max, p->choices ? p->choices : "",
			p->doc ? p->doc : "");
}

int sift_drop_privileges(const char *user, char **err_r)
{
	if (!user || !*user || geteuid() != 0)
		return 0;
	struct passwd *pw = getpwnam(user);
	if (!pw) {
		char *end;
		unsigned long uid = strtoul(user, &end, 10);
		if (*end || !(pw = getpwuid((uid_t)uid))) {
			*err_r = sift_asprintf("unknown user \"%s\"", user);
			return -1;
		}
	}
	if (pw->pw_uid == 0) {
		sift_host_privileges_dropped();
		return 0;
	}
	if (setgroups(0, NULL) < 0 || initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		*err_r = sift_asprintf("cannot become user %s: %s", pw->pw_name, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		*err_r = sift_strdup("privileges were not dropped");
		return -1;
	}
	sift_host_privileges_dropped();
	return 0;
}

int sift_write_pidfile(const char *path, char **err_r)
{
	if (!path || !*path)
		return 0;
	char *tmp = sift_asprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		*err_r = sift_asprintf("pid file %s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (write(fd, buf, (size_t)n) != n || close(fd) < 0 || rename(tmp, path) < 0) {
		*err_r = sift_asprintf("pid file %s: %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

static int listen_unix(const char *path, int backlog, char **err_r)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sun.sun_path)) {
		*err_r = sift_asprintf("socket path too long: %s", path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err_r = sift_asprintf("socket: %s", strerror(errno));
		return -1;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*err_r = sift_asprintf("%s exists and is not a socket", path);
			close(fd);
			return -1;
		}
		unlink(path);
	}
	mode_t old = umask(0117);
	int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc < 0 || listen(fd, backlog) < 0) {
		*err_r = sift_asprintf("listen on unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int sift_listen(const char *endpoint, int backlog, char **err_r)
{
	if (strncmp(endpoint, "unix:", 5) == 0)
		return listen_unix(endpoint + 5, backlog, err_r);
	if (strncmp(endpoint, "local:", 6) == 0)
		return listen_unix(endpoint + 6, backlog, err_r);
	const char *spec;
	if (strncmp(endpoint, "inet:", 5) == 0)
		spec = endpoint + 5;
	else if (strncmp(endpoint, "inet6:", 6) == 0)
		spec = endpoint + 6;
	else {
		*err_r = sift_asprintf("bad endpoint \"%s\" (want unix:/path or inet:host:port)", endpoint);
		return -1;
	}
	char *host, *port;
	char *copy = sift_strdup(spec);
	char *colon = strrchr(copy, ':');
	if (!colon) {
		host = sift_strdup("127.0.0.1");
		port = sift_strdup(copy);
	} else {
		*colon = 0;
		host = copy[0] == '[' ? sift_strndup(copy + 1, strlen(copy) > 2 ? strlen(copy) - 2 : 0)
				      : sift_strdup(copy);
		port = sift_strdup(colon + 1);
	}
	free(copy);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	int gai = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
	int fd = -1;
	if (gai != 0) {
		*err_r = sift_asprintf("endpoint %s: %s", endpoint, gai_strerror(gai));
		goto out;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
		*err_r = sift_asprintf("listen on %s: %s", endpoint, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
out:
	if (ai)
		freeaddrinfo(ai);
	free(host);
	free(port);
	return fd;
}
