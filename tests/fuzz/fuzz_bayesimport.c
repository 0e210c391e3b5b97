/*
 * fuzz_bayesimport.c - libFuzzer target for the import of an
 * `sa-learn --backup` dump (bayes_import in plugins/spam/bayes.c, the
 * reader behind `siftctl spam import`): the input is the dump, imported
 * into a memory store.
 *
 * Invariants: an import either fails with a message naming the line, or
 * returns the number of token lines; the store then holds the dump's
 * num_spam and num_nonspam (the last of each) and at most that many
 * tokens; importing the same dump again gives the same answer. Replayed
 * over tests/fuzz/corpus/bayesimport/ in every build by replay.c.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/spam/bayes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static long long import(const uint8_t *data, size_t size, long long *ns, long long *nh, long long *nt)
{
	char *err = NULL;
	struct bstore *st = bstore_open("memory", NULL, 0, 0, &err);
	if (!st)
		abort();
	struct bayes b = {.st = st, .learn_lock = PTHREAD_MUTEX_INITIALIZER};
	FILE *f = fmemopen((void *)data, size, "r");
	if (!f)
		abort();
	long long n = bayes_import(&b, f, &err);
	fclose(f);
	if (n < 0) {
		if (!err || strncmp(err, "line ", 5) != 0)
			abort();
		free(err);
	} else {
		if (err)
			abort();
		if (st->ops->totals(st, ns, nh, nt) < 0 || *nt > n || *ns < 0 || *nh < 0)
			abort();
	}
	st->ops->close(st);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 100000)
		return 0;
	long long ns = -1, nh = -1, nt = -1, ns2 = -1, nh2 = -1, nt2 = -1;
	long long n = import(data, size, &ns, &nh, &nt);
	if (import(data, size, &ns2, &nh2, &nt2) != n || ns != ns2 || nh != nh2 || nt != nt2)
		abort();
	return 0;
}
