/*
 * quarantine.c - the quarantine store.
 *
 * One file per message, DIR/<id>.msg, holding a metadata record and then the
 * message exactly as received (header lines "Name:value" with CRLF, a blank
 * line, the body with CRLF line ends; read through host->message_read, the
 * core's one copy of the message, in chunks):
 *
 *     Sift-Quarantine: 1
 *     Id: 20250101-120000-0123456789ab
 *     Queue-Id: 4Xyz1234
 *     Time: 1735732800
 *     Sender: alice@example.test         (empty for the null sender)
 *     Recipient: bob@sift.test            (one line per recipient)
 *     Reason: virus Test.EICAR.NDB.UNOFFICIAL
 *     Plugin: clamav
 *     Size: 1234                          (bytes of the message part)
 *     <empty line>
 *     <the message>
 *
 * Metadata values never contain CR, LF or NUL (they are replaced by spaces).
 * Ids are the UTC time of the store and 48 random bits, so a directory
 * listing sorts by age; only [0-9a-zA-Z-] is accepted as an id, so an id from
 * a command line never names a file outside the store.
 *
 * Writes are atomic: the file is written as DIR/.tmp-<id>, fsync'd, renamed
 * to its final name and the directory fsync'd; any error removes the
 * temporary file and fails (the caller then answers TEMPFAIL). A crash
 * between the write and the rename leaves the temporary file: purges
 * (siftctl quarantine purge) remove those an hour old, which no store in
 * progress is (sift_quarantine_purge_tmp), and release tokens over a day
 * old, which filterd refuses (left by a release that was killed).
 *
 * The stored message starts with a Received: line in Postfix's form, built
 * from the milter macros (client name and address, HELO, our host name,
 * queue id, time): Postfix does not show a milter its own Received: line,
 * and without it a released message would lose where it came from.
 *
 * Release tokens (siftctl quarantine release): DIR/.release/<token>, 32 hex
 * digits from getrandom(), created O_EXCL|O_NOFOLLOW with mode 0600 and
 * owned, like DIR/.release (mode 0700), by DIR's owner (the daemon user);
 * the file holds the quarantine id. The re-injected message carries
 * `X-Sift-Release: <token>` as its first header; filterd accepts a message
 * whose token file exists (and is younger than a day) without running the
 * plugins, removes the header and the token file: one use. A sender cannot
 * forge one (2^128 names, in a directory only root and the daemon user can
 * list), and a header that names no token is removed and the message
 * scanned as usual. Nor can a local user plant one: filterd and siftctl
 * refuse a DIR writable by group or others, or owned by anyone but root
 * and filterd_user (sift_quarantine_dir_check).
 *
 * Threading: sift_quarantine_store may run in many threads at once (each
 * writes its own file); the readers are for siftctl. Nothing is shared.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"

#define META_MAX	(4 * 1024 * 1024) /* bound on a metadata record */
#define TMP_PREFIX	".tmp-"		  /* a store being written: DIR/.tmp-<id> */
#define TMP_STALE_AGE	3600		  /* seconds since its last write: never finished */
#define RELEASE_SUBDIR	"/.release"
#define RELEASE_MAX_AGE (24 * 3600) /* a release token older is refused */

/* DIR/.release, opened without following a symbolic link in its place
 * (the daemon user owns the store and could put one there): -1 when it
 * cannot be. */
static int release_dir(const char *dir)
{
	char *rdir = sift_asprintf("%s" RELEASE_SUBDIR, dir);
	int dfd = open(rdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	free(rdir);
	return dfd;
}

bool sift_quarantine_id_valid(const char *id)
{
	if (!id || !*id || strlen(id) > 64)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      *p == '-'))
			return false;
	return true;
}

static void add_clean(struct sift_buf *b, const char *v)
{
	for (const char *p = v ? v : ""; *p; p++)
		sift_buf_add(b, (*p == '\r' || *p == '\n') ? " " : p, 1);
}

static void add_meta(struct sift_buf *b, const char *name, const char *value)
{
	sift_buf_adds(b, name);
	sift_buf_add(b, ": ", 2);
	add_clean(b, value);
	sift_buf_add(b, "\n", 1);
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static char *new_id(void)
{
	unsigned char rnd[6];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		/* Fall back on the clock and the pid; still unique enough with
		 * O_EXCL below. */
		long long t = sift_now_ms() ^ ((long long)getpid() << 20);
		memcpy(rnd, &t, sizeof(rnd));
	}
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	return sift_asprintf("%04d%02d%02d-%02d%02d%02d-%02x%02x%02x%02x%02x%02x", tm.tm_year + 1900,
			     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1],
			     rnd[2], rnd[3], rnd[4], rnd[5]);
}

/* A Received: line as Postfix's smtpd writes it, from the milter macros;
 * nothing when the client address is unknown. */
static void add_received(struct sift_buf *b, struct sift_ctx *ctx)
{
	const struct sift_host *h = &sift_host_table;
	const char *addr = h->get(ctx, SIFT_I_CLIENT_ADDR);
	if (!addr || !*addr)
		return;
	const char *name = h->get(ctx, SIFT_I_CLIENT_NAME);
	const char *helo = h->get(ctx, SIFT_I_HELO);
	const char *me = h->get(ctx, SIFT_I_MYHOSTNAME);
	const char *qid = h->get(ctx, SIFT_I_QUEUE_ID);
	const char *auth = h->get(ctx, SIFT_I_SASL_USERNAME);
	if (!name || !*name)
		name = "unknown";
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %e %b %Y %H:%M:%S %z (%Z)", &tm);
	sift_buf_adds(b, "Received: from ");
	add_clean(b, helo && *helo ? helo : name);
	sift_buf_adds(b, " (");
	add_clean(b, name);
	sift_buf_adds(b, " [");
	add_clean(b, addr);
	sift_buf_adds(b, "])\r\n\tby ");
	add_clean(b, me && *me ? me : "localhost");
	sift_buf_adds(b, auth && *auth ? " (Postfix) with ESMTPA id " : " (Postfix) with ESMTP id ");
	add_clean(b, qid && *qid ? qid : "NOQUEUE");
	if (h->rcpt_count(ctx) == 1) {
		sift_buf_adds(b, "\r\n\tfor <");
		add_clean(b, h->rcpt(ctx, 0));
		sift_buf_add(b, ">", 1);
	}
	sift_buf_adds(b, "; ");
	sift_buf_adds(b, date);
	sift_buf_add(b, "\r\n", 2);
}

int sift_quarantine_store(const char *dir, struct sift_ctx *ctx, const char *reason, const char *plugin,
			  char **id_r, char **err_r)
{
	const struct sift_host *h = &sift_host_table;
	if (!dir || !*dir) {
		*err_r = sift_strdup("quarantine_directory is empty");
		return -1;
	}
	/* Released, a message stored without some of its recipients would
	 * never reach them. */
	if (sift_ctx_rcpts_full(ctx)) {
		*err_r = sift_asprintf("the message has more than the %zu recipients filterd keeps: not "
				       "stored, as a release would not reach the others",
				       h->rcpt_count(ctx));
		return -1;
	}
	/* The message part: our Received: line, then the message as received,
	 * read from the host's copy (memory or spool) in chunks. */
	struct sift_buf hdr = {0};
	add_received(&hdr, ctx);
	long long size = h->message_size(ctx);
	if (size < 0)
		size = 0;

	char *id = new_id();
	struct sift_buf meta = {0};
	char num[32];
	add_meta(&meta, "Sift-Quarantine", "1");
	add_meta(&meta, "Id", id);
	add_meta(&meta, "Queue-Id", h->get(ctx, SIFT_I_QUEUE_ID));
	snprintf(num, sizeof(num), "%lld", (long long)time(NULL));
	add_meta(&meta, "Time", num);
	add_meta(&meta, "Sender", h->get(ctx, SIFT_I_SENDER));
	for (size_t i = 0, n = h->rcpt_count(ctx); i < n; i++)
		add_meta(&meta, "Recipient", h->rcpt(ctx, i));
	add_meta(&meta, "Reason", reason);
	add_meta(&meta, "Plugin", plugin);
	snprintf(num, sizeof(num), "%lld", (long long)hdr.len + size);
	add_meta(&meta, "Size", num);
	sift_buf_add(&meta, "\n", 1);

	char *tmp = sift_asprintf("%s/" TMP_PREFIX "%s", dir, id);
	char *final = sift_asprintf("%s/%s.msg", dir, id);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	int rc = -1;
	char buf[65536];
	if (fd < 0) {
		*err_r = sift_asprintf("create %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_all(fd, meta.data, meta.len) < 0 || write_all(fd, hdr.data, hdr.len) < 0)
		goto werr;
	for (long long off = 0; off < size;) {
		long n = h->message_read(ctx, off, buf, sizeof(buf));
		if (n < 0) {
			*err_r = sift_strdup("reading the message failed");
			goto fail;
		}
		if (n == 0) { /* the spool file cut: a copy short of the message,
			       * which the caller would then discard */
			*err_r = sift_asprintf("the message ended at octet %lld of %lld", off, size);
			goto fail;
		}
		if (write_all(fd, buf, (size_t)n) < 0)
			goto werr;
		off += n;
	}
	if (fsync(fd) < 0)
		goto werr;
	if (close(fd) < 0) {
		fd = -1;
		goto werr;
	}
	fd = -1;
	if (rename(tmp, final) < 0)
		goto werr;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rc = 0;
	*id_r = id;
	id = NULL;
	goto out;
werr:
	*err_r = sift_asprintf("write %s: %s", tmp, strerror(errno));
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(id);
	free(tmp);
	free(final);
	sift_buf_free(&meta);
	sift_buf_free(&hdr);
	return rc;
}

/* ---- reading the store (siftctl) --------------------------------------------- */

void sift_qentry_free(struct sift_qentry *e)
{
	if (!e)
		return;
	free(e->id);
	free(e->queue_id);
	free(e->sender);
	for (size_t i = 0; i < e->n_rcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->reason);
	free(e->plugin);
	free(e->path);
	memset(e, 0, sizeof(*e));
}

/* Parses the metadata record at the start of fp; leaves fp at the message. */
static int parse_meta(FILE *fp, struct sift_qentry *e, char **err_r)
{
	char *line = NULL;
	size_t cap = 0, total = 0;
	ssize_t n;
	bool magic = false, end = false;
	while ((n = getline(&line, &cap, fp)) > 0) {
		total += (size_t)n;
		if (total > META_MAX)
			break;
		if (line[n - 1] == '\n')
			line[--n] = 0;
		if (n == 0) {
			end = true;
			break;
		}
		char *colon = strstr(line, ": ");
		if (!colon)
			continue;
		*colon = 0;
		const char *v = colon + 2;
		if (strcmp(line, "Sift-Quarantine") == 0)
			magic = true;
		else if (strcmp(line, "Id") == 0 && !e->id)
			e->id = sift_strdup(v);
		else if (strcmp(line, "Queue-Id") == 0 && !e->queue_id)
			e->queue_id = sift_strdup(v);
		else if (strcmp(line, "Time") == 0)
			e->time = strtoll(v, NULL, 10);
		else if (strcmp(line, "Sender") == 0 && !e->sender)
			e->sender = sift_strdup(v);
		else if (strcmp(line, "Recipient") == 0) {
			e->rcpts = sift_realloc(e->rcpts, (e->n_rcpts + 1) * sizeof(char *));
			e->rcpts[e->n_rcpts++] = sift_strdup(v);
		} else if (strcmp(line, "Reason") == 0 && !e->reason)
			e->reason = sift_strdup(v);
		else if (strcmp(line, "Plugin") == 0 && !e->plugin)
			e->plugin = sift_strdup(v);
		else if (strcmp(line, "Size") == 0) {
			char *rest;
			errno = 0;
			e->size = strtoll(v, &rest, 10);
			e->has_size = errno == 0 && rest != v && !*rest && e->size >= 0;
		}
	}
	free(line);
	if (!magic || !end || !e->id) {
		*err_r = sift_strdup("not a quarantine file (bad metadata record)");
		return -1;
	}
	if (!e->sender)
		e->sender = sift_strdup("");
	if (!e->queue_id)
		e->queue_id = sift_strdup("");
	if (!e->reason)
		e->reason = sift_strdup("");
	if (!e->plugin)
		e->plugin = sift_strdup("");
	e->data_off = ftello(fp);
	return 0;
}

int sift_quarantine_open(const char *dir, const char *id, struct sift_qentry *e_r, FILE **fp_r, char **err_r)
{
	memset(e_r, 0, sizeof(*e_r));
	if (!sift_quarantine_id_valid(id)) {
		*err_r = sift_asprintf("bad quarantine id \"%s\"", id ? id : "");
		return -1;
	}
	char *path = sift_asprintf("%s/%s.msg", dir, id);
	/* Only a regular file, never through a symbolic link: the daemon user
	 * owns the directory, and siftctl may run as root; a FIFO or a device
	 * put there would block list (and the status page) for good. */
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	FILE *fp = NULL;
	if (fd < 0) {
		*err_r = errno == ENOENT ? sift_asprintf("no quarantined message %s", id)
			 : errno == ELOOP
				 ? sift_asprintf("%s: a symbolic link, not a quarantined message", path)
				 : sift_asprintf("%s: %s", path, strerror(errno));
		free(path);
		return -1;
	}
	bool reg = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (!reg || fcntl(fd, F_SETFL, 0) < 0 || !(fp = fdopen(fd, "rb"))) {
		*err_r = reg ? sift_asprintf("%s: %s", path, strerror(errno))
			     : sift_asprintf("%s: not a regular file, not a quarantined message", path);
		close(fd);
		free(path);
		return -1;
	}
	if (parse_meta(fp, e_r, err_r) < 0) {
		char *inner = *err_r;
		*err_r = sift_asprintf("%s: %s", path, inner);
		free(inner);
		free(path);
		fclose(fp);
		sift_qentry_free(e_r);
		return -1;
	}
	/* The id is the file's name, which every command takes; the record's
	 * copy is not shown (it may say anything). */
	free(e_r->id);
	e_r->id = sift_strdup(id);
	e_r->path = path;
	if (fp_r)
		*fp_r = fp;
	else
		fclose(fp);
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct sift_qentry *x = a, *y = b;
	if (x->time != y->time)
		return x->time < y->time ? -1 : 1;
	return strcmp(x->id, y->id);
}

int sift_quarantine_list(const char *dir, struct sift_qentry **list_r, size_t *n_r, char **err_r)
{
	*list_r = NULL;
	*n_r = 0;
	DIR *d = opendir(dir);
	if (!d) {
		*err_r = sift_asprintf("%s: %s", dir, strerror(errno));
		return -1;
	}
	struct dirent *de;
	struct sift_qentry *list = NULL;
	size_t n = 0;
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		if (len < 5 || strcmp(de->d_name + len - 4, ".msg") != 0)
			continue;
		char *id = sift_strndup(de->d_name, len - 4);
		struct sift_qentry e;
		char *err = NULL;
		if (sift_quarantine_id_valid(id) && sift_quarantine_open(dir, id, &e, NULL, &err) == 0) {
			list = sift_realloc(list, (n + 1) * sizeof(*list));
			list[n++] = e;
		} else if (err) {
			sift_log(LOG_WARNING, "quarantine: %s", err);
			free(err);
		}
		free(id);
	}
	closedir(d);
	if (n)
		qsort(list, n, sizeof(*list), cmp_entry);
	*list_r = list;
	*n_r = n;
	return 0;
}

int sift_quarantine_delete(const char *dir, const char *id, bool held, char **err_r)
{
	if (!sift_quarantine_id_valid(id)) {
		*err_r = sift_asprintf("bad quarantine id \"%s\"", id ? id : "");
		return -1;
	}
	char *path = sift_asprintf("%s/%s.msg", dir, id);
	/* A release holds the lock on its message until it is done; one
	 * that sent to some recipients only writes the message back with the
	 * others, which would bring a message deleted meanwhile back. So the
	 * lock first: a message being released is not deleted. (Not a regular
	 * file, or a symbolic link: no release opens that; removed as it is.) */
	int fd = held ? -1 : open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		*err_r = e == EWOULDBLOCK
				 ? sift_asprintf("%s is being released by another siftctl: not deleted", id)
				 : sift_asprintf("%s: %s", path, strerror(e));
		free(path);
		return e == EWOULDBLOCK ? -2 : -1;
	}
	int rc;
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_nlink == 0) {
		rc = -1; /* removed between the open and the lock */
		errno = ENOENT;
	} else
		rc = unlink(path);
	if (rc < 0)
		*err_r = errno == ENOENT ? sift_asprintf("no quarantined message %s", id)
					 : sift_asprintf("%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(path);
	return rc < 0 ? -1 : 0;
}

/* What a purge removes in one directory: the regular files whose names
 * `ours` accepts and whose last write is over max_age seconds ago; each is
 * reported as `what`. The number found; d is closed. */
static long purge_old(DIR *d, const char *dir, bool (*ours)(const char *name), long long max_age,
		      const char *what, bool dry_run,
		      void (*report)(void *arg, const char *path, long long age, int err, const char *what),
		      void *arg)
{
	long n = 0;
	time_t now = time(NULL);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct stat st;
		if (!ours(de->d_name) || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || now - st.st_mtime <= max_age)
			continue;
		int err = !dry_run && unlinkat(dirfd(d), de->d_name, 0) < 0 ? errno : 0;
		char *path = sift_asprintf("%s/%s", dir, de->d_name);
		report(arg, path, (long long)(now - st.st_mtime), err, what);
		free(path);
		n++;
	}
	closedir(d);
	return n;
}

/* Only what a store writes: .tmp-<valid id>. */
static bool tmp_name(const char *name)
{
	return strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0 &&
	       sift_quarantine_id_valid(name + strlen(TMP_PREFIX));
}

long sift_quarantine_purge_tmp(const char *dir, bool dry_run,
			       void (*report)(void *arg, const char *path, long long age, int err,
					      const char *what),
			       void *arg, char **err_r)
{
	DIR *d = opendir(dir);
	if (!d) {
		*err_r = sift_asprintf("%s: %s", dir, strerror(errno));
		return -1;
	}
	long n = purge_old(d, dir, tmp_name, TMP_STALE_AGE - 1, "left by a store that never finished",
			   dry_run, report, arg);
	/* Release tokens past their age, which filterd refuses: left by a
	 * release that was killed (SIGKILL) or crashed. */
	char *rdir = sift_asprintf("%s" RELEASE_SUBDIR, dir);
	/* Not through a symbolic link: a purge run by root would remove old
	 * files of token-like names wherever the link pointed. */
	int rfd = release_dir(dir);
	d = rfd >= 0 ? fdopendir(rfd) : NULL;
	if (d)
		n += purge_old(d, rdir, sift_quarantine_token_valid, RELEASE_MAX_AGE,
			       "an expired release token", dry_run, report, arg);
	else if (errno != ENOENT) {
		*err_r = sift_asprintf("%s: %s: left alone", rdir,
				       errno == ELOOP || errno == ENOTDIR
					       ? "not a directory (a symbolic link?)"
					       : strerror(errno));
		if (rfd >= 0)
			close(rfd);
		n = -1;
	}
	free(rdir);
	return n;
}

int sift_quarantine_dir_check(const char *dir, const char *user, char **err_r)
{
	struct stat st;
	if (!dir || !*dir || stat(dir, &st) < 0)
		return 0;
	/* Without a (known) filterd_user, the owner is ours when we are not
	 * root. As root, the daemon's user is not known: filterd refuses to
	 * start (-t too) with filterd_user empty or unknown, naming it, so the
	 * owner is not held against anyone here (filterd -p, siftctl with a
	 * configuration that leaves it out); the mode still is. */
	uid_t owner;
	unsigned flags = SIFT_TRUST_DIR | SIFT_TRUST_OWNER;
	if (sift_user_uid(user, &owner) < 0) {
		owner = geteuid();
		if (owner == 0)
			flags &= ~SIFT_TRUST_OWNER;
	}
	return sift_path_trusted("quarantine_directory", dir, flags, owner, err_r);
}

/* ---- release tokens ---------------------------------------------------------- */

bool sift_quarantine_token_valid(const char *t)
{
	if (!t || strlen(t) != 32)
		return false;
	for (; *t; t++)
		if (!((*t >= '0' && *t <= '9') || (*t >= 'a' && *t <= 'f')))
			return false;
	return true;
}

int sift_quarantine_release_token(const char *dir, const char *id, char **token_r, char **err_r)
{
	struct stat dst, rst;
	if (stat(dir, &dst) < 0) {
		*err_r = sift_asprintf("%s: %s", dir, strerror(errno));
		return -1;
	}
	char *rdir = sift_asprintf("%s" RELEASE_SUBDIR, dir);
	char *path = NULL, *tok = NULL;
	int fd = -1, dfd = -1, rc = -1;
	unsigned char rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		*err_r = sift_asprintf("getrandom: %s", strerror(errno));
		goto out;
	}
	tok = sift_calloc(1, 33);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(tok + 2 * i, 3, "%02x", rnd[i]);
	path = sift_asprintf("%s/%s", rdir, tok);
	/* Twice: another release may remove the directory when it empties.
	 * Everything below works on the directory's descriptor: the daemon
	 * user owns the store and could swap .release for a symbolic link. */
	for (int attempt = 0; fd < 0 && attempt < 2; attempt++) {
		if (dfd >= 0)
			close(dfd);
		if (mkdir(rdir, 0700) < 0 && errno != EEXIST)
			goto err_dir;
		dfd = open(rdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (dfd < 0 || fstat(dfd, &rst) < 0)
			goto err_dir;
		/* The daemon user (the store's owner) consumes the tokens. */
		if (geteuid() == 0 && (rst.st_uid != dst.st_uid || rst.st_gid != dst.st_gid) &&
		    fchown(dfd, dst.st_uid, dst.st_gid) < 0)
			goto err_dir;
		if ((rst.st_mode & 07777) != 0700 && fchmod(dfd, 0700) < 0)
			goto err_dir;
		fd = openat(dfd, tok, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != ENOENT)
			break;
	}
	if (fd < 0)
		goto err;
	if (geteuid() == 0 && fchown(fd, dst.st_uid, dst.st_gid) < 0)
		goto err_unlink;
	if (write_all(fd, id, strlen(id)) < 0 || write_all(fd, "\n", 1) < 0 || fsync(fd) < 0)
		goto err_unlink;
	rc = 0;
	*token_r = tok;
	tok = NULL;
	goto out;
err_unlink:
	*err_r = sift_asprintf("%s: %s", path, strerror(errno));
	unlinkat(dfd, tok, 0);
	goto out;
err_dir:
	*err_r = sift_asprintf("%s: %s", rdir, strerror(errno));
	goto out;
err:
	*err_r = sift_asprintf("%s: %s", path, strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	free(tok);
	free(path);
	free(rdir);
	return rc;
}

int sift_quarantine_release_check(const char *dir, const char *token, char **id_r)
{
	*id_r = NULL;
	if (!dir || !*dir || !sift_quarantine_token_valid(token))
		return 0;
	int dfd = release_dir(dir);
	if (dfd < 0)
		return 0;
	/* O_NONBLOCK: a FIFO in the token's place (the daemon user owns the
	 * directory) would block the open, and siftctl waiting for filterd
	 * with it, for good; only a regular file is a token. */
	int fd = openat(dfd, token, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	close(dfd);
	if (fd < 0)
		return 0;
	struct stat st;
	char buf[80];
	ssize_t n = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && time(NULL) - st.st_mtime <= RELEASE_MAX_AGE)
		n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	*id_r = sift_strdup(sift_quarantine_id_valid(buf) ? buf : "?");
	return 1;
}

int sift_quarantine_release_consume(const char *dir, const char *token)
{
	if (!sift_quarantine_token_valid(token))
		return -1;
	int dfd = release_dir(dir);
	if (dfd < 0)
		return -1;
	int rc = unlinkat(dfd, token, 0);
	int err = errno;
	close(dfd);
	errno = err;
	return rc;
}
