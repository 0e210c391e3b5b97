/*
 * t.h - a minimal table-driven unit test harness. Each test binary includes
 * this, calls CHECK* and ends main with `return t_done();`, which prints
 * "N passed, N failed" and returns non-zero on any failure.
 */
#ifndef SIFT_T_H
#define SIFT_T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (cond)                                                                  \
			t_pass++;                                                          \
		else {                                                                     \
			t_fail++;                                                          \
			fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                          \
	} while (0)

#define CHECK_STR(got, want)                                                                                \
	do {                                                                                                \
		const char *g_ = (got), *w_ = (want);                                                       \
		if ((g_ == NULL && w_ == NULL) || (g_ && w_ && strcmp(g_, w_) == 0))                        \
			t_pass++;                                                                           \
		else {                                                                                      \
			t_fail++;                                                                           \
			fprintf(stderr, "%s:%d: FAILED: %s: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
				#got, g_ ? g_ : "(null)", w_ ? w_ : "(null)");                              \
		}                                                                                           \
	} while (0)

#define CHECK_INT(got, want)                                                                            \
	do {                                                                                            \
		long long g_ = (long long)(got), w_ = (long long)(want);                                \
		if (g_ == w_)                                                                           \
			t_pass++;                                                                       \
		else {                                                                                  \
			t_fail++;                                                                       \
			fprintf(stderr, "%s:%d: FAILED: %s: got %lld, want %lld\n", __FILE__, __LINE__, \
				#got, g_, w_);                                                          \
		}                                                                                       \
	} while (0)

/* Writes text to dir/name and returns the path (malloc'd); exits 2 when the
 * file cannot be written (the test could not run, which is no pass). */
static inline char *t_write_file(const char *dir, const char *name, const char *text)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *path = malloc(n);
	if (!path)
		exit(2);
	snprintf(path, n, "%s/%s", dir, name);
	FILE *fp = fopen(path, "w");
	if (!fp) {
		perror(path);
		exit(2);
	}
	fputs(text, fp);
	fclose(fp);
	return path;
}

/* A number below n from a fixed sequence (xorshift64): generated inputs
 * that are the same on every run. */
static inline unsigned t_rnd(unsigned n)
{
	static unsigned long long x = 0x9E3779B97F4A7C15ULL;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return (unsigned)(x % n);
}

static inline int t_done(void)
{
	printf("%d passed, %d failed\n", t_pass, t_fail);
	return t_fail ? 1 : 0;
}
#endif
