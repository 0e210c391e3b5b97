/*
 * reply.c - the SMTP replies of verdicts: one set of rules, checked once
 * when a plugin's REJECT or TEMPFAIL is merged (host.c), and one formatter
 * used by filterd's two milter engines and by policyd. See sift.h.
 */
#include <string.h>

#include "sift.h"

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1 to 3 digits at *pp, advanced past them. */
static bool digits_1_3(const char **pp)
{
	const char *p = *pp;
	size_t n = 0;
	while (n < 3 && is_digit(p[n]))
		n++;
	*pp = p + n;
	return n > 0 && !is_digit(p[n]);
}

bool sift_reply_code_ok(char cls, const char *code)
{
	return code && code[0] == cls && (cls == '4' || cls == '5') && code[1] >= '0' && code[1] <= '5' &&
	       is_digit(code[2]) && code[3] == 0;
}

bool sift_reply_xcode_ok(char cls, const char *xcode)
{
	if (!xcode || xcode[0] != cls || (cls != '2' && cls != '4' && cls != '5') || xcode[1] != '.')
		return false;
	const char *p = xcode + 2;
	if (!digits_1_3(&p) || *p++ != '.' || !digits_1_3(&p))
		return false;
	return *p == 0;
}

const char *sift_reply_check(char cls, const char *code, const char *xcode, const char *text)
{
	if (cls != '4' && cls != '5')
		return "no reply for this verdict";
	if (code && !sift_reply_code_ok(cls, code))
		return cls == '5' ? "the code is not 5xx (RFC 5321)" : "the code is not 4xx (RFC 5321)";
	if (xcode && *xcode && !code)
		return "an enhanced status code without a reply code";
	if (xcode && *xcode && !sift_reply_xcode_ok(cls, xcode))
		return "the enhanced status code is not class.subject.detail of the code's class (RFC 3463)";
	size_t len = code ? strlen(code) + 1 : 4;
	len += xcode && *xcode ? strlen(xcode) + 1 : 6;
	for (const char *t = text; t && *t; t++) {
		unsigned char c = (unsigned char)*t;
		if (c < 0x20 || c == 0x7f)
			return "the text holds a control character (CR, LF, ...)";
		len += c == '%' ? 2 : 1;
	}
	if (len > SIFT_REPLY_MAX)
		return "the reply is too long";
	return NULL;
}

void sift_reply_default(enum sift_verdict v, const char **code_r, const char **xcode_r, const char **text_r)
{
	bool rej = v != SIFT_TEMPFAIL;
	if (code_r)
		*code_r = rej ? "550" : "451";
	if (xcode_r)
		*xcode_r = rej ? "5.7.1" : "4.7.1";
	if (text_r)
		*text_r = rej ? "Message rejected" : "Try again later";
}

void sift_result_reply(const struct sift_result *r, enum sift_verdict v, const char **code_r,
		       const char **xcode_r, const char **text_r)
{
	const char *dc, *dx, *dt;
	sift_reply_default(v, &dc, &dx, &dt);
	bool own = r->reply_code != NULL;
	*code_r = own ? r->reply_code : dc;
	*xcode_r = own ? (r->reply_xcode && *r->reply_xcode ? r->reply_xcode : NULL) : dx;
	*text_r = r->reply_text ? r->reply_text : dt;
}

char *sift_reply_format(const char *code, const char *xcode, const char *text, bool milter)
{
	struct sift_buf b = {0};
	if (code)
		sift_buf_adds(&b, code);
	if (code && xcode && *xcode) {
		sift_buf_add(&b, " ", 1);
		sift_buf_adds(&b, xcode);
	}
	if (text) {
		if (code)
			sift_buf_add(&b, " ", 1);
		for (const char *t = text; *t; t++) {
			/* the milter's reply text goes through printf-like code
			 * in the MTA (a single '%' is dropped): double it */
			if (*t == '%' && milter)
				sift_buf_add(&b, "%", 1);
			sift_buf_add(&b, t, 1);
		}
	}
	return (char *)sift_buf_str(&b);
}
