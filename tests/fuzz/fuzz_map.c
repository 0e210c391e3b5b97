/*
 * fuzz_map.c - libFuzzer target for lib/map.c (and lib/addr.c through cidr
 * tables). The first byte picks the map type (pcre, regexp, cidr, texthash,
 * inline, static); the rest is the table file (written to a memfd and
 * opened through /proc/self/fd/N) or, for inline and static, the text after
 * "type:". The opened map is queried with fixed keys and with words taken
 * from the input itself.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = {"pcre", "regexp", "cidr", "texthash", "inline", "static"};

static const char *const fixed_keys[] = {
	"",
	"a",
	"user@example.com",
	"POSTMASTER@EXAMPLE.ORG",
	"192.0.2.1",
	"10.1.2.3",
	"2001:db8::1",
	"::ffff:192.0.2.1",
	"::",
	"0.0.0.0",
	"foo bar",
	"$1",
	"aaaaaaaaaaaaaaaaaaaa!",
};

static void lookup(const struct sift_map *m, const char *key)
{
	char *r = NULL;
	(void)sift_map_lookup(m, key, &r);
	free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		sift_log_set_level(LOG_CRIT); /* duplicate-key warnings are expected */
		init = true;
	}
	if (size < 1 || size > 65536)
		return 0;
	const char *type = types[data[0] % 6];
	data++;
	size--;

	char *spec;
	int fd = -1;
	if (data[-1] % 6 >= 4) {
		spec = sift_asprintf("%s:%.*s", type, (int)strnlen((const char *)data, size),
				     (const char *)data);
	} else {
		fd = memfd_create("fuzz_map", MFD_CLOEXEC);
		if (fd < 0)
			return 0;
		size_t off = 0;
		while (off < size) {
			ssize_t w = write(fd, data + off, size - off);
			if (w <= 0) {
				close(fd);
				return 0;
			}
			off += (size_t)w;
		}
		spec = sift_asprintf("%s:/proc/self/fd/%d", type, fd);
	}

	char *err = NULL;
	struct sift_map *m = sift_map_open(spec, &err);
	if (m) {
		for (size_t i = 0; i < sizeof(fixed_keys) / sizeof(fixed_keys[0]); i++)
			lookup(m, fixed_keys[i]);
		/* words of the input as keys (at most 32 of them) */
		char *copy = sift_strndup((const char *)data, size);
		char *save = NULL;
		int n = 0;
		for (char *w = strtok_r(copy, " \t\r\n/{},=!", &save); w && n < 32;
		     w = strtok_r(NULL, " \t\r\n/{},=!", &save), n++)
			lookup(m, w);
		free(copy);
		(void)sift_map_spec(m);
		sift_map_free(m);
	}
	free(err);
	free(spec);
	if (fd >= 0)
		close(fd);
	return 0;
}
