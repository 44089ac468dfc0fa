/* Tests for src/base/pace.c: reel_pace() yields only once every_ns have
 * passed since the last yield (or the start), and never when off. Whether
 * a yield lets a waiting thread run is the scheduler's; the latency figure
 * it is for is a benchmark (bench/run --only latency), not a test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/clock.h"
#include "base/pace.h"

static void test_off(void **state) {
    (void)state;
    reel_pace_t p;
    reel_pace_init(&p, 0);
    assert_int_equal(p.last_ns, 0);
    int64_t until = reel_mono_ns() + 3000000;
    while (reel_mono_ns() < until)
        reel_pace(&p);
    assert_int_equal(p.last_ns, 0);
}

static void test_every(void **state) {
    (void)state;
    const int64_t every = 2000000; /* 2 ms */
    reel_pace_t p;
    int64_t before = reel_mono_ns();
    reel_pace_init(&p, every);
    int64_t start = p.last_ns;
    assert_true(start >= before && start <= reel_mono_ns());
    /* before every_ns: no yield, nothing changes */
    reel_pace(&p);
    if (reel_mono_ns() - start < every)
        assert_int_equal(p.last_ns, start);
    /* work until the interval has passed: the next call yields */
    while (reel_mono_ns() - start < every)
        ;
    reel_pace(&p);
    assert_true(p.last_ns >= start + every);
    int64_t second = p.last_ns;
    /* and again only every_ns after that yield, not after the start */
    int yields = 0;
    int64_t last = second;
    int64_t until = second + 5 * every + every / 2;
    /* Past `until` only while there was no yield yet: a thread descheduled
     * for the whole window (a loaded CI machine: it happened under the
     * sanitizer run) still yields at its first call after every_ns. */
    int64_t give_up = second + 2000 * every;
    for (int64_t now; (now = reel_mono_ns()) < until || (yields == 0 && now < give_up);) {
        reel_pace(&p);
        if (p.last_ns != last) {
            assert_true(p.last_ns - last >= every); /* never more often than every_ns */
            last = p.last_ns;
            yields++;
        }
    }
    assert_true(yields >= 1 && yields <= 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_every),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
