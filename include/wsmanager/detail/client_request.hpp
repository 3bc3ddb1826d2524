// SPDX-License-Identifier: BSL-1.0
#pragma once

// A client's frame as the services see it once the frame router has decoded it: who sent
// it, the frame, and how to refuse it (an `error` frame to that connection, with its
// request_id, counted). Copyable, so a service that decides later can answer then.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager::detail {

struct client_request {
    session_ptr sender;
    std::shared_ptr<codec::ClientFrame const> frame;  ///< keeps request_id() valid
    std::function<void(protocol::ErrorCode, std::string_view message)> reject;

    /// The frame's request_id (to echo in a reply), or nullptr.
    rapidjson::Value const* request_id() const noexcept {
        return frame ? frame->request_id : nullptr;
    }
};

/// Answers a client frame with an `error` frame: counted, logged at debug. Any thread.
inline void reject_frame(session& sender, manager_counters& counters, logger const& log,
                         protocol::ErrorCode code, std::string_view message,
                         rapidjson::Value const* request_id) {
    counters.count_frame_rejected(code);
    log.write(LogLevel::debug, "frame_rejected",
              std::string(protocol::to_string(code)) + ": " + std::string(message), sender.id(),
              sender.user_id());
    sender.send(codec::error_frame(code, message, request_id));
}

}  // namespace wsmanager::detail
