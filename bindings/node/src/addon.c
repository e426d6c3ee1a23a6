/* The loradock Node addon (N-API only): module registration, the error class, version and
 * status names. Runtimes are in runtime.c, generations in stream.c. */
#include <stdlib.h>

#include "common.h"

static void instance_free(napi_env env, void *data, void *hint) {
    (void)hint;
    ld_instance *inst = data;
    if (inst->error_ctor) napi_delete_reference(env, inst->error_ctor);
    free(inst);
}

/* setErrorClass(ctor): errors are built as `new ctor(code, message, status)`. */
static napi_value js_set_error_class(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_valuetype t = napi_undefined;
    if (argc) napi_typeof(env, argv[0], &t);
    if (t != napi_function) return ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "expected a class");
    ld_instance *inst = NULL;
    NAPI_CALL(env, napi_get_instance_data(env, (void **)&inst));
    if (inst->error_ctor) napi_delete_reference(env, inst->error_ctor);
    inst->error_ctor = NULL;
    NAPI_CALL(env, napi_create_reference(env, argv[0], 1, &inst->error_ctor));
    return NULL;
}

/* version() → the C library's version string. */
static napi_value js_version(napi_env env, napi_callback_info info) {
    (void)info;
    napi_value v;
    NAPI_CALL(env, napi_create_string_utf8(env, loradock_version(), NAPI_AUTO_LENGTH, &v));
    return v;
}

/* statusName(n) → "LORADOCK_STATUS_…". */
static napi_value js_status_name(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    int32_t n = -1;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc) napi_get_value_int32(env, argv[0], &n);
    NAPI_CALL(env, napi_create_string_utf8(env, loradock_status_str(n), NAPI_AUTO_LENGTH, &v));
    return v;
}

static napi_value init(napi_env env, napi_value exports) {
    ld_instance *inst = calloc(1, sizeof *inst);
    if (!inst) return ld_throw(env, LORADOCK_STATUS_INTERNAL, "out of memory");
    NAPI_CALL(env, napi_set_instance_data(env, inst, instance_free, NULL));
    napi_property_descriptor props[] = {
        {"setErrorClass", NULL, js_set_error_class, NULL, NULL, NULL, napi_default, NULL},
        {"version", NULL, js_version, NULL, NULL, NULL, napi_default, NULL},
        {"statusName", NULL, js_status_name, NULL, NULL, NULL, napi_default, NULL},
    };
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
    if (!ld_runtime_init(env, exports) || !ld_stream_init(env, exports)) return NULL;
    return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
