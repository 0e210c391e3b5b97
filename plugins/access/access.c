#include "sift/plugin.h"
SIFT_EXPORT const struct sift_plugin sift_plugin_entry = { SIFT_PLUGIN_INIT, .name = "access" };
