/* Shared helpers of the C tests: checks that print the last error, and a runtime on the
 * tiny fixture model (argv[1] is the repository root). */
#ifndef LORADOCK_TEST_COMMON_H
#define LORADOCK_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loradock.h"

static const char *g_root = ".";
static char g_model[2048];
static char g_adapters[2048];
static char g_cache[2048];
/* Stream buffer of runtimes made by new_runtime (0: the default). */
static uint32_t g_stream_buffer = 0;

#define FAILF(...)                                                                  \
    do {                                                                            \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                             \
        fprintf(stderr, __VA_ARGS__);                                               \
        fprintf(stderr, "\n");                                                      \
        exit(1);                                                                    \
    } while (0)

static inline void print_last_error(void) {
    char buf[1024];
    size_t n = 0;
    loradock_last_error_message(buf, sizeof buf, &n);
    fprintf(stderr, "  last error: %s\n", buf);
}

/* Expect `expr` to return status `want`. */
#define EXPECT_STATUS(expr, want)                                                   \
    do {                                                                            \
        loradock_status s_ = (expr);                                                \
        if (s_ != (want)) {                                                         \
            print_last_error();                                                     \
            FAILF("%s returned %s, expected %s", #expr, loradock_status_str(s_),    \
                  loradock_status_str(want));                                       \
        }                                                                           \
    } while (0)

#define EXPECT_OK(expr) EXPECT_STATUS(expr, LORADOCK_STATUS_OK)

#define EXPECT(cond)                                                                \
    do {                                                                            \
        if (!(cond)) FAILF("expected %s", #cond);                                   \
    } while (0)

static inline void setup(int argc, char **argv, const char *tag) {
    if (argc > 1) g_root = argv[1];
    snprintf(g_model, sizeof g_model, "%s/tests/fixtures/tiny/model", g_root);
    snprintf(g_adapters, sizeof g_adapters, "%s/tests/fixtures/tiny/adapters", g_root);
    const char *tmp = getenv("TMPDIR");
    snprintf(g_cache, sizeof g_cache, "%s/loradock-ctest-%s-%d", tmp ? tmp : "/tmp", tag, (int)getpid());
}

/* A runtime on the tiny model with the fixture adapters under its roots. */
static inline loradock_runtime *new_runtime(void) {
    loradock_runtime_params p;
    EXPECT_OK(loradock_runtime_params_default(&p));
    const char *roots[1] = {g_adapters};
    p.model_path = g_model;
    p.cache_dir = g_cache;
    p.threads = 1;
    p.budget_bytes = 64u << 20;
    p.max_context = 256;
    p.store_roots = roots;
    p.n_store_roots = 1;
    p.allow_unverified = true;
    if (g_stream_buffer) p.stream_buffer = g_stream_buffer;
    loradock_runtime *rt = NULL;
    EXPECT_OK(loradock_runtime_new(&p, &rt));
    EXPECT(rt != NULL);
    return rt;
}

/* Read a stream to its end: the text into `text` (may be NULL), the terminal event into
 * `*end`. Fails when an event takes more than 30 s or the terminal event is not last. */
static inline void drain(loradock_stream *s, char *text, size_t cap, loradock_event *end) {
    size_t used = 0;
    memset(end, 0, sizeof *end);
    if (text && cap) text[0] = 0;
    for (;;) {
        loradock_event ev;
        ev.struct_size = sizeof ev;
        loradock_status st = loradock_stream_next(s, 30000, &ev);
        if (st == LORADOCK_STATUS_STREAM_ENDED) return;
        if (st != LORADOCK_STATUS_OK) FAILF("loradock_stream_next: %s", loradock_status_str(st));
        if (ev.kind == LORADOCK_EVENT_TOKEN) {
            if (text && used + ev.text_len + 1 < cap) {
                memcpy(text + used, ev.text, ev.text_len);
                used += ev.text_len;
                text[used] = 0;
            }
        } else {
            *end = ev;
            /* The next call reports the end. */
            loradock_event after;
            after.struct_size = sizeof after;
            EXPECT_STATUS(loradock_stream_next(s, 0, &after), LORADOCK_STATUS_STREAM_ENDED);
            return;
        }
    }
}

static inline void init_request(loradock_request_params *r, const char *prompt, uint32_t max_tokens) {
    EXPECT_OK(loradock_request_params_default(r));
    r->prompt = prompt;
    r->max_tokens = max_tokens;
    r->ignore_eos = true;
}

#endif
