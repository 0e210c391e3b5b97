/*
 * map_idx.h - Postfix's indexed table files, as postmap(1) writes them:
 * hash: and btree: (Berkeley DB, NAME.db), lmdb: (NAME.lmdb) and cdb:
 * (NAME.cdb). Internal to lib/: only map.c and map_idx.c include it.
 *
 * map_idx_open gets the type ("hash", "btree", "lmdb", "cdb") and the name
 * after "type:" (the source file's path, without the suffix) and opens the
 * indexed file, or returns NULL with *err_r naming the file. map_idx_lookup
 * follows sift_map_lookup's contract (1 found, 0 not found, -1 error) and
 * may be called from any thread at any time; map_idx_free never races with
 * it.
 */
#ifndef SIFT_MAP_IDX_H
#define SIFT_MAP_IDX_H

#include <stdbool.h>
#include <stddef.h>

struct map_idx;

/* Whether type names an indexed table type. */
bool map_idx_type(const char *type, size_t len);
struct map_idx *map_idx_open(const char *type, const char *name, char **err_r);
int map_idx_lookup(struct map_idx *x, const char *key, char **result_r);
void map_idx_free(struct map_idx *x);

#endif
