/*
 * bodyread.c - a benchmark-only filterd plugin: the floor of a content
 * scanner. It asks for the whole body (SIFT_F_NEED_BODY), copies the
 * header and body into one malloc'd buffer at end of message exactly as
 * the clamav plugin does before it scans, and adds one header
 * ("X-Virus-Scanned: not scanned"); it scans nothing. Postfix's cost of
 * sending the body to a milter and applying a header change, plus filterd's
 * cost of receiving it, is then measured apart from ClamAV's own work.
 *
 * Built by bench/clamav/bench.py at run time (cc -shared -fPIC); never
 * installed. No state: thread-safe.
 */
#include <stdlib.h>
#include <string.h>

#include "sift/plugin.h"

static const struct sift_host *host;

static int br_init(const struct sift_host *h, void *conf, char **err_r)
{
	(void)conf;
	(void)err_r;
	host = h;
	return 0;
}

static enum sift_verdict br_eom(struct sift_ctx *ctx)
{
	size_t nh = host->header_count(ctx);
	long long body = host->body_size(ctx), total = body + 64;
	if (body < 0)
		return SIFT_ERROR;
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = host->header(ctx, i);
		total += (long long)(strlen(h->name) + strlen(h->value) + 3);
	}
	char *buf = malloc((size_t)total);
	if (!buf)
		return SIFT_ERROR;
	size_t len = 0;
	for (size_t i = 0; i < nh; i++) {
		const struct sift_header *h = host->header(ctx, i);
		size_t l = strlen(h->name);
		memcpy(buf + len, h->name, l);
		len += l;
		buf[len++] = ':';
		l = strlen(h->value);
		memcpy(buf + len, h->value, l);
		len += l;
		buf[len++] = '\r';
		buf[len++] = '\n';
	}
	buf[len++] = '\r';
	buf[len++] = '\n';
	for (long long off = 0; off < body;) {
		long n = host->body_read(ctx, off, buf + len, (size_t)(body - off));
		if (n <= 0)
			break;
		len += (size_t)n;
		off += n;
	}
	free(buf);
	host->header_add(ctx, "X-Virus-Scanned", "not scanned");
	return SIFT_DUNNO;
}

static const struct sift_param params[] = {SIFT_PARAM_END};

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	SIFT_PLUGIN_INIT,
	.name = "bodyread",
	.description = "benchmark floor: reads the whole message, adds a header, scans nothing",
	.daemons = SIFT_D_FILTERD,
	.actions = SIFT_A_ADDHDRS,
	.flags = SIFT_F_NEED_BODY,
	.params = params,
	.init = br_init,
	.eom = br_eom,
};
