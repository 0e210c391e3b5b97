/* param.c - placeholder until implemented. */
#include "sift.h"
