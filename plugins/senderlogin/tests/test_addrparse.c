/*
 * test_addrparse.c - table-driven tests of the senderlogin header address
 * parser: display names, comments, quoted local parts, groups, RFC 2047
 * display names, obsolete routes, folding, malformed input and bounds.
 */
#include <stdlib.h>

#include "addrparse.h"
#include "t.h"

struct tcase {
	const char *in;
	int n; /* expected count, -1 = error */
	const char *addr[3];
	const char *display[3];
};

static const struct tcase cases[] = {
	{" alice@example.net", 1, {"alice@example.net"}, {""}},
	{" Alice <alice@Example.NET>", 1, {"alice@example.net"}, {"Alice"}},
	{" \"Smith, Alice\" <alice@example.net>", 1, {"alice@example.net"}, {"Smith, Alice"}},
	{" alice@example.net (Alice Smith)", 1, {"alice@example.net"}, {""}},
	{" (comment (nested)) Alice (x) <alice(in)@example.net>", 1, {"alice@example.net"}, {"Alice"}},
	{" \"john doe\"@example.net", 1, {"john doe@example.net"}, {""}},
	{" \"a\\\"b\"@example.net", 1, {"a\"b@example.net"}, {""}},
	{" =?UTF-8?B?QWxpY2Ugw4Fyb24=?= <alice@example.net>",
	 1,
	 {"alice@example.net"},
	 {"Alice \xc3\x81ron"}},
	{" =?ISO-8859-1?Q?Andr=E9?= =?ISO-8859-1?Q?_Pirard?= <a@example.net>",
	 1,
	 {"a@example.net"},
	 {"Andr\xe9 Pirard"}},
	{" \"=?utf-8?q?bob=40example=2Enet?=\" <mallory@example.net>",
	 1,
	 {"mallory@example.net"},
	 {"bob@example.net"}},
	{" a@example.net, B <b@example.net>", 2, {"a@example.net", "b@example.net"}, {"", "B"}},
	{" Team: a@example.net, <b@example.net>;", 2, {"a@example.net", "b@example.net"}, {"", ""}},
	{" undisclosed-recipients:;", 0, {NULL}, {NULL}},
	{" <@relay.example,@r2.example:alice@example.net>", 1, {"alice@example.net"}, {""}},
	{" Alice\r\n <alice@example.net>", 1, {"alice@example.net"}, {"Alice"}},
	{" a@[192.0.2.1]", 1, {"a@[192.0.2.1]"}, {""}},
	{" Mr. Smith <smith@example.net>", 1, {"smith@example.net"}, {"Mr. Smith"}},
	{" ,a@example.net,,", 1, {"a@example.net"}, {""}},
	{" \"bob@example.net\" <alice@example.net>", 1, {"alice@example.net"}, {"bob@example.net"}},
	/* errors */
	{" alice", -1, {NULL}, {NULL}},
	{" <alice@example.net", -1, {NULL}, {NULL}},
	{" \"unterminated <a@b>", -1, {NULL}, {NULL}},
	{" (unterminated a@b", -1, {NULL}, {NULL}},
	{" @example.net", -1, {NULL}, {NULL}},
	{" alice@", -1, {NULL}, {NULL}},
	{" a@b <c@d>", -1, {NULL}, {NULL}},
	{" G: a@b", -1, {NULL}, {NULL}},
	{" a\x01@b", -1, {NULL}, {NULL}},
};

int main(void)
{
	struct ap_mailbox boxes[8];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *tc = &cases[i];
		const char *why = NULL;
		int n = ap_parse(tc->in, boxes, 8, &why);
		if (n != tc->n)
			fprintf(stderr, "case %zu: %s -> %d (%s)\n", i, tc->in, n, why ? why : "");
		CHECK_INT(n, tc->n);
		if (n < 0)
			CHECK(why != NULL);
		for (int k = 0; k < n && k < tc->n && k < 3; k++) {
			CHECK_STR(boxes[k].addr, tc->addr[k]);
			CHECK_STR(boxes[k].display, tc->display[k]);
		}
	}

	/* Bounds: too many mailboxes, too long, deep comments, token flood. */
	char big[40000];
	size_t len = 0;
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(big + len, sizeof(big) - len, "u%d@example.net,", i);
	const char *why = NULL;
	CHECK_INT(ap_parse(big, boxes, 8, &why), -1);
	CHECK_STR(why, "too many addresses");
	memset(big, 'a', 20000);
	big[20000] = 0;
	CHECK_INT(ap_parse(big, boxes, 8, &why), -1);
	CHECK_STR(why, "header value too long");
	memset(big, '(', 100);
	strcpy(big + 100, "a@b");
	CHECK_INT(ap_parse(big, boxes, 8, &why), -1);
	len = 0;
	for (int i = 0; i < 3000; i++)
		big[len++] = ',', big[len++] = ' ';
	big[len] = 0;
	CHECK_INT(ap_parse(big, boxes, 8, &why), -1);
	CHECK_STR(why, "too many tokens");

	/* Address-like display names. */
	char out[256];
	CHECK_INT(ap_find_address_like("Bob Smith", out, sizeof(out)), 0);
	CHECK_INT(ap_find_address_like("CEO (Bob@Example.net)", out, sizeof(out)), 1);
	CHECK_STR(out, "bob@example.net");
	CHECK_INT(ap_find_address_like("me @ home", out, sizeof(out)), 0);
	CHECK_INT(ap_find_address_like("x@localhost", out, sizeof(out)), 0);
	return t_done();
}
