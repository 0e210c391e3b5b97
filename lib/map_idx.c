/*
 * map_idx.c - read-only lookups in Postfix's indexed tables, as Postfix's
 * dict_db.c, dict_lmdb.c and dict_cdb.c do them:
 *
 *   hash:NAME, btree:NAME  Berkeley DB file NAME.db (DB_HASH, DB_BTREE)
 *   lmdb:NAME              LMDB file NAME.lmdb (no lock file: MDB_NOLOCK)
 *   cdb:NAME               tinycdb file NAME.cdb
 *
 * Keys are folded to lower case (postmap folds them when it builds the file,
 * unless -f). A file may hold each key and value with a trailing NUL byte
 * (postmap's default for hash, btree and lmdb on Linux, or -N) or without
 * (cdb's default, or -n): a lookup tries the key with the NUL first, then
 * without, and once one form was found the other is no longer tried on that
 * file, as Postfix does. The value is returned up to its first NUL.
 *
 * Locking, as Postfix: postmap rebuilds a .db or .lmdb file in place under an
 * exclusive flock(), and dict_lmdb updates under fcntl() locks; a lookup
 * holds a shared flock() (and, for lmdb, a shared open-file-description
 * fcntl lock, which conflicts with postmap's) while it reads, waiting at most
 * LOCK_WAIT_MS. A .cdb file is replaced by rename() and needs no lock.
 *
 * Reopening: every lookup stat()s the file (under the shared lock) and
 * reopens it when its device, inode, size, mtime or ctime changed, so that
 * `postmap` takes effect at the next lookup without a reload (one stat per
 * lookup, about a microsecond). While the file is missing or unreadable,
 * lookups fail (-1: the caller answers with a temporary failure), with one
 * log line per distinct error.
 *
 * Threads: one mutex per map serialises lookups (a Berkeley DB handle
 * opened without DB_THREAD, the lock file descriptor and the reopen need
 * it); a lookup takes a few microseconds.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cdb.h>
#include <db.h>
#include <lmdb.h>

#include "sift.h"
#include "map_idx.h"

#define LOCK_WAIT_MS	 10000	/* longest wait for postmap to finish */
#define DB_READ_CACHE	 131072 /* Postfix's berkeley_db_read_buffer_size */
#define SOURCE_GRACE_SEC 100	/* Postfix: no "older than source" warning for newer changes */

enum idx_kind { IDX_HASH, IDX_BTREE, IDX_LMDB, IDX_CDB };

static const struct {
	const char *type, *suffix, *what;
} kinds[] = {
	[IDX_HASH] = {"hash", ".db", "Berkeley DB hash"},
	[IDX_BTREE] = {"btree", ".db", "Berkeley DB btree"},
	[IDX_LMDB] = {"lmdb", ".lmdb", "LMDB"},
	[IDX_CDB] = {"cdb", ".cdb", "CDB"},
};

#define TRY1NULL 1 /* keys stored with a trailing NUL */
#define TRY0NULL 2 /* keys stored without */

struct map_idx {
	enum idx_kind kind;
	char *source; /* NAME as given after "type:" */
	char *file;   /* NAME + suffix */
	pthread_mutex_t mu;
	/* the open file, valid when fd >= 0 */
	int fd; /* locks; for cdb the mapped file */
	struct stat st;
	int try_flags;
	DB_ENV *env;
	DB *db;
	MDB_env *menv;
	MDB_dbi dbi;
	struct cdb cdb;
	char *last_err; /* the last error logged by a lookup */
};

/* ---- locks ------------------------------------------------------------------ */

static int lock_try(const struct map_idx *x, bool shared)
{
	if (x->kind == IDX_CDB)
		return 0;
	if (flock(x->fd, (shared ? LOCK_SH : LOCK_UN) | LOCK_NB) < 0)
		return -1;
	if (x->kind == IDX_LMDB) {
		struct flock fl = {.l_type = shared ? F_RDLCK : F_UNLCK, .l_whence = SEEK_SET};
		if (fcntl(x->fd, F_OFD_SETLK, &fl) < 0) {
			int e = errno;
			if (shared)
				(void)flock(x->fd, LOCK_UN);
			errno = e;
			return -1;
		}
	}
	return 0;
}

/* Takes the shared lock, waiting at most LOCK_WAIT_MS for a writer. */
static int lock_shared(const struct map_idx *x)
{
	long long until = sift_now_ms() + LOCK_WAIT_MS;
	for (;;) {
		if (lock_try(x, true) == 0)
			return 0;
		if ((errno != EWOULDBLOCK && errno != EAGAIN && errno != EACCES) || sift_now_ms() >= until)
			return -1;
		struct timespec ts = {0, 5 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

static void unlock(const struct map_idx *x)
{
	(void)lock_try(x, false);
}

/* ---- open and close ---------------------------------------------------------- */

static void handle_close(struct map_idx *x)
{
	if (x->db)
		x->db->close(x->db, 0);
	if (x->env)
		x->env->close(x->env, 0);
	x->db = NULL;
	x->env = NULL;
	if (x->menv)
		mdb_env_close(x->menv);
	x->menv = NULL;
	if (x->kind == IDX_CDB && x->fd >= 0)
		cdb_free(&x->cdb);
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

/* Berkeley DB's own error text for the open in progress (one per thread). */
static __thread char db_errtext[256];

static void db_errcall(const DB_ENV *env, const char *pfx, const char *msg)
{
	(void)env;
	(void)pfx;
	snprintf(db_errtext, sizeof(db_errtext), "%s", msg);
}

static char *bad_format(const struct map_idx *x, const char *detail)
{
	return sift_asprintf("cannot open %s: not a %s file (%s); rebuild it with \"postmap %s:%s\"", x->file,
			     kinds[x->kind].what, detail, kinds[x->kind].type, x->source);
}

static int open_db(struct map_idx *x, char **err_r)
{
	int rc;
	db_errtext[0] = 0;
	/* A private environment in the file's directory, as Postfix does (it
	 * keeps Berkeley DB from reading a DB_CONFIG in the current one). */
	char *dir = sift_strdup(x->file), *base = strrchr(dir, '/');
	const char *home = ".", *name = x->file;
	if (base) {
		*base = 0;
		home = base == dir ? "/" : dir;
		name = x->file + (base - dir) + 1;
	}
	if ((rc = db_env_create(&x->env, 0)) != 0) {
		*err_r = sift_asprintf("cannot open %s: %s", x->file, db_strerror(rc));
		free(dir);
		return -1;
	}
	x->env->set_errcall(x->env, db_errcall);
	(void)x->env->set_cachesize(x->env, 0, DB_READ_CACHE, 0);
	if ((rc = x->env->open(x->env, home, DB_INIT_MPOOL | DB_CREATE | DB_PRIVATE, 0)) != 0) {
		*err_r = sift_asprintf("cannot open %s: Berkeley DB environment: %s", x->file,
				       db_strerror(rc));
		free(dir);
		return -1;
	}
	if ((rc = db_create(&x->db, x->env, 0)) != 0) {
		*err_r = sift_asprintf("cannot open %s: %s", x->file, db_strerror(rc));
		free(dir);
		return -1;
	}
	rc = x->db->open(x->db, NULL, name, NULL, x->kind == IDX_HASH ? DB_HASH : DB_BTREE, DB_RDONLY, 0);
	free(dir);
	if (rc != 0) {
		if (rc == EINVAL || rc == DB_OLD_VERSION || rc == DB_VERSION_MISMATCH) {
			const char *why = strstr(db_errtext, "unexpected file type or format")
						  ? "unexpected file type or format"
						  : db_strerror(rc);
			*err_r = bad_format(x, why);
		} else {
			*err_r = sift_asprintf("cannot open %s: %s", x->file, db_strerror(rc));
		}
		return -1;
	}
	return 0;
}

static int open_lmdb(struct map_idx *x, char **err_r)
{
	int rc;
	MDB_txn *txn;
	if ((rc = mdb_env_create(&x->menv)) != 0 ||
	    (rc = mdb_env_open(x->menv, x->file, MDB_NOSUBDIR | MDB_NOLOCK | MDB_RDONLY, 0644)) != 0 ||
	    (rc = mdb_txn_begin(x->menv, NULL, MDB_RDONLY, &txn)) != 0) {
		if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED)
			*err_r = bad_format(x, mdb_strerror(rc));
		else
			*err_r = sift_asprintf("cannot open %s: %s", x->file, mdb_strerror(rc));
		return -1;
	}
	rc = mdb_dbi_open(txn, NULL, 0, &x->dbi);
	if (rc == 0)
		rc = mdb_txn_commit(txn); /* the handle outlives the transaction */
	else
		mdb_txn_abort(txn);
	if (rc != 0) {
		*err_r = bad_format(x, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

static int open_cdb(struct map_idx *x, char **err_r)
{
	if (cdb_init(&x->cdb, x->fd) != 0) {
		int e = errno;
		close(x->fd); /* cdb_free must not run on a failed cdb_init */
		x->fd = -1;
		*err_r = e == EPROTO ? bad_format(x, "too short or corrupt")
				     : sift_asprintf("cannot open %s: %s", x->file, strerror(e));
		return -1;
	}
	return 0;
}

/* Opens the file and leaves it locked (shared). */
static int handle_open(struct map_idx *x, char **err_r)
{
	x->fd = open(x->file, O_RDONLY | O_CLOEXEC);
	if (x->fd < 0) {
		int e = errno;
		struct stat st;
		if (e == ENOENT && stat(x->source, &st) == 0)
			*err_r = sift_asprintf("cannot open %s: %s (run \"postmap %s:%s\")", x->file,
					       strerror(e), kinds[x->kind].type, x->source);
		else
			*err_r = sift_asprintf("cannot open %s: %s", x->file, strerror(e));
		return -1;
	}
	if (lock_shared(x) < 0) {
		*err_r = sift_asprintf("cannot lock %s: %s", x->file,
				       errno == EWOULDBLOCK || errno == EAGAIN || errno == EACCES
					       ? "still locked by a writer after 10 seconds"
					       : strerror(errno));
		handle_close(x);
		return -1;
	}
	const char *why = NULL;
	if (fstat(x->fd, &x->st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(x->st.st_mode))
		why = S_ISDIR(x->st.st_mode) ? strerror(EISDIR) : "not a regular file";
	if (why) {
		*err_r = sift_asprintf("cannot open %s: %s", x->file, why);
		unlock(x);
		handle_close(x);
		return -1;
	}
	int rc = x->kind == IDX_LMDB  ? open_lmdb(x, err_r)
		 : x->kind == IDX_CDB ? open_cdb(x, err_r)
				      : open_db(x, err_r);
	if (rc < 0) {
		if (x->fd >= 0)
			unlock(x);
		handle_close(x);
		return -1;
	}
	x->try_flags = TRY1NULL | TRY0NULL;
	/* Postfix's warning, with its grace period for a source just edited. */
	struct stat src;
	if (stat(x->source, &src) == 0 && src.st_mtime > x->st.st_mtime &&
	    src.st_mtime < time(NULL) - SOURCE_GRACE_SEC)
		sift_log(LOG_WARNING, "database %s is older than source file %s", x->file, x->source);
	return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

bool map_idx_type(const char *type, size_t len)
{
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strlen(kinds[i].type) == len && strncmp(kinds[i].type, type, len) == 0)
			return true;
	return false;
}

struct map_idx *map_idx_open(const char *type, const char *name, char **err_r)
{
	struct map_idx *x = sift_calloc(1, sizeof(*x));
	x->kind = IDX_HASH;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(kinds[i].type, type) == 0)
			x->kind = (enum idx_kind)i;
	x->source = sift_strdup(name);
	x->file = sift_asprintf("%s%s", name, kinds[x->kind].suffix);
	x->fd = -1;
	pthread_mutex_init(&x->mu, NULL);
	if (handle_open(x, err_r) < 0) {
		map_idx_free(x);
		return NULL;
	}
	unlock(x);
	return x;
}

void map_idx_free(struct map_idx *x)
{
	if (!x)
		return;
	handle_close(x);
	pthread_mutex_destroy(&x->mu);
	free(x->source);
	free(x->file);
	free(x->last_err);
	free(x);
}

/* ---- lookup -------------------------------------------------------------------- */

/* One get: 1 found (*val_r malloc'd, up to the first NUL), 0 not found, -1
 * error (*err_r). */
static int get(struct map_idx *x, const char *key, size_t klen, char **val_r, char **err_r)
{
	switch (x->kind) {
	case IDX_HASH:
	case IDX_BTREE: {
		DBT k = {.data = (void *)key, .size = (u_int32_t)klen}, v = {0};
		int rc = x->db->get(x->db, NULL, &k, &v, 0);
		if (rc == DB_NOTFOUND)
			return 0;
		if (rc != 0) {
			*err_r = sift_asprintf("error reading %s: %s", x->file, db_strerror(rc));
			return -1;
		}
		*val_r = sift_strndup(v.data, v.size);
		return 1;
	}
	case IDX_LMDB: {
		MDB_txn *txn;
		MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
		if (klen == 0) /* LMDB refuses an empty key; postmap never writes one */
			return 0;
		int rc = mdb_txn_begin(x->menv, NULL, MDB_RDONLY, &txn);
		if (rc == 0) {
			rc = mdb_get(txn, x->dbi, &k, &v);
			if (rc == 0)
				*val_r = sift_strndup(v.mv_data, v.mv_size);
			mdb_txn_abort(txn);
		}
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc != 0) {
			*err_r = sift_asprintf("error reading %s: %s", x->file, mdb_strerror(rc));
			return -1;
		}
		return 1;
	}
	case IDX_CDB: {
		int rc = cdb_find(&x->cdb, key, (unsigned)klen);
		if (rc == 0)
			return 0;
		const void *p = rc > 0 ? cdb_get(&x->cdb, cdb_datalen(&x->cdb), cdb_datapos(&x->cdb)) : NULL;
		if (!p) {
			*err_r = sift_asprintf("error reading %s: %s", x->file,
					       rc < 0 ? strerror(errno) : "value outside the file");
			return -1;
		}
		*val_r = sift_strndup(p, cdb_datalen(&x->cdb));
		return 1;
	}
	}
	return -1;
}

/* The lookup itself, mutex held: reopens if needed, then tries the key with
 * and without its NUL. */
static int lookup_locked(struct map_idx *x, const char *key, char **result_r, char **err_r)
{
	if (x->fd >= 0) {
		if (lock_shared(x) < 0) {
			*err_r = sift_asprintf("cannot lock %s: %s", x->file,
					       errno == EWOULDBLOCK || errno == EAGAIN || errno == EACCES
						       ? "still locked by a writer after 10 seconds"
						       : strerror(errno));
			return -1;
		}
		struct stat st;
		if (stat(x->file, &st) < 0 || !same_file(&st, &x->st)) {
			unlock(x);
			handle_close(x);
		}
	}
	if (x->fd < 0 && handle_open(x, err_r) < 0)
		return -1;
	size_t klen = strlen(key);
	int rc = 0;
	if (x->try_flags & TRY1NULL) {
		rc = get(x, key, klen + 1, result_r, err_r);
		if (rc > 0)
			x->try_flags &= ~TRY0NULL;
	}
	if (rc == 0 && (x->try_flags & TRY0NULL)) {
		rc = get(x, key, klen, result_r, err_r);
		if (rc > 0)
			x->try_flags &= ~TRY1NULL;
	}
	unlock(x);
	return rc;
}

int map_idx_lookup(struct map_idx *x, const char *key, char **result_r)
{
	*result_r = NULL;
	/* postmap folds keys with Unicode case folding (smtputf8_enable =
	 * yes, the default) or in ASCII only (= no): the second fold is tried
	 * when the first finds nothing and they differ. */
	char *k = sift_casefold(key), *err = NULL;
	pthread_mutex_lock(&x->mu);
	int rc = lookup_locked(x, k, result_r, &err);
	if (rc == 0) {
		char *ascii = sift_lowercase(sift_strdup(key));
		if (strcmp(ascii, k) != 0)
			rc = lookup_locked(x, ascii, result_r, &err);
		free(ascii);
	}
	if (rc < 0) {
		if (!x->last_err || strcmp(x->last_err, err) != 0) {
			sift_log(LOG_ERR, "%s:%s: %s", kinds[x->kind].type, x->source, err);
			free(x->last_err);
			x->last_err = err;
			err = NULL;
		}
	} else if (x->last_err) {
		sift_log(LOG_INFO, "%s:%s: lookups work again", kinds[x->kind].type, x->source);
		free(x->last_err);
		x->last_err = NULL;
	}
	pthread_mutex_unlock(&x->mu);
	free(err);
	free(k);
	return rc;
}
