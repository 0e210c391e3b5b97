/*
 * nets.c - trusted_networks, internal_networks and msa_networks as
 * SpamAssassin reads them (Mail::SpamAssassin::NetSet): a list of
 * addresses and networks (`192.0.2.0/24`, `10.`, `172.16`, `2001:db8::/32`,
 * `[::1]`), each optionally negated with `!`; the first entry that
 * contains an address decides. 127.0.0.0/8 and ::1 are always trusted and
 * internal.
 */
#include <arpa/inet.h>
#include <stdio.h>

#include "internal.h"

/* "a.b.c.d", "a.b.c.", "a.b" (a prefix of octets), "x::y", with /bits */
static bool net_parse(const char *tok, struct netmask *nm)
{
	memset(nm, 0, sizeof(*nm));
	if (*tok == '!') {
		nm->neg = true;
		tok++;
	}
	char buf[128];
	snprintf(buf, sizeof(buf), "%s", tok);
	char *s = buf;
	int bits = -1;
	char *slash = strchr(s, '/');
	if (slash) {
		*slash = 0;
		char *end;
		long b = strtol(slash + 1, &end, 10);
		if (*end || end == slash + 1 || b < 0 || b > 128)
			return false;
		bits = (int)b;
	}
	if (*s == '[') {
		s++;
		char *e = strchr(s, ']');
		if (!e || e[1])
			return false;
		*e = 0;
	}
	if (strchr(s, ':')) {
		if (inet_pton(AF_INET6, s, nm->a) != 1 || bits > 128)
			return false;
		nm->v6 = true;
		nm->bits = bits < 0 ? 128 : bits;
		return true;
	}
	/* IPv4, possibly a prefix of octets */
	int oct = 0;
	for (char *p = s; *p && oct < 4;) {
		if (!isdigit((unsigned char)*p))
			return false;
		long v = strtol(p, &p, 10);
		if (v > 255)
			return false;
		nm->a[oct++] = (unsigned char)v;
		if (*p == '.')
			p++;
		else if (*p)
			return false;
	}
	if (oct == 0 || bits > 32)
		return false;
	nm->bits = bits >= 0 ? bits : oct * 8;
	return true;
}

static bool net_contains(const struct netmask *nm, const unsigned char *a, bool v6)
{
	if (nm->v6 != v6)
		return false;
	int full = nm->bits / 8, rest = nm->bits % 8;
	if (memcmp(nm->a, a, (size_t)full) != 0)
		return false;
	if (rest) {
		unsigned char mask = (unsigned char)(0xff << (8 - rest));
		if ((nm->a[full] & mask) != (a[full] & mask))
			return false;
	}
	return true;
}

int netset_add(struct netset *ns, const char *list, char **bad)
{
	char *copy = xstrdup(list);
	int rc = 0;
	for (char *tok = strtok(copy, " \t,"); tok; tok = strtok(NULL, " \t,")) {
		struct netmask nm;
		if (!net_parse(tok, &nm)) {
			if (!*bad)
				*bad = xstrdup(tok);
			rc = -1;
			continue;
		}
		ns->n = xrealloc(ns->n, (ns->count + 1) * sizeof(*ns->n));
		ns->n[ns->count++] = nm;
	}
	free(copy);
	return rc;
}

void netset_clear(struct netset *ns)
{
	free(ns->n);
	ns->n = NULL;
	ns->count = 0;
}

bool netset_contains(const struct netset *ns, const char *ip)
{
	unsigned char a[16] = {0};
	bool v6 = strchr(ip, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, ip, a) != 1)
		return false;
	if (v6 && memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0) { /* ::ffff:a.b.c.d */
		memmove(a, a + 12, 4);
		memset(a + 4, 0, 12);
		v6 = false;
	}
	for (size_t i = 0; i < ns->count; i++)
		if (net_contains(&ns->n[i], a, v6))
			return !ns->n[i].neg;
	/* always trusted and internal */
	if (!v6)
		return a[0] == 127;
	static const unsigned char loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	return memcmp(a, loop6, 16) == 0;
}
