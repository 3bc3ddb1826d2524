// SPDX-License-Identifier: BSL-1.0
#pragma once

// The codec of the wire protocol wsmanager.v1: server frames are written here, client frames
// are decoded here. It is the only place that knows frame field names and action names; the
// rooms above it deal in the typed values it returns. Server frames are written straight into
// a buffer with RapidJSON's SAX writer (no DOM), then framed once as a Message.
//
// Plain functions without state: callable from any thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <wsmanager/detail/exact_json.hpp>
#include <wsmanager/detail/json_checks.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager::detail::codec {

using protocol::ErrorCode;

/// The built-in client actions.
namespace action_name {
inline constexpr std::string_view ping = "ping";
inline constexpr std::string_view subscribe = "subscribe";
inline constexpr std::string_view unsubscribe = "unsubscribe";
inline constexpr std::string_view confirm = "confirm";
inline constexpr std::string_view cancel = "cancel";
inline constexpr std::string_view ack = "ack";
}  // namespace action_name

/// A close code and reason a server may send (RFC 6455 sections 5.5.1 and 7.4): 1000, 1001,
/// 1008, 1011, 1013 or an application code 3000-4999, and a reason of at most 123 bytes of
/// UTF-8 (a control frame carries 125 bytes, two of them the code).
inline bool is_sendable_close(std::uint16_t code, std::string_view reason) noexcept {
    bool const known = code == 1000 || code == 1001 || code == 1008 || code == 1011 ||
                       code == 1013 || (code >= 3000 && code <= 4999);
    return known && reason.size() <= 123 && is_valid_utf8(reason);
}

/// True for the actions the manager answers itself (a host cannot replace them).
constexpr bool is_builtin_action(std::string_view name) noexcept {
    return name == action_name::ping || name == action_name::subscribe ||
           name == action_name::unsubscribe || name == action_name::confirm ||
           name == action_name::cancel || name == action_name::ack;
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
    frame_writer& begin_object(std::string_view key) {
        key_(key);
        writer_.StartObject();
        return *this;
    }
    frame_writer& end_object() {
        writer_.EndObject();
        return *this;
    }
    /// Echoes the client's request_id, when it sent one.
    frame_writer& request_id(rapidjson::Value const* id) {
        if (id != nullptr) field("request_id", *id);
        return *this;
    }

    Message finish() {
        writer_.EndObject();
        return Message::from_trusted_json(std::string_view(buffer_.GetString(), buffer_.GetSize()));
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

/// A `pong`. The timestamp is echoed when it is a scalar (a number, a string, a boolean); an
/// array or object is not echoed (null): the writer recurses, and a client must not be
/// able to choose how deep.
inline Message pong_frame(rapidjson::Value const* timestamp, rapidjson::Value const* request_id) {
    frame_writer w("pong");
    if (timestamp != nullptr && !timestamp->IsObject() && !timestamp->IsArray()) {
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

inline Message task_step_result_frame(std::string_view callback_id, std::string_view user_id,
                                     std::string_view task_id, int step,
                                     TaskStepResult const& result, double timeout_s) {
    frame_writer w("task_step_result");
    w.field("callback_id", callback_id)
        .field("user_id", user_id)
        .field("task_id", task_id)
        .field("step", step)
        .field("message", result.message)
        .field("status", result.status);
    // step_result: every TaskStepResult field; `result` is JSON text validated by the caller.
    w.begin_object("step_result")
        .field("step", result.step)
        .raw_field("result", result.result)
        .field("completed", result.completed)
        .field("message", result.message)
        .field("status", result.status)
        .optional_field("error_code", result.error_code)
        .optional_field("error_message", result.error_message)
        .end_object();
    return w.field("timeout_s", timeout_s).field("timestamp", now_seconds()).finish();
}

inline Message confirmation_resolved_frame(std::string_view callback_id, std::string_view task_id,
                                           UserConfirmation const& confirmation) {
    return frame_writer("confirmation_resolved")
        .field("callback_id", callback_id)
        .field("task_id", task_id)
        .field("proceed", confirmation.proceed)
        .optional_field("feedback", confirmation.feedback)
        .field("reason", to_string(confirmation.reason))
        .finish();
}

inline Message task_cancelled_frame(std::string_view user_id, std::string_view task_id) {
    return frame_writer("task_cancelled")
        .field("user_id", user_id)
        .field("task_id", task_id)
        .field("timestamp", now_seconds())
        .finish();
}

inline Message heartbeat_frame(std::string_view user_id, std::string_view task_id) {
    return frame_writer("heartbeat")
        .field("user_id", user_id)
        .field("task_id", task_id)
        .field("timestamp", now_seconds())
        .finish();
}

/// A client frame, parsed: its action and optional request_id.
struct ClientFrame {
    /// `text_size`: the frame's length. RapidJSON's pool would reserve 64 KiB for every
    /// frame; a pool sized to the frame keeps a small frame small (it grows if needed).
    explicit ClientFrame(std::size_t text_size = 0)
        : pool(2 * text_size + 256), document(&pool) {}
    ClientFrame(ClientFrame const&) = delete;
    ClientFrame& operator=(ClientFrame const&) = delete;

    rapidjson::MemoryPoolAllocator<> pool;
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

/// True when every string (keys included) in a parsed value is UTF-8 and every number
/// finite (see detail/json_checks.hpp).
inline bool strings_are_utf8(rapidjson::Value const& root) { return json_is_writable(root); }

/**
 * Parses a client text frame: a JSON object with a string `action`.
 * The text must outlive the result only during this call (strings are copied).
 */
inline std::optional<FrameProblem> parse_client_frame(std::string_view text, ClientFrame& out) {
    // Iterative, numbers exact (detail/exact_json.hpp). RapidJSON would stop at a NUL byte
    // and ignore the rest; raw NUL is never JSON.
    if (!parse_exact_json(out.document, text) || text.find('\0') != std::string_view::npos) {
        return FrameProblem{ErrorCode::invalid_json, "Invalid JSON format"};
    }
    // Parts of a frame are echoed (request_id, timestamp, host actions' replies): each must
    // be writable back to the client.
    switch (find_json_flaw(out.document)) {
        case json_flaw::invalid_string:
            return FrameProblem{ErrorCode::bad_request,
                                "Invalid Unicode escape (lone surrogate)"};
        case json_flaw::infinite_number:
            return FrameProblem{ErrorCode::bad_request, "Number out of range"};
        case json_flaw::none: break;
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


/// Fields of a client `confirm`.
struct ConfirmAnswer {
    std::string callback_id;
    bool proceed = false;
    std::optional<std::string> feedback;
};

/// Fields of a client `cancel`.
struct CancelAsk {
    std::string task_id;
    std::optional<std::string> user_id;  ///< when given, must be the sender's own
};

namespace fields {
inline std::optional<FrameProblem> required_string(ClientFrame const& frame, std::string_view name,
                                                   std::string& out) {
    auto value = frame.string_field(name);
    if (!value || value->empty()) {
        return FrameProblem{ErrorCode::bad_request,
                            "Field " + std::string(name) + " must be a non-empty string"};
    }
    out = std::string(*value);
    return std::nullopt;
}

/// An optional string field: absent and null are "none"; any other type is a problem.
inline std::optional<FrameProblem> optional_string(ClientFrame const& frame, std::string_view name,
                                                   std::optional<std::string>& out) {
    auto const* value = frame.find(name);
    if (value == nullptr || value->IsNull()) return std::nullopt;
    if (!value->IsString()) {
        return FrameProblem{ErrorCode::bad_request,
                            "Field " + std::string(name) + " must be a string"};
    }
    out = std::string(value->GetString(), value->GetStringLength());
    return std::nullopt;
}
}  // namespace fields

inline std::variant<ConfirmAnswer, FrameProblem> parse_confirm(ClientFrame const& frame) {
    ConfirmAnswer answer;
    if (auto problem = fields::required_string(frame, "callback_id", answer.callback_id)) {
        return *problem;
    }
    auto const* proceed = frame.find("proceed");
    if (proceed == nullptr || !proceed->IsBool()) {
        return FrameProblem{ErrorCode::bad_request, "Field proceed must be a boolean"};
    }
    answer.proceed = proceed->GetBool();
    if (auto problem = fields::optional_string(frame, "feedback", answer.feedback)) {
        return *problem;
    }
    return answer;
}

inline std::variant<CancelAsk, FrameProblem> parse_cancel(ClientFrame const& frame) {
    CancelAsk ask;
    if (auto problem = fields::required_string(frame, "task_id", ask.task_id)) return *problem;
    if (auto problem = fields::optional_string(frame, "user_id", ask.user_id)) return *problem;
    return ask;
}

inline std::variant<std::string, FrameProblem> parse_ack(ClientFrame const& frame) {
    std::string message_id;
    if (auto problem = fields::required_string(frame, "message_id", message_id)) return *problem;
    return message_id;
}

/// The host's message with `message_id` and `requires_ack: true` added (send_with_ack);
/// nullopt when the message is not a JSON object.
inline std::optional<Message> with_ack_request(Message const& message, std::string_view message_id) {
    rapidjson::Document document;
    // A Message from from_trusted_json was never validated: parse without recursion and
    // check its UTF-8, so writing it back cannot throw.
    document.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(
        message.text().data(), message.text().size());
    if (document.HasParseError() || !document.IsObject() || !strings_are_utf8(document)) {
        return std::nullopt;
    }
    auto& allocator = document.GetAllocator();
    // Every copy: a client that reads the first of two duplicates must see ours.
    while (document.RemoveMember("message_id")) {
    }
    while (document.RemoveMember("requires_ack")) {
    }
    document.AddMember("message_id",
                       rapidjson::Value(message_id.data(),
                                        static_cast<rapidjson::SizeType>(message_id.size()),
                                        allocator),
                       allocator);
    document.AddMember("requires_ack", true, allocator);
    try {
        return Message(document);
    } catch (std::invalid_argument const&) {
        return std::nullopt;
    }
}

/// A client `ping`: `timestamp` (any JSON value, or nullptr) is echoed in the `pong`.
struct PingAsk {
    rapidjson::Value const* timestamp = nullptr;
};

/// A client `subscribe` or `unsubscribe`.
struct SubscriptionAsk {
    std::string topic;
    bool subscribe = true;
};

/// A client `ack` of a send_with_ack message.
struct AckAsk {
    std::string message_id;
};

/// Any other action: the host's, if it registered one (on_action).
struct HostActionAsk {
    std::string_view name;
};

/// What a client frame asks for, or why it cannot be served.
using ClientAction =
    std::variant<FrameProblem, PingAsk, SubscriptionAsk, ConfirmAnswer, CancelAsk, AckAsk,
                 HostActionAsk>;

/// Decodes the action of a parsed frame and its fields. Views and pointers in the result
/// refer into `frame`.
inline ClientAction decode_action(ClientFrame const& frame) {
    auto const name = frame.action;
    if (name == action_name::ping) return PingAsk{frame.find("timestamp")};
    if (name == action_name::subscribe || name == action_name::unsubscribe) {
        auto topic = frame.string_field("topic");
        if (!topic || topic->empty() || topic->size() > protocol::max_topic_length) {
            return FrameProblem{ErrorCode::bad_request,
                                "Field topic must be a non-empty string of at most " +
                                    std::to_string(protocol::max_topic_length) + " bytes"};
        }
        return SubscriptionAsk{std::string(*topic), name == action_name::subscribe};
    }
    if (name == action_name::confirm) {
        auto parsed = parse_confirm(frame);
        if (auto* problem = std::get_if<FrameProblem>(&parsed)) return std::move(*problem);
        return std::get<ConfirmAnswer>(std::move(parsed));
    }
    if (name == action_name::cancel) {
        auto parsed = parse_cancel(frame);
        if (auto* problem = std::get_if<FrameProblem>(&parsed)) return std::move(*problem);
        return std::get<CancelAsk>(std::move(parsed));
    }
    if (name == action_name::ack) {
        auto parsed = parse_ack(frame);
        if (auto* problem = std::get_if<FrameProblem>(&parsed)) return std::move(*problem);
        return AckAsk{std::get<std::string>(std::move(parsed))};
    }
    return HostActionAsk{name};
}

}  // namespace wsmanager::detail::codec
