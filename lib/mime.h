/*
 * lib/mime.h - MIME parsing shared by the host (host->mime()) and siftctl.
 *
 * RFC 2047 decoding and the charset and transfer decodings are lib/mailsyntax.c's
 * (sift_header_decode and friends), shared with the address parser.
 *
 * sift_mime_parse() builds a struct sift_mime (declared in sift/plugin.h)
 * from a message's headers and body: headers unfolded and RFC 2047-decoded,
 * the part tree, base64/quoted-printable decoding, charsets converted to
 * UTF-8 (glibc iconv, with fast paths for UTF-8, ASCII and Latin-1), HTML
 * rendered to text, URIs extracted. Everything lives in one arena freed by
 * sift_mime_free(). The parse never fails: malformed input is flagged.
 * Thread-safe (no shared state); one parse belongs to one thread at a time.
 */
#ifndef SIFT_MIME_H
#define SIFT_MIME_H

#include <stddef.h>

#include "sift/plugin.h"

struct sift_mime_limits {
	unsigned max_depth;    /* nesting of multiparts/messages (default 20) */
	size_t max_parts;      /* parts in all (default 500) */
	size_t max_headers;    /* headers per part (default 1000) */
	size_t max_header_len; /* bytes of one header value decoded (default 16k) */
	size_t max_decoded;    /* decoded bytes in all parts (default 8 MiB); a text
				* part is cut, never dropped, for it */
	size_t max_uris;       /* distinct URIs kept (default 1000) */
};

/* hdrs: the message's headers as the host stores them (value after the
 * colon, folds as CRLF); body: the raw body (CRLF or LF line ends). lim may
 * be NULL for the defaults. */
struct sift_mime *sift_mime_parse(const struct sift_header *hdrs, size_t nhdrs, const unsigned char *body,
				  size_t body_len, const struct sift_mime_limits *lim);
/* Parses a whole message (headers, blank line, body) from a buffer. */
struct sift_mime *sift_mime_parse_message(const unsigned char *msg, size_t len,
					  const struct sift_mime_limits *lim);
void sift_mime_free(struct sift_mime *m);

#endif
