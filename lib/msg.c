/* msg.c - placeholder until implemented. */
#include "sift.h"
