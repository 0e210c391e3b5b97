/*
 * test_fdsession.c - filterd's per-event session (filterd/session.c)
 * without a current configuration generation: before the first one at
 * start, or at stop once the last was dropped while libmilter's worker
 * threads may still call back. Every command is answered tempfail (with
 * the default 451 reply where a reply is taken) and nothing crashes; with
 * a generation, the same calls go on as usual.
 */
#include "t.h"
#include "sift.h"
#include "../../filterd/mproto.h"
#include "../../filterd/session.h"

static char last_code[8];
static int replies;

static const char *t_getsymval(void *arg, const char *name)
{
	(void)arg;
	(void)name;
	return NULL;
}

static int t_setreply(void *arg, const char *code, const char *xcode, const char *text)
{
	(void)arg;
	(void)xcode;
	(void)text;
	snprintf(last_code, sizeof(last_code), "%s", code);
	replies++;
	return 0;
}

static int t_hdr(void *arg, const char *name, const char *value)
{
	(void)arg, (void)name, (void)value;
	return 0;
}

static int t_ins(void *arg, int idx, const char *name, const char *value)
{
	(void)arg, (void)idx, (void)name, (void)value;
	return 0;
}

static int t_chg(void *arg, const char *name, int idx, const char *value)
{
	(void)arg, (void)name, (void)idx, (void)value;
	return 0;
}

static int t_quar(void *arg, const char *reason)
{
	(void)arg, (void)reason;
	return 0;
}

static const struct fd_out out = {t_getsymval, t_setreply, t_hdr, t_ins, t_chg, t_quar};

static void no_generation(void)
{
	sift_gen_set_current(NULL);
	struct fd_session s;
	fd_session_init(&s, &out, NULL);
	CHECK(s.ss == NULL);
	unsigned long pf0 = 1, pf1 = 1;
	fd_session_negotiate(&s, 0x1ff, 0x1fffff, &pf0, &pf1);
	CHECK(pf0 == 0 && pf1 == 0);
	replies = 0;
	CHECK_INT(fd_session_connect(&s, "client.example", "192.0.2.1", "25"), FD_TEMPFAIL);
	CHECK_INT(replies, 0); /* no reply text at connect */
	CHECK_INT(fd_session_helo(&s, "client.example"), FD_TEMPFAIL);
	CHECK_STR(last_code, "451");
	CHECK_INT(fd_session_envfrom(&s, "<a@example.org>"), FD_TEMPFAIL);
	CHECK_INT(fd_session_envrcpt(&s, "<b@example.com>"), FD_TEMPFAIL);
	CHECK_INT(fd_session_data(&s), FD_TEMPFAIL);
	CHECK_INT(fd_session_header(&s, "Subject", "x"), FD_TEMPFAIL);
	CHECK_INT(fd_session_eoh(&s), FD_TEMPFAIL);
	CHECK_INT(fd_session_body(&s, (const unsigned char *)"hi\r\n", 4), FD_TEMPFAIL);
	CHECK_INT(fd_session_eom(&s), FD_TEMPFAIL);
	CHECK_INT(replies, 8);
	fd_session_abort(&s);
	fd_session_quit(&s);
	fd_session_free(&s);
	CHECK(s.ss == NULL && !s.counted);
}

static void with_generation(void)
{
	struct sift_config *cfg = sift_config_new();
	sift_config_common_defaults(cfg);
	char *err = NULL;
	if (sift_config_set(cfg, "plugin_directory = /nonexistent", "test", &err) < 0 ||
	    sift_config_set(cfg, "quarantine_directory =", "test", &err) < 0)
		abort();
	struct sift_gen *g = sift_gen_new(SIFT_FILTERD, cfg, &err);
	if (!g) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	sift_gen_set_current(g);
	struct fd_session s;
	fd_session_init(&s, &out, NULL);
	CHECK(s.ss != NULL);
	unsigned long pf0, pf1;
	fd_session_negotiate(&s, 0x1ff, 0x1fffff, &pf0, &pf1);
	CHECK(s.counted);
	CHECK(fd_session_connect(&s, "client.example", "192.0.2.1", "25") != FD_TEMPFAIL);
	CHECK(fd_session_envfrom(&s, "<a@example.org>") != FD_TEMPFAIL);
	/* the generation dropped meanwhile: the session keeps its own */
	sift_gen_set_current(NULL);
	CHECK(fd_session_envrcpt(&s, "<b@example.com>") != FD_TEMPFAIL);
	fd_session_free(&s);
}

int main(void)
{
	sift_log_init("test_fdsession", true, LOG_CRIT);
	no_generation();
	with_generation();
	return t_done();
}
