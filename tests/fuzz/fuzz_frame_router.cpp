// SPDX-License-Identifier: BSL-1.0
// Fuzz target: the frame router (detail/frame_router.hpp), every client text frame's way in.
// A recording session stands for the connection and a recording client_actions for the
// services; the host registered "echo" (replies with the whole frame, serialized again),
// "boom" (throws) and "later" (keeps its ActionContext and replies after route() returned,
// and again once the connection is gone). The input is routed as one frame, then, when it
// holds NUL bytes, cut at them into up to 64 frames routed in turn through the same router,
// alternately from a user's and an anonymous connection. Oracles: every frame the server
// sends is a well-formed UTF-8 JSON object with a type; a frame the codec refuses, a ping
// and an unknown action each get exactly one answer of the right type; nothing closes the
// connection.

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <rapidjson/document.h>

#include <wsmanager/action.hpp>
#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/frame_router.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/protocol.hpp>

#include "fuzz_support.hpp"

namespace codec = wsmanager::detail::codec;
namespace detail = wsmanager::detail;
using wsmanager::protocol::ErrorCode;
using wsmanager_fuzz::fail;
using wsmanager_fuzz::require;
using wsmanager_fuzz::touch;

namespace {

constexpr std::size_t max_frames = 64;
constexpr std::size_t max_kept = 8;  ///< requests and contexts kept to answer later

/// A connection without a socket: checks and counts what is sent to it.
class recording_session final : public detail::session {
public:
    using session::session;

    detail::send_status send(wsmanager::Message const& message) override {
        // The host's replies are any JSON object; the server's own frames have a type.
        auto const frame = wsmanager_fuzz::check_json_frame(message);
        auto const* type = wsmanager_fuzz::member(frame, "type");
        if (type != nullptr && type->IsString()) {
            last_type_.assign(type->GetString(), type->GetStringLength());
        } else {
            last_type_.clear();
        }
        ++sent_;
        return sent_ % 7 == 0 ? detail::send_status::dropped : detail::send_status::queued;
    }
    void close(std::uint16_t, std::string) override { ++closes_; }
    void ping() override {}
    std::string subprotocol() const override {
        return std::string(wsmanager::protocol::subprotocol);
    }

    std::size_t sent() const noexcept { return sent_; }
    std::size_t closes() const noexcept { return closes_; }
    std::string const& last_type() const noexcept { return last_type_; }

private:
    std::size_t sent_ = 0;
    std::size_t closes_ = 0;
    std::string last_type_;
};

/// The services, reduced to what decides an answer: subscriptions per connection, one
/// pending confirmation "cb-1", one message awaiting an ack "m-1", tasks cancelable by
/// their own user only. Some requests are kept and refused after routing.
class recording_actions final : public detail::client_actions {
public:
    void subscribe(detail::client_request const& request, codec::SubscriptionAsk ask) override {
        check(request);
        auto& topics = topics_[request.sender->id()];
        if (ask.subscribe) {
            if (topics.size() >= 100) {
                request.reject(ErrorCode::bad_request, "Too many topics");
            } else {
                topics.insert(std::move(ask.topic));
            }
        } else if (topics.erase(ask.topic) == 0) {
            request.reject(ErrorCode::bad_request, "Not subscribed");
        }
    }
    void confirm(detail::client_request const& request, codec::ConfirmAnswer answer) override {
        check(request);
        if (answer.callback_id != "cb-1") {
            request.reject(ErrorCode::unknown_callback, "Unknown callback_id");
            return;
        }
        if (answer.feedback) touch(*answer.feedback);
        keep(request);
    }
    void cancel(detail::client_request const& request, codec::CancelAsk const& ask) override {
        check(request);
        if (ask.user_id && *ask.user_id != request.sender->user_id()) {
            request.reject(ErrorCode::forbidden, "Not your task");
            return;
        }
        touch(ask.task_id);
        keep(request);
    }
    void acknowledge(detail::client_request const& request,
                     std::string const& message_id) override {
        check(request);
        if (message_id != "m-1") {
            request.reject(ErrorCode::unknown_callback, "Unknown message_id");
        }
    }

    /// Refuses the kept requests (a service that decides later), then forgets them.
    void answer_kept() {
        for (auto const& request : kept_) {
            touch(request.request_id() != nullptr);
            request.reject(ErrorCode::internal, "Decided later");
        }
        kept_.clear();
    }

private:
    static void check(detail::client_request const& request) {
        require(request.sender != nullptr && request.frame != nullptr && request.reject != nullptr,
                "client_request incomplete");
        require(request.request_id() == request.frame->find("request_id"),
                "client_request: request_id is not the frame's");
    }
    void keep(detail::client_request const& request) {
        if (kept_.size() < max_kept) kept_.push_back(request);
    }

    std::map<std::uint64_t, std::set<std::string>> topics_;
    std::vector<detail::client_request> kept_;
};

/// What the router must answer to `payload` by itself, judged by the codec alone:
/// the type of its one answer, or "" when the answer belongs to a service or the host.
std::string expected_answer(std::string_view payload) {
    codec::ClientFrame frame;
    if (codec::parse_client_frame(payload, frame)) return "error";
    if (frame.action == codec::action_name::ping) return "pong";
    auto const action = codec::decode_action(frame);
    if (std::holds_alternative<codec::FrameProblem>(action)) return "error";
    if (auto const* host = std::get_if<codec::HostActionAsk>(&action)) {
        // "boom" throws: an internal error; an action nobody registered: unknown_action.
        if (host->name != "echo" && host->name != "later") return "error";
    }
    return {};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    auto const input = wsmanager_fuzz::as_text(data, size);

    detail::manager_counters counters;
    auto const log = wsmanager_fuzz::quiet_logger(wsmanager::LogLevel::trace);
    auto user = std::make_shared<recording_session>(1, "alice", "198.51.100.7:40000");
    auto anonymous = std::make_shared<recording_session>(2, "", "198.51.100.8:40001");
    std::vector<wsmanager::ActionContext> later;
    {
        recording_actions actions;
        detail::host_hooks hooks;
        detail::frame_router router(actions, hooks, counters, log);
        router.set_host_action("echo", [](wsmanager::ActionContext const& context,
                                          rapidjson::Value const& frame) {
            // parse_client_frame refused any string that is not UTF-8, so this cannot throw.
            std::optional<wsmanager::Message> reply;
            try {
                reply.emplace(frame);
            } catch (std::invalid_argument const& e) {
                fail("echo: Message(frame) threw for a frame the codec accepted", e.what());
            }
            context.reply(*reply);
            if (frame.MemberCount() % 3 == 0) {
                context.reply_error(ErrorCode::bad_request, "echo: a multiple of three members");
            }
        });
        router.set_host_action("boom",
                               [](wsmanager::ActionContext const&, rapidjson::Value const&) {
                                   throw std::runtime_error("the host's handler failed");
                               });
        router.set_host_action(
            "later", [&later](wsmanager::ActionContext const& context, rapidjson::Value const&) {
                if (later.size() < max_kept) later.push_back(context);
            });
        router.set_host_action("removed",
                               [](wsmanager::ActionContext const&, rapidjson::Value const&) {
                                   fail("a removed host action was called");
                               });
        router.set_host_action("removed", {});

        auto route = [&](std::shared_ptr<recording_session> const& sender,
                         std::string_view payload) {
            auto const before = sender->sent();
            auto const expected = expected_answer(payload);
            router.route(sender, payload);
            if (!expected.empty()) {
                require(sender->sent() == before + 1, "not exactly one answer", payload);
                require(sender->last_type() == expected, "an answer of the wrong type", payload);
            }
            require(sender->closes() == 0, "the router closed a connection");
        };

        route(user, input);
        if (input.find('\0') != std::string_view::npos) {
            wsmanager_fuzz::splitter frames(input);
            for (std::size_t i = 0; i < max_frames && !frames.empty(); ++i) {
                route(i % 2 == 0 ? user : anonymous, frames.next());
            }
        }
        actions.answer_kept();
    }

    // The host answers after route() returned: the context keeps its frame alive.
    for (auto const& context : later) {
        touch(context.action());
        touch(context.request_id() != nullptr);
        context.reply_error(ErrorCode::internal, "later");
    }
    // And once the connection is gone the reply is dropped.
    user.reset();
    anonymous.reset();
    for (auto const& context : later) context.reply_error(ErrorCode::internal, "gone");
    return 0;
}
