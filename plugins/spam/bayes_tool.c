/*
 * bayes_tool.c - the Bayes tools of siftctl:
 *   siftctl spam learn --spam|--ham PATH...   learn messages
 *   siftctl spam forget PATH...               forget learned messages
 *   siftctl spam stats                        messages and tokens learned
 *   siftctl spam import FILE                  an `sa-learn --backup` dump
 *   siftctl spam dump                         the database in that format
 *   siftctl spam tokens FILE                  a message's tokens (text, hash)
 * A PATH is a message file, an mbox (a file whose first line starts with
 * "From "), a Maildir (its cur/ and new/) or a directory of any of these
 * (recursively, dot files skipped). Messages of an mbox go through a
 * temporary file, since the host parses messages from files. Learning runs
 * in bulk (one LMDB transaction per 2000 messages or 100 ms, the writer
 * lock left free for a moment between them) and expires old tokens
 * at the end when the database is over bayes_expiry_max_db_size. An
 * import is one transaction: one that fails changes nothing (LMDB).
 */
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bayes.h"
#include "internal.h"

struct learn_state {
	const struct sift_host *host;
	const struct spam_engine *e;
	struct bayes *b;
	bool spam, forget;
	long long done, skipped, failed;
};

static void learn_done(void *arg, const struct sift_tool_message *m)
{
	struct learn_state *ls = arg;
	struct spam_input in = {.mime = m->mime, .addrlist_parse = ls->host->addrlist_parse, .bayes = ls->b};
	int rc = spam_engine_learn(ls->e, &in, ls->spam, ls->forget);
	if (rc < 0)
		ls->failed++;
	else if (rc == 0)
		ls->skipped++;
	else
		ls->done++;
}

static void learn_file(struct learn_state *ls, const char *path)
{
	char *err = NULL;
	if (ls->host->tool_message(path, NULL, NULL, NULL, learn_done, ls, &err) < 0) {
		fprintf(stderr, "siftctl spam: %s\n", err ? err : path);
		free(err);
		ls->failed++;
	}
}

/* One message of an mbox (">From " unquoted) through a temporary file. */
static void learn_mbox_msg(struct learn_state *ls, const char *data, size_t n)
{
	const char *dir = getenv("TMPDIR");
	char *tmp = xasprintf("%s/siftctl-mbox.XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(tmp);
	if (fd < 0) {
		perror(tmp);
		free(tmp);
		ls->failed++;
		return;
	}
	FILE *f = fdopen(fd, "w");
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(data + i, '\n', n - i);
		size_t len = nl ? (size_t)(nl - (data + i)) + 1 : n - i;
		const char *l = data + i;
		if (len > 5 && l[0] == '>' && strncmp(l + strspn(l, ">"), "From ", 5) == 0)
			l++, len--, i++;
		fwrite(l, 1, len, f);
		i += len;
	}
	fclose(f);
	learn_file(ls, tmp);
	unlink(tmp);
	free(tmp);
}

/* The next line of f (its newline included) appended to b, as long as b
 * stays within max bytes: 1, 0 at the end, -1 when it would not. */
static int mbox_line(FILE *f, struct sbuf *b, size_t max)
{
	int c;
	size_t start = b->n;
	while ((c = getc_unlocked(f)) != EOF) {
		if (b->n >= max)
			return -1;
		char ch = (char)c;
		sb_add(b, &ch, 1);
		if (c == '\n')
			break;
	}
	return b->n > start ? 1 : 0;
}

/* The messages of an mbox, each SIFT_TOOL_MESSAGE_MAX bytes at most: a
 * larger one (or endless input) ends the mbox with an error. */
static void learn_mbox(struct learn_state *ls, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		ls->failed++;
		return;
	}
	struct sbuf b = {0};
	bool started = false;
	size_t nmsg = 0;
	int r;
	for (;;) {
		size_t at = b.n;
		/* a "From " line is at most the limit as well */
		if ((r = mbox_line(f, &b, at + SIFT_TOOL_MESSAGE_MAX)) <= 0)
			break;
		if (b.n - at >= 5 && strncmp(b.d + at, "From ", 5) == 0) {
			if (started && at)
				learn_mbox_msg(ls, b.d, at);
			b.n = 0;
			started = true;
			nmsg++;
			continue;
		}
		if (b.n > SIFT_TOOL_MESSAGE_MAX) {
			r = -1;
			break;
		}
	}
	if (r < 0) {
		fprintf(stderr,
			"siftctl spam: %s: message %zu is larger than " SIFT_TOOL_MESSAGE_MAX_TEXT
			", the largest message siftctl reads; the rest of the mbox is not read\n",
			path, nmsg);
		ls->failed++;
	} else if (started && b.n)
		learn_mbox_msg(ls, b.d, b.n);
	free(b.d);
	fclose(f);
}

static bool is_mbox(const char *path)
{
	FILE *f = fopen(path, "r");
	char head[6] = {0};
	bool r = f && fread(head, 1, 5, f) == 5 && strcmp(head, "From ") == 0;
	if (f)
		fclose(f);
	return r;
}

static int namesort(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static void learn_path(struct learn_state *ls, const char *path, int depth)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		perror(path);
		ls->failed++;
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (is_mbox(path))
			learn_mbox(ls, path);
		else
			learn_file(ls, path);
		return;
	}
	if (depth > 16)
		return;
	struct dirent **ents;
	int n = scandir(path, &ents, NULL, namesort);
	if (n < 0) {
		perror(path);
		ls->failed++;
		return;
	}
	/* a Maildir: cur/ and new/ only (tmp/ holds deliveries in progress) */
	bool maildir = false;
	for (int i = 0; i < n; i++)
		maildir |= strcmp(ents[i]->d_name, "cur") == 0 || strcmp(ents[i]->d_name, "new") == 0;
	for (int i = 0; i < n; i++) {
		const char *nm = ents[i]->d_name;
		if (nm[0] != '.' && !(maildir && strcmp(nm, "tmp") == 0)) {
			char *p = xasprintf("%s/%s", path, nm);
			learn_path(ls, p, depth + 1);
			free(p);
		}
		free(ents[i]);
	}
	free(ents);
}

/* The totals, or -1 (said on stderr). */
static int totals(struct bayes *b, long long *ns, long long *nh, long long *nt)
{
	if (b->st->ops->totals(b->st, ns, nh, nt) < 0) {
		fprintf(stderr, "siftctl spam: cannot read the Bayes store\n");
		return -1;
	}
	return 0;
}

static struct bayes *bayes_of(void *conf)
{
	struct bayes *b = conf ? spam_tool_bayes(conf) : NULL;
	if (!b)
		fprintf(stderr, "siftctl spam: Bayes is off (spam_use_bayes = no)\n");
	return b;
}

int spam_tool_learn(const struct sift_host *host, void *conf, int argc, char **argv)
{
	struct learn_state ls = {.host = host, .forget = strcmp(argv[0], "forget") == 0};
	int i = 1, cls = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--spam") == 0)
			ls.spam = true, cls++;
		else if (strcmp(argv[i], "--ham") == 0)
			ls.spam = false, cls++;
		else {
			fprintf(stderr, "siftctl spam %s: unknown option %s\n", argv[0], argv[i]);
			return 2;
		}
	}
	if (i >= argc || (!ls.forget && cls != 1)) {
		fprintf(stderr, "usage: siftctl spam %s\n",
			ls.forget ? "forget PATH..." : "learn --spam|--ham PATH...");
		return 2;
	}
	ls.e = spam_tool_engine(conf);
	ls.b = bayes_of(conf);
	if (!ls.e || !ls.b)
		return 1;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (ls.b->st->ops->bulk)
		ls.b->st->ops->bulk(ls.b->st, BSTORE_BULK_BATCHES);
	for (; i < argc; i++)
		learn_path(&ls, argv[i], 0);
	if (ls.b->st->ops->bulk && ls.b->st->ops->bulk(ls.b->st, BSTORE_BULK_COMMIT) < 0) {
		fprintf(stderr, "siftctl spam: cannot commit to the Bayes store\n");
		return 1;
	}
	long long expired = ls.forget ? 0 : bayes_expire(ls.b);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("%s %lld message(s)%s, %lld skipped (already %s), %lld failed, in %.2f s",
	       ls.forget ? "forgot" : "learned", ls.done,
	       ls.forget ? ""
	       : ls.spam ? " as spam"
			 : " as ham",
	       ls.skipped, ls.forget ? "not learned" : "learned so", ls.failed, secs);
	if (expired > 0)
		printf(", %lld old token(s) expired", expired);
	printf("\n");
	return ls.failed ? 1 : 0;
}

int spam_tool_bayes_stats(const struct sift_host *host, void *conf, int argc, char **argv)
{
	(void)host;
	(void)argc;
	(void)argv;
	struct bayes *b = bayes_of(conf);
	if (!b)
		return 1;
	long long ns, nh, nt;
	if (totals(b, &ns, &nh, &nt) < 0)
		return 1;
	printf("spam: %lld\nham: %lld\n", ns, nh);
	if (nt >= 0)
		printf("tokens: %lld\n", nt);
	printf("ready: %s (bayes_min_spam_num %lld, bayes_min_ham_num %lld)\n", bayes_ready(b) ? "yes" : "no",
	       b->o.min_spam_num, b->o.min_ham_num);
	return 0;
}

int spam_tool_import(const struct sift_host *host, void *conf, int argc, char **argv)
{
	(void)host;
	if (argc != 2) {
		fprintf(stderr, "usage: siftctl spam import FILE\n");
		return 2;
	}
	struct bayes *b = bayes_of(conf);
	if (!b)
		return 1;
	FILE *f = strcmp(argv[1], "-") == 0 ? stdin : fopen(argv[1], "r");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	/* one transaction: an import that fails changes nothing (a store
	 * without bulk writing, redis, keeps what came before the error) */
	bool atomic = b->st->ops->bulk && b->st->ops->bulk(b->st, BSTORE_BULK_ONE) == 0;
	char *err = NULL;
	long long n = bayes_import(b, f, &err);
	if (f != stdin)
		fclose(f);
	if (n < 0 && atomic)
		b->st->ops->bulk(b->st, BSTORE_BULK_ABORT);
	else if (atomic && b->st->ops->bulk(b->st, BSTORE_BULK_COMMIT) < 0) {
		n = -1;
		err = xstrdup("cannot commit to the Bayes store");
	}
	if (n < 0) {
		fprintf(stderr, "siftctl spam import: %s: %s; %s\n", argv[1], err ? err : "failed",
			atomic ? "nothing imported" : "what came before it is imported");
		free(err);
		return 1;
	}
	printf("imported %lld token(s)\n", n);
	return 0;
}

static int dump_token(void *arg, btok t, const struct bcounts *c)
{
	(void)arg;
	printf("t\t%u\t%u\t%u\t%010llx\n", c->s, c->h, c->atime, (unsigned long long)t);
	return 0;
}

int spam_tool_dump(const struct sift_host *host, void *conf, int argc, char **argv)
{
	(void)host;
	(void)argc;
	(void)argv;
	struct bayes *b = bayes_of(conf);
	long long ns, nh, nt;
	if (!b)
		return 1;
	if (!b->st->ops->each) {
		fprintf(stderr, "siftctl spam dump: the redis store cannot be listed\n");
		return 1;
	}
	if (totals(b, &ns, &nh, &nt) < 0)
		return 1;
	printf("v\t3\tdb_version # this must be the first line!!!\nv\t%lld\tnum_spam\nv\t%lld\tnum_nonspam\n",
	       ns, nh);
	return b->st->ops->each(b->st, dump_token, NULL) < 0 ? 1 : 0;
}

static void print_token(void *arg, const char *tok, size_t n)
{
	(void)arg;
	printf("%010llx %.*s\n", (unsigned long long)bayes_hash(tok, n), (int)n, tok);
}

static void tokens_done(void *arg, const struct sift_tool_message *m)
{
	struct learn_state *ls = arg;
	struct spam_input in = {.mime = m->mime, .addrlist_parse = ls->host->addrlist_parse};
	spam_engine_tokens(ls->e, &in, print_token, NULL);
}

int spam_tool_tokens(const struct sift_host *host, void *conf, int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: siftctl spam tokens FILE\n");
		return 2;
	}
	struct learn_state ls = {.host = host, .e = spam_tool_engine(conf)};
	if (!ls.e)
		return 1;
	char *err = NULL;
	if (host->tool_message(argv[1], NULL, NULL, NULL, tokens_done, &ls, &err) < 0) {
		fprintf(stderr, "siftctl spam: %s\n", err ? err : argv[1]);
		free(err);
		return 1;
	}
	return 0;
}
