// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <rapidjson/document.h>

#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager {

/**
 * The sender of a host-defined client action, handed to an ActionHandler.
 *
 * It owns what it refers to (it shares the frame it came with), so it may be copied and kept
 * after the handler returns: a reply() made later, from any thread, still reaches the
 * sending connection while it is open, and is dropped once it has closed.
 *
 * @par Thread Safety
 * Distinct objects: safe. Shared objects: safe (it never changes; reply() is thread-safe).
 */
class ActionContext {
public:
    /// Made by the manager for each frame of a host action.
    ActionContext(std::uint64_t connection_id, std::string user_id, std::string_view action,
                  rapidjson::Value const* request_id, std::shared_ptr<void const> frame,
                  std::function<void(Message const&)> send)
        : connection_id_(connection_id),
          user_id_(std::move(user_id)),
          action_(action),
          request_id_(request_id),
          frame_(std::move(frame)),
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
        send_(detail::codec::error_frame(code, message, request_id_));
    }

private:
    std::uint64_t connection_id_;
    std::string user_id_;
    std::string_view action_;             ///< into frame_
    rapidjson::Value const* request_id_;  ///< into frame_
    std::shared_ptr<void const> frame_;   ///< keeps action_ and request_id_ valid
    std::function<void(Message const&)> send_;
};

/**
 * Handles a host-defined client action (as Socket.IO's `socket.on(event)`): gets the sender
 * and the whole frame (a JSON object with `action`). Runs on the manager strand: keep it
 * short and never block; start longer work elsewhere (copy the context to reply from there).
 * An exception is logged and answered with an `internal` error.
 */
using ActionHandler = std::function<void(ActionContext const&, rapidjson::Value const& frame)>;

}  // namespace wsmanager
