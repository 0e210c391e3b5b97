/*
 * clamav-int.h - internal interfaces of the clamav plugin (not installed).
 *
 * clamav.c   the plugin: parameters, end-of-message scan, actions, headers.
 * engine.c   library mode: one libclamav engine per process shared by all
 *            threads and configuration generations, loaded and reloaded by
 *            a watcher thread.
 * clamd.c    clamd mode: zINSTREAM client with failover and a bounded
 *            number of concurrent streams; socket helpers with deadlines;
 *            the counting semaphore that bounds both modes' scans.
 * notify.c   notification mails to the administrator over SMTP, from a
 *            bounded queue drained by one sender thread.
 */
#ifndef SIFT_CLAMAV_H
#define SIFT_CLAMAV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "sift/plugin.h"

extern const struct sift_host *clamav_host;

/* Outcome of one scan. */
enum scan_result {
	SCAN_CLEAN = 0,
	SCAN_VIRUS,  /* name = the signature */
	SCAN_LIMIT,  /* over a limit or encrypted: name = what (heuristic name or text) */
	SCAN_FAILED, /* scanner unavailable, timeout, error: name = why */
};

/* What is scanned: an mbox "From " line (so that ClamAV recognises mail),
 * then the message as received, read from the host's copy in pieces
 * (host->message_read): no scanner holds the whole message. */
struct scan_src {
	struct sift_ctx *ctx;
	long long size; /* bytes in all, the From line included */
};
/* Fills buf with up to len bytes from offset off: the count (short only at
 * the end), 0 at or past the end, -1 when the host cannot read. */
long src_read(const struct scan_src *s, long long off, void *buf, size_t len);

/* Heuristic alerts asked of the engine (engine_scan's heuristic). */
#define CL_HEUR_ENCRYPTED 0x1 /* encrypted archives and documents */
#define CL_HEUR_EXCEEDS	  0x2 /* content over the engine's limits */

/* ClamAV's name for a scan that ran out of time (MaxScanTime): the scan
 * stopped there, so what follows was never looked at. A failure, never a
 * limit: an infected message takes longer to scan as easily as a clean one. */
static inline bool alert_is_timeout(const char *name)
{
	static const char suffix[] = ".MaxScanTime";
	size_t n = strlen(name), k = sizeof(suffix) - 1;
	return strncmp(name, "Heuristics.Limits.Exceeded", 26) == 0 && n >= k &&
	       strcmp(name + n - k, suffix) == 0;
}

/* ---- engine.c ----------------------------------------------------------- */
struct engine_settings {
	const char *dbdir, *tmpdir;
	long long check_interval_ms;
	long long max_scansize, max_filesize, max_recursion, max_files, max_scantime;
	bool official_only, pua;
};
struct engine_mgr;
/* Returns the process's manager for these settings (shared when they are
 * the same as a running one), starting its watcher thread; NULL + *err_r. */
struct engine_mgr *engine_mgr_get(const struct engine_settings *s, char **err_r);
void engine_mgr_put(struct engine_mgr *m);
/* Scans src with the current engine (through a libclamav map that pages
 * src in as the scan goes, with libclamav's aging of old pages); waits up
 * to wait_ms for the first engine. heuristic: CL_HEUR_* bits. The name or
 * the reason goes into namebuf. */
enum scan_result engine_scan(struct engine_mgr *m, const struct scan_src *src, unsigned heuristic,
			     long wait_ms, char *namebuf, size_t namelen);
/* "1.4.6" (the library's version). */
const char *engine_version(void);

/* ---- clamd.c ------------------------------------------------------------ */
/* A counting semaphore with a bounded wait: clamd streams, and libclamav
 * scans in library mode (each holds the decoded parts of a message). */
struct slots {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	long long active, max;
};
void slots_init(struct slots *s, long long max);
/* A condition variable whose timed waits count on CLOCK_MONOTONIC. */
void cond_init_monotonic(pthread_cond_t *c);
/* A new limit (slots taken stay taken; waiters see a raised one). */
void slots_set_max(struct slots *s, long long max);
void slots_destroy(struct slots *s);
/* Takes a slot, waiting until deadline (clock_ms()) at most: false when
 * none came free in time. */
bool slots_take(struct slots *s, long long deadline);
void slots_give(struct slots *s);

struct endpoint {
	int family;
	struct sockaddr_storage sa;
	socklen_t salen;
	char *text;
};
/* "unix:/path", "/path", "inet:host:port", "host:port"; default_port used
 * when no port is given. Resolves names now (init time only). */
int endpoint_parse(const char *spec, int default_port, struct endpoint *ep, char **err_r);
void endpoint_free(struct endpoint *ep);
/* Connects with a deadline (sift_now-style ms, from clock_ms()); returns a
 * non-blocking socket or -1 with errno set. */
int sock_connect(const struct endpoint *ep, long long deadline);
int sock_send_all(int fd, const void *p, size_t n, long long deadline);
/* Sends all of iov (advanced in place) with the same deadline. */
struct iovec;
int sock_sendv_all(int fd, struct iovec *iov, int n, long long deadline);
/* Reads until `stop` byte is seen (included) or EOF or n-1 bytes; returns the
 * length (NUL-terminated), -1 on error/timeout. */
long sock_recv_until(int fd, char *buf, size_t n, char stop, long long deadline);
long long clock_ms(void);

struct clamd_client;
struct clamd_client *clamd_new(const char *const *servers, long long connect_timeout_ms,
			       long long scan_timeout_ms, long long max_streams, long long stream_wait_ms,
			       char **err_r);
void clamd_free(struct clamd_client *c);
/* Streams src to clamd in chunks (one chunk buffer per scan). */
enum scan_result clamd_scan(struct clamd_client *c, const struct scan_src *src, long long deadline,
			    char *namebuf, size_t namelen);
/* clamd's version ("1.4.6") once known, else NULL. */
const char *clamd_version(struct clamd_client *c);

/* ---- notify.c ----------------------------------------------------------- */
struct notifier;
struct notifier *notifier_new(const char *relay, const char *sender, const char *rcpt, long long timeout_ms,
			      long long queue_max, char **err_r);
void notifier_free(struct notifier *n);
/* Queues a message (headers + body text, LF or CRLF). Never blocks; false
 * when the queue is full. helo is copied. */
bool notifier_send(struct notifier *n, const char *helo, const char *text);

#endif
