// SPDX-License-Identifier: BSL-1.0
#pragma once

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

/// Connects a handler's cancellation slot (if any) to `cancel`, for terminal, partial and
/// total cancellation alike: each ends the operation at once.
template <class Handler, class Cancel>
void install_canceller(Handler& handler, Cancel cancel) {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (!slot.is_connected()) return;
    slot.assign([cancel = std::move(cancel)](asio::cancellation_type type) {
        if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                     asio::cancellation_type::total)) != asio::cancellation_type::none) {
            cancel();
        }
    });
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
