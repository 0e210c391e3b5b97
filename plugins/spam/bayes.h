/*
 * bayes.h - the spam plugin's Bayes classifier, compatible with
 * SpamAssassin 4.0's (Mail::SpamAssassin::Plugin::Bayes):
 *   bayes_tok.c    the tokenizer: header, body and URI tokens as
 *                  SpamAssassin makes them, each hashed to the last 5 octets
 *                  of its SHA-1 (so an `sa-learn --backup` dump imports);
 *   bayes.c        token probabilities (Robinson), chi-squared combining,
 *                  learning and forgetting, autolearn, the import;
 *   bayes_store.c  the stores: memory (tests), LMDB (default, one writer,
 *                  many readers, crash-safe), Redis through the host's
 *                  key-value functions (one database for several hosts).
 *
 * Threading: a struct bayes is shared by all threads once opened; the
 * stores lock what they need (LMDB: its own reader slots and one writer).
 */
#ifndef SPAM_BAYES_H
#define SPAM_BAYES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sift/plugin.h"

/* A token: the last 5 octets of SHA-1(token text), big-endian in the low
 * 40 bits (the order of unpack("H*") in a backup dump). */
typedef uint64_t btok;

/* A message's distinct tokens. */
struct btoks {
	btok *v;
	size_t n, cap;
	btok *set; /* open-addressing set (0 = empty; token 0 is mapped to 1) */
	size_t setcap;
	/* the message's receive date (SpamAssassin's receive_date): the
	 * atime its tokens get when it is learned; 0 = the time of learning */
	uint32_t atime;
	/* optional: called with each token's text before hashing (dumps) */
	void (*text_cb)(void *arg, const char *tok, size_t len);
	void *text_arg;
};

/* What the tokenizer reads of a message. */
struct bayes_src {
	const struct sift_mime *mime; /* headers and URIs */
	char *const *more_uris;	      /* URIs its text names without a scheme */
	size_t nmore_uris;
	char *const *lines; /* the rendered body (Subject first), as body rules see it */
	const size_t *lens;
	size_t nlines;
	/* X-Spam-Relays-Trusted / -Untrusted (NULL: absent) */
	const char *relays_trusted, *relays_untrusted;
	struct sift_addrs *(*addrlist_parse)(const char *value); /* NULL: no address tokens */
	char *const *ignore; /* bayes_ignore_header names, sorted by namecasecmp */
	size_t nignore;
};

void bayes_tokenize(const struct bayes_src *src, struct btoks *out);
void btoks_free(struct btoks *t);
/* The token of one text (SHA-1, last 5 octets). */
btok bayes_hash(const char *s, size_t n);

/* Token expiry as SpamAssassin's (bayes_expiry_period 12 h,
 * bayes_expiry_max_exponent 9, at least 100,000 tokens kept). */
#define BAYES_EXPIRE_PERIOD   43200
#define BAYES_EXPIRE_MAX_EXP  9
#define BAYES_EXPIRE_KEEP_MIN 100000

/* ---- the store --------------------------------------------------------- */

struct bcounts {
	uint32_t s, h, atime;
};

struct bstore;
struct bstore_ops {
	/* nspam, nham and the number of tokens. 0 or -1. */
	int (*totals)(struct bstore *st, long long *ns, long long *nh, long long *ntok);
	/* counts of n tokens (absent: zeros). 0 or -1. */
	int (*get)(struct bstore *st, const btok *t, size_t n, struct bcounts *out);
	/* One message learned (sign +1) or forgotten (-1) as spam or ham, all at
	 * once: token counts (never below 0; a token at 0/0 is deleted), the
	 * totals, and the seen entry of msgid (what = 's'/'h', 0 = delete).
	 * expect: the seen entry of msgid as the caller read it ('s', 'h', 0)
	 * or BSTORE_ANY. The memory and LMDB stores apply the message only if
	 * the entry is still that, in the same transaction, and return 1 with
	 * nothing changed otherwise (another process learned the message in
	 * between); a store with claim does not check. 0 or -1. */
	int (*apply)(struct bstore *st, const btok *t, size_t n, bool spam, int sign, uint32_t atime,
		     const char *msgid, char what, int expect);
	/* 's', 'h' or 0 (not seen); -1 error. */
	int (*seen)(struct bstore *st, const char *msgid);
	/* Import: a token's counts set as they are, and the totals. */
	int (*put)(struct bstore *st, const btok *t, const struct bcounts *c, size_t n, long long ns,
		   long long nh);
	/* Deletes the tokens whose atime is older than cutoff; their number. */
	long long (*expire)(struct bstore *st, uint32_t cutoff);
	/* Optional (NULL: the store keeps no times of its seen entries, or
	 * expires them itself): deletes the seen entries written more than
	 * ttl seconds before now; their number, or -1. */
	long long (*expire_seen)(struct bstore *st, uint32_t now, uint32_t ttl);
	/* Every token (for expiry and dumps); stops when cb returns non-zero. */
	int (*each)(struct bstore *st, int (*cb)(void *arg, btok t, const struct bcounts *c), void *arg);
	void (*close)(struct bstore *st);
	/* Optional (NULL: not needed): bulk writing by one process (siftctl),
	 * mode one of BSTORE_BULK_*. */
	int (*bulk)(struct bstore *st, int mode);
	/* Optional, for a store whose apply cannot check expect (Redis): the
	 * learning of msgid claimed for this process, so that hosts sharing
	 * the store learn a message one at a time. 1 claimed, 0 another
	 * process holds it, -1 error; release ends the claim, which also
	 * lapses after BSTORE_CLAIM_MS (a learner that died). */
	int (*claim)(struct bstore *st, const char *msgid);
	void (*release)(struct bstore *st, const char *msgid);
	/* Called only when the store's `touches` is true: scanning used
	 * these n tokens (SpamAssassin's tok_touch_all): each one present
	 * gets atime[i] if that is newer than its own (LMDB, memory; never
	 * rolled back), or its keys' TTL set again (Redis: its tokens expire
	 * by spam_bayes_token_ttl). Counts unchanged. 0 or -1. */
	int (*touch)(struct bstore *st, const btok *t, const uint32_t *atime, size_t n);
	/* apply calls bstore_gate() once it holds its writer lock (else
	 * the caller calls it before apply) */
	bool gates;
};
/* Whether the write a store is about to make may go ahead: false when it
 * is an autolearn whose waiter gave up (bayes_autolearn), which must then
 * not be written (apply returns BSTORE_CALLED_OFF, nothing changed). Once
 * true, the waiter waits for the learn to end. Always true outside the
 * autolearn worker. */
bool bstore_gate(void);
#define BSTORE_CALLED_OFF 3
/* bulk modes: the end of bulk writing, what is written committed; many
 * messages follow (a learner), written in few transactions, committed
 * every so often; everything up to the end in one transaction (an import,
 * all or nothing); the end, what is written since the last commit
 * discarded (with BSTORE_BULK_ONE: all of it). */
#define BSTORE_BULK_COMMIT  0
#define BSTORE_BULK_BATCHES 1
#define BSTORE_BULK_ONE	    2
#define BSTORE_BULK_ABORT   3
#define BSTORE_ANY	    (-1)
#define BSTORE_CLAIM_MS	    60000

struct bstore {
	const struct bstore_ops *ops;
	/* a scan's touches change something (ops->touch is called): the
	 * store keeps ages (LMDB, memory) or its tokens expire (Redis with
	 * spam_bayes_token_ttl); false: scans note none and no worker is
	 * started for them */
	bool touches;
};

/* "memory", "lmdb:PATH" (a directory, created) or "redis" (the host's
 * state_store; ttl_ms: of token keys, seen_ttl_ms: of seen entries, 0 =
 * none). NULL with *err_r (malloc'd). */
struct bstore *bstore_open(const char *spec, const struct sift_host *host, long ttl_ms, long seen_ttl_ms,
			   char **err_r);
/* A process has one LMDB environment per directory (LMDB's rule): opening
 * a directory this process has open already (a reload's new configuration
 * while the old one is in use) shares that store, which is closed when
 * the last of its users closes it. */
struct bstore *bstore_open_lmdb(const char *dir, char **err_r);
/* The users of dir's LMDB store in this process (0: not open). */
unsigned bstore_lmdb_users(const char *dir);

/* ---- the classifier ---------------------------------------------------- */

struct bayes_opts {
	long long min_spam_num, min_ham_num; /* SpamAssassin's 200 and 200 */
	bool auto_learn;
	double autolearn_nonspam, autolearn_spam; /* 0.1 and 12.0 */
	long long max_db_size;			  /* tokens; expiry keeps 75% of it */
	long long seen_ttl;			  /* seconds a seen entry is kept (0: for ever) */
	int max_token_length;			  /* 15 */
};

struct bayes_al;
struct bayes_touch;

struct bayes {
	struct bstore *st;
	struct bayes_opts o;
	/* autolearn's worker (bayes_autolearn_start; NULL: none) and where
	 * it says what it skipped (may be NULL) */
	struct bayes_al *al;
	void (*log)(int level, const char *msg);
	/* bayes_learn's "already learned?" and its counts, as one step for
	 * this process's threads (one message sent in several transactions
	 * is autolearned from several workers at once) */
	pthread_mutex_t learn_lock;
	/* when bayes_expire next expires seen entries (time(NULL)) */
	_Atomic long long seen_next;
	/* the tokens scanning used, with their new atimes, waiting to be
	 * written (bayes_touch_flush); made at the first, under touch_lock */
	pthread_mutex_t touch_lock;
	struct bayes_touch *touch;
};

/* The message's spam probability in [0, 1], or -1 when Bayes cannot score
 * it (too few messages learned, no token known, a store error). As
 * SpamAssassin, the tokens that decided it (the significant ones) are
 * touched: their atime becomes the message's receive date (t->atime; now
 * when none, or later than now) if that is newer, so that tokens in use
 * outlive the expiry. The touches wait in memory (at most
 * BAYES_TOUCH_MAX tokens; more are dropped until the next write) and are
 * written by bayes_touch_flush: the autolearn worker's, every
 * BAYES_TOUCH_EVERY seconds or when half full, before each expiry, and at
 * bayes_autolearn_stop. */
double bayes_classify(struct bayes *b, const struct btoks *t);
#define BAYES_TOUCH_MAX	  16384
#define BAYES_TOUCH_EVERY 30
/* Writes the waiting touches to the store (a write transaction); the
 * number of tokens written, or -1. */
long bayes_touch_flush(struct bayes *b);
/* Bayes is usable: enough spam and ham learned (score sets 2 and 3). */
bool bayes_ready(struct bayes *b);
/* Learns (forget false) or forgets the tokens of message msgid: 1 done,
 * 0 nothing to do (already learned as that, or not learned), -1 error. */
int bayes_learn(struct bayes *b, const struct btoks *t, const char *msgid, bool spam, bool forget);
/* Autolearn for a daemon's mail threads: the message learned by one worker
 * thread (the expiry that may follow is not waited for), waited for
 * wait_ms at most: a store whose writer is held by another process (a bulk
 * learner, another filterd) does not hold up the mail. As bayes_learn, or
 * -2 when the learn did not finish in time (logged): then it is called off
 * and never learned, so that autolearn=unavailable is true; while the
 * worker still waits for the store (to be told it is called off), the
 * following messages are skipped (not learned). A learn whose writes are
 * already going in when the time is up is waited for (AL_LANDING_WAIT_MS
 * at most) and its result returned. Without a worker (not started),
 * bayes_learn itself. bayes_learn returns -3 in the worker for a learn
 * called off. */
#define BAYES_AUTOLEARN_WAIT_MS 500
int bayes_autolearn(struct bayes *b, const struct btoks *t, const char *msgid, bool spam, long wait_ms);
/* The worker started (0) or not (-1: bayes_autolearn learns in place);
 * stopped after what it is doing (queued messages are dropped). It also
 * writes the touches of bayes_classify, so a daemon starts it when it
 * autolearns or its store keeps atimes; bayes_autolearn_stop writes the
 * touches left, worker or not. */
int bayes_autolearn_start(struct bayes *b);
void bayes_autolearn_stop(struct bayes *b);

/* A learned message's seen entry is kept o.seen_ttl (spam_bayes_seen_ttl,
 * SpamAssassin's bayes_seen_ttl); after it, the message can be learned
 * again. The expiry runs at most every BAYES_SEEN_EXPIRE_EVERY seconds in
 * a process. */
#define BAYES_SEEN_EXPIRE_EVERY 3600
/* Expiry when the database holds more than max_db_size tokens: the oldest
 * (by atime) go until 75% of it remain. Also (o.seen_ttl > 0, a store with
 * expire_seen) the seen entries older than o.seen_ttl, at most every
 * BAYES_SEEN_EXPIRE_EVERY seconds. Tokens deleted, or -1. */
long long bayes_expire(struct bayes *b);
/* Reads an `sa-learn --backup` dump. Tokens imported, or -1 with *err_r. */
long long bayes_import(struct bayes *b, FILE *f, char **err_r);

/* The longest message id a store keeps as it is in its seen entry: LMDB's
 * key limit (mdb_env_get_maxkeysize() of a default build; the store checks
 * it at open). A longer one is kept as bayes_seen_id makes it. */
#define BAYES_SEEN_ID_MAX 511
/* The id message msgid is remembered under, the same in every store and
 * for learning, forgetting and the lookup: msgid itself, or, when longer
 * than BAYES_SEEN_ID_MAX, the hex SHA-1 of it + "@sift_long_id". Malloc'd. */
char *bayes_seen_id(const char *msgid);

/* The msgid SpamAssassin learns a message under: its Message-ID, else
 * sha1_hex(To \0 Date \0 body digest)@sa_generated. Malloc'd. */
char *bayes_msgid(const struct sift_mime *mime);

/* Chi-squared combining of probabilities (SpamAssassin's CombineChi). */
double bayes_combine(long long ns, long long nh, const double *p, size_t n);

#endif
