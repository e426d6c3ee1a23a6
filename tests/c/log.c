/* The log callback: quiet by default, records at the chosen level reach the host's
 * callback with its user data, the finalizer runs once when the callback is replaced. */
#include <pthread.h>

#include "common.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_records, g_worst = 99, g_finalized;

static void on_log(int level, const char *target, const char *message, void *user) {
    pthread_mutex_lock(&g_lock);
    EXPECT(user == (void *)&g_records);
    EXPECT(target != NULL && message != NULL && strlen(target) > 0);
    g_records++;
    if (level > 0 && level < g_worst) g_worst = level;
    if (level > 3) FAILF("a level-%d record passed an info filter: %s", level, message);
    pthread_mutex_unlock(&g_lock);
}

static void on_free(void *user) {
    EXPECT(user == (void *)&g_records);
    g_finalized++;
}

int main(int argc, char **argv) {
    setup(argc, argv, "log");
    EXPECT_STATUS(loradock_set_log_callback(on_log, &g_records, on_free, 9), LORADOCK_STATUS_INVALID_ARGUMENT);
    /* Quiet by default: nothing is delivered before a callback is set. */
    loradock_runtime *rt = new_runtime();
    loradock_runtime_free(rt);
    EXPECT_OK(loradock_set_log_callback(on_log, &g_records, on_free, 3));
    rt = new_runtime();
    loradock_runtime_free(rt);
    pthread_mutex_lock(&g_lock);
    EXPECT(g_records > 0);
    pthread_mutex_unlock(&g_lock);
    EXPECT(g_finalized == 0);
    /* Removing it calls the finalizer once; nothing more arrives. */
    EXPECT_OK(loradock_set_log_callback(NULL, NULL, NULL, 0)); /* level ignored on removal */
    EXPECT(g_finalized == 1);
    int before = g_records;
    rt = new_runtime();
    loradock_runtime_free(rt);
    EXPECT(g_records == before);
    printf("log: ok (%d records)\n", before);
    return 0;
}
