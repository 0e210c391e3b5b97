/*
 * engine.h - the native milter engine (filterd_engine = native), see
 * engine.c.
 */
#ifndef FILTERD_ENGINE_H
#define FILTERD_ENGINE_H
#include "filterd.h"

/* Opens the listening socket; 0 or -1 + *err_r. */
int filterd_native_setup(const struct filterd_conf *conf, char **err_r);
/* Accepts and serves connections until filterd_native_stop(); then waits
 * for sessions inside a message (up to filterd_shutdown_timeout) and
 * returns 0, or 1 when some are still running after it (their threads
 * still use the configuration and the plugins). */
int filterd_native_run(void);
/* Async-signal-unsafe: call from a normal thread (filterd's signal
 * thread). */
void filterd_native_stop(void);
#endif
