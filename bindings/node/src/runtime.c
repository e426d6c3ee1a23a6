/* Runtimes: open (model load) and close (shutdown + free) run as async work on libuv's
 * pool; register, unregister and stats are short non-blocking calls (a registry lock, atomic
 * counters) made on the JS thread. */
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static const napi_type_tag RT_TAG = {0x6c6f7261646f636bULL, 0x72756e74696d6501ULL};

/* ---- the shared handle ------------------------------------------------------------- */

loradock_runtime *ld_rt_acquire(ld_rt *r, ld_err *e) {
    pthread_mutex_lock(&r->mu);
    loradock_runtime *rt = r->closing ? NULL : r->rt;
    if (rt) r->busy++;
    pthread_mutex_unlock(&r->mu);
    if (!rt) ld_err_set(e, LORADOCK_STATUS_SHUT_DOWN, "the runtime is closed");
    return rt;
}

void ld_rt_release(ld_rt *r) {
    pthread_mutex_lock(&r->mu);
    if (--r->busy == 0) pthread_cond_broadcast(&r->idle);
    pthread_mutex_unlock(&r->mu);
}

void ld_rt_ref(ld_rt *r) {
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
}

void ld_rt_unref(ld_rt *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left == 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->idle);
        free(r);
    }
}

/* Wait until no use is in progress, then shut down and free the C runtime (blocking: call
 * it off the JS thread). `closing` must already be set. */
static void shutdown_blocking(ld_rt *r) {
    pthread_mutex_lock(&r->mu);
    while (r->busy > 0) pthread_cond_wait(&r->idle, &r->mu);
    loradock_runtime *rt = r->rt;
    r->rt = NULL;
    pthread_mutex_unlock(&r->mu);
    loradock_runtime_free(rt);
}

/* Mark closing; true when this call started the close (false: already closing). */
static bool begin_close(ld_rt *r) {
    pthread_mutex_lock(&r->mu);
    bool first = !r->closing;
    r->closing = true;
    if (first) r->refs++; /* held by whoever runs shutdown_blocking */
    pthread_mutex_unlock(&r->mu);
    return first;
}

static void *orphan_close_main(void *arg) {
    ld_rt *r = arg;
    shutdown_blocking(r);
    ld_rt_unref(r);
    return NULL;
}

/* The JS handle was collected without close(): shut down on a detached thread. */
static void rt_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    ld_rt *r = data;
    if (begin_close(r)) {
        pthread_t t;
        if (pthread_create(&t, NULL, orphan_close_main, r) == 0)
            pthread_detach(t);
        else
            ld_rt_unref(r); /* leak the C runtime rather than block the JS thread */
    }
    ld_rt_unref(r);
}

ld_rt *ld_rt_from_js(napi_env env, napi_value v) {
    bool ok = false;
    void *data = NULL;
    napi_valuetype t;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
        napi_check_object_type_tag(env, v, &RT_TAG, &ok) != napi_ok || !ok ||
        napi_get_value_external(env, v, &data) != napi_ok) {
        ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "not a loradock runtime handle");
        return NULL;
    }
    return data;
}

/* ---- open ---------------------------------------------------------------------------- */

typedef struct {
    napi_async_work work;
    napi_deferred deferred;
    loradock_runtime_params p;
    char *model, *device, *cache_dir, *kv_type;
    char **roots, **gateways;
    size_t n_roots, n_gateways;
    loradock_runtime *rt;
    ld_err err;
} open_job;

static void open_job_free(open_job *j) {
    free(j->model);
    free(j->device);
    free(j->cache_dir);
    free(j->kv_type);
    ld_free_strings(j->roots, j->n_roots);
    ld_free_strings(j->gateways, j->n_gateways);
    ld_err_clear(&j->err);
    free(j);
}

/* Read the JS options into `j` (JS thread). False with a thrown error on a bad option. */
static bool read_open_options(napi_env env, napi_value o, open_job *j) {
    bool bad = false;
    loradock_runtime_params *p = &j->p;
    if (!ld_get_string(env, o, "model", &j->model, &bad)) {
        if (!bad) ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "options.model (the model path) is required");
        return false;
    }
    ld_get_string(env, o, "device", &j->device, &bad);
    if (!bad) ld_get_string(env, o, "cacheDir", &j->cache_dir, &bad);
    if (!bad) ld_get_string(env, o, "kvType", &j->kv_type, &bad);
    if (!bad) ld_get_u64(env, o, "budgetBytes", &p->budget_bytes, &bad);
    if (!bad) ld_get_u64(env, o, "hostCacheBytes", &p->host_cache_bytes, &bad);
    if (!bad) ld_get_u64(env, o, "diskCacheBytes", &p->disk_cache_bytes, &bad);
    if (!bad) ld_get_u32(env, o, "threads", &p->threads, &bad);
    if (!bad) ld_get_u32(env, o, "maxSeqs", &p->max_seqs, &bad);
    if (!bad) ld_get_u32(env, o, "maxContext", &p->max_context, &bad);
    if (!bad) ld_get_u32(env, o, "submitQueue", &p->submit_queue, &bad);
    if (!bad) ld_get_u32(env, o, "pendingQueue", &p->pending_queue, &bad);
    if (!bad) ld_get_u32(env, o, "streamBuffer", &p->stream_buffer, &bad);
    if (!bad) ld_get_u32(env, o, "slowConsumerTimeoutMs", &p->slow_consumer_timeout_ms, &bad);
    if (!bad) ld_get_strings(env, o, "storeRoots", &j->roots, &j->n_roots, &bad);
    if (!bad) ld_get_strings(env, o, "gateways", &j->gateways, &j->n_gateways, &bad);
    if (!bad) ld_get_bool(env, o, "allowUnverified", &p->allow_unverified, &bad);
    if (!bad) ld_get_bool(env, o, "zeroOnUndock", &p->zero_on_undock, &bad);
    return !bad;
}

static void open_execute(napi_env env, void *data) {
    (void)env;
    open_job *j = data;
    loradock_runtime_params *p = &j->p;
    p->model_path = j->model;
    p->device = j->device;
    p->cache_dir = j->cache_dir;
    p->kv_type = j->kv_type;
    p->store_roots = (const char *const *)j->roots;
    p->n_store_roots = j->n_roots;
    p->gateways = (const char *const *)j->gateways;
    p->n_gateways = j->n_gateways;
    loradock_status st = loradock_runtime_new(p, &j->rt);
    /* Same thread, right after the failing call: the last error is thread-local. */
    if (st != LORADOCK_STATUS_OK) ld_err_capture(&j->err, st);
}

static void open_complete(napi_env env, napi_status status, void *data) {
    open_job *j = data;
    napi_value result = NULL;
    if (status == napi_ok && j->err.status == LORADOCK_STATUS_OK && j->rt) {
        ld_rt *r = calloc(1, sizeof *r);
        if (r) {
            pthread_mutex_init(&r->mu, NULL);
            pthread_cond_init(&r->idle, NULL);
            r->rt = j->rt;
            r->refs = 1;
            if (napi_create_external(env, r, rt_finalize, NULL, &result) != napi_ok ||
                napi_type_tag_object(env, result, &RT_TAG) != napi_ok) {
                result = NULL;
            }
        }
        if (!result) {
            loradock_runtime_free(j->rt); /* rare: out of memory on the JS side */
            ld_err_set(&j->err, LORADOCK_STATUS_INTERNAL, "could not create the runtime handle");
        }
    } else if (status != napi_ok && j->err.status == LORADOCK_STATUS_OK) {
        if (j->rt) loradock_runtime_free(j->rt);
        ld_err_set(&j->err, LORADOCK_STATUS_INTERNAL, "the open work was cancelled");
    }
    if (result)
        napi_resolve_deferred(env, j->deferred, result);
    else
        napi_reject_deferred(env, j->deferred, ld_error_value(env, j->err.status, j->err.message));
    napi_delete_async_work(env, j->work);
    open_job_free(j);
}

/* open(options) → Promise<handle>: load the model on the pool. */
static napi_value js_open(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], promise, name;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_valuetype t = napi_undefined;
    if (argc > 0) napi_typeof(env, argv[0], &t);
    if (t != napi_object) return ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "options must be an object");
    open_job *j = calloc(1, sizeof *j);
    if (!j) return ld_throw(env, LORADOCK_STATUS_INTERNAL, "out of memory");
    loradock_runtime_params_default(&j->p);
    if (!read_open_options(env, argv[0], j)) {
        open_job_free(j);
        return NULL;
    }
    NAPI_CALL(env, napi_create_promise(env, &j->deferred, &promise));
    napi_create_string_utf8(env, "loradock.open", NAPI_AUTO_LENGTH, &name);
    NAPI_CALL(env, napi_create_async_work(env, NULL, name, open_execute, open_complete, j, &j->work));
    NAPI_CALL(env, napi_queue_async_work(env, j->work));
    return promise;
}

/* ---- close --------------------------------------------------------------------------- */

typedef struct {
    napi_async_work work;
    napi_deferred deferred;
    ld_rt *r;
} close_job;

static void close_execute(napi_env env, void *data) {
    (void)env;
    shutdown_blocking(((close_job *)data)->r);
}

static void close_complete(napi_env env, napi_status status, void *data) {
    (void)status;
    close_job *j = data;
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, j->deferred, undef);
    napi_delete_async_work(env, j->work);
    ld_rt_unref(j->r);
    free(j);
}

/* close(handle) → Promise<void>: refuse new uses now, wait for uses in progress, shut down
 * and free on the pool. A second close resolves at once (the JS layer shares the first). */
static napi_value js_close(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], promise, name;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ld_rt *r = argc ? ld_rt_from_js(env, argv[0]) : NULL;
    if (!r) return argc ? NULL : ld_throw(env, LORADOCK_STATUS_NULL_ARGUMENT, "handle is required");
    napi_deferred deferred;
    NAPI_CALL(env, napi_create_promise(env, &deferred, &promise));
    if (!begin_close(r)) {
        napi_value undef;
        napi_get_undefined(env, &undef);
        napi_resolve_deferred(env, deferred, undef);
        return promise;
    }
    close_job *j = calloc(1, sizeof *j);
    if (!j) {
        /* Cannot queue: fall back to a detached thread (never block the JS thread). */
        pthread_t t;
        if (pthread_create(&t, NULL, orphan_close_main, r) == 0) pthread_detach(t);
        napi_value undef;
        napi_get_undefined(env, &undef);
        napi_resolve_deferred(env, deferred, undef);
        return promise;
    }
    j->deferred = deferred;
    j->r = r;
    napi_create_string_utf8(env, "loradock.close", NAPI_AUTO_LENGTH, &name);
    NAPI_CALL(env, napi_create_async_work(env, NULL, name, close_execute, close_complete, j, &j->work));
    NAPI_CALL(env, napi_queue_async_work(env, j->work));
    return promise;
}

/* ---- adapters and stats (JS thread, non-blocking) ------------------------------------- */

/* registerAdapter(handle, name, source, digest|null, policy) → generation. */
static napi_value js_register(napi_env env, napi_callback_info info) {
    size_t argc = 5;
    napi_value argv[5], out;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 5) return ld_throw(env, LORADOCK_STATUS_NULL_ARGUMENT, "registerAdapter needs 5 arguments");
    ld_rt *r = ld_rt_from_js(env, argv[0]);
    if (!r) return NULL;
    napi_valuetype dt;
    int32_t policy = 0;
    napi_typeof(env, argv[3], &dt);
    if (napi_get_value_int32(env, argv[4], &policy) != napi_ok)
        return ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "policy must be a number");
    char *name = ld_string_value(env, argv[1], "name");
    char *source = name ? ld_string_value(env, argv[2], "source") : NULL;
    char *digest = NULL;
    if (source && dt != napi_undefined && dt != napi_null) digest = ld_string_value(env, argv[3], "digest");
    bool ok_args = name && source && (dt == napi_undefined || dt == napi_null || digest);
    ld_err e = {0};
    uint64_t generation = 0;
    if (ok_args) {
        loradock_runtime *rt = ld_rt_acquire(r, &e);
        if (rt) {
            loradock_status st = loradock_adapter_register(rt, name, source, digest, policy, &generation);
            if (st != LORADOCK_STATUS_OK) ld_err_capture(&e, st);
            ld_rt_release(r);
        }
    }
    free(name);
    free(source);
    free(digest);
    if (!ok_args) return NULL; /* a thrown argument error */
    if (e.status != LORADOCK_STATUS_OK) return ld_throw_err(env, &e);
    NAPI_CALL(env, napi_create_double(env, (double)generation, &out));
    return out;
}

/* unregisterAdapter(handle, name). */
static napi_value js_unregister(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 2) return ld_throw(env, LORADOCK_STATUS_NULL_ARGUMENT, "unregisterAdapter needs 2 arguments");
    ld_rt *r = ld_rt_from_js(env, argv[0]);
    if (!r) return NULL;
    char *name = ld_string_value(env, argv[1], "name");
    if (!name) return NULL;
    ld_err e = {0};
    loradock_runtime *rt = ld_rt_acquire(r, &e);
    if (rt) {
        loradock_status st = loradock_adapter_unregister(rt, name);
        if (st != LORADOCK_STATUS_OK) ld_err_capture(&e, st);
        ld_rt_release(r);
    }
    free(name);
    if (e.status != LORADOCK_STATUS_OK) return ld_throw_err(env, &e);
    return NULL;
}

/* stats(handle) → a plain object of numbers (camelCase names of loradock_stats). */
static napi_value js_stats(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], o;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1) return ld_throw(env, LORADOCK_STATUS_NULL_ARGUMENT, "handle is required");
    ld_rt *r = ld_rt_from_js(env, argv[0]);
    if (!r) return NULL;
    loradock_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    ld_err e = {0};
    loradock_runtime *rt = ld_rt_acquire(r, &e);
    if (rt) {
        loradock_status st = loradock_runtime_stats(rt, &s);
        if (st != LORADOCK_STATUS_OK) ld_err_capture(&e, st);
        ld_rt_release(r);
    }
    if (e.status != LORADOCK_STATUS_OK) return ld_throw_err(env, &e);
    NAPI_CALL(env, napi_create_object(env, &o));
#define F(js, c) ld_set_number(env, o, js, (double)s.c)
    F("adaptersRegistered", adapters_registered);
    F("adaptersDocked", adapters_docked);
    F("docks", docks);
    F("undocks", undocks);
    F("evictions", evictions);
    F("dockFailures", dock_failures);
    F("requestsSubmitted", requests_submitted);
    F("requestsCompleted", requests_completed);
    F("requestsCancelled", requests_cancelled);
    F("requestsFailed", requests_failed);
    F("tokensGenerated", tokens_generated);
    F("tokensPerS", tokens_per_s);
    F("submitQueueDepth", submit_queue_depth);
    F("pendingQueueDepth", pending_queue_depth);
    F("running", running);
    F("restarts", restarts);
    F("budgetBytes", budget_bytes);
    F("usedBytes", used_bytes);
    F("highWaterBytes", high_water_bytes);
    F("baseWeightBytes", base_weight_bytes);
    F("kvBytes", kv_bytes);
    F("adapterBytes", adapter_bytes);
    F("kvBytesPerToken", kv_bytes_per_token);
    F("storeFetches", store_fetches);
    F("storeRamHits", store_ram_hits);
    F("storeDiskHits", store_disk_hits);
    F("storeBytesDownloaded", store_bytes_downloaded);
    F("hostCacheBytes", host_cache_bytes);
    F("diskCacheBytes", disk_cache_bytes);
#undef F
    return o;
}

napi_value ld_runtime_init(napi_env env, napi_value exports) {
    napi_property_descriptor props[] = {
        {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
        {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
        {"registerAdapter", NULL, js_register, NULL, NULL, NULL, napi_default, NULL},
        {"unregisterAdapter", NULL, js_unregister, NULL, NULL, NULL, napi_default, NULL},
        {"stats", NULL, js_stats, NULL, NULL, NULL, napi_default, NULL},
    };
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
    return exports;
}
