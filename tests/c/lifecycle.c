/* Lifecycle: version, defaults, create/free, a request on the base model and with an
 * adapter, stats that return to their baseline, free(NULL). */
#include "common.h"

int main(int argc, char **argv) {
    setup(argc, argv, "lifecycle");
    EXPECT(strcmp(loradock_version(), LORADOCK_VERSION_STRING) == 0);
    loradock_runtime_free(NULL);
    loradock_stream_free(NULL);

    loradock_runtime *rt = new_runtime();
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/r8_qv", g_adapters);
    uint64_t gen = 0;
    EXPECT_OK(loradock_adapter_register(rt, "qv", dir, NULL, LORADOCK_POLICY_DISPOSABLE, &gen));
    EXPECT(gen >= 1);

    loradock_request_params r;
    init_request(&r, "hello world", 8);
    loradock_stream *base = NULL;
    EXPECT_OK(loradock_submit(rt, &r, &base));
    loradock_adapter_use use = {"qv", NULL, NULL, 1.0f};
    r.adapters = &use;
    r.n_adapters = 1;
    loradock_stream *with = NULL;
    EXPECT_OK(loradock_submit(rt, &r, &with));

    char t1[1024], t2[1024];
    loradock_event end;
    drain(base, t1, sizeof t1, &end);
    EXPECT(end.kind == LORADOCK_EVENT_DONE);
    EXPECT(end.finish_reason == LORADOCK_FINISH_LENGTH);
    EXPECT(end.usage.completion_tokens == 8);
    drain(with, t2, sizeof t2, &end);
    EXPECT(end.kind == LORADOCK_EVENT_DONE);
    EXPECT(strlen(t1) > 0 && strlen(t2) > 0);
    EXPECT(strcmp(t1, t2) != 0); /* the adapter changes the output */
    loradock_stream_free(base);
    loradock_stream_free(with);

    /* The adapter is undocked and the ledger back to the base weights (asynchronously). */
    loradock_stats st;
    for (int i = 0; i < 2000; i++) {
        st.struct_size = sizeof st;
        EXPECT_OK(loradock_runtime_stats(rt, &st));
        if (st.adapters_docked == 0 && st.used_bytes == st.base_weight_bytes) break;
        usleep(1000);
    }
    EXPECT(st.adapters_docked == 0);
    EXPECT(st.used_bytes == st.base_weight_bytes);
    EXPECT(st.high_water_bytes <= st.budget_bytes);
    EXPECT(st.requests_completed == 2);
    EXPECT(st.docks == 1 && st.undocks == 1);

    /* An older, smaller stats struct gets only its fields. */
    struct {
        uint32_t struct_size;
        uint64_t adapters_registered;
    } small;
    small.struct_size = 4;
    EXPECT_STATUS(loradock_runtime_stats(rt, (loradock_stats *)&small), LORADOCK_STATUS_STRUCT_SIZE);

    EXPECT_OK(loradock_adapter_unregister(rt, "qv"));
    loradock_runtime_free(rt);
    printf("lifecycle: ok\n");
    return 0;
}
