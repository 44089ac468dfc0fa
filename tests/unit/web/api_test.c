/* The web API without sockets: reel__web_api answers requests against a
 * session on disk (statuses, error bodies, writes reaching the session),
 * and the query-string helpers decode what browsers send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "session/query.h"
#include "session/session.h"
#include "unit/testutil.h"
#include "web/web_int.h"

static char *home;

/* Answers method path?query with body; returns the status, *out the JSON
 * (owned, NULL if not JSON). */
static int call(const char *method, const char *target, const char *body, json_t **out,
                int read_only) {
    reel__web_ctx_t w = {.home = home, .read_only = read_only};
    char *path = reel_strdup(target);
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    reel__web_req_t rq = {.method = method,
                          .path = path,
                          .query = q ? q : "",
                          .body = (const uint8_t *)body,
                          .body_len = body ? strlen(body) : 0};
    reel__web_resp_t rs;
    memset(&rs, 0, sizeof rs);
    reel_buf_init(&rs.body, 0);
    rs.status = 200;
    reel__web_api(&w, &rq, &rs);
    json_t *j = rs.body.len ? json_loadb((const char *)rs.body.data, rs.body.len, 0, NULL) : NULL;
    if (out)
        *out = j;
    else
        json_decref(j);
    reel_buf_free(&rs.body);
    free(rs.headers);
    if (rs.file)
        fclose(rs.file);
    reel__web_sse_free(rs.sse);
    free(path);
    return rs.status;
}

static int setup(void **state) {
    (void)state;
    home = reel_test_tmpdir("webapi");
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "s1", REEL_OPEN_CREATE, &s, &err), REEL_OK);
    reel_session_close(s);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    reel_test_rm_rf(home);
    free(home);
    return 0;
}

static void test_params(void **state) {
    (void)state;
    char *v = reel__web_param("a=1&filter=~c%20404%20%26%20~d+x&b", "filter");
    assert_string_equal(v, "~c 404 & ~d x");
    free(v);
    v = reel__web_param("a=1&b", "b");
    assert_string_equal(v, "");
    free(v);
    assert_null(reel__web_param("ab=1", "a"));
    assert_null(reel__web_param("a=%00", "a")); /* a NUL is refused */
    v = reel__web_unescape("%zz%4", 5);         /* bad escapes stay as they are */
    assert_string_equal(v, "%zz%4");
    free(v);
}

static void test_sessions_and_errors(void **state) {
    (void)state;
    json_t *j = NULL;
    assert_int_equal(call("GET", "/api/sessions", NULL, &j, 0), 200);
    json_t *s0 = json_array_get(json_object_get(j, "sessions"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "name")), "s1");
    assert_int_equal(json_integer_value(json_object_get(s0, "flows")), 0);
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/nope/flows", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/..%2Fx/flows", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/s1/flows/1", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/s1/flows/-1", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=0", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=1001", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=12abc", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?order=up", NULL, NULL, 0), 400);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?limit=1000", NULL, NULL, 0), 200);
    assert_int_equal(call("POST", "/api/sessions/s1/flows", NULL, NULL, 0), 405);
    assert_int_equal(call("GET", "/api/sessions//flows", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/a/b/c/d/e/f/g/h/i/j", NULL, NULL, 0), 404);
    assert_int_equal(call("GET", "/api/sessions/s1/flows?filter=~c%20(", NULL, &j, 0), 400);
    assert_int_equal(json_integer_value(json_object_get(j, "column")), 4);
    json_decref(j);
    assert_int_equal(call("POST", "/api/sessions/s1/marks", "{", NULL, 0), 400);
    assert_int_equal(call("POST", "/api/sessions/s1/marks", "{\"ids\": [5]}", NULL, 0), 404);
    assert_int_equal(call("POST", "/api/sessions/s1/marks", "{\"ids\": [\"x\"]}", NULL, 0), 400);
    assert_int_equal(
        call("POST", "/api/sessions/s1/tags", "{\"filter\": \"\", \"tags\": []}", NULL, 0), 400);
}

static void test_config(void **state) {
    (void)state;
    json_t *j = NULL;
    assert_int_equal(call("POST", "/api/sessions/s1/config",
                          "{\"name\": \"body_limit\", \"value\": \"x\"}", &j, 0),
                     400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "body_limit"));
    json_decref(j);
    assert_int_equal(call("POST", "/api/sessions/s1/config",
                          "{\"name\": \"body_limit\", \"value\": \"1k\"}", &j, 0),
                     200);
    assert_string_equal(json_string_value(json_object_get(j, "value")), "1024");
    json_decref(j);
    assert_int_equal(call("GET", "/api/sessions/s1/config", NULL, &j, 0), 200);
    json_t *o;
    size_t i;
    int found = 0;
    json_array_foreach(json_object_get(j, "options"), i, o) {
        if (strcmp(json_string_value(json_object_get(o, "name")), "body_limit") == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "layer")), "session");
            assert_string_equal(json_string_value(json_object_get(o, "value")), "1024");
            found = 1;
        }
    }
    assert_true(found);
    json_decref(j);
    assert_int_equal(call("POST", "/api/sessions/s1/config",
                          "{\"name\": \"body_limit\", \"value\": null}", NULL, 0),
                     200);
}

static void test_delete_needs_confirmation(void **state) {
    (void)state;
    reel_session_t *s = NULL;
    reel_err_t err;
    reel_err_clear(&err);
    assert_int_equal(reel_session_open(home, "gone", REEL_OPEN_CREATE, &s, &err), REEL_OK);
    reel_session_close(s);
    assert_int_equal(call("POST", "/api/sessions/gone/delete", NULL, NULL, 0), 400);
    assert_int_equal(call("POST", "/api/sessions/gone/delete?confirm=s1", NULL, NULL, 0), 400);
    assert_int_equal(call("POST", "/api/sessions/gone/delete?confirm=gone", NULL, NULL, 0), 200);
    assert_int_equal(call("GET", "/api/sessions/gone", NULL, NULL, 0), 404);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_sessions_and_errors),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_delete_needs_confirmation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
