/*
 * test_reply.c - the SMTP reply rules (lib/reply.c): reply codes of the
 * verdict's class (RFC 5321), enhanced status codes of the same class
 * (RFC 3463), text without control characters, the length bound with '%'
 * doubled for the milter, the defaults and the formatting.
 */
#include <stdlib.h>
#include <string.h>

#include "sift.h"
#include "t.h"

struct rcase {
	char cls;
	const char *code, *xcode, *text;
	int ok;
};

static const struct rcase cases[] = {
	{'5', "550", "5.7.1", "go away", 1},
	{'5', "554", "5.7.1", NULL, 1},
	{'5', "550", NULL, "no enhanced code", 1},
	{'5', "550", "", "empty enhanced code = none", 1},
	{'5', NULL, NULL, "text alone (policyd: REJECT text)", 1},
	{'5', NULL, NULL, NULL, 1},
	{'4', "451", "4.7.1", "later", 1},
	{'4', "421", "4.3.0", "closing", 1},
	{'5', "550", "5.1.10", "three-digit detail", 1},
	{'5', "553", "5.123.456", "three digits each", 1},
	{'5', "550", "5.7.1", "100% sure", 1},
	{'5', "550", "5.7.1", "UTF-8 \xc3\xa9t\xc3\xa9", 1},
	/* the code */
	{'5', "451", "4.7.1", "wrong class", 0},
	{'4', "550", "5.7.1", "wrong class", 0},
	{'5', "250", "2.0.0", "not a failure", 0},
	{'5', "55", "5.7.1", "two digits", 0},
	{'5', "5500", "5.7.1", "four digits", 0},
	{'5', "5x0", "5.7.1", "not a digit", 0},
	{'5', "560", "5.7.1", "second digit over 5", 0},
	{'5', " 550", "5.7.1", "leading space", 0},
	{'5', "", NULL, "empty code", 0},
	/* the enhanced code */
	{'5', "550", "5..1", "empty subject", 0},
	{'5', "550", "5.7.", "empty detail", 0},
	{'5', "550", "4.7.1", "class differs from the code", 0},
	{'4', "450", "5.7.1", "class differs from the code", 0},
	{'5', "550", "5.7", "two parts", 0},
	{'5', "550", "5.7.1.2", "four parts", 0},
	{'5', "550", "5.1234.1", "four-digit subject", 0},
	{'5', "550", "5.7.1234", "four-digit detail", 0},
	{'5', "550", "5.7.a", "letter", 0},
	{'5', "550", "55.7.1", "two-digit class", 0},
	{'5', "550", "3.7.1", "class 3", 0},
	{'5', "550", "5.7.1 ", "trailing space", 0},
	{'5', NULL, "5.7.1", "enhanced code without a code", 0},
	/* the text */
	{'5', "550", "5.7.1", "line\r\nbreak", 0},
	{'5', "550", "5.7.1", "bare\nLF", 0},
	{'5', "550", "5.7.1", "bare\rCR", 0},
	{'5', "550", "5.7.1", "tab\there", 0},
	{'5', "550", "5.7.1", "del\x7f", 0},
	/* the class itself */
	{'2', "250", "2.0.0", "ok", 0},
};

int main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct rcase *c = &cases[i];
		const char *why = sift_reply_check(c->cls, c->code, c->xcode, c->text);
		if ((why == NULL) != c->ok)
			fprintf(stderr, "case %zu (%s %s %s): %s\n", i, c->code ? c->code : "-",
				c->xcode ? c->xcode : "-", c->text ? c->text : "-", why ? why : "valid");
		CHECK((why == NULL) == c->ok);
	}

	/* The length bound counts the reply as the milter sends it. */
	char text[SIFT_REPLY_MAX + 2];
	size_t room = SIFT_REPLY_MAX - strlen("550 5.7.1 ");
	memset(text, 'a', room);
	text[room] = 0;
	CHECK(sift_reply_check('5', "550", "5.7.1", text) == NULL);
	char *r = sift_reply_format("550", "5.7.1", text, true);
	CHECK_INT(strlen(r), SIFT_REPLY_MAX);
	free(r);
	text[room] = 'a';
	text[room + 1] = 0;
	CHECK(sift_reply_check('5', "550", "5.7.1", text) != NULL);
	text[room] = 0;
	text[0] = '%'; /* doubled: one byte too many */
	CHECK(sift_reply_check('5', "550", "5.7.1", text) != NULL);
	/* text alone: counted with the default code it will get */
	text[0] = 'a';
	CHECK(sift_reply_check('5', NULL, NULL, text) == NULL);
	text[room] = 'a';
	text[room + 1] = 0;
	CHECK(sift_reply_check('5', NULL, NULL, text) != NULL);

	CHECK(sift_reply_code_ok('5', "559"));
	CHECK(!sift_reply_code_ok('5', "599"));
	CHECK(!sift_reply_code_ok('5', NULL));
	CHECK(sift_reply_xcode_ok('2', "2.0.0"));
	CHECK(!sift_reply_xcode_ok('5', NULL));

	/* Formatting: '%' doubled for the milter only; parts may be absent. */
	r = sift_reply_format("550", "5.7.1", "100% sure", true);
	CHECK_STR(r, "550 5.7.1 100%% sure");
	free(r);
	r = sift_reply_format("550", "5.7.1", "100% sure", false);
	CHECK_STR(r, "550 5.7.1 100% sure");
	free(r);
	r = sift_reply_format("451", NULL, "later", false);
	CHECK_STR(r, "451 later");
	free(r);
	r = sift_reply_format("451", "", NULL, false);
	CHECK_STR(r, "451");
	free(r);
	r = sift_reply_format(NULL, NULL, "50% off", true);
	CHECK_STR(r, "50%% off");
	free(r);

	/* Defaults, and a result's reply completed with them. */
	const char *code, *xcode, *rtext;
	sift_reply_default(SIFT_REJECT, &code, &xcode, &rtext);
	CHECK_STR(code, "550");
	CHECK_STR(xcode, "5.7.1");
	CHECK_STR(rtext, "Message rejected");
	CHECK(sift_reply_check('5', code, xcode, rtext) == NULL);
	sift_reply_default(SIFT_TEMPFAIL, &code, &xcode, &rtext);
	CHECK_STR(code, "451");
	CHECK_STR(xcode, "4.7.1");
	CHECK_STR(rtext, "Try again later");
	CHECK(sift_reply_check('4', code, xcode, rtext) == NULL);

	struct sift_result res;
	memset(&res, 0, sizeof(res));
	res.reply_text = (char *)"just text";
	sift_result_reply(&res, SIFT_TEMPFAIL, &code, &xcode, &rtext);
	CHECK_STR(code, "451");
	CHECK_STR(xcode, "4.7.1");
	CHECK_STR(rtext, "just text");
	res.reply_code = (char *)"554";
	res.reply_text = NULL;
	sift_result_reply(&res, SIFT_REJECT, &code, &xcode, &rtext);
	CHECK_STR(code, "554");
	CHECK(xcode == NULL); /* a code without enhanced code stays so */
	CHECK_STR(rtext, "Message rejected");
	return t_done();
}
