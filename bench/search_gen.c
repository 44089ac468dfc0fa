/* search_gen: makes a session of N small JSON flows for bench/search.
 *
 *   search_gen --flows N --home DIR [--session NAME] [--every K]
 *
 * Records N flows through the recorder API (capture lossless: the loop
 * waits for the disk; GET, 200, a JSON response of
 * about 100 bytes from a small vocabulary), every K-th (default 10007) with
 * the token "needletoken" in its body, then runs reel_session_repair, which
 * rebuilds the index and fills the body FTS without a budget. Prints the
 * recording and repair times and the decoded body bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/mem.h"
#include "session/recorder.h"
#include "session/session.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const reel_err_t *err) {
    fprintf(stderr, "search_gen: %s: %s\n", what, err ? reel_err_str(err) : "");
    exit(1);
}

int main(int argc, char **argv) {
    unsigned long long n = 0, every = 10007;
    const char *home = NULL, *name = "bench-search";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--flows") == 0)
            n = strtoull(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--home") == 0)
            home = argv[i + 1];
        else if (strcmp(argv[i], "--session") == 0)
            name = argv[i + 1];
        else if (strcmp(argv[i], "--every") == 0)
            every = strtoull(argv[i + 1], NULL, 10);
    }
    if (n == 0 || home == NULL || every == 0) {
        fprintf(stderr, "usage: search_gen --flows N --home DIR [--session NAME] [--every K]\n");
        return 2;
    }
    static const char *const words[] = {
        "alpha",  "bravo", "charlie", "delta",  "echo",     "foxtrot", "golf",   "hotel",  "india",
        "juliet", "kilo",  "lima",    "mike",   "november", "oscar",   "papa",   "quebec", "romeo",
        "sierra", "tango", "uniform", "victor", "whiskey",  "xray",    "yankee", "zulu"};
    const size_t nw = sizeof words / sizeof words[0];
    reel_err_t err;
    reel_err_clear(&err);
    reel_session_t *s = NULL;
    if (reel_session_open(home, name, REEL_OPEN_CREATE | REEL_OPEN_RECORD, &s, &err) != REEL_OK)
        die("open", &err);
    reel_recorder_opts_t o;
    reel_recorder_opts_default(&o);
    o.fsync = REEL_FSYNC_NEVER;
    o.capture = REEL_CAPTURE_LOSSLESS; /* the generator waits for the disk: no flow loses records */
    reel_recorder_t *r = NULL;
    if (reel_recorder_open(s, &o, &r, &err) != REEL_OK)
        die("recorder", &err);
    uint64_t rng = 88172645463325252ull, bytes = 0;
    double t0 = now_s();
    reel_header_t qh[] = {{"Host", 4, "api.bench", 9}, {"Accept", 6, "application/json", 16}};
    reel_header_t sh[] = {{"Content-Type", 12, "application/json", 16}};
    for (unsigned long long i = 1; i <= n; i++) {
        reel_rflow_t *f = reel_recorder_flow_start(r, NULL);
        char target[48];
        snprintf(target, sizeof target, "/v1/items/%llu", i);
        reel_request_head_t rq = {.method = "GET",
                                  .scheme = "http",
                                  .host = "api.bench",
                                  .port = 80,
                                  .target = target,
                                  .http_version = "HTTP/1.1",
                                  .headers = qh,
                                  .n_headers = 2};
        reel_recorder_request_head(f, &rq);
        reel_response_head_t rs = {.status = 200,
                                   .reason = "OK",
                                   .http_version = "HTTP/1.1",
                                   .headers = sh,
                                   .n_headers = 1};
        reel_recorder_response_head(f, &rs);
        char body[256];
        size_t w[4];
        for (int k = 0; k < 4; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            w[k] = (size_t)(rng % nw);
        }
        int len = snprintf(body, sizeof body,
                           "{\"id\":%llu,\"user\":\"u%llu\",\"tags\":[\"%s\",\"%s\"],\"text\":\"%s "
                           "%s\",\"note\":\"%s\",\"ok\":true}",
                           i, (unsigned long long)(rng % 100000), words[w[0]], words[w[1]],
                           words[w[2]], words[w[3]], i % every == 0 ? "needletoken" : "none");
        reel_recorder_response_body(f, body, (size_t)len);
        bytes += (uint64_t)len;
        reel_recorder_flow_end(f, NULL, 0, 0, 0);
    }
    if (reel_recorder_close(r, &err) != REEL_OK)
        die("close", &err);
    double t1 = now_s();
    char *rep = NULL;
    if (reel_session_repair(s, &rep, &err) != REEL_OK)
        die("repair", &err);
    free(rep);
    double t2 = now_s();
    reel_session_close(s);
    printf("flows %llu\nbody_bytes %llu\nneedles %llu\nrecord_s %.2f\nrepair_s %.2f\n", n,
           (unsigned long long)bytes, n / every, t1 - t0, t2 - t1);
    return 0;
}
