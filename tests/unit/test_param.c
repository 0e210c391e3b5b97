/*
 * test_param.c - lib/param.c: value parsers, typed parameter tables
 * (defaults, bounds, choices, error messages naming where a value was set),
 * sift_params_free and the -p/-n printer. Table-driven.
 */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static void test_bool(void)
{
	static const struct {
		const char *in;
		int rc, v;
	} cases[] = {
		{"yes", 0, 1}, {"YES", 0, 1},	{"true", 0, 1},	 {"on", 0, 1},	  {"1", 0, 1},
		{"no", 0, 0},  {"False", 0, 0}, {"off", 0, 0},	 {"0", 0, 0},	  {"", -1, 0},
		{"y", -1, 0},  {"2", -1, 0},	{" yes", -1, 0}, {"yes ", -1, 0}, {"enable", -1, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int v = -7;
		CHECK_INT(sift_parse_bool(cases[i].in, &v), cases[i].rc);
		if (cases[i].rc == 0)
			CHECK_INT(v, cases[i].v);
	}
}

static void test_time_size(void)
{
	static const struct {
		const char *in;
		int rc;
		long long v;
	} times[] = {
		{"0", 0, 0},
		{"10", 0, 10000},
		{"10s", 0, 10000},
		{"250ms", 0, 250},
		{"2m", 0, 120000},
		{"1h", 0, 3600000},
		{"1d", 0, 86400000},
		{"1w", 0, 604800000},
		{"007s", 0, 7000},
		{"", -1, 0},
		{"s", -1, 0},
		{"-1", -1, 0},
		{"1.5s", -1, 0},
		{"10 s", -1, 0},
		{"10x", -1, 0},
		{"10sec", -1, 0},
		{"10mss", -1, 0},
		{"9223372036854775807ms", 0, LLONG_MAX},
		{"9223372036854775808ms", -1, 0},
		{"9223372036854775807", -1, 0},
		{"99999999999999999w", -1, 0},
	};
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		long long v = -7;
		int rc = sift_parse_time_ms(times[i].in, &v);
		if (rc != times[i].rc)
			fprintf(stderr, "time case \"%s\"\n", times[i].in);
		CHECK_INT(rc, times[i].rc);
		if (times[i].rc == 0)
			CHECK_INT(v, times[i].v);
	}
	static const struct {
		const char *in;
		int rc;
		long long v;
	} sizes[] = {
		{"0", 0, 0},
		{"100", 0, 100},
		{"10k", 0, 10240},
		{"10K", 0, 10240},
		{"3m", 0, 3145728},
		{"2g", 0, 2147483648LL},
		{"2G", 0, 2147483648LL},
		{"", -1, 0},
		{"k", -1, 0},
		{"10kb", -1, 0},
		{"10t", -1, 0},
		{"-5", -1, 0},
		{"1.5m", -1, 0},
		{"9007199254740992g", -1, 0},
		{"9223372036854775807", 0, LLONG_MAX},
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		long long v = -7;
		CHECK_INT(sift_parse_size(sizes[i].in, &v), sizes[i].rc);
		if (sizes[i].rc == 0)
			CHECK_INT(v, sizes[i].v);
	}
}

static void test_split_list(void)
{
	static const struct {
		const char *in;
		const char *want[6];
	} cases[] = {
		{"", {NULL}},
		{"   , ,\t", {NULL}},
		{"a", {"a", NULL}},
		{"a b", {"a", "b", NULL}},
		{"a,b", {"a", "b", NULL}},
		{" a ,, b\tc\n d, ", {"a", "b", "c", "d", NULL}},
		{"spf dkim clamav spam", {"spf", "dkim", "clamav", "spam", NULL}},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char **l = sift_split_list(cases[i].in);
		size_t j = 0;
		for (; cases[i].want[j]; j++)
			CHECK_STR(l[j], cases[i].want[j]);
		CHECK(l[j] == NULL);
		free(l);
	}
	char **l = sift_split_list(NULL);
	CHECK(l[0] == NULL);
	free(l);
}

struct conf {
	int enabled;
	long long count;
	long long timeout;
	long long max_size;
	const char *name;
	const char *const *list;
	const struct sift_map *map;
	int action;
};

static const struct sift_param tab[] = {
	{"enabled", SIFT_P_BOOL, "yes", 0, 0, offsetof(struct conf, enabled), NULL, "d"},
	{"count", SIFT_P_INT, "5", -10, 100, offsetof(struct conf, count), NULL, "d"},
	{"timeout", SIFT_P_TIME, "30s", 1000, 3600000, offsetof(struct conf, timeout), NULL, "d"},
	{"max_size", SIFT_P_SIZE, "10m", 0, 0, offsetof(struct conf, max_size), NULL, "d"},
	{"name", SIFT_P_STRING, "", 0, 0, offsetof(struct conf, name), NULL, "d"},
	{"list", SIFT_P_LIST, "a b", 0, 0, offsetof(struct conf, list), NULL, "d"},
	{"map", SIFT_P_MAP, "", 0, 0, offsetof(struct conf, map), NULL, "d"},
	{"action", SIFT_P_ENUM, "tempfail", 0, 0, offsetof(struct conf, action), "reject|tempfail|accept",
	 "d"},
	SIFT_PARAM_END,
};

static void test_parse_defaults(bool registered)
{
	struct sift_config *cfg = sift_config_new();
	if (registered)
		sift_config_defaults(cfg, "t_", tab);
	struct conf c;
	memset(&c, 0, sizeof(c));
	char *err = NULL;
	CHECK_INT(sift_params_parse(cfg, "t_", tab, &c, &err), 0);
	CHECK_STR(err, NULL);
	CHECK_INT(c.enabled, 1);
	CHECK_INT(c.count, 5);
	CHECK_INT(c.timeout, 30000);
	CHECK_INT(c.max_size, 10 << 20);
	CHECK_STR(c.name, "");
	CHECK_STR(c.list[0], "a");
	CHECK_STR(c.list[1], "b");
	CHECK(c.list[2] == NULL);
	CHECK(c.map == NULL);
	CHECK_INT(c.action, 1);
	sift_params_free(tab, &c);
	CHECK(c.name == NULL && c.list == NULL && c.map == NULL);
	sift_params_free(tab, &c); /* twice is harmless */
	sift_config_free(cfg);
}

static void test_parse_values(void)
{
	struct sift_config *cfg = sift_config_new();
	sift_config_defaults(cfg, "t_", tab);
	static const char *const sets[] = {
		"t_enabled = off",   "t_count = -10",	       "t_timeout = 1h",  "t_max_size = 2g",
		"base = srv",	     "t_name = $base.example", "t_list = x, y,z", "t_map = inline:{ k=v }",
		"t_action = ACCEPT",
	};
	for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++)
		CHECK_INT(sift_config_set(cfg, sets[i], "-o", NULL), 0);
	struct conf c;
	memset(&c, 0, sizeof(c));
	char *err = NULL;
	CHECK_INT(sift_params_parse(cfg, "t_", tab, &c, &err), 0);
	CHECK_STR(err, NULL);
	CHECK_INT(c.enabled, 0);
	CHECK_INT(c.count, -10);
	CHECK_INT(c.timeout, 3600000);
	CHECK_INT(c.max_size, 2LL << 30);
	CHECK_STR(c.name, "srv.example");
	CHECK_STR(c.list[2], "z");
	char *r = NULL;
	CHECK_INT(sift_map_lookup(c.map, "K", &r), 1);
	CHECK_STR(r, "v");
	free(r);
	CHECK_INT(c.action, 2);

	/* -p / -n output */
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);
	sift_params_print(fp, cfg, "t_", tab, false);
	fclose(fp);
	CHECK_STR(buf, "t_enabled = off\nt_count = -10\nt_timeout = 1h\nt_max_size = 2g\n"
		       "t_name = srv.example\nt_list = x, y,z\nt_map = inline:{ k=v }\n"
		       "t_action = ACCEPT\n");
	free(buf);
	sift_params_free(tab, &c);
	sift_config_free(cfg);

	cfg = sift_config_new();
	CHECK_INT(sift_config_set(cfg, "t_count = 7", "-o", NULL), 0);
	fp = open_memstream(&buf, &len);
	sift_params_print(fp, cfg, "t_", tab, true);
	fclose(fp);
	CHECK_STR(buf, "t_enabled = yes\nt_count = 7\nt_timeout = 30s\nt_max_size = 10m\n"
		       "t_name =\nt_list = a b\nt_map =\nt_action = tempfail\n");
	free(buf);
	fp = open_memstream(&buf, &len);
	sift_params_print(fp, cfg, "t_", tab, false);
	fclose(fp);
	CHECK_STR(buf, "t_count = 7\n");
	free(buf);
	sift_config_free(cfg);
}

static void test_parse_errors(void)
{
	static const struct {
		const char *set; /* via -o, or NULL for the file line */
		const char *want;
	} cases[] = {
		{"t_enabled = maybe", "-o: t_enabled = \"maybe\": expected yes or no"},
		{"t_count = 101", "-o: t_count = \"101\": out of range (-10..100)"},
		{"t_count = -11", "-o: t_count = \"-11\": out of range (-10..100)"},
		{"t_count = 5x", "-o: t_count = \"5x\": expected an integer"},
		{"t_count = 99999999999999999999",
		 "-o: t_count = \"99999999999999999999\": expected an integer"},
		{"t_timeout = 500ms", "-o: t_timeout = \"500ms\": out of range (1s..1h)"},
		{"t_timeout = 2h", "-o: t_timeout = \"2h\": out of range (1s..1h)"},
		{"t_timeout = soon", "-o: t_timeout = \"soon\": expected a time"},
		{"t_max_size = big", "-o: t_max_size = \"big\": expected a size"},
		{"t_action = drop", "-o: t_action = \"drop\": expected one of reject|tempfail|accept"},
		{"t_map = mysql:/etc/x", "-o: t_map = \"mysql:/etc/x\": unsupported map type \"mysql\""},
		{"t_map = hash:/nonexistent/x",
		 "-o: t_map = \"hash:/nonexistent/x\": cannot open /nonexistent/x.db: No such file"},
		{"t_map = texthash:/nonexistent/x", "-o: t_map = \"texthash:/nonexistent/x\": cannot open"},
		{"t_name = $t_name", "-o: t_name: recursive reference to $t_name"},
		{NULL, ":2: t_count = \"$big\": out of range"}, /* file: shows raw... expanded */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sift_config *cfg = sift_config_new();
		char *path = NULL;
		if (cases[i].set) {
			CHECK_INT(sift_config_set(cfg, cases[i].set, "-o", NULL), 0);
		} else {
			char dir[] = "/tmp/sift-test-param.XXXXXX";
			CHECK(mkdtemp(dir) != NULL);
			path = sift_asprintf("%s/p.cf", dir);
			FILE *fp = fopen(path, "w");
			fputs("big = 1000\nt_count = $big\n", fp);
			fclose(fp);
			CHECK_INT(sift_config_load(cfg, path, false, NULL), 0);
		}
		struct conf c;
		memset(&c, 0, sizeof(c));
		char *err = NULL;
		CHECK_INT(sift_params_parse(cfg, "t_", tab, &c, &err), -1);
		CHECK(c.name == NULL && c.list == NULL && c.map == NULL);
		if (path) {
			char *want = sift_asprintf("%s%s", path, ":2: t_count = \"1000\": out of range");
			CHECK(err && strncmp(err, want, strlen(want)) == 0);
			if (!err || strncmp(err, want, strlen(want)) != 0)
				fprintf(stderr, "  got: %s\n", err ? err : "(null)");
			free(want);
			unlink(path);
			*strrchr(path, '/') = 0;
			rmdir(path);
			free(path);
		} else {
			CHECK(err && strncmp(err, cases[i].want, strlen(cases[i].want)) == 0);
			if (!err || strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
				fprintf(stderr, "  got: %s\n  want: %s\n", err ? err : "(null)",
					cases[i].want);
		}
		free(err);
		sift_params_free(tab, &c);
		sift_config_free(cfg);
	}

	/* a bad default is reported as such */
	static const struct sift_param badtab[] = {
		{"n", SIFT_P_INT, "ten", 0, 0, 0, NULL, "d"},
		SIFT_PARAM_END,
	};
	struct sift_config *cfg = sift_config_new();
	long long v = 0;
	char *err = NULL;
	CHECK_INT(sift_params_parse(cfg, "", badtab, &v, &err), -1);
	CHECK_STR(err, "default: n = \"ten\": expected an integer");
	free(err);
	sift_config_free(cfg);
}

/* Secrets are masked in -n/-p output and in value errors. */
static void test_secrets(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"redis:10.0.0.5:6379,password=s3cret,db=2", "redis:10.0.0.5:6379,password=********,db=2"},
		{"redis:unix:/run/r.sock,PASSWORD=x", "redis:unix:/run/r.sock,PASSWORD=********"},
		{"a secret=abc;passwd=def&x=1", "a secret=********"},
		{"redis:h:1,password=abc;TAIL&more}x\"y'z,db=2", "redis:h:1,password=********,db=2"},
		{"inline:{ k=v, password=x }", "inline:{ k=v, password=******** }"},
		{"password=", "password="},
		{"x password=\"a b\", y", "x password=\"********\", y"},
		{"password='unterminated", "password='********"},
		{"mypassword=abc", "mypassword=abc"}, /* not the key password= */
		{"nothing here", "nothing here"},
		{"", ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *m = sift_mask_secrets(cases[i].in);
		CHECK_STR(m, cases[i].out);
		free(m);
	}
	char *m = sift_param_shown("ldap_bind_password", "hunter2");
	CHECK_STR(m, "********");
	free(m);
	m = sift_param_shown("t_name", "password=hunter2");
	CHECK_STR(m, "password=********");
	free(m);

	static const struct sift_param stab[] = {
		{"store", SIFT_P_STRING, "memory:", 0, 0, 0, NULL, "d"},
		{"api_secret", SIFT_P_STRING, "", 0, 0, 0, NULL, "d"},
		{"count", SIFT_P_INT, "1", 0, 0, 0, NULL, "d"},
		SIFT_PARAM_END,
	};
	struct sift_config *cfg = sift_config_new();
	sift_config_defaults(cfg, "", stab);
	CHECK_INT(sift_config_set(cfg, "store = redis:h:1,password=hunter2", "-o", NULL), 0);
	CHECK_INT(sift_config_set(cfg, "api_secret = hunter2", "-o", NULL), 0);
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	sift_params_print(out, cfg, "", stab, true);
	fclose(out);
	CHECK_STR(buf, "store = redis:h:1,password=********\napi_secret = ********\ncount = 1\n");
	CHECK(strstr(buf, "hunter2") == NULL);
	free(buf);
	/* a value error shows the value masked */
	CHECK_INT(sift_config_set(cfg, "count = password=hunter2", "x.cf:3", NULL), 0);
	char *err = NULL;
	struct {
		const char *a, *b;
		long long c;
	} blk;
	memset(&blk, 0, sizeof(blk));
	static const struct sift_param ctab[] = {
		{"count", SIFT_P_INT, "1", 0, 0, 0, NULL, "d"},
		SIFT_PARAM_END,
	};
	CHECK_INT(sift_params_parse(cfg, "", ctab, &blk, &err), -1);
	CHECK_STR(err, "x.cf:3: count = \"password=********\": expected an integer");
	free(err);
	sift_config_free(cfg);
}

/* A retired parameter: any value loads, nothing is stored. */
static void test_retired(void)
{
	static const struct sift_param rt[] = {
		{"count", SIFT_P_INT, "5", 0, 10, 0, NULL, "d"},
		{"old", SIFT_P_RETIRED, "", 0, 0, 0, NULL, "replaced by count"},
		SIFT_PARAM_END,
	};
	struct sift_config *cfg = sift_config_new();
	sift_config_defaults(cfg, "t_", rt);
	CHECK_INT(sift_config_set(cfg, "t_old = not a number", "-o", NULL), 0);
	long long count = 0;
	char *err = NULL;
	CHECK_INT(sift_params_parse(cfg, "t_", rt, &count, &err), 0);
	CHECK_STR(err, NULL);
	CHECK_INT(count, 5);
	sift_config_free(cfg);
}

int main(void)
{
	test_bool();
	test_time_size();
	test_split_list();
	test_parse_defaults(true);
	test_parse_defaults(false);
	test_parse_values();
	test_parse_errors();
	test_secrets();
	test_retired();
	return t_done();
}
