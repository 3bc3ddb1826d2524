// SPDX-License-Identifier: BSL-1.0
// Fuzz target: the per-action parsers of the codec with arbitrary fields and types, and the
// host's side of send_with_ack.
//
// Input: `<action name> NUL <JSON body>` (no NUL: the whole input is the body, the name
// empty). The body, once it passes parse_client_frame's checks (a JSON object that can be
// written back: strings UTF-8, numbers finite), is decoded as the named action and as every
// built-in action in turn (ping, subscribe, unsubscribe, confirm, cancel, ack), and given to
// parse_confirm, parse_cancel and parse_ack directly, whatever its own `action` says. Separately, Message::from_json takes the body,
// and codec::with_ack_request the Message it made: with_ack_request must never throw, and
// must answer every JSON object with that object plus message_id and requires_ack.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include <rapidjson/document.h>

#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/protocol.hpp>

#include "fuzz_support.hpp"

namespace codec = wsmanager::detail::codec;
using wsmanager::protocol::ErrorCode;
using wsmanager_fuzz::fail;
using wsmanager_fuzz::require;
using wsmanager_fuzz::touch;

namespace {

void check_problem(codec::FrameProblem const& problem) {
    require(problem.code == ErrorCode::bad_request, "a parser answered with an unexpected code");
    require(!problem.message.empty(), "a parser's problem has no message");
    wsmanager_fuzz::check_server_frame(codec::error_frame(problem.code, problem.message), "error");
}

/// decode_action of `frame` as action `name`: the result fits the name and the fields.
void decode_as(codec::ClientFrame& frame, std::string_view name) {
    frame.action = name;
    std::visit(
        [&](auto&& ask) {
            using ask_type = std::decay_t<decltype(ask)>;
            if constexpr (std::is_same_v<ask_type, codec::FrameProblem>) {
                require(codec::is_builtin_action(name), "a host action got a FrameProblem");
                check_problem(ask);
            } else if constexpr (std::is_same_v<ask_type, codec::PingAsk>) {
                require(name == codec::action_name::ping, "PingAsk for another action");
                require(ask.timestamp == frame.find("timestamp"), "timestamp is not the frame's");
            } else if constexpr (std::is_same_v<ask_type, codec::SubscriptionAsk>) {
                require(name == codec::action_name::subscribe ||
                            name == codec::action_name::unsubscribe,
                        "SubscriptionAsk for another action");
                require(
                    !ask.topic.empty() && ask.topic.size() <= wsmanager::protocol::max_topic_length,
                    "topic out of bounds");
                touch(ask.topic);
            } else if constexpr (std::is_same_v<ask_type, codec::ConfirmAnswer>) {
                require(name == codec::action_name::confirm, "ConfirmAnswer for another action");
                require(!ask.callback_id.empty(), "confirm: empty callback_id");
                touch(ask.callback_id);
                if (ask.feedback) touch(*ask.feedback);
            } else if constexpr (std::is_same_v<ask_type, codec::CancelAsk>) {
                require(name == codec::action_name::cancel, "CancelAsk for another action");
                require(!ask.task_id.empty(), "cancel: empty task_id");
                if (ask.user_id) touch(*ask.user_id);
            } else if constexpr (std::is_same_v<ask_type, codec::AckAsk>) {
                require(name == codec::action_name::ack, "AckAsk for another action");
                require(!ask.message_id.empty(), "ack: empty message_id");
            } else {
                static_assert(std::is_same_v<ask_type, codec::HostActionAsk>);
                require(!codec::is_builtin_action(name), "a built-in action reached the host");
                require(ask.name == name, "host action name changed");
            }
        },
        codec::decode_action(frame));
}

/// The member `name` of `object` that comes last (a JSON client keeps the last duplicate).
rapidjson::Value const* last_member(rapidjson::Value const& object, std::string_view name) {
    rapidjson::Value const* found = nullptr;
    for (auto const& m : object.GetObject()) {
        if (std::string_view(m.name.GetString(), m.name.GetStringLength()) == name) {
            found = &m.value;
        }
    }
    return found;
}

void parsers(std::string_view name, std::string_view body) {
    codec::ClientFrame frame;
    frame.document.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
    // What parse_client_frame guarantees before any parser runs.
    if (frame.document.HasParseError() || !frame.document.IsObject() ||
        !codec::strings_are_utf8(frame.document)) {
        return;
    }
    frame.request_id = frame.find("request_id");

    if (auto confirm = codec::parse_confirm(frame);
        auto* problem = std::get_if<codec::FrameProblem>(&confirm)) {
        check_problem(*problem);
    } else {
        auto const& answer = std::get<codec::ConfirmAnswer>(confirm);
        require(!answer.callback_id.empty(), "parse_confirm: empty callback_id");
        require(frame.find("proceed") != nullptr && frame.find("proceed")->IsBool(),
                "parse_confirm: proceed is not a boolean");
    }
    if (auto cancel = codec::parse_cancel(frame);
        auto* problem = std::get_if<codec::FrameProblem>(&cancel)) {
        check_problem(*problem);
    } else {
        require(!std::get<codec::CancelAsk>(cancel).task_id.empty(), "parse_cancel: empty task_id");
    }
    if (auto ack = codec::parse_ack(frame);
        auto* problem = std::get_if<codec::FrameProblem>(&ack)) {
        check_problem(*problem);
    } else {
        require(!std::get<std::string>(ack).empty(), "parse_ack: empty message_id");
    }

    static constexpr std::array<std::string_view, 6> builtins = {
        codec::action_name::ping,    codec::action_name::subscribe, codec::action_name::unsubscribe,
        codec::action_name::confirm, codec::action_name::cancel,    codec::action_name::ack};
    for (auto const builtin : builtins) decode_as(frame, builtin);
    if (wsmanager::detail::is_valid_utf8(name)) decode_as(frame, name);
}

void send_with_ack(std::string_view body) {
    std::optional<wsmanager::Message> message;
    try {
        message = wsmanager::Message::from_json(body);
    } catch (std::invalid_argument const&) {
        return;  // not UTF-8 JSON: the host's call fails, as documented
    }
    require(message->text() == body, "Message::from_json did not keep the text");
    require(wsmanager::detail::is_valid_utf8(message->text()), "from_json accepted non-UTF-8");

    rapidjson::Document original;
    original.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
    require(!original.HasParseError(), "from_json accepted what RapidJSON cannot parse");

    // A message id as the ack service makes them, and an empty one (a std::string's: never
    // a null pointer).
    for (std::string_view const message_id :
         {std::string_view("0123456789abcdef0123456789abcdef"), std::string_view("")}) {
        std::optional<wsmanager::Message> framed;
        try {
            framed = codec::with_ack_request(*message, message_id);
        } catch (std::exception const& e) {
            fail("with_ack_request threw", e.what());
        }
        if (!original.IsObject()) {
            require(!framed, "with_ack_request framed a JSON value that is not an object");
            continue;
        }
        require(framed.has_value(), "with_ack_request refused a JSON object");
        auto const sent = wsmanager_fuzz::check_json_frame(*framed);
        auto const* id = last_member(sent, "message_id");
        require(id != nullptr && id->IsString() &&
                    std::string_view(id->GetString(), id->GetStringLength()) == message_id,
                "with_ack_request: wrong message_id");
        auto const* requires_ack = last_member(sent, "requires_ack");
        require(requires_ack != nullptr && requires_ack->IsTrue(),
                "with_ack_request: requires_ack is not true");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    auto const input = wsmanager_fuzz::as_text(data, size);
    std::string_view name;
    std::string_view body = input;
    if (auto const nul = input.find('\0'); nul != std::string_view::npos) {
        name = input.substr(0, nul);
        body = input.substr(nul + 1);
    }
    parsers(name, body);
    send_with_ack(body);
    return 0;
}
