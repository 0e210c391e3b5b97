/*
 * dkimkeys.h - DKIM key tables and key files, for the dkim plugin's signing
 * and its siftctl tools (tool.c: `siftctl dkim genkey|showkeys|testkeys`),
 * so that both read key tables and key files with exactly the same rules.
 *
 * A key table is a map in Postfix table syntax that can be enumerated:
 * texthash:/path or inline:{ name=value, ... }. Each entry is
 *     NAME    DOMAIN:SELECTOR:/path/to/private.key
 * (OpenDKIM's KeyTable format). Key files are PEM private keys, RSA
 * (1024..4096 bits) or Ed25519 (PKCS#8, as `openssl genpkey` writes them);
 * a file readable or writable by group or others is refused.
 *
 * Nothing here keeps global state; every function is thread-safe on
 * distinct arguments. Strings in the structures are malloc'd and owned by
 * the structure (dk_keytable_free frees everything).
 */
#ifndef SIFT_DKIMKEYS_H
#define SIFT_DKIMKEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "sift/plugin.h"

enum dk_keytype { DK_RSA = 1, DK_ED25519 = 2 };

struct dk_key {
	char *name;	/* key table key (lower case) */
	char *domain;	/* d= (lower case) */
	char *selector; /* s= */
	char *path;	/* private key file */
	char *pem;	/* the private key as read (NULL unless loaded) */
	enum dk_keytype type;
	int bits;      /* RSA modulus size; 256 for Ed25519 */
	char *record;  /* "v=DKIM1; k=rsa; p=..." for DNS */
	char *pub_b64; /* the p= value alone */
};

struct dk_keytable {
	struct dk_key *keys;
	size_t n;
};

/* Parses a key table spec (texthash:/path or inline:{...}). With load, each
 * key file is read, checked and its public record derived. 0, or -1 with
 * *err_r (malloc'd) naming the file/entry. */
int dk_keytable_load(const char *spec, bool load, struct dk_keytable *kt, char **err_r);
void dk_keytable_free(struct dk_keytable *kt);
/* Frees the strings of one key and zeroes it. */
void dk_key_clear(struct dk_key *k);
const struct dk_key *dk_keytable_find(const struct dk_keytable *kt, const char *name);
const struct dk_key *dk_keytable_find_ds(const struct dk_keytable *kt, const char *domain,
					 const char *selector);

/* Reads and checks one key file (permissions, type, size) into k. */
int dk_key_load(struct dk_key *k, char **err_r);

/* Takes a PEM private key (malloc'd, owned by k afterwards, freed on
 * error) and fills type, bits, record and pub_b64 with dk_key_load's checks. */
int dk_key_set_pem(struct dk_key *k, char *pem, char **err_r);

/* Generates a key (type DK_RSA with bits, or DK_ED25519) into path, created
 * with mode 0600 (never overwriting an existing file); fills k (type, bits,
 * record, pub_b64, pem). */
int dk_key_generate(const char *path, enum dk_keytype type, int bits, struct dk_key *k, char **err_r);

/* "v=DKIM1; k=rsa; p=MIIB..." split into double-quoted strings of at most
 * 255 bytes, for a zone file (malloc'd). */
char *dk_record_zone_strings(const char *record);

/* A malloc'd formatted string (aborts when out of memory). */
char *dk_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Extracts the value of tag `tag` from a tag=value list ("v=DKIM1; p=..."),
 * white space removed; malloc'd, or NULL when absent. */
char *dk_tag_value(const char *list, const char *tag);
/* A domain name or selector as a key table may name it (letters, digits,
 * '-', '_' and dots; at most 253 bytes). */
bool dk_domain_ok(const char *d);

/* The plugin's siftctl tools (tool.c) and what they read from the plugin's
 * conf block (dkim.c): the dkim_key_table setting. */
extern const struct sift_tool dk_tools[];
const char *dk_conf_key_table(const void *conf);

#endif
