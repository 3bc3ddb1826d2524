// SPDX-License-Identifier: BSL-1.0
#pragma once

// The wire protocol wsmanager.v1: the only place that knows frame field names.
// Server frames are written straight into a buffer with RapidJSON's SAX writer (no DOM),
// then framed once as a Message.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>

namespace wsmanager::protocol {

inline constexpr std::string_view subprotocol = "wsmanager.v1";

/// Error codes of `error` frames.
enum class ErrorCode { invalid_json, unknown_action, bad_request, unknown_callback, forbidden,
                       rate_limited, internal };

constexpr std::string_view to_string(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::invalid_json: return "invalid_json";
        case ErrorCode::unknown_action: return "unknown_action";
        case ErrorCode::bad_request: return "bad_request";
        case ErrorCode::unknown_callback: return "unknown_callback";
        case ErrorCode::forbidden: return "forbidden";
        case ErrorCode::rate_limited: return "rate_limited";
        case ErrorCode::internal: return "internal";
    }
    return "internal";
}

/// Seconds since the Unix epoch, as the original's time.time().
inline double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Builds one server frame: `frame_writer w("pong"); w.field(...); w.finish()`.
class frame_writer {
public:
    explicit frame_writer(std::string_view type) : writer_(buffer_) {
        writer_.StartObject();
        field("type", type);
    }

    frame_writer& field(std::string_view key, std::string_view value) {
        key_(key);
        writer_.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
        return *this;
    }
    frame_writer& field(std::string_view key, char const* value) {
        return field(key, std::string_view(value));
    }
    frame_writer& field(std::string_view key, bool value) {
        key_(key);
        writer_.Bool(value);
        return *this;
    }
    frame_writer& field(std::string_view key, std::int64_t value) {
        key_(key);
        writer_.Int64(value);
        return *this;
    }
    frame_writer& field(std::string_view key, std::uint64_t value) {
        key_(key);
        writer_.Uint64(value);
        return *this;
    }
    frame_writer& field(std::string_view key, int value) {
        return field(key, static_cast<std::int64_t>(value));
    }
    frame_writer& field(std::string_view key, double value) {
        key_(key);
        writer_.Double(value);
        return *this;
    }
    frame_writer& field(std::string_view key, rapidjson::Value const& value) {
        key_(key);
        value.Accept(writer_);
        return *this;
    }
    /// A field whose value is JSON text already validated by the caller.
    frame_writer& raw_field(std::string_view key, std::string_view json) {
        key_(key);
        writer_.RawValue(json.data(), json.size(), rapidjson::kObjectType);
        return *this;
    }
    frame_writer& null_field(std::string_view key) {
        key_(key);
        writer_.Null();
        return *this;
    }
    template <class T>
    frame_writer& optional_field(std::string_view key, std::optional<T> const& value) {
        if (value) return field(key, *value);
        return null_field(key);
    }
    /// Echoes the client's request_id, when it sent one.
    frame_writer& request_id(rapidjson::Value const* id) {
        if (id != nullptr) field("request_id", *id);
        return *this;
    }

    Message finish() {
        writer_.EndObject();
        return Message::from_trusted_json(std::string(buffer_.GetString(), buffer_.GetSize()));
    }

private:
    void key_(std::string_view key) {
        writer_.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    }
    rapidjson::StringBuffer buffer_;
    rapidjson::Writer<rapidjson::StringBuffer> writer_;
};

inline Message connected_frame(std::uint64_t connection_id, std::string_view user_id,
                               std::string_view selected_protocol) {
    frame_writer w("connected");
    w.field("connection_id", std::to_string(connection_id));
    if (user_id.empty()) {
        w.null_field("user_id");
    } else {
        w.field("user_id", user_id);
    }
    return w.field("protocol", selected_protocol).field("server_time", now_seconds()).finish();
}

inline Message error_frame(ErrorCode code, std::string_view message,
                           rapidjson::Value const* request_id = nullptr) {
    return frame_writer("error")
        .field("code", to_string(code))
        .field("message", message)
        .request_id(request_id)
        .finish();
}

inline Message pong_frame(rapidjson::Value const* timestamp, rapidjson::Value const* request_id) {
    frame_writer w("pong");
    if (timestamp != nullptr) {
        w.field("timestamp", *timestamp);
    } else {
        w.null_field("timestamp");
    }
    return w.field("server_time", now_seconds()).request_id(request_id).finish();
}

inline Message subscription_frame(bool subscribed, std::string_view topic,
                                  rapidjson::Value const* request_id) {
    return frame_writer(subscribed ? "subscribed" : "unsubscribed")
        .field("topic", topic)
        .request_id(request_id)
        .finish();
}

/// A client frame, parsed: its action and optional request_id.
struct ClientFrame {
    rapidjson::Document document;
    std::string_view action;
    rapidjson::Value const* request_id = nullptr;

    /// A member of the frame, or nullptr when absent.
    rapidjson::Value const* find(std::string_view name) const {
        auto it = document.FindMember(
            rapidjson::Value(rapidjson::StringRef(name.data(), name.size())));
        return it == document.MemberEnd() ? nullptr : &it->value;
    }
    /// A string member, or nullopt when absent or not a string.
    std::optional<std::string_view> string_field(std::string_view name) const {
        auto const* value = find(name);
        if (value == nullptr || !value->IsString()) return std::nullopt;
        return std::string_view(value->GetString(), value->GetStringLength());
    }
};

/// Why a client frame could not be parsed; `message` goes into the error frame.
struct FrameProblem {
    ErrorCode code;
    std::string message;
};

/**
 * Parses a client text frame: a JSON object with a string `action`.
 * The text must outlive the result only during this call (strings are copied).
 */
inline std::optional<FrameProblem> parse_client_frame(std::string_view text, ClientFrame& out) {
    out.document.Parse(text.data(), text.size());
    if (out.document.HasParseError()) {
        return FrameProblem{ErrorCode::invalid_json, "Invalid JSON format"};
    }
    if (!out.document.IsObject()) {
        return FrameProblem{ErrorCode::bad_request, "A frame must be a JSON object"};
    }
    out.request_id = out.find("request_id");
    if (out.request_id != nullptr && !(out.request_id->IsString() || out.request_id->IsNumber())) {
        out.request_id = nullptr;
        return FrameProblem{ErrorCode::bad_request, "request_id must be a string or a number"};
    }
    auto const* action = out.find("action");
    if (action == nullptr) {
        return FrameProblem{ErrorCode::bad_request, "Missing field: action"};
    }
    if (!action->IsString()) {
        return FrameProblem{ErrorCode::bad_request, "Field action must be a string"};
    }
    out.action = std::string_view(action->GetString(), action->GetStringLength());
    return std::nullopt;
}

}  // namespace wsmanager::protocol
