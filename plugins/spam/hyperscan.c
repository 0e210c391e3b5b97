/*
 * hyperscan.c - the Hyperscan matcher of the spam engine.
 *
 * Two matchers share the parsed rules. The base matcher is ready when
 * spam_engine_new returns: PCRE2-JIT for every regex, plus per group a small
 * exact database of the few patterns PCRE2 cannot compile (huge
 * alternations). The Hyperscan matcher adds per group a prefilter database
 * whose candidates PCRE2 confirms; it is loaded from the cache directory or
 * compiled by a child process in the background (a child, so that release
 * can stop a compile at once by killing it), then published with one atomic
 * store. A message reads the pointer once and uses that matcher from start
 * to end; both find the same hits, since the prefilter only narrows the
 * rules PCRE2 runs. The Hyperscan matcher lives until the engine is freed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

#ifdef SPAM_HAVE_HS

static void elog(const struct spam_engine *e, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void elog(const struct spam_engine *e, int level, const char *fmt, ...)
{
	if (!e->log)
		return;
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) >= 0)
		e->log(level, s);
	va_end(ap);
	free(s);
}

static unsigned hs_flags_for(const struct rule *r)
{
	unsigned f = (r->hs_exact ? 0 : HS_FLAG_PREFILTER) | HS_FLAG_SINGLEMATCH | HS_FLAG_ALLOWEMPTY;
	for (const char *p = r->flags; p && *p; p++) {
		if (*p == 'i')
			f |= HS_FLAG_CASELESS;
		else if (*p == 's')
			f |= HS_FLAG_DOTALL;
		else if (*p == 'm')
			f |= HS_FLAG_MULTILINE;
	}
	if (r->utf)
		f |= HS_FLAG_UTF8;
	return f;
}

/* pat, or the looser form of it a prefilter_* call made (pat freed). */
static char *loosened(char *pat, char *loose)
{
	if (!loose)
		return pat;
	free(pat);
	return loose;
}

/* The pattern Hyperscan compiles: a prefilter's may be a prefix of the
 * regex, widened and with its largest repeats unbounded (prefix.c); the
 * exact ones are whole. */
static char *hs_pattern(const struct rule *r)
{
	if (r->flags && strchr(r->flags, 'x'))
		return xasprintf("(?x)%s", r->pattern);
	if (r->hs_exact)
		return xstrdup(r->pattern);
	size_t cut = prefilter_prefix(r->pattern, r->flags);
	char *pat = cut ? xstrndup(r->pattern, cut) : xstrdup(r->pattern);
	if (!r->utf)
		pat = loosened(pat, prefilter_widen(pat, r->flags));
	return loosened(pat, prefilter_relax(pat, r->flags, RELAX_PREFILTER_COUNT));
}

/* flags for p in the body's prefilter database (the relaxed one and the
 * other groups scan faster single-match): HS_FLAG_SINGLEMATCH kept only for a
 * pattern that matches fewer than HS_MULTI_MIN_WIDTH octets. Reports
 * after a rule's first are dropped as they come (hs_cb), but a single-
 * match pattern keeps an automaton of its own: Hyperscan does not merge
 * it with the others. Without the flag the look-alike and obfuscated-word
 * rules (no literal to start from) share their automata, and the stock
 * body rules cost 28% less to scan; a short pattern (a letter, \S) would
 * report at almost every offset. */
#define HS_MULTI_MIN_WIDTH 3 /* part of the cache files' names */

static unsigned hs_match_flags(const char *p, unsigned flags)
{
	hs_expr_info_t *info = NULL;
	hs_compile_error_t *ce = NULL;
	if (!(flags & HS_FLAG_SINGLEMATCH))
		return flags;
	if (hs_expression_info(p, flags, &info, &ce) != HS_SUCCESS) {
		hs_free_compile_error(ce);
		return flags; /* the compile names what is wrong */
	}
	if (info->min_width >= HS_MULTI_MIN_WIDTH)
		flags &= ~HS_FLAG_SINGLEMATCH;
	free(info);
	return flags;
}

/* Compiles the rules of g marked in ok[] into one database, each as
 * pat[i] (NULL: hs_pattern), in exact mode where exact[i] (a relaxed
 * pattern: still a prefilter, PCRE2 confirms), reporting every match where
 * multi allows (hs_match_flags). When the compiler names a culprit, it
 * leaves ok[] and the rest is compiled again; with no culprit named, the
 * whole database is given up (ok[] cleared). */
static hs_database_t *hs_build(const struct spam_engine *e, const struct rgroup *g, bool *ok,
			       char *const *pat, const bool *exact, bool multi)
{
	size_t cap = g->n + 1;
	char **pats = xcalloc(cap, sizeof(char *));
	unsigned *flags = xcalloc(cap, sizeof(unsigned));
	unsigned *ids = xcalloc(cap, sizeof(unsigned));
	hs_database_t *db = NULL;
	for (;;) {
		size_t m = 0;
		for (size_t i = 0; i < g->n; i++) {
			if (!ok[i])
				continue;
			const struct rule *r = &e->rules[g->rules[i]];
			char *all = pat && pat[i] ? xstrdup(pat[i]) : hs_pattern(r);
			/* a prefilter in pieces (prefilter_split): one expression
			 * a line, each reporting the rule */
			for (char *one = all, *nl; one; one = nl ? nl + 1 : NULL) {
				if ((nl = strchr(one, '\n')))
					*nl = 0;
				if (m == cap) {
					cap *= 2;
					pats = xrealloc(pats, cap * sizeof(*pats));
					flags = xrealloc(flags, cap * sizeof(*flags));
					ids = xrealloc(ids, cap * sizeof(*ids));
				}
				pats[m] = xstrdup(one);
				flags[m] = hs_flags_for(r) & ~(exact && exact[i] ? HS_FLAG_PREFILTER : 0u);
				if (multi)
					flags[m] = hs_match_flags(pats[m], flags[m]);
				ids[m] = (unsigned)i;
				m++;
			}
			free(all);
		}
		if (m == 0)
			break;
		hs_compile_error_t *ce = NULL;
		hs_error_t rc = hs_compile_multi((const char *const *)pats, flags, ids, (unsigned)m,
						 HS_MODE_BLOCK, NULL, &db, &ce);
		int bad = rc == HS_SUCCESS ? -1 : ce ? ce->expression : -1;
		if (ce)
			hs_free_compile_error(ce);
		for (size_t i = 0; i < m; i++)
			free(pats[i]);
		if (rc == HS_SUCCESS)
			break;
		db = NULL;
		if (bad < 0 || (size_t)bad >= m) {
			memset(ok, 0, g->n * sizeof(bool));
			break;
		}
		ok[ids[bad]] = false;
	}
	free(pats);
	free(flags);
	free(ids);
	return db;
}

/* Rules of a group that go to its prefilter database: PCRE2 confirms them.
 * One with a native prefilter (native.c) is cheaper with that alone. */
static bool hs_candidate(const struct rule *r)
{
	return r->re && !r->hs_exact && !r->npf;
}

static size_t hs_ncandidates(const struct spam_engine *e, const struct rgroup *g)
{
	size_t n = 0;
	for (size_t i = 0; i < g->n; i++)
		n += hs_candidate(&e->rules[g->rules[i]]);
	return n;
}

/* A pattern whose prefilter automaton alone is over HS_MAX_RULE_DB octets
 * stays out of its group's database and is matched by PCRE2 alone: ten
 * rules of the stock ruleset ("fuzzy" spellings with a character class for
 * every look-alike of every letter, long optional prefixes) were 9 MB of
 * the 53 MB of databases every filterd holds. Only long patterns are
 * measured (a compile each); short ones never come near the limit. The
 * limit is part of the cache files' names. */
#define HS_MAX_RULE_DB	(1024u * 1024)
#define HS_SIZE_PATTERN 300

/* A group's databases as stored in the cache and sent by the compiler:
 * HS_MAGIC, the number of rules n (4 octets), n flags (HS_IN_DB: in
 * the prefilter database, HS_RELAXED added: as an exact pattern, HS_ASCII
 * added instead: its ASCII form there, itself in the full database;
 * HS_STARTS: in the starts database alone), the lengths of the serialized
 * prefilter and starts databases (8 octets each), those two databases,
 * the serialized full database (each absent when none), then the SHA-256
 * of all that.
 * Hyperscan checks its bytecode's CRC, but not every octet of its
 * databases, and nothing checks the flags: a flipped bit could send a
 * rule to a database that does not hold it, where it never matches, or
 * run it twice. */
#define HS_MAGIC "SIFTHS8\n"
#define HS_NDB	 3 /* DB_MAIN, DB_STARTS, DB_FULL */
enum { DB_MAIN, DB_STARTS, DB_FULL };
#define HS_HEAD	  (8 + 4 + 8 * (HS_NDB - 1)) /* and the n flags */
#define HS_DIGEST SHA256_DIGEST_LENGTH

/* The cache file of a group, named by a hash of everything its database
 * depends on (the patterns as compiled, prefixes included). */
static char *hs_cache_path(const struct spam_engine *e, const struct rgroup *g)
{
	uint64_t h = fnv1a(1469598103934665603ull, hs_version(), strlen(hs_version()));
	h = fnv1a(h, HS_MAGIC, 8); /* the file's format */
	/* how patterns Hyperscan refuses whole are prefiltered (hs_fallback) */
	static const char fallback[] =
		"prefix-fallback-1 relax-8-3 starts-3 body-multi-3 relaxed-in-db split-2 body-ascii-3";
	h = fnv1a(h, fallback, sizeof(fallback));
	/* the size limit decides which rules a database holds */
	uint32_t limit = HS_MAX_RULE_DB;
	h = fnv1a(h, &limit, sizeof(limit));
	for (size_t i = 0; i < g->n; i++) {
		const struct rule *r = &e->rules[g->rules[i]];
		unsigned f = hs_flags_for(r) | (hs_candidate(r) ? 0x80000000u : 0);
		char *p = hs_pattern(r); /* what is compiled: a prefix changes the name */
		h = fnv1a(h, p, strlen(p) + 1);
		free(p);
		h = fnv1a(h, &f, sizeof(f));
	}
	return xasprintf("%s/spam-%s-%016llx.hsdb", e->cache_dir, rtype_names[g->type],
			 (unsigned long long)h);
}

static char *hs_blob(const unsigned char *flags, size_t n, const hs_database_t *const dbs[HS_NDB],
		     size_t *len_r)
{
	char *bytes[HS_NDB] = {0};
	size_t blen[HS_NDB] = {0};
	for (int k = 0; k < HS_NDB; k++)
		if (dbs[k] && hs_serialize_database(dbs[k], &bytes[k], &blen[k]) != HS_SUCCESS) {
			for (int j = 0; j < k; j++)
				free(bytes[j]);
			return NULL;
		}
	size_t len = HS_HEAD + n + blen[DB_MAIN] + blen[DB_STARTS] + blen[DB_FULL] + HS_DIGEST;
	char *b = xmalloc(len);
	memcpy(b, HS_MAGIC, 8);
	uint32_t n32 = (uint32_t)n;
	memcpy(b + 8, &n32, 4);
	memcpy(b + 12, flags, n);
	for (int k = 0; k < HS_NDB - 1; k++) {
		uint64_t b64 = blen[k];
		memcpy(b + 12 + n + 8 * k, &b64, 8);
	}
	size_t at = HS_HEAD + n;
	for (int k = 0; k < HS_NDB; k++) {
		if (blen[k])
			memcpy(b + at, bytes[k], blen[k]);
		at += blen[k];
		free(bytes[k]);
	}
	SHA256((const unsigned char *)b, at, (unsigned char *)b + at);
	*len_r = len;
	return b;
}

static int hs_unblob(const char *b, size_t len, const struct spam_engine *e, const struct rgroup *g,
		     struct hsgroup *hg)
{
	uint32_t n32;
	unsigned char md[HS_DIGEST];
	if (len < 12 + HS_DIGEST || memcmp(b, HS_MAGIC, 8) != 0)
		return -1;
	len -= HS_DIGEST;
	SHA256((const unsigned char *)b, len, md);
	if (memcmp(md, b + len, HS_DIGEST) != 0)
		return -1;
	memcpy(&n32, b + 8, 4);
	if (n32 != g->n || len < HS_HEAD + (size_t)n32)
		return -1;
	size_t blen[HS_NDB], left = len - HS_HEAD - n32;
	for (int k = 0; k < HS_NDB - 1; k++) {
		uint64_t b64;
		memcpy(&b64, b + 12 + n32 + 8 * k, 8);
		if (b64 > left)
			return -1;
		blen[k] = (size_t)b64;
		left -= blen[k];
	}
	blen[HS_NDB - 1] = left;
	const unsigned char *fl = (const unsigned char *)b + 12;
	bool any[HS_NDB] = {false}, need[HS_NDB] = {false};
	for (size_t i = 0; i < g->n; i++) {
		unsigned f = fl[i];
		if ((f && f != HS_IN_DB && f != (HS_IN_DB | HS_RELAXED) && f != (HS_IN_DB | HS_ASCII) &&
		     f != HS_STARTS) ||
		    (f && !hs_candidate(&e->rules[g->rules[i]])))
			return -1;
		any[DB_MAIN] |= (f & HS_IN_DB) != 0;
		any[DB_STARTS] |= f == HS_STARTS;
		any[DB_FULL] |= (f & HS_ASCII) != 0;
		/* a rule's ASCII form may be nothing: then it is in the full
		 * database only */
		need[DB_MAIN] |= (f & HS_IN_DB) && !(f & HS_ASCII);
	}
	need[DB_STARTS] = any[DB_STARTS], need[DB_FULL] = any[DB_FULL];
	hs_database_t *dbs[HS_NDB] = {NULL};
	size_t at = HS_HEAD + n32;
	for (int k = 0; k < HS_NDB; k++) {
		if ((need[k] && !blen[k]) || (!any[k] && blen[k]) ||
		    (blen[k] && hs_deserialize_database(b + at, blen[k], &dbs[k]) != HS_SUCCESS)) {
			for (int j = 0; j < k; j++)
				if (dbs[j])
					hs_free_database(dbs[j]);
			return -1;
		}
		at += blen[k];
	}
	hg->db = dbs[DB_MAIN];
	hg->starts_db = dbs[DB_STARTS];
	hg->full_db = dbs[DB_FULL];
	hg->in_db = xcalloc(g->n, 1);
	memcpy(hg->in_db, fl, g->n);
	hg->loaded = true;
	return 0;
}

/* Files and directories of the cache are trusted only when they belong to
 * root or to the user running the daemon and nobody else may write them. */
static const char *untrusted(const struct stat *st)
{
	if (st->st_uid != 0 && st->st_uid != geteuid())
		return "owned by another user";
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return "writable by group or others";
	return NULL;
}

/* Checks (and creates) the cache directory: NULL = usable, else why not
 * (malloc'd). */
static char *hs_cache_dir_bad(const struct spam_engine *e, int *level)
{
	struct stat st;
	*level = LOG_WARNING;
	if (stat(e->cache_dir, &st) < 0 &&
	    (errno != ENOENT || mkdir(e->cache_dir, 0755) < 0 || stat(e->cache_dir, &st) < 0)) {
		if (errno == ENOENT)
			*level = LOG_NOTICE; /* not installed: nothing wrong */
		return xasprintf("spam_cache_directory %s: %s", e->cache_dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return xasprintf("spam_cache_directory %s: not a directory", e->cache_dir);
	const char *why = untrusted(&st);
	if (why)
		return xasprintf("spam_cache_directory %s: %s (uid %u, mode %04o)", e->cache_dir, why,
				 (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
	return NULL;
}

#define HS_MAX_BLOB (1024u * 1024 * 1024)

static int hs_cache_load(const struct spam_engine *e, const struct rgroup *g, struct hsgroup *hg)
{
	char *path = hs_cache_path(e, g);
	int rc = -1;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno != ENOENT)
			elog(e, LOG_WARNING, "Hyperscan cache %s: %s: ignored", path, strerror(errno));
		free(path);
		return -1;
	}
	struct stat st;
	const char *why = fstat(fd, &st) < 0	     ? strerror(errno)
			  : !S_ISREG(st.st_mode)     ? "not a regular file"
			  : st.st_size > HS_MAX_BLOB ? "too large"
						     : untrusted(&st);
	if (why) {
		elog(e, LOG_WARNING, "Hyperscan cache %s: %s (uid %u, mode %04o): ignored", path, why,
		     (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	/* mapped, not read: the database is copied once, into its own
	 * allocation, and the file's pages leave no hole in the heap */
	void *b = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	if (b != MAP_FAILED && hs_unblob(b, (size_t)st.st_size, e, g, hg) == 0) {
		rc = 0;
		/* in use: its modification time says so to hs_cache_sweep
		 * (another user's file stays as it is) */
		futimens(fd, NULL);
	} else
		elog(e, LOG_WARNING, "Hyperscan cache %s: unreadable or stale: compiled again", path);
	if (b != MAP_FAILED)
		munmap(b, (size_t)st.st_size);
out:
	close(fd);
	free(path);
	return rc;
}

/* Writes a temporary file that cannot be anything we did not create (mkstemp:
 * O_CREAT|O_EXCL, which never follows a symlink), then renames it. */
static int hs_cache_store(const struct spam_engine *e, const struct rgroup *g, const char *b, size_t len)
{
	char *path = hs_cache_path(e, g);
	char *tmp = xasprintf("%s/.spam-%s.XXXXXX", e->cache_dir, rtype_names[g->type]);
	int rc = -1;
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		if (!e->cache_errors) /* once: the others fail alike */
			elog(e, LOG_WARNING, "Hyperscan cache %s: %s: databases not cached", tmp,
			     strerror(errno));
		goto out;
	}
	size_t off = 0;
	while (off < len) {
		ssize_t k = write(fd, b + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		off += (size_t)k;
	}
	if (off != len || fchmod(fd, 0644) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		if (!e->cache_errors)
			elog(e, LOG_WARNING, "Hyperscan cache %s: cannot write: %s", path, strerror(errno));
		if (off != len)
			close(fd);
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(tmp);
	free(path);
	return rc;
}

/* A cache file unused this long is removed: its rules changed (each
 * sa-update names new files) or its format did. Loads and compiles touch
 * the files they read and write. */
#define HS_CACHE_UNUSED_DAYS 30

/* Removes the cache directory's database files and leftover temporary
 * files that are not this ruleset's, belong to this user and have not
 * been used for HS_CACHE_UNUSED_DAYS (another filterd's with another
 * ruleset are kept while it starts or reloads within that time). */
static void hs_cache_sweep(const struct spam_engine *e)
{
	if (!e->cache_dir)
		return;
	char **keep = xcalloc(e->ngroups + 1, sizeof(char *));
	size_t nkeep = 0;
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		if (hs_ncandidates(e, &e->groups[gi]) < 2)
			continue;
		char *p = hs_cache_path(e, &e->groups[gi]);
		keep[nkeep++] = xstrdup(strrchr(p, '/') + 1);
		free(p);
	}
	DIR *d = opendir(e->cache_dir);
	unsigned removed = 0;
	time_t now = time(NULL);
	for (struct dirent *de; d && (de = readdir(d));) {
		const char *name = de->d_name;
		size_t len = strlen(name);
		if (!(strncmp(name, "spam-", 5) == 0 && len > 10 && strcmp(name + len - 5, ".hsdb") == 0) &&
		    strncmp(name, ".spam-", 6) != 0)
			continue;
		bool current = false;
		for (size_t k = 0; k < nkeep && !current; k++)
			current = strcmp(keep[k], name) == 0;
		struct stat st;
		if (current || fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
		    now - st.st_mtime < (time_t)HS_CACHE_UNUSED_DAYS * 86400)
			continue;
		if (unlinkat(dirfd(d), name, 0) == 0)
			removed++;
	}
	if (d)
		closedir(d);
	for (size_t k = 0; k < nkeep; k++)
		free(keep[k]);
	free(keep);
	if (removed)
		elog(e, LOG_INFO, "Hyperscan cache %s: %u file(s) unused for %d days removed", e->cache_dir,
		     removed, HS_CACHE_UNUSED_DAYS);
}

hs_scratch_t *pool_get(struct scratch_pool *p)
{
	hs_scratch_t *s = NULL;
	if (!p->proto)
		return NULL;
	pthread_mutex_lock(&p->lock);
	if (p->nfree)
		s = p->free[--p->nfree];
	pthread_mutex_unlock(&p->lock);
	if (!s && hs_clone_scratch(p->proto, &s) != HS_SUCCESS)
		s = NULL;
	return s;
}

void pool_put(struct scratch_pool *p, hs_scratch_t *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->nfree == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 8;
		p->free = xrealloc(p->free, p->cap * sizeof(hs_scratch_t *));
	}
	p->free[p->nfree++] = s;
	pthread_mutex_unlock(&p->lock);
}

void pool_free(struct scratch_pool *p)
{
	for (size_t i = 0; i < p->nfree; i++)
		hs_free_scratch(p->free[i]);
	free(p->free);
	if (p->proto)
		hs_free_scratch(p->proto);
	pthread_mutex_destroy(&p->lock);
}

void hsmatch_free(const struct spam_engine *e, struct hsmatch *hm)
{
	if (!hm)
		return;
	for (size_t i = 0; i < e->ngroups; i++) {
		if (hm->g[i].db)
			hs_free_database(hm->g[i].db);
		if (hm->g[i].starts_db)
			hs_free_database(hm->g[i].starts_db);
		if (hm->g[i].full_db)
			hs_free_database(hm->g[i].full_db);
		free(hm->g[i].in_db);
		free(hm->g[i].pcre_only);
		free(hm->g[i].starts);
	}
	free(hm->g);
	pool_free(&hm->pool);
	free(hm);
}

/* Completes a matcher whose groups are all loaded: PCRE2 lists, scratch. */
static int hsmatch_finish(const struct spam_engine *e, struct hsmatch *hm)
{
	if (e->pool.proto && hs_clone_scratch(e->pool.proto, &hm->pool.proto) != HS_SUCCESS)
		return -1;
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		struct hsgroup *hg = &hm->g[gi];
		if (!hg->in_db)
			hg->in_db = xcalloc(g->n, 1);
		hg->pcre_only = xcalloc(g->n + 1, sizeof(int));
		hg->starts = xcalloc(g->n + 1, sizeof(unsigned));
		for (size_t i = 0; i < g->n; i++) {
			if (!e->rules[g->rules[i]].re)
				continue;
			if (hsgroup_db_of(hg, hg->in_db[i])) {
				hm->nhs++;
				hm->nrelaxed += (hg->in_db[i] & HS_RELAXED) != 0;
				hm->nascii += (hg->in_db[i] & HS_ASCII) != 0;
				if (hg->in_db[i] == HS_STARTS)
					hg->starts[hg->nstarts++] = (unsigned)i;
			} else {
				hg->pcre_only[hg->npcre++] = g->rules[i];
				hm->npcre++;
				hm->nnative += e->rules[g->rules[i]].npf != NULL;
			}
		}
		hm->nstarts += (unsigned)hg->nstarts;
		if (hg->db && hs_alloc_scratch(hg->db, &hm->pool.proto) != HS_SUCCESS)
			return -1;
		if (hg->starts_db && hs_alloc_scratch(hg->starts_db, &hm->pool.proto) != HS_SUCCESS)
			return -1;
		if (hg->full_db && hs_alloc_scratch(hg->full_db, &hm->pool.proto) != HS_SUCCESS)
			return -1;
	}
	return 0;
}

/* The compiler, in a child process: one record per group it was asked for
 * (group index and length, 4 + 8 octets, then the blob), then a final
 * record with index UINT32_MAX. */
static bool write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		c += k;
		n -= (size_t)k;
	}
	return true;
}

/* Reads n octets of the compiler's pipe: false at its end, on an error, and
 * once deadline (now_ms(); 0 = none) has passed, then with *late set. */
static bool read_by(int fd, void *p, size_t n, long long deadline, bool *late)
{
	char *c = p;
	while (n) {
		if (deadline) {
			long long left = deadline - now_ms();
			struct pollfd pfd = {.fd = fd, .events = POLLIN};
			int r = left > 0 ? poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) : 0;
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0) {
				*late = true;
				return false;
			}
			if (r < 0)
				return false;
		}
		ssize_t k = read(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		c += k;
		n -= (size_t)k;
	}
	return true;
}

static bool hs_too_large(const char *p, unsigned flags)
{
	if (strlen(p) < HS_SIZE_PATTERN)
		return false;
	hs_database_t *db = NULL;
	hs_compile_error_t *ce = NULL;
	size_t size = 0;
	if (hs_compile(p, flags, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
		hs_free_compile_error(ce);
		return false; /* hs_build names it */
	}
	hs_database_size(db, &size);
	hs_free_database(db);
	return size > HS_MAX_RULE_DB;
}

/* Hyperscan takes p (as a prefilter, within the size limit). */
static bool hs_takes(const char *p, unsigned flags)
{
	hs_expr_info_t *info = NULL;
	hs_compile_error_t *ce = NULL;
	bool ok = hs_expression_info(p, flags, &info, &ce) == HS_SUCCESS && !hs_too_large(p, flags);
	free(info);
	if (ce)
		hs_free_compile_error(ce);
	return ok;
}

/* The longest top-level prefix of r's regex that Hyperscan takes, when it
 * refuses the whole (too large, too long, an end anchor inside): a
 * prefilter still, PCRE2 confirming with the whole regex (prefix.c). NULL
 * when there is none. */
static char *hs_fallback(const struct rule *r)
{
	size_t cuts[PREFIX_MAX_FALLBACK];
	if (r->flags && strchr(r->flags, 'x'))
		return NULL;
	int n = prefilter_cuts(r->pattern, r->flags, cuts, PREFIX_MAX_FALLBACK);
	size_t len = strlen(r->pattern);
	for (int k = n - 1; k >= 0; k--) {
		if (cuts[k] >= len)
			continue;
		char *p = xstrndup(r->pattern, cuts[k]);
		if (hs_takes(p, hs_flags_for(r)))
			return p;
		free(p);
	}
	return NULL;
}

/* Hyperscan compiles p exactly with these flags, within the size limit. */
static bool hs_exact_takes(const char *p, unsigned flags)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *ce = NULL;
	size_t size = 0;
	if (hs_compile(p, flags, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
		hs_free_compile_error(ce);
		return false;
	}
	hs_database_size(db, &size);
	hs_free_database(db);
	return size <= HS_MAX_RULE_DB;
}

/* A long regex that Hyperscan takes only as a loose prefilter (or not at
 * all) may fit an exact database with its large repeats made unbounded
 * (prefix.c): the relaxed pattern, to compile in exact mode, or NULL. Not
 * for the regexes prefilterd by a prefix (prefilter_prefix), which are
 * the ones Hyperscan scans slowly. */
static char *hs_relaxed(const struct rule *r)
{
	if (strlen(r->pattern) < LONG_REGEX || prefilter_prefix(r->pattern, r->flags))
		return NULL;
	static const unsigned counts[] = {RELAX_COUNT_1, RELAX_COUNT_2};
	unsigned flags = hs_flags_for(r) & ~HS_FLAG_PREFILTER;
	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		char *p = prefilter_relax(r->pattern, r->flags, counts[k]);
		if (!p)
			return NULL;
		if (hs_exact_takes(p, flags))
			return p;
		free(p);
	}
	return NULL;
}

/* Hyperscan takes every line of parts (prefilter_split). */
static bool hs_parts_take(char *parts, unsigned flags)
{
	bool ok = true;
	for (char *p = parts; ok && p;) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = 0;
		ok = hs_takes(p, flags);
		if (nl)
			*nl = '\n';
		p = nl ? nl + 1 : NULL;
	}
	return ok;
}

/* The expression r gets in its group's database, to free, and whether it
 * is compiled exactly (*exact: a relaxed pattern) or as a prefilter; NULL
 * when Hyperscan takes none. The one choice for the compiler and for
 * `spam check --profile-patterns`. */
static char *hs_choose(const struct rule *r, bool *exact)
{
	*exact = false;
	char *p = hs_relaxed(r);
	if (p) {
		*exact = true;
		return p;
	}
	p = hs_pattern(r);
	if (hs_takes(p, hs_flags_for(r)))
		return p;
	char *parts = prefilter_split(p, r->flags);
	free(p);
	if (parts && hs_parts_take(parts, hs_flags_for(r)))
		return parts;
	free(parts);
	return hs_fallback(r);
}

static unsigned hs_starts_flags(const struct rule *r)
{
	return hs_flags_for(r) & ~(HS_FLAG_PREFILTER | HS_FLAG_SINGLEMATCH);
}

/* A regex too large for PCRE2 as written (r->pcre_pat: the form rules,
 * 3 KB groups repeated 3 or 5 times) costs PCRE2 some 120 ns at every
 * offset of every line it is a candidate on, and no relaxed form of it
 * fits a Hyperscan database strict enough to make it a rare candidate.
 * Its reverse (relaxed first, so that it fits), scanned backwards over the
 * line, gives the offsets where a match may start (prefix.c); PCRE2 then
 * tries those only, anchored. The pattern for the starts database, or
 * NULL. */
static char *hs_starts(const struct rule *r)
{
	if (!r->pcre_pat || r->utf || prefilter_prefix(r->pattern, r->flags))
		return NULL;
	char *rel = prefilter_relax(r->pattern, r->flags, RELAX_COUNT_2);
	char *rev = prefilter_reverse(rel ? rel : r->pattern, r->flags);
	free(rel);
	if (rev && !hs_exact_takes(rev, hs_starts_flags(r))) {
		free(rev);
		rev = NULL;
	}
	return rev;
}

/* The starts database of the rules with a pattern in spat[]; NULL if none
 * (or Hyperscan refuses them together: then no rule has one). */
static hs_database_t *hs_build_starts(const struct spam_engine *e, const struct rgroup *g, char *const *spat)
{
	const char **pats = xcalloc(g->n, sizeof(char *));
	unsigned *flags = xcalloc(g->n, sizeof(unsigned)), *ids = xcalloc(g->n, sizeof(unsigned));
	unsigned m = 0;
	for (size_t i = 0; i < g->n; i++)
		if (spat[i]) {
			pats[m] = spat[i];
			flags[m] = hs_starts_flags(&e->rules[g->rules[i]]);
			ids[m++] = (unsigned)i;
		}
	hs_database_t *db = NULL;
	hs_compile_error_t *ce = NULL;
	if (m && hs_compile_multi(pats, flags, ids, m, HS_MODE_BLOCK, NULL, &db, &ce) != HS_SUCCESS) {
		hs_free_compile_error(ce);
		db = NULL;
	}
	free(pats);
	free(flags);
	free(ids);
	return db;
}

/* The form of a prefilter (its pieces, one a line) for the lines of
 * ASCII text (prefilter_ascii), when it differs and Hyperscan takes it:
 * "" when no piece can match such a line, NULL to use pat as it is. */
static char *hs_ascii_form(const char *pat, const struct rule *r)
{
	/* in UTF-8 mode a caseless letter above 0x7f may match an ASCII one
	 * (U+212A KELVIN SIGN and "k") */
	if (r->utf)
		return NULL;
	struct sbuf o = {0};
	bool changed = false, any = false;
	char *all = xstrdup(pat);
	for (char *one = all, *nl; one; one = nl ? nl + 1 : NULL) {
		if ((nl = strchr(one, '\n')))
			*nl = 0;
		char *a = prefilter_ascii(one, r->flags);
		changed |= a != NULL;
		if (!a || *a) {
			if (any)
				sb_adds(&o, "\n");
			sb_adds(&o, a ? a : one);
			any = true;
		}
		free(a);
	}
	free(all);
	if (!changed || (any && !hs_parts_take((char *)sb_str(&o), hs_flags_for(r)))) {
		free(o.d);
		return NULL;
	}
	if (!any)
		return xstrdup("");
	return (char *)sb_str(&o);
}

/* The ASCII form of r's prefilter, chosen as pat: from pat itself, else,
 * when Hyperscan took only a prefix of the prefilter (hs_fallback), from
 * the whole of it, which it may take in that form (the full database has
 * the prefix). As hs_ascii_form. */
static char *hs_ascii_choose(const struct rule *r, const char *pat)
{
	char *a = hs_ascii_form(pat, r);
	if (a || r->utf)
		return a;
	char *whole = hs_pattern(r);
	if (strcmp(whole, pat) != 0 && (a = prefilter_ascii(whole, r->flags)) && *a &&
	    !hs_takes(a, hs_flags_for(r))) {
		char *parts = prefilter_split(a, r->flags);
		free(a);
		a = parts && hs_parts_take(parts, hs_flags_for(r)) ? parts : NULL;
		if (!a)
			free(parts);
	}
	free(whole);
	return a;
}

/* One group's databases, compiled and serialized as hs_blob() writes them;
 * NULL when the blob cannot be made. */
static char *hs_compile_group(const struct spam_engine *e, const struct rgroup *g, size_t *len)
{
	/* Start offsets for the long rules that no prefilter makes rare
	 * candidates. A text whose reverse the starts database scans without
	 * reporting a rule has no offset where a match of it may start, so
	 * these rules are in no other database: scanned forwards too, the
	 * four form rules of the stock ruleset cost more than the reversed
	 * scan of every line. */
	char **spat = xcalloc(g->n, sizeof(char *));
	for (size_t i = 0; i < g->n; i++)
		if (hs_candidate(&e->rules[g->rules[i]]))
			spat[i] = hs_starts(&e->rules[g->rules[i]]);
	hs_database_t *dbs[HS_NDB] = {NULL};
	dbs[DB_STARTS] = hs_build_starts(e, g, spat);
	/* the forward prefilters of the others */
	bool *ok = xcalloc(g->n, sizeof(bool)), *exact = xcalloc(g->n, sizeof(bool));
	char **pat = xcalloc(g->n, sizeof(char *));
	for (size_t i = 0; i < g->n; i++) {
		const struct rule *r = &e->rules[g->rules[i]];
		if (hs_candidate(r) && !(spat[i] && dbs[DB_STARTS]))
			ok[i] = (pat[i] = hs_choose(r, &exact[i])) != NULL;
	}
	/* The body's prefilters as they are for the lines of ASCII text
	 * (most lines of most mail): without the look-alike letters in
	 * UTF-8 and the character references, which only automata without
	 * a literal to start from could find; the whole prefilters of those
	 * rules in the full database, for the other lines. */
	char **apat = xcalloc(g->n, sizeof(char *));
	if (g->type == R_BODY)
		for (size_t i = 0; i < g->n; i++)
			if (ok[i] && !exact[i]) /* a relaxed pattern is rare already */
				apat[i] = hs_ascii_choose(&e->rules[g->rules[i]], pat[i]);
	bool *okf = xcalloc(g->n, sizeof(bool)), *okm = xcalloc(g->n, sizeof(bool));
	char **pmain = xcalloc(g->n, sizeof(char *));
	for (size_t i = 0; i < g->n; i++)
		pmain[i] = apat[i] ? apat[i] : pat[i];
	for (;;) { /* until neither database leaves out a rule the other holds */
		for (size_t i = 0; i < g->n; i++) {
			okf[i] = ok[i] && apat[i];
			okm[i] = ok[i] && !(apat[i] && !*apat[i]); /* "": only in the full one */
		}
		dbs[DB_FULL] = hs_build(e, g, okf, pat, NULL, true);
		dbs[DB_MAIN] = hs_build(e, g, okm, pmain, exact, g->type == R_BODY);
		bool again = false;
		for (size_t i = 0; i < g->n; i++) {
			if (!ok[i] || (okm[i] && (okf[i] || !apat[i])) ||
			    (!okm[i] && apat[i] && !*apat[i] && okf[i]))
				continue;
			ok[i] = false; /* refused by one: PCRE2 alone */
			again |= apat[i] != NULL;
		}
		if (!again)
			break;
		for (int k = 0; k < HS_NDB; k++)
			if (dbs[k] && k != DB_STARTS) {
				hs_free_database(dbs[k]);
				dbs[k] = NULL;
			}
	}
	free(okf);
	free(okm);
	free(pmain);
	unsigned char *fl = xcalloc(g->n, 1);
	for (size_t i = 0; i < g->n; i++) {
		fl[i] = dbs[DB_STARTS] && spat[i] ? HS_STARTS
			: !ok[i]		  ? 0
			: exact[i]		  ? HS_IN_DB | HS_RELAXED
						  : HS_IN_DB;
		if (fl[i] == HS_IN_DB && apat[i])
			fl[i] |= HS_ASCII;
		free(pat[i]);
		free(spat[i]);
		free(apat[i]);
	}
	free(pat);
	free(apat);
	free(spat);
	*len = 0;
	char *b = hs_blob(fl, g->n, (const hs_database_t *const *)dbs, len);
	free(exact);
	free(fl);
	free(ok);
	for (int k = 0; k < HS_NDB; k++)
		if (dbs[k])
			hs_free_database(dbs[k]);
	return b;
}

/* The compiler's groups shared by its threads: each takes the next group of
 * order[], compiles it and writes its record to fd under the lock. */
struct hs_jobs {
	const struct spam_engine *e;
	size_t *order, n, next;
	int fd;
	bool failed;
	pthread_mutex_t lock;
};

static void *hs_compile_worker(void *arg)
{
	struct hs_jobs *j = arg;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		size_t k = j->failed ? j->n : j->next++;
		pthread_mutex_unlock(&j->lock);
		if (k >= j->n)
			break;
		size_t len = 0;
		char *b = hs_compile_group(j->e, &j->e->groups[j->order[k]], &len);
		uint32_t gi32 = (uint32_t)j->order[k];
		uint64_t len64 = len;
		pthread_mutex_lock(&j->lock);
		if (!b || j->failed || !write_all(j->fd, &gi32, 4) || !write_all(j->fd, &len64, 8) ||
		    !write_all(j->fd, b, len))
			j->failed = true;
		pthread_mutex_unlock(&j->lock);
		free(b);
	}
	return NULL;
}

/* The largest groups first, so that the longest compile (the body rules')
 * starts at once and the others share the remaining threads. */
static int hs_order_cmp(const void *a, const void *b, void *arg)
{
	const struct spam_engine *e = arg;
	size_t na = e->groups[*(const size_t *)a].n, nb = e->groups[*(const size_t *)b].n;
	return na < nb ? 1 : na > nb ? -1 : 0;
}

static void hs_compile_child(const struct spam_engine *e, const bool *need, int fd)
{
	struct hs_jobs j = {.e = e, .fd = fd};
	pthread_mutex_init(&j.lock, NULL);
	j.order = xcalloc(e->ngroups + 1, sizeof(size_t));
	for (size_t gi = 0; gi < e->ngroups; gi++)
		if (need[gi])
			j.order[j.n++] = gi;
	qsort_r(j.order, j.n, sizeof(size_t), hs_order_cmp, (void *)e);
	size_t nthreads = e->bg_jobs > 0 ? (size_t)e->bg_jobs : 1;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu > 0 && nthreads > (size_t)ncpu)
		nthreads = (size_t)ncpu;
	if (nthreads > j.n)
		nthreads = j.n;
	pthread_t *th = xcalloc(nthreads + 1, sizeof(pthread_t));
	size_t started = 0;
	for (size_t t = 1; t < nthreads; t++)
		if (pthread_create(&th[started], NULL, hs_compile_worker, &j) == 0)
			started++;
	hs_compile_worker(&j); /* this thread is one of them */
	for (size_t t = 0; t < started; t++)
		pthread_join(th[t], NULL);
	free(th);
	free(j.order);
	if (j.failed)
		_exit(1);
	uint32_t end = UINT32_MAX;
	uint64_t zero = 0;
	_exit(write_all(fd, &end, 4) && write_all(fd, &zero, 8) ? 0 : 1);
}

enum { BG_NONE, BG_RUNNING, BG_DONE, BG_FAILED };

static void bg_finish(struct spam_engine *e, int state, char *err)
{
	pthread_mutex_lock(&e->bg_lock);
	e->bg_state = state;
	free(e->bg_err);
	e->bg_err = err;
	pthread_cond_broadcast(&e->bg_cond);
	pthread_mutex_unlock(&e->bg_lock);
}

static void *bg_main(void *arg)
{
	struct spam_engine *e = arg;
	struct hsmatch *hm = e->bg_match;
	bool complete = false, late = false;
	char *err = NULL;
	long long deadline = e->bg_timeout_ms ? e->bg_start + e->bg_timeout_ms : 0;
	for (;;) {
		uint32_t gi;
		uint64_t len;
		if (!read_by(e->bg_fd, &gi, 4, deadline, &late) ||
		    !read_by(e->bg_fd, &len, 8, deadline, &late))
			break;
		if (gi == UINT32_MAX) {
			complete = true;
			break;
		}
		if (gi >= e->ngroups || hm->g[gi].loaded || len > HS_MAX_BLOB) {
			err = xstrdup("bad record from the compiler");
			break;
		}
		char *b = xmalloc(len ? (size_t)len : 1);
		if (!read_by(e->bg_fd, b, (size_t)len, deadline, &late)) {
			free(b);
			break;
		}
		const struct rgroup *g = &e->groups[gi];
		if (hs_unblob(b, (size_t)len, e, g, &hm->g[gi]) < 0) {
			free(b);
			err = xstrdup("bad database from the compiler");
			break;
		}
		if (e->cache_dir && hs_cache_store(e, g, b, (size_t)len) < 0)
			e->cache_errors++;
		free(b);
	}
	if (late && !err)
		err = xasprintf("the compiler did not finish within spam_compile_timeout (%lld s)",
				e->bg_timeout_ms / 1000);
	close(e->bg_fd);
	e->bg_fd = -1;
	pthread_mutex_lock(&e->bg_lock);
	pid_t pid = e->bg_child;
	e->bg_child = 0;
	bool cancelled = e->bg_cancel;
	pthread_mutex_unlock(&e->bg_lock);
	int st = 0;
	if (pid > 0) {
		if (!complete)
			kill(pid, SIGKILL);
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	if (cancelled) {
		free(err);
		bg_finish(e, BG_FAILED, xstrdup("stopped"));
		return NULL;
	}
	for (size_t gi = 0; complete && gi < e->ngroups; gi++)
		if (!hm->g[gi].loaded && e->bg_need[gi])
			complete = false;
	if (!complete || hsmatch_finish(e, hm) < 0) {
		if (!err)
			err = WIFSIGNALED(st) ? xasprintf("the compiler died of signal %d", WTERMSIG(st))
					      : xstrdup("the compiler failed");
		elog(e, LOG_WARNING, "Hyperscan: %s; matching stays on PCRE2-JIT", err);
		bg_finish(e, BG_FAILED, err);
		return NULL;
	}
	e->bg_match = NULL;
	atomic_store_explicit(&e->hs, hm, memory_order_release);
	elog(e, LOG_INFO,
	     "Hyperscan databases compiled in %lld ms, now in use: %u regexes in Hyperscan, %u PCRE2 only",
	     now_ms() - e->bg_start, hm->nhs, hm->npcre);
	hs_cache_sweep(e);
	free(err);
	bg_finish(e, BG_DONE, NULL);
	return NULL;
}

/* Loads what the cache has; starts the compiler for the rest. */
void hs_start(struct spam_engine *e)
{
	struct hsmatch *hm = xcalloc(1, sizeof(*hm));
	pthread_mutex_init(&hm->pool.lock, NULL);
	hm->g = xcalloc(e->ngroups + 1, sizeof(*hm->g));
	e->bg_need = xcalloc(e->ngroups + 1, sizeof(bool));
	int level;
	char *bad = e->cache_dir ? hs_cache_dir_bad(e, &level) : NULL;
	if (bad) {
		elog(e, level, "%s: not used, Hyperscan databases are not cached", bad);
		e->cache_why = bad;
		free(e->cache_dir);
		e->cache_dir = NULL;
	}
	size_t missing = 0;
	for (size_t gi = 0; gi < e->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		if (hs_ncandidates(e, g) < 2)
			continue; /* PCRE2 alone is as fast */
		if (e->cache_dir && hs_cache_load(e, g, &hm->g[gi]) == 0)
			continue;
		e->bg_need[gi] = true;
		missing++;
	}
	e->bg_start = now_ms();
	if (!missing) {
		if (hsmatch_finish(e, hm) < 0) {
			hsmatch_free(e, hm);
			e->bg_state = BG_FAILED;
			e->bg_err = xstrdup("cannot allocate Hyperscan scratch space");
			return;
		}
		atomic_store_explicit(&e->hs, hm, memory_order_release);
		e->bg_state = BG_DONE;
		e->from_cache = true;
		hs_cache_sweep(e);
		return;
	}
	e->bg_match = hm;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		e->bg_state = BG_FAILED;
		e->bg_err = xasprintf("pipe: %s", strerror(errno));
		return;
	}
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		e->bg_state = BG_FAILED;
		e->bg_err = xasprintf("fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return;
	}
	if (pid == 0) {
		close(fds[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		hs_compile_child(e, e->bg_need, fds[1]);
	}
	close(fds[1]);
	e->bg_child = pid;
	e->bg_fd = fds[0];
	e->bg_state = BG_RUNNING;
	if (pthread_create(&e->bg_thread, NULL, bg_main, e) != 0) {
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		close(fds[0]);
		e->bg_child = 0;
		e->bg_state = BG_FAILED;
		e->bg_err = xstrdup("cannot start a thread");
		return;
	}
	e->bg_thread_started = true;
	elog(e, LOG_INFO,
	     "Hyperscan: compiling %zu rule group(s) in the background (pid %d); PCRE2-JIT until then",
	     missing, (int)pid);
}

/* Stops a running compile (kills the child) and waits for the thread. */
void hs_stop(struct spam_engine *e)
{
	if (!e->bg_thread_started)
		return;
	pthread_mutex_lock(&e->bg_lock);
	e->bg_cancel = e->bg_state == BG_RUNNING;
	if (e->bg_child > 0)
		kill(e->bg_child, SIGKILL);
	pthread_mutex_unlock(&e->bg_lock);
	pthread_join(e->bg_thread, NULL);
	e->bg_thread_started = false;
}

/* The exact databases of the base matcher: patterns PCRE2 cannot compile. */
void build_exact(struct spam_engine *e, struct rgroup *g)
{
	bool *ok = xcalloc(g->n, sizeof(bool));
	bool any = false;
	for (size_t i = 0; i < g->n; i++)
		any |= ok[i] = e->rules[g->rules[i]].hs_exact;
	if (any)
		g->exact_db = hs_build(e, g, ok, NULL, NULL, false);
	for (size_t i = 0; i < g->n; i++)
		if (e->rules[g->rules[i]].hs_exact && !ok[i])
			e->rules[g->rules[i]].hs_exact = false; /* reported below */
	free(ok);
}
#endif

int spam_engine_hs_wait(const struct spam_engine *ce, char **err_r)
{
#ifdef SPAM_HAVE_HS
	struct spam_engine *e = (struct spam_engine *)ce;
	if (!e->use_hs) {
		*err_r = xstrdup("spam_hyperscan = no: nothing to compile");
		return -1;
	}
	if (!e->cache_dir) {
		*err_r = e->cache_why ? xasprintf("%s: not usable", e->cache_why)
				      : xstrdup("spam_cache_directory is empty: nothing to cache into");
		return -1;
	}
	pthread_mutex_lock(&e->bg_lock);
	while (e->bg_state == BG_RUNNING)
		pthread_cond_wait(&e->bg_cond, &e->bg_lock);
	int state = e->bg_state;
	*err_r = e->bg_err ? xstrdup(e->bg_err) : NULL;
	pthread_mutex_unlock(&e->bg_lock);
	if (state != BG_DONE)
		return -1;
	free(*err_r);
	*err_r = NULL;
	if (e->cache_errors) {
		*err_r =
			xasprintf("%u database(s) could not be written to %s", e->cache_errors, e->cache_dir);
		return -1;
	}
	return e->from_cache ? 1 : 0;
#else
	*err_r = xstrdup("built without Hyperscan");
	return -1;
#endif
}

#ifdef SPAM_HAVE_HS
/* Counts the matches: they are reported as in a real scan. */
static int prof_cb(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
	(*(unsigned long *)ctx)++;
	return 0;
}

/* ms to scan the texts t with db (one scratch for all): the least of
 * three scans, so that a scan the scheduler interrupts does not rank a
 * cheap pattern above a costly one. */
static double prof_scan(const hs_database_t *db, const struct prof_texts *t, hs_scratch_t **scratch)
{
	if (hs_alloc_scratch(db, scratch) != HS_SUCCESS)
		return -1;
	unsigned long matches = 0;
	double best = -1;
	for (int k = 0; k < 3; k++) {
		double t0 = prof_now();
		for (size_t i = 0; i < t->n; i++)
			hs_scan(db, t->s[i], t->len[i], 0, *scratch, prof_cb, &matches);
		double ms = prof_now() - t0;
		if (best < 0 || ms < best)
			best = ms;
	}
	return best;
}

struct pcost {
	double ms;
	int ri;
};

static int pcost_cmp(const void *a, const void *b)
{
	double x = ((const struct pcost *)a)->ms, y = ((const struct pcost *)b)->ms;
	return x < y ? 1 : x > y ? -1 : 0;
}
#endif

void spam_profile_patterns(const struct spam_engine *e, const struct spam_profile *p, FILE *out, int top)
{
#ifdef SPAM_HAVE_HS
	const struct hsmatch *hm = atomic_load(&((struct spam_engine *)e)->hs);
	if (!hm || !p->gtexts) {
		fprintf(out, "Hyperscan patterns: no Hyperscan databases loaded (spam compile first)\n");
		return;
	}
	double n = p->messages ? p->messages : 1, whole = 0, sum = 0;
	struct pcost *c = xcalloc(e->nrules + 1, sizeof(*c));
	size_t nc = 0, failed = 0;
	hs_scratch_t *scratch = NULL;
	/* what a scan costs whatever the pattern: one that finds nothing */
	hs_database_t *fdb = NULL;
	hs_compile_error_t *fce = NULL;
	if (hs_compile("\\x00\\x01\\x02", 0, HS_MODE_BLOCK, NULL, &fdb, &fce) != HS_SUCCESS) {
		if (fce)
			hs_free_compile_error(fce);
		fdb = NULL;
	}
	for (size_t gi = 0; gi < e->ngroups && gi < p->ngroups; gi++) {
		const struct rgroup *g = &e->groups[gi];
		const struct hsgroup *hg = &hm->g[gi];
		const struct prof_texts *t = &p->gtexts[gi];
		if (!hg->db || !t->n)
			continue;
		double w = prof_scan(hg->db, t, &scratch);
		whole += w > 0 ? w : 0;
		double floor = fdb ? prof_scan(fdb, t, &scratch) : 0;
		for (size_t k = 0; k < g->n; k++) {
			if (!(hg->in_db[k] & HS_IN_DB)) /* the starts database is not profiled */
				continue;
			const struct rule *r = &e->rules[g->rules[k]];
			bool exact;
			char *pat = hs_choose(r, &exact);
			if (pat && (hg->in_db[k] & HS_ASCII)) { /* what most lines are scanned with */
				char *a = hs_ascii_choose(r, pat);
				if (a && !*a) { /* nothing on ASCII lines */
					free(a);
					free(pat);
					continue;
				}
				if (a) {
					free(pat);
					pat = a;
				}
			}
			hs_database_t *db = NULL;
			hs_compile_error_t *ce = NULL;
			/* a prefilter in pieces: one expression a line */
			unsigned np = 0;
			for (const char *q = pat; q; q = strchr(q, '\n'), q = q ? q + 1 : NULL)
				np++;
			const char **one = xcalloc(np + 1, sizeof(char *));
			unsigned *fl = xcalloc(np + 1, sizeof(unsigned));
			np = 0;
			for (char *q = pat, *nl; q; q = nl ? nl + 1 : NULL) {
				if ((nl = strchr(q, '\n')))
					*nl = 0;
				one[np] = q;
				fl[np++] = hs_flags_for(r) & ~(exact ? HS_FLAG_PREFILTER : 0u);
			}
			bool ok = pat && hs_compile_multi(one, fl, NULL, np, HS_MODE_BLOCK, NULL, &db, &ce) ==
						 HS_SUCCESS;
			free(one);
			free(fl);
			free(pat);
			if (!ok) {
				if (ce)
					hs_free_compile_error(ce);
				failed++;
				continue;
			}
			double ms = prof_scan(db, t, &scratch);
			hs_free_database(db);
			if (ms < 0) {
				failed++;
				continue;
			}
			ms = ms > floor ? ms - floor : 0;
			c[nc++] = (struct pcost){ms, g->rules[k]};
			sum += ms;
		}
	}
	if (fdb)
		hs_free_database(fdb);
	hs_free_scratch(scratch);
	qsort(c, nc, sizeof(*c), pcost_cmp);
	double topsum = 0, sum100 = 0;
	for (size_t i = 0; i < nc && i < 100; i++) {
		topsum += (int)i < top ? c[i].ms : 0;
		sum100 += c[i].ms;
	}
	fputs("Hyperscan patterns, each alone over the texts its group scanned (less a scan's own cost): ",
	      out);
	fprintf(out, "%zu patterns, %.3f ms per message in all (the databases: %.3f); ", nc, sum / n,
		whole / n);
	fprintf(out, "the %d costliest %.0f%% of it, the 100 costliest %.0f%%\n",
		top < (int)nc ? top : (int)nc, sum > 0 ? 100 * topsum / sum : 0,
		sum > 0 ? 100 * sum100 / sum : 0);
	if (failed)
		fprintf(out, "(%zu patterns not compiled alone, left out)\n", failed);
	if (p->tcapped)
		fprintf(out, "(texts past %u MB left out: fewer messages give exact figures)\n",
			PROF_TEXTS_MAX >> 20);
	fprintf(out, "%9s  %-10s %s\n", "ms/msg", "kind", "rule");
	for (size_t i = 0; i < nc && (int)i < top; i++)
		fprintf(out, "%9.3f  %-10s %s\n", c[i].ms / n, rtype_names[e->rules[c[i].ri].type],
			e->rules[c[i].ri].name);
	free(c);
#else
	fprintf(out, "Hyperscan patterns: built without Hyperscan\n");
#endif
}
