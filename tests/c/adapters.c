/* Adapters and composites: an exact weighted sum of two adapters, an approximate (SVD)
 * composite, an inline adapter by source, re-registration as a new generation, policies. */
#include "common.h"

static void run(loradock_runtime *rt, loradock_adapter_use *uses, size_t n, const char *comb, char *out, size_t cap) {
    loradock_request_params r;
    init_request(&r, "hello world", 10);
    r.adapters = uses;
    r.n_adapters = n;
    r.combination = comb;
    loradock_stream *s = NULL;
    EXPECT_OK(loradock_submit(rt, &r, &s));
    loradock_event end;
    drain(s, out, cap, &end);
    if (end.kind != LORADOCK_EVENT_DONE) FAILF("request failed: %s", end.error_message);
    loradock_stream_free(s);
}

int main(int argc, char **argv) {
    setup(argc, argv, "adapters");
    loradock_runtime *rt = new_runtime();
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/t_a", g_adapters);
    snprintf(b, sizeof b, "%s/t_b", g_adapters);
    EXPECT_OK(loradock_adapter_register(rt, "a", a, NULL, LORADOCK_POLICY_KEEP_WARM, NULL));
    EXPECT_OK(loradock_adapter_register(rt, "b", b, NULL, LORADOCK_POLICY_PINNED, NULL));

    char only_a[1024], mix[1024], mix2[1024], svd[1024], inl[1024];
    loradock_adapter_use ua = {"a", NULL, NULL, 1.0f};
    run(rt, &ua, 1, NULL, only_a, sizeof only_a);
    loradock_adapter_use ab[2] = {{"a", NULL, NULL, 0.7f}, {"b", NULL, NULL, 0.3f}};
    run(rt, ab, 2, NULL, mix, sizeof mix);
    run(rt, ab, 2, "cat", mix2, sizeof mix2);
    EXPECT(strcmp(mix, mix2) == 0); /* "cat" is the exact sum, the default */
    run(rt, ab, 2, "svd", svd, sizeof svd);
    /* The same adapter inline by source is the same content. */
    loradock_adapter_use inline_a = {NULL, a, NULL, 1.0f};
    run(rt, &inline_a, 1, NULL, inl, sizeof inl);
    EXPECT(strcmp(inl, only_a) == 0);

    /* Keep-warm and pinned adapters stay docked; the composite was disposable. */
    loradock_stats st;
    for (int i = 0; i < 2000; i++) {
        st.struct_size = sizeof st;
        EXPECT_OK(loradock_runtime_stats(rt, &st));
        if (st.adapters_docked == 2 && st.running == 0) break;
        usleep(1000);
    }
    EXPECT(st.adapters_docked == 2);

    /* Re-registering "a" with b's files: a new generation with new output. */
    uint64_t g1 = 0, g2 = 0;
    EXPECT_OK(loradock_adapter_register(rt, "x", a, NULL, LORADOCK_POLICY_DISPOSABLE, &g1));
    EXPECT_OK(loradock_adapter_register(rt, "x", b, NULL, LORADOCK_POLICY_DISPOSABLE, &g2));
    EXPECT(g2 > g1);
    char x[1024], only_b[1024];
    loradock_adapter_use ux = {"x", NULL, NULL, 1.0f};
    loradock_adapter_use ub = {"b", NULL, NULL, 1.0f};
    run(rt, &ux, 1, NULL, x, sizeof x);
    run(rt, &ub, 1, NULL, only_b, sizeof only_b);
    EXPECT(strcmp(x, only_b) == 0);
    loradock_runtime_free(rt);
    printf("adapters: ok\n");
    return 0;
}
