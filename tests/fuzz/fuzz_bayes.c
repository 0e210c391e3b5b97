/*
 * fuzz_bayes.c - libFuzzer target for the spam plugin's Bayes tokenizer and
 * classifier (plugins/spam/bayes*.c): the input is a message, parsed as
 * MIME by the core, learned as spam into a memory store, scored (BAYES_*
 * rules), then forgotten. Invariants: every token has 40 bits; forgetting
 * what was learned leaves the store's totals and tokens at zero; learning
 * the same message twice changes nothing the second time. Replayed over
 * tests/fuzz/corpus/bayes/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/spam/bayes.h"
#include "../../plugins/spam/engine.h"
#include "mailsyntax.h"
#include "mime.h"
#include "sift.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char rules[] = "loadplugin Mail::SpamAssassin::Plugin::Bayes\n"
			    "body BAYES_00 eval:check_bayes('0', '0.01')\n"
			    "body BAYES_99 eval:check_bayes('0.99', '1.00')\n"
			    "body BAYES_50 eval:check_bayes('0.40', '0.60')\n"
			    "tflags BAYES_99 learn\nscore BAYES_99 0 0 3.5 3.5\n"
			    "body TEXT /a/\nscore TEXT 13\nheader SUBJ Subject =~ /./\nscore SUBJ 5\n";

static struct spam_engine *engine;

static void token_cb(void *arg, const char *tok, size_t len)
{
	(void)arg;
	if (!tok || len == 0)
		abort();
	if ((bayes_hash(tok, len) >> 40) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 200000)
		return 0;
	if (!engine) {
		struct spam_engine_opts o = {
			.use_hyperscan = 0, .body_scan_size = 50000, .score_set = SPAM_SET_BAYES};
		char *err = NULL;
		engine = spam_engine_new_text(&o, "bayes.cf", rules, sizeof(rules) - 1, &err);
		if (!engine)
			abort();
	}
	struct sift_mime *mime = sift_mime_parse_message(data, size, NULL);
	if (!mime)
		return 0;
	char *err = NULL;
	struct bstore *st = bstore_open("memory", NULL, 0, 0, &err);
	struct bayes b = {.st = st,
			  .o = {.min_spam_num = 1,
				.min_ham_num = 1,
				.auto_learn = true,
				.autolearn_nonspam = 0.1,
				.autolearn_spam = 12,
				.max_db_size = 150000},
			  .learn_lock = PTHREAD_MUTEX_INITIALIZER,
			  .touch_lock = PTHREAD_MUTEX_INITIALIZER};
	struct spam_input in = {.mime = mime, .addrlist_parse = sift_addrlist_parse, .bayes = &b};
	spam_engine_tokens(engine, &in, token_cb, NULL);
	int r1 = spam_engine_learn(engine, &in, true, false);
	int r2 = spam_engine_learn(engine, &in, true, false);
	if (r1 != 1 || r2 != 0)
		abort();
	/* one ham so that Bayes is ready: the message scores (and may autolearn) */
	struct bcounts c = {0, 1, 1};
	btok t = 1;
	st->ops->put(st, &t, &c, 1, -1, -1);
	st->ops->apply(st, NULL, 0, false, 0, 0, NULL, 0, BSTORE_ANY);
	struct spam_result r;
	spam_engine_check(engine, &in, &r);
	char *status = spam_format_status(&r, 2, 5, r.score >= 5);
	free(status);
	spam_result_free(&r);
	spam_engine_learn(engine, &in, true, true);
	long long ns, nh, nt;
	st->ops->totals(st, &ns, &nh, &nt);
	if (ns != 0)
		abort();
	bayes_autolearn_stop(&b); /* writes (and frees) the scan's touches */
	if (b.touch)
		abort();
	st->ops->close(st);
	sift_mime_free(mime);
	return 0;
}
