// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <tuple>
#include <utility>

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/execution/outstanding_work.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/prefer.hpp>

namespace wsmanager::detail {

/**
 * A completion handler held while its operation is pending.
 *
 * It keeps the handler's executor busy (outstanding work), so a host io_context does not
 * run out of work while a coroutine awaits an answer, and it completes by posting to that
 * executor: never inline from the initiating function, and never on the manager's strand.
 */
template <class Handler>
class pending_completion {
public:
    using executor_type = asio::associated_executor_t<Handler, asio::io_context::executor_type>;

    pending_completion(Handler handler, asio::io_context::executor_type const& fallback)
        : work_(asio::prefer(asio::get_associated_executor(handler, fallback),
                             asio::execution::outstanding_work.tracked)),
          handler_(std::move(handler)) {}

    Handler& handler() noexcept { return handler_; }

    template <class... Args>
    void complete(Args&&... args) && {
        auto executor = std::move(work_);
        asio::post(executor, [handler = std::move(handler_),
                              args = std::make_tuple(std::forward<Args>(args)...)]() mutable {
            // The slot is cleared here, on the handler's executor, where the canceller emits
            // too: a slot must not be cleared while its signal may be emitted.
            asio::get_associated_cancellation_slot(handler).clear();
            std::apply(std::move(handler), std::move(args));
        });
    }

private:
    using work_executor = std::decay_t<decltype(asio::prefer(
        std::declval<executor_type>(), asio::execution::outstanding_work.tracked))>;
    work_executor work_;
    Handler handler_;
};

/// The cancellation types an operation honours. `total` promises no side effects, so an
/// operation that has already sent something to a client honours terminal and partial only.
inline constexpr asio::cancellation_type any_cancellation =
    asio::cancellation_type::terminal | asio::cancellation_type::partial |
    asio::cancellation_type::total;
inline constexpr asio::cancellation_type cancellation_with_side_effects =
    asio::cancellation_type::terminal | asio::cancellation_type::partial;

/// Connects a handler's cancellation slot (if any) to `cancel`, for the `honoured` types:
/// each ends the operation at once; the others are ignored.
template <class Handler, class Cancel>
void install_canceller(Handler& handler, Cancel cancel,
                       asio::cancellation_type honoured = any_cancellation) {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (!slot.is_connected()) return;
    slot.assign([cancel = std::move(cancel), honoured](asio::cancellation_type type) {
        if ((type & honoured) != asio::cancellation_type::none) cancel();
    });
}

/// A timeout or interval as whole milliseconds (rounded up), or 0 when it is zero,
/// negative, not a number, or too large to add to the steady clock: the operations answer
/// 0 with `asio::error::invalid_argument`, never with an instant decision.
template <class Rep, class Period>
std::chrono::milliseconds checked_duration(std::chrono::duration<Rep, Period> duration) {
    using milliseconds = std::chrono::duration<long double, std::milli>;
    if (!(duration > std::chrono::duration<Rep, Period>::zero())) return {};
    auto const wanted = std::chrono::duration_cast<milliseconds>(duration).count();
    auto const room = std::chrono::duration_cast<milliseconds>(
                          std::chrono::steady_clock::time_point::max() -
                          std::chrono::steady_clock::now())
                          .count();
    // A margin for the clock to move on before the deadline is computed.
    if (!(wanted < room / 2)) return {};
    return std::chrono::milliseconds(
        static_cast<std::chrono::milliseconds::rep>(std::ceil(wanted)));
}

/// A pending_completion as a copyable std::function, for storing in containers.
template <class Signature, class Completion>
std::function<Signature> share_completion(Completion completion) {
    auto shared = std::make_shared<Completion>(std::move(completion));
    return [shared](auto&&... args) {
        std::move(*shared).complete(std::forward<decltype(args)>(args)...);
    };
}

}  // namespace wsmanager::detail
