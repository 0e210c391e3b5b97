/*
 * fuzz_config.c - libFuzzer target for lib/config.c and lib/param.c: the
 * input is a configuration file (written to a memfd and loaded through
 * /proc/self/fd/N); every name set is then expanded, and a parameter table
 * of every scalar type is parsed from the result.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct conf {
	int b;
	long long i, t, s;
	const char *str;
	const char *const *list;
	int e;
};

static const struct sift_param tab[] = {
	{"b", SIFT_P_BOOL, "no", 0, 0, offsetof(struct conf, b), NULL, "d"},
	{"i", SIFT_P_INT, "1", -5, 5000, offsetof(struct conf, i), NULL, "d"},
	{"t", SIFT_P_TIME, "1s", 0, 0, offsetof(struct conf, t), NULL, "d"},
	{"s", SIFT_P_SIZE, "$i", 0, 1LL << 40, offsetof(struct conf, s), NULL, "d"},
	{"str", SIFT_P_STRING, "${b?yes:{no}}", 0, 0, offsetof(struct conf, str), NULL, "d"},
	{"list", SIFT_P_LIST, "$str, $t", 0, 0, offsetof(struct conf, list), NULL, "d"},
	{"e", SIFT_P_ENUM, "x", 0, 0, offsetof(struct conf, e), "x|y|zz", "d"},
	SIFT_PARAM_END,
};

static void expand_one(const char *name, const char *raw, const char *where, void *arg)
{
	const struct sift_config *cfg = arg;
	char *err = NULL;
	char *v = sift_config_get(cfg, name, &err);
	free(v);
	free(err);
	err = NULL;
	v = sift_config_expand(cfg, raw, &err);
	free(v);
	free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		sift_log_set_level(LOG_CRIT); /* unknown-name warnings are expected */
		init = true;
	}
	int fd = memfd_create("fuzz_config", MFD_CLOEXEC);
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
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	struct sift_config *cfg = sift_config_new();
	sift_config_defaults(cfg, "", tab);
	char *err = NULL;
	if (sift_config_load(cfg, path, false, &err) == 0) {
		sift_config_each(cfg, expand_one, cfg);
		(void)sift_config_set(cfg, "extra = $b$i${t}$(s)", "-o", NULL);
		struct conf c = {0};
		char *perr = NULL;
		if (sift_params_parse(cfg, "", tab, &c, &perr) == 0)
			sift_params_free(tab, &c);
		free(perr);
		{
			char *uerr = NULL;
			(void)sift_config_check_names(cfg, NULL, &uerr);
			free(uerr);
		}
		FILE *out = fopen("/dev/null", "w");
		if (out) {
			sift_params_print(out, cfg, "", tab, true);
			fclose(out);
		}
	}
	free(err);
	sift_config_free(cfg);
	close(fd);
	return 0;
}
