/*
 * log.c - logging in Postfix maillog style. To syslog (facility mail) by
 * default, or to stderr in the foreground. Per-message lines start with the
 * queue id ("NOQUEUE" before Postfix has one) so that `grep QUEUEID maillog`
 * shows Postfix's and Sift's lines together. Thread-safe: one write(2) per
 * line on stderr, syslog(3) is thread-safe.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sift.h"

static const char *log_prog = "sift";
static bool log_stderr = true;
static int log_max = LOG_INFO;

void sift_log_init(const char *progname, bool to_stderr, int max_level)
{
	log_prog = progname;
	log_stderr = to_stderr;
	log_max = max_level;
	if (!to_stderr)
		openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void sift_log_set_level(int max_level)
{
	log_max = max_level;
}

static const char *level_word(int level)
{
	switch (level) {
	case LOG_EMERG:
	case LOG_ALERT:
	case LOG_CRIT:
		return "fatal: ";
	case LOG_ERR:
		return "error: ";
	case LOG_WARNING:
		return "warning: ";
	case LOG_DEBUG:
		return "debug: ";
	default:
		return "";
	}
}

static void emit(int level, const char *prefix, const char *text)
{
	if (level > log_max)
		return;
	/* Keep lines single: a value with CR/LF must not forge log lines. */
	char line[4096];
	size_t n = 0;
	for (const char *s = text; *s && n < sizeof(line) - 1; s++)
		line[n++] = (*s == '\n' || *s == '\r') ? ' ' : *s;
	line[n] = 0;
	if (!log_stderr) {
		syslog(level, "%s%s%s", level_word(level), prefix, line);
		return;
	}
	struct timeval tv;
	struct tm tm;
	char ts[32];
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
	char *out = sift_asprintf("%s %s[%d]: %s%s%s\n", ts, log_prog, (int)getpid(), level_word(level),
				  prefix, line);
	ssize_t w = write(2, out, strlen(out));
	(void)w;
	free(out);
}

void sift_vlog(int level, const char *fmt, va_list ap)
{
	if (level > log_max)
		return;
	char *text = sift_vasprintf(fmt, ap);
	emit(level, "", text);
	free(text);
}

void sift_log(int level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sift_vlog(level, fmt, ap);
	va_end(ap);
}

void sift_vlog_msg(int level, const char *qid, const char *plugin, const char *fmt, va_list ap)
{
	if (level > log_max)
		return;
	char *text = sift_vasprintf(fmt, ap);
	char *prefix = sift_asprintf("%s: %s%s", qid && *qid ? qid : "NOQUEUE", plugin ? plugin : "",
				     plugin ? ": " : "");
	emit(level, prefix, text);
	free(prefix);
	free(text);
}

void sift_log_msg(int level, const char *qid, const char *plugin, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sift_vlog_msg(level, qid, plugin, fmt, ap);
	va_end(ap);
}

void sift_fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *text = sift_vasprintf(fmt, ap);
	va_end(ap);
	emit(LOG_CRIT, "", text);
	exit(1);
}
