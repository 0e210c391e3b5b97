/*
 * kv_impl.h - the interface between the key-value front end (lib/kv.c) and
 * its backends ("memory:" in kv.c, "redis:" in kv_redis.c). Internal to
 * lib/: nothing outside kv*.c includes it.
 *
 * A backend is a table of six functions and three batches (mget optional,
 * incr_many and write required). open() gets what followed "type:" in the spec and returns an opaque handle (or NULL with *err_r malloc'd);
 * the other functions follow the contract of the sift_kv_* functions in
 * sift.h (0 ok, 1 not found, -1 error; incr sets the expiry only when it
 * creates the key). Every function except free may be called from any
 * thread at any time after open returned; free never races with them.
 */
#ifndef SIFT_KV_IMPL_H
#define SIFT_KV_IMPL_H

#include <stddef.h>

struct sift_kv_op;    /* sift/plugin.h */
struct sift_kv_stats; /* sift.h */

struct kv_backend {
	const char *type; /* the spec prefix before ':' */
	/* params: what followed "type:" ("" when nothing did). */
	void *(*open)(const char *params, char **err_r);
	int (*get)(void *impl, const char *key, char **val_r);
	int (*set)(void *impl, const char *key, const char *val, long ttl_ms);
	int (*incr)(void *impl, const char *key, long long delta, long ttl_ms, long long *val_r);
	int (*del)(void *impl, const char *key);
	void (*free)(void *impl);
	/* Optional batch read (NULL: kv.c runs get key by key): see
	 * sift_kv_mget in sift.h. */
	int (*mget)(void *impl, const char *const *keys, size_t n, char **vals_r);
	/* Required: sift_kv_incr_many in sift.h, each key's increment, delete
	 * at 0 and expiry in one atomic step (a get/incr/del sequence would
	 * lose concurrent increments). */
	int (*incr_many)(void *impl, const char *const *keys, const long long *deltas, size_t n, long ttl_ms);
	/* Required: sift_kv_write in sift.h. A backend that can make the batch
	 * one atomic unit does (Redis); ops are valid (checked by kv.c). */
	int (*write)(void *impl, const struct sift_kv_op *ops, size_t n);
	/* Optional (NULL: all zero): see sift_kv_stats in sift.h. */
	void (*stats)(void *impl, struct sift_kv_stats *st);
};

#ifdef SIFT_HAVE_REDIS
/* lib/kv_redis.c: "redis:unix:/path,..." or "redis:host:port,...". */
extern const struct kv_backend sift_kv_redis;
#endif

#endif
