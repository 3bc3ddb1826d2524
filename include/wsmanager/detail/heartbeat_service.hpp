// SPDX-License-Identifier: BSL-1.0
#pragma once

// send_heartbeat: a `heartbeat` frame to a user's connections for a task, one at once and one
// every interval, until the host cancels the operation, the user cancels the task, or the
// server stops. Entries live in pending_operations (by id, user and task), like
// confirmations and acks, and end through it exactly once.
//
// Manager strand only: every member, every timer.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include <asio/error.hpp>
#include <asio/steady_timer.hpp>

#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/pending_operations.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::detail {

/// One send_heartbeat, beating until it ends.
struct pending_heartbeat {
    std::string id;
    std::string user_id;
    std::string task_id;
    std::chrono::milliseconds interval{};
    std::unique_ptr<asio::steady_timer> timer;
    std::function<void(std::error_code)> complete;
};

class heartbeat_service {
public:
    using executor_type = asio::steady_timer::executor_type;

    /// `lifetime` is the owner's: timer handlers do nothing once it has expired.
    heartbeat_service(executor_type strand, Options const& options, delivery& delivery,
                      manager_counters& counters, std::weak_ptr<void const> const& lifetime)
        : strand_(std::move(strand)),
          options_(options),
          delivery_(delivery),
          counters_(counters),
          lifetime_(lifetime) {}

    /// Starts beating, or completes at once with `asio::error::invalid_argument` (empty or
    /// non-UTF-8 ids, an interval <= 0).
    void start(pending_heartbeat entry) {
        if (entry.interval.count() <= 0 || entry.user_id.empty() || entry.task_id.empty() ||
            !is_valid_utf8(entry.user_id) || !is_valid_utf8(entry.task_id)) {
            entry.complete(asio::error::invalid_argument);
            return;
        }
        if (!pending_.has_room_for(entry.user_id, options_.max_pending_confirmations_per_user,
                                   options_.max_pending_confirmations)) {
            entry.complete(error::too_many_pending);
            return;
        }
        entry.timer = std::make_unique<asio::steady_timer>(strand_);
        auto const id = entry.id;
        pending_.insert(std::move(entry));
        update_gauges();
        tick(id);
    }

    /// Ends one heartbeat with `ec` (per-operation cancellation: operation_aborted).
    void stop(std::string const& id, std::error_code ec) {
        pending_.complete_once(id, [&](pending_heartbeat entry) { finish(entry, ec); });
    }

    /// The task was cancelled: its heartbeats end with error::task_cancelled.
    void cancel_task(std::string const& task_id) {
        pending_.complete_each(pending_.ids_of_task(task_id), [this](pending_heartbeat entry) {
            finish(entry, error::task_cancelled);
        });
    }

    /// stop_server: every heartbeat ends with `ec`.
    void end_all(std::error_code ec) {
        pending_.complete_each(pending_.ids(),
                               [this, ec](pending_heartbeat entry) { finish(entry, ec); });
    }

    bool task_has_other_user(std::string const& task_id, std::string const& user_id) const {
        return pending_.task_has_other_user(task_id, user_id);
    }

    /// A pending entry of the task is `user_id`'s: the manager knows the task as theirs.
    bool task_has_user(std::string const& task_id, std::string const& user_id) const {
        return pending_.task_has_user(task_id, user_id);
    }

    std::size_t size() const noexcept { return pending_.size(); }
    pending_operations<pending_heartbeat> const& entries() const noexcept { return pending_; }

private:
    /// After take(): the gauges first, so whoever the completion wakes sees them.
    void finish(pending_heartbeat& entry, std::error_code ec) {
        update_gauges();
        entry.timer->cancel();
        entry.complete(ec);
    }

    void tick(std::string const& id) {
        auto* entry = pending_.find(id);
        if (entry == nullptr) return;
        delivery_.deliver(delivery_target::user(entry->user_id),
                          codec::heartbeat_frame(entry->user_id, entry->task_id));
        manager_counters::add(counters_.heartbeats_sent);
        entry->timer->expires_after(entry->interval);
        entry->timer->async_wait([this, lifetime = lifetime_, id](std::error_code ec) {
            auto const alive = lifetime.lock();
            if (ec || !alive) return;
            tick(id);
        });
    }

    void update_gauges() {
        counters_.running_heartbeats.store(pending_.size(), std::memory_order_relaxed);
    }

    executor_type strand_;
    Options const& options_;
    delivery& delivery_;
    manager_counters& counters_;
    std::weak_ptr<void const> const& lifetime_;  ///< the owner's, set once it is shared
    pending_operations<pending_heartbeat> pending_;
};

}  // namespace wsmanager::detail
