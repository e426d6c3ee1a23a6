/* The runtime handle shared by runtime.c and stream.c.
 *
 * loradock_runtime_free must not run while another thread uses the runtime, so every use
 * (register, unregister, stats on the JS thread; submit on a stream's thread) is bracketed
 * by ld_rt_acquire/ld_rt_release, and close waits, off the JS thread, until no use is in
 * progress before it frees. */
#ifndef LORADOCK_NODE_RUNTIME_H
#define LORADOCK_NODE_RUNTIME_H

#include <pthread.h>

#include "common.h"

typedef struct ld_rt {
    pthread_mutex_t mu;
    pthread_cond_t idle; /* signalled when `busy` drops to 0 */
    loradock_runtime *rt; /* NULL once freed */
    int busy;             /* uses in progress */
    bool closing;         /* close asked: new uses are refused */
    int refs;             /* owners of this struct (JS handle, streams, close work); under mu */
} ld_rt;

/* Start a use: the live C handle, or NULL (with `e` set to SHUT_DOWN) once closing. */
loradock_runtime *ld_rt_acquire(ld_rt *r, ld_err *e);
/* End a use started by ld_rt_acquire. */
void ld_rt_release(ld_rt *r);
/* Take / drop an ownership reference; the last drop frees the struct. */
void ld_rt_ref(ld_rt *r);
void ld_rt_unref(ld_rt *r);
/* The ld_rt of a JS runtime handle (an external), or NULL with a thrown error. */
ld_rt *ld_rt_from_js(napi_env env, napi_value v);

#endif
