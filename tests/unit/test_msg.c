/*
 * test_msg.c - the message store: headers in order and byte-exact, the body
 * in memory below the limit and spooled beyond it, reads at any offset, and
 * parsing stored messages (LF or CRLF, folded headers, mbox From line, a
 * malformed header line starting the body); the reader of the message as
 * received (header block + body, from memory and from the spool file, in
 * chunks of every size across the header/body boundary, offsets at and past
 * the end) and the body mapped without a copy.
 */
#include <stdlib.h>
#include <string.h>

#include "sift.h"
#include "t.h"

static char *body_of(struct sift_msg *m)
{
	long long n = sift_msg_body_size(m);
	char *b = sift_malloc((size_t)n + 1);
	long got = sift_msg_body_read(m, 0, b, (size_t)n);
	b[got > 0 ? got : 0] = 0;
	return b;
}

/* Reads the whole message through sift_msg_read in chunks of size chunk. */
static char *read_chunked(struct sift_msg *m, size_t chunk, long long *len_r)
{
	long long n = sift_msg_size(m), off = 0;
	char *b = sift_malloc((size_t)n + 1);
	while (off < n) {
		long r = sift_msg_read(m, off, b + off, chunk);
		if (r <= 0)
			break;
		off += r;
	}
	b[off] = 0;
	*len_r = off;
	return b;
}

/* The reader over one message kept in memory (limit large) or spooled
 * (limit 0 or small). */
static void reader_cases(size_t limit)
{
	char *err = NULL;
	struct sift_msg *m = sift_msg_new(limit, "/tmp");
	sift_msg_add_header(m, "Subject", " one\r\n two");
	sift_msg_add_header(m, "X-Bare", " a\n\tb"); /* a bare LF is written as CRLF */
	sift_msg_add_header(m, "X-Empty", "");
	static const char want_h[] = "Subject: one\r\n two\r\nX-Bare: a\r\n\tb\r\nX-Empty:\r\n\r\n";
	long long hl = (long long)sizeof(want_h) - 1;
	CHECK_INT(sift_msg_header_size(m), hl);
	CHECK_INT(sift_msg_size(m), hl); /* no body yet: the header block */
	char body[3000];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (char)('a' + i % 26);
	for (size_t off = 0; off < sizeof(body); off += 100)
		CHECK(sift_msg_add_body(m, body + off, 100, &err) == 0);
	long long total = hl + (long long)sizeof(body);
	CHECK_INT(sift_msg_size(m), total);
	CHECK_INT(sift_msg_header_size(m), hl);
	char *want = sift_malloc((size_t)total);
	memcpy(want, want_h, (size_t)hl);
	memcpy(want + hl, body, sizeof(body));
	/* every chunk size from 1 byte up, across the header/body boundary */
	static const size_t chunks[] = {1, 2, 7, 31, (size_t)sizeof(want_h) - 1, sizeof(want_h), 1000, 4096};
	for (size_t k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		long long got = 0;
		char *b = read_chunked(m, chunks[k], &got);
		CHECK_INT(got, total);
		CHECK(got == total && memcmp(b, want, (size_t)total) == 0);
		free(b);
	}
	/* one read over the boundary returns both pieces */
	char buf[64];
	CHECK_INT(sift_msg_read(m, hl - 5, buf, 10), 10);
	CHECK(memcmp(buf, want + hl - 5, 10) == 0);
	/* the last bytes, the end, past the end, a negative offset */
	CHECK_INT(sift_msg_read(m, total - 3, buf, sizeof(buf)), 3);
	CHECK(memcmp(buf, body + sizeof(body) - 3, 3) == 0);
	CHECK_INT(sift_msg_read(m, total, buf, sizeof(buf)), 0);
	CHECK_INT(sift_msg_read(m, total + 100, buf, sizeof(buf)), 0);
	CHECK_INT(sift_msg_read(m, -1, buf, sizeof(buf)), -1);
	CHECK_INT(sift_msg_read(m, 0, buf, 0), 0);
	/* the body mapped (memory or spool file): the same bytes, no copy */
	size_t ml = 0;
	const unsigned char *map = sift_msg_body_map(m, 1000, &ml);
	CHECK(map != NULL && ml == 1000 && memcmp(map, body, 1000) == 0);
	/* more body after a map: the view stays valid, the reader sees all */
	CHECK(sift_msg_add_body(m, "XYZ", 3, &err) == 0);
	char *more = sift_malloc(200000);
	memset(more, 'Q', 200000);
	CHECK(sift_msg_add_body(m, more, 200000, &err) == 0);
	free(more);
	CHECK_INT(sift_msg_size(m), total + 200003);
	CHECK(memcmp(map, body, 1000) == 0);
	size_t ml2 = 0;
	CHECK(sift_msg_body_map(m, 1000, &ml2) == map && ml2 == 1000);
	CHECK_INT(sift_msg_read(m, total, buf, 5), 5);
	CHECK(memcmp(buf, "XYZQQ", 5) == 0);
	/* a header added later: the block is written again */
	sift_msg_add_header(m, "X-Late", " 1");
	CHECK_INT(sift_msg_header_size(m), hl + 11);
	CHECK_INT(sift_msg_read(m, hl - 2, buf, 14), 14);
	CHECK(memcmp(buf, "X-Late: 1\r\n\r\na", 14) == 0);
	free(want);
	sift_msg_free(m);

	/* no header, no body: the empty line alone */
	m = sift_msg_new(limit, "/tmp");
	CHECK_INT(sift_msg_size(m), 2);
	CHECK_INT(sift_msg_read(m, 0, buf, sizeof(buf)), 2);
	CHECK(memcmp(buf, "\r\n", 2) == 0);
	CHECK(sift_msg_body_map(m, 100, &ml) != NULL && ml == 0);
	sift_msg_free(m);
}

int main(void)
{
	/* the reader: in memory, spooled from the start, spooled midway */
	reader_cases(1 << 20);
	reader_cases(0);
	reader_cases(1000);

	char *err = NULL;
	/* memory and spool */
	for (size_t limit = 0; limit <= 64; limit += 16) {
		struct sift_msg *m = sift_msg_new(limit, "/tmp");
		sift_msg_add_header(m, "From", " a@example.org");
		for (int i = 0; i < 10; i++)
			CHECK(sift_msg_add_body(m, "0123456789", 10, &err) == 0);
		CHECK_INT(sift_msg_body_size(m), 100);
		char buf[16];
		CHECK_INT(sift_msg_body_read(m, 95, buf, sizeof(buf)), 5);
		CHECK(memcmp(buf, "56789", 5) == 0);
		CHECK_INT(sift_msg_body_read(m, 100, buf, sizeof(buf)), 0);
		CHECK_INT(sift_msg_body_read(m, -1, buf, sizeof(buf)), -1);
		CHECK_STR(sift_msg_header(m, 0)->value, " a@example.org");
		CHECK(sift_msg_header(m, 1) == NULL);
		sift_msg_free(m);
	}
	/* a spool directory that does not exist: a clear error, not a crash */
	struct sift_msg *m = sift_msg_new(4, "/nonexistent/dir");
	CHECK(sift_msg_add_body(m, "0123456789", 10, &err) == -1);
	CHECK(err && strstr(err, "/nonexistent/dir"));
	free(err);
	err = NULL;
	sift_msg_free(m);

	/* parsing */
	const char *text = "From sender@example.org Sat Nov 28 10:00:00 2026\n"
			   "Subject: one\n"
			   "  two\n"
			   "X-Empty:\n"
			   "From: <a@example.org>\r\n"
			   "\n"
			   "line 1\n"
			   "line 2\r\n";
	FILE *fp = fmemopen((void *)text, strlen(text), "r");
	m = sift_msg_new(1024, "/tmp");
	CHECK(sift_msg_read_file(m, fp, &err) == 0);
	fclose(fp);
	CHECK_INT(sift_msg_header_count(m), 3);
	CHECK_STR(sift_msg_header(m, 0)->name, "Subject");
	CHECK_STR(sift_msg_header(m, 0)->value, " one\r\n  two");
	CHECK_STR(sift_msg_header(m, 1)->value, "");
	CHECK_STR(sift_msg_header(m, 2)->value, " <a@example.org>");
	char *b = body_of(m);
	CHECK_STR(b, "line 1\r\nline 2\r\n");
	free(b);
	sift_msg_free(m);

	text = "Subject: x\nthis is not a header\nmore\n";
	fp = fmemopen((void *)text, strlen(text), "r");
	m = sift_msg_new(1024, "/tmp");
	CHECK(sift_msg_read_file(m, fp, &err) == 0);
	fclose(fp);
	CHECK_INT(sift_msg_header_count(m), 1);
	b = body_of(m);
	CHECK_STR(b, "this is not a header\r\nmore\r\n");
	free(b);
	sift_msg_free(m);

	/* a name, white space, then the colon is a header field, its name
	 * without the white space, as Postfix reads and passes it to milters
	 * (RFC 5322 4.5.8); white space inside a name is not one */
	text = "Authentication-Results : mx.test; dkim=pass\nX-Tab\t:\tv\nBad Name: x\n\nbody\n";
	fp = fmemopen((void *)text, strlen(text), "r");
	m = sift_msg_new(1024, "/tmp");
	CHECK(sift_msg_read_file(m, fp, &err) == 0);
	fclose(fp);
	CHECK_INT(sift_msg_header_count(m), 2);
	CHECK_STR(sift_msg_header(m, 0)->name, "Authentication-Results");
	CHECK_STR(sift_msg_header(m, 0)->value, " mx.test; dkim=pass");
	CHECK_STR(sift_msg_header(m, 1)->name, "X-Tab");
	CHECK_STR(sift_msg_header(m, 1)->value, "\tv");
	b = body_of(m);
	CHECK_STR(b, "Bad Name: x\r\n\r\nbody\r\n");
	free(b);
	sift_msg_free(m);
	return t_done();
}
