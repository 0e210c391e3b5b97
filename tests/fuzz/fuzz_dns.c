/*
 * fuzz_dns.c - libFuzzer target for what the core makes of a DNS answer
 * (lib/dns.c, compiled in here): the conversion of libunbound's answer
 * into one result block (the TXT character-strings concatenated, as SPF,
 * DKIM and DMARC read them), the answer cache (the key of a name, a put and
 * a get that copies the block), and the wire-format names in the records
 * (sift_dns_name_from_wire, sift_dns_mx_name), which come from the network
 * as they are.
 *
 * The input: one byte of flags (type, rcode, havedata, nxdomain, secure,
 * bogus), one byte of TTL, the queried name up to a NUL, then records, each
 * a length byte and that many bytes (cut at the end of the input).
 *
 * Invariants: the status follows the rcode and flags; an OK result has one
 * NUL-terminated record per input record, a TXT one no longer than its
 * rdata and made of its strings, any other one a copy; the cached copy is
 * the same answer; a decoded name fits its buffer, has no label over 63
 * escaped octets and uses no more octets than there are. Replayed over
 * tests/fuzz/corpus/dns/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/dns.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_RR 64

static const int types[4] = {DNS_T_TXT, 15 /* MX */, 12 /* PTR */, 1 /* A */};

static void check_name(const unsigned char *wire, size_t len)
{
	char name[DNS_MAX_NAME + 2], small[8];
	memset(name, 'x', sizeof(name));
	int used = sift_dns_name_from_wire(wire, len, name, sizeof(name));
	if (used < -1 || (used >= 0 && ((size_t)used > len || used < 1)))
		abort();
	if (used > 0) {
		if (!memchr(name, 0, sizeof(name)) || !name[0])
			abort();
		/* a smaller buffer: the same name or a refusal, never an overflow */
		int u2 = sift_dns_name_from_wire(wire, len, small, sizeof(small));
		if (u2 >= 0 && (u2 != used || strcmp(small, name) != 0))
			abort();
	}
	unsigned pref = 0;
	if (sift_dns_mx_name(wire, len, &pref, name, sizeof(name)) == 0 && (pref > 65535 || !name[0]))
		abort();
	(void)sift_dns_name_from_wire(wire, len, name, 1);
	(void)sift_dns_name_from_wire(wire, len, name, 0);
}

static void check_txt(const unsigned char *src, size_t n, const unsigned char *text, size_t t)
{
	if (t > n || text[t] != 0)
		abort();
	size_t o = 0, k = 0;
	while (o < n) {
		size_t cl = src[o++];
		if (cl > n - o)
			cl = n - o;
		if (memcmp(text + k, src + o, cl) != 0)
			abort();
		k += cl;
		o += cl;
	}
	if (k != t)
		abort();
}

static bool same_result(const struct sift_dns_result *a, const struct sift_dns_result *b)
{
	if (a->status != b->status || a->rrtype != b->rrtype || a->count != b->count ||
	    a->secure != b->secure)
		return false;
	for (size_t i = 0; i < a->count; i++)
		if (a->len[i] != b->len[i] || memcmp(a->rr[i], b->rr[i], a->len[i] + 1) != 0 ||
		    a->rr[i] == b->rr[i])
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size > 65536)
		return 0;
	unsigned flags = data[0];
	int rrtype = types[flags & 3];
	struct ub_result u = {0};
	u.rcode = (flags >> 2) & 1 ? ((flags >> 3) & 1 ? DNS_RCODE_NXDOMAIN : 2) : 0;
	u.havedata = !((flags >> 4) & 1);
	u.nxdomain = (flags >> 5) & 1;
	u.secure = (flags >> 6) & 1;
	u.bogus = (flags >> 7) & 1;
	u.ttl = data[1] & 0x7f;
	size_t pos = 2;
	const uint8_t *nul = memchr(data + pos, 0, size - pos);
	size_t nlen = nul ? (size_t)(nul - (data + pos)) : size - pos;
	char *name = malloc(nlen + 1);
	memcpy(name, data + pos, nlen);
	name[nlen] = 0;
	pos += nlen + (nul ? 1 : 0);

	char *rd[MAX_RR + 1];
	int rl[MAX_RR + 1];
	size_t nrr = 0;
	while (pos < size && nrr < MAX_RR) {
		size_t l = data[pos++];
		if (l > size - pos)
			l = size - pos;
		rd[nrr] = malloc(l ? l : 1);
		memcpy(rd[nrr], data + pos, l);
		rl[nrr] = (int)l;
		nrr++;
		pos += l;
	}
	rd[nrr] = NULL;
	rl[nrr] = 0;
	u.data = rd;
	u.len = rl;
	u.qname = name;
	u.qtype = rrtype;
	u.qclass = 1;

	size_t bsize = 0;
	struct sift_dns_result *r = convert(&u, rrtype, &bsize);
	if (!r || r->rrtype != rrtype || bsize < sizeof(*r))
		abort();
	switch (r->status) {
	case SIFT_DNS_NXDOMAIN:
		if (u.rcode != DNS_RCODE_NXDOMAIN && !(u.nxdomain && !u.havedata))
			abort();
		break;
	case SIFT_DNS_TEMPFAIL:
		if (u.rcode == 0 && !u.bogus)
			abort();
		break;
	case SIFT_DNS_NODATA:
		if (u.rcode != 0 || (u.havedata && nrr > 0))
			abort();
		break;
	case SIFT_DNS_OK:
		if (u.rcode != 0 || u.bogus || !u.havedata || r->count != nrr)
			abort();
		for (size_t i = 0; i < r->count; i++) {
			const unsigned char *p = r->rr[i];
			if ((const char *)p < (const char *)r ||
			    (const char *)p + r->len[i] >= (const char *)r + bsize)
				abort();
			if (rrtype == DNS_T_TXT)
				check_txt((const unsigned char *)rd[i], (size_t)rl[i], p, r->len[i]);
			else if (r->len[i] != (size_t)rl[i] || memcmp(p, rd[i], r->len[i]) != 0 ||
				 p[r->len[i]])
				abort();
			if (rrtype != DNS_T_TXT)
				check_name(p, r->len[i]);
		}
		break;
	default:
		abort();
	}

	/* the cache: the name as a query would give it */
	if (name_ok(name)) {
		char key[DNS_MAX_NAME + 2];
		uint32_t hash;
		size_t klen = cache_key(name, key, &hash);
		if (klen != strlen(key) || klen > DNS_MAX_NAME + 1 || klen == 0)
			abort();
		cache_put(key, klen, hash, r, bsize);
		struct sift_dns_result *c = cache_get(key, hash, rrtype);
		bool kept = r->ttl > 0 && bsize <= DNS_CACHE_MAX_BLOCK &&
			    (r->status == SIFT_DNS_OK || r->status == SIFT_DNS_NXDOMAIN ||
			     r->status == SIFT_DNS_NODATA);
		if (kept != (c != NULL))
			abort();
		if (c) {
			if (!same_result(r, c) || c->ttl == 0 || c->ttl > r->ttl)
				abort();
			free(c);
		}
		cache_flush();
	}
	free(r);
	for (size_t i = 0; i < nrr; i++)
		free(rd[i]);
	free(name);
	return 0;
}
