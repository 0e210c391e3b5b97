/*
 * test_addr.c - lib/addr.c: address and network parsing, matching,
 * IPv4-mapped IPv6 handling. Table-driven.
 */
#include <arpa/inet.h>
#include <stdlib.h>

#include "sift.h"
#include "t.h"

static void test_addr_parse(void)
{
	static const struct {
		const char *in;
		int rc, family;
		const char *canon; /* inet_ntop of the result */
	} cases[] = {
		{"192.0.2.1", 0, AF_INET, "192.0.2.1"},
		{"0.0.0.0", 0, AF_INET, "0.0.0.0"},
		{"255.255.255.255", 0, AF_INET, "255.255.255.255"},
		{"2001:db8::1", 0, AF_INET6, "2001:db8::1"},
		{"[2001:db8::1]", 0, AF_INET6, "2001:db8::1"},
		{"::1", 0, AF_INET6, "::1"},
		{"::ffff:192.0.2.7", 0, AF_INET, "192.0.2.7"},
		{"::FFFF:c000:0207", 0, AF_INET, "192.0.2.7"},
		{"[::ffff:192.0.2.7]", 0, AF_INET, "192.0.2.7"},
		{"::192.0.2.7", 0, AF_INET6, "::192.0.2.7"},
		{"", -1, 0, NULL},
		{"[]", -1, 0, NULL},
		{"192.0.2", -1, 0, NULL},
		{"192.0.2.256", -1, 0, NULL},
		{"192.0.2.1/32", -1, 0, NULL},
		{" 192.0.2.1", -1, 0, NULL},
		{"2001:db8::1%eth0", -1, 0, NULL},
		{"2001:db8:::1", -1, 0, NULL},
		{"example.com", -1, 0, NULL},
		{"[192.0.2.1", -1, 0, NULL},
		{"1111:2222:3333:4444:5555:6666:7777:8888:9999", -1, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int fam = -1;
		unsigned char a[16];
		int rc = sift_addr_parse(cases[i].in, &fam, a);
		CHECK_INT(rc, cases[i].rc);
		if (rc == 0) {
			char buf[INET6_ADDRSTRLEN];
			CHECK_INT(fam, cases[i].family);
			inet_ntop(fam, a, buf, sizeof(buf));
			CHECK_STR(buf, cases[i].canon);
			if (fam == AF_INET)
				for (int j = 4; j < 16; j++)
					CHECK_INT(a[j], 0);
		}
	}
	CHECK_INT(sift_addr_parse(NULL, NULL, NULL), -1);
}

static void test_net_parse(void)
{
	static const struct {
		const char *in;
		bool loose;
		int rc, family, prefix;
		const char *canon;
	} cases[] = {
		{"192.0.2.0/24", false, 0, AF_INET, 24, "192.0.2.0"},
		{"192.0.2.1", false, 0, AF_INET, 32, "192.0.2.1"},
		{"192.0.2.1/24", false, -1, 0, 0, NULL},
		{"192.0.2.1/24", true, 0, AF_INET, 24, "192.0.2.0"},
		{"0.0.0.0/0", false, 0, AF_INET, 0, "0.0.0.0"},
		{"1.2.3.4/0", true, 0, AF_INET, 0, "0.0.0.0"},
		{"10.0.0.0/8", false, 0, AF_INET, 8, "10.0.0.0"},
		{"10.0.0.0/33", false, -1, 0, 0, NULL},
		{"10.0.0.0/", false, -1, 0, 0, NULL},
		{"10.0.0.0/8x", false, -1, 0, 0, NULL},
		{"10.0.0.0/-8", false, -1, 0, 0, NULL},
		{"10.0.0.0/ 8", false, -1, 0, 0, NULL},
		{"10.0.0.0/99999999999999999999", false, -1, 0, 0, NULL},
		{"/8", false, -1, 0, 0, NULL},
		{"2001:db8::/32", false, 0, AF_INET6, 32, "2001:db8::"},
		{"[2001:db8::]/32", false, 0, AF_INET6, 32, "2001:db8::"},
		/* the whole network in [] (cidr_table(5)), as Postfix reads it */
		{"[2001:db8::/32]", false, 0, AF_INET6, 32, "2001:db8::"},
		{"[192.0.2.0/24]", false, 0, AF_INET, 24, "192.0.2.0"},
		{"[192.0.2.0]/24", false, 0, AF_INET, 24, "192.0.2.0"},
		{"[192.0.2.1]", false, 0, AF_INET, 32, "192.0.2.1"},
		{"[2001:db8::1/32]", false, -1, 0, 0, NULL},
		{"[2001:db8::1/32]", true, 0, AF_INET6, 32, "2001:db8::"},
		{"[192.0.2.0/24", false, -1, 0, 0, NULL},
		{"192.0.2.0/24]", false, -1, 0, 0, NULL},
		{"[192.0.2.0/24]x", false, -1, 0, 0, NULL},
		{"[192.0.2.0/24]/8", false, -1, 0, 0, NULL},
		{"[192.0.2.0]/24]", false, -1, 0, 0, NULL},
		{"[192.0.2.0/]", false, -1, 0, 0, NULL},
		{"[/24]", false, -1, 0, 0, NULL},
		{"[[192.0.2.0]]", false, -1, 0, 0, NULL},
		{"2001:db8::1/32", false, -1, 0, 0, NULL},
		{"2001:db8::1/32", true, 0, AF_INET6, 32, "2001:db8::"},
		{"2001:db8::1", false, 0, AF_INET6, 128, "2001:db8::1"},
		{"::/0", false, 0, AF_INET6, 0, "::"},
		{"2001:db8::/129", false, -1, 0, 0, NULL},
		{"2001:db8::/127", false, 0, AF_INET6, 127, "2001:db8::"},
		{"::ffff:192.0.2.0/120", false, 0, AF_INET, 24, "192.0.2.0"},
		{"::ffff:192.0.2.9", false, 0, AF_INET, 32, "192.0.2.9"},
		{"2001:db8::/28", false, -1, 0, 0, NULL}, /* 0x0db8: bit 28 set */
		{"junk", false, -1, 0, 0, NULL},
		{"", false, -1, 0, 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sift_net n;
		int rc = sift_net_parse(cases[i].in, cases[i].loose, &n);
		if (rc != cases[i].rc)
			fprintf(stderr, "net case %s\n", cases[i].in);
		CHECK_INT(rc, cases[i].rc);
		if (rc == 0 && cases[i].rc == 0) {
			char buf[INET6_ADDRSTRLEN];
			CHECK_INT(n.family, cases[i].family);
			CHECK_INT(n.prefix, cases[i].prefix);
			inet_ntop(n.family, n.addr, buf, sizeof(buf));
			CHECK_STR(buf, cases[i].canon);
		}
	}
}

static void test_net_match(void)
{
	static const struct {
		const char *net, *addr;
		bool match;
	} cases[] = {
		{"192.0.2.0/24", "192.0.2.1", true},
		{"192.0.2.0/24", "192.0.2.255", true},
		{"192.0.2.0/24", "192.0.3.0", false},
		{"192.0.2.0/25", "192.0.2.127", true},
		{"192.0.2.0/25", "192.0.2.128", false},
		{"192.0.2.0/24", "::ffff:192.0.2.9", true},
		{"192.0.2.0/24", "2001:db8::1", false},
		{"0.0.0.0/0", "203.0.113.5", true},
		{"0.0.0.0/0", "::1", false},
		{"::/0", "::1", true},
		{"::/0", "1.2.3.4", false},
		{"2001:db8::/32", "2001:db8:ffff::1", true},
		{"2001:db8::/32", "2001:db9::1", false},
		{"2001:db8::/33", "2001:db8:7fff::1", true},
		{"2001:db8::/33", "2001:db8:8000::1", false},
		{"2001:db8::1", "2001:db8::1", true},
		{"2001:db8::1", "2001:db8::2", false},
		{"192.0.2.1", "192.0.2.1", true},
		{"192.0.2.1", "192.0.2.2", false},
		{"::ffff:10.0.0.0/104", "10.1.2.3", true},
		{"10.0.0.0/7", "11.255.255.255", true},
		{"10.0.0.0/7", "12.0.0.0", false},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sift_net n;
		int fam;
		unsigned char a[16];
		CHECK_INT(sift_net_parse(cases[i].net, false, &n), 0);
		CHECK_INT(sift_addr_parse(cases[i].addr, &fam, a), 0);
		bool m = sift_net_match(&n, fam, a);
		if (m != cases[i].match)
			fprintf(stderr, "match case %s %s\n", cases[i].net, cases[i].addr);
		CHECK(m == cases[i].match);
	}
	/* A raw IPv4-mapped address given as AF_INET6 bytes matches IPv4. */
	struct sift_net n;
	unsigned char raw[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 44};
	CHECK_INT(sift_net_parse("192.0.2.0/24", false, &n), 0);
	CHECK(sift_net_match(&n, AF_INET6, raw));
}

int main(void)
{
	test_addr_parse();
	test_net_parse();
	test_net_match();
	return t_done();
}
