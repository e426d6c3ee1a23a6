/* Streams: cancel mid-stream and before start, the callback pump on this thread (stopping
 * early and running to the end), time-outs, and freeing a stream that has not ended. */
#include "common.h"

struct pump_state {
    int tokens;
    int terminal;
    int stop_after;
    loradock_event_kind last_kind;
};

static int on_event(const loradock_event *ev, void *user) {
    struct pump_state *st = (struct pump_state *)user;
    st->last_kind = ev->kind;
    if (ev->kind == LORADOCK_EVENT_TOKEN) {
        st->tokens++;
        if (st->stop_after && st->tokens >= st->stop_after) return 1;
    } else {
        st->terminal++;
    }
    return 0;
}

int main(int argc, char **argv) {
    setup(argc, argv, "streams");
    /* A small buffer: a request whose reader waits is paused, so it cannot finish before
     * the reader cancels it, however slow this process runs (valgrind). */
    g_stream_buffer = 2;
    loradock_runtime *rt = new_runtime();
    loradock_request_params r;
    init_request(&r, "hello world", 200);

    /* Cancel after the first token. */
    loradock_stream *s = NULL;
    EXPECT_OK(loradock_submit(rt, &r, &s));
    loradock_event ev;
    ev.struct_size = sizeof ev;
    EXPECT_OK(loradock_stream_next(s, 30000, &ev));
    EXPECT(ev.kind == LORADOCK_EVENT_TOKEN);
    EXPECT_OK(loradock_stream_cancel(s));
    EXPECT_OK(loradock_stream_cancel(s)); /* idempotent */
    loradock_event end;
    drain(s, NULL, 0, &end);
    if (!(end.kind == LORADOCK_EVENT_DONE && end.finish_reason == LORADOCK_FINISH_CANCELLED))
        FAILF("kind %d finish %d status %s message %s", (int)end.kind, (int)end.finish_reason,
              loradock_status_str(end.error_status), end.error_message ? end.error_message : "-");
    EXPECT(end.usage.completion_tokens < 200);
    loradock_stream_free(s);

    /* Cancel right away. */
    EXPECT_OK(loradock_submit(rt, &r, &s));
    EXPECT_OK(loradock_stream_cancel(s));
    drain(s, NULL, 0, &end);
    if (!(end.kind == LORADOCK_EVENT_DONE && end.finish_reason == LORADOCK_FINISH_CANCELLED))
        FAILF("kind %d finish %d status %s message %s", (int)end.kind, (int)end.finish_reason,
              loradock_status_str(end.error_status), end.error_message ? end.error_message : "-");
    loradock_stream_free(s);

    /* The pump: stop after 3 tokens, then resume to the end. */
    init_request(&r, "the cat", 20);
    EXPECT_OK(loradock_submit(rt, &r, &s));
    struct pump_state st = {0, 0, 3, LORADOCK_EVENT_TOKEN};
    EXPECT_OK(loradock_stream_pump(s, 30000, on_event, &st));
    EXPECT(st.tokens == 3 && st.terminal == 0);
    st.stop_after = 0;
    EXPECT_OK(loradock_stream_pump(s, 30000, on_event, &st));
    EXPECT(st.terminal == 1 && st.last_kind == LORADOCK_EVENT_DONE);
    EXPECT_STATUS(loradock_stream_pump(s, 0, on_event, &st), LORADOCK_STATUS_STREAM_ENDED);
    EXPECT_STATUS(loradock_stream_pump(s, 0, NULL, &st), LORADOCK_STATUS_NULL_ARGUMENT);
    loradock_stream_free(s);

    /* A zero time-out on a request that waits for a slow fetch: TIMEOUT, not an error. */
    init_request(&r, "hello", 4);
    EXPECT_OK(loradock_submit(rt, &r, &s));
    loradock_status t = loradock_stream_next(s, 0, &ev);
    EXPECT(t == LORADOCK_STATUS_TIMEOUT || t == LORADOCK_STATUS_OK);
    drain(s, NULL, 0, &end);
    EXPECT(end.kind == LORADOCK_EVENT_DONE);
    loradock_stream_free(s);

    /* Freeing a running stream cancels it; the runtime counts it. */
    init_request(&r, "hello", 200);
    EXPECT_OK(loradock_submit(rt, &r, &s));
    loradock_stream_free(s);
    loradock_stats stats;
    for (int i = 0; i < 3000; i++) {
        stats.struct_size = sizeof stats;
        EXPECT_OK(loradock_runtime_stats(rt, &stats));
        if (stats.requests_cancelled == 3 && stats.running == 0) break;
        usleep(1000);
    }
    EXPECT(stats.requests_cancelled == 3);
    EXPECT(stats.running == 0);

    /* Token ids and chat messages as inputs. */
    uint32_t ids[3] = {1, 2, 3};
    init_request(&r, NULL, 4);
    r.token_ids = ids;
    r.n_token_ids = 3;
    EXPECT_OK(loradock_submit(rt, &r, &s));
    drain(s, NULL, 0, &end);
    EXPECT(end.kind == LORADOCK_EVENT_DONE && end.usage.prompt_tokens == 3);
    loradock_stream_free(s);
    loradock_runtime_free(rt);
    printf("streams: ok\n");
    return 0;
}
