// SPDX-License-Identifier: BSL-1.0
#pragma once

// A token bucket for one connection's client frames (Options::max_frames_per_second): a
// steady rate with bursts of twice that, full at the first frame.
//
// Not thread-safe: one per connection, used on that connection's strand.

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace wsmanager::detail {

class rate_limiter {
public:
    using clock = std::chrono::steady_clock;

    /// `per_second` 0 disables the limit.
    explicit rate_limiter(std::size_t per_second) noexcept
        : rate_(static_cast<double>(per_second)) {}

    /// True when one more frame may be processed at `now`.
    bool try_take(clock::time_point now = clock::now()) noexcept {
        if (rate_ <= 0) return true;
        if (tokens_ < 0) {
            tokens_ = 2 * rate_;  // first frame: a full bucket
        } else {
            tokens_ = std::min(
                2 * rate_,
                tokens_ + rate_ * std::chrono::duration<double>(now - refilled_).count());
        }
        refilled_ = now;
        if (tokens_ < 1) return false;
        tokens_ -= 1;
        return true;
    }

private:
    double rate_;
    double tokens_ = -1;  ///< -1: no frame yet
    clock::time_point refilled_{};
};

}  // namespace wsmanager::detail
