/* A request's loradock_request_params and the storage its pointers refer to. */
#ifndef LORADOCK_NODE_REQUEST_H
#define LORADOCK_NODE_REQUEST_H

#include "common.h"

typedef struct {
    loradock_request_params p; /* points into the fields below */
    char *prompt, *messages, *combination;
    uint32_t *token_ids;
    loradock_adapter_use *adapters; /* name, source, digest owned */
    size_t n_adapters;
    char **stop;
    size_t n_stop;
} ld_request;

/* Fill `r` (zeroed) from a normalized JS request object (JS thread). False with a thrown
 * INVALID_ARGUMENT error on a bad field; `r` must be freed either way. */
bool ld_request_read(napi_env env, napi_value req, ld_request *r);
/* Free what `r` owns (it can be read again). */
void ld_request_free(ld_request *r);

#endif
