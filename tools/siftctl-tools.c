/*
 * siftctl-tools.c - `siftctl PLUGIN TOOL ...`: the commands plugins offer
 * through their struct sift_tool tables (include/sift/plugin.h).
 *
 * The plugin file is PLUGIN.so of plugin_directory (of the configuration;
 * when the configuration file cannot be read, the directory siftctl was
 * built for, or the build tree's plugins for a siftctl run from its build
 * tree). Depending on the tool's flags, the tool gets the plugin's
 * parameters parsed from the configuration, the plugin initialised in a
 * generation where it is alone in both profiles, or no configuration.
 *
 * The host a tool gets is the plugins' one plus the tool services
 * (tool_message: a stored message read, parsed and, when asked, run through
 * a chain of one plugin, as `siftctl test` runs one).
 *
 * Single-threaded.
 */
#include <errno.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime.h"
#include "siftctl.h"

/* ---- finding plugins and their tools ----------------------------------------- */

/* The build tree's plugin directory when siftctl runs from its build tree
 * (<build>/tools/siftctl next to <build>/build.ninja), else NULL. */
static char *build_tree_plugins(void)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return NULL;
	self[n] = 0;
	char *dir = dirname(self);
	char *ninja = sift_asprintf("%s/../build.ninja", dir);
	char *plugins = sift_asprintf("%s/../plugins", dir);
	char *real = access(ninja, F_OK) == 0 ? realpath(plugins, NULL) : NULL;
	free(ninja);
	free(plugins);
	return real;
}

/* Where the plugins are (malloc'd). *cfg_r: the configuration, or NULL with
 * *cfg_err_r saying why it could not be read. */
static char *plugin_dir(const struct sift_opts *o, struct sift_config **cfg_r, char **cfg_err_r)
{
	*cfg_err_r = NULL;
	/* (siftctl --help lists the tools before any option is parsed) */
	*cfg_r = o->config_file ? sift_opts_config(o, "", NULL, cfg_err_r) : NULL;
	if (*cfg_r) {
		char *err = NULL;
		char *dir = sift_config_get(*cfg_r, "plugin_directory", &err);
		free(err);
		if (dir && *dir)
			return dir;
		free(dir);
	}
	char *bt = build_tree_plugins();
	return bt ? bt : sift_strdup(SIFT_PLUGIN_DIR);
}

static const struct sift_tool *plugin_tools(const struct sift_plugin *p)
{
	if (p->struct_size < offsetof(struct sift_plugin, tools) + sizeof(p->tools))
		return NULL;
	return p->tools && p->tools[0].name ? p->tools : NULL;
}

/* The plugin `name` of dir; NULL when there is no such file (*err_r NULL)
 * or it does not load (*err_r says why). */
static const struct sift_plugin *load_plugin(const char *dir, const char *name, char **err_r)
{
	*err_r = NULL;
	for (const char *c = name; *c; c++)
		if (!(*c == '_' || *c == '-' || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
			return NULL;
	char *path = sift_asprintf("%s/%s.so", dir, name);
	const struct sift_plugin *p = NULL;
	if (*name && access(path, F_OK) == 0)
		p = sift_plugin_load(path, err_r);
	free(path);
	return p;
}

/* Each tool as "  PLUGIN TOOL USAGE" and its summary indented below. */
static void print_tools(FILE *out, const struct sift_plugin *p)
{
	for (const struct sift_tool *t = plugin_tools(p); t && t->name; t++) {
		fprintf(out, "  %s %s%s%s\n", p->name, t->name, t->usage && *t->usage ? " " : "",
			t->usage ? t->usage : "");
		for (const char *s = t->summary; s && *s;) {
			size_t n = strcspn(s, "\n");
			fprintf(out, "       %.*s\n", (int)n, s);
			s += n + (s[n] == '\n');
		}
	}
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void siftctl_tools_usage(FILE *out, const struct sift_opts *o)
{
	struct sift_config *cfg;
	char *cerr;
	char *dir = plugin_dir(o, &cfg, &cerr);
	free(cerr);
	sift_config_free(cfg);
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0;
	for (struct dirent *e; d && (e = readdir(d));) {
		size_t l = strlen(e->d_name);
		if (l > 3 && strcmp(e->d_name + l - 3, ".so") == 0) {
			names = sift_realloc(names, (n + 1) * sizeof(*names));
			names[n++] = sift_strndup(e->d_name, l - 3);
		}
	}
	if (d)
		closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), cmp_str);
	bool head = false;
	for (size_t i = 0; i < n; i++) {
		char *err;
		const struct sift_plugin *p = load_plugin(dir, names[i], &err);
		free(err);
		if (p && plugin_tools(p)) {
			if (!head)
				fprintf(out, "plugin commands (plugins of %s):\n", dir);
			head = true;
			print_tools(out, p);
		}
		free(names[i]);
	}
	free(names);
	free(dir);
}

/* ---- the tool services ------------------------------------------------------- */

static const struct sift_opts *tool_opts;

/* The generation of the last chain asked for, kept for the next message
 * with the same chain and settings (`siftctl dkim verify` of many files). */
static struct sift_gen *chain_gen;
static char *chain_key;

static struct sift_gen *chain_generation(const char *chain, const char *const *settings, char **err_r)
{
	struct sift_buf key = {0};
	sift_buf_printf(&key, "%s", chain);
	for (const char *const *s = settings; s && *s; s++)
		sift_buf_printf(&key, "\n%s", *s);
	if (chain_gen && strcmp(chain_key, sift_buf_str(&key)) == 0) {
		sift_buf_free(&key);
		return chain_gen;
	}
	sift_gen_unref(chain_gen);
	chain_gen = NULL;
	free(chain_key);
	chain_key = sift_strdup(sift_buf_str(&key));
	sift_buf_free(&key);

	struct sift_opts x = *tool_opts;
	size_t ns = 0;
	while (settings && settings[ns])
		ns++;
	x.overrides = sift_calloc(tool_opts->n_overrides + ns + 3, sizeof(char *));
	for (size_t i = 0; i < tool_opts->n_overrides; i++)
		x.overrides[i] = tool_opts->overrides[i];
	x.n_overrides = tool_opts->n_overrides;
	char *lists[2] = {sift_asprintf("inbound_plugins = %s", chain),
			  sift_asprintf("originating_plugins = %s", chain)};
	x.overrides[x.n_overrides++] = lists[0];
	x.overrides[x.n_overrides++] = lists[1];
	for (size_t i = 0; i < ns; i++)
		x.overrides[x.n_overrides++] = (char *)settings[i];
	chain_gen = siftctl_gen(&x, SIFT_SIFTCTL, err_r);
	free(lists[0]);
	free(lists[1]);
	free(x.overrides);
	return chain_gen;
}

/* Runs src through the session's chain, as filterd would: a local client,
 * the null sender, one recipient, then the message's content stages. */
static enum sift_verdict run_chain(struct sift_session *ss, struct sift_msg *src)
{
	enum sift_verdict v = sift_session_connect(ss, "localhost", "127.0.0.1", NULL);
	if (v == SIFT_DUNNO)
		v = sift_session_mail(ss, "");
	if (v == SIFT_DUNNO)
		v = sift_session_rcpt(ss, "postmaster@localhost");
	if (v == SIFT_DUNNO)
		v = sift_session_data(ss);
	if (v == SIFT_DUNNO)
		v = sift_session_content(ss, src);
	return v;
}

/* Reads file ("-": stdin) whole into b, SIFT_TOOL_MESSAGE_MAX bytes at
 * most; -1 with *err_r. */
static int read_whole(const char *file, struct sift_buf *b, char **err_r)
{
	FILE *fp = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
	if (!fp) {
		*err_r = sift_asprintf("%s: %s", file, strerror(errno));
		return -1;
	}
	char chunk[65536];
	size_t n;
	bool over = false;
	errno = 0;
	while (!over && (n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
		over = b->len + n > SIFT_TOOL_MESSAGE_MAX;
		if (!over)
			sift_buf_add(b, chunk, n);
	}
	int e = ferror(fp) ? (errno ? errno : EIO) : 0;
	if (fp != stdin)
		fclose(fp);
	if (over) {
		*err_r = siftctl_too_large(file);
		return -1;
	}
	if (e) {
		*err_r = sift_asprintf("%s: %s", file, strerror(e));
		return -1;
	}
	sift_buf_str(b);
	return 0;
}

/* The chain's message: src read from the raw bytes, run, then done() with
 * the verdict and the header edits that set a value. */
static int chain_message(struct sift_tool_message *m, const char *file, const char *chain,
			 const char *profile, const char *const *settings,
			 void (*done)(void *, const struct sift_tool_message *), void *arg, char **err_r)
{
	enum sift_profile prof;
	if (strcmp(profile ? profile : "inbound", "inbound") == 0)
		prof = SIFT_INBOUND;
	else if (strcmp(profile, "originating") == 0)
		prof = SIFT_ORIGINATING;
	else {
		*err_r = sift_asprintf("profile \"%s\": inbound or originating", profile);
		return -1;
	}
	struct sift_gen *g = chain_generation(chain, settings, err_r);
	if (!g)
		return -1;
	const struct sift_common_conf *cc = sift_gen_common(g);
	struct sift_msg *src = sift_msg_new((size_t)cc->message_memory_limit, cc->tmpdir);
	FILE *mem = fmemopen((void *)m->data, m->len, "rb");
	if (!mem || sift_msg_read_file(src, mem, err_r) < 0) {
		if (!*err_r)
			*err_r = sift_asprintf("%s: cannot read: %s", file, strerror(errno));
		else {
			char *e = sift_asprintf("%s: %s", file, *err_r);
			free(*err_r);
			*err_r = e;
		}
		if (mem)
			fclose(mem);
		sift_msg_free(src);
		return -1;
	}
	fclose(mem);
	struct sift_session *ss = sift_session_new(g, SIFT_SIFTCTL, NULL, NULL);
	sift_session_force_profile(ss, prof);
	m->verdict = run_chain(ss, src);
	sift_msg_free(src);
	const struct sift_result *r = sift_ctx_result(sift_session_ctx(ss));
	size_t n = 0;
	for (const struct sift_edit *e = r->edits; e; e = e->next)
		n += e->value != NULL;
	struct sift_header *hs = sift_calloc(n + 1, sizeof(*hs));
	for (const struct sift_edit *e = r->edits; e; e = e->next)
		if (e->value)
			hs[m->header_count++] = (struct sift_header){e->name, e->value};
	m->headers = hs;
	done(arg, m);
	free(hs);
	sift_session_end(ss, m->verdict);
	sift_session_free(ss);
	return 0;
}

static int tool_message(const char *file, const char *chain, const char *profile, const char *const *settings,
			void (*done)(void *arg, const struct sift_tool_message *message), void *arg,
			char **err_r)
{
	*err_r = NULL;
	struct sift_buf raw = {0};
	if (read_whole(file, &raw, err_r) < 0) {
		sift_buf_free(&raw);
		return -1;
	}
	struct sift_tool_message m = {.data = (const unsigned char *)raw.data, .len = raw.len};
	struct sift_mime *mime = sift_mime_parse_message(m.data, m.len, NULL);
	m.mime = mime;
	int rc = 0;
	if (chain)
		rc = chain_message(&m, file, chain, profile, settings, done, arg, err_r);
	else
		done(arg, &m);
	sift_mime_free(mime);
	sift_buf_free(&raw);
	return rc;
}

/* ---- running a tool ---------------------------------------------------------- */

static void plugin_usage(FILE *out, const struct sift_plugin *p)
{
	fprintf(out, "usage: siftctl [-c FILE] [-o name=value]...\n");
	print_tools(out, p);
}

/* The tool argv[1] names; when argv[1] is an option, the first argument
 * naming a tool is moved to argv[1] (options before the tool's name). */
static const struct sift_tool *pick_tool(const struct sift_plugin *p, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (i > 1 && argv[1][0] != '-')
			break;
		for (const struct sift_tool *t = plugin_tools(p); t->name; t++)
			if (strcmp(argv[i], t->name) == 0) {
				char *w = argv[i];
				memmove(argv + 2, argv + 1, (size_t)(i - 1) * sizeof(*argv));
				argv[1] = w;
				return t;
			}
	}
	return NULL;
}

/* The conf block of flag-0 tools: the plugin's parameters only. */
static void *parse_conf(const struct sift_plugin *p, struct sift_config *cfg, char **err_r)
{
	void *block = sift_calloc(1, p->conf_size ? p->conf_size : 1);
	char *prefix = sift_asprintf("%s_", p->name);
	int rc = 0;
	if (p->params) {
		sift_config_defaults(cfg, prefix, p->params);
		rc = sift_params_parse(cfg, prefix, p->params, block, err_r);
	}
	free(prefix);
	if (rc < 0) {
		free(block);
		return NULL;
	}
	return block;
}

/* A generation where p is alone in both profiles, initialised. */
static struct sift_gen *init_gen(const struct sift_plugin *p, char **err_r)
{
	char *lists[2] = {sift_asprintf("inbound_plugins = %s", p->name),
			  sift_asprintf("originating_plugins = %s", p->name)};
	struct sift_opts x = *tool_opts;
	x.overrides = sift_calloc(tool_opts->n_overrides + 2, sizeof(char *));
	for (size_t i = 0; i < tool_opts->n_overrides; i++)
		x.overrides[i] = tool_opts->overrides[i];
	x.overrides[x.n_overrides++] = lists[0];
	x.overrides[x.n_overrides++] = lists[1];
	struct sift_gen *g =
		siftctl_gen(&x, p->daemons & SIFT_D_FILTERD ? SIFT_FILTERD : SIFT_POLICYD, err_r);
	free(x.overrides);
	free(lists[0]);
	free(lists[1]);
	return g;
}

static int run_tool(const struct sift_plugin *p, const struct sift_tool *t, struct sift_config *cfg,
		    const char *cfg_err, int argc, char **argv)
{
	static struct sift_host host;
	host = sift_host_table;
	host.tool_message = tool_message;
	void *conf = NULL, *block = NULL;
	struct sift_gen *g = NULL;
	char *err = NULL;
	if (!(t->flags & SIFT_TOOL_NO_CONF) && !cfg && !(t->flags & SIFT_TOOL_CONF_OPTIONAL)) {
		fprintf(stderr, "siftctl: %s\n", cfg_err);
		return 1;
	}
	if (t->flags & SIFT_TOOL_NO_CONF || !cfg) {
		conf = NULL;
	} else if (t->flags & SIFT_TOOL_INIT) {
		g = init_gen(p, &err);
		conf = g ? sift_gen_plugin_conf(g, 0) : NULL;
	} else {
		conf = block = parse_conf(p, cfg, &err);
	}
	if (err) {
		fprintf(stderr, "siftctl: %s\n", err);
		free(err);
		return 1;
	}
	int rc = t->run(&host, conf, argc, argv);
	if (block) {
		sift_params_free(p->params, block);
		free(block);
	}
	sift_gen_unref(g);
	sift_gen_unref(chain_gen);
	chain_gen = NULL;
	free(chain_key);
	chain_key = NULL;
	return rc;
}

int siftctl_tool(const struct sift_opts *o, int argc, char **argv, bool help)
{
	struct sift_config *cfg;
	char *cfg_err, *err;
	char *dir = plugin_dir(o, &cfg, &cfg_err);
	const struct sift_plugin *p = load_plugin(dir, argv[0], &err);
	free(dir);
	int rc = -1;
	if (!p && err) {
		fprintf(stderr, "siftctl: %s\n", err);
		rc = 1;
	} else if (p && plugin_tools(p)) {
		tool_opts = o;
		const struct sift_tool *t = argc > 1 && !help ? pick_tool(p, argc, argv) : NULL;
		if (help) {
			plugin_usage(stdout, p);
			rc = 0;
		} else if (!t) {
			if (argc > 1)
				fprintf(stderr, "siftctl %s: unknown command \"%s\"\n", p->name, argv[1]);
			plugin_usage(stderr, p);
			rc = 2;
		} else if (!t->usage[0] && argc > 2) {
			/* a command that takes no argument got one */
			fprintf(stderr, "siftctl %s %s: unexpected argument \"%s\"\nusage: siftctl %s %s\n",
				p->name, t->name, argv[2], p->name, t->name);
			rc = 2;
		} else {
			rc = run_tool(p, t, cfg, cfg_err, argc - 1, argv + 1);
		}
	}
	free(err);
	free(cfg_err);
	sift_config_free(cfg);
	return rc;
}
