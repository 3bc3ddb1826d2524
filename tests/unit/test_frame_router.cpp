// SPDX-License-Identifier: BSL-1.0
// detail/frame_router.hpp with client_actions recorded by the test: what each client frame
// becomes (an error, a pong, a built-in action with its decoded fields, a host action).

#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/action.hpp>
#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/frame_router.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/protocol.hpp>

#include "fake_session.hpp"

namespace router_test {

using wsmanager::ActionContext;
using wsmanager::Message;
using wsmanager::detail::client_request;
using wsmanager::detail::frame_router;
using wsmanager::detail::codec::CancelAsk;
using wsmanager::detail::codec::ConfirmAnswer;
using wsmanager::detail::codec::SubscriptionAsk;
using wsmanager::protocol::ErrorCode;
using wsmanager_fake::fake_ptr;
using wsmanager_fake::make_fake;
using wsmanager_fake::parse_json;
using wsmanager_fake::string_member;

/// Records every call, and keeps the requests so a test can refuse one later.
class recording_actions final : public wsmanager::detail::client_actions {
public:
    void subscribe(client_request const& request, SubscriptionAsk ask) override {
        requests.push_back(request);
        subscriptions.push_back(std::move(ask));
    }
    void confirm(client_request const& request, ConfirmAnswer answer) override {
        requests.push_back(request);
        answers.push_back(std::move(answer));
    }
    void cancel(client_request const& request, CancelAsk const& ask) override {
        requests.push_back(request);
        cancels.push_back(ask);
    }
    void acknowledge(client_request const& request, std::string const& message_id) override {
        requests.push_back(request);
        acks.push_back(message_id);
    }

    std::size_t calls() const {
        return subscriptions.size() + answers.size() + cancels.size() + acks.size();
    }

    std::vector<client_request> requests;
    std::vector<SubscriptionAsk> subscriptions;
    std::vector<ConfirmAnswer> answers;
    std::vector<CancelAsk> cancels;
    std::vector<std::string> acks;
};

struct rig {
    recording_actions actions;
    wsmanager::detail::manager_counters counters;
    wsmanager::detail::logger log{wsmanager::LogSink{}, wsmanager::LogLevel::trace};
    wsmanager::detail::host_hooks hooks;
    frame_router router{actions, hooks, counters, log};
    fake_ptr alice = make_fake(7, "alice");

    void route(std::string_view payload) { router.route(alice, payload); }

    std::uint64_t rejected(ErrorCode code) const {
        return counters.frames_rejected_by_code[static_cast<std::size_t>(code)].load();
    }
};

/// The session's last frame, which must be an `error` with this code; its message.
std::string last_error(fake_ptr const& session, ErrorCode code) {
    REQUIRE(session->frame_count() > 0);
    auto frame = parse_json(session->last_frame());
    CHECK(string_member(frame, "type") == "error");
    CHECK(string_member(frame, "code") == std::string(wsmanager::protocol::to_string(code)));
    return string_member(frame, "message");
}

TEST_CASE("frame_router: invalid JSON is answered with invalid_json and counted",
          "[frame_router]") {
    rig r;
    r.route("{\"action\": ");
    CHECK(last_error(r.alice, ErrorCode::invalid_json) == "Invalid JSON format");
    CHECK(r.alice->frame_count() == 1);
    CHECK(r.counters.frames_rejected.load() == 1);
    CHECK(r.rejected(ErrorCode::invalid_json) == 1);
    CHECK(r.actions.calls() == 0);
    CHECK(r.alice->closes().empty());  // a bad frame never closes the connection

    r.route("not json at all");
    CHECK(r.counters.frames_rejected.load() == 2);
    CHECK(r.rejected(ErrorCode::invalid_json) == 2);
}

TEST_CASE("frame_router: frames that are not a request are bad_request", "[frame_router]") {
    rig r;
    SECTION("not an object") {
        r.route("[1,2]");
        CHECK(last_error(r.alice, ErrorCode::bad_request) == "A frame must be a JSON object");
    }
    SECTION("no action") {
        r.route(R"({"request_id":"r1"})");
        CHECK(last_error(r.alice, ErrorCode::bad_request) == "Missing field: action");
        // The request_id is known by then: echoed.
        CHECK(string_member(parse_json(r.alice->last_frame()), "request_id") == "r1");
    }
    SECTION("an action that is not a string") {
        r.route(R"({"action":5})");
        CHECK(last_error(r.alice, ErrorCode::bad_request) == "Field action must be a string");
    }
    SECTION("a request_id that is neither a string nor a number is not echoed") {
        r.route(R"({"action":"ping","request_id":{"x":1}})");
        last_error(r.alice, ErrorCode::bad_request);
        CHECK_FALSE(parse_json(r.alice->last_frame()).HasMember("request_id"));
    }
    SECTION("a lone surrogate") {
        r.route(R"({"action":"ping","x":"\udc00"})");
        last_error(r.alice, ErrorCode::bad_request);
    }
    CHECK(r.counters.frames_rejected.load() == 1);
    CHECK(r.rejected(ErrorCode::bad_request) == 1);
    CHECK(r.actions.calls() == 0);
}

TEST_CASE("frame_router: an unknown action", "[frame_router]") {
    rig r;
    r.route(R"({"action":"dance","request_id":42})");
    CHECK(last_error(r.alice, ErrorCode::unknown_action) == "Unknown action: dance");
    auto frame = parse_json(r.alice->last_frame());
    REQUIRE(frame["request_id"].IsInt());
    CHECK(frame["request_id"].GetInt() == 42);
    CHECK(r.rejected(ErrorCode::unknown_action) == 1);
    CHECK(r.counters.frames_rejected.load() == 1);
}

TEST_CASE("frame_router: ping is answered with pong", "[frame_router]") {
    rig r;
    r.route(R"({"action":"ping","timestamp":1712345678.25,"request_id":"r-9"})");
    REQUIRE(r.alice->frame_count() == 1);
    auto pong = parse_json(r.alice->last_frame());
    CHECK(string_member(pong, "type") == "pong");
    REQUIRE(pong["timestamp"].IsNumber());
    CHECK(pong["timestamp"].GetDouble() == 1712345678.25);
    CHECK(string_member(pong, "request_id") == "r-9");
    CHECK(pong["server_time"].IsNumber());
    CHECK(r.actions.calls() == 0);
    CHECK(r.counters.frames_rejected.load() == 0);

    SECTION("a scalar timestamp is echoed; none, an object or an array is null") {
        r.route(R"({"action":"ping","timestamp":"t-1"})");
        auto echoed = parse_json(r.alice->last_frame());
        CHECK(string_member(echoed, "timestamp") == "t-1");
        CHECK_FALSE(echoed.HasMember("request_id"));
        r.route(R"({"action":"ping","timestamp":true})");
        CHECK(parse_json(r.alice->last_frame())["timestamp"].IsTrue());
        r.route(R"({"action":"ping"})");
        CHECK(parse_json(r.alice->last_frame())["timestamp"].IsNull());
        r.route(R"({"action":"ping","timestamp":{"t":[1,"a"]}})");
        CHECK(parse_json(r.alice->last_frame())["timestamp"].IsNull());
        r.route(R"({"action":"ping","timestamp":[[[1]]]})");
        CHECK(parse_json(r.alice->last_frame())["timestamp"].IsNull());
        CHECK(r.alice->count_of_type("pong") == 6);
    }
}

TEST_CASE("frame_router: subscribe and unsubscribe", "[frame_router]") {
    rig r;
    r.route(R"({"action":"subscribe","topic":"news","request_id":"s1"})");
    r.route(R"({"action":"unsubscribe","topic":"news"})");
    std::string const longest(wsmanager::protocol::max_topic_length, 't');
    r.route(R"({"action":"subscribe","topic":")" + longest + R"("})");
    REQUIRE(r.actions.subscriptions.size() == 3);
    CHECK(r.actions.subscriptions[0].topic == "news");
    CHECK(r.actions.subscriptions[0].subscribe);
    CHECK(r.actions.subscriptions[1].topic == "news");
    CHECK_FALSE(r.actions.subscriptions[1].subscribe);
    CHECK(r.actions.subscriptions[2].topic == longest);
    REQUIRE(r.actions.requests.size() == 3);
    CHECK(r.actions.requests[0].sender == r.alice);
    REQUIRE(r.actions.requests[0].request_id() != nullptr);
    CHECK(r.actions.requests[0].request_id()->GetString() == std::string("s1"));
    CHECK(r.actions.requests[1].request_id() == nullptr);
    CHECK(r.alice->frame_count() == 0);  // the action answers, not the router

    SECTION("bad topics are refused before the action") {
        std::string const too_long(wsmanager::protocol::max_topic_length + 1, 't');
        r.route(R"({"action":"subscribe","topic":")" + too_long + R"("})");
        r.route(R"({"action":"subscribe","topic":""})");
        r.route(R"({"action":"unsubscribe"})");
        r.route(R"({"action":"subscribe","topic":7})");
        CHECK(r.actions.subscriptions.size() == 3);
        CHECK(r.rejected(ErrorCode::bad_request) == 4);
        CHECK(r.alice->count_of_type("error") == 4);
        last_error(r.alice, ErrorCode::bad_request);
    }
}

TEST_CASE("frame_router: confirm, cancel and ack reach their actions", "[frame_router]") {
    rig r;
    r.route(R"({"action":"confirm","callback_id":"cb1","proceed":true,"feedback":"ok"})");
    r.route(R"({"action":"confirm","callback_id":"cb2","proceed":false,"feedback":null})");
    r.route(R"({"action":"cancel","task_id":"t1"})");
    r.route(R"({"action":"cancel","task_id":"t2","user_id":"alice"})");
    r.route(R"({"action":"ack","message_id":"m1"})");
    REQUIRE(r.actions.answers.size() == 2);
    CHECK(r.actions.answers[0].callback_id == "cb1");
    CHECK(r.actions.answers[0].proceed);
    CHECK(r.actions.answers[0].feedback == std::optional<std::string>("ok"));
    CHECK(r.actions.answers[1].callback_id == "cb2");
    CHECK_FALSE(r.actions.answers[1].proceed);
    CHECK_FALSE(r.actions.answers[1].feedback.has_value());
    REQUIRE(r.actions.cancels.size() == 2);
    CHECK(r.actions.cancels[0].task_id == "t1");
    CHECK_FALSE(r.actions.cancels[0].user_id.has_value());
    CHECK(r.actions.cancels[1].task_id == "t2");
    CHECK(r.actions.cancels[1].user_id == std::optional<std::string>("alice"));
    REQUIRE(r.actions.acks.size() == 1);
    CHECK(r.actions.acks[0] == "m1");
    CHECK(r.alice->frame_count() == 0);
    CHECK(r.counters.frames_rejected.load() == 0);

    SECTION("bad fields are bad_request and reach no action") {
        for (auto const* frame : {
                 R"({"action":"confirm","proceed":true})",
                 R"({"action":"confirm","callback_id":"","proceed":true})",
                 R"({"action":"confirm","callback_id":"cb","proceed":"yes"})",
                 R"({"action":"confirm","callback_id":"cb","proceed":true,"feedback":3})",
                 R"({"action":"cancel"})",
                 R"({"action":"cancel","task_id":1})",
                 R"({"action":"cancel","task_id":"t","user_id":false})",
                 R"({"action":"ack"})",
                 R"({"action":"ack","message_id":""})",
             }) {
            INFO(frame);
            auto const before = r.alice->frame_count();
            r.route(frame);
            REQUIRE(r.alice->frame_count() == before + 1);
            last_error(r.alice, ErrorCode::bad_request);
        }
        CHECK(r.actions.calls() == 5);
        CHECK(r.rejected(ErrorCode::bad_request) == 9);
    }
}

TEST_CASE("frame_router: an action's reject reaches the session, later too", "[frame_router]") {
    rig r;
    r.route(R"({"action":"ack","message_id":"m1","request_id":"a-1"})");
    REQUIRE(r.actions.requests.size() == 1);
    auto const request = r.actions.requests.front();  // a copy, as a service keeps it
    r.actions.requests.clear();
    request.reject(ErrorCode::unknown_callback, "Unknown or already acknowledged message_id");
    CHECK(last_error(r.alice, ErrorCode::unknown_callback) ==
          "Unknown or already acknowledged message_id");
    CHECK(string_member(parse_json(r.alice->last_frame()), "request_id") == "a-1");
    CHECK(r.rejected(ErrorCode::unknown_callback) == 1);
    CHECK(r.counters.frames_rejected.load() == 1);
}

TEST_CASE("frame_router: host actions", "[frame_router][action]") {
    rig r;
    int calls = 0;
    std::optional<ActionContext> kept;
    std::string seen_frame_text;
    auto move_handler = [&](ActionContext const& context, rapidjson::Value const& frame) {
        ++calls;
        CHECK(context.connection_id() == 7);
        CHECK(context.user_id() == "alice");
        CHECK(context.action() == "move");
        REQUIRE(context.request_id() != nullptr);
        CHECK(context.request_id()->GetInt() == 5);
        REQUIRE(frame.IsObject());
        CHECK(frame["action"].GetString() == std::string("move"));
        CHECK(frame["x"].GetInt() == 3);
        context.reply(Message::from_json(R"({"type":"moved","x":3})"));
        kept.emplace(context);  // a copy, for later
    };
    r.router.set_host_action("move", move_handler);
    r.route(R"({"action":"move","x":3,"request_id":5})");
    REQUIRE(calls == 1);
    REQUIRE(r.alice->frame_count() == 1);
    CHECK(r.alice->last_frame() == R"({"type":"moved","x":3})");
    CHECK(r.actions.calls() == 0);

    // After the handler returned, the copy still knows its frame and replies.
    REQUIRE(kept.has_value());
    CHECK(kept->action() == "move");
    CHECK(kept->request_id()->GetInt() == 5);
    kept->reply(Message::from_json(R"({"type":"done"})"));
    REQUIRE(r.alice->frame_count() == 2);
    CHECK(r.alice->last_frame() == R"({"type":"done"})");
    kept->reply_error(ErrorCode::forbidden, "not your piece");
    CHECK(last_error(r.alice, ErrorCode::forbidden) == "not your piece");
    REQUIRE(parse_json(r.alice->last_frame())["request_id"].IsInt());

    SECTION("a reply after the session is gone is dropped") {
        std::weak_ptr<wsmanager_fake::fake_session> gone = r.alice;
        r.alice.reset();
        REQUIRE(gone.expired());  // the context does not keep the session alive
        kept->reply(Message::from_json(R"({"type":"late"})"));
    }
    SECTION("an empty handler removes the action") {
        r.router.set_host_action("move", nullptr);
        r.route(R"({"action":"move"})");
        CHECK(last_error(r.alice, ErrorCode::unknown_action) == "Unknown action: move");
        CHECK(calls == 1);
    }
}

TEST_CASE("frame_router: a throwing host action is an internal error", "[frame_router][action]") {
    rig r;
    r.router.set_host_action("explode", [](ActionContext const&, rapidjson::Value const&) {
        throw std::runtime_error("boom");
    });
    r.route(R"({"action":"explode","request_id":"e1"})");
    CHECK(last_error(r.alice, ErrorCode::internal) == "Internal error");
    CHECK(string_member(parse_json(r.alice->last_frame()), "request_id") == "e1");
    CHECK(r.rejected(ErrorCode::internal) == 1);
    CHECK(r.alice->frame_count() == 1);
}

TEST_CASE("frame_router: a host action under a built-in name is never called",
          "[frame_router][action]") {
    rig r;
    int calls = 0;
    auto handler = [&](ActionContext const&, rapidjson::Value const&) { ++calls; };
    for (auto const* name : {"ping", "subscribe", "unsubscribe", "confirm", "cancel", "ack"}) {
        r.router.set_host_action(name, handler);
    }
    r.route(R"({"action":"ping","timestamp":1})");
    r.route(R"({"action":"subscribe","topic":"news"})");
    r.route(R"({"action":"unsubscribe","topic":"news"})");
    r.route(R"({"action":"confirm","callback_id":"cb","proceed":true})");
    r.route(R"({"action":"cancel","task_id":"t"})");
    r.route(R"({"action":"ack","message_id":"m"})");
    r.route(R"({"action":"ack"})");  // a bad built-in is not handed to the host either
    CHECK(calls == 0);
    CHECK(r.alice->count_of_type("pong") == 1);
    CHECK(r.actions.calls() == 5);  // subscribe, unsubscribe, confirm, cancel, ack
    CHECK(r.rejected(ErrorCode::bad_request) == 1);
}

TEST_CASE("frame_router: once the host hooks are closed, host actions are not called",
          "[frame_router][action]") {
    rig r;
    int calls = 0;
    r.router.set_host_action("move",
                             [&](ActionContext const&, rapidjson::Value const&) { ++calls; });
    r.hooks.close_and_wait();
    r.route(R"({"action":"move"})");
    CHECK(calls == 0);
    // The built-ins still answer.
    r.route(R"({"action":"ping"})");
    CHECK(r.alice->count_of_type("pong") == 1);
}

TEST_CASE("frame_router: a NUL byte ends no frame: the text after it is not ignored",
          "[frame_router]") {
    // RapidJSON stops at a NUL byte, so a frame of `{"action":"ping"}`, NUL, then garbage
    // parses as a ping. A raw NUL is never valid JSON: it should be invalid_json.
    rig r;
    r.route(std::string_view("{\"action\":\"ping\"}\0garbage", 25));
    REQUIRE(r.alice->frame_count() == 1);
    CHECK(wsmanager_fake::type_of(r.alice->last_frame()) == "error");
    CHECK_THAT(r.alice->last_frame(), Catch::Contains(R"("code":"invalid_json")"));
}

}  // namespace router_test
