// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

namespace wsmanager {

namespace detail {
class text_frame;
using frame_ptr = std::shared_ptr<text_frame const>;

/**
 * A text message framed once (RFC 6455 section 5.2): the header of an unmasked, final text
 * frame and the payload, in one buffer. Server frames are never masked, so one frame serves
 * every connection, and one gather-write entry carries a whole frame.
 */
class text_frame {
public:
    /// `compressed`: the payload is a message compressed on its own (RFC 7692), RSV1 set.
    explicit text_frame(std::string_view payload, bool compressed = false) {
        std::uint64_t const length = payload.size();
        char header[10];
        std::size_t size = 0;
        header[size++] = static_cast<char>(compressed ? 0xC1 : 0x81);  // FIN, [RSV1,] text
        int length_bytes = 0;
        if (length < 126) {
            header[size++] = static_cast<char>(length);
        } else if (length <= 0xFFFF) {
            header[size++] = static_cast<char>(126);
            length_bytes = 2;
        } else {
            header[size++] = static_cast<char>(127);
            length_bytes = 8;
        }
        for (int i = length_bytes - 1; i >= 0; --i) {
            header[size++] = static_cast<char>((length >> (8 * i)) & 0xFF);  // network order
        }
        wire_.reserve(size + payload.size());
        wire_.append(header, size).append(payload);
        header_size_ = static_cast<std::uint8_t>(size);
    }

    /// Header and payload, as they go on the wire.
    std::string_view wire() const noexcept { return wire_; }
    std::string_view header() const noexcept { return std::string_view(wire_).substr(0, header_size_); }
    std::string_view payload() const noexcept { return std::string_view(wire_).substr(header_size_); }

    /**
     * The same message compressed for permessage-deflate with no context takeover, so one
     * frame serves every connection that negotiated it: compressed once, by the first
     * connection that asks, and shared. Null when compressing does not make it smaller.
     * `built` is set for the one call that compressed it (what the counter counts).
     * Thread-safe.
     */
    frame_ptr const& deflated(bool* built = nullptr) const;

private:
    std::string wire_;
    std::uint8_t header_size_ = 0;
    mutable std::once_flag deflate_once_;
    mutable frame_ptr deflated_;
};

inline frame_ptr make_text_frame(std::string_view payload) {
    return std::make_shared<text_frame const>(payload);
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
    static Message from_trusted_json(std::string_view json_text) {
        return Message(detail::make_text_frame(json_text));
    }

    /// The JSON text, as sent.
    std::string_view text() const noexcept { return frame_->payload(); }
    std::size_t size() const noexcept { return frame_->payload().size(); }

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
