/*
 * fuzz_addr.c - libFuzzer target for the core's mail syntax
 * (lib/mailsyntax.c): the input is one header value, parsed as an address
 * list and RFC 2047-decoded. Invariants: an invalid list has no mailbox;
 * every mailbox's addr is local "@" domain, in valid UTF-8, the domain in
 * lower case; the address written back in canonical form (<local@domain>,
 * the local part quoted when it is not a dot-atom) re-parses to one mailbox
 * with the same addr; display names, comments and decoded values are valid UTF-8
 * without NULs. Single-threaded; replayed over tests/fuzz/corpus/addr/ in
 * every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailsyntax.h"
#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool atext_only(const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x80 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				  (c >= '0' && c <= '9') || strchr("!#$%&'*+-/=?^_`{|}~.", c)))
			return false;
	}
	return true;
}

/* <local@domain> with the local part quoted when needed. */
static char *canonical(const struct sift_mailbox *mb)
{
	struct sift_buf b = {0};
	sift_buf_add(&b, "<", 1);
	if (atext_only(mb->local))
		sift_buf_adds(&b, mb->local);
	else {
		sift_buf_add(&b, "\"", 1);
		for (const char *p = mb->local; *p; p++) {
			if (*p == '"' || *p == '\\')
				sift_buf_add(&b, "\\", 1);
			sift_buf_add(&b, p, 1);
		}
		sift_buf_add(&b, "\"", 1);
	}
	sift_buf_add(&b, "@", 1);
	sift_buf_adds(&b, mb->domain);
	sift_buf_add(&b, ">", 1);
	sift_buf_str(&b);
	return b.data;
}

static void check_mailbox(const struct sift_mailbox *mb)
{
	size_t ll = strlen(mb->local), dl = strlen(mb->domain), al = strlen(mb->addr);
	if (!ll || !dl || al != ll + 1 + dl || memcmp(mb->addr, mb->local, ll) != 0 || mb->addr[ll] != '@' ||
	    strcmp(mb->addr + ll + 1, mb->domain) != 0)
		abort();
	if (!sift_is_utf8((const unsigned char *)mb->addr, al) ||
	    !sift_is_utf8((const unsigned char *)mb->display, strlen(mb->display)) ||
	    !sift_is_utf8((const unsigned char *)mb->comment, strlen(mb->comment)))
		abort();
	for (const char *p = mb->domain; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			abort();
	char *c = canonical(mb);
	struct sift_addrs *again = sift_addrlist_parse(c);
	if (again->error || again->count != 1 || strcmp(again->mb[0].addr, mb->addr) != 0)
		abort();
	free(again);
	free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = sift_strndup((const char *)data, size);
	struct sift_addrs *a = sift_addrlist_parse(s);
	if (a->error && a->count)
		abort();
	for (size_t i = 0; i < a->count; i++)
		check_mailbox(&a->mb[i]);
	free(a);
	char *d = sift_header_decode(s);
	if (!sift_is_utf8((const unsigned char *)d, strlen(d)))
		abort();
	free(d);
	free(s);
	return 0;
}
