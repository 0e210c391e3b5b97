/*
 * test_config.c - lib/config.c: main.cf syntax, FILE.d/ snippets, -o
 * overrides, defaults, $name expansion (loops, depth, conditionals) and the
 * unknown-name warning. Table-driven where the cases are data.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static char tmpdir[] = "/tmp/sift-test-config.XXXXXX";

static char *write_file(const char *name, const char *text)
{
	return t_write_file(tmpdir, name, text);
}

static char *get(const struct sift_config *cfg, const char *name)
{
	static char *last;
	free(last);
	char *err = NULL;
	last = sift_config_get(cfg, name, &err);
	if (err) {
		last = sift_asprintf("ERR:%s", err);
		free(err);
	}
	return last;
}

static void test_syntax(void)
{
	char *path = write_file("main.cf", "# a comment\n"
					   "alpha = one\n"
					   "\n"
					   "beta=two  \n"
					   "   # an indented comment\n"
					   "gamma = first\n"
					   "   second\n"
					   "# comment inside a continued value\n"
					   "\tthird\n"
					   "delta =\n"
					   "alpha = one again\n"
					   "eps_1 = a = b # not a comment\n"
					   "crlf = value\r\n"
					   "  \n"
					   "last = x");
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	CHECK_INT(sift_config_load(cfg, path, false, &err), 0);
	CHECK_STR(err, NULL);
	static const struct {
		const char *name, *value, *where_suffix;
	} cases[] = {
		{"alpha", "one again", ":11"},
		{"beta", "two", ":4"},
		{"gamma", "first   second\tthird", ":6"},
		{"delta", "", ":10"},
		{"eps_1", "a = b # not a comment", ":12"},
		{"crlf", "value", ":13"},
		{"last", "x", ":15"},
		{"missing", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *where = NULL;
		const char *raw = sift_config_raw(cfg, cases[i].name, &where);
		CHECK_STR(raw, cases[i].value);
		CHECK_STR(get(cfg, cases[i].name), cases[i].value);
		if (cases[i].where_suffix) {
			char *want = sift_asprintf("%s%s", path, cases[i].where_suffix);
			CHECK_STR(where, want);
			free(want);
		}
	}
	sift_config_free(cfg);
	free(path);
}

struct collect {
	struct sift_buf b;
};

static void collect_fn(const char *name, const char *raw, const char *where, void *arg)
{
	struct collect *c = arg;
	sift_buf_printf(&c->b, "%s=%s;", name, raw);
}

static void test_dir_and_overrides(void)
{
	char *path = write_file("f.conf", "b = 1\na = 1\nc = 1\n");
	char *dir = sift_asprintf("%s/f.conf.d", tmpdir);
	mkdir(dir, 0755);
	free(write_file("f.conf.d/20-b.conf", "a = 20\nd = 20\n"));
	free(write_file("f.conf.d/10-a.conf", "a = 10\ne = 10\n"));
	free(write_file("f.conf.d/30-ignored.txt", "a = txt\n"));
	free(write_file("f.conf.d/.hidden.conf", "a = hidden\n"));
	char *sub = sift_asprintf("%s/f.conf.d/40-dir.conf", tmpdir);
	mkdir(sub, 0755);

	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	CHECK_INT(sift_config_load(cfg, path, false, &err), 0);
	CHECK_STR(err, NULL);
	CHECK_STR(get(cfg, "a"), "20");
	CHECK_STR(get(cfg, "d"), "20");
	CHECK_STR(get(cfg, "e"), "10");
	const char *where;
	sift_config_raw(cfg, "a", &where);
	char *want = sift_asprintf("%s/f.conf.d/20-b.conf:1", tmpdir);
	CHECK_STR(where, want);
	free(want);

	CHECK_INT(sift_config_set(cfg, "a = over ride", "-o", &err), 0);
	CHECK_INT(sift_config_set(cfg, "new=1", NULL, &err), 0);
	CHECK_STR(get(cfg, "a"), "over ride");
	sift_config_raw(cfg, "a", &where);
	CHECK_STR(where, "-o");

	static const char *const bad_sets[] = {"novalue", "=x", "bad name = x", "a-b = 1", "a = x\ny"};
	for (size_t i = 0; i < sizeof(bad_sets) / sizeof(bad_sets[0]); i++) {
		err = NULL;
		CHECK_INT(sift_config_set(cfg, bad_sets[i], "-o", &err), -1);
		CHECK(err && strncmp(err, "-o: ", 4) == 0);
		free(err);
	}

	/* each(): first-set order, current values */
	struct collect c = {{0}};
	sift_config_each(cfg, collect_fn, &c);
	CHECK_STR(sift_buf_str(&c.b), "b=1;a=over ride;c=1;e=10;d=20;new=1;");
	sift_buf_free(&c.b);
	sift_config_free(cfg);

	/* optional and missing files */
	cfg = sift_config_new();
	char *nofile = sift_asprintf("%s/nonexistent.conf", tmpdir);
	err = NULL;
	CHECK_INT(sift_config_load(cfg, nofile, true, &err), 0);
	CHECK_STR(err, NULL);
	CHECK_INT(sift_config_load(cfg, nofile, false, &err), -1);
	CHECK(err && strstr(err, "nonexistent.conf") && strstr(err, "No such file"));
	free(err);
	err = NULL;
	CHECK_INT(sift_config_load(cfg, tmpdir, false, &err), -1); /* a directory */
	CHECK(err != NULL);
	free(err);
	sift_config_free(cfg);
	free(nofile);
	free(sub);
	free(dir);
	free(path);
}

static void test_errors(void)
{
	static const struct {
		const char *text;
		const char *want; /* suffix after the path */
	} cases[] = {
		{"a = 1\nno equals sign\n", ":2: missing '='"},
		{"  a = 1\n", ":1: logical line must not start with white space"},
		{"# c\n\n= 1\n", ":3: missing parameter name"},
		{"a b = 1\n", ":1: bad character in parameter name"},
		{"a = 1\n\nb.c = 2\n", ":3: bad character"},
		{"a = 1\nb = x\0y\n", ":2: NUL character"},
		{"$x = 1\n", ":1: bad character"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *path = sift_asprintf("%s/err%zu.cf", tmpdir, i);
		FILE *fp = fopen(path, "w");
		/* write with embedded NULs: the length up to the double NUL */
		size_t n = strlen(cases[i].text);
		if (strstr(cases[i].want, "NUL"))
			n += 1 + strlen(cases[i].text + n + 1);
		fwrite(cases[i].text, 1, n, fp);
		fclose(fp);
		struct sift_config *cfg = sift_config_new();
		char *err = NULL;
		CHECK_INT(sift_config_load(cfg, path, false, &err), -1);
		char *want = sift_asprintf("%s%s", path, cases[i].want);
		CHECK(err && strncmp(err, want, strlen(want)) == 0);
		if (!err || strncmp(err, want, strlen(want)) != 0)
			fprintf(stderr, "  got: %s\n  want prefix: %s\n", err ? err : "(null)", want);
		free(want);
		free(err);
		sift_config_free(cfg);
		free(path);
	}
}

static void test_expansion(void)
{
	struct sift_config *cfg = sift_config_new();
	static const char *const sets[] = {
		"host = mx.example.com",
		"domain = example.com",
		"origin = $domain",
		"both = ${host}/$(domain)",
		"nested = [$both]",
		"dollar = cost $$5 and $$$domain",
		"undef = <$nosuchthing>",
		"empty =",
		"stray = a $ b $, $-x",
		"cond_set = ${domain?yes}",
		"cond_unset = ${nosuch?yes}",
		"cond_empty = ${empty?yes}",
		"alt_set = ${domain:no}",
		"alt_unset = ${nosuch:fallback $domain}",
		"braces = ${domain?{is $domain}:{none}}",
		"braces2 = ${nosuch?{is}:{none $host}}",
		"braces3 = ${empty?{x}}",
		"spaces = ${ domain }",
		"loop_a = $loop_b",
		"loop_b = x$loop_a",
		"self = $self",
		"cond_loop = ${cond_loop?$cond_loop}",
		"unbal = ${domain",
		"unbal2 = $(domain",
		"badname = ${do main}",
		"badname2 = ${}",
		"badcond = ${domain?{x}y}",
		"use_loop = ok $loop_a",
		"name_end = $domain.org",
	};
	char *err = NULL;
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		CHECK_INT(sift_config_set(cfg, sets[i], "-o", &err), 0);
	static const struct {
		const char *name, *want;
	} cases[] = {
		{"origin", "example.com"},
		{"both", "mx.example.com/example.com"},
		{"nested", "[mx.example.com/example.com]"},
		{"dollar", "cost $5 and $example.com"},
		{"undef", "<>"},
		{"empty", ""},
		{"stray", "a $ b $, $-x"},
		{"cond_set", "yes"},
		{"cond_unset", ""},
		{"cond_empty", ""},
		{"alt_set", ""},
		{"alt_unset", "fallback example.com"},
		{"braces", "is example.com"},
		{"braces2", "none mx.example.com"},
		{"braces3", ""},
		{"spaces", "example.com"},
		{"name_end", "example.com.org"},
		{"loop_a", "ERR:-o: loop_a: recursive reference to $loop_a"},
		{"self", "ERR:-o: self: recursive reference to $self"},
		{"cond_loop", "ERR:-o: cond_loop: recursive reference to $cond_loop"},
		{"use_loop", "ERR:-o: use_loop: recursive reference to $loop_a"},
		{"unbal", "ERR:-o: unbal: missing '}' after \"${\""},
		{"unbal2", "ERR:-o: unbal2: missing ')' after \"$(\""},
		{"badname", "ERR:-o: badname: bad character 'm' in \"${do main}\""},
		{"badname2", "ERR:-o: badname2: empty or bad parameter name in \"${}\""},
		{"badcond", "ERR:-o: badcond: text after '}' in conditional"},
		{"nosuch", NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK_STR(get(cfg, cases[i].name), cases[i].want);

	/* sift_config_expand on free text */
	char *s = sift_config_expand(cfg, "at $host: ${domain?ok}", &err);
	CHECK_STR(s, "at mx.example.com: ok");
	free(s);
	err = NULL;
	s = sift_config_expand(cfg, "$self", &err);
	CHECK(s == NULL && err != NULL);
	free(err);

	/* depth bound: a chain of 200 references */
	for (int i = 0; i < 200; i++) {
		char *a = sift_asprintf("chain%d = x$chain%d", i, i + 1);
		CHECK_INT(sift_config_set(cfg, a, "-o", NULL), 0);
		free(a);
	}
	CHECK_INT(strlen(get(cfg, "chain150")), 50);
	CHECK(strstr(get(cfg, "chain0"), "nested too deeply") != NULL);

	/* exponential blow-up: 40 levels of $a$a; and the same with no output */
	for (int i = 0; i < 40; i++) {
		char *a = sift_asprintf("exp%d = $exp%d$exp%d", i, i + 1, i + 1);
		char *b = sift_asprintf("cexp%d = ${cexp%d?}${cexp%d?}$cexp%d$cexp%d", i, i + 1, i + 1, i + 1,
					i + 1);
		CHECK_INT(sift_config_set(cfg, a, "-o", NULL), 0);
		CHECK_INT(sift_config_set(cfg, b, "-o", NULL), 0);
		free(a);
		free(b);
	}
	CHECK_INT(sift_config_set(cfg, "exp40 = 0123456789", "-o", NULL), 0);
	CHECK(strncmp(get(cfg, "exp0"), "ERR:", 4) == 0);
	CHECK(strncmp(get(cfg, "cexp0"), "ERR:", 4) == 0);
	CHECK_INT(strlen(get(cfg, "exp30")), 10240);
	sift_config_free(cfg);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Nested conditionals and long values: bounded depth (no stack overflow)
 * and bounded work (no rescanning per level, no blow-up through
 * references to long values). */
static void test_expansion_bounds(void)
{
	/* 100,000 nested ${x:...} in a 500 KB line, from a file: refused
	 * quickly, naming the file, line and parameter */
	struct sift_buf b = {0};
	sift_buf_adds(&b, "a = 1\nmyhostname = ");
	for (int i = 0; i < 100000; i++)
		sift_buf_adds(&b, "${x:");
	sift_buf_adds(&b, "h");
	for (int i = 0; i < 100000; i++)
		sift_buf_adds(&b, "}");
	sift_buf_adds(&b, "\n");
	char *path = write_file("deep.cf", sift_buf_str(&b));
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	CHECK_INT(sift_config_load(cfg, path, false, &err), 0);
	double t0 = now_s();
	char *want = sift_asprintf("ERR:%s:2: myhostname: expansions nested more than 256 levels deep", path);
	CHECK_STR(get(cfg, "myhostname"), want);
	CHECK(now_s() - t0 < 1.0);
	free(want);
	sift_config_free(cfg);
	free(path);
	sift_buf_free(&b);

	cfg = sift_config_new();
	/* 200 levels are fine, 300 are not */
	for (int n = 200; n <= 300; n += 100) {
		sift_buf_printf(&b, "deep%d = ", n);
		for (int i = 0; i < n; i++)
			sift_buf_adds(&b, "${x:{");
		sift_buf_adds(&b, "h");
		for (int i = 0; i < n; i++)
			sift_buf_adds(&b, "}}");
		CHECK_INT(sift_config_set(cfg, sift_buf_str(&b), "-o", NULL), 0);
		b.len = 0;
	}
	CHECK_STR(get(cfg, "deep200"), "h");
	CHECK_STR(get(cfg, "deep300"), "ERR:-o: deep300: expansions nested more than 256 levels deep");

	/* brackets of the other kind and unbalanced ones inside a conditional */
	CHECK_INT(sift_config_set(cfg, "mixed = ${x:a(b}c)d}", "-o", NULL), 0);
	CHECK_STR(get(cfg, "mixed"), "a(bc)d}");
	CHECK_INT(sift_config_set(cfg, "mixed2 = $(x:a{b)c}d)", "-o", NULL), 0);
	CHECK_STR(get(cfg, "mixed2"), "a{bc}d)");
	CHECK_INT(sift_config_set(cfg, "mixed3 = ${x?{a}:{b(}}", "-o", NULL), 0);
	CHECK_STR(get(cfg, "mixed3"), "b(");

	/* a 1 MB conditional whose text is skipped, referred to 100,000
	 * times: each reference examines the whole text (500 KB of white space
	 * in its header), so the work bound stops it, quickly */
	sift_buf_adds(&b, "big = ${x");
	for (int i = 0; i < 500000; i++)
		sift_buf_adds(&b, " ");
	sift_buf_adds(&b, "?");
	for (int i = 0; i < 500000; i++)
		sift_buf_adds(&b, "y");
	sift_buf_adds(&b, "}");
	CHECK_INT(sift_config_set(cfg, sift_buf_str(&b), "-o", NULL), 0);
	b.len = 0;
	sift_buf_adds(&b, "many = ");
	for (int i = 0; i < 100000; i++)
		sift_buf_adds(&b, "$big");
	CHECK_INT(sift_config_set(cfg, sift_buf_str(&b), "-o", NULL), 0);
	CHECK_STR(get(cfg, "big"), "");
	t0 = now_s();
	CHECK(strstr(get(cfg, "many"), "expansion examines more than 64 MiB") != NULL);
	CHECK(now_s() - t0 < 2.0);
	sift_buf_free(&b);
	sift_config_free(cfg);
}

/* Error messages never show a secret: -o assignments refused, expansion
 * errors in a secret's value or in a value holding password=... */
static void test_secret_errors(void)
{
	struct sift_config *cfg = sift_config_new();
	static const struct {
		const char *assignment, *want;
	} sets[] = {
		{"state_store=redis:127.0.0.1:6379,password=s3cretpw\r",
		 "-o: \"state_store=redis:127.0.0.1:6379,password=********\r\": line break in value"},
		{"redis_password s3cretpw",
		 "-o: \"redis_password ********\": missing '=' after parameter name"},
		{"redis_password=s3cret\npw", "-o: \"redis_password=********\": line break in value"},
		{"a b=password=s3cretpw", "-o: \"a b=password=********\": bad character in parameter name "
					  "(use letters, digits and '_')"},
	};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
		char *err = NULL;
		CHECK_INT(sift_config_set(cfg, sets[i].assignment, "-o", &err), -1);
		CHECK_STR(err, sets[i].want);
		free(err);
	}
	CHECK_INT(sift_config_set(cfg, "redis_password = ab${x!s3cret}", "-o", NULL), 0);
	CHECK_STR(get(cfg, "redis_password"), "ERR:-o: redis_password: bad character '*' in \"${********}\"");
	CHECK_INT(sift_config_set(cfg, "store = redis:h:1,${x!password=s3cret}", "-o", NULL), 0);
	CHECK_STR(get(cfg, "store"), "ERR:-o: store: bad character '!' in \"${x!password=********");
	char *err = NULL;
	CHECK(sift_config_expand(cfg, "${ !password=s3cret}", &err) == NULL);
	CHECK_STR(err, "empty or bad parameter name in \"${ !password=********");
	free(err);
	sift_config_free(cfg);
}

static const struct sift_param tab[] = {
	{"timeout", SIFT_P_TIME, "10s", 0, 0, 0, NULL, "doc"},
	{"server", SIFT_P_STRING, "$myhostname", 0, 0, 0, NULL, "doc"},
	{"list", SIFT_P_LIST, "", 0, 0, 0, NULL, "doc"},
	SIFT_PARAM_END,
};
static const struct sift_param host_tab[] = {
	{"error_action", SIFT_P_ENUM, "tempfail", 0, 0, 0, "tempfail|accept", "doc"},
	SIFT_PARAM_END,
};
static const struct sift_param common_tab[] = {
	{"myhostname", SIFT_P_STRING, "localhost", 0, 0, 0, NULL, "doc"},
	SIFT_PARAM_END,
};

static void test_defaults_and_unknown(void)
{
	char *path = write_file("d.cf", "dkim_timeout = 5s\n"
					"dkim_typo = 1\n"
					"dkim_error_action = accept\n"
					"my_nets = 10.0.0.0/8\n"
					"dkim_list = $my_nets ${my_other?x}\n"
					"my_other = 1\n"
					"orphan = 2\n");
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	CHECK_INT(sift_config_load(cfg, path, false, &err), 0);
	sift_config_defaults(cfg, "", common_tab);
	sift_config_defaults(cfg, "dkim_", tab);
	sift_config_defaults(cfg, "dkim_", host_tab);
	CHECK_STR(get(cfg, "dkim_timeout"), "5s");
	CHECK_STR(get(cfg, "dkim_server"), "localhost");
	CHECK_STR(get(cfg, "myhostname"), "localhost");
	CHECK_STR(sift_config_raw(cfg, "dkim_server", NULL), NULL);
	CHECK_STR(get(cfg, "dkim_list"), "10.0.0.0/8 x");
	CHECK_STR(get(cfg, "dkim_error_action"), "accept");
	/* dkim_typo and orphan are unknown; my_nets/my_other are referenced */
	CHECK_INT(sift_config_check_names(cfg, NULL, &err), 2);
	char *want = sift_asprintf("%s:2: unknown parameter \"dkim_typo\"; "
				   "%s:7: unknown parameter \"orphan\"",
				   path, path);
	CHECK_STR(err, want);
	free(want);
	free(err);
	err = NULL;
	CHECK_INT(sift_config_set(cfg, "myhostname = mx", "-o", NULL), 0);
	CHECK_STR(get(cfg, "dkim_server"), "mx");
	sift_config_free(cfg);
	free(path);
}

/* Unknown names: did-you-mean, -o, known prefixes, plugins that are
 * installed but not loaded, and plugin errors located at file:line. */
static void test_names(void)
{
	char *path = write_file("n.cf", "spf_softfail_acton = reject\n"
					"myhostnme = mx\n"
					"timeuot = 3s\n"
					"spam_kill_level = abc\n");
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	CHECK_INT(sift_config_load(cfg, path, false, &err), 0);
	CHECK_INT(sift_config_set(cfg, "dkim_tiemout = 1s", "-o", NULL), 0);
	sift_config_defaults(cfg, "", common_tab);
	sift_config_defaults(cfg, "", tab);
	sift_config_defaults(cfg, "dkim_", tab);
	static const struct sift_param spf_tab[] = {
		{"softfail_action", SIFT_P_ENUM, "prepend", 0, 0, 0, "prepend|reject", "doc"},
		SIFT_PARAM_END,
	};
	static const struct sift_param spam_tab[] = {
		{"kill_level", SIFT_P_STRING, "6.9", 0, 0, 0, NULL, "doc"},
		SIFT_PARAM_END,
	};
	sift_config_known(cfg, "spf_", spf_tab);
	sift_config_known(cfg, "spam_", spam_tab);
	CHECK_INT(sift_config_check_names(cfg, NULL, &err), 4);
	char *want = sift_asprintf(
		"%s:1: unknown parameter \"spf_softfail_acton\" (did you mean \"spf_softfail_action\"?); "
		"%s:2: unknown parameter \"myhostnme\" (did you mean \"myhostname\"?); "
		"%s:3: unknown parameter \"timeuot\" (did you mean \"timeout\"?); "
		"-o: unknown parameter \"dkim_tiemout\" (did you mean \"dkim_timeout\"?)",
		path, path, path);
	CHECK_STR(err, want);
	free(want);
	free(err);
	err = NULL;
	/* known names have no default: lookups see nothing */
	CHECK_STR(sift_config_get(cfg, "spf_softfail_action", NULL), NULL);
	CHECK_STR(sift_config_suggest(cfg, "spf_softfail_acton"), "spf_softfail_action");
	CHECK_STR(sift_config_suggest(cfg, "completely_different"), NULL);
	/* a prefix makes every name under it known */
	sift_config_known(cfg, "myhost", NULL);
	sift_config_known(cfg, "time", NULL);
	CHECK_INT(sift_config_check_names(cfg, NULL, &err), 2);
	free(err);
	err = NULL;

	/* a plugin's error naming a parameter gets where it was set */
	char *loc = sift_config_locate(cfg, "plugin spam: spam_kill_level: not a number: abc");
	want = sift_asprintf("%s:4: plugin spam: spam_kill_level: not a number: abc", path);
	CHECK_STR(loc, want);
	free(loc);
	free(want);
	loc = sift_config_locate(cfg, "plugin spam: cannot start");
	CHECK_STR(loc, "plugin spam: cannot start");
	free(loc);
	sift_config_free(cfg);

	/* plugins in the plugin directory that are not loaded: their tables
	 * decide (the spf plugin of the build tree) */
	const char *bd = getenv("SIFT_BUILDDIR");
	char *pdir = sift_asprintf("%s/plugins", bd ? bd : "build");
	char *so = sift_asprintf("%s/spf.so", pdir);
	if (access(so, R_OK) == 0) {
		char *p2 = write_file("p.cf", "spf_softfail_action = reject\n"
					      "spf_softfail_acton = reject\n"
					      "spf_error_action = accept\n"
					      "nosuchplugin_x = 1\n");
		cfg = sift_config_new();
		CHECK_INT(sift_config_load(cfg, p2, false, &err), 0);
		CHECK_INT(sift_config_check_names(cfg, pdir, &err), 2);
		want = sift_asprintf("%s:2: unknown parameter \"spf_softfail_acton\" (did you mean "
				     "\"spf_softfail_action\"?); %s:4: unknown parameter \"nosuchplugin_x\"",
				     p2, p2);
		CHECK_STR(err, want);
		free(want);
		free(err);
		err = NULL;
		sift_config_free(cfg);
		free(p2);
	} else {
		fprintf(stderr, "FAILED: %s missing (SIFT_BUILDDIR)\n", so);
		CHECK(0);
	}
	free(so);
	free(pdir);
	free(path);
}

static void test_large(void)
{
	/* many names (hash table growth) and a long continued line */
	struct sift_buf b = {0};
	for (int i = 0; i < 5000; i++)
		sift_buf_printf(&b, "name%d = value%d\n", i, i);
	sift_buf_adds(&b, "long = start\n");
	for (int i = 0; i < 1000; i++)
		sift_buf_adds(&b, " more\n");
	char *path = write_file("large.cf", sift_buf_str(&b));
	struct sift_config *cfg = sift_config_new();
	char *err = NULL;
	CHECK_INT(sift_config_load(cfg, path, false, &err), 0);
	CHECK_STR(get(cfg, "name0"), "value0");
	CHECK_STR(get(cfg, "name4999"), "value4999");
	CHECK_INT(strlen(get(cfg, "long")), 5 + 5 * 1000);
	sift_config_free(cfg);
	sift_buf_free(&b);
	free(path);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_syntax();
	test_dir_and_overrides();
	test_errors();
	test_expansion();
	test_expansion_bounds();
	test_secret_errors();
	test_defaults_and_unknown();
	test_names();
	test_large();
	char *cmd = sift_asprintf("rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	free(cmd);
	return t_done();
}
