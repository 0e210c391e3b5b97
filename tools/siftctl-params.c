/*
 * siftctl-params.c - `siftctl params`: every parameter of the daemons and
 * the plugins, from their tables (name, type, default, bounds, doc), so
 * that the documentation has one source. The common parameters and the
 * per-plugin <plugin>_error_action are siftctl's own (lib/host.c); the
 * daemons' come from `filterd -P` and `policyd -P`; the plugins' from every
 * <name>.so in the plugin directory, loaded without running init.
 *
 *   --list  one parameter a line: scope, name, type, default, min, max,
 *           choices, doc (tab-separated; scope is common, filterd,
 *           policyd or the plugin's name)
 *   --man   sift.conf(5) in groff man format (what the build installs)
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "siftctl.h"

struct prm {
	char *scope, *name, *type, *def, *choices, *doc;
	long long min, max;
};

struct section {
	char *scope, *title, *text;
	struct prm *p;
	size_t n;
};

static struct section *secs;
static size_t nsecs;

static struct section *add_section(const char *scope, const char *title, const char *text)
{
	secs = sift_realloc(secs, (nsecs + 1) * sizeof(*secs));
	struct section *s = &secs[nsecs++];
	memset(s, 0, sizeof(*s));
	s->scope = sift_strdup(scope);
	s->title = sift_strdup(title);
	s->text = sift_strdup(text ? text : "");
	return s;
}

/* Adds one line of sift_params_dump() output. */
static int add_line(struct section *s, char *line)
{
	char *f[7];
	int n = 0;
	for (char *p = line; n < 7; n++) {
		f[n] = p;
		char *t = strchr(p, '\t');
		if (!t) {
			n++;
			break;
		}
		*t = '\0';
		p = t + 1;
	}
	if (n != 7 || !*f[0])
		return -1;
	s->p = sift_realloc(s->p, (s->n + 1) * sizeof(*s->p));
	struct prm *p = &s->p[s->n++];
	p->scope = s->scope;
	p->name = sift_strdup(f[0]);
	p->type = sift_strdup(f[1]);
	p->def = sift_strdup(f[2]);
	p->min = strtoll(f[3], NULL, 10);
	p->max = strtoll(f[4], NULL, 10);
	p->choices = sift_strdup(f[5]);
	p->doc = sift_strdup(f[6]);
	return 0;
}

static void add_table(struct section *s, const char *prefix, const struct sift_param *tab)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	if (!m)
		abort();
	sift_params_dump(m, prefix, tab);
	fclose(m);
	for (char *line = buf, *nl; line && *line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		add_line(s, line);
	}
	free(buf);
}

/* Runs `daemon -f -P` and adds its table; bounded in size and time. */
static int add_daemon(struct section *s, const char *path)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		execl(path, path, "-f", "-P", (char *)NULL); /* -f: policyd does not fork */
		fprintf(stderr, "siftctl params: %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	enum { MAX = 1 << 20 };
	char *buf = sift_realloc(NULL, MAX + 1);
	size_t len = 0;
	time_t deadline = time(NULL) + 30;
	for (;;) {
		struct pollfd pfd = {fd[0], POLLIN, 0};
		int left = (int)(deadline - time(NULL));
		if (left <= 0 || poll(&pfd, 1, left * 1000) <= 0 || len == MAX)
			break;
		ssize_t r = read(fd[0], buf + len, MAX - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd[0]);
	kill(pid, SIGKILL); /* no-op when it is done; it may not be */
	int st = 0;
	waitpid(pid, &st, 0);
	buf[len] = '\0';
	int rc = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
	if (rc < 0)
		fprintf(stderr, "siftctl params: %s -P failed\n", path);
	for (char *line = buf, *nl; rc == 0 && *line; line = nl) {
		nl = strchr(line, '\n');
		if (!nl) {
			rc = -1;
			break;
		}
		*nl++ = '\0';
		if (add_line(s, line) < 0) {
			fprintf(stderr, "siftctl params: %s -P: unexpected line \"%s\"\n", path, line);
			rc = -1;
		}
	}
	free(buf);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_plugins(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		fprintf(stderr, "siftctl params: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	char **names = NULL;
	size_t n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l > 3 && strcmp(e->d_name + l - 3, ".so") == 0) {
			names = sift_realloc(names, (n + 1) * sizeof(*names));
			names[n++] = sift_strdup(e->d_name);
		}
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		char *path = sift_asprintf("%s/%s", dir, names[i]);
		char *err = NULL;
		const struct sift_plugin *p = sift_plugin_load(path, &err);
		if (!p) {
			fprintf(stderr, "siftctl params: %s\n", err);
			free(err);
			rc = -1;
		} else {
			char *title = sift_asprintf(
				"PLUGIN %s (%s%s%s)", p->name, p->daemons & SIFT_D_FILTERD ? "filterd" : "",
				p->daemons == (SIFT_D_FILTERD | SIFT_D_POLICYD) ? ", " : "",
				p->daemons & SIFT_D_POLICYD ? "policyd" : "");
			struct section *s = add_section(p->name, title, p->description);
			char *prefix = sift_asprintf("%s_", p->name);
			if (p->params)
				add_table(s, prefix, p->params);
			add_table(s, prefix, sift_plugin_common_params);
			free(prefix);
			free(title);
		}
		free(path);
		free(names[i]);
	}
	free(names);
	return rc;
}

/* A bound in the parameter's own units (TIME in ms, SIZE in bytes). */
static char *fmt_bound(const struct prm *p, long long v)
{
	static const struct {
		const char *type, *unit;
		long long mul;
	} units[] = {{"time", "w", 604800000LL}, {"time", "d", 86400000LL}, {"time", "h", 3600000LL},
		     {"time", "m", 60000LL},	 {"time", "s", 1000LL},	    {"time", "ms", 1},
		     {"size", "g", 1LL << 30},	 {"size", "m", 1LL << 20},  {"size", "k", 1024}};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p->type, units[i].type) == 0 && v != 0 && v % units[i].mul == 0)
			return sift_asprintf("%lld%s", v / units[i].mul, units[i].unit);
	return sift_asprintf("%lld", v);
}

/* groff: backslashes escaped, no line starting with a control character. */
static void roff(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-')
			fputs("\\-", out);
		else
			fputc(*s, out);
	}
}

static void print_list(FILE *out)
{
	for (size_t i = 0; i < nsecs; i++)
		for (size_t j = 0; j < secs[i].n; j++) {
			const struct prm *p = &secs[i].p[j];
			fprintf(out, "%s\t%s\t%s\t%s\t%lld\t%lld\t%s\t%s\n", p->scope, p->name, p->type,
				p->def, p->min, p->max, p->choices, p->doc);
		}
}

static void print_man(FILE *out)
{
	fputs(".\\\" Generated by `siftctl params --man` from the parameter tables; do not edit.\n"
	      ".TH SIFT.CONF 5 \"\" \"Sift\" \"File formats\"\n"
	      ".SH NAME\n"
	      "sift.conf \\- configuration of Sift's filterd and policyd\n"
	      ".SH SYNOPSIS\n" SIFT_SYSCONFDIR "/filterd.conf, " SIFT_SYSCONFDIR "/filterd.conf.d/*.conf\n"
	      ".br\n" SIFT_SYSCONFDIR "/policyd.conf, " SIFT_SYSCONFDIR "/policyd.conf.d/*.conf\n"
	      ".SH DESCRIPTION\n"
	      "The syntax is Postfix's main.cf: one\n.I name\n= \n.I value\n"
	      "a line; a line starting with white space continues the previous one; lines\n"
	      "starting with # and empty lines are ignored;\n.BI $ name\nand\n.BI ${ name }\n"
	      "expand to another parameter's value. The files in the\n.I .conf.d\n"
	      "directory next to the main file are read after it, in name order; a later\n"
	      "setting wins. The\n.B \\-o\n.IR name = value\n"
	      "options of the daemons and of\n.BR siftctl (8)\n"
	      "come last.\n.PP\n"
	      "Both daemons read the common parameters and the parameters of the plugins\n"
	      "they load (those named in\n.B inbound_plugins\nand\n.BR originating_plugins );\n"
	      "a plugin's parameters start with its name and an underscore.\n"
	      ".B filterd \\-p\nand\n.B policyd \\-p\n"
	      "print every effective value,\n.B \\-n\nthose that differ from the defaults.\n"
	      ".SS Values\n"
	      ".TP\n.B bool\nyes or no (also true/false, on/off, 1/0).\n"
	      ".TP\n.B int\na decimal number.\n"
	      ".TP\n.B time\na number with a unit: ms, s, m, h, d or w (s when none is given).\n"
	      ".TP\n.B size\na number of bytes, with an optional unit k, m or g (1024-based).\n"
	      ".TP\n.B string\ntext, as written.\n"
	      ".TP\n.B list\nitems separated by white space and/or commas.\n"
	      ".TP\n.B map\na Postfix-style lookup table\n.IR type : name ,\n"
	      "e.g. cidr:/etc/sift/networks.cidr or texthash:/etc/sift/access; empty: none.\n"
	      ".TP\n.B enum\none of the words listed.\n"
	      ".TP\n.B retired\nno longer used: a configuration that sets it still loads, the value is\n"
	      "ignored and the daemon logs a warning.\n"
	      ".PP\nBounds are given as\n.IR min .. max\nwhere a parameter has them.\n",
	      out);
	for (size_t i = 0; i < nsecs; i++) {
		const struct section *s = &secs[i];
		fputs(".SH ", out);
		roff(out, s->title);
		fputc('\n', out);
		if (*s->text) {
			roff(out, s->text);
			fputs(".\n", out);
		}
		for (size_t j = 0; j < s->n; j++) {
			const struct prm *p = &s->p[j];
			fputs(".TP\n.B ", out);
			roff(out, p->name);
			fprintf(out, "\n(%s", p->type);
			if (*p->choices) {
				fputs(": ", out);
				roff(out, p->choices);
			}
			fputs("; default ", out);
			if (*p->def) {
				fputs("\\fB", out);
				roff(out, p->def);
				fputs("\\fR", out);
			} else {
				fputs("empty", out);
			}
			if (p->min || p->max) {
				char *lo = fmt_bound(p, p->min), *hi = fmt_bound(p, p->max);
				fprintf(out, "; %s..%s", lo, hi);
				free(lo);
				free(hi);
			}
			fputs(")\n.br\n", out);
			roff(out, *p->doc ? p->doc : "(undocumented)");
			fputs(".\n", out);
		}
	}
	fputs(".SH FILES\n"
	      ".TP\n" SIFT_SYSCONFDIR "/filterd.conf\nfilterd's configuration (and siftctl's, by default).\n"
	      ".TP\n" SIFT_SYSCONFDIR "/policyd.conf\npolicyd's configuration.\n"
	      ".TP\n" SIFT_PLUGIN_DIR "\nthe plugins.\n"
	      ".TP\n" SIFT_DATADIR "/rules\nSift's own spam rules.\n"
	      ".SH SEE ALSO\n"
	      ".BR filterd (8),\n.BR policyd (8),\n.BR siftctl (8),\n.BR postconf (5)\n",
	      out);
}

static int run(int argc, char **argv, struct sift_opts *o)
{
	static const struct option lopts[] = {
		{"list", no_argument, NULL, 'l'},
		{"man", no_argument, NULL, 'm'},
		{"filterd", required_argument, NULL, 'F'},
		{"policyd", required_argument, NULL, 'P'},
		{"plugin-directory", required_argument, NULL, 'D'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *filterd = SIFT_SBINDIR "/filterd", *policyd = SIFT_SBINDIR "/policyd";
	const char *dir = SIFT_PLUGIN_DIR;
	bool man = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			man = false;
			break;
		case 'm':
			man = true;
			break;
		case 'F':
			filterd = optarg;
			break;
		case 'P':
			policyd = optarg;
			break;
		case 'D':
			dir = optarg;
			break;
		case 'h':
			fputs(siftctl_params_cmd.usage, stdout);
			return 0;
		default:
			fputs(siftctl_params_cmd.usage, stderr);
			return 1;
		}
	}
	if (optind != argc) {
		fputs(siftctl_params_cmd.usage, stderr);
		return 1;
	}
	int rc = 0;
	add_table(add_section("common", "COMMON PARAMETERS (filterd and policyd)", NULL), "",
		  sift_common_params);
	rc |= add_daemon(add_section("filterd", "FILTERD PARAMETERS", "filterd, the milter daemon"), filterd);
	rc |= add_daemon(add_section("policyd", "POLICYD PARAMETERS", "policyd, the policy daemon"), policyd);
	rc |= add_plugins(dir);
	if (rc)
		return 1;
	if (man)
		print_man(stdout);
	else
		print_list(stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}

const struct siftctl_cmd siftctl_params_cmd = {
	"params",
	run,
	"  params [--list | --man] [--filterd PATH] [--policyd PATH] [--plugin-directory DIR]\n"
	"       every parameter of the daemons and the plugins (from their tables):\n"
	"       one a line (scope, name, type, default, min, max, choices, doc;\n"
	"       tab-separated), or sift.conf(5) in groff with --man\n",
};
