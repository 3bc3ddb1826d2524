// SPDX-License-Identifier: BSL-1.0
#pragma once

// A user's `cancel` of a task: who may cancel (not an anonymous connection, not someone
// else's task as far as the pending confirmations and heartbeats show), the host's verdict
// (on_cancel; without one, only a task with the user's own pending confirmations or
// heartbeats), and what a cancel does: the task's confirmations end (reason `cancelled`),
// its heartbeats stop (error::task_cancelled), and `task_cancelled` reaches the user's
// connections and the subscribers of `task:<id>`, each connection once.
//
// Manager strand only.

#include <exception>
#include <functional>
#include <string>
#include <utility>

#include <wsmanager/detail/client_request.hpp>
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

    void request(client_request const& request, codec::CancelAsk const& ask) {
        auto const& sender = *request.sender;
        if (sender.anonymous()) {
            request.reject(protocol::ErrorCode::forbidden,
                           "Anonymous connections cannot cancel tasks");
            return;
        }
        if ((ask.user_id && *ask.user_id != sender.user_id()) ||
            confirmations_.task_has_other_user(ask.task_id, sender.user_id()) ||
            heartbeats_.task_has_other_user(ask.task_id, sender.user_id())) {
            request.reject(protocol::ErrorCode::forbidden, "Cannot cancel another user's task");
            return;
        }
        log_.write(LogLevel::info, "task_cancel_requested", "task " + ask.task_id, sender.id(),
                   sender.user_id());
        // The host knows its tasks: its yes or no decides. Without a handler, only a task the
        // manager knows to be this user's (a pending confirmation or heartbeat) is cancelled:
        // anything else would tell a task's subscribers a cancel that nobody checked.
        bool const accepted =
            handler_ ? host_agrees(CancelRequest{sender.user_id(), ask.task_id, sender.id()})
                     : confirmations_.task_has_user(ask.task_id, sender.user_id()) ||
                           heartbeats_.task_has_user(ask.task_id, sender.user_id());
        if (!accepted) {
            request.reject(protocol::ErrorCode::forbidden, "Cancel refused by the server");
            return;
        }
        cancel(sender.user_id(), ask.task_id);
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

    void cancel(std::string const& user_id, std::string const& task_id) {
        confirmations_.cancel_task(task_id);
        heartbeats_.cancel_task(task_id);
        delivery_.deliver(delivery_target::user_and_topic(user_id, protocol::task_topic(task_id)),
                          codec::task_cancelled_frame(user_id, task_id));
    }

    confirmation_service& confirmations_;
    heartbeat_service& heartbeats_;
    delivery& delivery_;
    host_hooks& hooks_;
    logger const& log_;
    handler_type handler_;
};

}  // namespace wsmanager::detail
