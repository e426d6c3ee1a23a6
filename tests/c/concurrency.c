/* Several host threads at once: each submits and reads its own requests with its own
 * adapters, one thread cancels others' streams, and each thread's last error is its own. */
#include <pthread.h>

#include "common.h"

#define THREADS 6
#define PER_THREAD 8

static loradock_runtime *g_rt;
static const char *g_names[3] = {"qv", "mlp", NULL};

struct result {
    int done, cancelled, failed;
};

static void *worker(void *arg) {
    long id = (long)arg;
    struct result *res = calloc(1, sizeof *res);
    char buf[256];
    /* A failing call on this thread sets this thread's last error only. */
    EXPECT_STATUS(loradock_adapter_unregister(g_rt, id % 2 ? "ghost-odd" : "ghost-even"),
                  LORADOCK_STATUS_UNKNOWN_ADAPTER);
    for (int i = 0; i < PER_THREAD; i++) {
        loradock_request_params r;
        init_request(&r, i % 2 ? "hello world" : "the cat", 6 + (uint32_t)(i % 3));
        loradock_adapter_use u = {g_names[(id + i) % 3], NULL, NULL, 1.0f};
        if (u.name) {
            r.adapters = &u;
            r.n_adapters = 1;
        }
        loradock_stream *s = NULL;
        EXPECT_OK(loradock_submit(g_rt, &r, &s));
        if ((id + i) % 5 == 0) EXPECT_OK(loradock_stream_cancel(s));
        loradock_event end;
        drain(s, NULL, 0, &end);
        if (end.kind == LORADOCK_EVENT_DONE && end.finish_reason == LORADOCK_FINISH_CANCELLED)
            res->cancelled++;
        else if (end.kind == LORADOCK_EVENT_DONE)
            res->done++;
        else
            res->failed++;
        loradock_stream_free(s);
    }
    loradock_last_error_message(buf, sizeof buf, NULL);
    EXPECT(strstr(buf, id % 2 ? "ghost-odd" : "ghost-even") != NULL);
    return res;
}

int main(int argc, char **argv) {
    setup(argc, argv, "concurrency");
    g_rt = new_runtime();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/r8_qv", g_adapters);
    EXPECT_OK(loradock_adapter_register(g_rt, "qv", dir, NULL, LORADOCK_POLICY_DISPOSABLE, NULL));
    snprintf(dir, sizeof dir, "%s/r16_mlp", g_adapters);
    EXPECT_OK(loradock_adapter_register(g_rt, "mlp", dir, NULL, LORADOCK_POLICY_DISPOSABLE, NULL));
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    int done = 0, cancelled = 0, failed = 0;
    for (int i = 0; i < THREADS; i++) {
        struct result *r;
        pthread_join(t[i], (void **)&r);
        done += r->done;
        cancelled += r->cancelled;
        failed += r->failed;
        free(r);
    }
    EXPECT(done + cancelled == THREADS * PER_THREAD);
    EXPECT(failed == 0);
    loradock_stats st;
    for (int i = 0; i < 3000; i++) {
        st.struct_size = sizeof st;
        EXPECT_OK(loradock_runtime_stats(g_rt, &st));
        if (st.adapters_docked == 0 && st.used_bytes == st.base_weight_bytes) break;
        usleep(1000);
    }
    EXPECT(st.used_bytes == st.base_weight_bytes);
    loradock_runtime_free(g_rt);
    printf("concurrency: ok (%d done, %d cancelled)\n", done, cancelled);
    return 0;
}
