/*
 * quarantine.c - the quarantine store (not yet written: every store fails,
 * so a plugin asking for quarantine answers tempfail and no mail is lost).
 */
#include "sift.h"

int sift_quarantine_store(const char *dir, struct sift_ctx *ctx, const char *reason, const char *plugin,
			  char **id_r, char **err_r)
{
	*err_r = sift_strdup("the quarantine store is not available in this build");
	return -1;
}
