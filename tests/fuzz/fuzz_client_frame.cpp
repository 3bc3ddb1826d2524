// SPDX-License-Identifier: BSL-1.0
// Fuzz target: one client text frame through the codec (detail/protocol_codec.hpp), as the
// frame router sees it: parse_client_frame, then decode_action, every field of the result
// read, and the frames the server answers with built from it: `error` (with the request_id
// echoed), `pong` (which echoes the client's `timestamp`: a scalar exactly; an array or object
// as it was or as null, but a timestamp nested as deep as 64 KiB allows must not overflow the
// stack of RapidJSON's recursive writer), `subscribed`/`unsubscribed`. Every one must be a
// well-formed UTF-8 JSON object: no string that is not UTF-8, no number that is not finite.
// The input is at most Options::max_message_size bytes, as on the wire.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include <rapidjson/document.h>

#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/protocol.hpp>

#include "fuzz_support.hpp"

namespace codec = wsmanager::detail::codec;
using wsmanager::protocol::ErrorCode;
using wsmanager_fuzz::require;
using wsmanager_fuzz::touch;

namespace {

/// Reads every value of a document without recursion (a frame may nest 32 K levels deep).
void walk(rapidjson::Value const& root) {
    std::vector<rapidjson::Value const*> pending{&root};
    while (!pending.empty()) {
        auto const* value = pending.back();
        pending.pop_back();
        touch(static_cast<std::size_t>(value->GetType()));
        if (value->IsString()) {
            touch(std::string_view(value->GetString(), value->GetStringLength()));
        } else if (value->IsArray()) {
            for (auto const& item : value->GetArray()) pending.push_back(&item);
        } else if (value->IsObject()) {
            for (auto const& m : value->GetObject()) {
                touch(std::string_view(m.name.GetString(), m.name.GetStringLength()));
                pending.push_back(&m.value);
            }
        } else if (value->IsNumber()) {
            touch(static_cast<std::size_t>(value->GetDouble() != 0.0));
        }
    }
}

/// The answer carries the frame's request_id, unchanged, or none when the frame had none.
void check_request_id(rapidjson::Document const& answer, rapidjson::Value const* request_id) {
    auto const* echoed = wsmanager_fuzz::member(answer, "request_id");
    if (request_id == nullptr) {
        require(echoed == nullptr, "an answer carries a request_id the frame did not have");
        return;
    }
    require(echoed != nullptr, "an answer lost the frame's request_id");
    require(wsmanager_fuzz::echoes(*request_id, *echoed), "request_id echoed changed");
}

void answer_error(ErrorCode code, std::string_view message, rapidjson::Value const* request_id) {
    auto const answer =
        wsmanager_fuzz::check_server_frame(codec::error_frame(code, message, request_id), "error");
    check_request_id(answer, request_id);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    auto const text = wsmanager_fuzz::as_text(data, size);

    codec::ClientFrame frame;
    if (auto problem = codec::parse_client_frame(text, frame)) {
        require(problem->code == ErrorCode::invalid_json || problem->code == ErrorCode::bad_request,
                "parse_client_frame: unexpected error code");
        require(!problem->message.empty(), "parse_client_frame: a problem without a message");
        require(frame.request_id == nullptr || frame.request_id->IsString() ||
                    frame.request_id->IsNumber(),
                "parse_client_frame: a bad request_id kept");
        answer_error(problem->code, problem->message, frame.request_id);
        return 0;
    }
    require(frame.document.IsObject(), "parse_client_frame accepted a non-object");
    require(wsmanager::detail::is_valid_utf8(frame.action), "action is not UTF-8");
    require(
        frame.request_id == nullptr || frame.request_id->IsString() || frame.request_id->IsNumber(),
        "parse_client_frame accepted a bad request_id");
    require(frame.request_id == frame.find("request_id"), "request_id is not the frame's");

    std::visit(
        [&](auto&& ask) {
            using ask_type = std::decay_t<decltype(ask)>;
            if constexpr (std::is_same_v<ask_type, codec::FrameProblem>) {
                require(ask.code == ErrorCode::bad_request, "decode_action: unexpected code");
                answer_error(ask.code, ask.message, frame.request_id);
            } else if constexpr (std::is_same_v<ask_type, codec::PingAsk>) {
                require(frame.action == codec::action_name::ping, "PingAsk for another action");
                require(ask.timestamp == frame.find("timestamp"), "timestamp is not the frame's");
                auto const pong = wsmanager_fuzz::check_server_frame(
                    codec::pong_frame(ask.timestamp, frame.request_id), "pong");
                auto const* echoed = wsmanager_fuzz::member(pong, "timestamp");
                require(echoed != nullptr, "pong without timestamp");
                if (ask.timestamp == nullptr) {
                    require(echoed->IsNull(), "pong invented a timestamp");
                } else if (ask.timestamp->IsArray() || ask.timestamp->IsObject()) {
                    // Echoed, or (as the codec may choose: the writer recurses) null.
                    require(echoed->IsNull() || wsmanager_fuzz::echoes(*ask.timestamp, *echoed),
                            "pong changed the timestamp");
                } else {
                    require(wsmanager_fuzz::echoes(*ask.timestamp, *echoed),
                            "pong changed the timestamp");
                }
                check_request_id(pong, frame.request_id);
            } else if constexpr (std::is_same_v<ask_type, codec::SubscriptionAsk>) {
                require(
                    !ask.topic.empty() && ask.topic.size() <= wsmanager::protocol::max_topic_length,
                    "topic out of bounds");
                require(ask.subscribe == (frame.action == codec::action_name::subscribe),
                        "subscribe/unsubscribe mixed up");
                require(frame.string_field("topic") == std::string_view(ask.topic),
                        "topic is not the frame's");
                touch(wsmanager::protocol::task_topic(ask.topic));
                auto const answer = wsmanager_fuzz::check_server_frame(
                    codec::subscription_frame(ask.subscribe, ask.topic, frame.request_id),
                    ask.subscribe ? "subscribed" : "unsubscribed");
                check_request_id(answer, frame.request_id);
            } else if constexpr (std::is_same_v<ask_type, codec::ConfirmAnswer>) {
                require(frame.action == codec::action_name::confirm, "confirm for another action");
                require(!ask.callback_id.empty(), "confirm: empty callback_id");
                touch(ask.callback_id);
                touch(static_cast<std::size_t>(ask.proceed));
                if (ask.feedback) touch(*ask.feedback);
            } else if constexpr (std::is_same_v<ask_type, codec::CancelAsk>) {
                require(frame.action == codec::action_name::cancel, "cancel for another action");
                require(!ask.task_id.empty(), "cancel: empty task_id");
                touch(ask.task_id);
                if (ask.user_id) touch(*ask.user_id);
            } else if constexpr (std::is_same_v<ask_type, codec::AckAsk>) {
                require(frame.action == codec::action_name::ack, "ack for another action");
                require(!ask.message_id.empty(), "ack: empty message_id");
                touch(ask.message_id);
            } else {
                static_assert(std::is_same_v<ask_type, codec::HostActionAsk>);
                require(ask.name == frame.action, "host action name is not the frame's");
                require(!codec::is_builtin_action(ask.name), "a built-in action reached the host");
                walk(frame.document);
                answer_error(ErrorCode::unknown_action, "Unknown action: " + std::string(ask.name),
                             frame.request_id);
            }
        },
        codec::decode_action(frame));
    return 0;
}
