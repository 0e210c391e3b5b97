/*
 * bayes_engine.h - Bayes in the rule engine (bayes_engine.c): the
 * check_bayes eval, the per-message score set, autolearn.
 */
#ifndef SPAM_BAYES_ENGINE_H
#define SPAM_BAYES_ENGINE_H

#include "internal.h"

/* eval:check_bayes('MIN', 'MAX'): the probability in (MIN, MAX]. */
int ev_check_bayes(struct msgctx *m, const struct rule *r);
/* The engine's score set, with the Bayes bit while Bayes is usable (enough
 * spam and ham learned), as SpamAssassin picks it per message. */
int bayes_score_set(const struct spam_engine *e, const struct spam_input *in);
/* After scoring: res->bayes, res->autolearn, and the autolearn itself. */
void bayes_after_check(struct msgctx *m, struct spam_result *res);
void bayes_msg_free(struct msgctx *m);

#endif
