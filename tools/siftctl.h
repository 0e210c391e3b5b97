/*
 * siftctl.h - siftctl's core subcommands. Each has its own file
 * (siftctl-quarantine.c, ...) with one entry point; argv[0] is the command
 * word ("quarantine"), opts holds the common -c/-o options already parsed.
 * Return the exit status. Usage text: a static string printed by `siftctl
 * help`. The plugins' commands (`siftctl dkim ...`) are the plugins' own
 * tools, run by siftctl-tools.c.
 */
#ifndef SIFTCTL_H
#define SIFTCTL_H
#include "sift.h"

struct siftctl_cmd {
	const char *name;
	int (*run)(int argc, char **argv, struct sift_opts *opts);
	const char *usage;
};
extern const struct siftctl_cmd siftctl_quarantine_cmd, siftctl_params_cmd;

/* Loads the configuration (o) and builds a generation for daemon d; NULL
 * with *err_r (malloc'd) on error. */
struct sift_gen *siftctl_gen(const struct sift_opts *o, enum sift_daemon d, char **err_r);

/* `siftctl PLUGIN [TOOL ARGS]` (argv[0] = PLUGIN): runs the plugin's tool, or
 * prints the plugin's tools (help). Returns the exit status, or -1 when
 * there is no plugin PLUGIN with tools. */
int siftctl_tool(const struct sift_opts *o, int argc, char **argv, bool help);
/* Lists the tools of every plugin of the plugin directory. */
void siftctl_tools_usage(FILE *out, const struct sift_opts *o);

/* Writes the bytes of in (or the string text) to out with control
 * characters escaped as \xHH (LF kept, TAB kept with tab, CR LF as LF): for
 * text from outside siftctl (messages, quarantine records, a daemon's
 * answers), which must not drive the terminal. */
void siftctl_put_safe(FILE *in, FILE *out, bool tab);
void siftctl_put_text(FILE *out, const char *text, bool tab);

/* The error of a message file over SIFT_TOOL_MESSAGE_MAX (malloc'd). */
char *siftctl_too_large(const char *file);
#endif
