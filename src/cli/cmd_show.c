#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"
#include "cli/cli.h"
#include "session/config.h"
#include "session/query.h"
#include "session/spool.h"

static const char usage[] = "usage: reel show [--home DIR] [--json] SESSION\n"
                            "\n"
                            "Summary of a session: where it is, when it was created, flow counts\n"
                            "by state, time span, spool and index sizes, overlay keys, and the\n"
                            "PID of the proxy recording into it, if any, and why it was\n"
                            "opened read-only if this user cannot write it.\n";

/* Retention: the settings (user file, overlay, and the --set options of
 * the proxy recording into the session, which beat the overlay while it
 * runs), what it dropped in all, and its last drop. A session older than
 * the retention table shows nothing dropped. */
typedef struct {
    long long max_bytes, max_age, max_flows;
    const char *hook;
    long long segments, flows, bytes, compacted;
    long long last_seg, last_us, last_flows, last_bytes;
    const char *last_reason;
} retention_t;

static void retention_load(reel_session_t *s, const reel_query_summary_t *sum, reel_config_t *c,
                           retention_t *r) {
    memset(r, 0, sizeof *r);
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_config_load_user(c, NULL, &err) == REEL_OK) {
        char *warnings = NULL;
        reel_config_load_overlay(c, reel_session_db(s), &warnings, &err);
        free(warnings);
    }
    reel_config_apply_running(c, reel_session_db(s), reel_session_recorder_pid(s) != 0);
    r->max_bytes = reel_config_get_int(c, "retention_max_bytes");
    r->max_age = reel_config_get_int(c, "retention_max_age");
    r->max_flows = reel_config_get_int(c, "retention_max_flows");
    r->hook = reel_config_get(c, "on_segment_closed", NULL);
    r->segments = sum->retention.segments;
    r->flows = sum->retention.flows;
    r->bytes = sum->retention.bytes;
    r->compacted = sum->retention.compacted;
    r->last_seg = sum->retention.last_segment;
    r->last_us = sum->retention.last_us;
    r->last_flows = sum->retention.last_flows;
    r->last_bytes = sum->retention.last_bytes;
    r->last_reason = sum->retention.last_reason;
}

static json_t *retention_json(const retention_t *r) {
    json_t *o = json_pack("{s:I, s:I, s:I, s:s, s:I, s:I, s:I, s:I}", "max_bytes",
                          (json_int_t)r->max_bytes, "max_age", (json_int_t)r->max_age,
                          "max_flows", (json_int_t)r->max_flows, "on_segment_closed", r->hook,
                          "dropped_segments", (json_int_t)r->segments, "dropped_flows",
                          (json_int_t)r->flows, "dropped_bytes", (json_int_t)r->bytes,
                          "compacted_segments", (json_int_t)r->compacted);
    json_object_set_new(o, "last",
                        r->segments ? json_pack("{s:I, s:I, s:I, s:I, s:s}", "segment",
                                                (json_int_t)r->last_seg, "time_us",
                                                (json_int_t)r->last_us, "flows",
                                                (json_int_t)r->last_flows, "bytes",
                                                (json_int_t)r->last_bytes, "reason",
                                                r->last_reason)
                                    : json_null());
    return o;
}

static void retention_print(const retention_t *r) {
    if (r->max_bytes || r->max_age || r->max_flows) {
        char b[16];
        reel_cli_size((unsigned long long)r->max_bytes, b);
        printf("retention   max_bytes %s, max_age %llds, max_flows %lld (0: no limit)\n",
               r->max_bytes ? b : "0", r->max_age, r->max_flows);
    }
    if (r->hook && r->hook[0])
        printf("on closed   %s\n", r->hook);
    if (r->segments) {
        char b[16], lb[16], t[32];
        reel_cli_size((unsigned long long)r->bytes, b);
        reel_cli_size((unsigned long long)r->last_bytes, lb);
        reel_cli_time(r->last_us, t);
        printf("dropped     %lld segment%s, %lld flow%s, %s by retention; last: %08lld.zst "
               "(%lld flow%s, %s) at %s, %s exceeded\n",
               r->segments, r->segments == 1 ? "" : "s", r->flows, r->flows == 1 ? "" : "s", b,
               r->last_seg, r->last_flows, r->last_flows == 1 ? "" : "s", lb, t, r->last_reason);
    }
    if (r->compacted)
        printf("compacted   %lld old segment%s rewritten by 'reel compact'\n", r->compacted,
               r->compacted == 1 ? "" : "s");
}

/* Segment files in the session's spool, as `reel verify` counts them: a
 * fresh recording's first segment holds no frame yet but is there. -1 when
 * the spool cannot be listed. */
static long long segment_files(reel_session_t *s) {
    char *dir = reel_asprintf("%s/spool", reel_session_path(s));
    DIR *d = opendir(dir);
    free(dir);
    if (d == NULL)
        return -1;
    long long n = 0;
    struct dirent *e;
    uint32_t num;
    while ((e = readdir(d)) != NULL)
        n += reel_spool_segment_parse(e->d_name, &num);
    closedir(d);
    return n;
}

int reel_cmd_show(reel_cli_t *cli, int argc, char **argv) {
    int arc = reel_cli_simple_args(cli, argc, argv, usage, 1, 1, "expected one SESSION");
    if (arc >= 0)
        return arc;
    reel_session_t *s = reel_cli_open(cli, argv[optind], REEL_OPEN_READ);
    if (s == NULL)
        return REEL_EXIT_ERROR;
    reel_query_summary_t sum;
    reel_err_t err;
    reel_err_clear(&err);
    if (reel_query_summary(s, &sum, &err) != REEL_OK) {
        int rc = reel_cli_query_fail(cli, s, &err);
        reel_session_close(s);
        return rc;
    }
    long long flows = sum.flows, errors = sum.errors, open_ = sum.open;
    long long interrupted = sum.interrupted, complete = sum.complete;
    long long first = sum.first_us, last = sum.last_us;
    long long frames = sum.frames, spool = sum.spool_bytes, raw = sum.raw_bytes;
    long long segments = segment_files(s), index_bytes = sum.index_bytes;
    if (segments < 0) /* the spool cannot be listed: those the index has frames in */
        segments = sum.segments;
    long long annotations = sum.annotations, tagged = sum.tagged_flows;
    long long marked = sum.marked_flows, overlay = sum.overlay_keys;
    long long damage = sum.damaged_ranges, cus = sum.created_us;
    /* connections to ignore_hosts are relayed, not recorded: only counted */
    long long ignored = sum.ignored_connections;
    long pid = reel_session_recorder_pid(s);
    reel_config_t *cfg = reel_config_new();
    retention_t ret;
    retention_load(s, &sum, cfg, &ret);
    if (cli->json) {
        json_t *o = json_pack(
            "{s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
            "s:I, s:I, s:I, s:I}",
            "session", reel_session_name(s), "path", reel_session_path(s), "created_us",
            (json_int_t)cus, "flows", (json_int_t)flows, "states", "complete",
            (json_int_t)complete, "error", (json_int_t)errors, "open", (json_int_t)open_,
            "interrupted", (json_int_t)interrupted, "first_us", (json_int_t)first, "last_us",
            (json_int_t)last, "segments", (json_int_t)segments, "frames", (json_int_t)frames,
            "spool_bytes", (json_int_t)spool, "raw_bytes", (json_int_t)raw, "index_bytes",
            (json_int_t)index_bytes, "annotations", (json_int_t)annotations, "tagged_flows",
            (json_int_t)tagged, "marked_flows", (json_int_t)marked, "overlay_keys",
            (json_int_t)overlay, "damaged_ranges", (json_int_t)damage);
        json_object_set_new(o, "recording_pid", pid ? json_integer(pid) : json_null());
        json_object_set_new(o, "ignored_connections", json_integer(ignored));
        const char *ro = reel_session_readonly(s);
        json_object_set_new(o, "read_only", ro ? json_string(ro) : json_null());
        json_object_set_new(o, "retention", retention_json(&ret));
        reel_config_free(cfg);
        reel_session_close(s);
        return reel_cli_json_out(o);
    }
    char t[32], t1[32], t2[32], sp[16], rw[16], ib[16];
    reel_cli_time(cus, t);
    reel_cli_size((unsigned long long)spool, sp);
    reel_cli_size((unsigned long long)raw, rw);
    reel_cli_size((unsigned long long)index_bytes, ib);
    printf("session     %s\n", reel_session_name(s));
    printf("path        %s\n", reel_session_path(s));
    printf("created     %s\n", t);
    if (reel_session_readonly(s))
        printf("access      read-only (%s)\n", reel_session_readonly(s));
    if (pid)
        printf("recording   yes, pid %ld\n", pid);
    else
        printf("recording   no\n");
    printf("flows       %lld (%lld complete, %lld error, %lld open, %lld interrupted)\n", flows,
           complete, errors, open_, interrupted);
    if (flows) {
        reel_cli_time(first, t1);
        reel_cli_time(last, t2);
        printf("started     %s .. %s\n", t1, t2);
    }
    printf("spool       %s in %lld frame%s, %lld segment%s (%s before compression", sp, frames,
           frames == 1 ? "" : "s", segments, segments == 1 ? "" : "s", rw);
    if (raw)
        printf(", ratio %.2f", (double)spool / (double)raw);
    printf(")\n");
    printf("index       %s\n", ib);
    printf("user data   %lld annotation%s, %lld tagged flow%s, %lld marked\n", annotations,
           annotations == 1 ? "" : "s", tagged, tagged == 1 ? "" : "s", marked);
    printf("overlay     %lld key%s set ('reel config %s list')\n", overlay, overlay == 1 ? "" : "s",
           reel_session_name(s));
    if (ignored)
        printf("ignored     %lld connection%s to ignore_hosts (relayed, not recorded)\n", ignored,
               ignored == 1 ? "" : "s");
    if (damage)
        printf("damage      %lld damaged or lost spool range%s ('reel verify %s' lists them)\n",
               damage, damage == 1 ? "" : "s", reel_session_name(s));
    retention_print(&ret);
    reel_config_free(cfg);
    reel_session_close(s);
    return REEL_EXIT_OK;
}
