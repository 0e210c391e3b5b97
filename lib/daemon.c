/*
 * daemon.c - what filterd, policyd and siftctl share around their main():
 * the common command line (-c -o -f -d -n -p -t), building the configuration
 * from the file and overrides, dropping privileges, the pid file and
 * listening sockets, systemd readiness notifications. Startup code:
 * single-threaded.
 *
 * The start-up order of both daemons: configuration and plugin files
 * (sift_gen_prepare, with the plugins' preinit) as root; then the listening
 * sockets (with their mode, group and owner) and the pid file, still as
 * root; then the drop to <daemon>_user; then the plugins' init as that user
 * (sift_gen_init); then READY=1.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
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
					    "string", "list", "map", "enum", "retired"};
	for (const struct sift_param *p = tab; p && p->name; p++)
		fprintf(out, "%s%s\t%s\t%s\t%lld\t%lld\t%s\t%s\n", prefix ? prefix : "", p->name,
			(unsigned)p->type < sizeof(types) / sizeof(types[0]) ? types[p->type] : "?",
			p->def ? p->def : "", p->min, p->max, p->choices ? p->choices : "",
			p->doc ? p->doc : "");
}

/* A user by name, or by uid when the name is all digits. */
static struct passwd *find_user(const char *user)
{
	struct passwd *pw = getpwnam(user);
	if (!pw && *user) {
		char *end;
		errno = 0;
		unsigned long uid = strtoul(user, &end, 10);
		if (!*end && errno == 0 && uid <= (uid_t)-2)
			pw = getpwuid((uid_t)uid);
	}
	return pw;
}

int sift_user_uid(const char *user, uid_t *uid_r)
{
	struct passwd *pw = user && *user ? find_user(user) : NULL;
	if (!pw)
		return -1;
	*uid_r = pw->pw_uid;
	return 0;
}

int sift_runas_resolve(const char *param, const char *user, struct sift_runas *r, char **err_r)
{
	memset(r, 0, sizeof(*r));
	r->param = param;
	r->uid = geteuid();
	r->gid = getegid();
	if (!user)
		user = "";
	if (!*user && geteuid() == 0) {
		*err_r = sift_asprintf("%s is empty: started as root, set %s to the user to run as "
				       "(e.g. %s = sift), or to root to stay root",
				       param, param, param);
		return -1;
	}
	if (!*user)
		return 0;
	struct passwd *pw = find_user(user);
	if (!pw) {
		*err_r = sift_asprintf("%s: unknown user \"%s\"", param, user);
		return -1;
	}
	r->name = sift_strdup(pw->pw_name);
	if (geteuid() != 0)
		return 0; /* we cannot switch: sift_drop_privileges warns */
	r->uid = pw->pw_uid;
	r->gid = pw->pw_gid;
	r->root = pw->pw_uid == 0;
	r->change = !r->root;
	return 0;
}

int sift_start_settings_check(const char *daemon, const char *user, const char *mode, const char *group,
			      char **err_r)
{
	struct sift_runas r;
	char *param = sift_asprintf("%s_user", daemon);
	int rc = sift_runas_resolve(param, user, &r, err_r);
	sift_runas_free(&r);
	free(param);
	if (rc == 0)
		rc = sift_socket_opts_check(daemon, mode, group, err_r);
	return rc;
}

void sift_runas_free(struct sift_runas *r)
{
	free(r->name);
	r->name = NULL;
}

int sift_drop_privileges(const struct sift_runas *r, char **err_r)
{
	if (r->root) {
		sift_log(LOG_WARNING, "%s = %s: running as root; plugins run with all privileges", r->param,
			 r->name);
	} else if (r->change) {
		if (setgroups(0, NULL) < 0 || initgroups(r->name, r->gid) < 0 || setgid(r->gid) < 0 ||
		    setuid(r->uid) < 0) {
			*err_r = sift_asprintf("%s: cannot become user %s: %s", r->param, r->name,
					       strerror(errno));
			return -1;
		}
		if (setuid(0) == 0 || seteuid(0) == 0) {
			*err_r = sift_asprintf("%s: privileges were not dropped", r->param);
			return -1;
		}
	} else if (r->name) {
		struct passwd *pw = getpwnam(r->name);
		if (pw && pw->pw_uid != geteuid())
			sift_log(LOG_WARNING, "%s = %s: not started as root, running as uid %u", r->param,
				 r->name, (unsigned)geteuid());
	}
	sift_host_privileges_dropped();
	return 0;
}

/* "0660": octal digits only, at most 0777. */
static int parse_mode(const char *daemon, const char *mode, mode_t *mode_r, char **err_r)
{
	size_t n = strspn(mode, "01234567");
	unsigned long m = n ? strtoul(mode, NULL, 8) : 0;
	if (!n || mode[n] || n > 4 || m > 0777) {
		*err_r = sift_asprintf("%s_socket_mode: \"%s\" is not an octal mode (e.g. 0660)", daemon,
				       mode);
		return -1;
	}
	*mode_r = (mode_t)m;
	return 0;
}

int sift_socket_opts_check(const char *daemon, const char *mode, const char *group, char **err_r)
{
	mode_t m;
	if (parse_mode(daemon, mode, &m, err_r) < 0)
		return -1;
	if (group && *group && !getgrnam(group)) {
		*err_r = sift_asprintf("%s_socket_group: unknown group \"%s\"", daemon, group);
		return -1;
	}
	return 0;
}

int sift_socket_mode(const char *daemon, const char *mode, mode_t *mode_r, char **err_r)
{
	return parse_mode(daemon, mode, mode_r, err_r);
}

int sift_bind_unix(int fd, const struct sockaddr_un *sa, mode_t mode)
{
	/* The socket is born with its mode: a umask that lets exactly mode
	 * through, around bind() (the kernel applies it to the socket's
	 * inode). Nothing changes the mode later by path: the path may be in
	 * a directory the daemon's user can write, who could by then have put
	 * a symlink there. umask is process-wide: the daemons bind their
	 * sockets at start, before the plugins' init, when the only other
	 * threads (control socket, HTTP listener) create no files. */
	mode_t old = umask(~mode & 0777);
	int rc = bind(fd, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	umask(old);
	errno = e;
	return rc;
}

int sift_socket_opts_apply(const char *daemon, const char *path, const char *mode, const char *group,
			   const struct sift_runas *r, char **err_r)
{
	mode_t m;
	if (sift_socket_opts_check(daemon, mode, group, err_r) < 0 || parse_mode(daemon, mode, &m, err_r) < 0)
		return -1;
	uid_t uid = r->change ? r->uid : (uid_t)-1;
	gid_t gid = r->change ? r->gid : (gid_t)-1;
	if (group && *group)
		gid = getgrnam(group)->gr_gid;
	/* Never by path (chown/chmod follow a symlink the daemon's user may
	 * have swapped in since bind(), and root would change its target):
	 * the final component is opened without following it, must be a
	 * socket, and only that inode is changed. */
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*err_r = sift_asprintf("socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		*err_r = sift_asprintf("socket %s: replaced by something that is not a socket since it was "
				       "bound; not changing it",
				       path);
		close(fd);
		return -1;
	}
	int rc = 0;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
		rc = -1;
	/* The mode was set at bind() (sift_bind_unix, or the umask around
	 * libmilter's bind); a socket bound otherwise is fixed through its
	 * descriptor. */
	if (rc == 0 && (st.st_mode & 07777) != m) {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (chmod(proc, m) < 0)
			rc = -1;
	}
	if (rc < 0)
		*err_r = sift_asprintf("socket %s: %s", path, strerror(errno));
	close(fd);
	return rc;
}

const char *sift_endpoint_unix_path(const char *endpoint)
{
	if (strncmp(endpoint, "unix:", 5) == 0)
		return endpoint + 5;
	if (strncmp(endpoint, "local:", 6) == 0)
		return endpoint + 6;
	return NULL;
}

int sift_write_pidfile(const char *path, char **err_r)
{
	if (!path || !*path)
		return 0;
	/* A name nobody can guess: the directory may be the daemon user's,
	 * who could otherwise put a file at a fixed one first and make the
	 * start fail. */
	char *tmp = sift_asprintf("%s.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		*err_r = sift_asprintf("pid file %s: %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (fchmod(fd, 0644) < 0 || write(fd, buf, (size_t)n) != n || close(fd) < 0 ||
	    rename(tmp, path) < 0) {
		*err_r = sift_asprintf("pid file %s: %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

void sift_remove_pidfile(const char *path)
{
	if (path && *path && unlink(path) < 0 && errno != ENOENT)
		sift_log(errno == EACCES || errno == EPERM ? LOG_DEBUG : LOG_WARNING, "pid file %s: %s", path,
			 strerror(errno));
}

/* Set by the main thread, read by the reload threads. */
static atomic_bool notified_ready;

#ifdef SIFT_HAVE_SYSTEMD
/*
 * systemd's readiness protocol, sent without waiting. sd_notify() blocks
 * while the receiver's queue (10 datagrams by default) is full: a service
 * manager that stops reading would then stall the reload path, which in
 * policyd is the event loop. A status that does not fit now is dropped
 * (and said once): READY=1 at start always fits an empty queue, and the
 * later ones (RELOADING=1, READY=1 around a reload, STOPPING=1) only
 * inform; `siftctl reload`, which the units' ExecReload= runs, learns a
 * reload's outcome from the control socket.
 */
static void notify_send(const char *text)
{
	static atomic_bool said; /* notifications come from several threads */
	const char *name = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;

	if (!name || !*name || (name[0] != '/' && name[0] != '@'))
		return;
	len = strlen(name);
	if (len >= sizeof sa.sun_path)
		return;
	memcpy(sa.sun_path, name, len);
	if (name[0] == '@')
		sa.sun_path[0] = 0;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	ssize_t n = sendto(fd, text, strlen(text), MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&sa,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	int e = errno;
	close(fd);
	if (n < 0 && !atomic_exchange(&said, true)) {
		sift_log(LOG_WARNING, "systemd notification \"%.*s\" dropped: %s%s", (int)strcspn(text, "\n"),
			 text, strerror(e),
			 e == EAGAIN ? " (the service manager reads no more; said once)" : " (said once)");
	}
}
#endif

void sift_notify(const char *state)
{
	if (strncmp(state, "READY=1", 7) == 0)
		atomic_store(&notified_ready, true);
#ifdef SIFT_HAVE_SYSTEMD
	if (strncmp(state, "RELOADING=1", 11) == 0) {
		struct timespec ts;
		char buf[128];
		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(buf, sizeof buf, "%s\nMONOTONIC_USEC=%llu", state,
			 (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
		notify_send(buf);
		return;
	}
	notify_send(state);
#endif
}

bool sift_notify_was_ready(void)
{
	return atomic_load(&notified_ready);
}

static int listen_unix(const char *path, int backlog, mode_t mode, char **err_r)
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
	if (sift_bind_unix(fd, &sun, mode) < 0 || listen(fd, backlog) < 0) {
		*err_r = sift_asprintf("listen on unix:%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int sift_listen(const char *endpoint, int backlog, char **err_r)
{
	return sift_listen_mode(endpoint, backlog, 0660, err_r);
}

int sift_listen_mode(const char *endpoint, int backlog, mode_t mode, char **err_r)
{
	if (strncmp(endpoint, "unix:", 5) == 0)
		return listen_unix(endpoint + 5, backlog, mode, err_r);
	if (strncmp(endpoint, "local:", 6) == 0)
		return listen_unix(endpoint + 6, backlog, mode, err_r);
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
