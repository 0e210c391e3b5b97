/*
 * dkimfields.c - header fields of the message as received (dkimfields.h).
 *
 * The header block is read in chunks through host->message_read; a field
 * is collected in a buffer that grows to the longest field seen (the block
 * itself is never held whole here). The host writes the block with CRLF
 * line ends throughout and ends it with an empty line.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dkimfields.h"

struct field {
	char *p;
	size_t len, cap;
};

static int field_add(struct field *f, char c)
{
	if (f->len + 2 > f->cap) {
		size_t nc = f->cap ? f->cap * 2 : 1024;
		char *np = realloc(f->p, nc);
		if (!np)
			return -1;
		f->p = np;
		f->cap = nc;
	}
	f->p[f->len++] = c;
	return 0;
}

/* Hands the field without its final CRLF to fn. */
static int field_emit(struct field *f, dk_field_fn fn, void *arg)
{
	size_t len = f->len - 2;
	f->p[len] = 0;
	const char *colon = memchr(f->p, ':', len);
	return fn(arg, f->p, len, colon ? (size_t)(colon - f->p) : len);
}

static bool ends_crlf(const struct field *f)
{
	return f->len >= 2 && f->p[f->len - 2] == '\r' && f->p[f->len - 1] == '\n';
}

int dk_fields(const struct sift_host *host, struct sift_ctx *ctx, dk_field_fn fn, void *arg)
{
	long long total = host->message_size(ctx), body = host->body_size(ctx);
	if (total < 0 || body < 0 || body > total)
		return -1;
	long long hlen = total - body; /* the header block, empty line included */
	struct field f = {0};
	char buf[16384];
	int rc = 0;
	for (long long off = 0; off < hlen && rc == 0;) {
		size_t want = hlen - off < (long long)sizeof(buf) ? (size_t)(hlen - off) : sizeof(buf);
		long n = host->message_read(ctx, off, buf, want);
		if (n <= 0) {
			rc = -1;
			break;
		}
		off += n;
		for (long i = 0; i < n && rc == 0; i++) {
			char c = buf[i];
			if (ends_crlf(&f) && c != ' ' && c != '\t') {
				if (f.len == 2) /* the empty line: the end of the block */
					goto out;
				rc = field_emit(&f, fn, arg);
				f.len = 0;
			}
			if (rc == 0 && field_add(&f, c) < 0)
				rc = -1;
		}
	}
	/* The block ends with the last field's CRLF and the empty line; a
	 * last field left here lost its empty line: still a field. */
	if (rc == 0 && ends_crlf(&f) && f.len > 2)
		rc = field_emit(&f, fn, arg);
out:
	free(f.p);
	return rc;
}

/* Keeps one field as name and value (what follows the colon, byte-exact)
 * in message memory. */
static int keep_field(void *arg, char *field, size_t len, size_t namelen)
{
	struct dk_fieldlist *l = arg;
	if (namelen == len)
		return 0; /* no colon: not a field a signature can name */
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 64;
		const char **nn = l->host->msg_alloc(l->ctx, nc * sizeof(*nn));
		const char **nv = l->host->msg_alloc(l->ctx, nc * sizeof(*nv));
		if (l->n) {
			memcpy(nn, l->names, l->n * sizeof(*nn));
			memcpy(nv, l->values, l->n * sizeof(*nv));
		}
		l->names = nn;
		l->values = nv;
		l->cap = nc;
	}
	char *copy = l->host->msg_alloc(l->ctx, len + 1);
	memcpy(copy, field, len + 1);
	copy[namelen] = 0;
	l->names[l->n] = copy;
	l->values[l->n++] = copy + namelen + 1;
	return 0;
}

int dk_fields_list(const struct sift_host *host, struct sift_ctx *ctx, struct dk_fieldlist *l)
{
	memset(l, 0, sizeof(*l));
	l->ctx = ctx;
	l->host = host;
	return dk_fields(host, ctx, keep_field, l);
}
