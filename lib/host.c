/*
 * host.c - plugin loading, configuration generations and the plugin chain.
 *
 * A generation (struct sift_gen) is one parsed configuration with its
 * plugins' configuration blocks initialised. It is built by one thread
 * (startup or reload), read-only afterwards and reference-counted: each
 * context holds the generation it was created with, so a reload never
 * changes the configuration under a running connection. The current
 * generation pointer is swapped under a mutex.
 *
 * A context (struct sift_ctx) is one connection (filterd), one policy
 * connection (policyd) or one stored message (siftctl). It is used by one
 * thread at a time. It holds the connection and envelope items, the plugins'
 * per-connection and per-message state blocks, the message, and the result
 * (verdict, reply, symbols, queued header edits, policy actions).
 *
 * Shared objects are loaded once and never unloaded (a plugin's code must
 * stay mapped while any generation refers to it).
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sift.h"
#include "mailsyntax.h"
#include "mime.h"

const char *const sift_profile_names[SIFT_PROFILE_MAX] = {"inbound", "originating"};
const char *const sift_verdict_names[SIFT_VERDICT_MAX] = {"dunno",   "accept", "reject", "tempfail",
							  "discard", "hold",   "error"};

#define OFF(f) offsetof(struct sift_common_conf, f)
const struct sift_param sift_common_params[] = {
	{"plugin_directory", SIFT_P_STRING, SIFT_PLUGIN_DIR, 0, 0, OFF(plugin_directory), NULL,
	 "directory holding the plugin shared objects (<name>.so); it, the files and every directory "
	 "above them must be owned by root or the daemon's user and not writable by group or others "
	 "(a sticky directory of root's, such as /tmp, excepted above)"},
	{"inbound_plugins", SIFT_P_LIST, "", 0, 0, OFF(inbound_plugins), NULL,
	 "plugins run, in this order, for the inbound profile"},
	{"originating_plugins", SIFT_P_LIST, "", 0, 0, OFF(originating_plugins), NULL,
	 "plugins run, in this order, for the originating profile"},
	{"originating_daemons", SIFT_P_LIST, "ORIGINATING", 0, 0, OFF(originating_daemons), NULL,
	 "{daemon_name} (filterd) or policy_context (policyd) values that mean originating"},
	{"originating_networks", SIFT_P_MAP, "", 0, 0, OFF(originating_networks), NULL,
	 "map of client addresses (e.g. cidr:/etc/sift/originating.cidr) that mean originating"},
	{"dns_servers", SIFT_P_STRING, "", 0, 0, OFF(dns_servers), NULL,
	 "resolvers to forward DNS queries to (IP, IP:port, [IPv6], [IPv6]:port ...); empty = "
	 "/etc/resolv.conf"},
	{"dns_timeout", SIFT_P_TIME, "5s", 10, 60000, OFF(dns_timeout), NULL,
	 "default time limit of one DNS query"},
	{"state_store", SIFT_P_STRING, "memory:", 0, 0, OFF(state_store), NULL,
	 "key-value store for shared state: memory: or memory:max_keys=N (default 1000000, 0: unbounded; "
	 "when full, the keys that expire soonest are evicted) or redis:... (a host name is resolved by the "
	 "resolver of dns_servers, within connect_timeout)"},
	{"myhostname", SIFT_P_STRING, "", 0, 0, OFF(myhostname), NULL,
	 "this host's name (the default is the system's host name)"},
	{"authserv_id", SIFT_P_STRING, "$myhostname", 0, 0, OFF(authserv_id), NULL,
	 "authserv-id of the Authentication-Results headers we add"},
	{"tmpdir", SIFT_P_STRING, "/var/tmp", 0, 0, OFF(tmpdir), NULL,
	 "directory for spooling large messages"},
	{"quarantine_directory", SIFT_P_STRING, SIFT_STATEDIR "/quarantine", 0, 0, OFF(quarantine_directory),
	 NULL,
	 "where quarantined messages are kept (refused when writable by group or others, or not "
	 "owned by root or filterd_user, or below a directory that others can change)"},
	{"message_memory_limit", SIFT_P_SIZE, "1m", 0, 1LL << 32, OFF(message_memory_limit), NULL,
	 "message bytes kept in memory; the rest is spooled to tmpdir"},
	{"message_header_limit", SIFT_P_SIZE, "1m", 1024, 1LL << 30, OFF(message_header_limit), NULL,
	 "largest header section a message may have (its bytes plus 64 per header); a larger message "
	 "is refused with 552 5.3.4"},
	{"metrics_listen", SIFT_P_STRING, "", 0, 0, OFF(metrics_listen), NULL,
	 "HTTP listener for /metrics, /status.json and the status page: inet:HOST:PORT (empty: none; "
	 "read at start)"},
	{"metrics_auth_file", SIFT_P_STRING, "", 0, 0, OFF(metrics_auth_file), NULL,
	 "file of credentials (token = ..., basic = user:password) for clients outside "
	 "metrics_trusted_networks (owner the daemon's user or root, mode 0600; empty: none)"},
	{"metrics_trusted_networks", SIFT_P_LIST, "127.0.0.0/8 ::1", 0, 0, OFF(metrics_trusted_networks),
	 NULL, "clients of the metrics listener that need no credential (empty: every client needs one)"},
	{"metrics_allowed_hosts", SIFT_P_LIST, "", 0, 0, OFF(metrics_allowed_hosts), NULL,
	 "host names, besides IP addresses and localhost, that requests to the metrics listener may "
	 "name in Host and Origin (others get 421: a web page whose name is rebound to this host's "
	 "address must not read the status)"},
	{"metrics_symbols", SIFT_P_INT, "50", 0, 1000, OFF(metrics_symbols), NULL,
	 "symbols exported on /metrics: the most frequent ones (the status shows the top 20)"},
	SIFT_PARAM_END,
};
#undef OFF

enum err_action { EA_TEMPFAIL, EA_ACCEPT, EA_REJECT, EA_DUNNO };
static const char *const ea_names[] = {"tempfail", "accept", "reject", "dunno"};
static const struct sift_param error_action_param[] = {
	{"error_action", SIFT_P_ENUM, "tempfail", 0, 0, 0, "tempfail|accept|reject|dunno",
	 "what an internal error of this plugin becomes"},
	SIFT_PARAM_END,
};
const struct sift_param *const sift_plugin_common_params = error_action_param;

/* ---- plugin files ---------------------------------------------------------- */

/* A user's name for messages, else "uid N". */
static char *user_name(uid_t uid)
{
	struct passwd *pw = getpwuid(uid);
	return pw ? sift_strdup(pw->pw_name) : sift_asprintf("uid %u", (unsigned)uid);
}

/* Symbolic links followed on one path at most (the kernel's limit). */
#define TRUST_MAX_LINKS 40

/* One walk of trusted_open: what is checked, for the messages. */
struct trust_walk {
	const char *what, *path; /* the setting, the path as given */
	unsigned flags;
	uid_t owner;
	char **err_r;
};

/* "DIR/NAME", for messages (DIR "/" gives "/NAME"). */
static char *path_join(const char *dir, const char *name)
{
	return sift_asprintf("%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name);
}

/* The error about `comp`, a part of the path (or the path as given), owned
 * by uid `uid`: kind is "a directory" or "a file" (the path itself), or
 * "the directory" or "the symbolic link" (a part, or the path itself when
 * it is a link). */
static void owner_error(const struct trust_walk *w, const char *comp, const char *kind, uid_t uid)
{
	char *has = user_name(uid), *may = user_name(w->owner);
	const char *own = w->owner ? may : "";
	bool link = strstr(kind, "link") != NULL;
	if (strcmp(comp, w->path) == 0)
		*w->err_r = sift_asprintf("%s %s: refusing %s owned by uid %u (%s), not by root%s%s; "
					  "fix it with chown %s%s %s",
					  w->what, w->path, link ? "a symbolic link" : kind, (unsigned)uid,
					  has, w->owner ? " or " : "", own, link ? "-h " : "",
					  w->owner ? may : "root", w->path);
	else
		*w->err_r = sift_asprintf("%s %s: refusing %s %s on its path, owned by uid %u (%s), not by "
					  "root%s%s; fix it with chown %s%s %s",
					  w->what, w->path, kind, comp, (unsigned)uid, has,
					  w->owner ? " or " : "", own, link ? "-h " : "",
					  w->owner ? may : "root", comp);
	free(has);
	free(may);
}

static void mode_error(const struct trust_walk *w, const char *comp, const char *kind, mode_t mode)
{
	if (strcmp(comp, w->path) == 0)
		*w->err_r = sift_asprintf("%s %s: refusing %s writable by group or others (mode %04o); "
					  "fix it with chmod go-w %s",
					  w->what, w->path, kind, (unsigned)(mode & 07777), w->path);
	else
		*w->err_r = sift_asprintf("%s %s: refusing %s %s on its path, writable by group or others "
					  "(mode %04o); fix it with chmod go-w %s",
					  w->what, w->path, kind, comp, (unsigned)(mode & 07777), comp);
}

static void errno_error(const struct trust_walk *w, const char *comp, int e)
{
	if (strcmp(comp, w->path) == 0)
		*w->err_r = sift_asprintf("%s %s: %s", w->what, w->path, strerror(e));
	else
		*w->err_r = sift_asprintf("%s %s: %s: %s", w->what, w->path, comp, strerror(e));
}

/* The checks of the object the path names (a directory with SIFT_TRUST_DIR,
 * else a regular file): not writable by group or others, and owned by root
 * or w->owner with SIFT_TRUST_OWNER (or when it sits in a sticky directory
 * that others can write to). */
static int check_target(const struct trust_walk *w, const struct stat *st, bool in_sticky)
{
	bool dir = w->flags & SIFT_TRUST_DIR;
	if (dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode)) {
		*w->err_r = sift_asprintf("%s %s: not a %s", w->what, w->path,
					  dir ? "directory" : "regular file");
		return -1;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		mode_error(w, w->path, dir ? "a directory" : "a file", st->st_mode);
		return -1;
	}
	if (((w->flags & SIFT_TRUST_OWNER) || in_sticky) && st->st_uid != 0 && st->st_uid != w->owner) {
		owner_error(w, w->path, dir ? "a directory" : "a file", st->st_uid);
		return -1;
	}
	return 0;
}

/* The checks of a directory on the way (the path's ancestors, after
 * symbolic links): owned by root or w->owner (with SIFT_TRUST_OWNER, or
 * when it sits in a sticky directory), and not writable by group or others
 * unless it is root's and sticky (/tmp): there, others cannot replace or
 * rename entries they do not own, and the next part's owner is checked.
 * *sticky_r: it was accepted for being sticky. */
static int check_ancestor(const struct trust_walk *w, const char *comp, const struct stat *st, bool in_sticky,
			  bool *sticky_r)
{
	*sticky_r = false;
	if (((w->flags & SIFT_TRUST_OWNER) || in_sticky) && st->st_uid != 0 && st->st_uid != w->owner) {
		owner_error(w, comp, "the directory", st->st_uid);
		return -1;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		if (st->st_uid != 0 || !(st->st_mode & S_ISVTX)) {
			mode_error(w, comp, "the directory", st->st_mode);
			return -1;
		}
		*sticky_r = true;
	}
	return 0;
}

/* Opens `path` after checking every part of it, walking from "/" one
 * component at a time on descriptors (openat, O_NOFOLLOW), so that what is
 * checked is what is opened: the directories on the way by check_ancestor,
 * symbolic links (followed, TRUST_MAX_LINKS at most, their targets walked
 * by the same rules) owned by root or the owner, the object itself by
 * check_target; a file's own directory must not be writable by group or
 * others even when sticky. Returns an O_PATH descriptor of a directory
 * (SIFT_TRUST_DIR) or an O_RDONLY one of a regular file, or -1 with
 * *err_r. A relative path is taken from the current directory. */
static int trusted_open(const char *what, const char *path, unsigned flags, uid_t owner, char **err_r)
{
	const struct trust_walk w = {what, path, flags, owner, err_r};
	bool want_dir = flags & SIFT_TRUST_DIR;
	char *rest, *cur = NULL, *comp = NULL;
	int dfd = -1, fd = -1, links = 0;
	struct stat dst, st;
	bool in_sticky = false, sticky;
	if (!*path) {
		*err_r = sift_asprintf("%s: empty path", what);
		return -1;
	}
	if (path[0] == '/') {
		rest = sift_strdup(path);
	} else {
		char *cwd = getcwd(NULL, 0);
		if (!cwd) {
			*err_r = sift_asprintf("%s %s: the current directory: %s", what, path,
					       strerror(errno));
			return -1;
		}
		rest = sift_asprintf("%s/%s", cwd, path);
		free(cwd);
	}
	char *p = rest;
	for (;;) {
		if (*p == '/') {
			/* (again) from the root */
			while (*p == '/')
				p++;
			if (dfd >= 0)
				close(dfd);
			free(cur);
			cur = sift_strdup("/");
			in_sticky = false;
			dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (dfd < 0 || fstat(dfd, &dst) < 0) {
				errno_error(&w, "/", errno);
				goto fail;
			}
			if (*p) {
				if (check_ancestor(&w, "/", &dst, false, &sticky) < 0)
					goto fail;
				in_sticky = sticky;
			}
		}
		if (!*p) {
			/* the path (or a link's target) is "/" */
			st = dst;
			if (check_target(&w, &st, false) < 0)
				goto fail;
			fd = dfd;
			dfd = -1;
			goto done;
		}
		char *name = p;
		p += strcspn(p, "/");
		if (*p) {
			*p++ = 0;
			while (*p == '/')
				p++;
		}
		bool last = !*p;
		free(comp);
		comp = path_join(cur, name);
		fd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			errno_error(&w, last && !links ? path : comp, errno);
			goto fail;
		}
		if (S_ISLNK(st.st_mode)) {
			if (++links > TRUST_MAX_LINKS) {
				*err_r = sift_asprintf("%s %s: more than %d symbolic links on its path", what,
						       path, TRUST_MAX_LINKS);
				goto fail;
			}
			if (((flags & SIFT_TRUST_OWNER) || in_sticky) && st.st_uid != 0 &&
			    st.st_uid != owner) {
				owner_error(&w, comp, "the symbolic link", st.st_uid);
				goto fail;
			}
			char target[PATH_MAX];
			ssize_t n = readlinkat(fd, "", target, sizeof(target));
			if (n <= 0 || n >= (ssize_t)sizeof(target)) {
				errno_error(&w, comp, n < 0 ? errno : n == 0 ? ENOENT : ENAMETOOLONG);
				goto fail;
			}
			target[n] = 0;
			close(fd);
			fd = -1;
			/* the link's target, then what followed the link */
			char *more = sift_asprintf("%s%s%s", target, *p ? "/" : "", p);
			free(rest);
			rest = p = more;
			continue;
		}
		if (last && !want_dir) {
			/* the file, opened for reading from the directory it
			 * was checked in; that directory holds it, sticky or
			 * not: nobody but root or the owner may write there */
			close(fd);
			fd = -1;
			if (dst.st_mode & (S_IWGRP | S_IWOTH)) {
				mode_error(&w, cur, "the directory", dst.st_mode);
				goto fail;
			}
			if (!S_ISREG(st.st_mode)) {
				check_target(&w, &st, in_sticky);
				goto fail;
			}
			fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0 || fstat(fd, &st) < 0) {
				errno_error(&w, links ? comp : path, errno);
				goto fail;
			}
			if (check_target(&w, &st, in_sticky) < 0)
				goto fail;
			goto done;
		}
		if (last) {
			if (check_target(&w, &st, in_sticky) < 0)
				goto fail;
			goto done;
		}
		if (!S_ISDIR(st.st_mode)) {
			errno_error(&w, comp, ENOTDIR);
			goto fail;
		}
		/* ".." leads to a directory whose own parent is not known
		 * here: its owner is checked as if that were sticky */
		bool dotdot = strcmp(name, "..") == 0;
		if (check_ancestor(&w, comp, &st, in_sticky || dotdot, &sticky) < 0)
			goto fail;
		in_sticky = sticky;
		close(dfd);
		dfd = fd;
		fd = -1;
		dst = st;
		if (dotdot) {
			char *slash = strrchr(cur, '/');
			if (slash == cur)
				cur[1] = 0;
			else if (slash)
				*slash = 0;
		} else if (strcmp(name, ".") != 0) {
			char *c = path_join(cur, name);
			free(cur);
			cur = c;
		}
	}
done:
	if (dfd >= 0)
		close(dfd);
	free(rest);
	free(cur);
	free(comp);
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	fd = -1;
	goto done;
}

/* Code is loaded only from files and directories that nobody but root (or
 * the user we run as) can change: owned by root or us, not writable by
 * group or others, and so every directory on the way there (trusted_open).
 * The quarantine's directory is held to the same rules, its owner being
 * root or the daemon's user (who can replace messages and release tokens
 * there). */
int sift_path_trusted(const char *what, const char *path, unsigned flags, uid_t owner, char **err_r)
{
	int fd = trusted_open(what, path, flags, owner, err_r);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

struct loaded_so {
	char *path;
	const struct sift_plugin *p;
	struct loaded_so *next;
};
static struct loaded_so *loaded_sos;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
/* glibc keeps the name given to dlopen as the object's name, and a later
 * dlopen of that name returns the object without opening anything: each
 * load goes through a descriptor number no earlier load used, so that
 * "/proc/self/fd/N" names one object only (and a plugin's dladdr name,
 * given back to dlopen, finds itself). */
static int next_load_fd;

const struct sift_plugin *sift_plugin_load(const char *path, char **err_r)
{
	pthread_mutex_lock(&load_lock);
	for (struct loaded_so *l = loaded_sos; l; l = l->next)
		if (strcmp(l->path, path) == 0) {
			pthread_mutex_unlock(&load_lock);
			return l->p;
		}
	pthread_mutex_unlock(&load_lock);

	/* The file checked is the file loaded: dlopen reads it through the
	 * descriptor trusted_open checked, never by its path again (which
	 * anyone able to change a directory on the way could redirect). */
	int tfd = trusted_open("plugin", path, SIFT_TRUST_OWNER, geteuid(), err_r);
	if (tfd < 0)
		return NULL;
	pthread_mutex_lock(&load_lock);
	int fd = fcntl(tfd, F_DUPFD_CLOEXEC, next_load_fd);
	int dup_errno = errno;
	if (fd >= 0)
		next_load_fd = fd + 1;
	pthread_mutex_unlock(&load_lock);
	close(tfd);
	if (fd < 0) {
		*err_r = sift_asprintf("plugin %s: %s", path, strerror(dup_errno));
		return NULL;
	}
	char fdpath[32];
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	struct stat fst, pst;
	if (fstat(fd, &fst) < 0 || stat(fdpath, &pst) < 0 || pst.st_dev != fst.st_dev ||
	    pst.st_ino != fst.st_ino) {
		*err_r = sift_asprintf(
			"plugin %s: cannot load the checked file through %s (is /proc mounted?)", path,
			fdpath);
		close(fd);
		return NULL;
	}
	void *h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
	close(fd);
	if (!h) {
		/* dlerror names the file as it was opened: said once, as
		 * configured */
		const char *e = dlerror();
		size_t l = strlen(fdpath);
		if (e && strncmp(e, fdpath, l) == 0 && e[l] == ':')
			e += l + 1 + (e[l + 1] == ' ');
		*err_r = sift_asprintf("plugin %s: %s", path, e ? e : "cannot load");
		return NULL;
	}
	const struct sift_plugin *p = dlsym(h, "sift_plugin_entry");
	if (!p) {
		*err_r = sift_asprintf("plugin %s: no sift_plugin_entry symbol", path);
		dlclose(h);
		return NULL;
	}
	if (p->abi_major != SIFT_ABI_MAJOR || p->abi_minor > SIFT_ABI_MINOR) {
		*err_r = sift_asprintf("plugin %s: built for plugin ABI %u.%u, this host has %u.%u", path,
				       p->abi_major, p->abi_minor, SIFT_ABI_MAJOR, SIFT_ABI_MINOR);
		dlclose(h);
		return NULL;
	}
	if (p->struct_size < offsetof(struct sift_plugin, policy) + sizeof(p->policy) ||
	    p->struct_size > sizeof(struct sift_plugin)) {
		*err_r = sift_asprintf("plugin %s: bad struct size %zu", path, p->struct_size);
		dlclose(h);
		return NULL;
	}
	if (!p->name || !*p->name || strchr(p->name, '/')) {
		*err_r = sift_asprintf("plugin %s: no valid name", path);
		dlclose(h);
		return NULL;
	}
	struct loaded_so *l = sift_calloc(1, sizeof(*l));
	l->path = sift_strdup(path);
	l->p = p;
	pthread_mutex_lock(&load_lock);
	l->next = loaded_sos;
	loaded_sos = l;
	pthread_mutex_unlock(&load_lock);
	return p;
}

/* ---- generations ------------------------------------------------------------ */

struct plugin_inst {
	const struct sift_plugin *p;
	void *conf;
	int error_action;
	bool inited;
	char *prefix; /* "<name>_" */
	int mslot;    /* metrics slot (sift_metrics_plugin_slot) */
};

struct map_list {
	struct sift_map *map;
	struct map_list *next;
};

struct sift_gen {
	atomic_int refs;
	enum sift_daemon daemon;
	struct sift_config *cfg;
	struct sift_common_conf common;
	struct plugin_inst *pl;
	size_t npl;
	size_t *prof[SIFT_PROFILE_MAX];
	size_t nprof[SIFT_PROFILE_MAX];
	unsigned actions, flags, phases;
	struct map_list *maps; /* opened by plugins through host->map_open */
	char *myhostname;
};

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sift_gen *current_gen;
static struct sift_gen *building_gen; /* for host->map_open during init */
static bool privileges_dropped;
static struct sift_kv *global_kv;
static bool dns_ready;

void sift_host_privileges_dropped(void)
{
	privileges_dropped = true;
}

/* The plugin's sign hook, NULL when it has none or was built for an ABI
 * minor before 9 (its struct ends before the field). */
static enum sift_verdict (*sign_hook(const struct sift_plugin *p))(struct sift_ctx *)
{
	if (p->struct_size < offsetof(struct sift_plugin, sign) + sizeof(p->sign))
		return NULL;
	return p->sign;
}

static int plugin_phases(const struct sift_plugin *p)
{
	unsigned ph = 0;
	if (p->connect)
		ph |= 1u << SIFT_PH_CONNECT;
	if (p->helo)
		ph |= 1u << SIFT_PH_HELO;
	if (p->mail)
		ph |= 1u << SIFT_PH_MAIL;
	if (p->rcpt)
		ph |= 1u << SIFT_PH_RCPT;
	if (p->data)
		ph |= 1u << SIFT_PH_DATA;
	if (p->header)
		ph |= 1u << SIFT_PH_HEADER;
	if (p->eoh)
		ph |= 1u << SIFT_PH_EOH;
	if (p->body)
		ph |= 1u << SIFT_PH_BODY;
	if (p->eom || sign_hook(p))
		ph |= 1u << SIFT_PH_EOM;
	if (p->policy)
		ph |= 1u << SIFT_PH_POLICY;
	return (int)ph;
}

static ssize_t find_plugin(struct sift_gen *g, const char *name)
{
	for (size_t i = 0; i < g->npl; i++)
		if (strcmp(g->pl[i].p->name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static void gen_free(struct sift_gen *g)
{
	for (size_t i = 0; i < g->npl; i++) {
		struct plugin_inst *pi = &g->pl[i];
		if (pi->inited && pi->p->release)
			pi->p->release(pi->conf);
		if (pi->conf) {
			if (pi->p->params)
				sift_params_free(pi->p->params, pi->conf);
			free(pi->conf);
		}
		free(pi->prefix);
	}
	free(g->pl);
	for (int i = 0; i < SIFT_PROFILE_MAX; i++)
		free(g->prof[i]);
	while (g->maps) {
		struct map_list *m = g->maps;
		g->maps = m->next;
		sift_map_free(m->map);
		free(m);
	}
	sift_params_free(sift_common_params, &g->common);
	if (g->cfg)
		sift_config_free(g->cfg);
	free(g->myhostname);
	free(g);
}

/* Plugins linked into the program (sift_plugin_builtin). */
#define MAX_BUILTINS 8
static const struct sift_plugin *builtins[MAX_BUILTINS];
static size_t n_builtins;

void sift_plugin_builtin(const struct sift_plugin *p)
{
	pthread_mutex_lock(&load_lock);
	if (n_builtins == MAX_BUILTINS)
		sift_fatal("too many built-in plugins");
	builtins[n_builtins++] = p;
	pthread_mutex_unlock(&load_lock);
}

static const struct sift_plugin *builtin_plugin(const char *name)
{
	const struct sift_plugin *p = NULL;
	pthread_mutex_lock(&load_lock);
	for (size_t i = 0; i < n_builtins && !p; i++)
		if (strcmp(builtins[i]->name, name) == 0)
			p = builtins[i];
	pthread_mutex_unlock(&load_lock);
	return p;
}

static int add_plugin(struct sift_gen *g, const char *name, char **err_r)
{
	if (find_plugin(g, name) >= 0)
		return 0;
	for (const char *c = name; *c; c++)
		if (!(*c == '_' || *c == '-' || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))) {
			*err_r = sift_asprintf("bad plugin name \"%s\"", name);
			return -1;
		}
	const struct sift_plugin *p = builtin_plugin(name);
	if (!p) {
		/* The directory is checked like the files: whoever can write
		 * to it can replace a plugin. */
		if (sift_path_trusted("plugin_directory", g->common.plugin_directory,
				      SIFT_TRUST_DIR | SIFT_TRUST_OWNER, geteuid(), err_r) < 0)
			return -1;
		char *path = sift_asprintf("%s/%s.so", g->common.plugin_directory, name);
		p = sift_plugin_load(path, err_r);
		free(path);
		if (!p)
			return -1;
	}
	if (strcmp(p->name, name) != 0) {
		*err_r = sift_asprintf("plugin %s.so calls itself \"%s\"", name, p->name);
		return -1;
	}
	unsigned want = g->daemon == SIFT_POLICYD ? SIFT_D_POLICYD : SIFT_D_FILTERD;
	if (!(p->daemons & want)) {
		*err_r = sift_asprintf("plugin %s does not run in %s", name,
				       g->daemon == SIFT_POLICYD ? "policyd" : "filterd");
		return -1;
	}
	g->pl = sift_realloc(g->pl, (g->npl + 1) * sizeof(*g->pl));
	struct plugin_inst *pi = &g->pl[g->npl++];
	memset(pi, 0, sizeof(*pi));
	pi->p = p;
	pi->prefix = sift_asprintf("%s_", name);
	pi->mslot = sift_metrics_plugin_slot(name);
	sift_config_defaults(g->cfg, pi->prefix, error_action_param);
	if (p->params)
		sift_config_defaults(g->cfg, pi->prefix, p->params);
	return 0;
}

void sift_config_common_defaults(struct sift_config *cfg)
{
	sift_config_defaults(cfg, "", sift_common_params);
	/* myhostname defaults to the system's name, so that $myhostname (and
	 * authserv_id, which defaults to it) expand to something useful. */
	static char hn[HOST_NAME_MAX + 1];
	if (!hn[0] && gethostname(hn, sizeof(hn) - 1) < 0)
		strcpy(hn, "localhost");
	const struct sift_param dyn[] = {
		{"myhostname", SIFT_P_STRING, hn, 0, 0, 0, NULL, NULL},
		SIFT_PARAM_END,
	};
	sift_config_defaults(cfg, "", dyn);
}

/* A plugin's error about one of its parameters: prefixed with the file:line
 * where that parameter was set. */
static void locate_error(const struct sift_config *cfg, char **err_r)
{
	if (err_r && *err_r) {
		char *located = sift_config_locate(cfg, *err_r);
		free(*err_r);
		*err_r = located;
	}
}

/* An error of the service a parameter configures (the resolver, the
 * key-value store), which does not name it: "param: ..." (without the
 * service's own "dns: "), so that locate_error adds where it was set. */
static void name_param(const char *param, char **err_r)
{
	if (!err_r || !*err_r)
		return;
	const char *m = *err_r;
	if (strncmp(m, "dns: ", 5) == 0)
		m += 5;
	char *named = sift_asprintf("%s: %s", param, m);
	free(*err_r);
	*err_r = named;
}

/* The metrics settings that a start or a reload would only find wrong
 * later: the listener's endpoint and the trusted networks. */
static int metrics_conf_check(const struct sift_common_conf *c, char **err_r)
{
	const char *l = c->metrics_listen;
	if (l && *l && strncmp(l, "inet:", 5) != 0 && strncmp(l, "inet6:", 6) != 0) {
		*err_r = sift_asprintf("metrics_listen: bad endpoint \"%s\" (want inet:HOST:PORT or "
				       "inet6:[ADDR]:PORT)",
				       l);
		return -1;
	}
	for (const char *const *n = c->metrics_trusted_networks; n && *n; n++) {
		struct sift_net net;
		if (sift_net_parse(*n, true, &net) < 0) {
			*err_r = sift_asprintf("metrics_trusted_networks: bad network \"%s\"", *n);
			return -1;
		}
	}
	return 0;
}

/* quarantine_directory, owned by root or filterd_user (empty: us). */
static int quarantine_check(const struct sift_config *cfg, const char *dir, char **err_r)
{
	char *user = sift_config_get(cfg, "filterd_user", NULL);
	int rc = sift_quarantine_dir_check(dir, user, err_r);
	free(user);
	return rc;
}

/* Common parameters read once, by the first generation (the resolver, the
 * key-value store, the metrics listener): a reload that changes one keeps
 * the running value, with a warning naming it (sift_params_restart_only),
 * after checking that a new state_store would open, so that the next
 * start does not fail on it. */
static const char *const common_start_only[] = {"dns_servers", "dns_timeout", "state_store", "metrics_listen",
						NULL};

static int reload_common_check(const struct sift_gen *g, char **err_r)
{
	struct sift_gen *cur = sift_gen_current();
	if (!cur)
		return 0;
	int rc = 0;
	if (strcmp(cur->common.state_store, g->common.state_store) != 0) {
		struct sift_kv *kv = sift_kv_open(g->common.state_store, err_r);
		if (!kv) {
			name_param("state_store", err_r);
			rc = -1;
		}
		sift_kv_free(kv);
	}
	if (rc == 0) {
		const char *live[sizeof(sift_common_params) / sizeof(sift_common_params[0])];
		size_t n = 0;
		for (const struct sift_param *p = sift_common_params; p->name; p++) {
			bool once = false;
			for (const char *const *s = common_start_only; *s; s++)
				once |= strcmp(*s, p->name) == 0;
			if (!once)
				live[n++] = p->name;
		}
		live[n] = NULL;
		sift_params_restart_only(g->daemon == SIFT_POLICYD ? "policyd" : "filterd",
					 sift_common_params, &cur->common, &g->common, live);
	}
	sift_gen_unref(cur);
	return rc;
}

struct sift_gen *sift_gen_prepare(enum sift_daemon daemon, struct sift_config *cfg, char **err_r)
{
	struct sift_gen *g = sift_calloc(1, sizeof(*g));
	atomic_init(&g->refs, 1);
	g->daemon = daemon == SIFT_SIFTCTL ? SIFT_FILTERD : daemon;
	g->cfg = cfg;
	sift_config_common_defaults(cfg);
	if (sift_params_parse(cfg, "", sift_common_params, &g->common, err_r) < 0 ||
	    metrics_conf_check(&g->common, err_r) < 0 ||
	    (g->daemon == SIFT_FILTERD && quarantine_check(cfg, g->common.quarantine_directory, err_r) < 0))
		goto fail;
	g->myhostname = sift_strdup(*g->common.myhostname ? g->common.myhostname : "localhost");

	const char *const *lists[SIFT_PROFILE_MAX] = {g->common.inbound_plugins,
						      g->common.originating_plugins};
	for (int pr = 0; pr < SIFT_PROFILE_MAX; pr++)
		for (const char *const *n = lists[pr]; n && *n; n++)
			if (add_plugin(g, *n, err_r) < 0)
				goto fail;
	for (int pr = 0; pr < SIFT_PROFILE_MAX; pr++) {
		size_t cnt = 0;
		for (const char *const *n = lists[pr]; n && *n; n++)
			cnt++;
		g->prof[pr] = sift_calloc(cnt + 1, sizeof(size_t));
		for (const char *const *n = lists[pr]; n && *n; n++) {
			ssize_t idx = find_plugin(g, *n);
			bool dup = false;
			for (size_t k = 0; k < g->nprof[pr]; k++)
				dup |= g->prof[pr][k] == (size_t)idx;
			if (dup) {
				*err_r = sift_asprintf("%s_plugins lists %s twice", sift_profile_names[pr],
						       *n);
				goto fail;
			}
			g->prof[pr][g->nprof[pr]++] = (size_t)idx;
		}
	}
	if (sift_config_check_names(cfg, g->common.plugin_directory, err_r) > 0)
		goto fail;

	/* Process-wide services, set up by the first generation; a reload
	 * checks a changed state_store and names what it keeps. */
	if (global_kv && reload_common_check(g, err_r) < 0)
		goto fail;
	if (!dns_ready) {
		if (sift_dns_init(g->common.dns_servers, (long)g->common.dns_timeout, err_r) < 0) {
			name_param("dns_servers", err_r);
			goto fail;
		}
		dns_ready = true;
	}
	if (!global_kv) {
		global_kv = sift_kv_open(g->common.state_store, err_r);
		if (!global_kv) {
			name_param("state_store", err_r);
			goto fail;
		}
	}

	for (size_t i = 0; i < g->npl; i++) {
		struct plugin_inst *pi = &g->pl[i];
		const struct sift_plugin *p = pi->p;
		pi->conf = sift_calloc(1, p->conf_size ? p->conf_size : 1);
		if (sift_params_parse(cfg, pi->prefix, error_action_param, &pi->error_action, err_r) < 0)
			goto fail;
		if (p->params && sift_params_parse(cfg, pi->prefix, p->params, pi->conf, err_r) < 0)
			goto fail;
		char *perr = NULL;
		if (p->preinit && !privileges_dropped && p->preinit(&sift_host_table, pi->conf, &perr) < 0) {
			*err_r = sift_asprintf("plugin %s: %s", p->name, perr ? perr : "preinit failed");
			free(perr);
			goto fail;
		}
	}
	return g;

fail:
	locate_error(cfg, err_r);
	g->cfg = NULL; /* the caller still owns cfg on failure */
	gen_free(g);
	return NULL;
}

int sift_gen_init(struct sift_gen *g, char **err_r)
{
	building_gen = g;
	for (size_t i = 0; i < g->npl; i++) {
		struct plugin_inst *pi = &g->pl[i];
		const struct sift_plugin *p = pi->p;
		char *perr = NULL;
		if (p->init && p->init(&sift_host_table, pi->conf, &perr) < 0) {
			*err_r = sift_asprintf("plugin %s: %s", p->name, perr ? perr : "init failed");
			free(perr);
			locate_error(g->cfg, err_r);
			building_gen = NULL;
			return -1;
		}
		pi->inited = true;
		g->actions |= p->actions;
		g->flags |= p->flags;
		g->phases |= (unsigned)plugin_phases(p);
	}
	/* The host deletes incoming Authentication-Results that claim our
	 * authserv-id whenever it sees the header (strip_auth_results). */
	if (g->phases & ((1u << SIFT_PH_HEADER) | (1u << SIFT_PH_EOH) | (1u << SIFT_PH_EOM)))
		g->actions |= SIFT_A_CHGHDRS;
	building_gen = NULL;
	return 0;
}

struct sift_gen *sift_gen_new(enum sift_daemon daemon, struct sift_config *cfg, char **err_r)
{
	/* A daemon that told its service manager it is ready is reloading. */
	bool reloading = sift_notify_was_ready();
	if (reloading)
		sift_notify("RELOADING=1");
	struct sift_gen *g = sift_gen_prepare(daemon, cfg, err_r);
	if (g && sift_gen_init(g, err_r) < 0) {
		g->cfg = NULL; /* the caller still owns cfg on failure */
		gen_free(g);
		g = NULL;
	}
	if (reloading)
		sift_notify(g ? "READY=1\nSTATUS=configuration reloaded"
			      : "READY=1\nSTATUS=reload failed, running the previous configuration");
	return g;
}

void sift_gen_ref(struct sift_gen *g)
{
	atomic_fetch_add(&g->refs, 1);
}

void sift_gen_unref(struct sift_gen *g)
{
	if (g && atomic_fetch_sub(&g->refs, 1) == 1)
		gen_free(g);
}

struct sift_gen *sift_gen_current(void)
{
	pthread_mutex_lock(&current_lock);
	struct sift_gen *g = current_gen;
	if (g)
		sift_gen_ref(g);
	pthread_mutex_unlock(&current_lock);
	return g;
}

void sift_gen_set_current(struct sift_gen *g)
{
	pthread_mutex_lock(&current_lock);
	struct sift_gen *old = current_gen;
	current_gen = g;
	pthread_mutex_unlock(&current_lock);
	if (g)
		sift_metrics_generation();
	sift_gen_unref(old);
}

const struct sift_common_conf *sift_gen_common(const struct sift_gen *g)
{
	return &g->common;
}
const struct sift_config *sift_gen_config(const struct sift_gen *g)
{
	return g->cfg;
}
unsigned sift_gen_actions(const struct sift_gen *g)
{
	return g->actions;
}
unsigned sift_gen_flags(const struct sift_gen *g)
{
	return g->flags;
}
unsigned sift_gen_phases(const struct sift_gen *g)
{
	return g->phases;
}
int sift_gen_plugin_slot(const struct sift_gen *g, size_t i)
{
	return i < g->npl ? g->pl[i].mslot : -1;
}

size_t sift_gen_plugin_count(const struct sift_gen *g)
{
	return g->npl;
}
const struct sift_plugin *sift_gen_plugin(const struct sift_gen *g, size_t i)
{
	return i < g->npl ? g->pl[i].p : NULL;
}
void *sift_gen_plugin_conf(const struct sift_gen *g, size_t i)
{
	return i < g->npl ? g->pl[i].conf : NULL;
}

void sift_gen_print_params(FILE *out, const struct sift_gen *g, bool all)
{
	sift_params_print(out, g->cfg, "", sift_common_params, all);
	for (size_t i = 0; i < g->npl; i++) {
		sift_params_print(out, g->cfg, g->pl[i].prefix, error_action_param, all);
		if (g->pl[i].p->params)
			sift_params_print(out, g->cfg, g->pl[i].prefix, g->pl[i].p->params, all);
	}
}

/* ---- contexts ------------------------------------------------------------- */

struct arena_block {
	struct arena_block *next;
	max_align_t data[];
};

struct sift_ctx {
	struct sift_gen *gen;
	enum sift_daemon daemon;
	enum sift_profile profile;
	bool profile_forced;
	char *items[SIFT_I_MAX];
	char **rcpts;
	size_t nrcpt, rcap;
	size_t rcpt_bytes; /* their strlen + 1 */
	bool rcpts_full;   /* SIFT_MAX_RCPTS reached: logged once per message */
	const char *(*macro_fn)(void *, const char *);
	void *macro_arg;
	long long deadline;
	void **conn; /* per plugin instance */
	void **mstate;
	bool in_msg;
	struct sift_msg *msg;
	struct sift_result res;
	struct sift_edit **edit_tail;
	struct sift_symbol **sym_tail;
	size_t cur;
	struct arena_block *arena;
	long long msg_start;
	struct sift_mime *mime;	  /* host->mime() cache, freed at message end */
	unsigned char *mime_body; /* a copy of the body for mime, when it could not be mapped */
	bool conn_accepted;	  /* ACCEPT at CONNECT/HELO: whitelists the connection */
	bool quarantined;	  /* host->quarantine stored the message */
	struct sift_pstat *pstat; /* per plugin, for the metrics */
	/* host->msg_outcome, set by sift_ctx_msg_outcome */
	enum sift_verdict outcome;
	/* The sign hooks' run (struct sift_plugin.sign): the header as it
	 * will leave, rebuilt before each signer (sign_view). */
	bool signing;
	struct sift_header *view;
	size_t nview;
	char *view_block; /* the header block of the view, "Name:value\r\n"... "\r\n" */
	size_t view_block_len;
};

static bool is_msg_item(enum sift_item it)
{
	return it == SIFT_I_SENDER || it == SIFT_I_RCPT || it == SIFT_I_QUEUE_ID;
}

struct sift_ctx *sift_ctx_new(struct sift_gen *g, enum sift_daemon daemon)
{
	struct sift_ctx *ctx = sift_calloc(1, sizeof(*ctx));
	sift_gen_ref(g);
	ctx->gen = g;
	ctx->daemon = daemon;
	ctx->conn = sift_calloc(g->npl + 1, sizeof(void *));
	ctx->mstate = sift_calloc(g->npl + 1, sizeof(void *));
	ctx->pstat = sift_calloc(g->npl + 1, sizeof(*ctx->pstat));
	for (size_t i = 0; i < g->npl; i++)
		if (g->pl[i].p->conn_size)
			ctx->conn[i] = sift_calloc(1, g->pl[i].p->conn_size);
	ctx->edit_tail = &ctx->res.edits;
	ctx->sym_tail = &ctx->res.symbols;
	return ctx;
}

static void clear_reply(struct sift_result *r)
{
	free(r->reply_code);
	free(r->reply_xcode);
	free(r->reply_text);
	r->reply_code = r->reply_xcode = r->reply_text = NULL;
}

static void clear_actions(struct sift_result *r)
{
	for (size_t i = 0; i < r->n_actions; i++)
		free(r->actions[i]);
	free(r->actions);
	free(r->action_once);
	r->actions = NULL;
	r->action_once = NULL;
	r->n_actions = 0;
}

static void clear_result(struct sift_ctx *ctx)
{
	struct sift_result *r = &ctx->res;
	clear_reply(r);
	clear_actions(r);
	for (size_t i = 0; i < r->n_once_sent; i++)
		free(r->once_sent[i]);
	free(r->once_sent);
	free(r->hold_reason);
	while (r->edits) {
		struct sift_edit *e = r->edits;
		r->edits = e->next;
		free(e->name);
		free(e->value);
		free(e);
	}
	while (r->symbols) {
		struct sift_symbol *s = r->symbols;
		r->symbols = s->next;
		free(s->name);
		free(s->option);
		free(s);
	}
	memset(r, 0, sizeof(*r));
	ctx->edit_tail = &r->edits;
	ctx->sym_tail = &r->symbols;
}

void sift_ctx_free(struct sift_ctx *ctx)
{
	if (!ctx)
		return;
	if (ctx->in_msg)
		sift_ctx_msg_end(ctx, true);
	struct sift_gen *g = ctx->gen;
	for (size_t i = 0; i < g->npl; i++)
		if (g->pl[i].p->close) {
			ctx->cur = i;
			g->pl[i].p->close(ctx);
		}
	for (size_t i = 0; i < g->npl; i++)
		free(ctx->conn[i]);
	free(ctx->conn);
	free(ctx->mstate);
	free(ctx->pstat);
	for (int i = 0; i < SIFT_I_MAX; i++)
		free(ctx->items[i]);
	for (size_t i = 0; i < ctx->nrcpt; i++)
		free(ctx->rcpts[i]);
	free(ctx->rcpts);
	clear_result(ctx);
	sift_gen_unref(g);
	free(ctx);
}

struct sift_gen *sift_ctx_gen(struct sift_ctx *ctx)
{
	return ctx->gen;
}

void sift_ctx_set(struct sift_ctx *ctx, enum sift_item item, const char *value)
{
	if ((unsigned)item >= SIFT_I_MAX || item == SIFT_I_PROFILE)
		return;
	free(ctx->items[item]);
	ctx->items[item] = value ? sift_strdup(value) : NULL;
}

/* Recipients kept per message. Postfix accepts 1,000 by default
 * (smtpd_recipient_limit); a policy client that sends one transaction's
 * instance for ever must not grow the list, and the memory, without
 * bound. Any local process may be a policy client: policyd also bounds
 * the bytes (a recipient attribute may be 4 KB long), 256 KB a
 * connection. */
#define SIFT_MAX_RCPTS		    10000
#define SIFT_MAX_RCPT_BYTES_POLICYD (256 * 1024)

bool sift_ctx_add_rcpt(struct sift_ctx *ctx, const char *rcpt)
{
	size_t len = strlen(rcpt) + 1;
	if (ctx->nrcpt >= SIFT_MAX_RCPTS ||
	    (ctx->daemon == SIFT_POLICYD && ctx->rcpt_bytes + len > SIFT_MAX_RCPT_BYTES_POLICYD)) {
		if (!ctx->rcpts_full)
			sift_log_msg(LOG_WARNING, ctx->items[SIFT_I_QUEUE_ID], NULL,
				     "more than %d recipients (or %d KB of them) in one message: the "
				     "others are not kept (plugins see each one only at its own RCPT)",
				     SIFT_MAX_RCPTS, SIFT_MAX_RCPT_BYTES_POLICYD / 1024);
		ctx->rcpts_full = true;
		return false;
	}
	if (ctx->nrcpt == ctx->rcap) {
		ctx->rcap = ctx->rcap ? ctx->rcap * 2 : 4;
		ctx->rcpts = sift_realloc(ctx->rcpts, ctx->rcap * sizeof(char *));
	}
	ctx->rcpts[ctx->nrcpt++] = sift_strdup(rcpt);
	ctx->rcpt_bytes += len;
	return true;
}

void sift_ctx_accept_message(struct sift_ctx *ctx)
{
	ctx->res.accepted = true;
	ctx->res.released = true;
}

void sift_ctx_drop_last_rcpt(struct sift_ctx *ctx)
{
	if (ctx->nrcpt) {
		ctx->rcpt_bytes -= strlen(ctx->rcpts[ctx->nrcpt - 1]) + 1;
		free(ctx->rcpts[--ctx->nrcpt]);
	}
}

void sift_ctx_set_macro_fn(struct sift_ctx *ctx, const char *(*fn)(void *, const char *), void *arg)
{
	ctx->macro_fn = fn;
	ctx->macro_arg = arg;
}

void sift_ctx_set_deadline(struct sift_ctx *ctx, long long deadline_ms)
{
	ctx->deadline = deadline_ms;
}

static bool in_list(const char *const *list, const char *s)
{
	for (; s && list && *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

enum sift_profile sift_ctx_choose_profile(struct sift_ctx *ctx)
{
	if (ctx->profile_forced)
		return ctx->profile;
	const struct sift_common_conf *c = &ctx->gen->common;
	enum sift_profile p = SIFT_INBOUND;
	const char *sasl = ctx->items[SIFT_I_SASL_USERNAME];
	if (in_list(c->originating_daemons, ctx->items[SIFT_I_DAEMON_NAME]) || (sasl && *sasl))
		p = SIFT_ORIGINATING;
	else if (c->originating_networks && ctx->items[SIFT_I_CLIENT_ADDR]) {
		char *res = NULL;
		if (sift_map_lookup(c->originating_networks, ctx->items[SIFT_I_CLIENT_ADDR], &res) == 1)
			p = SIFT_ORIGINATING;
		free(res);
	}
	ctx->profile = p;
	return p;
}

void sift_ctx_force_profile(struct sift_ctx *ctx, enum sift_profile p)
{
	ctx->profile = p;
	ctx->profile_forced = true;
}

enum sift_profile sift_ctx_profile(const struct sift_ctx *ctx)
{
	return ctx->profile;
}

void sift_ctx_msg_begin(struct sift_ctx *ctx)
{
	if (ctx->in_msg)
		sift_ctx_msg_end(ctx, true);
	struct sift_gen *g = ctx->gen;
	for (size_t i = 0; i < g->npl; i++)
		ctx->mstate[i] = g->pl[i].p->msg_size ? sift_calloc(1, g->pl[i].p->msg_size) : NULL;
	if (ctx->daemon != SIFT_POLICYD)
		ctx->msg = sift_msg_new((size_t)g->common.message_memory_limit, g->common.tmpdir);
	clear_result(ctx);
	ctx->res.accepted = ctx->conn_accepted;
	ctx->quarantined = false;
	ctx->outcome = SIFT_ERROR;
	memset(ctx->pstat, 0, g->npl * sizeof(*ctx->pstat));
	ctx->in_msg = true;
	ctx->msg_start = sift_now_ms();
}

void sift_ctx_msg_end(struct sift_ctx *ctx, bool aborted)
{
	if (!ctx->in_msg)
		return;
	struct sift_gen *g = ctx->gen;
	for (size_t i = 0; i < g->npl; i++) {
		ctx->cur = i;
		if (aborted && g->pl[i].p->abort)
			g->pl[i].p->abort(ctx);
		if (g->pl[i].p->msg_end)
			g->pl[i].p->msg_end(ctx);
	}
	for (size_t i = 0; i < g->npl; i++) {
		free(ctx->mstate[i]);
		ctx->mstate[i] = NULL;
	}
	sift_mime_free(ctx->mime);
	ctx->mime = NULL;
	free(ctx->mime_body);
	ctx->mime_body = NULL;
	sift_msg_free(ctx->msg);
	ctx->msg = NULL;
	while (ctx->arena) {
		struct arena_block *b = ctx->arena;
		ctx->arena = b->next;
		free(b);
	}
	for (size_t i = 0; i < ctx->nrcpt; i++)
		free(ctx->rcpts[i]);
	ctx->nrcpt = 0;
	ctx->rcpt_bytes = 0;
	ctx->rcpts_full = false;
	for (int it = 0; it < SIFT_I_MAX; it++)
		if (is_msg_item((enum sift_item)it)) {
			free(ctx->items[it]);
			ctx->items[it] = NULL;
		}
	clear_result(ctx);
	ctx->outcome = SIFT_ERROR;
	ctx->in_msg = false;
}

void sift_ctx_msg_outcome(struct sift_ctx *ctx, enum sift_verdict v)
{
	ctx->outcome = v == SIFT_ACCEPT || v == SIFT_HOLD ? SIFT_DUNNO : v;
}

static enum sift_verdict h_msg_outcome(struct sift_ctx *ctx)
{
	return ctx->outcome;
}

bool sift_ctx_in_msg(const struct sift_ctx *ctx)
{
	return ctx->in_msg;
}

struct sift_msg *sift_ctx_msg(struct sift_ctx *ctx)
{
	return ctx->msg;
}

size_t sift_ctx_pstats(struct sift_ctx *ctx, struct sift_pstat **stats_r)
{
	*stats_r = ctx->pstat;
	return ctx->gen->npl;
}

bool sift_ctx_quarantined(const struct sift_ctx *ctx)
{
	return ctx->quarantined;
}

bool sift_ctx_rcpts_full(const struct sift_ctx *ctx)
{
	return ctx->rcpts_full;
}

const struct sift_result *sift_ctx_result(const struct sift_ctx *ctx)
{
	return &ctx->res;
}

void sift_ctx_request_reset(struct sift_ctx *ctx)
{
	struct sift_result *r = &ctx->res;
	clear_reply(r);
	clear_actions(r);
	r->verdict = SIFT_DUNNO;
	r->decided_by = NULL;
	r->hold = false;
	r->accepted = false;
	r->released = false;
	free(r->hold_reason);
	r->hold_reason = NULL;
}

/* ---- the chain ---------------------------------------------------------- */

static void set_reply(struct sift_ctx *ctx, const char *code, const char *xcode, const char *text)
{
	struct sift_result *r = &ctx->res;
	clear_reply(r);
	r->reply_code = code ? sift_strdup(code) : NULL;
	r->reply_xcode = xcode ? sift_strdup(xcode) : NULL;
	r->reply_text = text ? sift_strdup(text) : NULL;
}

/* The reply a plugin set for its REJECT/TEMPFAIL, checked by the one set
 * of rules (reply.c): an invalid one is logged here, once, naming the
 * plugin, and dropped, so that the verdict gets its class's default. */
static void check_reply(struct sift_ctx *ctx, enum sift_verdict v, const char *plugin)
{
	struct sift_result *r = &ctx->res;
	const char *why =
		sift_reply_check(v == SIFT_REJECT ? '5' : '4', r->reply_code, r->reply_xcode, r->reply_text);
	if (!why)
		return;
	char *text = r->reply_text ? sift_strdup(r->reply_text) : NULL;
	for (char *t = text; t && *t; t++)
		if ((unsigned char)*t < 0x20 || *t == 0x7f)
			*t = '?';
	sift_log_msg(LOG_ERR, ctx->items[SIFT_I_QUEUE_ID], plugin,
		     "invalid SMTP reply \"%s%s%s%s%.200s\" for %s: %s; using the default reply",
		     r->reply_code ? r->reply_code : "", r->reply_xcode ? " " : "",
		     r->reply_xcode ? r->reply_xcode : "", text ? " " : "", text ? text : "",
		     sift_verdict_names[v], why);
	free(text);
	clear_reply(r);
}

static enum sift_verdict call_hook(struct sift_ctx *ctx, const struct sift_plugin *p, enum sift_phase ph,
				   const struct sift_header *h, const void *buf, size_t len)
{
	switch (ph) {
	case SIFT_PH_CONNECT:
		return p->connect ? p->connect(ctx) : SIFT_DUNNO;
	case SIFT_PH_HELO:
		return p->helo ? p->helo(ctx) : SIFT_DUNNO;
	case SIFT_PH_MAIL:
		return p->mail ? p->mail(ctx) : SIFT_DUNNO;
	case SIFT_PH_RCPT:
		return p->rcpt ? p->rcpt(ctx) : SIFT_DUNNO;
	case SIFT_PH_DATA:
		return p->data ? p->data(ctx) : SIFT_DUNNO;
	case SIFT_PH_HEADER:
		return p->header ? p->header(ctx, h) : SIFT_DUNNO;
	case SIFT_PH_EOH:
		return p->eoh ? p->eoh(ctx) : SIFT_DUNNO;
	case SIFT_PH_BODY:
		return p->body ? p->body(ctx, buf, len) : SIFT_DUNNO;
	case SIFT_PH_EOM:
		if (ctx->signing)
			return sign_hook(p) ? sign_hook(p)(ctx) : SIFT_DUNNO;
		return p->eom ? p->eom(ctx) : SIFT_DUNNO;
	case SIFT_PH_POLICY:
		return p->policy ? p->policy(ctx) : SIFT_DUNNO;
	default:
		return SIFT_DUNNO;
	}
}

static bool is_final(enum sift_verdict v)
{
	return v == SIFT_REJECT || v == SIFT_TEMPFAIL || v == SIFT_DISCARD;
}

static bool has_hook(const struct sift_ctx *ctx, const struct sift_plugin *p, enum sift_phase ph)
{
	if (ph == SIFT_PH_EOM && ctx->signing)
		return sign_hook(p);
	switch (ph) {
	case SIFT_PH_CONNECT:
		return p->connect;
	case SIFT_PH_HELO:
		return p->helo;
	case SIFT_PH_MAIL:
		return p->mail;
	case SIFT_PH_RCPT:
		return p->rcpt;
	case SIFT_PH_DATA:
		return p->data;
	case SIFT_PH_HEADER:
		return p->header;
	case SIFT_PH_EOH:
		return p->eoh;
	case SIFT_PH_BODY:
		return p->body;
	case SIFT_PH_EOM:
		return p->eom;
	case SIFT_PH_POLICY:
		return p->policy;
	default:
		return false;
	}
}

/* The header as the MTA will have it once the edits queued so far are
 * applied, in the order filterd hands them over (filterd/session.c,
 * apply_edits): an add goes at the end; an insert at its index (0: the
 * top; past the end: the end); a change or delete names the idx-th header
 * of that name (1-based, 0 read as 1), and a change of a header that is
 * not there adds it, a delete of one that is not there does nothing (as
 * Postfix's cleanup does). Values are stored as received ones are: the
 * leading space the host writes for the MTA, folds as CRLF. Built in
 * message memory before each sign hook, so a signer also sees the edits
 * of the signers before it. */
static void sign_view(struct sift_ctx *ctx)
{
	struct arena_block *b;
	size_t n0 = ctx->msg ? sift_msg_header_count(ctx->msg) : 0, ne = 0;
	for (const struct sift_edit *e = ctx->res.edits; e; e = e->next)
		ne++;
	b = sift_calloc(1, sizeof(*b) + (n0 + ne + 1) * sizeof(struct sift_header));
	b->next = ctx->arena;
	ctx->arena = b;
	struct sift_header *v = (struct sift_header *)b->data;
	size_t n = 0;
	for (size_t i = 0; i < n0; i++) {
		const struct sift_header *h = sift_msg_header(ctx->msg, i);
		if (h)
			v[n++] = *h;
	}
	size_t vlen = 0; /* the edits' values with their leading space */
	for (const struct sift_edit *e = ctx->res.edits; e; e = e->next)
		vlen += e->value ? strlen(e->value) + 2 : 0;
	b = sift_calloc(1, sizeof(*b) + vlen + 1);
	b->next = ctx->arena;
	ctx->arena = b;
	char *vp = (char *)b->data;
	for (const struct sift_edit *e = ctx->res.edits; e; e = e->next) {
		const char *val = NULL;
		if (e->value) {
			size_t l = strlen(e->value);
			vp[0] = ' ';
			memcpy(vp + 1, e->value, l + 1);
			val = vp;
			vp += l + 2;
		}
		if (e->op == SIFT_EDIT_ADD) {
			v[n++] = (struct sift_header){e->name, val};
			continue;
		}
		if (e->op == SIFT_EDIT_INSERT) {
			size_t at = e->idx < n ? e->idx : n;
			memmove(v + at + 1, v + at, (n - at) * sizeof(*v));
			v[at] = (struct sift_header){e->name, val};
			n++;
			continue;
		}
		unsigned want = e->idx ? e->idx : 1, seen = 0;
		size_t at = n;
		for (size_t i = 0; i < n; i++)
			if (strcasecmp(v[i].name, e->name) == 0 && ++seen == want) {
				at = i;
				break;
			}
		if (at == n) {
			if (val)
				v[n++] = (struct sift_header){e->name, val};
		} else if (val) {
			v[at].value = val;
		} else {
			memmove(v + at, v + at + 1, (n - at - 1) * sizeof(*v));
			n--;
		}
	}
	size_t bl = 2;
	for (size_t i = 0; i < n; i++)
		bl += strlen(v[i].name) + 1 + strlen(v[i].value) + 2;
	b = sift_calloc(1, sizeof(*b) + bl + 1);
	b->next = ctx->arena;
	ctx->arena = b;
	char *blk = (char *)b->data, *w = blk;
	for (size_t i = 0; i < n; i++)
		w += sprintf(w, "%s:%s\r\n", v[i].name, v[i].value);
	memcpy(w, "\r\n", 3);
	ctx->view = v;
	ctx->nview = n;
	ctx->view_block = blk;
	ctx->view_block_len = bl;
}

static enum sift_verdict run_chain(struct sift_ctx *ctx, enum sift_phase ph, const struct sift_header *h,
				   const void *buf, size_t len)
{
	struct sift_result *r = &ctx->res;
	if (ph != SIFT_PH_POLICY && is_final(r->verdict))
		return r->verdict;
	struct sift_gen *g = ctx->gen;
	enum sift_profile pr = ctx->profile;
	if (!(g->phases & (1u << ph)))
		return SIFT_DUNNO;
	bool timed = ph != SIFT_PH_HEADER;
	long long t_prev = 0;
	for (size_t k = 0; k < g->nprof[pr]; k++) {
		size_t i = g->prof[pr][k];
		struct plugin_inst *pi = &g->pl[i];
		/* after an ACCEPT: signing always, virus scanning unless the
		 * message is a quarantine release */
		bool skip = r->accepted && !(pi->p->flags & SIFT_F_ALWAYS_RUN) &&
			    !((pi->p->flags & SIFT_F_VIRUS_SCAN) && !r->released);
		if (skip || !has_hook(ctx, pi->p, ph))
			continue;
		ctx->cur = i;
		if (ctx->signing)
			sign_view(ctx);
		struct sift_pstat *ps = &ctx->pstat[i];
		/* Hook time for the metrics: one clock read per hook, the end
		 * of one hook being the start of the next; the per-header
		 * calls (many and short) are not timed. */
		if (timed && !t_prev)
			t_prev = sift_now_ns();
		/* A reply belongs to the verdict that came with it: one left by
		 * a refused recipient (which does not end the message) or by a
		 * hook that did not refuse is not this hook's. */
		clear_reply(r);
		enum sift_verdict v = call_hook(ctx, pi->p, ph, h, buf, len);
		if (timed) {
			long long t = sift_now_ns();
			ps->ns += t - t_prev;
			t_prev = t;
		}
		ps->ran = true;
		if ((unsigned)v >= SIFT_VERDICT_MAX) {
			sift_log_msg(LOG_ERR, ctx->items[SIFT_I_QUEUE_ID], pi->p->name,
				     "hook returned invalid verdict %d", (int)v);
			v = SIFT_ERROR;
		}
		if (v != SIFT_DUNNO)
			ps->verdict = ps->mapped = (unsigned char)v;
		if (v == SIFT_ERROR) {
			sift_log_msg(LOG_WARNING, ctx->items[SIFT_I_QUEUE_ID], pi->p->name,
				     "internal error; %s_error_action = %s", pi->p->name,
				     ea_names[pi->error_action & 3]);
			clear_reply(r);
			switch (pi->error_action) {
			case EA_ACCEPT:
				v = SIFT_ACCEPT;
				break;
			case EA_REJECT:
				v = SIFT_REJECT;
				break;
			case EA_DUNNO:
				v = SIFT_DUNNO;
				break;
			default:
				v = SIFT_TEMPFAIL;
				set_reply(ctx, "451", "4.7.1", "Temporary local problem, try again later");
				break;
			}
			ps->mapped = (unsigned char)v;
		}
		switch (v) {
		case SIFT_ACCEPT:
			r->accepted = true;
			if (ph == SIFT_PH_CONNECT || ph == SIFT_PH_HELO)
				ctx->conn_accepted = true;
			break;
		case SIFT_HOLD:
			r->hold = true;
			if (!r->hold_reason)
				r->hold_reason = sift_asprintf("held by %s", pi->p->name);
			break;
		case SIFT_REJECT:
		case SIFT_TEMPFAIL:
			check_reply(ctx, v, pi->p->name);
			/* fall through */
		case SIFT_DISCARD:
			r->decided_by = pi->p->name;
			if (ph != SIFT_PH_RCPT || v == SIFT_DISCARD)
				r->verdict = v;
			return v;
		default:
			break;
		}
	}
	return SIFT_DUNNO;
}

/* The authserv-id of an Authentication-Results value (RFC 8601 2.2: after
 * optional CFWS, a token or a quoted-string) into out; false when none. */
static bool ar_authserv_id(const char *p, char *out, size_t n)
{
	for (;;) {
		p += strspn(p, " \t\r\n");
		if (*p != '(')
			break;
		for (int depth = 0; *p; p++) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')' && --depth == 0) {
				p++;
				break;
			}
		}
	}
	bool quoted = *p == '"';
	size_t k = 0;
	for (p += quoted; *p && k + 1 < n; p++) {
		if (quoted && *p == '\\' && p[1])
			p++;
		else if (quoted ? *p == '"' : strchr("; \t\r\n(", *p) != NULL)
			break;
		out[k++] = *p;
	}
	out[k] = 0;
	return k > 0;
}

/* True when id is the generation's authserv_id or one a plugin reported
 * under (host->auth_result) for this message. */
static bool our_authserv_id(struct sift_ctx *ctx, char *id)
{
	/* a fully qualified name with its root dot names the same host */
	size_t dot = strlen(id);
	if (dot > 1 && id[dot - 1] == '.')
		id[dot - 1] = 0;
	const char *common =
		*ctx->gen->common.authserv_id ? ctx->gen->common.authserv_id : ctx->gen->myhostname;
	if (strcasecmp(id, common) == 0)
		return true;
	size_t idl = strlen(id);
	for (const struct sift_edit *e = ctx->res.edits; e; e = e->next)
		if (e->auth_results && strncasecmp(e->value, id, idl) == 0 && e->value[idl] == ';')
			return true;
	return false;
}

/* RFC 8601 5: incoming Authentication-Results that claim one of our
 * authserv-ids are deleted, from the highest index down (so that no
 * deletion shifts a later one), ahead of every other edit: our own header,
 * inserted at index 0, is then the only one with our id. */
static void strip_forged_auth_results(struct sift_ctx *ctx)
{
	if (!ctx->msg || !(ctx->gen->actions & SIFT_A_CHGHDRS))
		return;
	struct sift_edit *head = NULL, **tail = &head;
	/* every one, however many (the header section is bounded by
	 * message_header_limit) */
	unsigned idx = 0, *forged = NULL;
	size_t nf = 0, cap = 0, nh = sift_msg_header_count(ctx->msg);
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = sift_msg_header(ctx->msg, i);
		if (strcasecmp(h->name, "Authentication-Results") != 0)
			continue;
		idx++;
		char id[256];
		if (ar_authserv_id(h->value, id, sizeof(id)) && our_authserv_id(ctx, id)) {
			if (nf == cap) {
				cap = cap ? cap * 2 : 16;
				forged = sift_realloc(forged, cap * sizeof(*forged));
			}
			forged[nf++] = idx;
		}
	}
	char which[128] = "";
	size_t wl = 0;
	for (size_t i = nf; i-- > 0;) {
		struct sift_edit *e = sift_calloc(1, sizeof(*e));
		e->op = SIFT_EDIT_CHANGE;
		e->idx = forged[i];
		e->name = sift_strdup("Authentication-Results");
		*tail = e;
		tail = &e->next;
		if (nf - 1 - i < 8 && wl < sizeof(which))
			wl += (size_t)snprintf(which + wl, sizeof(which) - wl, "%s#%u", wl ? " " : "",
					       forged[nf - 1 - i]);
	}
	if (nf) /* one line per message, however many */
		sift_log_msg(LOG_NOTICE, ctx->items[SIFT_I_QUEUE_ID], "filterd",
			     "deleted %zu forged Authentication-Results carrying our authserv-id (%s%s)", nf,
			     which, nf > 8 ? " ..." : "");
	free(forged);
	if (!head)
		return;
	*tail = ctx->res.edits;
	if (!ctx->res.edits)
		ctx->edit_tail = tail;
	ctx->res.edits = head;
}

enum sift_verdict sift_run(struct sift_ctx *ctx, enum sift_phase ph)
{
	enum sift_verdict v = run_chain(ctx, ph, NULL, NULL, 0);
	if (ph == SIFT_PH_EOM && !is_final(ctx->res.verdict)) {
		strip_forged_auth_results(ctx);
		/* then the signers, over the header as it will leave */
		ctx->signing = true;
		v = run_chain(ctx, ph, NULL, NULL, 0);
		ctx->signing = false;
		ctx->view = NULL;
		ctx->nview = 0;
		ctx->view_block = NULL;
		ctx->view_block_len = 0;
	}
	return v;
}

enum sift_verdict sift_run_header(struct sift_ctx *ctx, const char *name, const char *value)
{
	/* the hooks see the stored value: one form (CRLF folds) */
	if (ctx->msg) {
		/* The header section is held in memory whole: bounded. */
		long long limit = ctx->gen->common.message_header_limit;
		if (sift_msg_header_memory(ctx->msg) + sift_header_cost(name, value) > limit) {
			sift_log_msg(LOG_NOTICE, ctx->items[SIFT_I_QUEUE_ID], NULL,
				     "header section over message_header_limit (%lld) after %zu headers: "
				     "message refused",
				     limit, sift_msg_header_count(ctx->msg));
			set_reply(ctx, "552", "5.3.4", "Message header size exceeds limit");
			ctx->res.verdict = SIFT_REJECT;
			ctx->res.decided_by = "filterd";
			return SIFT_REJECT;
		}
		return run_chain(ctx, SIFT_PH_HEADER, sift_msg_add_header(ctx->msg, name, value), NULL, 0);
	}
	struct sift_header h = {name, value};
	return run_chain(ctx, SIFT_PH_HEADER, &h, NULL, 0);
}

enum sift_verdict sift_run_body(struct sift_ctx *ctx, const void *buf, size_t len)
{
	if (ctx->msg) {
		char *err = NULL;
		if (sift_msg_add_body(ctx->msg, buf, len, &err) < 0) {
			sift_log_msg(LOG_ERR, ctx->items[SIFT_I_QUEUE_ID], NULL, "storing message body: %s",
				     err);
			free(err);
			set_reply(ctx, "451", "4.3.0", "Temporary local problem, try again later");
			ctx->res.verdict = SIFT_TEMPFAIL;
			ctx->res.decided_by = "filterd";
			return SIFT_TEMPFAIL;
		}
	}
	return run_chain(ctx, SIFT_PH_BODY, NULL, buf, len);
}

/* Distinct policy_action_once actions remembered per transaction: a
 * client that repeats one instance for ever does not grow the list without
 * bound (a plugin gives one such action a transaction, as spf's header). */
#define MAX_ONCE_SENT 64

char *sift_ctx_policy_action(struct sift_ctx *ctx)
{
	struct sift_result *r = &ctx->res;
	const char *t = r->reply_text;
	switch (r->verdict) {
	case SIFT_REJECT:
	case SIFT_TEMPFAIL:
		if (r->reply_code) /* checked when the verdict was merged */
			return sift_reply_format(r->reply_code, r->reply_xcode, t ? t : "Rejected by policy",
						 false);
		return sift_asprintf("%s%s%s", r->verdict == SIFT_REJECT ? "REJECT" : "DEFER", t ? " " : "",
				     t ? t : "");
	case SIFT_DISCARD:
		return sift_asprintf("DISCARD%s%s", t ? " " : "", t ? t : "");
	default:
		break;
	}
	if (r->hold)
		return sift_asprintf("HOLD %s", r->hold_reason ? r->hold_reason : "");
	/* OK is final: it wins over the actions plugins before it added (a
	 * whitelisted client is not deferred by spf's temperror) */
	if (r->accepted)
		return sift_strdup("OK");
	if (r->n_actions) {
		/* Postfix takes one action a reply: a refusal that depends on
		 * the rest of the restrictions goes before the ones that only
		 * annotate (PREPEND, WARN ...), which would otherwise let the
		 * message through; DEFER_IF_PERMIT (ratelimit over its limit,
		 * spf's temperror) before DEFER_IF_REJECT, which lets through
		 * what the later restrictions permit */
		size_t k = 0;
		int best = 0;
		for (size_t i = 0; i < r->n_actions && best < 2; i++) {
			int rank = strncasecmp(r->actions[i], "DEFER_IF_PERMIT", 15) == 0   ? 2
				   : strncasecmp(r->actions[i], "DEFER_IF_REJECT", 15) == 0 ? 1
											    : 0;
			if (rank > best) {
				best = rank;
				k = i;
			}
		}
		if (r->action_once[k] && r->n_once_sent < MAX_ONCE_SENT) {
			r->once_sent = sift_realloc(r->once_sent, (r->n_once_sent + 1) * sizeof(char *));
			r->once_sent[r->n_once_sent++] = sift_strdup(r->actions[k]);
		}
		return sift_strdup(r->actions[k]);
	}
	return sift_strdup("DUNNO");
}

/* A score as the spam plugin's headers print it: %.3f, trailing zeros cut. */
static void fmt_score(char num[32], double v)
{
	snprintf(num, 32, "%.3f", v);
	char *z = num + strlen(num) - 1;
	while (*z == '0')
		*z-- = 0;
	if (*z == '.')
		*z = 0;
	if (strcmp(num, "-0") == 0)
		strcpy(num, "0");
}

char *sift_ctx_summary(struct sift_ctx *ctx, const char *action)
{
	struct sift_buf b = {0};
	struct sift_result *r = &ctx->res;
	sift_buf_printf(&b, "action=%s, profile=%s", action, sift_profile_names[ctx->profile]);
	if (r->decided_by)
		sift_buf_printf(&b, ", by=%s", r->decided_by);
	char num[32];
	fmt_score(num, r->score);
	sift_buf_printf(&b, ", from=<%s>, rcpts=%zu, score=%s, symbols=",
			ctx->items[SIFT_I_SENDER] ? ctx->items[SIFT_I_SENDER] : "", ctx->nrcpt, num);
	bool first = true;
	for (struct sift_symbol *s = r->symbols; s; s = s->next) {
		fmt_score(num, s->score);
		sift_buf_printf(&b, "%s%s(%s)", first ? "" : ",", s->name, num);
		first = false;
	}
	sift_buf_printf(&b, ", time=%lldms", sift_now_ms() - ctx->msg_start);
	return (char *)sift_buf_str(&b);
}

/* ---- the host function table ------------------------------------------------ */

static const char *ctx_plugin_name(struct sift_ctx *ctx)
{
	return ctx && ctx->cur < ctx->gen->npl ? ctx->gen->pl[ctx->cur].p->name : NULL;
}

static void h_log(struct sift_ctx *ctx, int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (ctx)
		sift_vlog_msg(level, ctx->items[SIFT_I_QUEUE_ID], ctx_plugin_name(ctx), fmt, ap);
	else
		sift_vlog(level, fmt, ap);
	va_end(ap);
}

static void *h_conf(struct sift_ctx *ctx)
{
	return ctx->gen->pl[ctx->cur].conf;
}
static void *h_conn(struct sift_ctx *ctx)
{
	return ctx->conn[ctx->cur];
}
static void *h_msg(struct sift_ctx *ctx)
{
	return ctx->mstate[ctx->cur];
}

const char *sift_ctx_get(struct sift_ctx *ctx, enum sift_item item)
{
	if (item == SIFT_I_PROFILE)
		return sift_profile_names[ctx->profile];
	if (item == SIFT_I_MYHOSTNAME && !ctx->items[item])
		return ctx->gen->myhostname;
	return (unsigned)item < SIFT_I_MAX ? ctx->items[item] : NULL;
}

static size_t h_rcpt_count(struct sift_ctx *ctx)
{
	return ctx->nrcpt;
}

static const char *h_rcpt(struct sift_ctx *ctx, size_t i)
{
	return i < ctx->nrcpt ? ctx->rcpts[i] : NULL;
}

static const char *h_macro(struct sift_ctx *ctx, const char *name)
{
	return ctx->macro_fn ? ctx->macro_fn(ctx->macro_arg, name) : NULL;
}

static size_t h_header_count(struct sift_ctx *ctx)
{
	if (ctx->view)
		return ctx->nview;
	return ctx->msg ? sift_msg_header_count(ctx->msg) : 0;
}

static const struct sift_header *h_header(struct sift_ctx *ctx, size_t i)
{
	if (ctx->view)
		return i < ctx->nview ? &ctx->view[i] : NULL;
	return ctx->msg ? sift_msg_header(ctx->msg, i) : NULL;
}

static long long h_body_size(struct sift_ctx *ctx)
{
	return ctx->msg ? sift_msg_body_size(ctx->msg) : 0;
}

static long h_body_read(struct sift_ctx *ctx, long long off, void *buf, size_t len)
{
	return ctx->msg ? sift_msg_body_read(ctx->msg, off, buf, len) : -1;
}

static long long h_message_size(struct sift_ctx *ctx)
{
	if (ctx && ctx->msg && ctx->view)
		return (long long)ctx->view_block_len + sift_msg_body_size(ctx->msg);
	return ctx && ctx->msg ? sift_msg_size(ctx->msg) : -1;
}

static long h_message_read(struct sift_ctx *ctx, long long off, void *buf, size_t len)
{
	if (!ctx || !ctx->msg)
		return -1;
	if (!ctx->view)
		return sift_msg_read(ctx->msg, off, buf, len);
	/* the signers' view: the edited header block, then the body */
	if (off < 0)
		return -1;
	long long hl = (long long)ctx->view_block_len;
	if (off >= hl)
		return sift_msg_body_read(ctx->msg, off - hl, buf, len);
	size_t n = (size_t)(hl - off);
	if (n > len)
		n = len;
	if (n > LONG_MAX)
		n = LONG_MAX;
	memcpy(buf, ctx->view_block + off, n);
	return (long)n;
}

void sift_ctx_reply(struct sift_ctx *ctx, const char *code, const char *xcode, const char *text)
{
	set_reply(ctx, code, xcode, text);
}

static void h_symbol(struct sift_ctx *ctx, const char *name, double score, const char *option)
{
	/* A symbol counts once: added again (the spam plugin weighing another
	 * plugin's result), it takes the new score. */
	for (struct sift_symbol *o = ctx->res.symbols; o; o = o->next)
		if (strcasecmp(o->name, name) == 0) {
			ctx->res.score += score - o->score;
			o->score = score;
			if (option && !o->option)
				o->option = sift_strdup(option);
			return;
		}
	struct sift_symbol *s = sift_calloc(1, sizeof(*s));
	s->name = sift_strdup(name);
	s->option = option ? sift_strdup(option) : NULL;
	s->score = score;
	*ctx->sym_tail = s;
	ctx->sym_tail = &s->next;
	ctx->res.score += score;
}

static double h_score(struct sift_ctx *ctx)
{
	return ctx->res.score;
}

static bool header_name_ok(const char *name)
{
	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++)
		if (*p <= 32 || *p >= 127 || *p == ':')
			return false;
	return true;
}

static struct sift_edit *add_edit(struct sift_ctx *ctx, int op, unsigned idx, const char *name,
				  const char *value)
{
	if (!header_name_ok(name)) {
		sift_log_msg(LOG_WARNING, ctx->items[SIFT_I_QUEUE_ID], ctx_plugin_name(ctx),
			     "ignoring header edit with invalid name");
		return NULL;
	}
	struct sift_edit *e = sift_calloc(1, sizeof(*e));
	e->op = op;
	e->idx = idx;
	e->name = sift_strdup(name);
	e->value = value ? sift_strdup(value) : NULL;
	*ctx->edit_tail = e;
	ctx->edit_tail = &e->next;
	return e;
}

static void h_header_add(struct sift_ctx *ctx, const char *name, const char *value)
{
	add_edit(ctx, SIFT_EDIT_ADD, 0, name, value ? value : "");
}

static void h_header_insert(struct sift_ctx *ctx, unsigned idx, const char *name, const char *value)
{
	add_edit(ctx, SIFT_EDIT_INSERT, idx, name, value ? value : "");
}

static void h_header_change(struct sift_ctx *ctx, const char *name, unsigned idx, const char *value)
{
	add_edit(ctx, SIFT_EDIT_CHANGE, idx, name, value);
}

/* host->auth_result: the results of every plugin for one authserv-id go
 * into one Authentication-Results header (RFC 8601), queued as an insert at
 * index 0 when the first result for that id arrives; later results are
 * appended to its value, one per folded line. */
static void h_auth_result(struct sift_ctx *ctx, const char *authserv_id, const char *resinfo)
{
	if (!authserv_id || !*authserv_id || !resinfo || !*resinfo)
		return;
	for (const char *p = authserv_id; *p; p++)
		if (*p <= 32 || *p >= 127 || *p == ';')
			return;
	size_t idl = strlen(authserv_id);
	for (struct sift_edit *e = ctx->res.edits; e; e = e->next) {
		if (!e->auth_results || strncasecmp(e->value, authserv_id, idl) != 0 || e->value[idl] != ';')
			continue;
		size_t vl = strlen(e->value), rl = strlen(resinfo);
		e->value = sift_realloc(e->value, vl + 4 + rl + 1);
		memcpy(e->value + vl, ";\r\n\t", 4);
		memcpy(e->value + vl + 4, resinfo, rl + 1);
		return;
	}
	char *v = sift_malloc(idl + 2 + strlen(resinfo) + 1);
	memcpy(v, authserv_id, idl);
	memcpy(v + idl, "; ", 2);
	strcpy(v + idl + 2, resinfo);
	struct sift_edit *e = add_edit(ctx, SIFT_EDIT_INSERT, 0, "Authentication-Results", v);
	free(v);
	if (e)
		e->auth_results = true;
}

/* host->auth_result_get: the value queued by h_auth_result, after "id; ". */
static const char *h_auth_result_get(struct sift_ctx *ctx, const char *authserv_id)
{
	size_t idl = authserv_id ? strlen(authserv_id) : 0;
	if (!idl)
		return NULL;
	for (struct sift_edit *e = ctx->res.edits; e; e = e->next)
		if (e->auth_results && strncasecmp(e->value, authserv_id, idl) == 0 && e->value[idl] == ';')
			return e->value + idl + 2;
	return NULL;
}

static void add_policy_action(struct sift_ctx *ctx, const char *action, bool once)
{
	struct sift_result *r = &ctx->res;
	for (const char *t = action; *t; t++)
		if (*t == '\n' || *t == '\r')
			return;
	r->actions = sift_realloc(r->actions, (r->n_actions + 1) * sizeof(char *));
	r->action_once = sift_realloc(r->action_once, (r->n_actions + 1) * sizeof(bool));
	r->action_once[r->n_actions] = once;
	r->actions[r->n_actions++] = sift_strdup(action);
}

static void h_policy_action(struct sift_ctx *ctx, const char *action)
{
	add_policy_action(ctx, action, false);
}

/* Added unless a reply of this transaction carried it already (or this
 * request has it): sift_ctx_policy_action remembers the one it sends. */
static void h_policy_action_once(struct sift_ctx *ctx, const char *action)
{
	struct sift_result *r = &ctx->res;
	for (size_t i = 0; i < r->n_once_sent; i++)
		if (strcmp(r->once_sent[i], action) == 0)
			return;
	for (size_t i = 0; i < r->n_actions; i++)
		if (r->action_once[i] && strcmp(r->actions[i], action) == 0)
			return;
	add_policy_action(ctx, action, true);
}

static void h_hold(struct sift_ctx *ctx, const char *reason)
{
	free(ctx->res.hold_reason);
	ctx->res.hold_reason = reason ? sift_strdup(reason) : NULL;
}

static void *h_msg_alloc(struct sift_ctx *ctx, size_t size)
{
	struct arena_block *b = sift_calloc(1, sizeof(*b) + size);
	b->next = ctx->arena;
	ctx->arena = b;
	return b->data;
}

static long h_time_left_ms(struct sift_ctx *ctx)
{
	if (!ctx || !ctx->deadline)
		return 300000;
	long long left = ctx->deadline - sift_now_ms();
	return left > 0 ? (long)left : 0;
}

static int h_map_lookup(const struct sift_map *map, const char *key, char **result_r)
{
	return map ? sift_map_lookup(map, key, result_r) : 0;
}

static const struct sift_map *h_map_open(const char *spec, char **err_r)
{
	if (!building_gen) {
		*err_r = sift_strdup("map_open is only allowed in init");
		return NULL;
	}
	struct sift_map *m = sift_map_open(spec, err_r);
	if (!m)
		return NULL;
	struct map_list *l = sift_calloc(1, sizeof(*l));
	l->map = m;
	l->next = building_gen->maps;
	building_gen->maps = l;
	return m;
}

static struct sift_dns_result *h_dns_query(const char *name, int rrtype, long timeout_ms)
{
	return sift_dns_query(name, rrtype, timeout_ms);
}

void sift_state_store_stats(struct sift_kv_stats *st)
{
	sift_kv_stats(global_kv, st);
}

static int h_kv_get(const char *key, char **val_r)
{
	return global_kv ? sift_kv_get(global_kv, key, val_r) : -1;
}
static int h_kv_set(const char *key, const char *val, long ttl_ms)
{
	return global_kv ? sift_kv_set(global_kv, key, val, ttl_ms) : -1;
}
static int h_kv_incr(const char *key, long long delta, long ttl_ms, long long *val_r)
{
	return global_kv ? sift_kv_incr(global_kv, key, delta, ttl_ms, val_r) : -1;
}
static int h_kv_del(const char *key)
{
	return global_kv ? sift_kv_del(global_kv, key) : -1;
}
static int h_kv_mget(const char *const *keys, size_t n, char **vals_r)
{
	return global_kv ? sift_kv_mget(global_kv, keys, n, vals_r) : -1;
}
static int h_kv_incr_many(const char *const *keys, const long long *deltas, size_t n, long ttl_ms)
{
	return global_kv ? sift_kv_incr_many(global_kv, keys, deltas, n, ttl_ms) : -1;
}
static int h_kv_write(const struct sift_kv_op *ops, size_t n)
{
	return global_kv ? sift_kv_write(global_kv, ops, n) : -1;
}

static int h_quarantine(struct sift_ctx *ctx, const char *reason, char **id_r)
{
	char *err = NULL, *id = NULL;
	if (sift_quarantine_store(ctx->gen->common.quarantine_directory, ctx, reason, ctx_plugin_name(ctx),
				  &id, &err) < 0) {
		sift_log_msg(LOG_ERR, ctx->items[SIFT_I_QUEUE_ID], ctx_plugin_name(ctx),
			     "quarantine failed: %s", err ? err : "unknown error");
		free(err);
		return -1;
	}
	sift_log_msg(LOG_INFO, ctx->items[SIFT_I_QUEUE_ID], ctx_plugin_name(ctx), "quarantined as %s: %s", id,
		     reason ? reason : "");
	ctx->quarantined = true;
	if (id_r)
		*id_r = id;
	else
		free(id);
	return 0;
}

/* host->mime(): parses the message once (body up to SIFT_MIME_MAX_BODY
 * bytes) and caches the result in the context until sift_ctx_msg_end. The
 * parse points into the message's own body (memory, or the spool file
 * mapped read-only): no copy; it reads a copy only if the mapping fails. */
#define SIFT_MIME_MAX_BODY (4LL << 20)
static const struct sift_mime *h_mime(struct sift_ctx *ctx)
{
	if (!ctx || !ctx->in_msg || !ctx->msg)
		return NULL;
	if (ctx->mime)
		return ctx->mime;
	long long size = sift_msg_body_size(ctx->msg);
	bool trunc = size > SIFT_MIME_MAX_BODY;
	size_t got = 0;
	const unsigned char *body = sift_msg_body_map(ctx->msg, (size_t)SIFT_MIME_MAX_BODY, &got);
	if (!body) {
		size_t want = (size_t)(trunc ? SIFT_MIME_MAX_BODY : size);
		unsigned char *buf = sift_malloc(want + 1);
		while (got < want) {
			long r = sift_msg_body_read(ctx->msg, (long long)got, buf + got, want - got);
			if (r <= 0)
				break;
			got += (size_t)r;
		}
		buf[got] = 0;
		ctx->mime_body = buf;
		body = buf;
	}
	size_t nh = sift_msg_header_count(ctx->msg);
	struct sift_header *hs = sift_calloc(nh ? nh : 1, sizeof(*hs));
	for (size_t i = 0; i < nh; i++)
		hs[i] = *sift_msg_header(ctx->msg, i);
	ctx->mime = sift_mime_parse(hs, nh, body, got, NULL);
	ctx->mime->body_truncated = trunc;
	free(hs);
	return ctx->mime;
}

static size_t h_symbol_count(struct sift_ctx *ctx)
{
	size_t n = 0;
	for (const struct sift_symbol *s = ctx->res.symbols; s; s = s->next)
		n++;
	return n;
}

static int h_symbol_get(struct sift_ctx *ctx, size_t i, const char **name_r, double *score_r,
			const char **option_r)
{
	for (const struct sift_symbol *s = ctx->res.symbols; s; s = s->next, i--)
		if (i == 0) {
			if (name_r)
				*name_r = s->name;
			if (score_r)
				*score_r = s->score;
			if (option_r)
				*option_r = s->option;
			return 0;
		}
	return -1;
}

const struct sift_host sift_host_table = {
	.abi_major = SIFT_ABI_MAJOR,
	.abi_minor = SIFT_ABI_MINOR,
	.struct_size = sizeof(struct sift_host),
	.log = h_log,
	.conf = h_conf,
	.conn = h_conn,
	.msg = h_msg,
	.get = sift_ctx_get,
	.rcpt_count = h_rcpt_count,
	.rcpt = h_rcpt,
	.macro = h_macro,
	.header_count = h_header_count,
	.header = h_header,
	.body_size = h_body_size,
	.body_read = h_body_read,
	.reply = sift_ctx_reply,
	.symbol = h_symbol,
	.score = h_score,
	.header_add = h_header_add,
	.header_insert = h_header_insert,
	.header_change = h_header_change,
	.policy_action = h_policy_action,
	.hold = h_hold,
	.msg_alloc = h_msg_alloc,
	.time_left_ms = h_time_left_ms,
	.map_lookup = h_map_lookup,
	.map_open = h_map_open,
	.dns_query = h_dns_query,
	.dns_start = sift_dns_start,
	.dns_wait = sift_dns_wait,
	.kv_get = h_kv_get,
	.kv_set = h_kv_set,
	.kv_incr = h_kv_incr,
	.kv_del = h_kv_del,
	.quarantine = h_quarantine,
	.mime = h_mime,
	.symbol_count = h_symbol_count,
	.symbol_get = h_symbol_get,
	.message_size = h_message_size,
	.message_read = h_message_read,
	.addrlist_parse = sift_addrlist_parse,
	.header_decode = sift_header_decode,
	.gauge_set = sift_metrics_gauge_set,
	.auth_result = h_auth_result,
	.auth_result_get = h_auth_result_get,
	.kv_mget = h_kv_mget,
	.kv_incr_many = h_kv_incr_many,
	.policy_action_once = h_policy_action_once,
	.kv_write = h_kv_write,
	.map_is_pattern = sift_map_is_pattern,
	.reply_check = sift_reply_check,
	.msg_outcome = h_msg_outcome,
	.casefold = sift_casefold,
};
