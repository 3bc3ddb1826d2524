// SPDX-License-Identifier: BSL-1.0
#pragma once

// The public vocabulary of the wire protocol wsmanager.v1: its subprotocol name, the codes of
// `error` frames (which a host action may answer with, see ActionContext::reply_error), the
// close codes the server sends, and the topic that hears about one task. How frames are
// written and read is internal (detail/protocol_codec.hpp); docs/protocol.md is the reference.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace wsmanager::protocol {

/// The subprotocol the server selects when a client offers it.
inline constexpr std::string_view subprotocol = "wsmanager.v1";

/// Error codes of `error` frames.
enum class ErrorCode { invalid_json, unknown_action, bad_request, unknown_callback, forbidden,
                       rate_limited, internal, unavailable };

inline constexpr std::size_t error_code_count = 8;
static_assert(static_cast<std::size_t>(ErrorCode::unavailable) + 1 == error_code_count);

constexpr std::string_view to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::invalid_json: return "invalid_json";
        case ErrorCode::unknown_action: return "unknown_action";
        case ErrorCode::bad_request: return "bad_request";
        case ErrorCode::unknown_callback: return "unknown_callback";
        case ErrorCode::forbidden: return "forbidden";
        case ErrorCode::rate_limited: return "rate_limited";
        case ErrorCode::internal: return "internal";
        case ErrorCode::unavailable: return "unavailable";  // cluster: try again
    }
    return "internal";
}

/// Close codes the server sends (RFC 6455 section 7.4.1).
namespace close_code {
inline constexpr std::uint16_t going_away = 1001;        ///< stop_server
inline constexpr std::uint16_t unsupported_data = 1003;  ///< a binary frame
inline constexpr std::uint16_t policy_violation = 1008;  ///< a client that does not read
inline constexpr std::uint16_t internal_error = 1011;    ///< keepalive ping unanswered
inline constexpr std::uint16_t try_again_later = 1013;   ///< over max_connections
}  // namespace close_code

/// The longest topic name a client may subscribe to, in bytes.
inline constexpr std::size_t max_topic_length = 256;

/// The topic whose subscribers hear about one task (`task_cancelled`).
inline std::string task_topic(std::string_view task_id) {
    return "task:" + std::string(task_id);
}

}  // namespace wsmanager::protocol
