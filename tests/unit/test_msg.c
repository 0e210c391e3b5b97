/*
 * test_msg.c - the message store: headers in order and byte-exact, the body
 * in memory below the limit and spooled beyond it, reads at any offset, and
 * parsing stored messages (LF or CRLF, folded headers, mbox From line, a
 * malformed header line starting the body).
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

int main(void)
{
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
	return t_done();
}
