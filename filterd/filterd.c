/*
 * filterd.c - the milter daemon's main(): command line, configuration,
 * privileges, signals and reload, and the choice of milter engine
 * (filterd_engine): `native` (engine.c, the default) or `libmilter`
 * (milter.c, in builds with the libmilter feature: FILTERD_HAVE_LIBMILTER);
 * both call the same per-event logic (session.c).
 *
 * Signals: a reload is asked for with SIGUSR1 (`siftctl reload` sends it):
 * a reload thread, woken through a pipe by the signal handler, builds a new
 * configuration generation and makes it current; connections that are
 * running keep the generation they started with. A reload that fails keeps
 * the running configuration and logs why. filterd_* parameters are parsed
 * at reload as at start (build_gen), the deadlines applied, and any other
 * that changed is named in a warning: it takes effect at restart. With libmilter, libmilter owns
 * SIGHUP, SIGTERM and SIGINT (HUP and TERM stop it, INT aborts). With the
 * native engine, a signal thread (sigwait) takes SIGTERM and SIGINT (stop:
 * no new connections, sessions in a message get filterd_shutdown_timeout to
 * finish, exit 0) and SIGHUP (reload, like SIGUSR1).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "engine.h"
#include "filterd.h"
#include "session.h"

/* A build can change the default engine: -DFILTERD_DEFAULT_ENGINE=libmilter
 * (used to run the plugin suites, which start filterd themselves, through
 * libmilter). */
#ifndef FILTERD_DEFAULT_ENGINE
#define FILTERD_DEFAULT_ENGINE native
#endif
#define FD_STR2(x) #x
#define FD_STR(x)  FD_STR2(x)

#define OFF(f) offsetof(struct filterd_conf, f)
const struct sift_param filterd_params[] = {
	{"filterd_listen", SIFT_P_STRING, "inet:127.0.0.1:8891", 0, 0, OFF(listen), NULL,
	 "where to listen: inet:HOST:PORT or unix:/path (Postfix's syntax)"},
	{"filterd_user", SIFT_P_STRING, "", 0, 0, OFF(user), NULL,
	 "user to run as after opening sockets and keys (required when started as root; root: stay root)"},
	{"filterd_pid_file", SIFT_P_STRING, "", 0, 0, OFF(pid_file), NULL,
	 "pid file, written as root before the drop (empty: none)"},
	{"filterd_socket_mode", SIFT_P_STRING, "0660", 0, 0, OFF(socket_mode), NULL,
	 "permissions of a unix listening socket (octal)"},
	{"filterd_socket_group", SIFT_P_STRING, "", 0, 0, OFF(socket_group), NULL,
	 "group of a unix listening socket, e.g. postfix (empty: filterd_user's group)"},
	{"filterd_backlog", SIFT_P_INT, "256", 1, 65535, OFF(backlog), NULL, "listen(2) backlog"},
	{"filterd_milter_timeout", SIFT_P_TIME, "7210s", 1000, 86400000, OFF(milter_timeout), NULL,
	 "how long filterd waits for the MTA's next command (with filterd_engine = libmilter: enforced "
	 "only at libmilter's session check, every 600 s)"},
	{"filterd_milter_packet_timeout", SIFT_P_TIME, "30s", 100, 86400000, OFF(packet_timeout), NULL,
	 "how long the MTA may take to send a whole packet, and to negotiate after connecting"},
	{"filterd_command_deadline", SIFT_P_TIME, "25s", 100, 3600000, OFF(command_deadline), NULL,
	 "time plugins get at connect..RCPT (below Postfix's milter_command_timeout)"},
	{"filterd_content_deadline", SIFT_P_TIME, "250s", 100, 3600000, OFF(content_deadline), NULL,
	 "time plugins get at header..end of message (below milter_content_timeout)"},
	{"filterd_tcp_tuning", SIFT_P_BOOL, "yes", 0, 0, OFF(tcp_tuning), NULL,
	 "TCP_NODELAY and TCP_QUICKACK on MTA connections (avoids 40 ms stalls)"},
	{"filterd_engine", SIFT_P_ENUM, FD_STR(FILTERD_DEFAULT_ENGINE), 0, 0, OFF(engine), "native|libmilter",
	 "milter protocol engine: libmilter (not in builds with -Dlibmilter=disabled), or native (filterd's "
	 "own)"},
	{"filterd_max_connections", SIFT_P_INT, "1000", 1, 1000000, OFF(max_connections), NULL,
	 "native engine: MTA connections served at once (at the limit, the one idle longest between "
	 "messages is closed for a new one; with none idle, the new one is refused)"},
	{"filterd_shutdown_timeout", SIFT_P_TIME, "10s", 0, 3600000, OFF(shutdown_timeout), NULL,
	 "on SIGTERM, how long messages in progress may take to finish"},
	{"filterd_control_socket", SIFT_P_STRING, SIFT_FILTERD_CONTROL_SOCKET, 0, 0, OFF(control_socket),
	 NULL,
	 "unix socket for siftctl reload and status (made as root, mode 0600, then owned by filterd_user; "
	 "empty: none)"},
	SIFT_PARAM_END,
};
#undef OFF

/* Who filterd runs as (filterd_user), resolved before the sockets exist. */
static struct sift_runas runas;

int filterd_socket_perms(const struct filterd_conf *conf, const char *path, char **err_r)
{
	return sift_socket_opts_apply("filterd", path, conf->socket_mode, conf->socket_group, &runas, err_r);
}

static struct sift_opts opts;

/* The running filterd_* settings: from the start; a reload changes only
 * those in reload_live (the rest take effect at the next restart). */
static struct filterd_conf fc;
static const char *const reload_live[] = {"filterd_command_deadline", "filterd_content_deadline", NULL};

static void usage(FILE *out)
{
	fprintf(out, "usage: filterd [-c FILE] [-o name=value]... [-f] [-d] [-n | -p | -P | -t]\n"
		     "  -c FILE   configuration file (default " SIFT_SYSCONFDIR "/filterd.conf)\n"
		     "  -o N=V    override a setting (repeatable)\n"
		     "  -f        log to stderr instead of syslog (filterd runs in the foreground)\n"
		     "  -d        debug logging\n"
		     "  -n        print the settings given explicitly (files, -o), and exit\n"
		     "  -p        print all settings, and exit\n"
		     "  -P        print filterd's own parameter table (for siftctl params), and exit\n"
		     "  -t        check the configuration and plugins, and exit 0 or 1\n"
		     "  -h        this help\n");
}

/* A generation from the configuration file, and filterd's own parameters
 * in *fc_r (zeroed first; the caller frees them with sift_params_free,
 * also on failure), at start and at each reload alike (as policyd does);
 * with `first`, only prepared (the plugins' init runs after the privilege
 * drop: sift_gen_init). */
static struct sift_gen *build_gen(struct filterd_conf *fc_r, bool first, char **err_r)
{
	struct sift_config *cfg = sift_opts_config(&opts, "", filterd_params, err_r);
	if (!cfg)
		return NULL;
	memset(fc_r, 0, sizeof(*fc_r));
	if (sift_params_parse(cfg, "", filterd_params, fc_r, err_r) < 0) {
		sift_config_free(cfg);
		return NULL;
	}
#ifndef FILTERD_HAVE_LIBMILTER
	if (fc_r->engine == FILTERD_ENGINE_LIBMILTER) {
		char *e = sift_strdup("filterd_engine = libmilter: this filterd is built without libmilter "
				      "(meson -Dlibmilter=disabled); set filterd_engine = native");
		*err_r = sift_config_locate(cfg, e);
		free(e);
		sift_config_free(cfg);
		return NULL;
	}
#endif
	/* a reload checks what the next start will (-t does it in main) */
	char *e = NULL;
	if (!first &&
	    sift_start_settings_check("filterd", fc_r->user, fc_r->socket_mode, fc_r->socket_group, &e) < 0) {
		*err_r = sift_config_locate(cfg, e);
		free(e);
		sift_config_free(cfg);
		return NULL;
	}
	struct sift_gen *g =
		first ? sift_gen_prepare(SIFT_FILTERD, cfg, err_r) : sift_gen_new(SIFT_FILTERD, cfg, err_r);
	if (!g)
		sift_config_free(cfg);
	return g;
}

/* The engine filterd_engine chose (build_gen refused libmilter in a build
 * without it). */
static int engine_setup(bool native, const struct filterd_conf *conf, char **err_r)
{
#ifdef FILTERD_HAVE_LIBMILTER
	if (!native)
		return filterd_milter_setup(conf, err_r);
#endif
	return filterd_native_setup(conf, err_r);
}

static int engine_run(bool native)
{
#ifdef FILTERD_HAVE_LIBMILTER
	if (!native)
		return filterd_milter_run();
#endif
	return filterd_native_run();
}

static struct sift_gen *load_gen(struct filterd_conf *fc_r, char **err_r)
{
	return build_gen(fc_r, false, err_r);
}

/* SIGUSR1 may be delivered to any thread whose mask lets it through (some
 * libraries' threads unblock everything), so the handler only writes a byte
 * to a pipe and the reload thread does the work. */
static int reload_r = -1;
/* The write end (non-blocking), written by the signal handler, the signal
 * and control threads: created before them, never closed (the reload
 * thread is stopped with reload_stop and a byte), so that no write can go
 * to a closed or reused descriptor. -1 until then. */
static atomic_int reload_w = -1;

/* Wakes the reload thread: 0, or -1 when there is none yet. */
static int wake_reload(void)
{
	int fd = atomic_load(&reload_w);
	return fd >= 0 && write(fd, "r", 1) == 1 ? 0 : -1;
}

static void on_usr1(int sig)
{
	int saved = errno;
	wake_reload();
	errno = saved;
	(void)sig;
}

/* The control socket's request: wake the reload thread. */
static int ask_reload(void)
{
	return wake_reload();
}

static _Atomic bool reload_stop; /* the daemon stops: no reload starts */

static void *reload_thread(void *arg)
{
	for (;;) {
		char c;
		ssize_t r = read(reload_r, &c, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || atomic_load(&reload_stop))
			break;
		unsigned long id = sift_control_reload_begin();
		char *err = NULL;
		struct filterd_conf nc;
		struct sift_gen *g = load_gen(&nc, &err);
		if (!g) {
			sift_log(LOG_ERR, "reload failed, keeping the running configuration: %s", err);
			sift_control_reload_done(id, false, err);
			sift_params_free(filterd_params, &nc);
			free(err);
			continue;
		}
		size_t n_plugins = sift_gen_plugin_count(g);
		sift_gen_set_current(g); /* hands g over: not used after this */
		/* The deadlines apply to the sessions that start from now on;
		 * the rest keeps its running value, with a warning. */
		fd_session_setup(&nc);
		sift_params_restart_only("filterd", filterd_params, &fc, &nc, reload_live);
		sift_params_free(filterd_params, &nc);
		char *text = sift_asprintf("configuration reloaded (%zu plugins)", n_plugins);
		sift_log(LOG_INFO, "%s", text);
		sift_control_reload_done(id, true, text);
		free(text);
	}
	return arg;
}

/* Native engine: SIGTERM/SIGINT stop, SIGHUP reloads (the signals stay
 * blocked in every other thread). */
static void *signal_thread(void *arg)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			wake_reload();
			continue;
		}
		sift_log(LOG_INFO, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		sift_notify("STOPPING=1");
		filterd_native_stop();
		break;
	}
	return arg;
}

int main(int argc, char **argv)
{
	int i = sift_opts_parse(argc, argv, &opts, SIFT_SYSCONFDIR "/filterd.conf");
	if (i == -2) {
		usage(stdout);
		return 0;
	}
	if (i < 0 || i != argc) {
		usage(stderr);
		return 1;
	}
#ifdef __GLIBC__
	/* glibc gives threads up to 8 arenas per core, each keeping the peak
	 * of the messages it served: with a thread per MTA connection the
	 * heap grew with the concurrency. Two arenas keep that flat for a
	 * malloc that is a sliver of a message's time. MALLOC_ARENA_MAX in
	 * the environment still decides. */
	if (!getenv("MALLOC_ARENA_MAX"))
		mallopt(M_ARENA_MAX, 2);
#endif
	/* Block the signals before any thread exists (the resolver and plugins
	 * start threads while the configuration loads), so that only the
	 * sigwait threads (libmilter's and ours) receive them. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	bool once = opts.print_all || opts.print_nondefault || opts.test_only;
	sift_log_init("filterd", opts.foreground || once, opts.debug ? LOG_DEBUG : LOG_INFO);

	char *err = NULL;
	struct sift_gen *g = build_gen(&fc, true, &err);
	if (!g)
		goto fail;
	if (opts.print_all || opts.print_nondefault) {
		bool all = opts.print_all;
		sift_params_print(stdout, sift_gen_config(g), "", filterd_params, all);
		sift_gen_print_params(stdout, g, all);
		sift_gen_unref(g);
		return 0;
	}
	/* Everything that could stop the start is checked before anything is
	 * created: the user, the socket settings. */
	if (sift_runas_resolve("filterd_user", fc.user, &runas, &err) < 0 ||
	    sift_socket_opts_check("filterd", fc.socket_mode, fc.socket_group, &err) < 0)
		goto fail;
	if (opts.test_only) {
		/* The plugins' init runs as it will in the daemon: as filterd_user. */
		if (sift_drop_privileges(&runas, &err) < 0 || sift_gen_init(g, &err) < 0)
			goto fail;
		printf("filterd: configuration OK (%zu plugin%s)\n", sift_gen_plugin_count(g),
		       sift_gen_plugin_count(g) == 1 ? "" : "s");
		sift_gen_unref(g);
		return 0;
	}
#ifdef FILTERD_HAVE_LIBMILTER
	filterd_tcp_tuning = fc.tcp_tuning;
#endif

	/* Many MTA connections: raise the descriptor limit (libmilter gives up
	 * after 16 failed accepts). */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* As root: the listening socket and the pid file; then the drop, then
	 * the plugins' init as filterd_user. */
	bool native = fc.engine == FILTERD_ENGINE_NATIVE;
	sift_metrics_init(SIFT_FILTERD);
	if (engine_setup(native, &fc, &err) < 0 ||
	    sift_http_start(sift_gen_common(g)->metrics_listen, &err) < 0 ||
	    sift_control_start(fc.control_socket, &runas, ask_reload, &err) < 0 ||
	    sift_write_pidfile(fc.pid_file, &err) < 0)
		goto fail;
	if (sift_drop_privileges(&runas, &err) < 0 || sift_gen_init(g, &err) < 0) {
		sift_remove_pidfile(fc.pid_file);
		goto fail;
	}
	/* What the start line says is read before g is handed over: from
	 * sift_gen_set_current() on, g is the current generation's reference
	 * only, and a reload asked for on the control socket (which already
	 * accepts) may replace it and free g. */
	size_t n_plugins = sift_gen_plugin_count(g);
	sift_gen_set_current(g);
	g = NULL;
	int rp[2];
	if (pipe2(rp, O_CLOEXEC) < 0 || fcntl(rp[1], F_SETFL, O_NONBLOCK) < 0)
		sift_fatal("pipe: %s", strerror(errno));
	reload_r = rp[0];
	atomic_store(&reload_w, rp[1]);
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	pthread_t th, reload_th;
	if (pthread_create(&reload_th, NULL, reload_thread, NULL) != 0)
		sift_fatal("cannot create the reload thread");
	/* libmilter takes HUP, TERM and INT with its own sigwait thread; for
	 * the native engine, ours does. */
	if (native && pthread_create(&th, NULL, signal_thread, NULL) != 0)
		sift_fatal("cannot create the signal thread");
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
	sift_log(LOG_INFO, "starting: listening on %s, %zu plugins, %s engine, version %s", fc.listen,
		 n_plugins, native ? "native" : "libmilter", SIFT_VERSION);
	sift_notify("READY=1");
	int rc = engine_run(native);
	sift_notify("STOPPING=1");
	if (rc == 1) {
		/* Sessions still inside a message after filterd_shutdown_timeout:
		 * their threads run plugin code, so neither the generation's
		 * release nor exit()'s handlers (OpenSSL's, libclamav's) may run
		 * under them. Their MTAs see the connection close and apply
		 * milter_default_action. */
		sift_remove_pidfile(fc.pid_file);
		sift_control_stop();
		sift_log(LOG_INFO, "stopping");
		_exit(0);
	}
	sift_log(LOG_INFO, "stopping");
	/* A reload in progress finishes first (a plugin's init cannot be
	 * interrupted), and none starts: exit() must not run while plugin
	 * code builds a generation on that thread, nor a generation become
	 * current after the one below is dropped. */
	atomic_store(&reload_stop, true);
	wake_reload(); /* a full pipe wakes it as well */
	pthread_join(reload_th, NULL);
	/* Drop the current generation: its plugins' release hooks run (now,
	 * or when the last connection still using it ends). */
	sift_gen_set_current(NULL);
	sift_remove_pidfile(fc.pid_file);
	sift_control_stop();
	sift_runas_free(&runas);
	return rc == 0 ? 0 : 1;

fail:
	/* -t, -n, -p: the error once, on stderr (the log goes there too) */
	if (once)
		fprintf(stderr, "filterd: %s\n", err);
	else
		sift_log(LOG_ERR, "%s", err);
	free(err);
	sift_gen_unref(g);
	return 1;
}
