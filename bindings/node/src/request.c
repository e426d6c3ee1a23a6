/* Requests: the normalized JS request (lib/request.js) read into loradock_request_params,
 * with every string and array copied, so the params stay valid on the stream's thread. */
#include <stdlib.h>

#include "request.h"

void ld_request_free(ld_request *r) {
    free(r->prompt);
    free(r->messages);
    free(r->combination);
    free(r->token_ids);
    for (size_t i = 0; i < r->n_adapters; i++) {
        free((char *)r->adapters[i].name);
        free((char *)r->adapters[i].source);
        free((char *)r->adapters[i].digest);
    }
    free(r->adapters);
    ld_free_strings(r->stop, r->n_stop);
    r->prompt = r->messages = r->combination = NULL;
    r->token_ids = NULL;
    r->adapters = NULL;
    r->stop = NULL;
    r->n_adapters = r->n_stop = 0;
}

/* Read the adapters array of a request: [{name?, source?, digest?, weight}] */
static bool read_adapters(napi_env env, napi_value req, ld_request *r) {
    napi_value arr;
    napi_valuetype t;
    bool is_array = false, bad = false;
    if (napi_get_named_property(env, req, "adapters", &arr) != napi_ok) {
        ld_throw_napi_failure(env, "napi_get_named_property");
        return false;
    }
    napi_typeof(env, arr, &t);
    if (t == napi_undefined || t == napi_null) return true;
    if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) {
        ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "adapters must be an array");
        return false;
    }
    uint32_t n = 0;
    napi_get_array_length(env, arr, &n);
    if (n == 0) return true;
    r->adapters = calloc(n, sizeof *r->adapters);
    if (!r->adapters) {
        ld_throw(env, LORADOCK_STATUS_INTERNAL, "out of memory");
        return false;
    }
    for (uint32_t i = 0; i < n && !bad; i++) {
        napi_value a;
        napi_valuetype at;
        napi_get_element(env, arr, i, &a);
        napi_typeof(env, a, &at);
        if (at != napi_object) {
            ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "adapters[] entries must be objects");
            return false;
        }
        loradock_adapter_use *u = &r->adapters[i];
        char *name = NULL, *source = NULL, *digest = NULL;
        u->weight = 1.0f;
        ld_get_string(env, a, "name", &name, &bad);
        if (!bad) ld_get_string(env, a, "source", &source, &bad);
        if (!bad) ld_get_string(env, a, "digest", &digest, &bad);
        if (!bad) ld_get_f32(env, a, "weight", &u->weight, &bad);
        u->name = name;
        u->source = source;
        u->digest = digest;
        r->n_adapters = i + 1;
    }
    return !bad;
}

static bool read_token_ids(napi_env env, napi_value req, ld_request *r) {
    napi_value arr;
    napi_valuetype t;
    bool is_array = false;
    if (napi_get_named_property(env, req, "tokenIds", &arr) != napi_ok) {
        ld_throw_napi_failure(env, "napi_get_named_property");
        return false;
    }
    napi_typeof(env, arr, &t);
    if (t == napi_undefined || t == napi_null) return true;
    if (napi_is_array(env, arr, &is_array) != napi_ok || !is_array) {
        ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "tokenIds must be an array of integers");
        return false;
    }
    uint32_t n = 0;
    napi_get_array_length(env, arr, &n);
    r->token_ids = calloc(n ? n : 1, sizeof *r->token_ids);
    if (!r->token_ids) {
        ld_throw(env, LORADOCK_STATUS_INTERNAL, "out of memory");
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        double d = -1;
        napi_get_element(env, arr, i, &v);
        if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) || d != (uint32_t)d) {
            ld_throw(env, LORADOCK_STATUS_INVALID_ARGUMENT, "tokenIds must be an array of integers");
            return false;
        }
        r->token_ids[i] = (uint32_t)d;
    }
    r->p.token_ids = r->token_ids;
    r->p.n_token_ids = n;
    return true;
}

bool ld_request_read(napi_env env, napi_value req, ld_request *r) {
    bool bad = false;
    loradock_request_params *p = &r->p;
    loradock_request_params_default(p);
    if (ld_get_string(env, req, "prompt", &r->prompt, &bad)) p->prompt = r->prompt;
    if (!bad && ld_get_string(env, req, "messagesJson", &r->messages, &bad)) p->messages_json = r->messages;
    if (bad || !read_token_ids(env, req, r) || !read_adapters(env, req, r)) return false;
    p->adapters = r->adapters;
    p->n_adapters = r->n_adapters;
    if (ld_get_string(env, req, "combination", &r->combination, &bad)) p->combination = r->combination;
    if (!bad) ld_get_f32(env, req, "density", &p->density, &bad);
    if (!bad) ld_get_u32(env, req, "svdRank", &p->svd_rank, &bad);
    if (!bad) ld_get_u64(env, req, "combinationSeed", &p->combination_seed, &bad);
    if (!bad) ld_get_u32(env, req, "maxTokens", &p->max_tokens, &bad);
    if (!bad) ld_get_f32(env, req, "temperature", &p->temperature, &bad);
    if (!bad) ld_get_u32(env, req, "topK", &p->top_k, &bad);
    if (!bad) ld_get_f32(env, req, "topP", &p->top_p, &bad);
    if (!bad) ld_get_f32(env, req, "minP", &p->min_p, &bad);
    if (!bad) ld_get_f32(env, req, "repetitionPenalty", &p->repetition_penalty, &bad);
    if (!bad) ld_get_u64(env, req, "seed", &p->seed, &bad);
    if (!bad && ld_get_strings(env, req, "stop", &r->stop, &r->n_stop, &bad)) {
        p->stop = (const char *const *)r->stop;
        p->n_stop = r->n_stop;
    }
    if (!bad) ld_get_bool(env, req, "ignoreEos", &p->ignore_eos, &bad);
    return !bad;
}

