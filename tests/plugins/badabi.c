/* badabi.c - a plugin built for another ABI major: the loader must refuse it. */
#include "sift/plugin.h"

SIFT_EXPORT const struct sift_plugin sift_plugin_entry = {
	.abi_major = SIFT_ABI_MAJOR + 1,
	.abi_minor = 0,
	.struct_size = sizeof(struct sift_plugin),
	.name = "badabi",
	.daemons = SIFT_D_FILTERD | SIFT_D_POLICYD,
};
