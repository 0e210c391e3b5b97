/*
 * util.c - memory, strings, buffers and the clock. Allocation never returns
 * NULL: running out of memory is fatal (the MTA then applies its default
 * action, tempfail in the shipped configuration). All functions are
 * thread-safe.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sift.h"

static void *oom(size_t n)
{
	sift_fatal("out of memory allocating %zu bytes", n);
}

void *sift_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	return p ? p : oom(n);
}

void *sift_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	return p ? p : oom(n * size);
}

void *sift_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	return q ? q : oom(n);
}

char *sift_strdup(const char *s)
{
	return sift_strndup(s, strlen(s));
}

char *sift_strndup(const char *s, size_t n)
{
	char *p = sift_malloc(n + 1);
	memcpy(p, s, n);
	p[n] = 0;
	return p;
}

char *sift_vasprintf(const char *fmt, va_list ap)
{
	char *s;
	if (vasprintf(&s, fmt, ap) < 0)
		oom(strlen(fmt));
	return s;
}

char *sift_asprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = sift_vasprintf(fmt, ap);
	va_end(ap);
	return s;
}

char *sift_lowercase(char *s)
{
	for (char *p = s; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

char *sift_trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

long long sift_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sift_buf_add(struct sift_buf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = sift_realloc(b->data, cap);
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
}

void sift_buf_adds(struct sift_buf *b, const char *s)
{
	sift_buf_add(b, s, strlen(s));
}

void sift_buf_printf(struct sift_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = sift_vasprintf(fmt, ap);
	va_end(ap);
	sift_buf_adds(b, s);
	free(s);
}

void sift_buf_free(struct sift_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

const char *sift_buf_str(struct sift_buf *b)
{
	if (!b->data)
		sift_buf_add(b, "", 0);
	return b->data;
}
