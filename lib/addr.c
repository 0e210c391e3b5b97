/*
 * addr.c - IP addresses and networks in text form.
 *
 * sift_addr_parse() turns "192.0.2.1", "2001:db8::1" or "[2001:db8::1]" into
 * a family and 16 address bytes (IPv4 uses the first 4, the rest is zero).
 * An IPv4-mapped IPv6 address (::ffff:192.0.2.1) becomes the IPv4 address, so
 * that a client reaching a dual-stack socket matches IPv4 networks.
 * sift_net_parse() reads "address/prefix" (or a bare address: a host
 * network; the address, or the whole network, may be in [], as in
 * "[2001:db8::]/32" and "[2001:db8::/32]") and by default refuses networks with host bits set, as Postfix's
 * cidr tables and mynetworks do; sift_net_match() tests membership.
 *
 * Pure functions on caller-owned memory: thread-safe, no allocation.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>

#include "sift.h"

static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parses an address of at most len bytes (no brackets, no prefix). */
static int parse_addr_n(const char *s, size_t len, int *family_r, unsigned char addr_r[16])
{
	char tmp[INET6_ADDRSTRLEN + 1];
	if (len == 0 || len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = 0;
	memset(addr_r, 0, 16);
	if (strchr(tmp, ':') == NULL) {
		if (inet_pton(AF_INET, tmp, addr_r) != 1)
			return -1;
		*family_r = AF_INET;
		return 0;
	}
	unsigned char a6[16];
	if (inet_pton(AF_INET6, tmp, a6) != 1)
		return -1;
	if (memcmp(a6, v4mapped, sizeof(v4mapped)) == 0) {
		memcpy(addr_r, a6 + 12, 4);
		*family_r = AF_INET;
		return 0;
	}
	memcpy(addr_r, a6, 16);
	*family_r = AF_INET6;
	return 0;
}

/* Strips one pair of [] around an address. */
static void unbracket(const char **s, size_t *len)
{
	if (*len >= 2 && (*s)[0] == '[' && (*s)[*len - 1] == ']') {
		(*s)++;
		*len -= 2;
	}
}

int sift_addr_parse(const char *s, int *family_r, unsigned char addr_r[16])
{
	if (!s)
		return -1;
	size_t len = strlen(s);
	unbracket(&s, &len);
	return parse_addr_n(s, len, family_r, addr_r);
}

int sift_net_parse(const char *s, bool loose, struct sift_net *net_r)
{
	if (!s)
		return -1;
	/* The address, and the prefix digits from pfx to pend (none when pfx
	 * is NULL): "addr/len", "[addr]/len", or the whole network bracketed,
	 * "[addr/len]", as cidr_table(5) allows ("address information may be
	 * enclosed inside []"). */
	const char *a = s, *pfx = NULL, *pend = NULL;
	size_t alen;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return -1;
		a = s + 1;
		alen = (size_t)(close - a);
		if (close[1] == '/') {
			pfx = close + 2;
			pend = pfx + strlen(pfx);
		} else if (close[1]) {
			return -1;
		} else {
			const char *slash = memchr(a, '/', alen);
			if (slash) {
				pfx = slash + 1;
				pend = close;
				alen = (size_t)(slash - a);
			}
		}
	} else {
		const char *slash = strchr(s, '/');
		alen = slash ? (size_t)(slash - s) : strlen(s);
		if (slash) {
			pfx = slash + 1;
			pend = pfx + strlen(pfx);
		}
	}

	/* Parse without the IPv4-mapped conversion first, to adjust the prefix. */
	char tmp[INET6_ADDRSTRLEN + 1];
	if (alen == 0 || alen >= sizeof(tmp))
		return -1;
	memcpy(tmp, a, alen);
	tmp[alen] = 0;
	struct sift_net n;
	memset(&n, 0, sizeof(n));
	int maxbits;
	if (strchr(tmp, ':') == NULL) {
		if (inet_pton(AF_INET, tmp, n.addr) != 1)
			return -1;
		n.family = AF_INET;
		maxbits = 32;
	} else {
		if (inet_pton(AF_INET6, tmp, n.addr) != 1)
			return -1;
		n.family = AF_INET6;
		maxbits = 128;
	}

	n.prefix = maxbits;
	if (pfx) {
		const char *p = pfx;
		if (p == pend || !isdigit((unsigned char)*p))
			return -1;
		int v = 0;
		for (; p < pend && isdigit((unsigned char)*p); p++) {
			v = v * 10 + (*p - '0');
			if (v > maxbits)
				return -1;
		}
		if (p != pend)
			return -1;
		n.prefix = v;
	}

	/* Host bits. */
	for (int bit = n.prefix; bit < maxbits; bit++) {
		unsigned char m = (unsigned char)(0x80 >> (bit % 8));
		if (n.addr[bit / 8] & m) {
			if (!loose)
				return -1;
			n.addr[bit / 8] &= (unsigned char)~m;
		}
	}

	/* ::ffff:a.b.c.d/96+ is an IPv4 network. */
	if (n.family == AF_INET6 && n.prefix >= 96 && memcmp(n.addr, v4mapped, sizeof(v4mapped)) == 0) {
		unsigned char v4[4];
		memcpy(v4, n.addr + 12, 4);
		memset(n.addr, 0, 16);
		memcpy(n.addr, v4, 4);
		n.family = AF_INET;
		n.prefix -= 96;
	}
	*net_r = n;
	return 0;
}

bool sift_net_match(const struct sift_net *net, int family, const unsigned char addr[16])
{
	unsigned char a4[16];
	if (family == AF_INET6 && memcmp(addr, v4mapped, sizeof(v4mapped)) == 0) {
		memset(a4, 0, sizeof(a4));
		memcpy(a4, addr + 12, 4);
		addr = a4;
		family = AF_INET;
	}
	if (family != net->family)
		return false;
	int full = net->prefix / 8, rest = net->prefix % 8;
	if (full > 16 || net->prefix < 0)
		return false;
	if (memcmp(net->addr, addr, (size_t)full) != 0)
		return false;
	if (rest) {
		unsigned char m = (unsigned char)(0xff << (8 - rest));
		if ((net->addr[full] & m) != (addr[full] & m))
			return false;
	}
	return true;
}
