// SPDX-License-Identifier: BSL-1.0
#pragma once

// Every client text frame, in one place: decoded through the codec
// (detail/protocol_codec.hpp), then answered (`ping`, errors), handed to the service that
// owns the action (subscribe, confirm, cancel, ack: the client_actions interface, which the
// composition root implements), or to the host's on_action handler. A bad frame gets an
// `error` frame and never closes the connection.
//
// Manager strand only. The session has already applied what belongs to the connection
// (binary frames, the size limit, the frame rate limit) on its own strand.

#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>

#include <wsmanager/action.hpp>
#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/log.hpp>

namespace wsmanager::detail {

/// The built-in actions that need the manager's state; each refuses through the request.
class client_actions {
public:
    virtual ~client_actions() = default;
    virtual void subscribe(client_request const& request, codec::SubscriptionAsk ask) = 0;
    virtual void confirm(client_request const& request, codec::ConfirmAnswer answer) = 0;
    virtual void cancel(client_request const& request, codec::CancelAsk const& ask) = 0;
    virtual void acknowledge(client_request const& request, std::string const& message_id) = 0;
};

class frame_router {
public:
    frame_router(client_actions& actions, host_hooks& hooks, manager_counters& counters,
                 logger const& log)
        : actions_(actions), hooks_(hooks), counters_(counters), log_(log) {}

    /// Registers a host action; an empty handler removes it. Built-in names are never
    /// routed here (they are answered first).
    void set_host_action(std::string name, ActionHandler handler) {
        if (handler) {
            host_actions_[std::move(name)] = std::move(handler);
        } else {
            host_actions_.erase(name);
        }
    }

    /// Routes one client text frame from `sender`.
    void route(session_ptr const& sender, std::string_view payload) {
        auto frame = std::make_shared<codec::ClientFrame>(payload.size());
        if (auto problem = codec::parse_client_frame(payload, *frame)) {
            reject(*sender, problem->code, problem->message, frame->request_id);
            return;
        }
        client_request request{sender, frame,
                               [this, sender, frame](protocol::ErrorCode code,
                                                     std::string_view message) {
                                   reject(*sender, code, message, frame->request_id);
                               }};
        std::visit(
            [&](auto&& ask) {
                using ask_type = std::decay_t<decltype(ask)>;
                if constexpr (std::is_same_v<ask_type, codec::FrameProblem>) {
                    request.reject(ask.code, ask.message);
                } else if constexpr (std::is_same_v<ask_type, codec::PingAsk>) {
                    sender->send(codec::pong_frame(ask.timestamp, frame->request_id));
                } else if constexpr (std::is_same_v<ask_type, codec::SubscriptionAsk>) {
                    actions_.subscribe(request, std::move(ask));
                } else if constexpr (std::is_same_v<ask_type, codec::ConfirmAnswer>) {
                    actions_.confirm(request, std::move(ask));
                } else if constexpr (std::is_same_v<ask_type, codec::CancelAsk>) {
                    actions_.cancel(request, ask);
                } else if constexpr (std::is_same_v<ask_type, codec::AckAsk>) {
                    actions_.acknowledge(request, ask.message_id);
                } else {
                    static_assert(std::is_same_v<ask_type, codec::HostActionAsk>);
                    host_action(request, frame, ask.name);
                }
            },
            codec::decode_action(*frame));
    }

private:
    void host_action(client_request const& request,
                     std::shared_ptr<codec::ClientFrame> const& frame, std::string_view name) {
        auto it = host_actions_.find(std::string(name));
        if (it == host_actions_.end()) {
            request.reject(protocol::ErrorCode::unknown_action,
                           "Unknown action: " + std::string(name));
            return;
        }
        auto const& sender = request.sender;
        ActionContext context(sender->id(), sender->user_id(), name, frame->request_id, frame,
                              [weak = std::weak_ptr<session>(sender)](Message const& reply) {
                                  if (auto session = weak.lock()) session->send(reply);
                              });
        try {
            hooks_.call([&] { it->second(context, frame->document); });
        } catch (std::exception const& e) {
            log_.write(LogLevel::error, "action_handler_failed",
                       std::string(name) + ": " + e.what(), sender->id(), sender->user_id());
            request.reject(protocol::ErrorCode::internal, "Internal error");
        } catch (...) {
            log_.write(LogLevel::error, "action_handler_failed",
                       std::string(name) + ": an exception not derived from std::exception",
                       sender->id(), sender->user_id());
            request.reject(protocol::ErrorCode::internal, "Internal error");
        }
    }

    void reject(session& sender, protocol::ErrorCode code, std::string_view message,
                rapidjson::Value const* request_id) {
        reject_frame(sender, counters_, log_, code, message, request_id);
    }

    client_actions& actions_;
    host_hooks& hooks_;
    manager_counters& counters_;
    logger const& log_;
    std::unordered_map<std::string, ActionHandler> host_actions_;
};

}  // namespace wsmanager::detail
