/*
 * lib/mailsyntax.h - the one place where Sift reads mail header syntax:
 *
 *   - sift_addrlist_parse(): a bounded RFC 5322 address-list parser for From,
 *     Sender, Reply-To, To and Cc values (mailboxes, name-addr, groups,
 *     nested comments, quoted strings and quoted local parts, domain
 *     literals, the obsolete forms: routes, phrases with dots, empty list
 *     elements; RFC 6532 UTF-8). Plugins reach it as host->addrlist_parse.
 *   - sift_header_decode(): the RFC 2047 decoder (B and Q encoded words,
 *     charsets converted to UTF-8) used for every decoded header value
 *     (host->mime() headers, display names, file names); host->header_decode.
 *   - the character-set and transfer decodings both use, shared with the
 *     MIME parser (lib/mime.c): UTF-8 checks, charset conversion (glibc
 *     iconv with fast paths for ASCII, UTF-8 and Latin-1), base64 and
 *     quoted-printable.
 *
 * Pure functions: no shared state, thread-safe. Results are malloc'd, the
 * caller free()s them.
 */
#ifndef SIFT_MAILSYNTAX_H
#define SIFT_MAILSYNTAX_H

#include <stdbool.h>
#include <stddef.h>

#include "sift/plugin.h"

struct sift_buf;

/* Bounds of sift_addrlist_parse(): longer values, more tokens or mailboxes,
 * deeper comments, longer addresses are refused (->error set). */
#define SIFT_ADDR_MAX_INPUT   16384 /* bytes of one header value */
#define SIFT_ADDR_MAX_TOKENS  2048  /* words and specials */
#define SIFT_ADDR_MAX_MBOXES  256   /* mailboxes in one list */
#define SIFT_ADDR_MAX_LOCAL   256   /* local part, unquoted */
#define SIFT_ADDR_MAX_DOMAIN  255   /* domain */
#define SIFT_ADDR_MAX_COMMENT 32    /* comment nesting */

/* Where a header line's field name ends, as Postfix reads it (is_header:
 * printable ASCII other than space and ':', then optional spaces or tabs,
 * the obsolete syntax of RFC 5322 4.5.8, then ':'): the name's length, the
 * colon's offset in *colon; 0 when the line is no header field. */
size_t sift_header_name_len(const char *line, size_t len, size_t *colon);

/* Parses an address-list header value (what followed the colon; CRLF
 * folding allowed). Never NULL; see struct sift_addrs in sift/plugin.h. */
struct sift_addrs *sift_addrlist_parse(const char *value);

/* RFC 2047 decoding of one header value into a malloc'd UTF-8 string:
 * unfolded (a fold is one space), encoded words decoded and converted to
 * UTF-8 (white space between adjacent encoded words dropped), raw 8-bit
 * octets kept when they are UTF-8 and taken as Latin-1 otherwise, trimmed. */
char *sift_header_decode(const char *value);
/* The same into o, for at most maxlen input bytes (SIFT_MIME_F_TRUNCATED
 * set in *flags beyond; SIFT_MIME_F_BAD_CHARSET and SIFT_MIME_F_8BIT_HEADER
 * as found); encoded words are decoded only when words is true. */
void sift_header_decode_into(struct sift_buf *o, const char *v, size_t n, size_t maxlen, bool words,
			     unsigned *flags);
/* Whether encoded words are decoded in a header field of this name: not
 * in Received, Message-ID, Resent-Message-ID, Date, Resent-Date,
 * MIME-Version, References, In-Reply-To and List-* (structured fields
 * where RFC 2047 section 5 allows none; SpamAssassin's _decode_header
 * leaves them as written), in every other one. */
bool sift_header_has_words(const char *name);

/* Character sets and transfer encodings (shared with lib/mime.c). */
void sift_put_utf8(struct sift_buf *b, unsigned long cp); /* invalid -> U+FFFD */
size_t sift_utf8_seq(const unsigned char *s, size_t n);	  /* 1..4, 0 = invalid */
bool sift_is_utf8(const unsigned char *s, size_t n);
/* The octets of s that do not continue a sequence (10xxxxxx): the
 * characters of UTF-8 text. */
size_t sift_utf8_chars(const char *s, size_t n);
/* Appends s: valid UTF-8 kept, other octets as Latin-1; false if any were. */
bool sift_add_utf8_or_latin1(struct sift_buf *b, const unsigned char *s, size_t n);
/* Converts n octets in charset cs to UTF-8 appended to b; false when the
 * charset is unknown or octets were invalid (converted best effort). */
bool sift_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n);
/* Appends s read as Windows-1252; false if it held one of the five octets
 * Windows-1252 leaves undefined (each U+FFFD). */
bool sift_add_cp1252(struct sift_buf *b, const unsigned char *s, size_t n);
/* A text part's octets to UTF-8 as SpamAssassin's Node::_normalize reads
 * them: valid UTF-8 with 8-bit octets is UTF-8 whatever cs says, then cs
 * (ISO-8859-1 as Windows-1252), else Windows-1252; false when cs was not
 * usable (unknown, or octets invalid in it). */
bool sift_body_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n);
/* An RFC 2047 word's decoded octets to UTF-8, in the charset it declares
 * (ISO-8859-1 as Windows-1252, an unknown charset as Windows-1252). */
bool sift_word_to_utf8(struct sift_buf *b, const char *cs, const unsigned char *s, size_t n);
int sift_hexval(unsigned char c); /* -1 when not a hex digit */
/* Tolerant base64 (skips white space; other junk sets *bad; a '=' ends a
 * group of four and decoding goes on after it). */
void sift_b64_decode(struct sift_buf *out, const unsigned char *s, size_t n, bool *bad);
/* Quoted-printable; hdr: RFC 2047 Q ('_' is a space). */
void sift_qp_decode(struct sift_buf *out, const unsigned char *s, size_t n, bool hdr, bool *bad);

#endif
