/*
 * util.c - memory, strings, buffers and the clock. Allocation never returns
 * NULL: running out of memory is fatal (the MTA then applies its default
 * action, tempfail in the shipped configuration). All functions are
 * thread-safe.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unicode/ucasemap.h>

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

/* Valid UTF-8 (RFC 3629: no overlong forms, surrogates or code points
 * past U+10FFFF), with at least one non-ASCII octet. */
static bool utf8_nonascii(const unsigned char *p)
{
	bool wide = false;
	while (*p) {
		if (*p < 0x80) {
			p++;
			continue;
		}
		wide = true;
		int n = *p >= 0xc2 && *p <= 0xdf   ? 1
			: *p >= 0xe0 && *p <= 0xef ? 2
			: *p >= 0xf0 && *p <= 0xf4 ? 3
						   : -1;
		if (n < 0)
			return false;
		unsigned cp = *p & (0x3f >> n);
		for (int i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		p += n + 1;
	}
	return wide;
}

static const UCaseMap *fold_map;
static pthread_once_t fold_once = PTHREAD_ONCE_INIT;

static void fold_init(void)
{
	UErrorCode e = U_ZERO_ERROR;
	UCaseMap *m = ucasemap_open(NULL, U_FOLD_CASE_DEFAULT, &e);
	fold_map = U_SUCCESS(e) ? m : NULL;
}

char *sift_casefold(const char *s)
{
	if (!utf8_nonascii((const unsigned char *)s))
		return sift_lowercase(sift_strdup(s));
	pthread_once(&fold_once, fold_init);
	if (!fold_map)
		return sift_lowercase(sift_strdup(s));
	/* a code point folds to at most three (U+0390 -> U+03B9 U+0308
	 * U+0301): 3 times the octets, and a second try at the size ICU says */
	int32_t len = (int32_t)strlen(s), cap = 3 * len + 1;
	for (int tries = 0; tries < 2; tries++) {
		char *out = sift_malloc((size_t)cap);
		UErrorCode e = U_ZERO_ERROR;
		int32_t n = ucasemap_utf8FoldCase(fold_map, out, cap, s, len, &e);
		if (U_SUCCESS(e) && n < cap) {
			out[n] = 0;
			return out;
		}
		free(out);
		if (e != U_BUFFER_OVERFLOW_ERROR)
			break;
		cap = n + 1;
	}
	return sift_lowercase(sift_strdup(s));
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

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                   \
	do {                       \
		v0 += v1;          \
		v1 = ROTL(v1, 13); \
		v1 ^= v0;          \
		v0 = ROTL(v0, 32); \
		v2 += v3;          \
		v3 = ROTL(v3, 16); \
		v3 ^= v2;          \
		v0 += v3;          \
		v3 = ROTL(v3, 21); \
		v3 ^= v0;          \
		v2 += v1;          \
		v1 = ROTL(v1, 17); \
		v1 ^= v2;          \
		v2 = ROTL(v2, 32); \
	} while (0)

uint64_t sift_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
	const unsigned char *p = data;
	size_t left = len;
	while (left >= 8) {
		uint64_t w = 0;
		for (int i = 0; i < 8; i++)
			w |= (uint64_t)p[i] << (8 * i);
		v3 ^= w;
		SIPROUND;
		SIPROUND;
		v0 ^= w;
		p += 8;
		left -= 8;
	}
	uint64_t b = (uint64_t)len << 56;
	for (size_t i = 0; i < left; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

void sift_timespec_in(clockid_t clock, long long ms, struct timespec *ts)
{
	clock_gettime(clock, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int sift_write_by(int fd, const void *buf, size_t len, long long deadline_ms)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w > 0) {
			p += w;
			len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return -1;
		long long left = deadline_ms - sift_now_ms();
		struct pollfd pfd = {.fd = fd, .events = POLLOUT};
		int r = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r == 0)
				errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

long long sift_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

char *sift_buf_space(struct sift_buf *b, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->data = sift_realloc(b->data, cap);
		b->cap = cap;
	}
	return b->data + b->len;
}

void sift_buf_add(struct sift_buf *b, const void *p, size_t n)
{
	sift_buf_space(b, n);
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

int sift_read_file(const char *path, size_t max, char **data_r, size_t *len_r)
{
	/* O_NONBLOCK: a FIFO without a writer would hold open(2) */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0 || S_ISDIR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
		int e = S_ISDIR(st.st_mode)			       ? EISDIR
			: S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ? ESPIPE
								       : errno;
		close(fd);
		errno = e;
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	struct sift_buf b = {0};
	char chunk[8192];
	for (;;) {
		ssize_t r = read(fd, chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			sift_buf_free(&b);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		if (b.len + (size_t)r > max) {
			close(fd);
			sift_buf_free(&b);
			errno = EFBIG;
			return -1;
		}
		sift_buf_add(&b, chunk, (size_t)r);
	}
	close(fd);
	sift_buf_str(&b);
	*data_r = b.data;
	*len_r = b.len;
	return 0;
}

/* Postfix readllines(): returns 1 with the next logical line in *b (the
 * number of its first physical line in *first_r), 0 at the end, -1 with
 * *why set on a malformed line (*first_r = its line number). */
int sift_next_logical_line(const char **pp, const char *end, int *lineno, struct sift_buf *b, int *first_r,
			   const char **why, size_t max_line)
{
	b->len = 0;
	sift_buf_add(b, "", 0);
	bool have = false;
	while (*pp < end) {
		const char *s = *pp, *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = (size_t)((nl ? nl : end) - s);
		size_t k = n;
		if (k && s[k - 1] == '\r')
			k--;
		size_t i = 0;
		while (i < k && isspace((unsigned char)s[i]))
			i++;
		bool blank = i == k, comment = !blank && s[i] == '#';
		bool cont = k > 0 && isspace((unsigned char)s[0]);
		if (have && !blank && !comment && !cont)
			break; /* the next logical line starts here */
		*pp = nl ? nl + 1 : end;
		(*lineno)++;
		if (blank || comment)
			continue;
		if (memchr(s, 0, k)) {
			*first_r = *lineno;
			*why = "NUL character in line";
			return -1;
		}
		if (!have) {
			*first_r = *lineno;
			if (cont) {
				*why = "logical line must not start with white space";
				return -1;
			}
			have = true;
		}
		if (b->len + k > max_line) {
			*why = "line too long";
			return -1;
		}
		sift_buf_add(b, s, k);
	}
	return have ? 1 : 0;
}

/* The length of the valid UTF-8 sequence at s (at most n octets), 0 if none. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned min;
	unsigned c = s[0];
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	unsigned cp = c & (0x3f >> (len - 1));
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

void sift_json_str(struct sift_buf *b, const char *str)
{
	const unsigned char *s = (const unsigned char *)(str ? str : "");
	size_t n = strlen((const char *)s);
	sift_buf_add(b, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t u;
		if (c == '"' || c == '\\') {
			sift_buf_add(b, "\\", 1);
			sift_buf_add(b, &s[i++], 1);
		} else if (c < 0x20 || c == 0x7f) {
			sift_buf_printf(b, "\\u%04x", c);
			i++;
		} else if (c < 0x80) {
			sift_buf_add(b, &s[i++], 1);
		} else if ((u = utf8_len(s + i, n - i)) > 0) {
			sift_buf_add(b, s + i, u);
			i += u;
		} else {
			sift_buf_printf(b, "\\u%04x", c); /* not UTF-8: the octet as Latin-1 */
			i++;
		}
	}
	sift_buf_add(b, "\"", 1);
}
