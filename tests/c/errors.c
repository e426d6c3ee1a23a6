/* Errors and NULLs: every NULL is refused with NULL_ARGUMENT and a message, bad values with
 * their status, the last error is per thread and set only by failing calls, panics become a
 * status, and the runtime keeps serving. */
#include "common.h"

int main(int argc, char **argv) {
    setup(argc, argv, "errors");
    /* Status names. */
    EXPECT(strcmp(loradock_status_str(LORADOCK_STATUS_BUSY), "LORADOCK_STATUS_BUSY") == 0);
    EXPECT(strcmp(loradock_status_str(123456), "LORADOCK_STATUS_UNKNOWN") == 0);

    /* NULL everywhere. */
    EXPECT_STATUS(loradock_runtime_params_default(NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(loradock_request_params_default(NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    loradock_runtime *rt = NULL;
    EXPECT_STATUS(loradock_runtime_new(NULL, &rt), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT(rt == NULL);
    char buf[512];
    size_t n = 0;
    EXPECT_OK(loradock_last_error_message(buf, sizeof buf, &n));
    EXPECT(strstr(buf, "params is NULL") != NULL);
    EXPECT(n == strlen(buf));
    /* Size query and truncation. */
    EXPECT_OK(loradock_last_error_message(NULL, 0, &n)); /* a size query */
    EXPECT(n == strlen("params is NULL"));
    EXPECT_STATUS(loradock_last_error_message(buf, 4, &n), LORADOCK_STATUS_BUFFER_TOO_SMALL);
    EXPECT(strcmp(buf, "par") == 0);

    loradock_runtime_params p;
    EXPECT_OK(loradock_runtime_params_default(&p));
    EXPECT_STATUS(loradock_runtime_new(&p, &rt), LORADOCK_STATUS_NULL_ARGUMENT); /* no model */
    p.model_path = "/nonexistent/model";
    EXPECT(loradock_runtime_new(&p, &rt) != LORADOCK_STATUS_OK);
    loradock_last_error_message(buf, sizeof buf, NULL);
    EXPECT(strstr(buf, "/nonexistent/model") != NULL);
    p.struct_size = 3;
    EXPECT_STATUS(loradock_runtime_new(&p, &rt), LORADOCK_STATUS_STRUCT_SIZE);
    EXPECT_OK(loradock_runtime_params_default(&p));
    p.model_path = "\xff\xfe";
    EXPECT_STATUS(loradock_runtime_new(&p, &rt), LORADOCK_STATUS_INVALID_UTF8);
    EXPECT_OK(loradock_runtime_params_default(&p));
    p.model_path = g_model;
    p.device = "cuda:7";
    EXPECT_STATUS(loradock_runtime_new(&p, &rt), LORADOCK_STATUS_INVALID_ARGUMENT);
    p.device = NULL;
    p.budget_bytes = 1024; /* smaller than the model */
    EXPECT_STATUS(loradock_runtime_new(&p, &rt), LORADOCK_STATUS_OVER_BUDGET);
    EXPECT(rt == NULL);

    rt = new_runtime();
    /* A success does not clear the last error. */
    loradock_last_error_message(buf, sizeof buf, NULL);
    EXPECT(strstr(buf, "budget") != NULL);

    EXPECT_STATUS(loradock_adapter_register(NULL, "a", "/x", NULL, 0, NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(loradock_adapter_register(rt, NULL, "/x", NULL, 0, NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(loradock_adapter_register(rt, "a", NULL, NULL, 0, NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(loradock_adapter_register(rt, "a", "/x", "sha256:zz", 0, NULL), LORADOCK_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(loradock_adapter_register(rt, "a", "/x", NULL, 7, NULL), LORADOCK_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(loradock_adapter_register(rt, "a+b", "/x", NULL, 0, NULL), LORADOCK_STATUS_INVALID_ARGUMENT);
    EXPECT_STATUS(loradock_adapter_unregister(rt, "never"), LORADOCK_STATUS_UNKNOWN_ADAPTER);
    loradock_last_error_message(buf, sizeof buf, NULL);
    EXPECT(strstr(buf, "never") != NULL);

    loradock_request_params r;
    loradock_stream *s = NULL;
    EXPECT_STATUS(loradock_submit(rt, NULL, &s), LORADOCK_STATUS_NULL_ARGUMENT);
    init_request(&r, "hi", 4);
    EXPECT_STATUS(loradock_submit(rt, &r, NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    r.prompt = NULL;
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_INVALID_ARGUMENT); /* no input */
    r.prompt = "hi";
    r.messages_json = "[]";
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_INVALID_ARGUMENT); /* two inputs */
    r.messages_json = NULL;
    loradock_adapter_use unknown = {"nope", NULL, NULL, 1.0f};
    r.adapters = &unknown;
    r.n_adapters = 1;
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_UNKNOWN_ADAPTER);
    r.n_adapters = 2; /* array shorter than declared is the host's bug; NULL is ours */
    r.adapters = NULL;
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_NULL_ARGUMENT);
    r.n_adapters = 0;
    r.max_tokens = 100000;
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_INVALID_ARGUMENT);
    r.max_tokens = 4;
    r.temperature = -1.0f;
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_INVALID_ARGUMENT);
    r.temperature = 0.0f;
    r.combination = "nonsense";
    EXPECT_STATUS(loradock_submit(rt, &r, &s), LORADOCK_STATUS_INVALID_ARGUMENT);
    r.combination = NULL;
    EXPECT(s == NULL);

    /* Streams: NULLs. */
    loradock_event ev;
    ev.struct_size = sizeof ev;
    EXPECT_STATUS(loradock_stream_next(NULL, 0, &ev), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(loradock_stream_cancel(NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    EXPECT_STATUS(loradock_stream_pump(NULL, 0, NULL, NULL), LORADOCK_STATUS_NULL_ARGUMENT);

    /* A refused adapter fails its request with a named error event; others go on. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/refuse_dora", g_adapters);
    EXPECT_OK(loradock_adapter_register(rt, "dora", dir, NULL, LORADOCK_POLICY_DISPOSABLE, NULL));
    loradock_adapter_use dora = {"dora", NULL, NULL, 1.0f};
    r.adapters = &dora;
    r.n_adapters = 1;
    EXPECT_OK(loradock_submit(rt, &r, &s));
    EXPECT_STATUS(loradock_stream_next(s, 0, NULL), LORADOCK_STATUS_NULL_ARGUMENT);
    loradock_event end;
    drain(s, NULL, 0, &end);
    EXPECT(end.kind == LORADOCK_EVENT_ERROR);
    EXPECT(end.error_status == LORADOCK_STATUS_ADAPTER);
    EXPECT(strstr(end.error_message, "DoRA") != NULL);
    loradock_stream_free(s);

    /* An inline adapter outside the roots: a fetch error. */
    loradock_adapter_use escape = {NULL, "/etc", NULL, 1.0f};
    r.adapters = &escape;
    EXPECT_OK(loradock_submit(rt, &r, &s));
    drain(s, NULL, 0, &end);
    EXPECT(end.kind == LORADOCK_EVENT_ERROR && end.error_status == LORADOCK_STATUS_FETCH);
    loradock_stream_free(s);

    /* A handle of the other type is refused (detected by its tag), not used. */
    init_request(&r, "hi", 4);
    EXPECT_OK(loradock_submit(rt, &r, &s));
    EXPECT_STATUS(loradock_adapter_unregister((const loradock_runtime *)(const void *)s, "x"),
                  LORADOCK_STATUS_INVALID_ARGUMENT);
    loradock_last_error_message(buf, sizeof buf, NULL);
    EXPECT(strstr(buf, "not a live loradock_runtime") != NULL);
    EXPECT_STATUS(loradock_stream_cancel((const loradock_stream *)(const void *)rt), LORADOCK_STATUS_INVALID_ARGUMENT);
    loradock_stream_free((loradock_stream *)(void *)rt); /* refused: the runtime lives on */
    drain(s, NULL, 0, &end);
    loradock_stream_free(s);

    /* A Rust panic is a status, not an abort. */
    EXPECT_STATUS(loradock_debug_panic(), LORADOCK_STATUS_PANIC);
    loradock_last_error_message(buf, sizeof buf, NULL);
    EXPECT(strstr(buf, "panic") != NULL);

    /* Still serving. */
    r.adapters = NULL;
    r.n_adapters = 0;
    EXPECT_OK(loradock_submit(rt, &r, &s));
    drain(s, NULL, 0, &end);
    EXPECT(end.kind == LORADOCK_EVENT_DONE);
    loradock_stream_free(s);
    loradock_runtime_free(rt);
    printf("errors: ok\n");
    return 0;
}
