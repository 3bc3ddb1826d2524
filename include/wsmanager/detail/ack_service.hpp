// SPDX-License-Identifier: BSL-1.0
#pragma once

// send_with_ack: a host message with `message_id` and `requires_ack: true` to a user's
// connections, completed by the first `ack` of that id from one of them, or by its timeout,
// its per-operation cancellation or shutdown. Entries live in pending_operations (by message
// id and user) and end through it exactly once.
//
// Manager strand only: every member, every timer.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include <asio/steady_timer.hpp>

#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/cluster_link.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/pending_operations.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::detail {

/// One send_with_ack waiting for a client's ack.
struct pending_ack {
    std::string id;  ///< the message id
    std::string user_id;
    std::string task_id;  ///< none: acks are not indexed by task
    std::unique_ptr<asio::steady_timer> timer;
    std::function<void(std::error_code, bool)> complete;
};

class ack_service {
public:
    using executor_type = asio::steady_timer::executor_type;
    using completion = std::function<void(std::error_code, bool)>;

    /// `lifetime` is the owner's: timer handlers do nothing once it has expired.
    ack_service(executor_type strand, Options const& options, delivery& delivery,
                manager_counters& counters, std::weak_ptr<void const> const& lifetime)
        : strand_(std::move(strand)),
          options_(options),
          delivery_(delivery),
          counters_(counters),
          lifetime_(lifetime) {}

    /// Sends `message` (with `message_id` added) to the user's connections and waits for an
    /// ack; completes at once with false when the user has no connection, and with
    /// error::invalid_message when the message is not a JSON object.
    void start(std::string message_id, std::string user_id, Message const& message,
               std::chrono::milliseconds timeout, completion complete) {
        if (!pending_.has_room_for(user_id, options_.max_pending_confirmations_per_user,
                                   options_.max_pending_confirmations)) {
            complete(error::too_many_pending, false);
            return;
        }
        auto framed = codec::with_ack_request(message, message_id);
        if (!framed) {
            complete(error::invalid_message, false);
            return;
        }
        if (link_ != nullptr) {
            // The user may be on any node: the ack may come from any of them.
            delivery_.deliver(delivery_target::user(user_id), *framed);
        } else if (delivery_.deliver_local(delivery_target::user(user_id), *framed) == 0) {
            complete(std::error_code{}, false);  // nobody to ack it
            return;
        }
        auto& entry = pending_.insert(pending_ack{std::move(message_id), std::move(user_id), {},
                                                  std::make_unique<asio::steady_timer>(strand_, timeout),
                                                  std::move(complete)});
        update_gauges();
        entry.timer->async_wait([this, lifetime = lifetime_, id = entry.id](std::error_code ec) {
            auto const alive = lifetime.lock();
            if (ec || !alive) return;
            stop(id, false, {});
        });
    }

    /// A client's `ack`: only the user the message was sent to may acknowledge it.
    void acknowledge(client_request const& request, std::string const& message_id) {
        auto const* entry = pending_.find(message_id);
        if (entry == nullptr) {
            if (link_ != nullptr && !request.sender->anonymous()) {
                // Perhaps another node's: it checks the user and completes (no answer here).
                link_->forward_ack(request.sender->user_id(), message_id);
                return;
            }
            request.reject(protocol::ErrorCode::unknown_callback,
                           "Unknown or already acknowledged message_id");
            return;
        }
        if (entry->user_id != request.sender->user_id()) {
            request.reject(protocol::ErrorCode::forbidden, "This message was sent to another user");
            return;
        }
        manager_counters::add(counters_.acks_received);
        stop(message_id, true, {});
    }

    /// An ack that arrived at another node, from `user_id`.
    void acknowledge_from_peer(std::string const& user_id, std::string const& message_id) {
        auto const* entry = pending_.find(message_id);
        if (entry == nullptr || entry->user_id != user_id) return;
        manager_counters::add(counters_.acks_received);
        stop(message_id, true, {});
    }

    /// Joins a cluster (before start_server).
    void set_cluster(cluster_link* link) { link_ = link; }

    /// Ends one: acked or not, with `ec` (operation_aborted, shutting_down, or success).
    void stop(std::string const& id, bool acked, std::error_code ec) {
        pending_.complete_once(id, [&](pending_ack entry) { finish(entry, acked, ec); });
    }

    /// stop_server: every pending ack ends unacknowledged with `ec`.
    void end_all(std::error_code ec) {
        pending_.complete_each(pending_.ids(),
                               [this, ec](pending_ack entry) { finish(entry, false, ec); });
    }

    std::size_t size() const noexcept { return pending_.size(); }
    pending_operations<pending_ack> const& entries() const noexcept { return pending_; }

private:
    /// After take(): the gauges first, so whoever the completion wakes sees them.
    void finish(pending_ack& entry, bool acked, std::error_code ec) {
        update_gauges();
        entry.timer->cancel();
        entry.complete(ec, acked);
    }

    void update_gauges() {
        counters_.pending_acks.store(pending_.size(), std::memory_order_relaxed);
        counters_.refresh_pending_callbacks();
    }

    executor_type strand_;
    Options const& options_;
    delivery& delivery_;
    manager_counters& counters_;
    std::weak_ptr<void const> const& lifetime_;  ///< the owner's, set once it is shared
    cluster_link* link_ = nullptr;
    pending_operations<pending_ack> pending_;
};

}  // namespace wsmanager::detail
