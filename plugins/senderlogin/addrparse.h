/*
 * addrparse.h - a bounded RFC 5322 address-list parser for header fields
 * (From, Sender, Reply-To): mailboxes, name-addr with display names,
 * groups, comments (nested), quoted strings and quoted local parts,
 * domain literals, obsolete routes (<@a,@b:user@dom>), RFC 2047 encoded
 * words in display names (B and Q, decoded as bytes).
 *
 * No allocation: the caller passes an array of results. Pure functions,
 * thread-safe.
 */
#ifndef SENDERLOGIN_ADDRPARSE_H
#define SENDERLOGIN_ADDRPARSE_H

#include <stddef.h>

#define AP_MAX_INPUT   16384 /* longer header values are refused */
#define AP_MAX_ADDR    512   /* one address, unquoted internal form */
#define AP_MAX_DISPLAY 512   /* one display name, decoded */

struct ap_mailbox {
	char addr[AP_MAX_ADDR];	      /* local@domain, local part unquoted, domain lower case */
	char display[AP_MAX_DISPLAY]; /* decoded display name ("" if none) */
};

/* Parses value (what followed the colon; may contain CRLF folding).
 * Returns the number of mailboxes stored (0..max), or -1 with *why set to
 * a static string when the value is not a valid address list or exceeds a
 * bound (more than max mailboxes, too long). */
int ap_parse(const char *value, struct ap_mailbox *out, int max, const char **why);

/* Finds something shaped like an e-mail address (x@y.z) in text and copies
 * it (lower case) to out; returns 1 found, 0 not. */
int ap_find_address_like(const char *text, char *out, size_t n);

#endif
