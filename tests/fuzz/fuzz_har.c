/* libFuzzer harness: the HAR importer (src/session/har.h) on arbitrary
 * files.
 *
 * Per input: the bytes are written to a .har file and loaded (reel_har_load
 * runs every check reel_har_check does; check is load + free). An input that
 * passes is recorded, as `reel import` does, into a fresh session through a
 * real recorder (writer thread, zstd, index); then the session must verify
 * clean and every imported flow must read back from the spool. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "fuzz_util.h"
#include "session/har.h"
#include "session/recorder.h"
#include "session/session.h"
#include "session/store.h"

static void quiet(void *ctx, const char *msg) {
    (void)ctx;
    (void)msg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_tmpdir("har");
    fuzz_mkdir(fuzz_path("home"));
    return 0;
}

static int count_cb(void *ctx, const Reel__Record *rec) {
    (void)rec;
    (*(size_t *)ctx)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path("in.har");
    fuzz_write_file(path, data, size);
    reel_err_t err;
    reel_err_clear(&err);
    reel_har_t *h = NULL;
    reel_rc rc = reel_har_load(path, &h, &err);
    if (rc != REEL_OK) {
        FUZZ_CHECK(h == NULL, "failed load returned a document");
        /* UNSUPPORTED: a HAR version other than 1.x */
        FUZZ_CHECK(rc == REEL_INVALID || rc == REEL_LIMIT || rc == REEL_UNSUPPORTED, "load: %d %s",
                   (int)rc, reel_err_str(&err));
        FUZZ_CHECK(err.msg[0] != '\0', "load failed without a message");
        return 0;
    }

    const char *home = fuzz_path("home");
    fuzz_rm_rf(fuzz_path("home/h"));
    reel_session_t *s = NULL;
    reel_recorder_t *rec = NULL;
    reel_recorder_opts_t opts;
    reel_recorder_opts_default(&opts);
    opts.fsync = REEL_FSYNC_NEVER;
    opts.capture = REEL_CAPTURE_LOSSLESS;
    opts.warn = quiet;
    FUZZ_CHECK(reel_session_open(home, "h", REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err) ==
                   REEL_OK,
               "session: %s", reel_err_str(&err));
    FUZZ_CHECK(reel_recorder_open(s, &opts, &rec, &err) == REEL_OK, "recorder: %s",
               reel_err_str(&err));
    reel_har_stats_t stats;
    rc = reel_har_record(rec, h, &stats, &err);
    FUZZ_CHECK(rc == REEL_OK, "record: %s", reel_err_str(&err));
    FUZZ_CHECK(reel_recorder_close(rec, &err) == REEL_OK, "recorder close: %s",
               reel_err_str(&err));
    reel_har_free(h);
    FUZZ_CHECK(stats.entries == 0 || (stats.first_id >= 1 && stats.last_id >= stats.first_id &&
                                      stats.last_id - stats.first_id + 1 == stats.entries),
               "stats: %llu entries, ids %llu-%llu", (unsigned long long)stats.entries,
               (unsigned long long)stats.first_id, (unsigned long long)stats.last_id);

    char *report = NULL;
    rc = reel_session_verify(s, &report, &err);
    FUZZ_CHECK(rc == REEL_OK, "verify after import: %s\n%s", reel_err_str(&err), report);
    free(report);
    for (uint64_t id = stats.first_id; stats.entries && id <= stats.last_id; id++) {
        size_t n = 0;
        reel_err_clear(&err);
        rc = reel_store_read_flow(s, id, count_cb, &n, &err);
        FUZZ_CHECK(rc == REEL_OK && n >= 3, "flow %llu: %zu records, %s", (unsigned long long)id,
                   n, reel_err_str(&err));
    }
    reel_session_close(s);
    return 0;
}
