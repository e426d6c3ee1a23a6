/* Shared helpers of the loradock Node addon: N-API checks, errors built from the C
 * library's status and thread-local last error, and typed reads of JS option objects. */
#ifndef LORADOCK_NODE_COMMON_H
#define LORADOCK_NODE_COMMON_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loradock.h"

/* Run an N-API call; on failure throw (unless an exception is pending) and return `ret`. */
#define NAPI_OK_OR(env, call, ret)                                                   \
    do {                                                                             \
        if ((call) != napi_ok) {                                                     \
            ld_throw_napi_failure((env), #call);                                     \
            return (ret);                                                            \
        }                                                                            \
    } while (0)
#define NAPI_CALL(env, call) NAPI_OK_OR(env, call, NULL)

/* A failure captured on the thread that saw it: the status and an owned message. */
typedef struct {
    int32_t status;
    char *message; /* malloc'd, NULL when none */
} ld_err;

/* Per-addon-instance data: the JS error class the addon throws. */
typedef struct {
    napi_ref error_ctor; /* LoradockError(code, message, status), or NULL */
} ld_instance;

/* Fill `e` with `status` and this thread's last error message. Call it on the thread of
 * the failing loradock call, right after it: the last error is thread-local. */
void ld_err_capture(ld_err *e, loradock_status status);
/* Fill `e` with `status` and a copy of `message` (errors the binding raises itself). */
void ld_err_set(ld_err *e, int32_t status, const char *message);
void ld_err_clear(ld_err *e);

/* A JS error object (the registered LoradockError class, else a plain Error) with
 * `code` (the status name), `message` and `status` (the number). */
napi_value ld_error_value(napi_env env, int32_t status, const char *message);
/* Throw such an error; returns NULL so callers can `return ld_throw(...)`. */
napi_value ld_throw(napi_env env, int32_t status, const char *message);
/* Throw a captured error and clear it. */
napi_value ld_throw_err(napi_env env, ld_err *e);
/* Throw for a failed N-API call (unless an exception is already pending). */
void ld_throw_napi_failure(napi_env env, const char *what);

/* Typed property reads. Each returns true when the property is present (not undefined or
 * null) and valid, false when absent; on a bad type or range it throws an
 * INVALID_ARGUMENT error and sets *bad. */
bool ld_get_string(napi_env env, napi_value obj, const char *key, char **out, bool *bad);
bool ld_get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out, bool *bad);
bool ld_get_u64(napi_env env, napi_value obj, const char *key, uint64_t *out, bool *bad);
bool ld_get_f32(napi_env env, napi_value obj, const char *key, float *out, bool *bad);
bool ld_get_bool(napi_env env, napi_value obj, const char *key, bool *out, bool *bad);
/* An array of strings: `*out` owns `*n` malloc'd strings. */
bool ld_get_strings(napi_env env, napi_value obj, const char *key, char ***out, size_t *n, bool *bad);
void ld_free_strings(char **v, size_t n);

/* Convert a JS string to a malloc'd UTF-8 C string; NULL (and a thrown error) on failure. */
char *ld_string_value(napi_env env, napi_value v, const char *what);

/* Set `obj[key]` to a number / string. */
void ld_set_number(napi_env env, napi_value obj, const char *key, double v);
void ld_set_string(napi_env env, napi_value obj, const char *key, const char *s, size_t len);

/* Module parts (runtime.c, stream.c) add their functions to `exports`. */
napi_value ld_runtime_init(napi_env env, napi_value exports);
napi_value ld_stream_init(napi_env env, napi_value exports);

#endif
