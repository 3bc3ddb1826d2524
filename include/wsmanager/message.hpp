// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <websocketpp/frame.hpp>
#include <websocketpp/message_buffer/alloc.hpp>
#include <websocketpp/message_buffer/message.hpp>

namespace wsmanager {

namespace detail {
/// websocketpp's message type for every asio config; a prepared one is written as it is.
using frame_message =
    websocketpp::message_buffer::message<websocketpp::message_buffer::alloc::con_msg_manager>;
using frame_ptr = std::shared_ptr<frame_message>;

/// Frames a text payload once: an unmasked, final text frame (server frames are never masked,
/// so one frame serves every connection). The header is RFC 6455 section 5.2: FIN + opcode,
/// then the length in 7 bits, or 126 + 16 bits, or 127 + 64 bits, network byte order.
inline frame_ptr make_text_frame(std::string payload) {
    auto frame = std::make_shared<frame_message>(
        frame_message::con_msg_man_ptr{}, websocketpp::frame::opcode::text, 0);
    std::uint64_t const length = payload.size();
    std::string header;
    header.reserve(10);
    header.push_back(static_cast<char>(0x80 | websocketpp::frame::opcode::text));
    int length_bytes = 0;
    if (length < 126) {
        header.push_back(static_cast<char>(length));
    } else if (length <= 0xFFFF) {
        header.push_back(static_cast<char>(126));
        length_bytes = 2;
    } else {
        header.push_back(static_cast<char>(127));
        length_bytes = 8;
    }
    for (int i = length_bytes - 1; i >= 0; --i) {
        header.push_back(static_cast<char>((length >> (8 * i)) & 0xFF));
    }
    frame->set_header(header);
    frame->get_raw_payload() = std::move(payload);
    frame->set_prepared(true);
    return frame;
}

}  // namespace detail

class Message;
namespace detail {
inline frame_ptr const& frame_of(Message const& message) noexcept;
}  // namespace detail

/**
 * An immutable, already serialized and framed JSON text message.
 *
 * Copying a Message copies a pointer: broadcast, send_to_user and publish hand the same
 * frame to every connection, so a message is serialized and framed once per call, never once
 * per connection.
 *
 * @par Thread Safety
 * Distinct objects: safe. Shared objects: safe (a Message never changes).
 */
class Message {
public:
    /// Serializes a JSON value (usually an object with a "type" field).
    explicit Message(rapidjson::Value const& value);

    /**
     * Validates JSON text and keeps it byte for byte.
     * @throws std::invalid_argument when the text is not valid UTF-8 JSON.
     */
    static Message from_json(std::string_view json_text);

    /// Wraps text the caller guarantees is valid JSON (e.g. produced by a JSON writer).
    static Message from_trusted_json(std::string json_text) {
        return Message(detail::make_text_frame(std::move(json_text)));
    }

    /// The JSON text, as sent.
    std::string_view text() const noexcept { return frame_->get_payload(); }
    std::size_t size() const noexcept { return frame_->get_payload().size(); }

private:
    friend detail::frame_ptr const& detail::frame_of(Message const& message) noexcept;

    explicit Message(detail::frame_ptr frame) : frame_(std::move(frame)) {}
    detail::frame_ptr frame_;
};

namespace detail {
/// The prepared frame behind a Message, for the session that writes it.
inline frame_ptr const& frame_of(Message const& message) noexcept { return message.frame_; }
}  // namespace detail

}  // namespace wsmanager

#include <wsmanager/impl/message.hpp>
