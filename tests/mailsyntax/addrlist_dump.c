/*
 * addrlist_dump.c - prints what the core's address-list parser makes of
 * header values, for tests/mailsyntax/hostile.py: reads a file of values
 * separated by the octet 0x1e and prints one line per value, "INVALID" or
 * "OK" followed by each mailbox's address after a 0x1f octet.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailsyntax.h"
#include "sift.h"

int main(int argc, char **argv)
{
	char *data;
	size_t len;
	if (argc != 2 || sift_read_file(argv[1], 1 << 24, &data, &len) < 0) {
		fprintf(stderr, "usage: addrlist_dump FILE\n");
		return 2;
	}
	for (char *p = data; p <= data + len;) {
		char *e = memchr(p, 0x1e, (size_t)(data + len - p));
		if (!e)
			e = data + len;
		*e = 0;
		struct sift_addrs *a = sift_addrlist_parse(p);
		fputs(a->error ? "INVALID" : "OK", stdout);
		for (size_t i = 0; i < a->count; i++)
			printf("\x1f%s", a->mb[i].addr);
		putchar('\n');
		free(a);
		p = e + 1;
	}
	free(data);
	return 0;
}
