/*
 * fuzz_policy.c - libFuzzer target for the policy protocol codec
 * (lib/policy.c). The first input byte seeds the piece sizes, the rest is
 * fed to one parser in pieces of 1..64 bytes, as a socket would deliver it;
 * complete requests are looked up and the parser reset, errors reset it too.
 * Checks the codec's invariants (consumed bytes, attribute bounds, NUL-free
 * names). Single-threaded; replayed over tests/fuzz/corpus/policy/ in every
 * build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_req(const struct sift_policy_req *r)
{
	if (r->n == 0 || r->n > SIFT_POLICY_MAX_ATTRS)
		abort();
	for (size_t i = 0; i < r->n; i++) {
		const struct sift_policy_attr *a = &r->attrs[i];
		if (!a->name[0] || strchr(a->name, '=') || strchr(a->name, '\n') || strchr(a->value, '\n'))
			abort();
		const char *v = sift_policy_get(r, a->name);
		if (!v)
			abort();
	}
	(void)sift_policy_get(r, "instance");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct sift_policy_parser p;
	if (size == 0)
		return 0;
	unsigned seed = data[0];
	const char *buf = (const char *)data + 1;
	size_t len = size - 1, pos = 0;

	sift_policy_parser_init(&p);
	while (pos < len) {
		seed = seed * 1103515245u + 12345u;
		size_t piece = 1 + (seed >> 16) % 64;
		if (piece > len - pos)
			piece = len - pos;
		size_t used = (size_t)-1;
		int rc = sift_policy_feed(&p, buf + pos, piece, &used);
		if (used > piece)
			abort();
		if (rc == 0 && used != piece)
			abort();
		if (rc == 1)
			check_req(&p.req);
		if (rc == -1 && !p.error[0])
			abort();
		if (rc != 0) {
			sift_policy_parser_reset(&p);
			/* after an error, skip the offending byte so that the
			 * rest of the input is exercised too */
			if (rc == -1 && used == 0)
				used = 1;
		}
		pos += used;
	}
	sift_policy_parser_reset(&p);
	return 0;
}
