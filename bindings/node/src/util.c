/* Errors and typed option reads shared by the addon's parts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

void ld_err_capture(ld_err *e, loradock_status status) {
    size_t n = 0;
    e->status = status;
    e->message = NULL;
    loradock_last_error_message(NULL, 0, &n);
    char *buf = malloc(n + 1);
    if (!buf) return;
    loradock_last_error_message(buf, n + 1, NULL);
    e->message = buf;
}

void ld_err_set(ld_err *e, int32_t status, const char *message) {
    e->status = status;
    e->message = message ? strdup(message) : NULL;
}

void ld_err_clear(ld_err *e) {
    free(e->message);
    e->message = NULL;
    e->status = LORADOCK_STATUS_OK;
}

napi_value ld_error_value(napi_env env, int32_t status, const char *message) {
    napi_value code, msg, num, err = NULL;
    const char *m = message && *message ? message : loradock_status_str(status);
    if (napi_create_string_utf8(env, loradock_status_str(status), NAPI_AUTO_LENGTH, &code) != napi_ok ||
        napi_create_string_utf8(env, m, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
        napi_create_int32(env, status, &num) != napi_ok)
        return NULL;
    ld_instance *inst = NULL;
    napi_value ctor = NULL;
    if (napi_get_instance_data(env, (void **)&inst) == napi_ok && inst && inst->error_ctor)
        napi_get_reference_value(env, inst->error_ctor, &ctor);
    if (ctor) {
        napi_value argv[3] = {code, msg, num};
        if (napi_new_instance(env, ctor, 3, argv, &err) == napi_ok) return err;
    }
    if (napi_create_error(env, code, msg, &err) != napi_ok) return NULL;
    napi_set_named_property(env, err, "status", num);
    return err;
}

napi_value ld_throw(napi_env env, int32_t status, const char *message) {
    napi_value err = ld_error_value(env, status, message);
    if (err) napi_throw(env, err);
    return NULL;
}

napi_value ld_throw_err(napi_env env, ld_err *e) {
    ld_throw(env, e->status, e->message);
    ld_err_clear(e);
    return NULL;
}

void ld_throw_napi_failure(napi_env env, const char *what) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) return;
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    char buf[512];
    snprintf(buf, sizeof buf, "N-API call failed: %s (%s)", what,
             info && info->error_message ? info->error_message : "unknown");
    napi_throw_error(env, NULL, buf);
}

/* Look up `obj[key]`; false when absent (undefined or null). */
static bool lookup(napi_env env, napi_value obj, const char *key, napi_value *out, napi_valuetype *type) {
    if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
    if (napi_typeof(env, *out, type) != napi_ok) return false;
    return *type != napi_undefined && *type != napi_null;
}

static bool bad_arg(napi_env env, const char *key, const char *want, bool *bad) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s must be %s", key, want);
    ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, buf);
    *bad = true;
    return false;
}

char *ld_string_value(napi_env env, napi_value v, const char *what) {
    size_t n = 0;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s must be a string", what);
        ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, buf);
        return NULL;
    }
    char *s = malloc(n + 1);
    if (!s) return NULL;
    napi_get_value_string_utf8(env, v, s, n + 1, &n);
    if (strlen(s) != n) { /* an embedded NUL would silently cut the C string */
        free(s);
        char buf[256];
        snprintf(buf, sizeof buf, "%s must not contain NUL characters", what);
        ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, buf);
        return NULL;
    }
    return s;
}

bool ld_get_string(napi_env env, napi_value obj, const char *key, char **out, bool *bad) {
    napi_value v;
    napi_valuetype t;
    if (!lookup(env, obj, key, &v, &t)) return false;
    if (t != napi_string) return bad_arg(env, key, "a string", bad);
    char *s = ld_string_value(env, v, key);
    if (!s) {
        *bad = true;
        return false;
    }
    *out = s;
    return true;
}

/* A number that is a finite integer in [0, max]. */
static bool get_uint(napi_env env, napi_value obj, const char *key, double max, double *out, bool *bad) {
    napi_value v;
    napi_valuetype t;
    if (!lookup(env, obj, key, &v, &t)) return false;
    double d = 0;
    if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !isfinite(d) || d < 0 ||
        d != floor(d) || d > max)
        return bad_arg(env, key, "a non-negative integer in range", bad);
    *out = d;
    return true;
}

bool ld_get_u32(napi_env env, napi_value obj, const char *key, uint32_t *out, bool *bad) {
    double d;
    if (!get_uint(env, obj, key, 4294967295.0, &d, bad)) return false;
    *out = (uint32_t)d;
    return true;
}

bool ld_get_u64(napi_env env, napi_value obj, const char *key, uint64_t *out, bool *bad) {
    napi_value v;
    napi_valuetype t;
    if (!lookup(env, obj, key, &v, &t)) return false;
    if (t == napi_bigint) {
        bool lossless = false;
        uint64_t u = 0;
        if (napi_get_value_bigint_uint64(env, v, &u, &lossless) != napi_ok || !lossless)
            return bad_arg(env, key, "a BigInt in [0, 2^64)", bad);
        *out = u;
        return true;
    }
    double d;
    if (!get_uint(env, obj, key, 9007199254740991.0, &d, bad)) return false;
    *out = (uint64_t)d;
    return true;
}

bool ld_get_f32(napi_env env, napi_value obj, const char *key, float *out, bool *bad) {
    napi_value v;
    napi_valuetype t;
    if (!lookup(env, obj, key, &v, &t)) return false;
    double d = 0;
    if (t != napi_number || napi_get_value_double(env, v, &d) != napi_ok || !isfinite(d))
        return bad_arg(env, key, "a finite number", bad);
    *out = (float)d;
    return true;
}

bool ld_get_bool(napi_env env, napi_value obj, const char *key, bool *out, bool *bad) {
    napi_value v;
    napi_valuetype t;
    if (!lookup(env, obj, key, &v, &t)) return false;
    if (t != napi_boolean) return bad_arg(env, key, "a boolean", bad);
    napi_get_value_bool(env, v, out);
    return true;
}

bool ld_get_strings(napi_env env, napi_value obj, const char *key, char ***out, size_t *n, bool *bad) {
    napi_value v;
    napi_valuetype t;
    bool is_array = false;
    if (!lookup(env, obj, key, &v, &t)) return false;
    if (napi_is_array(env, v, &is_array) != napi_ok || !is_array)
        return bad_arg(env, key, "an array of strings", bad);
    uint32_t len = 0;
    napi_get_array_length(env, v, &len);
    char **items = calloc(len ? len : 1, sizeof *items);
    if (!items) return bad_arg(env, key, "smaller (out of memory)", bad);
    for (uint32_t i = 0; i < len; i++) {
        napi_value e;
        napi_valuetype et;
        napi_get_element(env, v, i, &e);
        napi_typeof(env, e, &et);
        if (et != napi_string || !(items[i] = ld_string_value(env, e, key))) {
            ld_free_strings(items, i);
            bool pending = false;
            napi_is_exception_pending(env, &pending);
            if (pending) {
                *bad = true;
                return false;
            }
            return bad_arg(env, key, "an array of strings", bad);
        }
    }
    *out = items;
    *n = len;
    return true;
}

void ld_free_strings(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

void ld_set_number(napi_env env, napi_value obj, const char *key, double v) {
    napi_value n;
    if (napi_create_double(env, v, &n) == napi_ok) napi_set_named_property(env, obj, key, n);
}

void ld_set_string(napi_env env, napi_value obj, const char *key, const char *s, size_t len) {
    napi_value v;
    if (napi_create_string_utf8(env, s, len, &v) == napi_ok) napi_set_named_property(env, obj, key, v);
}
