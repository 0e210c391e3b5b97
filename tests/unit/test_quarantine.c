/*
 * test_quarantine.c - release tokens (lib/quarantine.c): one use each, and
 * never read or removed through a symbolic link put in the place of
 * DIR/.release.
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sift.h"
#include "t.h"

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int main(void)
{
	char base[] = "/tmp/sift-test-quarantine-XXXXXX";
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 2;
	}
	char *store = sift_asprintf("%s/store", base), *other = sift_asprintf("%s/other", base);
	char *err = NULL, *tok = NULL, *id = NULL;
	if (mkdir(store, 0700) < 0 || mkdir(other, 0700) < 0) {
		perror("mkdir");
		return 2;
	}

	/* one use */
	CHECK_INT(sift_quarantine_release_token(store, "Q-1", &tok, &err), 0);
	CHECK(tok && sift_quarantine_token_valid(tok));
	CHECK_INT(sift_quarantine_release_check(store, tok, &id), 1);
	CHECK_STR(id, "Q-1");
	free(id);
	CHECK_INT(sift_quarantine_release_consume(store, tok), 0);
	CHECK_INT(sift_quarantine_release_check(store, tok, &id), 0);
	CHECK(id == NULL);
	CHECK(sift_quarantine_release_consume(store, tok) < 0 && errno == ENOENT);
	CHECK_INT(sift_quarantine_release_check(store, "not-a-token", &id), 0);
	CHECK(sift_quarantine_release_consume(store, "../../etc/passwd") < 0);

	/* .release replaced by a symbolic link to a directory holding a file
	 * of the token's name: not read, not removed */
	char *odir = sift_asprintf("%s/.release", other), *rdir = sift_asprintf("%s/.release", store);
	CHECK(mkdir(odir, 0700) == 0);
	char *victim = t_write_file(odir, tok, "Q-2\n");
	CHECK(rmdir(rdir) == 0 || errno == ENOENT);
	CHECK(symlink(odir, rdir) == 0);
	CHECK_INT(sift_quarantine_release_check(store, tok, &id), 0);
	CHECK(id == NULL);
	CHECK(sift_quarantine_release_consume(store, tok) < 0);
	CHECK(exists(victim));
	/* the same file reached through the real directory is a token */
	CHECK_INT(sift_quarantine_release_check(other, tok, &id), 1);
	CHECK_STR(id, "Q-2");
	free(id);

	unlink(victim);
	unlink(rdir);
	rmdir(odir);
	rmdir(store);
	rmdir(other);
	rmdir(base);
	free(victim);
	free(odir);
	free(rdir);
	free(tok);
	free(store);
	free(other);
	return t_done();
}
