// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include <rapidjson/document.h>

#include <wsmanager/message.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager {

/**
 * The sender of a host-defined client action, handed to an ActionHandler.
 *
 * Valid only during the handler call; copy what you need (connection_id, user_id) to use
 * later, and send later with send_to_user or publish.
 */
class ActionContext {
public:
    ActionContext(std::uint64_t connection_id, std::string const& user_id, std::string_view action,
                  rapidjson::Value const* request_id, std::function<void(Message const&)> send)
        : connection_id_(connection_id),
          user_id_(user_id),
          action_(action),
          request_id_(request_id),
          send_(std::move(send)) {}

    std::uint64_t connection_id() const noexcept { return connection_id_; }
    /// The sender's user id; empty for an anonymous connection.
    std::string const& user_id() const noexcept { return user_id_; }
    std::string_view action() const noexcept { return action_; }
    /// The frame's request_id, or nullptr.
    rapidjson::Value const* request_id() const noexcept { return request_id_; }

    /// Sends a frame to the sending connection only.
    void reply(Message const& message) const { send_(message); }

    /// Sends an `error` frame (with the request_id echoed) to the sending connection.
    void reply_error(protocol::ErrorCode code, std::string_view message) const {
        send_(protocol::error_frame(code, message, request_id_));
    }

private:
    std::uint64_t connection_id_;
    std::string const& user_id_;
    std::string_view action_;
    rapidjson::Value const* request_id_;
    std::function<void(Message const&)> send_;
};

/**
 * Handles a host-defined client action (as Socket.IO's `socket.on(event)`): gets the sender
 * and the whole frame (a JSON object with `action`). Runs on the manager strand: keep it
 * short and never block; start longer work elsewhere. An exception is logged and answered
 * with an `internal` error.
 */
using ActionHandler = std::function<void(ActionContext const&, rapidjson::Value const& frame)>;

}  // namespace wsmanager
