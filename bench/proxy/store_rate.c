/* store_rate: how many MiB/s of response bodies the store alone takes in,
 * the baseline for "1 MiB responses, capture on" in bench/proxy/run.sh.
 *
 *   store_rate --home DIR --body FILE [--seconds 10] [--fsync block|interval|never]
 *
 * Opens a new session "store-rate" under DIR and records, through the same
 * recorder API the proxy calls (reel_recorder_*), one GET flow after
 * another whose response body is FILE, fed in 64 KiB pieces as the proxy
 * feeds what it reads (READ_SIZE in src/core/proxy.c), with the heads
 * nginx sends for a static file. Capture is "lossless" so that the
 * producer waits for the writer instead of dropping: the figure is the
 * rate at which the writer thread (encode, zstd, append, fsync, index)
 * keeps up. Other recorder options are the defaults of `reel record`.
 * Flows are produced for --seconds, then the recorder is flushed; the rate
 * is bodies recorded / (time to produce + time to flush).
 *
 * Prints one key=value line on stdout: flows, body_bytes, seconds,
 * mib_per_s, spool_bytes. Built by run.sh against the libraries of the
 * reel build (it is not part of the CMake build). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session/recorder.h"
#include "session/session.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "store_rate: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

#define H(n, v) {n, sizeof n - 1, v, sizeof v - 1}

int main(int argc, char **argv) {
    const char *home = NULL, *body_path = NULL, *fsync_s = "block";
    double seconds = 10;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--home"))
            home = argv[i + 1];
        else if (!strcmp(argv[i], "--body"))
            body_path = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--fsync"))
            fsync_s = argv[i + 1];
        else
            die("unknown option", argv[i]);
    }
    if (!home || !body_path || seconds <= 0)
        die("usage: store_rate --home DIR --body FILE [--seconds 10] [--fsync block|interval|never]",
            NULL);

    FILE *f = fopen(body_path, "rb");
    if (!f)
        die("cannot open", body_path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *body = malloc(size > 0 ? (size_t)size : 1);
    if (size <= 0 || fread(body, 1, (size_t)size, f) != (size_t)size)
        die("cannot read", body_path);
    fclose(f);
    char clen[32];
    snprintf(clen, sizeof clen, "%ld", size);

    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, "store-rate", REEL_OPEN_CREATE | REEL_OPEN_NEW | REEL_OPEN_RECORD,
                          &s, &err) != REEL_OK)
        die("session open", reel_err_str(&err));
    reel_recorder_opts_t opts;
    reel_recorder_opts_default(&opts);
    opts.capture = REEL_CAPTURE_LOSSLESS;
    if (!strcmp(fsync_s, "block"))
        opts.fsync = REEL_FSYNC_BLOCK;
    else if (!strcmp(fsync_s, "interval"))
        opts.fsync = REEL_FSYNC_INTERVAL;
    else if (!strcmp(fsync_s, "never"))
        opts.fsync = REEL_FSYNC_NEVER;
    else
        die("bad --fsync", fsync_s);
    reel_recorder_t *rec = NULL;
    if (reel_recorder_open(s, &opts, &rec, &err) != REEL_OK)
        die("recorder open", reel_err_str(&err));

    const reel_header_t rqh[] = {H("Host", "127.0.0.1:8080"), H("User-Agent", "wrk"),
                                 H("Accept", "*/*")};
    reel_header_t rsh[] = {H("Server", "nginx/1.22.1"),
                           H("Date", "Tue, 24 Nov 2026 12:00:00 GMT"),
                           H("Content-Type", "application/octet-stream"),
                           {"Content-Length", 14, clen, strlen(clen)},
                           H("Last-Modified", "Tue, 24 Nov 2026 11:00:00 GMT"),
                           H("Connection", "keep-alive"),
                           H("ETag", "\"6566f7a0-100000\""),
                           H("Accept-Ranges", "bytes")};
    const size_t piece = 65536;
    long long flows = 0;
    double t0 = now_s();
    while (now_s() - t0 < seconds) {
        reel_flow_info_t info = {.client_addr = "127.0.0.1:50000", .server_addr = "127.0.0.1:8080"};
        reel_rflow_t *fl = reel_recorder_flow_start(rec, &info);
        reel_request_head_t rq = {.method = "GET",
                                  .scheme = "http",
                                  .host = "127.0.0.1",
                                  .port = 8080,
                                  .target = "/1m",
                                  .http_version = "HTTP/1.1",
                                  .headers = rqh,
                                  .n_headers = sizeof rqh / sizeof rqh[0]};
        reel_recorder_request_head(fl, &rq);
        reel_response_head_t rs = {.status = 200,
                                   .reason = "OK",
                                   .http_version = "HTTP/1.1",
                                   .headers = rsh,
                                   .n_headers = sizeof rsh / sizeof rsh[0]};
        reel_recorder_response_head(fl, &rs);
        for (long off = 0; off < size; off += (long)piece) {
            size_t n = (size_t)(size - off) < piece ? (size_t)(size - off) : piece;
            reel_recorder_response_body(fl, body + off, n);
        }
        reel_recorder_flow_end(fl, NULL, 0, 0, 0);
        flows++;
    }
    if (reel_recorder_flush(rec, &err) != REEL_OK)
        die("flush", reel_err_str(&err));
    double secs = now_s() - t0;
    reel_recorder_stats_t st;
    reel_recorder_stats(rec, &st);
    if (reel_recorder_close(rec, &err) != REEL_OK)
        die("recorder close", reel_err_str(&err));
    reel_session_close(s);
    if (st.dropped_records)
        die("records were dropped although capture was lossless", NULL);
    double bytes = (double)flows * (double)size;
    fprintf(stderr, "store_rate: %lld flows of %ld B bodies in %.2f s: %.1f MiB/s (spool %.1f MiB)\n",
            flows, size, secs, bytes / secs / 1048576.0, (double)st.spool_bytes / 1048576.0);
    printf("flows=%lld body_bytes=%.0f seconds=%.3f mib_per_s=%.2f spool_bytes=%llu\n", flows, bytes,
           secs, bytes / secs / 1048576.0, (unsigned long long)st.spool_bytes);
    return 0;
}
