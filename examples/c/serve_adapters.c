/* Serve several adapters on one base model through the C ABI: register each adapter
 * directory given on the command line, start one chat request per adapter (plus one on the
 * base) so they decode together in one batch, and print each answer's tokens as they come.
 *
 *   cc -std=c11 serve_adapters.c -I include -L target/debug -lloradock -o serve_adapters
 *   ./serve_adapters MODEL.gguf ADAPTER_DIR...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loradock.h"

#define MAX_ADAPTERS 16

static int fail(const char *what, loradock_status s) {
    char msg[1024];
    loradock_last_error_message(msg, sizeof msg, NULL);
    fprintf(stderr, "%s: %s: %s\n", what, loradock_status_str(s), msg);
    return 1;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc - 2 > MAX_ADAPTERS) {
        fprintf(stderr, "usage: %s MODEL ADAPTER_DIR... (at most %d adapters)\n", argv[0], MAX_ADAPTERS);
        return 2;
    }
    int n = argc - 2;
    /* Local adapters must be under a store root: allow each adapter's parent directory. */
    const char *roots[MAX_ADAPTERS];
    char parents[MAX_ADAPTERS][1024];
    for (int i = 0; i < n; i++) {
        snprintf(parents[i], sizeof parents[i], "%s/..", argv[2 + i]);
        roots[i] = parents[i];
    }
    loradock_runtime_params p;
    loradock_runtime_params_default(&p);
    p.model_path = argv[1];
    p.store_roots = roots;
    p.n_store_roots = (size_t)n;
    p.allow_unverified = true; /* a real node registers each adapter with its digest */
    p.budget_bytes = 512ull << 20;
    loradock_runtime *rt = NULL;
    loradock_status s = loradock_runtime_new(&p, &rt);
    if (s != LORADOCK_STATUS_OK) return fail("loradock_runtime_new", s);

    const char *question = "How do I count the lines of a file?";
    char messages[512];
    snprintf(messages, sizeof messages, "[{\"role\": \"user\", \"content\": \"%s\"}]", question);
    loradock_stream *streams[MAX_ADAPTERS + 1];
    const char *labels[MAX_ADAPTERS + 1];
    for (int i = 0; i <= n; i++) {
        loradock_request_params r;
        loradock_request_params_default(&r);
        r.messages_json = messages;
        r.max_tokens = 40;
        loradock_adapter_use use = {NULL, NULL, NULL, 1.0f};
        labels[i] = "base";
        if (i < n) {
            labels[i] = base_name(argv[2 + i]);
            s = loradock_adapter_register(rt, labels[i], argv[2 + i], NULL, LORADOCK_POLICY_DISPOSABLE, NULL);
            if (s != LORADOCK_STATUS_OK) return fail("loradock_adapter_register", s);
            use.name = labels[i];
            r.adapters = &use;
            r.n_adapters = 1;
        }
        s = loradock_submit(rt, &r, &streams[i]);
        if (s != LORADOCK_STATUS_OK) return fail("loradock_submit", s);
    }
    printf("Q: %s\n", question);
    int failed = 0;
    for (int i = 0; i <= n; i++) {
        printf("\n[%s] ", labels[i]);
        for (;;) {
            loradock_event ev;
            ev.struct_size = sizeof ev;
            s = loradock_stream_next(streams[i], 60000, &ev);
            if (s == LORADOCK_STATUS_STREAM_ENDED) break;
            if (s != LORADOCK_STATUS_OK) return fail("loradock_stream_next", s);
            if (ev.kind == LORADOCK_EVENT_TOKEN) {
                fwrite(ev.text, 1, ev.text_len, stdout);
                fflush(stdout);
            } else if (ev.kind == LORADOCK_EVENT_DONE) {
                printf("\n  (%llu tokens, waited %.1f ms, decode %.1f ms)\n",
                       (unsigned long long)ev.usage.completion_tokens, ev.usage.queue_ms, ev.usage.decode_ms);
            } else {
                printf("\n  error %s: %s\n", loradock_status_str(ev.error_status), ev.error_message);
                failed = 1;
            }
        }
        loradock_stream_free(streams[i]);
    }
    loradock_stats st;
    st.struct_size = sizeof st;
    if (loradock_runtime_stats(rt, &st) == LORADOCK_STATUS_OK)
        printf("\ndocks %llu, high water %.1f MiB of %.1f MiB\n", (unsigned long long)st.docks,
               st.high_water_bytes / 1048576.0, st.budget_bytes / 1048576.0);
    loradock_runtime_free(rt);
    return failed;
}
