// SPDX-License-Identifier: BSL-1.0
// detail/rate_limiter.hpp: a token bucket driven by explicit time points (simulated time).

#include <chrono>

#include <catch2/catch.hpp>

#include <wsmanager/detail/rate_limiter.hpp>

namespace limiter_test {

using namespace std::chrono_literals;
using wsmanager::detail::rate_limiter;
using clock_type = rate_limiter::clock;

/// How many frames pass at `now` before the first refusal (at most `limit`).
int passing(rate_limiter& limiter, clock_type::time_point now, int limit = 10000) {
    int passed = 0;
    while (passed < limit && limiter.try_take(now)) ++passed;
    return passed;
}

TEST_CASE("rate_limiter: 0 disables the limit", "[rate_limiter]") {
    rate_limiter limiter(0);
    auto const t0 = clock_type::time_point{} + 1000s;
    CHECK(passing(limiter, t0, 5000) == 5000);
    CHECK(limiter.try_take());
}

TEST_CASE("rate_limiter: a burst of twice the rate, then refusals", "[rate_limiter]") {
    auto const rate = GENERATE(1, 4, 100);
    rate_limiter limiter(static_cast<std::size_t>(rate));
    auto const t0 = clock_type::time_point{} + 1000s;
    CHECK(passing(limiter, t0) == 2 * rate);
    CHECK_FALSE(limiter.try_take(t0));
    CHECK_FALSE(limiter.try_take(t0));  // refusals take nothing back
}

TEST_CASE("rate_limiter: refills at the rate, up to the burst", "[rate_limiter]") {
    rate_limiter limiter(4);  // 4 per second: one token every 250 ms
    auto const t0 = clock_type::time_point{} + 1000s;
    REQUIRE(passing(limiter, t0) == 8);

    CHECK_FALSE(limiter.try_take(t0 + 125ms));  // half a token
    CHECK(limiter.try_take(t0 + 250ms));        // the halves add up to one
    CHECK_FALSE(limiter.try_take(t0 + 250ms));

    CHECK(passing(limiter, t0 + 1250ms) == 4);  // one second: four tokens

    // A long pause refills to the burst, not beyond.
    CHECK(passing(limiter, t0 + 1h) == 8);

    // Steady traffic at the rate always passes.
    auto now = t0 + 1h;
    for (int i = 1; i <= 40; ++i) {
        INFO("frame " << i);
        CHECK(limiter.try_take(now + i * 250ms));
    }
    CHECK_FALSE(limiter.try_take(now + 40 * 250ms));  // and one more at once does not
}

TEST_CASE("rate_limiter: the bucket is full at the first frame, whenever it comes",
          "[rate_limiter]") {
    rate_limiter limiter(2);
    auto const late = clock_type::time_point{} + 50000h;
    CHECK(passing(limiter, late) == 4);
    CHECK_FALSE(limiter.try_take(late + 100ms));
    CHECK(limiter.try_take(late + 600ms));  // 0.2 + 1.0 tokens
}

TEST_CASE("rate_limiter: the default time point is now", "[rate_limiter]") {
    rate_limiter limiter(1);
    CHECK(limiter.try_take());
    CHECK(limiter.try_take());
    // A third within the same second would need half a second to have passed between calls.
    CHECK_FALSE(limiter.try_take());
}

}  // namespace limiter_test
