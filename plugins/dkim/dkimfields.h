/*
 * dkimfields.h - the header fields of the message as received, read from
 * the host's copy of the message (host->message_read) and cut into fields
 * the way RFC 5322 does: a field ends at a CRLF not followed by white space
 * (SP or HTAB); the empty line ends the header block. Each field is handed
 * over byte-exact, folding included, without its final CRLF. Both the
 * verifier (libopendkim's dkim_header) and the signer (dkimsign.c) take the
 * fields from here, so what they hash is what the MTA gave the host.
 *
 * Threading: no state of its own; one call belongs to one thread.
 */
#ifndef SIFT_DKIMFIELDS_H
#define SIFT_DKIMFIELDS_H

#include <stddef.h>

#include "sift/plugin.h"

/* Called for each field: field[len] is NUL, the name is field[0..namelen)
 * (namelen = len when there is no colon). A non-zero return stops the walk
 * and is returned. */
typedef int (*dk_field_fn)(void *arg, char *field, size_t len, size_t namelen);

/* Walks the fields of ctx's message. 0 when all were seen, fn's non-zero
 * result, or -1 when the message cannot be read or memory runs out. */
int dk_fields(const struct sift_host *host, struct sift_ctx *ctx, dk_field_fn fn, void *arg);

/* The fields of ctx's message kept in message memory (host->msg_alloc):
 * names[i] and values[i] (what follows the colon, byte-exact); fields
 * without a colon are left out. 0, or -1 as dk_fields. */
struct dk_fieldlist {
	struct sift_ctx *ctx;
	const struct sift_host *host;
	const char **names, **values;
	size_t n, cap;
};
int dk_fields_list(const struct sift_host *host, struct sift_ctx *ctx, struct dk_fieldlist *l);

#endif
