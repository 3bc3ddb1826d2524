// SPDX-License-Identifier: BSL-1.0
#pragma once

// A user's `cancel` of a task: who may cancel (not an anonymous connection, not someone
// else's task as far as the pending confirmations and heartbeats show), the host's verdict
// (on_cancel; without one, only a task with the user's own pending confirmations or
// heartbeats), and what a cancel does: the task's confirmations end (reason `cancelled`),
// its heartbeats stop (error::task_cancelled), and `task_cancelled` reaches the user's
// connections and the subscribers of `task:<id>`, each connection once. In a cluster every
// node gives its verdict (the node that runs the task has the handler that knows it) and
// every node applies an accepted cancel to its own part.
//
// Manager strand only.

#include <exception>
#include <functional>
#include <string>
#include <utility>

#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/cluster_link.hpp>
#include <wsmanager/detail/confirmation_service.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/heartbeat_service.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager::detail {

class task_cancellation {
public:
    using handler_type = std::function<bool(CancelRequest const&)>;

    task_cancellation(confirmation_service& confirmations, heartbeat_service& heartbeats,
                      delivery& delivery, host_hooks& hooks, logger const& log)
        : confirmations_(confirmations),
          heartbeats_(heartbeats),
          delivery_(delivery),
          hooks_(hooks),
          log_(log) {}

    /// The host's on_cancel: true accepts, false (or an exception) refuses.
    void set_handler(handler_type handler) { handler_ = std::move(handler); }

    /// Joins a cluster: every node's verdict counts (before start_server).
    void set_cluster(cluster_link* link) { link_ = link; }

    void request(client_request const& request, codec::CancelAsk const& ask) {
        auto const& sender = *request.sender;
        if (sender.anonymous()) {
            request.reject(protocol::ErrorCode::forbidden,
                           "Anonymous connections cannot cancel tasks");
            return;
        }
        if (ask.user_id && *ask.user_id != sender.user_id()) {
            request.reject(protocol::ErrorCode::forbidden, "Cannot cancel another user's task");
            return;
        }
        log_.write(LogLevel::info, "task_cancel_requested", "task " + ask.task_id, sender.id(),
                   sender.user_id());
        CancelRequest cancel_request{sender.user_id(), ask.task_id, sender.id()};
        auto decide = [this, request, cancel_request](cancel_verdict verdict) {
            switch (verdict) {
                case cancel_verdict::accepted:
                    if (link_ != nullptr) {
                        link_->publish_cancel(cancel_request.user_id, cancel_request.task_id);
                    }
                    apply(cancel_request.user_id, cancel_request.task_id);
                    return;
                case cancel_verdict::forbidden:
                    request.reject(protocol::ErrorCode::forbidden,
                                   "Cannot cancel another user's task");
                    return;
                case cancel_verdict::unavailable:
                    request.reject(protocol::ErrorCode::unavailable,
                                   "The cluster cannot be asked now; try again");
                    return;
                case cancel_verdict::refused:
                case cancel_verdict::no_opinion:
                    // The host knows tasks the manager does not: its "no" stops everything
                    // here, and so does silence about a task nobody knows.
                    request.reject(protocol::ErrorCode::forbidden, "Cancel refused by the server");
                    return;
            }
        };
        if (link_ != nullptr) {
            link_->request_cancel(cancel_request, std::move(decide));
        } else {
            decide(evaluate(cancel_request));
        }
    }

    /**
     * This node's verdict: another user's pending work here forbids it; else the host's
     * handler decides; without a handler, the user's own pending confirmations or heartbeats
     * of the task accept it (anything else would tell a task's subscribers a cancel that
     * nobody checked).
     */
    cancel_verdict evaluate(CancelRequest const& cancel) const {
        if (confirmations_.task_has_other_user(cancel.task_id, cancel.user_id) ||
            heartbeats_.task_has_other_user(cancel.task_id, cancel.user_id)) {
            return cancel_verdict::forbidden;
        }
        if (handler_) {
            return host_agrees(cancel) ? cancel_verdict::accepted : cancel_verdict::refused;
        }
        bool const own = confirmations_.task_has_user(cancel.task_id, cancel.user_id) ||
                         heartbeats_.task_has_user(cancel.task_id, cancel.user_id);
        return own ? cancel_verdict::accepted : cancel_verdict::no_opinion;
    }

    /// An accepted cancel, on this node: the task's confirmations end, its heartbeats stop,
    /// and `task_cancelled` reaches this node's connections of the user and of the topic.
    void apply(std::string const& user_id, std::string const& task_id) {
        confirmations_.cancel_task(task_id);
        heartbeats_.cancel_task(task_id);
        delivery_.deliver_local(
            delivery_target::user_and_topic(user_id, protocol::task_topic(task_id)),
            codec::task_cancelled_frame(user_id, task_id));
    }

private:
    bool host_agrees(CancelRequest const& cancel) const {
        try {
            bool yes = false;
            hooks_.call([&] { yes = handler_(cancel); });
            return yes;
        } catch (std::exception const& e) {
            log_.write(LogLevel::error, "authorizer_failed", e.what(), cancel.connection_id,
                       cancel.user_id);
            return false;
        } catch (...) {
            log_.write(LogLevel::error, "authorizer_failed", "unknown exception",
                       cancel.connection_id, cancel.user_id);
            return false;
        }
    }

    confirmation_service& confirmations_;
    heartbeat_service& heartbeats_;
    delivery& delivery_;
    host_hooks& hooks_;
    logger const& log_;
    handler_type handler_;
    cluster_link* link_ = nullptr;
};

}  // namespace wsmanager::detail
