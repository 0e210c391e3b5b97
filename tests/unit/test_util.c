/*
 * test_util.c - unit tests for lib/util.c: string copies and formatting,
 * lowercase and trim, the growing buffer (binary data, NUL termination,
 * growth across many appends, reuse after free), sift_read_file (whole
 * file, empty file, the size bound with EFBIG, a directory with EISDIR, a
 * missing file with ENOENT) and Postfix logical lines (comments, blank
 * lines, continuations, CRLF, line numbers, NUL bytes, leading white space,
 * the length bound); and the daemons' unix sockets (lib/daemon.c): born
 * with their mode whatever the umask, owner and mode never changed through
 * a symlink put in the socket's place.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static void test_strings(void)
{
	char *s = sift_strdup("Hello");
	CHECK_STR(s, "Hello");
	free(s);
	s = sift_strndup("abcdef", 3);
	CHECK_STR(s, "abc");
	free(s);
	/* strndup copies exactly n bytes, even past a NUL it does not look for */
	s = sift_strndup("ab\0cd", 5);
	CHECK(memcmp(s, "ab\0cd", 6) == 0);
	free(s);
	s = sift_asprintf("%s=%d %05.1f", "x", -12, 2.25);
	CHECK_STR(s, "x=-12 002.2");
	free(s);
	char big[5000];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	s = sift_asprintf("<%s>", big);
	CHECK_INT(strlen(s), sizeof(big) + 1);
	CHECK(s[0] == '<' && s[sizeof(big)] == '>' && s[2500] == 'q');
	free(s);

	char low[] = "MiXeD 123 \xc3\x89";
	CHECK(sift_lowercase(low) == low);
	CHECK_STR(low, "mixed 123 \xc3\x89"); /* bytes above 127 are left alone */

	char t1[] = " \t\r\n padded value \n\t ";
	CHECK_STR(sift_trim(t1), "padded value");
	char t2[] = "   ";
	CHECK_STR(sift_trim(t2), "");
	char t3[] = "";
	CHECK_STR(sift_trim(t3), "");
	char t4[] = "in  side";
	CHECK_STR(sift_trim(t4), "in  side");

	void *p = sift_malloc(0);
	CHECK(p != NULL);
	p = sift_realloc(p, 0);
	CHECK(p != NULL);
	free(p);
	int *z = sift_calloc(16, sizeof(int));
	int sum = 0;
	for (int i = 0; i < 16; i++)
		sum |= z[i];
	CHECK_INT(sum, 0);
	free(z);

	long long a = sift_now_ms(), b = sift_now_ms();
	CHECK(a > 0 && b >= a);
}

/* Table keys folded as Postfix folds them (smtputf8_enable = yes). */
static void test_casefold(void)
{
	static const char *const cases[][2] = {
		{"User@Example.COM", "user@example.com"},
		{"M\xc3\x9cLLER@example.de", "m\xc3\xbcller@example.de"},
		{"Stra\xc3\x9f"
		 "e",
		 "strasse"},
		{"\xce\xa3\xce\xa5\xce\xa6\xce\x9f\xce\xa3", "\xcf\x83\xcf\x85\xcf\x86\xce\xbf\xcf\x83"},
		/* U+0390: one code point folds to three, 2 octets to 6 */
		{"\xce\x90\xce\x90", "\xce\xb9\xcc\x88\xcc\x81\xce\xb9\xcc\x88\xcc\x81"},
		/* not UTF-8 (a stray octet, an overlong form, a surrogate):
		 * ASCII only, the rest kept */
		{"\xff"
		 "ABC",
		 "\xff"
		 "abc"},
		{"A\xc0\x80Z", "a\xc0\x80z"},
		{"X\xed\xa0\x80", "x\xed\xa0\x80"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *f = sift_casefold(cases[i][0]);
		CHECK_STR(f, cases[i][1]);
		free(f);
	}
}

static void test_buf(void)
{
	struct sift_buf b = {0};
	CHECK_STR(sift_buf_str(&b), "");
	CHECK_INT(b.len, 0);
	sift_buf_add(&b, "ab\0c", 4);
	CHECK_INT(b.len, 4);
	CHECK(memcmp(b.data, "ab\0c", 5) == 0); /* binary kept, NUL after len */
	sift_buf_adds(&b, "de");
	sift_buf_printf(&b, "-%d-%s", 42, "x");
	CHECK_INT(b.len, 11);
	CHECK(memcmp(b.data, "ab\0cde-42-x", 11) == 0 && b.data[11] == 0);
	CHECK(b.cap > b.len);
	sift_buf_add(&b, NULL, 0);
	CHECK_INT(b.len, 11);
	sift_buf_free(&b);
	CHECK(b.data == NULL && b.len == 0 && b.cap == 0);

	/* many small appends and one large one: contents survive every growth */
	for (int i = 0; i < 10000; i++)
		sift_buf_add(&b, &"0123456789"[i % 10], 1);
	CHECK_INT(b.len, 10000);
	int bad = 0;
	for (int i = 0; i < 10000; i++)
		bad += b.data[i] != '0' + i % 10;
	CHECK_INT(bad, 0);
	char chunk[100000];
	memset(chunk, 'z', sizeof(chunk));
	sift_buf_add(&b, chunk, sizeof(chunk));
	CHECK_INT(b.len, 110000);
	CHECK(b.data[9999] == '9' && b.data[10000] == 'z' && b.data[109999] == 'z' && b.data[110000] == 0);
	sift_buf_free(&b);
	sift_buf_adds(&b, "again");
	CHECK_STR(sift_buf_str(&b), "again");
	sift_buf_free(&b);
}

static void test_read_file(const char *dir)
{
	char *path = t_write_file(dir, "data.txt", "line one\nline two\n");
	char *data = NULL;
	size_t len = 0;
	CHECK_INT(sift_read_file(path, 1024, &data, &len), 0);
	CHECK_INT(len, 18);
	CHECK_STR(data, "line one\nline two\n");
	free(data);
	/* exactly at the bound is fine, one byte over is EFBIG */
	CHECK_INT(sift_read_file(path, 18, &data, &len), 0);
	free(data);
	data = NULL;
	errno = 0;
	CHECK_INT(sift_read_file(path, 17, &data, &len), -1);
	CHECK_INT(errno, EFBIG);
	CHECK(data == NULL);
	free(path);

	/* larger than one read chunk */
	char *big = malloc(20001);
	memset(big, 'b', 20000);
	big[20000] = 0;
	path = t_write_file(dir, "big.txt", big);
	CHECK_INT(sift_read_file(path, 20000, &data, &len), 0);
	CHECK(len == 20000 && data[len] == 0 && memcmp(data, big, 20000) == 0);
	free(data);
	unlink(path);
	free(path);
	free(big);

	path = t_write_file(dir, "empty.txt", "");
	data = NULL;
	CHECK_INT(sift_read_file(path, 10, &data, &len), 0);
	CHECK(len == 0 && data != NULL && data[0] == 0);
	free(data);
	unlink(path);
	free(path);

	errno = 0;
	CHECK_INT(sift_read_file(dir, 1024, &data, &len), -1);
	CHECK_INT(errno, EISDIR);
	char *missing = sift_asprintf("%s/missing", dir);
	errno = 0;
	CHECK_INT(sift_read_file(missing, 1024, &data, &len), -1);
	CHECK_INT(errno, ENOENT);
	free(missing);
	unlink(path = sift_asprintf("%s/data.txt", dir));
	free(path);
}

/* Runs sift_next_logical_line over text; returns the lines as
 * "first:line|first:line|..." and the end as "$" or "!first:why". */
static char *lines(const char *text, size_t len, size_t max_line)
{
	struct sift_buf out = {0}, b = {0};
	const char *p = text, *end = text + len;
	int lineno = 0, first = 0, rc;
	const char *why = NULL;
	while ((rc = sift_next_logical_line(&p, end, &lineno, &b, &first, &why, max_line)) == 1)
		sift_buf_printf(&out, "%d:%s|", first, b.data);
	if (rc == 0)
		sift_buf_printf(&out, "$%d", lineno);
	else
		sift_buf_printf(&out, "!%d:%s", first, why);
	sift_buf_free(&b);
	return out.data;
}

static void test_logical_lines(void)
{
	static const struct {
		const char *in;
		const char *want;
	} cases[] = {
		{"", "$0"},
		{"\n\n  \n# only a comment\n", "$4"},
		{"a = 1\nb = 2", "1:a = 1|2:b = 2|$2"},
		{"a = 1\r\nb = 2\r\n", "1:a = 1|2:b = 2|$2"},
		{"# head\n\nkey = one\n  two\n\tthree\nnext = x\n", "3:key = one  two\tthree|6:next = x|$6"},
		/* a comment or blank line inside a continued line does not end it */
		{"k = a\n# note\n\n  b\nz\n", "1:k = a  b|5:z|$5"},
		{"   # indented comment\nk = v\n", "2:k = v|$2"},
		{"  starts indented\n", "!1:logical line must not start with white space"},
		{"ok\n  cont\n\n x\n", "1:ok  cont x|$4"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = lines(cases[i].in, strlen(cases[i].in), 1000);
		CHECK_STR(got, cases[i].want);
		free(got);
	}
	static const char nul[] = "good\nba\0d\n";
	char *got = lines(nul, sizeof(nul) - 1, 1000);
	CHECK_STR(got, "1:good|!2:NUL character in line");
	free(got);
	/* a NUL in a comment line is not looked at */
	static const char nulc[] = "# c\0mment\nk\n";
	got = lines(nulc, sizeof(nulc) - 1, 1000);
	CHECK_STR(got, "2:k|$2");
	free(got);
	/* the bound counts the joined line */
	got = lines("abcde\n fgh\nx\n", 13, 8);
	CHECK_STR(got, "!1:line too long");
	free(got);
	got = lines("abcde\n fgh\nx\n", 13, 9);
	CHECK_STR(got, "1:abcde fgh|3:x|$3");
	free(got);
}

/* sift_write_by: all of it while the reader keeps up; ETIMEDOUT by the
 * deadline when nobody reads; EPIPE when the reader is gone. */
static void test_write_by(void)
{
	int p[2];
	CHECK(pipe(p) == 0);
	CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK) == 0);
	CHECK_INT(sift_write_by(p[1], "hello", 5, sift_now_ms() + 1000), 0);
	char got[8] = {0};
	CHECK_INT(read(p[0], got, sizeof(got)), 5);
	CHECK_STR(got, "hello");
	static char big[1 << 20];
	long long t0 = sift_now_ms();
	errno = 0;
	CHECK_INT(sift_write_by(p[1], big, sizeof(big), t0 + 200), -1);
	CHECK_INT(errno, ETIMEDOUT);
	CHECK(sift_now_ms() - t0 >= 150 && sift_now_ms() - t0 < 5000);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	errno = 0;
	CHECK_INT(sift_write_by(p[1], "x", 1, sift_now_ms() + 1000), -1);
	CHECK_INT(errno, EPIPE);
	close(p[1]);
}

static int ctl_request(void)
{
	return -1;
}

static void test_unix_sockets(const char *dir)
{
	char *sock = sift_asprintf("%s/s.sock", dir), *ep = sift_asprintf("unix:%s", sock);
	char *link = sift_asprintf("%s/link.sock", dir), *victim = sift_asprintf("%s/victim", dir);
	char *err = NULL;
	struct stat st;

	/* the mode comes from bind(), whatever the process umask, which is
	 * restored */
	mode_t old = umask(022);
	int fd = sift_listen_mode(ep, 8, 0660, &err);
	CHECK(fd >= 0);
	CHECK(lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_INT(st.st_mode & 07777, 0660);
	CHECK_INT(umask(022), 022);

	/* the daemon's user swapped the socket for a symlink: nothing is
	 * changed through it (before, chmod/chown by path changed the target) */
	int vfd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0644);
	CHECK(vfd >= 0);
	close(vfd);
	CHECK(chmod(victim, 0644) == 0 && symlink(victim, link) == 0);
	struct sift_runas r = {.param = "filterd_user", .uid = geteuid(), .gid = getegid()};
	if (geteuid() == 0) { /* as the daemons start: the owner becomes the user */
		r.uid = r.gid = 65534;
		r.change = true;
	}
	CHECK_INT(sift_socket_opts_apply("filterd", link, "0600", "", &r, &err), -1);
	CHECK(err && strstr(err, "not a socket"));
	free(err);
	err = NULL;
	CHECK(stat(victim, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0644);
	CHECK_INT(st.st_uid, geteuid());

	/* the socket itself: owner set, a mode it was not born with fixed
	 * through its descriptor */
	CHECK_INT(sift_socket_opts_apply("filterd", sock, "0640", "", &r, &err), 0);
	CHECK(err == NULL);
	CHECK(lstat(sock, &st) == 0);
	CHECK_INT(st.st_mode & 07777, 0640);
	CHECK_INT(st.st_uid, r.uid);

	/* the control socket: born 0600 (nothing chmods it by path), then
	 * the daemon user's (who may use it too) */
	char *ctlpath = sift_asprintf("%s/ctl.sock", dir);
	umask(0);
	CHECK_INT(sift_control_start(ctlpath, &r, ctl_request, &err), 0);
	CHECK(lstat(ctlpath, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_INT(st.st_mode & 07777, 0600);
	CHECK_INT(st.st_uid, r.uid);
	CHECK_INT(st.st_gid, r.gid);
	CHECK_INT(umask(022), 0);
	unlink(ctlpath);
	free(ctlpath);

	umask(old);
	close(fd);
	unlink(sock);
	unlink(link);
	unlink(victim);
	free(sock);
	free(ep);
	free(link);
	free(victim);
}

int main(void)
{
	char dir[] = "/tmp/sift-test-util-XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 2;
	}
	test_strings();
	test_buf();
	test_casefold();
	test_read_file(dir);
	test_logical_lines();
	test_write_by();
	test_unix_sockets(dir);
	rmdir(dir);
	return t_done();
}
