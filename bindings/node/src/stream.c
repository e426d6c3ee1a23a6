/* Generations: each request gets a native reader thread that submits it (the prompt is
 * tokenized there, off the JS thread), then waits in loradock_stream_next only while JS has
 * asked for events (pull: a consumer that stops reading leaves the request paused by the C
 * library's stream buffer), and hands batches of events to JS through a thread-safe
 * function. The thread frees the C stream itself, so loradock_stream_free never races with
 * a read; cancel (allowed concurrently with a read) is serialized against that free by the
 * stream's mutex. */
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "runtime.h"

static const napi_type_tag STREAM_TAG = {0x6c6f7261646f636bULL, 0x73747265616d0002ULL};

/* Events read ahead in one batch at most (beyond the first, only those already queued). */
#define BATCH_MAX 64
/* A waiting read wakes this often to notice a close. */
#define WAIT_SLICE_MS 500

typedef struct {
    int kind; /* LORADOCK_EVENT_* */
    char *text;
    size_t text_len;
    int finish_reason;
    loradock_usage usage;
    ld_err err;
} ev_copy;

typedef struct {
    napi_threadsafe_function tsfn; /* to unref once delivered (never touch the stream) */
    size_t n;
    ev_copy ev[BATCH_MAX];
} batch;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ld_rt *rt;                   /* the runtime, until the submit is done */
    ld_request req;              /* the request, until the submit is done */
    loradock_stream *s;          /* the C stream once submitted; NULL after the free */
    napi_threadsafe_function tsfn;
    bool demand;                 /* JS waits for a batch */
    bool cancel_requested;       /* cancel asked (maybe before the submit) */
    bool closed;                 /* JS dropped the stream: stop reading, free, exit */
    bool exiting;                /* the thread is about to release the tsfn */
    bool tsfn_gone;              /* the tsfn was finalized (released, or the env torn down) */
    int refs;                    /* JS handle + thread + tsfn finalizer; under mu */
} ld_stream;

static void stream_unref(ld_stream *st) {
    pthread_mutex_lock(&st->mu);
    int left = --st->refs;
    pthread_mutex_unlock(&st->mu);
    if (left == 0) {
        ld_request_free(&st->req);
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->cv);
        free(st);
    }
}

static void batch_free(batch *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->ev[i].text);
        ld_err_clear(&b->ev[i].err);
    }
    free(b);
}

/* ---- the reader thread --------------------------------------------------------------- */

static const char *finish_name(int r) {
    switch (r) {
        case LORADOCK_FINISH_LENGTH: return "length";
        case LORADOCK_FINISH_EOS: return "eos";
        case LORADOCK_FINISH_STOP: return "stop";
        case LORADOCK_FINISH_CANCELLED: return "cancelled";
        default: return "none";
    }
}

/* Hand a batch to JS; false when JS is gone (the batch is freed). The tsfn is used under
 * the stream's mutex and only while its finalizer has not run: when the environment is torn
 * down (process exit, worker end) Node finalizes and deletes it while this thread may live. */
static bool deliver(ld_stream *st, batch *b) {
    b->tsfn = st->tsfn;
    pthread_mutex_lock(&st->mu);
    bool ok = !st->tsfn_gone && napi_call_threadsafe_function(st->tsfn, b, napi_tsfn_nonblocking) == napi_ok;
    pthread_mutex_unlock(&st->mu);
    if (!ok) batch_free(b);
    return ok;
}

/* Wait until JS asks for events or closes; true to go on reading. */
static bool wait_demand(ld_stream *st) {
    pthread_mutex_lock(&st->mu);
    while (!st->demand && !st->closed) pthread_cond_wait(&st->cv, &st->mu);
    bool go = !st->closed;
    pthread_mutex_unlock(&st->mu);
    return go;
}

static bool is_closed(ld_stream *st) {
    pthread_mutex_lock(&st->mu);
    bool c = st->closed;
    pthread_mutex_unlock(&st->mu);
    return c;
}

/* Read one batch: wait for the first event (waking to notice a close), then take what is
 * already queued. Sets *ended after a terminal event or a failure. NULL when closed. */
static batch *read_batch(ld_stream *st, loradock_stream *s, bool *ended) {
    batch *b = calloc(1, sizeof *b);
    if (!b) {
        *ended = true;
        return NULL;
    }
    while (b->n < BATCH_MAX) {
        loradock_event e;
        memset(&e, 0, sizeof e);
        e.struct_size = sizeof e;
        loradock_status rc = loradock_stream_next(s, b->n == 0 ? WAIT_SLICE_MS : 0, &e);
        if (rc == LORADOCK_STATUS_TIMEOUT) {
            if (b->n > 0) break;
            if (is_closed(st)) {
                batch_free(b);
                *ended = true;
                return NULL;
            }
            continue;
        }
        ev_copy *c = &b->ev[b->n];
        if (rc == LORADOCK_STATUS_STREAM_ENDED) { /* cannot happen before a terminal event */
            *ended = true;
            break;
        }
        if (rc != LORADOCK_STATUS_OK) {
            c->kind = LORADOCK_EVENT_ERROR;
            ld_err_capture(&c->err, rc); /* this thread, right after the call */
            b->n++;
            *ended = true;
            break;
        }
        c->kind = e.kind;
        if (e.kind == LORADOCK_EVENT_TOKEN) {
            c->text = malloc(e.text_len + 1);
            if (c->text) {
                memcpy(c->text, e.text, e.text_len);
                c->text[e.text_len] = 0;
                c->text_len = e.text_len;
            }
        } else if (e.kind == LORADOCK_EVENT_DONE) {
            c->finish_reason = e.finish_reason;
            c->usage = e.usage;
        } else {
            ld_err_set(&c->err, e.error_status, e.error_message);
        }
        b->n++;
        if (e.kind != LORADOCK_EVENT_TOKEN) {
            *ended = true;
            break;
        }
    }
    return b;
}

static void *stream_main(void *arg) {
    ld_stream *st = arg;
    ld_err err = {0};
    loradock_stream *s = NULL;
    loradock_runtime *rt = ld_rt_acquire(st->rt, &err);
    if (rt) {
        loradock_status rc = loradock_submit(rt, &st->req.p, &s);
        if (rc != LORADOCK_STATUS_OK) ld_err_capture(&err, rc); /* same thread, right after */
        ld_rt_release(st->rt);
    }
    ld_rt_unref(st->rt);
    st->rt = NULL;
    ld_request_free(&st->req); /* the C library copied what it needs */

    pthread_mutex_lock(&st->mu);
    st->s = s;
    if (s && (st->cancel_requested || st->closed)) loradock_stream_cancel(s);
    pthread_mutex_unlock(&st->mu);

    bool ended = false;
    if (!s) {
        /* The submit failed: deliver its error as the only event, when asked. */
        if (wait_demand(st)) {
            batch *b = calloc(1, sizeof *b);
            if (b) {
                b->ev[0].kind = LORADOCK_EVENT_ERROR;
                b->ev[0].err = err;
                err.message = NULL;
                b->n = 1;
                pthread_mutex_lock(&st->mu);
                st->demand = false;
                pthread_mutex_unlock(&st->mu);
                deliver(st, b);
            }
        }
        ld_err_clear(&err);
        ended = true;
    }
    while (!ended && wait_demand(st)) {
        batch *b = read_batch(st, s, &ended);
        if (!b) break;
        pthread_mutex_lock(&st->mu);
        st->demand = false;
        pthread_mutex_unlock(&st->mu);
        if (!deliver(st, b)) break;
    }

    pthread_mutex_lock(&st->mu);
    loradock_stream_free(s); /* cancels the request if it has not ended */
    st->s = NULL;
    st->exiting = true;
    if (!st->tsfn_gone) napi_release_threadsafe_function(st->tsfn, napi_tsfn_release);
    pthread_mutex_unlock(&st->mu);
    stream_unref(st);
    return NULL;
}

/* ---- delivery on the JS thread --------------------------------------------------------- */

static napi_value event_value(napi_env env, const ev_copy *c) {
    napi_value o, usage;
    if (napi_create_object(env, &o) != napi_ok) return NULL;
    if (c->kind == LORADOCK_EVENT_TOKEN) {
        ld_set_string(env, o, "type", "token", NAPI_AUTO_LENGTH);
        ld_set_string(env, o, "text", c->text ? c->text : "", c->text ? c->text_len : 0);
    } else if (c->kind == LORADOCK_EVENT_DONE) {
        ld_set_string(env, o, "type", "done", NAPI_AUTO_LENGTH);
        ld_set_string(env, o, "finishReason", finish_name(c->finish_reason), NAPI_AUTO_LENGTH);
        napi_create_object(env, &usage);
        ld_set_number(env, usage, "promptTokens", (double)c->usage.prompt_tokens);
        ld_set_number(env, usage, "completionTokens", (double)c->usage.completion_tokens);
        ld_set_number(env, usage, "queueMs", c->usage.queue_ms);
        ld_set_number(env, usage, "prefillMs", c->usage.prefill_ms);
        ld_set_number(env, usage, "decodeMs", c->usage.decode_ms);
        napi_set_named_property(env, o, "usage", usage);
    } else {
        ld_set_string(env, o, "type", "error", NAPI_AUTO_LENGTH);
        napi_value err = ld_error_value(env, c->err.status, c->err.message);
        if (err) napi_set_named_property(env, o, "error", err);
    }
    return o;
}

/* The tsfn's finalizer (JS thread): after the thread's release, or at env teardown. */
static void tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    ld_stream *st = data;
    pthread_mutex_lock(&st->mu);
    st->tsfn_gone = true;
    pthread_mutex_unlock(&st->mu);
    stream_unref(st);
}

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
    (void)context;
    batch *b = data;
    if (env && js_cb) {
        napi_unref_threadsafe_function(env, b->tsfn); /* the demand is answered */
        napi_value arr, undef;
        if (napi_create_array_with_length(env, b->n, &arr) == napi_ok) {
            for (size_t i = 0; i < b->n; i++) {
                napi_value ev = event_value(env, &b->ev[i]);
                if (ev) napi_set_element(env, arr, (uint32_t)i, ev);
            }
            napi_get_undefined(env, &undef);
            napi_call_function(env, undef, js_cb, 1, &arr, NULL);
        }
    }
    batch_free(b);
}

/* ---- JS entry points ------------------------------------------------------------------- */

static ld_stream *stream_from_js(napi_env env, napi_value v) {
    bool ok = false;
    void *data = NULL;
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_check_object_type_tag(env, v, &STREAM_TAG, &ok) != napi_ok || !ok ||
        napi_get_value_external(env, v, &data) != napi_ok) {
        ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "not a loradock stream handle");
        return NULL;
    }
    return data;
}

/* Stop and let the thread free the C stream (JS thread). */
static void close_stream(ld_stream *st) {
    pthread_mutex_lock(&st->mu);
    st->closed = true;
    if (st->s) loradock_stream_cancel(st->s);
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void stream_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    close_stream(data);
    stream_unref(data);
}

/* generate(rtHandle, request, onBatch) → stream handle. Starts the reader thread, which
 * submits; failures of the submit come as the first batch. */
static napi_value js_generate(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3], name, handle;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 3) return ld_throw(env, LORADOCK_STATUS_NULL_ARGUMENT, "generate needs 3 arguments");
    ld_rt *r = ld_rt_from_js(env, argv[0]);
    if (!r) return NULL;
    napi_valuetype t;
    napi_typeof(env, argv[1], &t);
    if (t != napi_object) return ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "request must be an object");
    ld_stream *st = calloc(1, sizeof *st);
    if (!st) return ld_throw(env, LORADOCK_STATUS_INTERNAL, "out of memory");
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->refs = 1;
    if (!ld_request_read(env, argv[1], &st->req)) {
        stream_unref(st);
        return NULL;
    }
    napi_create_string_utf8(env, "loradock.stream", NAPI_AUTO_LENGTH, &name);
    if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, st, tsfn_finalize, NULL, call_js,
                                        &st->tsfn) != napi_ok) {
        stream_unref(st);
        ld_throw_napi_failure(env, "napi_create_threadsafe_function");
        return NULL;
    }
    st->refs++; /* the tsfn finalizer's */
    /* Referenced only while JS waits for a batch: an idle stream keeps no process alive. */
    napi_unref_threadsafe_function(env, st->tsfn);
    if (napi_create_external(env, st, stream_finalize, NULL, &handle) != napi_ok) {
        napi_release_threadsafe_function(st->tsfn, napi_tsfn_abort); /* its finalizer unrefs */
        stream_unref(st);
        ld_throw_napi_failure(env, "napi_create_external");
        return NULL;
    }
    if (napi_type_tag_object(env, handle, &STREAM_TAG) != napi_ok) {
        napi_release_threadsafe_function(st->tsfn, napi_tsfn_abort);
        ld_throw_napi_failure(env, "napi_type_tag_object"); /* the external's finalizer unrefs */
        return NULL;
    }
    /* From here the external's finalizer owns the JS reference; the thread takes one. */
    st->rt = r;
    ld_rt_ref(r);
    st->refs++;
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attr, stream_main, st);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        ld_rt_unref(r);
        st->rt = NULL;
        st->exiting = true;
        napi_release_threadsafe_function(st->tsfn, napi_tsfn_abort);
        stream_unref(st); /* the thread's */
        return ld_throw(env, LORADOCK_STATUS_INTERNAL, "could not start a stream thread");
    }
    return handle;
}

/* next(handle) → true when a batch will come through onBatch, false once the stream is
 * over (the terminal batch was delivered or the stream was closed). */
static napi_value js_next(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], out;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ld_stream *st = argc ? stream_from_js(env, argv[0]) : NULL;
    if (!st) return NULL;
    pthread_mutex_lock(&st->mu);
    bool live = !st->exiting && !st->closed;
    if (live && !st->demand) {
        st->demand = true;
        napi_ref_threadsafe_function(env, st->tsfn); /* keep the loop alive while waiting */
        pthread_cond_signal(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    NAPI_CALL(env, napi_get_boolean(env, live, &out));
    return out;
}

/* cancel(handle): the request ends with a done event, finish reason "cancelled". */
static napi_value js_cancel(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ld_stream *st = argc ? stream_from_js(env, argv[0]) : NULL;
    if (!st) return NULL;
    pthread_mutex_lock(&st->mu);
    st->cancel_requested = true;
    if (st->s) loradock_stream_cancel(st->s);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* close(handle): stop reading; the request is cancelled and its stream freed. */
static napi_value js_close_stream(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ld_stream *st = argc ? stream_from_js(env, argv[0]) : NULL;
    if (!st) return NULL;
    close_stream(st);
    return NULL;
}

napi_value ld_stream_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"generate", NULL, js_generate, NULL, NULL, NULL, napi_default, NULL},
        {"streamNext", NULL, js_next, NULL, NULL, NULL, napi_default, NULL},
        {"streamCancel", NULL, js_cancel, NULL, NULL, NULL, napi_default, NULL},
        {"streamClose", NULL, js_close_stream, NULL, NULL, NULL, napi_default, NULL},
    };
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
    return exports;
}
