/*
 * test_map.c - lib/map.c: texthash, pcre, regexp, cidr, inline and static
 * maps, and the indexed tables (hash, btree, lmdb, cdb) that the real
 * postmap(1) builds. Every table is written to a temporary directory and
 * every key is looked up both with sift_map_lookup and with the real Postfix
 * (`postmap -q KEY TYPE:FILE`, run with MAIL_CONFIG pointing at an empty
 * main.cf), and the results must agree. Also: open errors with "file:line",
 * concurrent lookups from several threads, and indexed tables rebuilt by
 * postmap while they are open (the next lookup sees the new content, also
 * while other threads are looking up).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static char tmpdir[] = "/tmp/sift-test-map.XXXXXX";
static bool have_postmap;
static int postmap_compared;

static char *write_file(const char *name, const char *text)
{
	return t_write_file(tmpdir, name, text);
}

/* Single-quotes s for /bin/sh. */
static void shell_quote(struct sift_buf *b, const char *s)
{
	sift_buf_adds(b, "'");
	for (; *s; s++) {
		if (*s == '\'')
			sift_buf_adds(b, "'\\''");
		else
			sift_buf_add(b, s, 1);
	}
	sift_buf_adds(b, "'");
}

/* postmap -q: 1 found (*out malloc'd), 0 not found, -1 error. */
static int postmap_query(const char *spec, const char *key, char **out)
{
	struct sift_buf cmd = {0};
	sift_buf_printf(&cmd, "MAIL_CONFIG='%s' postmap -q ", tmpdir);
	shell_quote(&cmd, key);
	sift_buf_adds(&cmd, " ");
	shell_quote(&cmd, spec);
	sift_buf_adds(&cmd, " 2>/dev/null");
	FILE *fp = popen(sift_buf_str(&cmd), "r");
	sift_buf_free(&cmd);
	if (!fp)
		return -1;
	struct sift_buf res = {0};
	char chunk[512];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sift_buf_add(&res, chunk, n);
	int st = pclose(fp);
	sift_buf_str(&res);
	if (res.len && res.data[res.len - 1] == '\n')
		res.data[--res.len] = 0;
	if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		*out = res.data;
		return 1;
	}
	sift_buf_free(&res);
	return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 1 ? 0 : -1;
}

struct lcase {
	const char *key;
	const char *want; /* NULL = not found */
};

/* Keys where we differ from Postfix on purpose (documented in map.c): an
 * IPv4-mapped IPv6 key is looked up in cidr tables as the IPv4 address. */
static bool differs_from_postfix(const char *key)
{
	return strncmp(key, "::ffff:", 7) == 0;
}

static void check_map(const char *spec, const struct lcase *cases, size_t n)
{
	char *err = NULL;
	struct sift_map *m = sift_map_open(spec, &err);
	CHECK(m != NULL);
	if (!m) {
		fprintf(stderr, "  open %s: %s\n", spec, err ? err : "?");
		free(err);
		return;
	}
	CHECK_STR(sift_map_spec(m), spec);
	for (size_t i = 0; i < n; i++) {
		char *r = NULL;
		int rc = sift_map_lookup(m, cases[i].key, &r);
		CHECK_INT(rc, cases[i].want ? 1 : 0);
		CHECK_STR(r, cases[i].want);
		if (rc != (cases[i].want ? 1 : 0) || (r && cases[i].want && strcmp(r, cases[i].want)))
			fprintf(stderr, "  map %s key \"%s\"\n", spec, cases[i].key);
		if (have_postmap && !differs_from_postfix(cases[i].key)) {
			char *p = NULL;
			int prc = postmap_query(spec, cases[i].key, &p);
			CHECK_INT(prc, rc);
			CHECK_STR(p, r);
			if (prc != rc || (p && r && strcmp(p, r)))
				fprintf(stderr,
					"  postmap differs: %s key \"%s\": ours %d \"%s\", "
					"postmap %d \"%s\"\n",
					spec, cases[i].key, rc, r ? r : "", prc, p ? p : "");
			postmap_compared++;
			free(p);
		}
		free(r);
	}
	sift_map_free(m);
}

#define CHECK_MAP(spec, cases) check_map(spec, cases, sizeof(cases) / sizeof(cases[0]))

static void test_texthash(void)
{
	char *path = write_file("access", "# comment\n"
					  "Foo bar\n"
					  "foo dup-ignored\n"
					  "key1   value with  spaces   \n"
					  "multi first\n"
					  "  second\n"
					  "# comment in the middle\n"
					  "\tthird\n"
					  "\n"
					  "UPPER MixedCase Value\n"
					  "user@example.com OK\n"
					  "@example.org REJECT domain\n"
					  "192.0.2.1\tDUNNO\r\n");
	static const struct lcase cases[] = {
		{"foo", "bar"},
		{"FOO", "bar"},
		{"Foo", "bar"},
		{"key1", "value with  spaces"},
		{"multi", "first  second\tthird"},
		{"upper", "MixedCase Value"},
		{"UPPER", "MixedCase Value"},
		{"user@example.com", "OK"},
		{"USER@Example.COM", "OK"},
		{"@example.org", "REJECT domain"},
		{"example.org", NULL},
		{"192.0.2.1", "DUNNO"},
		{"missing", NULL},
		{"foo bar", NULL},
		{"comment", NULL},
		{"#", NULL},
	};
	char *spec = sift_asprintf("texthash:%s", path);
	CHECK_MAP(spec, cases);
	free(spec);
	free(path);

	/* Keys with white space in double quotes (postmap(1), Postfix 3.2
	 * and later): the quotes and backslashes stay part of the key. */
	path = write_file("quoted", "\"john doe\"@example.com REJECT no\n"
				    "\"a\\\"b c\"@x.org OK\n"
				    "\"x\\\\y z\" backslash\n"
				    "\"Up Case\"  upper\n"
				    "\"tab\there\"\ttab\n"
				    "normal\"x y\" mid\n"
				    "a\\ b escaped-space\n"
				    "\"sp\" \"q v\" value \"quoted\"\n"
				    "\"\" empty-quotes\n"
				    "\"cont\n"
				    " inued\" continued\n");
	static const struct lcase quoted[] = {
		{"\"john doe\"@example.com", "REJECT no"},
		{"\"John Doe\"@Example.COM", "REJECT no"},
		{"john doe@example.com", NULL},
		{"\"john", NULL},
		{"\"a\\\"b c\"@x.org", "OK"},
		{"a\"b c@x.org", NULL},
		{"\"x\\\\y z\"", "backslash"},
		{"\"up case\"", "upper"},
		{"\"tab\there\"", "tab"},
		{"normal\"x y\"", "mid"},
		{"normal\"x", NULL},
		{"a\\ b", "escaped-space"},
		{"\"sp\"", "\"q v\" value \"quoted\""},
		{"\"\"", "empty-quotes"},
		{"", NULL},
		{"\"cont inued\"", "continued"},
	};
	spec = sift_asprintf("texthash:%s", path);
	CHECK_MAP(spec, quoted);
	free(spec);
	free(path);
}

static void test_pcre(void)
{
	char *path = write_file("login.pcre",
				"# Postfix pcre table\n"
				"/^(\\S+)@example\\.com$/   user $1 at ${1} ($(1))\n"
				"/^postmaster@/           postmaster\n"
				"!/@/                     no-at-sign $$\n"
				"if /\\.org$/\n"
				"/^admin@/                org-admin\n"
				"IF !/^x/\n"
				"/^(a)(b)?(c)@/           abc[$1|$2|$3]\n"
				"endif\n"
				"ENDIF\n"
				"/CaseSensitive/i         cs\n"
				"/^a.b@dot$/s             dotall\n"
				"/ q u x /x               extended\n"
				"/^(\\d)(\\d)(\\d)(\\d)(\\d)(\\d)(\\d)(\\d)(\\d)(\\d)(\\d)@/  ${11}${10}$9\n"
				"/\\/path\\//              slash\n"
				"|pipe|                   pipe-delimited\n"
				"/cost/                   $$5 and $$$$\n"
				"/^(x)?y@(y)$/            [$1][$2]\n"
				"/greedy(.*?)end/U        [$1]\n"
				"/^anch/A                 anchored\n"
				"/long/\n"
				"  continued result\n");
	static const struct lcase cases[] = {
		{"user@example.com", "user user at user (user)"},
		{"USER@EXAMPLE.COM", "user USER at USER (USER)"},
		{"postmaster@x.net", "postmaster"},
		{"nohost", "no-at-sign $"},
		{"admin@x.org", "org-admin"},
		{"ac@y.org", "abc[a||c]"},
		{"abc@y.org", "abc[a|b|c]"},
		{"xac@y.org", NULL},
		{"casesensitive@z", NULL},
		{"CaseSensitive@z", "cs"},
		{"a-b@dot", "dotall"},
		{"qux@e", "extended"},
		{"01234567890@n", "098"},
		{"a/path/@p", "slash"},
		{"pipe@p", "pipe-delimited"},
		{"cost@q", "$5 and $$"},
		{"y@y", "[][y]"},
		{"xy@y", "[x][y]"},
		{"greedy1end2end@g", "[1end2]"},
		{"anch@a", "anchored"},
		{"long@l", "continued result"},
		{"nomatch@nomatch.net", NULL},
		{"", "no-at-sign $"},
	};
	char *spec = sift_asprintf("pcre:%s", path);
	CHECK_MAP(spec, cases);
	free(spec);
	free(path);
}

/* A group repeated once per character outgrows the JIT's default stack at
 * about a kilobyte of key (PCRE2_ERROR_JIT_STACKLIMIT): the interpreter
 * answers, as Postfix does. Far beyond, the depth limit makes it a lookup
 * error, never a crash or an unbounded match. */
static void test_pcre_long_keys(void)
{
	char *path = write_file("long.pcre", "/^(\\w+\\.?)+@example\\.com$/ OK\n");
	char *spec = sift_asprintf("pcre:%s", path);
	struct sift_buf k1 = {0}, k2 = {0}, k3 = {0}, k4 = {0};
	for (int i = 0; i < 700; i++)
		sift_buf_adds(&k1, "a.");
	sift_buf_adds(&k1, "@example.com"); /* 1412 bytes */
	for (int i = 0; i < 2000; i++)
		sift_buf_adds(&k2, "a.");
	sift_buf_adds(&k2, "@example.com"); /* 4012 bytes */
	for (int i = 0; i < 2000; i++)
		sift_buf_adds(&k3, "a.");
	sift_buf_adds(&k3, "@example.net");
	struct lcase cases[] = {
		{sift_buf_str(&k1), "OK"},
		{sift_buf_str(&k2), "OK"},
		{sift_buf_str(&k3), NULL},
	};
	CHECK_MAP(spec, cases);
	for (int i = 0; i < 30000; i++)
		sift_buf_adds(&k4, "a.");
	sift_buf_adds(&k4, "@example.com");
	struct sift_map *m = sift_map_open(spec, NULL);
	CHECK(m != NULL);
	char *r = NULL;
	CHECK_INT(sift_map_lookup(m, sift_buf_str(&k4), &r), -1);
	CHECK(r == NULL);
	sift_map_free(m);
	sift_buf_free(&k1);
	sift_buf_free(&k2);
	sift_buf_free(&k3);
	sift_buf_free(&k4);
	free(spec);
	free(path);
}

static void test_regexp(void)
{
	char *path = write_file("login.regexp", "/^([^@]+)@example\\.com$/  user $1 at ${1} ($(1))\n"
						"/^postmaster@/  postmaster\n"
						"!/@/  no-at-sign\n"
						"if /\\.org$/\n"
						"/^admin@/  org-admin\n"
						"if !/^x/\n"
						"/^(a)(b)?(c)@/  abc[$1|$2|$3]\n"
						"endif\n"
						"endif\n"
						"/CaseSensitive/i  cs\n"
						"/a+b+/x  basic\n"
						"/cost/  $$5\n"
						"/^(.)(.)(.)(.)(.)(.)(.)(.)(.)(.)(.)@/  ${11}${10}$9\n"
						"/^(x)?y@(y)$/  [$1][$2]\n"
						"/^[0-9]{1,3}\\.[0-9]{1,3}@/  ip-ish\n"
						"/^.{1,64}@[]a-z]{1,255}\\.zz$/  bounded\n");
	static const struct lcase cases[] = {
		{"user@example.com", "user user at user (user)"},
		{"UsEr@EXAMPLE.com", "user UsEr at UsEr (UsEr)"},
		{"postmaster@x.net", "postmaster"},
		{"nohost", "no-at-sign"},
		{"admin@x.org", "org-admin"},
		{"ac@y.org", "abc[a||c]"},
		{"abc@y.org", "abc[a|b|c]"},
		{"xac@y.org", NULL},
		{"casesensitive@z", NULL},
		{"CaseSensitive@z", "cs"},
		{"aabb@z", NULL},
		{"xa+b+@z", "basic"},
		{"cost@q", "$5"},
		{"abcdefghijk@x", "kji"},
		{"y@y", "[][y]"},
		{"xy@y", "[x][y]"},
		{"10.250@i", "ip-ish"},
		{"me@example.zz", "bounded"},
		{"nomatch@nomatch.net", NULL},
	};
	char *spec = sift_asprintf("regexp:%s", path);
	CHECK_MAP(spec, cases);
	free(spec);
	free(path);
}

static void test_cidr(void)
{
	char *path = write_file("clients.cidr", "# cidr table\n"
						"192.0.2.0/24       net24\n"
						"192.0.2.5          host5-shadowed\n"
						"198.51.100.7       host7 $$1\n"
						"2001:db8::/32      v6net\n"
						"[2001:db9::1]      v6b\n"
						"if 10.0.0.0/8\n"
						"10.1.0.0/16        ten-one\n"
						"!10.2.0.0/16       ten-not-two\n"
						"endif\n"
						"if !172.16.0.0/12\n"
						"172.0.0.0/8        172-outside-private\n"
						"endif\n"
						"[2001:dba::/32]    v6bracketed\n"
						"[203.0.113.0/24]   v4bracketed\n"
						"[198.18.0.0]/15    v4prefixout\n"
						"::/0               anyv6\n"
						"100.64.0.0/10      cgnat\n");
	static const struct lcase cases[] = {
		{"192.0.2.5", "net24"},
		{"192.0.2.255", "net24"},
		{"198.51.100.7", "host7 $$1"},
		{"198.51.100.8", NULL},
		{"2001:db8::1", "v6net"},
		{"2001:DB8:FFFF::AB", "v6net"},
		{"2001:db9::1", "v6b"},
		{"2001:db9::2", "anyv6"},
		{"10.1.2.3", "ten-one"},
		{"10.3.0.1", "ten-not-two"},
		{"10.2.3.4", NULL},
		{"172.16.5.5", NULL},
		{"172.15.0.1", "172-outside-private"},
		{"::1", "anyv6"},
		{"2001:dba:1::5", "v6bracketed"},
		{"203.0.113.9", "v4bracketed"},
		{"198.19.1.1", "v4prefixout"},
		{"100.100.0.1", "cgnat"},
		{"100.128.0.1", NULL},
		{"1.2.3.4", NULL},
		{"foo", NULL},
		{"999.1.1.1", NULL},
		{"", NULL},
		/* Postfix would answer anyv6: we look mapped keys up as IPv4 */
		{"::ffff:192.0.2.5", "net24"},
	};
	char *spec = sift_asprintf("cidr:%s", path);
	CHECK_MAP(spec, cases);
	free(spec);
	free(path);
}

static void test_inline_static(void)
{
	static const struct lcase in1[] = {
		{"foo", "dup"}, /* a later duplicate wins in Postfix inline maps */
		{"FOO", "dup"}, {"baz", "qux quux"}, {"BAZ", "qux quux"},
		{"k", "v"},	{"x", "a=b"},	     {"missing", NULL},
	};
	CHECK_MAP("inline:{ foo=bar, {Baz = qux quux}, FOO=dup,k=v {x=a=b} }", in1);
	static const struct lcase in2[] = {{"a", "1"}, {"b", NULL}};
	CHECK_MAP("inline:{a=1}", in2);
	static const struct lcase st1[] = {{"anything", "hello world"}, {"", "hello world"}};
	CHECK_MAP("static:{ hello world }", st1);
	static const struct lcase st2[] = {{"x", "abc def"}};
	CHECK_MAP("static:abc def", st2);
}

/* Pattern tables (matched against whole keys) against fixed-string ones. */
static void test_is_pattern(void)
{
	char *pc = write_file("kind.pcre", "/a/ x\n");
	char *rx = write_file("kind.regexp", "/a/ x\n");
	char *ci = write_file("kind.cidr", "192.0.2.0/24 x\n");
	char *th = write_file("kind.texthash", "a x\n");
	static const char *const types[] = {"pcre", "regexp", "cidr", "texthash"};
	char *const files[] = {pc, rx, ci, th};
	for (size_t i = 0; i < 4; i++) {
		char *spec = sift_asprintf("%s:%s", types[i], files[i]);
		struct sift_map *m = sift_map_open(spec, NULL);
		CHECK(m != NULL);
		CHECK(sift_map_is_pattern(m) == (i < 3));
		sift_map_free(m);
		free(spec);
		free(files[i]);
	}
	struct sift_map *m = sift_map_open("inline:{a=b}", NULL);
	CHECK(m && !sift_map_is_pattern(m));
	sift_map_free(m);
	m = sift_map_open("static:x", NULL);
	CHECK(m && !sift_map_is_pattern(m));
	sift_map_free(m);
	CHECK(!sift_map_is_pattern(NULL));
}

static void test_errors(void)
{
	static const struct {
		const char *type, *text;
		const char *want; /* after "<path>" (files) */
	} cases[] = {
		{"pcre", "/a/q x\n", ":1: unknown regexp option \"q\""},
		{"pcre", "/a(/ x\n", ":1: error in regex at offset"},
		{"pcre", "# c\n/a/\n", ":2: no result"},
		{"pcre", "/(a)/ $2\n", ":1: out of range replacement index \"2\""},
		{"pcre", "/(a)/ $0\n", ":1: out of range replacement index \"0\""},
		{"pcre", "!/(a)/ $1\n", ":1: $number found in negative match result"},
		{"pcre", "/a/ $x\n", ":1: non-numeric replacement index"},
		{"pcre", "/a/ $ x\n", ":1: empty macro name"},
		{"pcre", "/(a)/ ${1\n", ":1: unbalanced '{'"},
		{"pcre", "/a/ x\nif /a/\n/b/ x\n", ":2: IF has no matching ENDIF"},
		{"pcre", "/a/ x\nendif\n", ":2: ENDIF without matching IF"},
		{"pcre", "if /a/ x\nendif\n", ":1: text after IF condition"},
		{"pcre", "if /a/\nendif x\n", ":2: text after ENDIF"},
		{"pcre", "/abc x\n", ":1: missing closing delimiter '/'"},
		{"pcre", "  /a/ x\n", ":1: logical line must not start with white space"},
		{"regexp", "/a{1,1000}{1,1000}/ x\n", ":1: regular expression too complex"},
		{"regexp", "/a{,25555}/ x\n", ":1: regular expression too complex"},
		{"regexp", "/a{\\,255}{1,255}/ x\n", ":1: regular expression too complex"},
		{"regexp", "/(a{1,100}){1,100}/ x\n", ":1: regular expression too complex"},
		{"regexp", "/a++++++++++++++++++++++++++/ x\n", ":1: regular expression too complex"},
		{"regexp", "/^(c+?\?\?)/ x\n", ":1: regular expression too complex (bounded or stacked"},
		/* repeated groups that match only positions: glibc's regcomp
		 * takes seconds to minutes on them (fuzz_map) */
		{"regexp", "/^(){5}{1,255}/ x\n", ":1: regular expression too complex"},
		{"regexp", "/(^){1,255}/ x\n", ":1: regular expression too complex"},
		{"regexp", "/((\\b))*/ x\n", ":1: regular expression too complex"},
		{"regexp", "/(/ x\n", ":1: error in regex"},
		{"regexp", "/(a)/ $3\n", ":1: out of range replacement index \"3\""},
		{"regexp", "/a/z x\n", ":1: unknown regexp option \"z\""},
		{"cidr", "192.0.2.1/24 x\n",
		 ":1: non-null host address bits in \"192.0.2.1/24\", perhaps you should use "
		 "\"192.0.2.0/24\" instead"},
		{"cidr", "2001:db8::1/32 x\n",
		 ":1: non-null host address bits in \"2001:db8::1/32\", "
		 "perhaps you should use \"[2001:db8::]/32\" instead"},
		{"cidr", "\n\nfoo x\n", ":3: bad network address \"foo\""},
		{"cidr", "1.2.3.4\n", ":1: no result"},
		{"cidr", "if 1.2.3.0/24\n", ":1: IF has no matching ENDIF"},
		{"texthash", "a b\nkeyonly\n", ":2: expected format: key whitespace value"},
		{"texthash", "\"a b\"\n", ":1: expected format: key whitespace value"},
		{"texthash", "a\\\n", ":1: expected format: key whitespace value"},
		{"texthash", "a b\n\"john doe@example.com REJECT\n", ":2: unbalanced '\"' in key"},
		{"texthash", "\"a\\\" b\n", ":1: unbalanced '\"' in key"},
		{"texthash", "a b\n\0x y\n", ":2: NUL character in line"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *name = sift_asprintf("err%zu", i);
		char *path = sift_asprintf("%s/%s", tmpdir, name);
		FILE *fp = fopen(path, "w");
		size_t n = strlen(cases[i].text);
		if (strstr(cases[i].want, "NUL"))
			n += 1 + strlen(cases[i].text + n + 1);
		fwrite(cases[i].text, 1, n, fp);
		fclose(fp);
		char *spec = sift_asprintf("%s:%s", cases[i].type, path);
		char *err = NULL;
		struct sift_map *m = sift_map_open(spec, &err);
		CHECK(m == NULL);
		char *want = sift_asprintf("%s%s", path, cases[i].want);
		CHECK(err && strncmp(err, want, strlen(want)) == 0);
		if (!err || strncmp(err, want, strlen(want)) != 0)
			fprintf(stderr, "  got:  %s\n  want: %s\n", err ? err : "(null)", want);
		free(want);
		free(err);
		sift_map_free(m);
		free(spec);
		free(path);
		free(name);
	}

	/* a FIFO (no writer): refused at once, not waited on in open(2) */
	char *fifo = sift_asprintf("%s/fifo", tmpdir);
	CHECK(mkfifo(fifo, 0600) == 0);
	for (int k = 0; k < 3; k++) {
		static const char *const types[] = {"texthash", "pcre", "cidr"};
		char *spec = sift_asprintf("%s:%s", types[k], fifo), *err = NULL;
		struct sift_map *m = sift_map_open(spec, &err);
		char *want = sift_asprintf("%s: a FIFO or socket, not a file", fifo);
		CHECK(m == NULL && err && strcmp(err, want) == 0);
		if (!err || strcmp(err, want) != 0)
			fprintf(stderr, "  got:  %s\n  want: %s\n", err ? err : "(null)", want);
		free(want);
		free(err);
		sift_map_free(m);
		free(spec);
	}
	unlink(fifo);
	free(fifo);

	static const struct {
		const char *spec, *want;
	} specs[] = {
		{"inline:{}", "bad syntax: \"inline:{}\""},
		{"inline:{ a }", "missing '=' after attribute name \"a\""},
		{"inline:{ a= }", "empty value"},
		{"inline:{ =b }", "empty name"},
		{"inline:{a=b", "bad syntax"},
		{"inline:{a=b}x", "bad syntax"},
		{"inline:{ {a=b }", "bad syntax"},
		{"inline:a=b", "bad syntax"},
		{"static:", "bad syntax: \"static:\": empty value"},
		{"static:{ }", "bad syntax"},
		{"dbm:/etc/aliases", "unsupported map type \"dbm\""},
		{"mysql:/etc/postfix/mysql.cf", "unsupported map type \"mysql\""},
		{"nocolon", "bad map \"nocolon\": need type:name"},
		{"texthash:", "bad map \"texthash:\": no file name"},
		{"pcre:/nonexistent/file", "cannot open /nonexistent/file: No such file"},
		{"cidr:/", "cannot open /: Is a directory"},
	};
	for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
		char *err = NULL;
		struct sift_map *m = sift_map_open(specs[i].spec, &err);
		CHECK(m == NULL);
		CHECK(err && strstr(err, specs[i].want));
		if (!err || !strstr(err, specs[i].want))
			fprintf(stderr, "  %s: got: %s\n", specs[i].spec, err ? err : "(null)");
		free(err);
		sift_map_free(m);
	}
	CHECK(sift_map_open(NULL, NULL) == NULL);
	char *r = (char *)"x";
	CHECK_INT(sift_map_lookup(NULL, "k", &r), 0);
	CHECK(r == NULL);
}

/* Concurrent lookups on one map from several threads. */
static struct sift_map *shared_map;

static void *worker(void *arg)
{
	long bad = 0;
	for (int i = 0; i < 2000; i++) {
		char key[64], want[64], *r = NULL;
		snprintf(key, sizeof(key), "user%d@example.com", i);
		snprintf(want, sizeof(want), "u=user%d", i);
		if (sift_map_lookup(shared_map, key, &r) != 1 || strcmp(r, want) != 0)
			bad++;
		free(r);
		if (sift_map_lookup(shared_map, "other", &r) != 0)
			bad++;
	}
	return (void *)bad;
}

static void test_threads(void)
{
	char *path = write_file("t.pcre", "/^(x)?y/ never\n/^([a-z0-9]+)@example\\.com$/ u=$1\n");
	char *spec = sift_asprintf("pcre:%s", path);
	char *err = NULL;
	shared_map = sift_map_open(spec, &err);
	CHECK(shared_map != NULL);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (int i = 0; i < 4; i++) {
		void *bad;
		pthread_join(th[i], &bad);
		CHECK_INT((long)bad, 0);
	}
	sift_map_free(shared_map);
	free(spec);
	free(path);
}

static void test_large_texthash(void)
{
	struct sift_buf b = {0};
	for (int i = 0; i < 20000; i++)
		sift_buf_printf(&b, "Key%d value%d\n", i, i);
	char *path = write_file("big", sift_buf_str(&b));
	char *spec = sift_asprintf("texthash:%s", path);
	struct sift_map *m = sift_map_open(spec, NULL);
	CHECK(m != NULL);
	int ok = 0;
	for (int i = 0; i < 20000; i += 7) {
		char key[32], want[32], *r = NULL;
		snprintf(key, sizeof(key), "KEY%d", i);
		snprintf(want, sizeof(want), "value%d", i);
		ok += sift_map_lookup(m, key, &r) == 1 && strcmp(r, want) == 0;
		free(r);
	}
	CHECK_INT(ok, (20000 + 6) / 7);
	sift_map_free(m);
	sift_buf_free(&b);
	free(spec);
	free(path);
}

/* ---- indexed tables made by postmap ---------------------------------------- */

static const char *const idx_types[] = {"hash", "btree", "lmdb", "cdb"};
#define N_IDX_TYPES (sizeof(idx_types) / sizeof(idx_types[0]))

/* Runs `postmap [opts] TYPE:PATH`; 0 on success. */
static int postmap_build(const char *opts, const char *type, const char *path)
{
	char *cmd =
		sift_asprintf("MAIL_CONFIG='%s' postmap %s %s:'%s' 2>/dev/null", tmpdir, opts, type, path);
	int st = system(cmd);
	free(cmd);
	return st == 0 ? 0 : -1;
}

static const char indexed_source[] = "# comment\n"
				     "Foo bar\n"
				     "foo dup-ignored\n"
				     "key1   value with  spaces   \n"
				     "multi first\n"
				     "  second\n"
				     "\tthird\n"
				     "\n"
				     "UPPER MixedCase Value\n"
				     "user@example.com OK\n"
				     "user+tag@Example.COM REJECT tagged\n"
				     "@example.org REJECT domain\n"
				     "example.net 550 5.7.1 go away\n"
				     "192.0.2.1\tDUNNO\n"
				     "2001:db8::1 v6\n"
				     "novalue\n"
				     "{key with space} braced\n"
				     "\xc3\x84\x62\x63 umlaut\n"
				     "dollar $1 $$ ${x}\n"
				     "quote \"q\" 'x'\n"
				     "\"john doe\"@example.com REJECT quoted key\n";

static const struct lcase indexed_cases[] = {
	{"foo", "bar"},
	{"FOO", "bar"},
	{"fOo", "bar"},
	{"key1", "value with  spaces"},
	{"multi", "first  second\tthird"},
	{"upper", "MixedCase Value"},
	{"UPPER", "MixedCase Value"},
	{"user@example.com", "OK"},
	{"USER@EXAMPLE.COM", "OK"},
	{"user+tag@example.com", "REJECT tagged"},
	{"@example.org", "REJECT domain"},
	{"example.org", NULL},
	{"EXAMPLE.NET", "550 5.7.1 go away"},
	{"192.0.2.1", "DUNNO"},
	{"2001:DB8::1", "v6"},
	{"novalue", NULL}, /* postmap skips a key without a value */
	{"key with space", NULL},
	{"{key", "with space} braced"},
	{"\xc3\x84"
	 "BC",
	 "umlaut"}, /* ASCII folding only */
	{"\xc3\xa4"
	 "bc",
	 NULL},
	{"dollar", "$1 $$ ${x}"},
	{"quote", "\"q\" 'x'"},
	{"\"John Doe\"@example.com", "REJECT quoted key"}, /* postmap keeps the quotes */
	{"john doe@example.com", NULL},
	{"missing", NULL},
	{"", NULL},
	{"foo bar", NULL},
	{"comment", NULL},
	{"#", NULL},
	{"second", NULL},
};

static void expect_lookup(const struct sift_map *m, const char *key, int want_rc, const char *want)
{
	char *r = NULL;
	int rc = sift_map_lookup(m, key, &r);
	CHECK_INT(rc, want_rc);
	CHECK_STR(r, want);
	if (rc != want_rc || (want && (!r || strcmp(r, want))))
		fprintf(stderr, "  map %s key \"%s\": got %d \"%s\"\n", sift_map_spec(m), key, rc,
			r ? r : "");
	free(r);
}

/* Looks every key up in spec and compares with one `postmap -q - spec`
 * run, which reads keys from its input and prints "key<TAB>value" for each
 * one found (and exits 1 when it found none). */
static void check_map_batch(const char *spec, const struct lcase *cases, size_t n)
{
	char *err = NULL;
	struct sift_map *m = sift_map_open(spec, &err);
	CHECK(m != NULL);
	if (!m) {
		fprintf(stderr, "  open %s: %s\n", spec, err ? err : "?");
		free(err);
		return;
	}
	struct sift_buf keys = {0}, want = {0};
	for (size_t i = 0; i < n; i++) {
		char *r = NULL;
		int rc = sift_map_lookup(m, cases[i].key, &r);
		CHECK_INT(rc, cases[i].want ? 1 : 0);
		CHECK_STR(r, cases[i].want);
		if (rc != (cases[i].want ? 1 : 0) || (r && cases[i].want && strcmp(r, cases[i].want)))
			fprintf(stderr, "  map %s key \"%s\"\n", spec, cases[i].key);
		/* an empty key: postmap skips it, or dies (lmdb without NULs:
		 * "MDB_BAD_VALSIZE"); we answer "not found" */
		if (!*cases[i].key)
			continue;
		sift_buf_printf(&keys, "%s\n", cases[i].key);
		if (rc == 1)
			sift_buf_printf(&want, "%s\t%s\n", cases[i].key, r);
		free(r);
	}
	sift_map_free(m);
	char *kf = write_file("batch-keys", sift_buf_str(&keys));
	char *cmd = sift_asprintf("MAIL_CONFIG='%s' postmap -q - '%s' < '%s' 2>/dev/null", tmpdir, spec, kf);
	FILE *fp = popen(cmd, "r");
	CHECK(fp != NULL);
	struct sift_buf got = {0};
	if (fp) {
		char chunk[512];
		size_t k;
		while ((k = fread(chunk, 1, sizeof(chunk), fp)) > 0)
			sift_buf_add(&got, chunk, k);
		int st = pclose(fp);
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == (want.len ? 0 : 1));
	}
	CHECK_STR(sift_buf_str(&got), sift_buf_str(&want));
	postmap_compared += (int)n;
	sift_buf_free(&got);
	sift_buf_free(&keys);
	sift_buf_free(&want);
	free(cmd);
	free(kf);
}

/* The same source through postmap with its default, with NUL bytes (-N)
 * and without (-n), for each type. */
static void test_indexed(void)
{
	static const char *const modes[] = {"", "-N", "-n"};
	for (size_t t = 0; t < N_IDX_TYPES; t++) {
		for (size_t mo = 0; mo < 3; mo++) {
			char *name = sift_asprintf("idx-%s%s", idx_types[t], modes[mo]);
			char *path = write_file(name, indexed_source);
			int built = postmap_build(modes[mo], idx_types[t], path);
			CHECK_INT(built, 0);
			if (built == 0) {
				char *spec = sift_asprintf("%s:%s", idx_types[t], path);
				check_map_batch(spec, indexed_cases,
						sizeof(indexed_cases) / sizeof(indexed_cases[0]));
				/* longer than LMDB's key limit: simply not found */
				char longkey[2000];
				memset(longkey, 'a', sizeof(longkey) - 1);
				longkey[sizeof(longkey) - 1] = 0;
				struct sift_map *m = sift_map_open(spec, NULL);
				CHECK(m != NULL);
				if (m)
					expect_lookup(m, longkey, 0, NULL);
				sift_map_free(m);
				free(spec);
			} else {
				fprintf(stderr, "  postmap %s %s:%s failed\n", modes[mo], idx_types[t], path);
			}
			free(path);
			free(name);
		}
	}
}

/* Non-ASCII keys as Postfix folds them with smtputf8_enable = yes (its
 * default from compatibility_level 1 on, as Debian's main.cf has it):
 * Unicode full case folding, in postmap's files and in our lookups; a
 * file that postmap built with smtputf8_enable = no (ASCII folding only,
 * test_indexed) still answers. */
static const char utf8_source[] =
	"M\xc3\x9cLLER@example.de umlaut\n"
	"Stra\xc3\x9f"
	"e@example.de sharp-s\n"
	"\xce\xa3\xce\xaf\xcf\x83\xcf\x85\xcf\x86\xce\xbf\xcf\x82@example.gr sigma\n"
	"ascii@Example.COM plain\n";

static const struct lcase utf8_cases[] = {
	{"m\xc3\xbcller@example.de", "umlaut"},
	{"M\xc3\x9cLLER@EXAMPLE.DE", "umlaut"},
	{"mÜller@example.de", "umlaut"},
	{"strasse@example.de", "sharp-s"},
	{"STRASSE@example.de", "sharp-s"},
	{"stra\xc3\x9f"
	 "e@example.de",
	 "sharp-s"},
	{"\xce\xa3\xce\x8a\xce\xa3\xce\xa5\xce\xa6\xce\x9f\xce\xa3@example.gr", "sigma"},
	{"\xcf\x83\xce\xaf\xcf\x83\xcf\x85\xcf\x86\xce\xbf\xcf\x83@example.gr", "sigma"},
	{"ASCII@example.com", "plain"},
	{"muller@example.de", NULL},
	{"stra@example.de", NULL},
};

static void test_utf8_fold(void)
{
	free(write_file("main.cf", "compatibility_level = 3.6\n"));
	char *path = write_file("utf8", utf8_source);
	char *spec = sift_asprintf("texthash:%s", path);
	CHECK_MAP(spec, utf8_cases);
	free(spec);
	for (size_t t = 0; t < N_IDX_TYPES; t++) {
		char *name = sift_asprintf("utf8-%s", idx_types[t]);
		char *ipath = write_file(name, utf8_source);
		int built = postmap_build("", idx_types[t], ipath);
		CHECK_INT(built, 0);
		if (built == 0) {
			spec = sift_asprintf("%s:%s", idx_types[t], ipath);
			check_map_batch(spec, utf8_cases, sizeof(utf8_cases) / sizeof(utf8_cases[0]));
			free(spec);
		}
		free(ipath);
		free(name);
	}
	free(path);
	free(write_file("main.cf", ""));
}

/* Replaces path (by rename, so an open mapping of the old file stays
 * valid). */
static void replace_file(const char *path, const char *text, size_t len)
{
	char *tmp = sift_asprintf("%s.new", path);
	FILE *fp = fopen(tmp, "w");
	CHECK(fp != NULL);
	if (fp) {
		fwrite(text, 1, len, fp);
		fclose(fp);
		CHECK_INT(rename(tmp, path), 0);
	}
	free(tmp);
}

/* postmap after an edit takes effect at the next lookup; a file that
 * disappears or turns bad makes lookups fail (-1) until it is rebuilt. */
static void test_indexed_reopen(void)
{
	static const char *const suffix[] = {".db", ".db", ".lmdb", ".cdb"};
	for (size_t t = 0; t < N_IDX_TYPES; t++) {
		char *name = sift_asprintf("reopen-%s", idx_types[t]);
		char *path = write_file(name, "k v1\nold gone-later\n");
		char *file = sift_asprintf("%s%s", path, suffix[t]);
		char *spec = sift_asprintf("%s:%s", idx_types[t], path);
		CHECK_INT(postmap_build("", idx_types[t], path), 0);
		char *err = NULL;
		struct sift_map *m = sift_map_open(spec, &err);
		CHECK(m != NULL);
		if (!m) {
			fprintf(stderr, "  open %s: %s\n", spec, err ? err : "?");
			free(err);
			goto next;
		}
		expect_lookup(m, "k", 1, "v1");
		expect_lookup(m, "old", 1, "gone-later");
		expect_lookup(m, "new", 0, NULL);

		/* rebuilt within the same second, same size */
		free(write_file(name, "k v2\nnew added\n"));
		CHECK_INT(postmap_build("", idx_types[t], path), 0);
		expect_lookup(m, "k", 1, "v2");
		expect_lookup(m, "K", 1, "v2");
		expect_lookup(m, "new", 1, "added");
		expect_lookup(m, "old", 0, NULL);

		/* rebuilt with NUL bytes the other way round */
		free(write_file(name, "k v3\n"));
		CHECK_INT(postmap_build(t == 3 ? "-N" : "-n", idx_types[t], path), 0);
		expect_lookup(m, "k", 1, "v3");
		expect_lookup(m, "new", 0, NULL);

		/* removed: a temporary failure, not "not found" */
		CHECK_INT(unlink(file), 0);
		expect_lookup(m, "k", -1, NULL);
		expect_lookup(m, "k", -1, NULL);

		/* garbage in its place */
		static char junk[8192];
		memset(junk, 'x', sizeof(junk));
		replace_file(file, junk, t == 3 ? 100 : sizeof(junk));
		expect_lookup(m, "k", -1, NULL);

		/* rebuilt (postmap refuses to overwrite a file that is not its
		 * type): works again */
		CHECK_INT(unlink(file), 0);
		free(write_file(name, "k v4\n"));
		CHECK_INT(postmap_build("", idx_types[t], path), 0);
		expect_lookup(m, "k", 1, "v4");
		sift_map_free(m);
	next:
		free(spec);
		free(file);
		free(path);
		free(name);
	}
}

static void test_indexed_errors(void)
{
	char *src = write_file("nodb", "a b\n");
	char *junk = write_file("junk.db", "this is not a database\n");
	free(write_file("junk.lmdb", "this is not a database\n"));
	free(write_file("junk.cdb", "this is not a database\n"));
	char *bt = write_file("bt", "a b\n");
	CHECK_INT(postmap_build("", "btree", bt), 0);
	char *hs = write_file("hs", "a b\n");
	CHECK_INT(postmap_build("", "hash", hs), 0);
	char *dir = sift_asprintf("%s/adir.cdb", tmpdir);
	CHECK_INT(mkdir(dir, 0700), 0);
	struct {
		char *spec, *want;
	} cases[] = {
		{sift_asprintf("hash:%s", src),
		 sift_asprintf("cannot open %s.db: No such file or directory (run \"postmap hash:%s\")", src,
			       src)},
		{sift_asprintf("lmdb:%s", src),
		 sift_asprintf("cannot open %s.lmdb: No such file or directory (run \"postmap lmdb:%s\")",
			       src, src)},
		{sift_asprintf("cdb:%s/none", tmpdir),
		 sift_asprintf("cannot open %s/none.cdb: No such file or directory", tmpdir)},
		{sift_asprintf("hash:%s/junk", tmpdir),
		 sift_asprintf("cannot open %s/junk.db: not a Berkeley DB hash file (unexpected file type or "
			       "format); rebuild it with \"postmap hash:%s/junk\"",
			       tmpdir, tmpdir)},
		{sift_asprintf("hash:%s", bt),
		 sift_asprintf("cannot open %s.db: not a Berkeley DB hash file", bt)},
		{sift_asprintf("btree:%s", hs),
		 sift_asprintf("cannot open %s.db: not a Berkeley DB btree file", hs)},
		{sift_asprintf("lmdb:%s/junk", tmpdir),
		 sift_asprintf("cannot open %s/junk.lmdb: not a LMDB file", tmpdir)},
		{sift_asprintf("cdb:%s/junk", tmpdir),
		 sift_asprintf("cannot open %s/junk.cdb: not a CDB file (too short or corrupt)", tmpdir)},
		{sift_asprintf("cdb:%s/adir", tmpdir),
		 sift_asprintf("cannot open %s/adir.cdb: Is a directory", tmpdir)},
		{sift_strdup("hash:"), sift_strdup("bad map \"hash:\": no file name")},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *err = NULL;
		struct sift_map *m = sift_map_open(cases[i].spec, &err);
		CHECK(m == NULL);
		CHECK(err && strncmp(err, cases[i].want, strlen(cases[i].want)) == 0);
		if (!err || strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
			fprintf(stderr, "  %s:\n    got:  %s\n    want: %s\n", cases[i].spec,
				err ? err : "(null)", cases[i].want);
		free(err);
		sift_map_free(m);
		free(cases[i].spec);
		free(cases[i].want);
	}
	free(dir);
	free(src);
	free(junk);
	free(bt);
	free(hs);
}

/* Threads look up while postmap rebuilds the table under them: every
 * answer is the old or the new value, never an error or "not found". */
static struct sift_map *idx_map;
static atomic_bool idx_stop;

static void *idx_worker(void *arg)
{
	long bad = 0, n = 0;
	(void)arg;
	while (!atomic_load(&idx_stop) || n < 100) {
		char *r = NULL;
		int rc = sift_map_lookup(idx_map, "Key", &r);
		if (rc != 1 || (strcmp(r, "old") && strcmp(r, "new")))
			bad++;
		free(r);
		if (sift_map_lookup(idx_map, "absent", &r) != 0)
			bad++;
		n++;
	}
	return (void *)bad;
}

static void test_indexed_threads(void)
{
	struct sift_buf big = {0};
	for (int i = 0; i < 3000; i++)
		sift_buf_printf(&big, "filler%d value%d\n", i, i);
	for (size_t t = 0; t < N_IDX_TYPES; t++) {
		char *name = sift_asprintf("thr-%s", idx_types[t]);
		struct sift_buf src = {0};
		sift_buf_printf(&src, "key old\n%s", sift_buf_str(&big));
		char *path = write_file(name, sift_buf_str(&src));
		CHECK_INT(postmap_build("", idx_types[t], path), 0);
		char *spec = sift_asprintf("%s:%s", idx_types[t], path);
		idx_map = sift_map_open(spec, NULL);
		CHECK(idx_map != NULL);
		if (idx_map) {
			atomic_store(&idx_stop, false);
			pthread_t th[4];
			for (int i = 0; i < 4; i++)
				pthread_create(&th[i], NULL, idx_worker, NULL);
			for (int round = 0; round < 6; round++) {
				sift_buf_free(&src);
				sift_buf_printf(&src, "key %s\n%s", round % 2 ? "old" : "new",
						sift_buf_str(&big));
				free(write_file(name, sift_buf_str(&src)));
				CHECK_INT(postmap_build("", idx_types[t], path), 0);
			}
			atomic_store(&idx_stop, true);
			for (int i = 0; i < 4; i++) {
				void *bad;
				pthread_join(th[i], &bad);
				CHECK_INT((long)bad, 0);
				if ((long)bad)
					fprintf(stderr, "  %s: %ld bad lookups\n", spec, (long)bad);
			}
			expect_lookup(idx_map, "key", 1, "old");
			expect_lookup(idx_map, "filler2999", 1, "value2999");
			sift_map_free(idx_map);
		}
		sift_buf_free(&src);
		free(spec);
		free(path);
		free(name);
	}
	sift_buf_free(&big);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	free(write_file("main.cf", "")); /* postmap needs a main.cf */
	char *probe = sift_asprintf("MAIL_CONFIG='%s' postmap -q x static:y >/dev/null 2>&1", tmpdir);
	have_postmap = system(probe) == 0;
	free(probe);
	if (!have_postmap)
		fprintf(stderr, "note: postmap not available: not comparing with Postfix\n");

	test_texthash();
	test_pcre();
	test_pcre_long_keys();
	test_regexp();
	test_cidr();
	test_is_pattern();
	test_inline_static();
	test_errors();
	test_threads();
	test_large_texthash();
	test_indexed();
	test_utf8_fold();
	test_indexed_reopen();
	test_indexed_errors();
	test_indexed_threads();

	if (have_postmap)
		printf("compared %d lookups with postmap\n", postmap_compared);
	char *cmd = sift_asprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	free(cmd);
	return t_done();
}
