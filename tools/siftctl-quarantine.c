/*
 * siftctl-quarantine.c - `siftctl quarantine ...`: the quarantine store
 * (lib/quarantine.c) for the administrator: list, show, release, delete,
 * purge. The store directory is the configuration's quarantine_directory
 * (-c FILE, -o quarantine_directory=DIR); no plugin is loaded.
 *
 * release re-injects a message with Postfix's sendmail (fork + exec, which
 * siftctl may do and plugins may not), preserving the envelope sender and
 * the original recipients (or --to ADDR...), then removes it from the store
 * unless --keep. The message goes out with an X-Sift-Release header naming
 * a one-time token (lib/quarantine.c), so that filterd, which sees it again
 * through non_smtpd_milters, delivers it without scanning it into
 * quarantine again. A release interrupted by SIGINT, SIGTERM or SIGHUP
 * removes its token before it dies (the handler only records the signal and
 * kills sendmail: both async-signal-safe; the rest runs in the main flow).
 * Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "siftctl.h"

#define DEFAULT_SENDMAIL "/usr/sbin/sendmail -G -i"

static const char usage_text[] =
	"  quarantine list [--reason TEXT] [--plugin NAME] [--older-than TIME]\n"
	"       list quarantined messages, oldest first: id, time (UTC), size, sender,\n"
	"       recipients, plugin, reason (control characters as \\xHH); --reason\n"
	"       matches a substring, --older-than takes 30m, 12h, 7d ...\n"
	"  quarantine show ID [--raw]\n"
	"       print the metadata and the message, control characters as \\xHH and\n"
	"       CR LF as LF (--raw: the message only, as stored)\n"
	"  quarantine release ID [--to ADDR]... [--keep] [--sendmail COMMAND] [--wait TIME]\n"
	"                     [--sendmail-timeout TIME]\n"
	"       re-inject the message with Postfix's sendmail (default\n"
	"       \"" DEFAULT_SENDMAIL "\"; run as COMMAND -f SENDER -- RECIPIENTS,\n"
	"       e.g. --sendmail \"sendmail -C /etc/postfix-out -G -i\"), to the original\n"
	"       recipients or to the --to addresses, 1000 a run at most; removed from the\n"
	"       store unless --keep (kept with the recipients a failed run did not reach).\n"
	"       A one-time token lets it pass filterd (non_smtpd_milters) unscanned;\n"
	"       a token filterd has not used after --wait (default 10s) is withdrawn;\n"
	"       a sendmail still running after --sendmail-timeout (default 60s) is killed\n"
	"       and the message kept; so it is when the release is interrupted (INT, TERM,\n"
	"       HUP) before sendmail took it, and the token withdrawn in any case\n"
	"  quarantine delete ID...\n"
	"       remove messages from the store (not one being released)\n"
	"  quarantine purge --older-than TIME [--dry-run]\n"
	"       remove every message older than TIME (e.g. 7d, as a daily cron job) but\n"
	"       those being released, and\n"
	"       the temporary files of stores that never finished once they are 1h old,\n"
	"       and release tokens over a day old\n"
	"       the store is quarantine_directory (default " SIFT_STATEDIR "/quarantine)\n";

static char *store_dir(struct sift_opts *opts)
{
	char *err = NULL;
	struct sift_config *cfg = sift_opts_config(opts, "", NULL, &err);
	if (!cfg) {
		fprintf(stderr, "siftctl: %s\n", err);
		exit(1);
	}
	char *dir = sift_config_get(cfg, "quarantine_directory", &err);
	/* the store is filterd's: owned by root or filterd_user */
	char *user = sift_config_get(cfg, "filterd_user", NULL);
	if (!dir || !*dir) {
		fprintf(stderr, "siftctl quarantine: quarantine_directory is not set%s%s\n", err ? ": " : "",
			err ? err : "");
		exit(1);
	}
	sift_config_free(cfg);
	if (sift_quarantine_dir_check(dir, user, &err) < 0) {
		fprintf(stderr, "siftctl quarantine: %s\n", err);
		exit(1);
	}
	free(user);
	return dir;
}

static void fmt_time(long long t, char *buf, size_t n)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A metadata value (sender, recipient, reason, plugin) on one line. */
static void put_value(const char *v)
{
	siftctl_put_text(stdout, v, false);
}

static int cmd_list(const char *dir, int argc, char **argv)
{
	static const struct option lo[] = {{"reason", required_argument, NULL, 'r'},
					   {"plugin", required_argument, NULL, 'p'},
					   {"older-than", required_argument, NULL, 'o'},
					   {NULL, 0, NULL, 0}};
	const char *reason = NULL, *plugin = NULL;
	long long older = -1;
	int c;
	optind = 0; /* full getopt reset: options may follow operands */
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'r')
			reason = optarg;
		else if (c == 'p')
			plugin = optarg;
		else if (c == 'o') {
			if (sift_parse_time_ms(optarg, &older) < 0) {
				fprintf(stderr, "siftctl quarantine list: bad time \"%s\"\n", optarg);
				return 1;
			}
		} else
			return 1;
	}
	if (optind != argc) {
		fprintf(stderr, "siftctl quarantine list: unexpected argument \"%s\"\n", argv[optind]);
		return 1;
	}
	struct sift_qentry *list;
	size_t n;
	char *err = NULL;
	if (sift_quarantine_list(dir, &list, &n, &err) < 0) {
		fprintf(stderr, "siftctl quarantine: %s\n", err);
		return 1;
	}
	long long now = time(NULL);
	for (size_t i = 0; i < n; i++) {
		struct sift_qentry *e = &list[i];
		bool show = (!reason || strstr(e->reason, reason)) &&
			    (!plugin || strcmp(e->plugin, plugin) == 0) &&
			    (older < 0 || (now - e->time) * 1000 >= older);
		if (show) {
			char tb[32];
			fmt_time(e->time, tb, sizeof(tb));
			printf("%s %s %lld <", e->id, tb, e->size);
			put_value(e->sender);
			fputs("> ", stdout);
			for (size_t k = 0; k < e->n_rcpts; k++) {
				fputs(k ? ",<" : "<", stdout);
				put_value(e->rcpts[k]);
				fputs(">", stdout);
			}
			fputs(" ", stdout);
			put_value(*e->plugin ? e->plugin : "-");
			fputs(" ", stdout);
			put_value(e->reason);
			fputs("\n", stdout);
		}
		sift_qentry_free(e);
	}
	free(list);
	return 0;
}

static int cmd_show(const char *dir, int argc, char **argv)
{
	bool raw = false;
	const char *id = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--raw") == 0)
			raw = true;
		else if (!id)
			id = argv[i];
		else {
			fprintf(stderr, "siftctl quarantine show: one id expected\n");
			return 1;
		}
	}
	if (!id) {
		fprintf(stderr, "siftctl quarantine show: an id is needed\n");
		return 1;
	}
	struct sift_qentry e;
	FILE *fp;
	char *err = NULL;
	if (sift_quarantine_open(dir, id, &e, &fp, &err) < 0) {
		fprintf(stderr, "siftctl quarantine: %s\n", err);
		free(err);
		return 1;
	}
	if (!raw) {
		char tb[32];
		fmt_time(e.time, tb, sizeof(tb));
		printf("Id: %s\nQueue-Id: ", e.id);
		put_value(e.queue_id);
		printf("\nTime: %s\nSender: <", tb);
		put_value(e.sender);
		fputs(">\n", stdout);
		for (size_t k = 0; k < e.n_rcpts; k++) {
			fputs("Recipient: <", stdout);
			put_value(e.rcpts[k]);
			fputs(">\n", stdout);
		}
		fputs("Plugin: ", stdout);
		put_value(e.plugin);
		fputs("\nReason: ", stdout);
		put_value(e.reason);
		printf("\nSize: %lld\n\n", e.size);
		/* the message for reading: --raw gives its bytes */
		siftctl_put_safe(fp, stdout, true);
	} else {
		fflush(stdout);
		char buf[65536];
		size_t r;
		while ((r = fread(buf, 1, sizeof(buf), fp)) > 0)
			fwrite(buf, 1, r, stdout);
	}
	fclose(fp);
	sift_qentry_free(&e);
	return 0;
}

struct release_opts {
	const char **to; /* --to addresses (malloc'd array) */
	size_t nto;
	bool keep;
	const char *sendmail;
	long long wait_ms;
	long long sendmail_timeout_ms;
	const char *id;
};

/* The options and the id of `release`; -1 after a message. */
static int release_opts(int argc, char **argv, struct release_opts *o)
{
	static const struct option lo[] = {{"to", required_argument, NULL, 't'},
					   {"keep", no_argument, NULL, 'k'},
					   {"sendmail", required_argument, NULL, 's'},
					   {"wait", required_argument, NULL, 'w'},
					   {"sendmail-timeout", required_argument, NULL, 'T'},
					   {NULL, 0, NULL, 0}};
	*o = (struct release_opts){
		.sendmail = DEFAULT_SENDMAIL, .wait_ms = 10000, .sendmail_timeout_ms = 60000};
	int c;
	optind = 0; /* full getopt reset: options may follow operands */
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 't') {
			o->to = sift_realloc(o->to, (o->nto + 1) * sizeof(*o->to));
			o->to[o->nto++] = optarg;
		} else if (c == 'k')
			o->keep = true;
		else if (c == 's')
			o->sendmail = optarg;
		else if (c == 'w' || c == 'T') {
			if (sift_parse_time_ms(optarg, c == 'w' ? &o->wait_ms : &o->sendmail_timeout_ms) <
			    0) {
				fprintf(stderr, "siftctl quarantine release: bad time \"%s\"\n", optarg);
				return -1;
			}
		} else
			return -1;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "siftctl quarantine release: one id expected\n");
		return -1;
	}
	o->id = argv[optind];
	return 0;
}

/* ---- an interrupted release ---------------------------------------------------
 *
 * From the lock on its message to its end a release catches SIGINT,
 * SIGTERM and SIGHUP (those not ignored when siftctl started: nohup keeps
 * working). The handler records the signal and kills a running sendmail (so
 * that a write to it or the wait for it ends at once); the main flow then
 * withdraws the token, keeps the message unless sendmail already took it
 * (then it is removed, as when --wait runs out), and dies of the same
 * signal. Only SIGKILL leaves a token behind, which filterd ignores once it
 * is a day old. */
static const int release_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_RELEASE_SIGNALS (sizeof(release_signals) / sizeof(release_signals[0]))
static struct sigaction release_saved[N_RELEASE_SIGNALS];
static bool release_caught[N_RELEASE_SIGNALS];
static volatile sig_atomic_t release_signal; /* the signal that interrupted, 0: none */
static volatile sig_atomic_t sendmail_pid;   /* a sendmail not yet reaped, 0: none */

static void on_release_signal(int sig)
{
	int saved_errno = errno;
	release_signal = sig;
	if (sendmail_pid > 0)
		kill((pid_t)sendmail_pid, SIGKILL);
	errno = saved_errno;
}

static void release_signals_catch(void)
{
	struct sigaction sa = {.sa_handler = on_release_signal};
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < N_RELEASE_SIGNALS; i++) {
		sigaddset(&sa.sa_mask, release_signals[i]);
		release_caught[i] = false;
	}
	for (size_t i = 0; i < N_RELEASE_SIGNALS; i++)
		if (sigaction(release_signals[i], NULL, &release_saved[i]) == 0 &&
		    release_saved[i].sa_handler != SIG_IGN)
			release_caught[i] = sigaction(release_signals[i], &sa, NULL) == 0;
}

/* The dispositions from before release_signals_catch. */
static void release_signals_restore(void)
{
	for (size_t i = 0; i < N_RELEASE_SIGNALS; i++)
		if (release_caught[i]) {
			sigaction(release_signals[i], &release_saved[i], NULL);
			release_caught[i] = false;
		}
}

static void release_signals_block(sigset_t *old)
{
	sigset_t set;
	sigemptyset(&set);
	for (size_t i = 0; i < N_RELEASE_SIGNALS; i++)
		sigaddset(&set, release_signals[i]);
	sigprocmask(SIG_BLOCK, &set, old);
}

static const char *signal_name(int sig)
{
	return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

/* COMMAND -f SENDER -- RECIPIENTS (NULL-terminated; the strings are cmd's
 * and the caller's); NULL after a message when the command is empty. */
static const char **sendmail_argv(char **cmd, const char *sender, const char *const *to, size_t nto)
{
	size_t ncmd = 0;
	while (cmd[ncmd])
		ncmd++;
	if (!ncmd) {
		fprintf(stderr, "siftctl quarantine release: empty --sendmail command\n");
		return NULL;
	}
	const char **av = sift_calloc(ncmd + nto + 5, sizeof(char *));
	size_t k = 0;
	for (size_t i = 0; i < ncmd; i++)
		av[k++] = cmd[i];
	av[k++] = "-f";
	av[k++] = *sender ? sender : "<>";
	av[k++] = "--";
	for (size_t i = 0; i < nto; i++)
		av[k++] = to[i];
	av[k] = NULL;
	return av;
}

/* Runs av with the release header (carrying token) and the rest of fd on
 * its standard input; 0 when it took the message and exited 0, -1 after a
 * message. Bounded by timeout_ms: a sendmail that neither reads nor exits
 * in time is killed, as is one whose input could not all be read, so that
 * it never queues a truncated copy. */
static int pipe_to_sendmail(const char *const *av, const char *token, int fd, const char *id,
			    long long timeout_ms)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		fprintf(stderr, "siftctl quarantine release: pipe: %s\n", strerror(errno));
		return -1;
	}
	fflush(stdout);
	/* The handler learns the pid before any signal can reach it, and the
	 * child takes the default dispositions before it can receive one. */
	sigset_t oldmask;
	release_signals_block(&oldmask);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		fprintf(stderr, "siftctl quarantine release: fork: %s\n", strerror(e));
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		for (size_t i = 0; i < N_RELEASE_SIGNALS; i++)
			if (release_caught[i])
				signal(release_signals[i], SIG_DFL);
		sigprocmask(SIG_SETMASK, &oldmask, NULL);
		if (dup2(pfd[0], 0) < 0)
			_exit(127);
		execvp(av[0], (char *const *)av);
		fprintf(stderr, "siftctl quarantine release: %s: %s\n", av[0], strerror(errno));
		_exit(127);
	}
	sendmail_pid = pid;
	sigprocmask(SIG_SETMASK, &oldmask, NULL);
	close(pfd[0]);
	signal(SIGPIPE, SIG_IGN);
	(void)fcntl(pfd[1], F_SETFL, O_NONBLOCK);
	long long deadline = sift_now_ms() + timeout_ms;
	char *hdr = sift_asprintf("%s: %s\r\n", SIFT_RELEASE_HEADER, token);
	bool wrote = sift_write_by(pfd[1], hdr, strlen(hdr), deadline) == 0;
	free(hdr);
	char buf[65536];
	ssize_t n;
	while (wrote && (n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || sift_write_by(pfd[1], buf, (size_t)n, deadline) < 0)
			wrote = false;
	}
	if (!wrote) /* before the pipe closes: end of input would queue what it has */
		kill(pid, SIGKILL);
	close(pfd[1]);
	int st = 0;
	bool timed_out = false;
	for (;;) {
		/* Seen exited, not reaped yet (WNOWAIT): the handler stops
		 * killing it before its pid can be reused. */
		siginfo_t si = {0};
		int w = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 || si.si_pid == pid) {
			sendmail_pid = 0;
			while (w == 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			break;
		}
		if (sift_now_ms() >= deadline && !timed_out) {
			kill(pid, SIGKILL);
			timed_out = true;
			continue;
		}
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	if (wrote && !timed_out && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (release_signal)
		fprintf(stderr, "siftctl quarantine release: interrupted by %s: %s killed; %s kept\n",
			signal_name(release_signal), av[0], id);
	else if (timed_out)
		fprintf(stderr,
			"siftctl quarantine release: %s still running after --sendmail-timeout (%llds): "
			"killed; %s kept\n",
			av[0], timeout_ms / 1000, id);
	else if (!wrote)
		fprintf(stderr, "siftctl quarantine release: writing to %s failed; %s kept\n", av[0], id);
	else
		fprintf(stderr, "siftctl quarantine release: %s failed (%s %d); %s kept\n", av[0],
			WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
			id);
	return -1;
}

/* Removes the token (NULL: filterd used it), and the token directory when
 * that leaves it empty (rmdir fails while another release's token is in
 * it). */
static void withdraw_token(const char *dir, const char *token)
{
	if (token)
		sift_quarantine_release_consume(dir, token);
	char *rdir = sift_asprintf("%s/.release", dir);
	(void)rmdir(rdir);
	free(rdir);
}

/* filterd consumes the token when the message passes it. A token still
 * there after the wait (or when the release is interrupted) is withdrawn,
 * so that it never outlives the release (a copy of the header that reached
 * a mailbox, when non_smtpd_milters does not include filterd, then names
 * nothing). */
static void await_tokens(const char *dir, char **tokens, size_t ntok, long long wait_ms)
{
	bool seen = true;
	for (long long waited = 0;; waited += 100) {
		seen = true;
		for (size_t i = 0; i < ntok; i++) {
			char *qid = NULL;
			if (tokens[i] && sift_quarantine_release_check(dir, tokens[i], &qid) != 1) {
				free(tokens[i]);
				tokens[i] = NULL;
			}
			free(qid);
			seen &= tokens[i] == NULL;
		}
		if (seen || waited >= wait_ms || release_signal)
			break;
		struct timespec ts = {0, 100 * 1000000L};
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < ntok; i++) {
		withdraw_token(dir, tokens[i]);
		free(tokens[i]);
		tokens[i] = NULL;
	}
	if (seen)
		withdraw_token(dir, NULL);
	if (!seen && release_signal)
		fprintf(stderr,
			"siftctl quarantine release: interrupted by %s before filterd saw the released "
			"message: its release token was withdrawn, so if it passes filterd later it is "
			"scanned again\n",
			signal_name(release_signal));
	else if (!seen)
		fprintf(stderr,
			"siftctl quarantine release: warning: filterd did not see the released message "
			"within %llds (is filterd in non_smtpd_milters? is it busy?); its release token "
			"was withdrawn, so if it passes filterd later it is scanned again\n",
			wait_ms / 1000);
}

/* One sendmail run takes at most this many recipients, and this many bytes
 * of them: the command line of all of them (filterd keeps 10,000 of up to
 * some hundred bytes each) would be over the kernel's limit (E2BIG). */
#define BATCH_RCPTS 1000
#define BATCH_BYTES (128 * 1024)

/* Re-injects the stored message e (open as fp) to the recipients, in
 * batches (one sendmail run, with its own token, each), in order, until one
 * fails; *done_r is how many recipients (the first ones) sendmail took.
 * 0 when it took them all, -1 after a message. */
static int reinject(const char *dir, const struct release_opts *o, const struct sift_qentry *e, FILE *fp,
		    const char *const *to, size_t nto, size_t *done_r)
{
	char **cmd = sift_split_list(o->sendmail);
	char **tokens = sift_calloc(nto + 1, sizeof(char *));
	size_t ntok = 0;
	*done_r = 0;
	while (*done_r < nto) {
		size_t start = *done_r, end = start, bytes = 0;
		while (end < nto && (end == start || (end - start < BATCH_RCPTS &&
						      bytes + strlen(to[end]) + 1 <= BATCH_BYTES)))
			bytes += strlen(to[end++]) + 1;
		const char **av = sendmail_argv(cmd, e->sender, to + start, end - start);
		if (!av)
			break;
		char *token = NULL, *err = NULL;
		if (lseek(fileno(fp), (off_t)e->data_off, SEEK_SET) < 0) {
			fprintf(stderr, "siftctl quarantine release: %s: %s\n", e->path, strerror(errno));
			free(av);
			break;
		}
		/* A one-time token lets the message through filterd (which
		 * sees it again through non_smtpd_milters) without being
		 * scanned and quarantined again. */
		if (sift_quarantine_release_token(dir, o->id, &token, &err) < 0) {
			fprintf(stderr, "siftctl quarantine release: release token: %s\n", err);
			free(err);
			free(av);
			break;
		}
		bool ok = false;
		if (release_signal) /* before sendmail started */
			fprintf(stderr, "siftctl quarantine release: interrupted by %s; %s kept\n",
				signal_name(release_signal), o->id);
		else
			ok = pipe_to_sendmail(av, token, fileno(fp), o->id, o->sendmail_timeout_ms) == 0;
		free(av);
		if (!ok) {
			withdraw_token(dir, token);
			free(token);
			break;
		}
		tokens[ntok++] = token;
		*done_r = end;
	}
	if (ntok)
		await_tokens(dir, tokens, ntok, o->wait_ms);
	free(tokens);
	free(cmd); /* one allocation */
	return *done_r == nto ? 0 : -1;
}

/* After a release that reached only the first `done` recipients of the
 * record: the record rewritten without them (atomically, as a store writes
 * it: DIR/.tmp-ID, then renamed over ID.msg, same owner and mode), so that
 * the next release sends to the others only. 0, or -1 after a message. */
static int keep_rest(const char *dir, const struct sift_qentry *e, FILE *fp, size_t done)
{
	int in = fileno(fp);
	struct stat st;
	char *meta = sift_malloc(e->data_off + 1);
	if (fstat(in, &st) < 0 || pread(in, meta, e->data_off, 0) != (ssize_t)e->data_off) {
		fprintf(stderr, "siftctl quarantine release: %s: %s\n", e->path, strerror(errno));
		free(meta);
		return -1;
	}
	meta[e->data_off] = 0;
	char *tmp = sift_asprintf("%s/.tmp-%s", dir, e->id);
	(void)unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	bool ok = fd >= 0;
	size_t skipped = 0;
	for (char *l = meta; ok && *l;) {
		char *nl = strchr(l, '\n');
		size_t len = nl ? (size_t)(nl - l) + 1 : strlen(l);
		if (skipped < done && strncmp(l, "Recipient: ", 11) == 0)
			skipped++;
		else
			ok = sift_write_by(fd, l, len, sift_now_ms() + 60000) == 0;
		l += len;
	}
	char buf[65536];
	off_t off = (off_t)e->data_off;
	ssize_t n;
	while (ok && (n = pread(in, buf, sizeof(buf), off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		ok = n > 0 && sift_write_by(fd, buf, (size_t)n, sift_now_ms() + 60000) == 0;
		off += n > 0 ? n : 0;
	}
	ok = ok && fchown(fd, st.st_uid, st.st_gid) == 0 && fchmod(fd, st.st_mode & 07777) == 0 &&
	     fsync(fd) == 0;
	int e2 = errno;
	if (fd >= 0)
		close(fd);
	if (ok && rename(tmp, e->path) < 0) {
		e2 = errno;
		ok = false;
	}
	if (!ok) {
		fprintf(stderr, "siftctl quarantine release: rewriting %s: %s\n", e->path, strerror(e2));
		(void)unlink(tmp);
	} else {
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	free(tmp);
	free(meta);
	return ok ? 0 : -1;
}

static int cmd_release(const char *dir, int argc, char **argv)
{
	struct release_opts o;
	if (release_opts(argc, argv, &o) < 0) {
		free(o.to);
		return 1;
	}
	struct sift_qentry e;
	FILE *fp;
	char *err = NULL;
	if (sift_quarantine_open(dir, o.id, &e, &fp, &err) < 0) {
		fprintf(stderr, "siftctl quarantine: %s\n", err);
		free(err);
		free(o.to);
		return 1;
	}
	const char *const *to = o.nto ? o.to : (const char *const *)e.rcpts;
	size_t nto = o.nto ? o.nto : e.n_rcpts;
	int rc = 1;
	size_t done = 0;
	/* One release of a message at a time: a second one (another admin, a
	 * script retrying) would deliver it again. The lock is held until the
	 * message is removed; a release that waited for it finds the file
	 * gone (no link left). */
	struct stat st;
	release_signals_catch();
	if (flock(fileno(fp), LOCK_EX | LOCK_NB) < 0)
		fprintf(stderr, "siftctl quarantine release: %s is being released by another siftctl\n",
			o.id);
	else if (fstat(fileno(fp), &st) < 0 || st.st_nlink == 0)
		fprintf(stderr, "siftctl quarantine release: %s was released meanwhile\n", o.id);
	else if (!e.has_size)
		fprintf(stderr,
			"siftctl quarantine release: %s is damaged: its record has no Size; not released\n",
			o.id);
	else if (st.st_size - e.data_off != e.size)
		/* a file cut short (a full disk under an older store, a
		 * restore) or grown: sent, a damaged copy would be delivered
		 * and the stored one removed */
		fprintf(stderr,
			"siftctl quarantine release: %s is damaged: its record says %lld bytes of message, "
			"the file holds %lld; not released (`siftctl quarantine show %s --raw` shows what "
			"is there)\n",
			o.id, e.size, (long long)(st.st_size - e.data_off), o.id);
	else if (!nto)
		fprintf(stderr, "siftctl quarantine release: %s has no recipients (use --to)\n", o.id);
	else if (reinject(dir, &o, &e, fp, to, nto, &done) == 0) {
		printf("released %s to", o.id);
		for (size_t i = 0; i < nto; i++) {
			fputs(" <", stdout);
			put_value(to[i]);
			fputs(">", stdout);
		}
		printf("\n");
		rc = 0;
		if (!o.keep && sift_quarantine_delete(dir, o.id, true, &err) < 0) {
			fprintf(stderr, "siftctl quarantine release: released, but not removed: %s\n", err);
			free(err);
			rc = 1;
		}
	} else if (done > 0) {
		/* Some batches went: a release again must not send to their
		 * recipients twice. */
		if (o.nto)
			fprintf(stderr,
				"siftctl quarantine release: %s was handed over for the first %zu of the %zu "
				"--to addresses (up to <%s>); release it again with the other --to "
				"addresses only\n",
				o.id, done, nto, to[done - 1]);
		else if (keep_rest(dir, &e, fp, done) == 0)
			fprintf(stderr,
				"siftctl quarantine release: %s was handed over for %zu of its %zu "
				"recipients; "
				"it is kept with the %zu others only, so a new release sends to them alone\n",
				o.id, done, nto, nto - done);
		else
			fprintf(stderr,
				"siftctl quarantine release: %s was handed over for its first %zu of %zu "
				"recipients, and its record still lists them all: release it with --to for "
				"the others\n",
				o.id, done, nto);
	}
	fclose(fp);
	free(o.to);
	sift_qentry_free(&e);
	release_signals_restore();
	if (release_signal) {
		/* Cleaned up: now die of the signal, as without the handler. */
		fflush(stdout);
		raise(release_signal);
	}
	return rc;
}

static int cmd_delete(const char *dir, int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "siftctl quarantine delete: an id is needed\n");
		return 1;
	}
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		char *err = NULL;
		if (sift_quarantine_delete(dir, argv[i], false, &err) < 0) {
			fprintf(stderr, "siftctl quarantine: %s\n", err);
			free(err);
			rc = 1;
		} else
			printf("deleted %s\n", argv[i]);
	}
	return rc;
}

/* The temporary files of stores that never finished, an hour old, and
 * expired release tokens (sift_quarantine_purge_tmp): one line each. */
struct tmp_purge {
	bool dry, failed;
};

static void report_tmp(void *arg, const char *path, long long age, int err, const char *what)
{
	struct tmp_purge *tp = arg;
	if (err) {
		fprintf(stderr, "siftctl quarantine: %s: %s\n", path, strerror(err));
		tp->failed = true;
	} else
		printf("%s %s (%s, %lld minutes old)\n", tp->dry ? "would remove" : "removed", path, what,
		       age / 60);
}

static int cmd_purge(const char *dir, int argc, char **argv)
{
	static const struct option lo[] = {{"older-than", required_argument, NULL, 'o'},
					   {"dry-run", no_argument, NULL, 'n'},
					   {NULL, 0, NULL, 0}};
	long long older = -1;
	bool dry = false;
	int c;
	optind = 0; /* full getopt reset: options may follow operands */
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'o') {
			if (sift_parse_time_ms(optarg, &older) < 0) {
				fprintf(stderr, "siftctl quarantine purge: bad time \"%s\"\n", optarg);
				return 1;
			}
		} else if (c == 'n')
			dry = true;
		else
			return 1;
	}
	if (older < 0 || optind != argc) {
		fprintf(stderr, "siftctl quarantine purge: --older-than TIME is required\n");
		return 1;
	}
	struct sift_qentry *list;
	size_t n, purged = 0;
	char *err = NULL;
	if (sift_quarantine_list(dir, &list, &n, &err) < 0) {
		fprintf(stderr, "siftctl quarantine: %s\n", err);
		return 1;
	}
	long long now = time(NULL);
	int rc = 0, drc;
	for (size_t i = 0; i < n; i++) {
		struct sift_qentry *e = &list[i];
		if ((now - e->time) * 1000 >= older) {
			if (dry)
				printf("would purge %s\n", e->id);
			else if ((drc = sift_quarantine_delete(dir, e->id, false, &err)) == -2) {
				/* the release removes it, or keeps what it did not
				 * send: the next purge sees that */
				printf("skipped %s: being released\n", e->id);
				free(err);
				err = NULL;
			} else if (drc < 0) {
				fprintf(stderr, "siftctl quarantine: %s\n", err);
				free(err);
				err = NULL;
				rc = 1;
			} else
				purged++;
		}
		sift_qentry_free(e);
	}
	free(list);
	struct tmp_purge tp = {.dry = dry};
	if (sift_quarantine_purge_tmp(dir, dry, report_tmp, &tp, &err) < 0) {
		fprintf(stderr, "siftctl quarantine: %s\n", err);
		free(err);
		rc = 1;
	}
	if (tp.failed)
		rc = 1;
	if (!dry)
		printf("purged %zu of %zu\n", purged, n);
	return rc;
}

static int run(int argc, char **argv, struct sift_opts *opts)
{
	if (argc < 2) {
		fputs("usage:\n", stderr);
		fputs(usage_text, stderr);
		return 1;
	}
	char *dir = store_dir(opts);
	const char *sub = argv[1];
	/* getopt's messages start with argv[0]: "siftctl quarantine list:
	 * unrecognized option '--x'" */
	char *name = sift_asprintf("siftctl quarantine %s", sub);
	argv[1] = name;
	int rc;
	if (strcmp(sub, "list") == 0)
		rc = cmd_list(dir, argc - 1, argv + 1);
	else if (strcmp(sub, "show") == 0)
		rc = cmd_show(dir, argc - 1, argv + 1);
	else if (strcmp(sub, "release") == 0)
		rc = cmd_release(dir, argc - 1, argv + 1);
	else if (strcmp(sub, "delete") == 0)
		rc = cmd_delete(dir, argc - 1, argv + 1);
	else if (strcmp(sub, "purge") == 0)
		rc = cmd_purge(dir, argc - 1, argv + 1);
	else {
		fprintf(stderr, "siftctl quarantine: unknown command \"%s\"\nusage:\n%s", sub, usage_text);
		rc = 1;
	}
	free(dir);
	argv[1] = (char *)sub;
	free(name);
	return rc;
}

const struct siftctl_cmd siftctl_quarantine_cmd = {
	.name = "quarantine",
	.run = run,
	.usage = usage_text,
};
