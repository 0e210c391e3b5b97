/*
 * notify.c - notification mails to the administrator.
 *
 * Plugins never fork, so a notification is sent by SMTP to a relay
 * (normally the local Postfix) by one sender thread, started when the
 * notifier is created (plugin init) and joined when it is freed (release).
 * Hooks only append to a bounded queue (never block); when the queue is full
 * the notification is dropped with a log line. Every SMTP step is bounded by
 * the configured timeout, so a slow or dead relay delays only later
 * notifications, never mail. Rate limiting is done by the caller (the key
 * value store), before queueing. At release the queue is dropped, not
 * drained (logged).
 *
 * Notifications go out with the configured envelope sender (default the
 * null sender, so that they never bounce back in a loop).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "clamav-int.h"

struct note {
	char *helo, *text;
	struct note *next;
};

struct notifier {
	struct endpoint relay;
	char *sender, *rcpt;
	long long timeout;
	long long max;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct note *head, **tail;
	long long count;
	bool stop;
	pthread_t thread;
};

/* Reads one SMTP reply (possibly multi-line); returns the code or -1. */
static int smtp_reply(int fd, long long deadline)
{
	char buf[1024];
	size_t have = 0;
	for (;;) {
		/* Read a line byte-wise into buf (replies are short). */
		long r = sock_recv_until(fd, buf + have, sizeof(buf) - have, '\n', deadline);
		if (r <= 0)
			return -1;
		have += (size_t)r;
		char *nl = memchr(buf, '\n', have);
		if (!nl) {
			if (have >= sizeof(buf) - 1)
				have = 0; /* overlong line: drop it */
			continue;
		}
		/* A line: "250-..." continues, "250 ..." ends. The recv may
		 * have taken more than one line; handle each. */
		char *line = buf;
		while (nl) {
			if (nl - line >= 3) {
				int code = atoi(line);
				if (nl - line == 3 || line[3] != '-')
					return code;
			}
			line = nl + 1;
			nl = memchr(line, '\n', have - (size_t)(line - buf));
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
	}
}

static int smtp_cmd(int fd, const char *cmd, int want, long long deadline)
{
	if (cmd && sock_send_all(fd, cmd, strlen(cmd), deadline) < 0)
		return -1;
	int code = smtp_reply(fd, deadline);
	return code / 100 == want / 100 ? 0 : -1;
}

static int send_note(struct notifier *n, const struct note *note, char *why, size_t whylen)
{
	long long deadline = clock_ms() + n->timeout;
	int fd = sock_connect(&n->relay, deadline);
	if (fd < 0) {
		snprintf(why, whylen, "connect %s: %s", n->relay.text, strerror(errno));
		return -1;
	}
	char *cmd = NULL;
	int rc = -1;
	const char *step = "greeting";
	size_t cl = strlen(note->helo) + strlen(n->sender) + strlen(n->rcpt) + 64;
	cmd = malloc(cl);
	if (!cmd)
		goto out;
	if (smtp_cmd(fd, NULL, 220, deadline) < 0)
		goto out;
	step = "HELO";
	snprintf(cmd, cl, "HELO %s\r\n", note->helo);
	if (smtp_cmd(fd, cmd, 250, deadline) < 0)
		goto out;
	step = "MAIL FROM";
	snprintf(cmd, cl, "MAIL FROM:<%s>\r\n", n->sender);
	if (smtp_cmd(fd, cmd, 250, deadline) < 0)
		goto out;
	step = "RCPT TO";
	snprintf(cmd, cl, "RCPT TO:<%s>\r\n", n->rcpt);
	if (smtp_cmd(fd, cmd, 250, deadline) < 0)
		goto out;
	step = "DATA";
	if (smtp_cmd(fd, "DATA\r\n", 354, deadline) < 0)
		goto out;
	/* Text with CRLF line ends and dot-stuffing. */
	const char *p = note->text;
	bool ok = true;
	while (*p && ok) {
		size_t l = strcspn(p, "\r\n");
		if (*p == '.')
			ok = sock_send_all(fd, ".", 1, deadline) == 0;
		ok = ok && sock_send_all(fd, p, l, deadline) == 0 &&
		     sock_send_all(fd, "\r\n", 2, deadline) == 0;
		p += l;
		if (*p == '\r')
			p++;
		if (*p == '\n')
			p++;
	}
	step = "end of data";
	if (!ok || smtp_cmd(fd, ".\r\n", 250, deadline) < 0)
		goto out;
	(void)sock_send_all(fd, "QUIT\r\n", 6, deadline);
	rc = 0;
out:
	if (rc < 0)
		snprintf(why, whylen, "%s: %s failed%s", n->relay.text, step,
			 clock_ms() >= deadline ? " (timeout)" : "");
	free(cmd);
	close(fd);
	return rc;
}

static void *sender_thread(void *arg)
{
	struct notifier *n = arg;
	for (;;) {
		pthread_mutex_lock(&n->lock);
		while (!n->head && !n->stop)
			pthread_cond_wait(&n->cond, &n->lock);
		if (n->stop) {
			pthread_mutex_unlock(&n->lock);
			break;
		}
		struct note *note = n->head;
		n->head = note->next;
		if (!n->head)
			n->tail = &n->head;
		n->count--;
		pthread_mutex_unlock(&n->lock);
		char why[512];
		if (send_note(n, note, why, sizeof(why)) == 0)
			clamav_host->log(NULL, LOG_INFO, "clamav: notification sent to <%s>", n->rcpt);
		else
			clamav_host->log(NULL, LOG_WARNING, "clamav: notification to <%s> not sent: %s",
					 n->rcpt, why);
		free(note->helo);
		free(note->text);
		free(note);
	}
	return NULL;
}

struct notifier *notifier_new(const char *relay, const char *sender, const char *rcpt, long long timeout_ms,
			      long long queue_max, char **err_r)
{
	struct notifier *n = calloc(1, sizeof(*n));
	if (!n) {
		*err_r = strdup("out of memory");
		return NULL;
	}
	if (endpoint_parse(relay, 25, &n->relay, err_r) < 0) {
		free(n);
		return NULL;
	}
	n->sender = strdup(sender);
	n->rcpt = strdup(rcpt);
	n->timeout = timeout_ms;
	n->max = queue_max;
	n->tail = &n->head;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	if (pthread_create(&n->thread, NULL, sender_thread, n) != 0) {
		*err_r = strdup("cannot start the notification thread");
		pthread_cond_destroy(&n->cond);
		pthread_mutex_destroy(&n->lock);
		endpoint_free(&n->relay);
		free(n->sender);
		free(n->rcpt);
		free(n);
		return NULL;
	}
	return n;
}

void notifier_free(struct notifier *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	pthread_join(n->thread, NULL);
	long long dropped = 0;
	while (n->head) {
		struct note *x = n->head;
		n->head = x->next;
		free(x->helo);
		free(x->text);
		free(x);
		dropped++;
	}
	if (dropped)
		clamav_host->log(NULL, LOG_WARNING, "clamav: %lld queued notifications dropped at shutdown",
				 dropped);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	endpoint_free(&n->relay);
	free(n->sender);
	free(n->rcpt);
	free(n);
}

bool notifier_send(struct notifier *n, const char *helo, const char *text)
{
	struct note *note = calloc(1, sizeof(*note));
	if (!note)
		return false;
	note->helo = strdup(helo && *helo ? helo : "localhost");
	note->text = strdup(text);
	if (!note->helo || !note->text) {
		free(note->helo);
		free(note->text);
		free(note);
		return false;
	}
	pthread_mutex_lock(&n->lock);
	if (n->count >= n->max || n->stop) {
		pthread_mutex_unlock(&n->lock);
		free(note->helo);
		free(note->text);
		free(note);
		return false;
	}
	*n->tail = note;
	n->tail = &note->next;
	n->count++;
	pthread_cond_signal(&n->cond);
	pthread_mutex_unlock(&n->lock);
	return true;
}
