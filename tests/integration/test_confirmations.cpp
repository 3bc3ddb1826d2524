// SPDX-License-Identifier: BSL-1.0
// Task interaction over real loopback connections: notify_user confirmations (every tab of
// the user, nobody else; first answer wins; offline delivery and reconnects; timeouts;
// cancellation by the user and by the host; shutdown; disconnects; 1,000 at once),
// send_heartbeat and send_with_ack. Every wait is bounded, so a hang fails fast.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include "harness.hpp"

using namespace wsmanager::test;
using namespace asio::experimental::awaitable_operators;
using wsmanager::CancelRequest;
using wsmanager::ConfirmationReason;
using wsmanager::Options;
using wsmanager::TaskStepResult;
using wsmanager::UserConfirmation;
using Manager = wsmanager::WebSocketManager<>;
using Document = rapidjson::Document;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

namespace {

/// How long "nothing arrives" is watched for.
constexpr milliseconds quiet_period{300};

/// A connected tab: its frames can be taken by type in any order. Frames of other types are
/// kept for later takes (WsClient::next_of_type would drop them), so a test can check both
/// `confirmation_resolved` and `task_cancelled` whatever order they came in.
class Tab {
public:
    Tab(std::uint16_t port, std::string_view query) : connected_(connect_client(port, query)) {}

    /// The handshake completed and the `connected` frame came.
    bool ok() const { return connected_.result.opened && connected_.hello.has_value(); }
    Document const& hello() const { return *connected_.hello; }
    WsClient& client() { return *connected_; }

    bool send(std::string const& json) { return connected_->send_text(json); }

    /// The first frame of `type`, already received or arriving within `timeout`.
    std::optional<Document> take(std::string_view type, milliseconds timeout = 3000ms) {
        for (auto it = kept_.begin(); it != kept_.end(); ++it) {
            if (auto doc = parse_json(*it); doc && frame_type(*doc) == type) {
                kept_.erase(it);
                return doc;
            }
        }
        auto const deadline = steady_clock::now() + timeout;
        for (;;) {
            auto const left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto text = connected_->next_text(left);
            if (!text) {
                if (!connected_->is_open()) return std::nullopt;
                continue;
            }
            if (auto doc = parse_json(*text); doc && frame_type(*doc) == type) return doc;
            kept_.push_back(std::move(*text));
        }
    }

    /// The `error` frame answering a request, and its code.
    std::string error_code(milliseconds timeout = 3000ms) {
        auto error = take("error", timeout);
        if (!error) return "<no error frame>";
        return string_member(*error, "code").value_or("<no code>");
    }

    /// Frames of `type` received so far, taken without waiting; others are kept.
    int count_now(std::string_view type) {
        int count = 0;
        while (auto text = connected_->next_text(0ms)) {
            if (auto doc = parse_json(*text); doc && frame_type(*doc) == type) {
                ++count;
            } else {
                kept_.push_back(std::move(*text));
            }
        }
        return count;
    }

    /// True when no frame at all (kept or new) arrives within `period`; the first
    /// unexpected frame is reported in `unexpected`.
    bool silent(milliseconds period, std::string& unexpected) {
        if (!kept_.empty()) {
            unexpected = kept_.front();
            return false;
        }
        return connected_->expect_silence(period, &unexpected);
    }

    void close() {
        connected_->close(1000, "tab closed");
        connected_->wait_closed(2000ms);
    }

private:
    Connected connected_;
    std::deque<std::string> kept_;
};

std::string text_of(rapidjson::Value const& object, char const* name) {
    return string_member(object, name).value_or("<missing " + std::string(name) + ">");
}

bool has_null(rapidjson::Value const& object, char const* name) {
    auto it = object.FindMember(name);
    return it != object.MemberEnd() && it->value.IsNull();
}

std::optional<bool> bool_of(rapidjson::Value const& object, char const* name) {
    auto it = object.FindMember(name);
    if (it == object.MemberEnd() || !it->value.IsBool()) return std::nullopt;
    return it->value.GetBool();
}

std::optional<double> number_of(rapidjson::Value const& object, char const* name) {
    auto it = object.FindMember(name);
    if (it == object.MemberEnd() || !it->value.IsNumber()) return std::nullopt;
    return it->value.GetDouble();
}

/// The original's "data validation" step: completed, with a JSON result.
TaskStepResult validation_step() {
    return TaskStepResult{.step = "data_validation",
                          .result = R"({"validated_rows":1000,"errors":5})",
                          .completed = true,
                          .message = "Data validation completed, found 5 errors",
                          .status = "completed"};
}

/// The original's failed "model training" step: retry?
TaskStepResult failed_step() {
    return TaskStepResult{.step = "model_training",
                          .result = "null",
                          .completed = false,
                          .message = "Model training failed, retry?",
                          .status = "failed",
                          .error_code = "E003",
                          .error_message = "GPU memory insufficient"};
}

std::string confirm_json(std::string const& callback_id, bool proceed,
                         std::optional<std::string> const& feedback = std::nullopt,
                         std::string const& request_id = "") {
    std::string json = R"({"action":"confirm","callback_id":")" + callback_id +
                       R"(","proceed":)" + (proceed ? "true" : "false");
    if (feedback) json += R"(,"feedback":")" + *feedback + '"';
    if (!request_id.empty()) json += R"(,"request_id":")" + request_id + '"';
    return json + "}";
}

/// notify_user awaited by a coroutine on the host's io_context, as a host task would;
/// with `timeout` the per-call overload, else Options::callback_timeout.
std::future<UserConfirmation> ask(HostContext& host, Manager& manager, std::string user,
                                  std::string task, int step,
                                  std::optional<milliseconds> timeout = std::nullopt,
                                  TaskStepResult result = validation_step()) {
    return asio::co_spawn(
        host.context(),
        [&manager, result = std::move(result), user = std::move(user), task = std::move(task),
         step, timeout]() -> asio::awaitable<UserConfirmation> {
            if (timeout) co_return co_await manager.notify_user(result, user, task, step, *timeout);
            co_return co_await manager.notify_user(result, user, task, step);
        },
        asio::use_future);
}

template <class T>
bool ready(std::future<T> const& future) {
    return future.wait_for(0ms) == std::future_status::ready;
}

std::size_t pending(Manager const& manager) { return manager.get_status().pending_callbacks; }

/// Waits (bounded) until the manager has `count` pending callbacks.
bool pending_becomes(Manager const& manager, std::size_t count, milliseconds timeout = 3000ms) {
    return wait_until([&] { return pending(manager) == count; }, timeout);
}

Options options_with(milliseconds callback_timeout) {
    auto options = test_options();
    options.callback_timeout = callback_timeout;
    return options;
}

}  // namespace

TEST_CASE("notify_user reaches every tab of its user, the first answer wins and every tab "
          "hears the end",
          "[confirm]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    auto const port = manager.local_port();
    Tab tab1(port, "user_id=alice");
    Tab tab2(port, "user_id=alice");
    Tab bob(port, "user_id=bob");
    REQUIRE(tab1.ok());
    REQUIRE(tab2.ok());
    REQUIRE(bob.ok());

    auto const before = unix_time_s();
    auto decision = ask(host, manager, "alice", "task_789", 2, std::nullopt, failed_step());

    auto request1 = tab1.take("task_step_result");
    auto request2 = tab2.take("task_step_result");
    REQUIRE(request1);
    REQUIRE(request2);
    for (auto const* request : {&*request1, &*request2}) {
        auto const& r = *request;
        CHECK_FALSE(text_of(r, "callback_id").empty());
        CHECK(text_of(r, "user_id") == "alice");
        CHECK(text_of(r, "task_id") == "task_789");
        REQUIRE(r.HasMember("step"));
        CHECK(r["step"].IsInt());
        CHECK(r["step"].GetInt() == 2);
        CHECK(text_of(r, "message") == "Model training failed, retry?");
        CHECK(text_of(r, "status") == "failed");
        REQUIRE(r.HasMember("step_result"));
        auto const& s = r["step_result"];
        REQUIRE(s.IsObject());
        CHECK(text_of(s, "step") == "model_training");
        CHECK(has_null(s, "result"));
        CHECK(bool_of(s, "completed") == false);
        CHECK(text_of(s, "message") == "Model training failed, retry?");
        CHECK(text_of(s, "status") == "failed");
        CHECK(text_of(s, "error_code") == "E003");
        CHECK(text_of(s, "error_message") == "GPU memory insufficient");
        auto const timeout_s = number_of(r, "timeout_s");
        REQUIRE(timeout_s);
        CHECK(*timeout_s > 9.0);
        CHECK(*timeout_s <= 10.0);
        auto const timestamp = number_of(r, "timestamp");
        REQUIRE(timestamp);
        CHECK(*timestamp >= before - 1.0);
        CHECK(*timestamp <= unix_time_s() + 1.0);
    }
    auto const callback_id = text_of(*request1, "callback_id");
    CHECK(text_of(*request2, "callback_id") == callback_id);

    // Bob is connected all along and hears nothing of Alice's request.
    std::string unexpected;
    CHECK(bob.silent(quiet_period, unexpected));
    INFO(unexpected);

    REQUIRE(tab1.send(confirm_json(callback_id, true, "Agree to continue")));
    auto const confirmation = get(std::move(decision));
    CHECK(confirmation.proceed);
    CHECK(confirmation.feedback == "Agree to continue");
    CHECK(confirmation.reason == ConfirmationReason::user);

    for (auto* tab : {&tab1, &tab2}) {
        auto resolved = tab->take("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(text_of(*resolved, "callback_id") == callback_id);
        CHECK(text_of(*resolved, "task_id") == "task_789");
        CHECK(bool_of(*resolved, "proceed") == true);
        CHECK(text_of(*resolved, "feedback") == "Agree to continue");
        CHECK(text_of(*resolved, "reason") == "user");
    }
    CHECK(pending(manager) == 0u);

    // The second tab answers too late: the first answer won.
    REQUIRE(tab2.send(confirm_json(callback_id, false, "Cancel execution", "late")));
    auto late = tab2.take("error");
    REQUIRE(late);
    CHECK(text_of(*late, "code") == "unknown_callback");
    CHECK(text_of(*late, "request_id") == "late");
    CHECK(bob.silent(quiet_period, unexpected));
    INFO(unexpected);
}

TEST_CASE("another user can neither see nor answer a confirmation", "[confirm]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    auto const port = manager.local_port();
    Tab alice(port, "user_id=alice");
    Tab bob(port, "user_id=bob");
    REQUIRE(alice.ok());
    REQUIRE(bob.ok());

    auto decision = ask(host, manager, "alice", "task_456", 1);
    auto request = alice.take("task_step_result");
    REQUIRE(request);
    auto const callback_id = text_of(*request, "callback_id");
    std::string unexpected;
    CHECK(bob.silent(quiet_period, unexpected));
    INFO(unexpected);

    REQUIRE(bob.send(confirm_json(callback_id, false, "not yours", "b1")));
    auto refusal = bob.take("error");
    REQUIRE(refusal);
    CHECK(text_of(*refusal, "code") == "forbidden");
    CHECK(text_of(*refusal, "request_id") == "b1");

    // Still pending: nothing ended, nobody was told it ended.
    CHECK(pending(manager) == 1u);
    CHECK_FALSE(ready(decision));
    CHECK_FALSE(alice.take("confirmation_resolved", 200ms));

    REQUIRE(alice.send(confirm_json(callback_id, false, "Cancel execution")));
    auto const confirmation = get(std::move(decision));
    CHECK_FALSE(confirmation.proceed);
    CHECK(confirmation.feedback == "Cancel execution");
    CHECK(confirmation.reason == ConfirmationReason::user);
    CHECK(bob.silent(quiet_period, unexpected));
    INFO(unexpected);
}

TEST_CASE("malformed, unknown and anonymous answers resolve nothing", "[confirm]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    auto const port = manager.local_port();
    Tab alice(port, "user_id=alice");
    Tab anonymous(port, "");
    REQUIRE(alice.ok());
    REQUIRE(anonymous.ok());
    CHECK(anonymous.hello()["user_id"].IsNull());

    auto decision = ask(host, manager, "alice", "task_456", 1);
    auto request = alice.take("task_step_result");
    REQUIRE(request);
    auto const callback_id = text_of(*request, "callback_id");

    struct Case {
        std::string frame;
        std::string code;
    };
    std::vector<Case> const cases{
        {R"({"action":"confirm","callback_id":"no-such-callback","proceed":true})",
         "unknown_callback"},
        {R"({"action":"confirm","callback_id":")" + callback_id + R"("})", "bad_request"},
        {R"({"action":"confirm","callback_id":")" + callback_id + R"(","proceed":"yes"})",
         "bad_request"},
        {R"({"action":"confirm","callback_id":")" + callback_id + R"(","proceed":1})",
         "bad_request"},
        {R"({"action":"confirm","callback_id":")" + callback_id + R"(","proceed":null})",
         "bad_request"},
        {R"({"action":"confirm","callback_id":")" + callback_id +
             R"(","proceed":true,"feedback":42})",
         "bad_request"},
        {R"({"action":"confirm","callback_id":")" + callback_id +
             R"(","proceed":true,"feedback":{"text":"ok"}})",
         "bad_request"},
        {R"({"action":"confirm","proceed":true})", "bad_request"},
        {R"({"action":"confirm","callback_id":7,"proceed":true})", "bad_request"},
    };
    for (auto const& c : cases) {
        INFO(c.frame);
        REQUIRE(alice.send(c.frame));
        CHECK(alice.error_code() == c.code);
    }

    // An anonymous connection got nothing addressed to Alice, and may not answer.
    std::string unexpected;
    CHECK(anonymous.silent(quiet_period, unexpected));
    INFO(unexpected);
    REQUIRE(anonymous.send(confirm_json(callback_id, true, "hijack")));
    CHECK(anonymous.error_code() == "forbidden");

    CHECK(pending(manager) == 1u);
    CHECK_FALSE(ready(decision));
    CHECK_FALSE(alice.take("confirmation_resolved", 200ms));

    REQUIRE(alice.send(confirm_json(callback_id, true)));
    auto const confirmation = get(std::move(decision));
    CHECK(confirmation.proceed);
    CHECK_FALSE(confirmation.feedback);
    CHECK(confirmation.reason == ConfirmationReason::user);
    auto resolved = alice.take("confirmation_resolved");
    REQUIRE(resolved);
    CHECK(has_null(*resolved, "feedback"));

    // Answering again: the callback is gone.
    REQUIRE(alice.send(confirm_json(callback_id, true)));
    CHECK(alice.error_code() == "unknown_callback");
}

TEST_CASE("a confirmation waits for its user: offline delivery and reconnects",
          "[confirm][offline]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    auto const port = manager.local_port();

    SECTION("asked while offline, delivered on connecting") {
        auto decision = ask(host, manager, "alice", "task_offline", 1);
        REQUIRE(pending_becomes(manager, 1));
        std::this_thread::sleep_for(150ms);

        Tab alice(port, "user_id=alice");
        REQUIRE(alice.ok());
        auto request = alice.take("task_step_result");
        REQUIRE(request);
        CHECK(text_of(*request, "task_id") == "task_offline");
        auto const timeout_s = number_of(*request, "timeout_s");
        REQUIRE(timeout_s);
        CHECK(*timeout_s < 9.9);  // what is left, not the whole timeout
        CHECK(*timeout_s > 5.0);

        REQUIRE(alice.send(confirm_json(text_of(*request, "callback_id"), true, "later")));
        auto const confirmation = get(std::move(decision));
        CHECK(confirmation.proceed);
        CHECK(confirmation.feedback == "later");
        CHECK(confirmation.reason == ConfirmationReason::user);
    }

    SECTION("left unanswered, sent again after a reconnect") {
        auto first_tab = std::make_unique<Tab>(port, "user_id=alice");
        REQUIRE(first_tab->ok());
        auto decision = ask(host, manager, "alice", "task_reconnect", 3);
        auto first = first_tab->take("task_step_result");
        REQUIRE(first);
        auto const callback_id = text_of(*first, "callback_id");
        auto const first_timeout = number_of(*first, "timeout_s").value_or(0);

        first_tab->close();
        first_tab.reset();
        REQUIRE(wait_until([&] { return manager.get_connection_count() == 0; }));
        std::this_thread::sleep_for(150ms);
        CHECK(pending(manager) == 1u);
        CHECK_FALSE(ready(decision));

        Tab again(port, "user_id=alice");
        REQUIRE(again.ok());
        auto second = again.take("task_step_result");
        REQUIRE(second);
        CHECK(text_of(*second, "callback_id") == callback_id);
        CHECK(text_of(*second, "task_id") == "task_reconnect");
        CHECK(number_of(*second, "timeout_s").value_or(99) < first_timeout);
        CHECK(pending(manager) == 1u);
        CHECK_FALSE(ready(decision));

        REQUIRE(again.send(confirm_json(callback_id, false, "no")));
        auto const confirmation = get(std::move(decision));
        CHECK_FALSE(confirmation.proceed);
        CHECK(confirmation.feedback == "no");
        CHECK(confirmation.reason == ConfirmationReason::user);
    }
    CHECK(pending(manager) == 0u);
}

TEST_CASE("an unanswered confirmation times out", "[confirm][timeout]") {
    HostContext host;

    SECTION("Options::callback_timeout, proceeding by default as the original") {
        Manager manager(options_with(300ms));
        start(manager);
        Tab alice(manager.local_port(), "user_id=alice");
        REQUIRE(alice.ok());
        auto const started = steady_clock::now();
        auto decision = ask(host, manager, "alice", "task_timeout", 1);
        REQUIRE(alice.take("task_step_result"));
        auto const confirmation = get(std::move(decision));
        auto const waited = steady_clock::now() - started;
        CHECK(confirmation.proceed);
        CHECK_FALSE(confirmation.feedback);
        CHECK(confirmation.reason == ConfirmationReason::timeout);
        CHECK(waited >= 250ms);
        CHECK(waited < 3s);
        auto resolved = alice.take("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(text_of(*resolved, "reason") == "timeout");
        CHECK(bool_of(*resolved, "proceed") == true);
        CHECK(pending(manager) == 0u);
    }

    SECTION("Options::proceed_on_timeout = false") {
        auto options = options_with(300ms);
        options.proceed_on_timeout = false;
        Manager manager(options);
        start(manager);
        Tab alice(manager.local_port(), "user_id=alice");
        REQUIRE(alice.ok());
        auto const confirmation = get(ask(host, manager, "alice", "task_timeout", 1));
        CHECK_FALSE(confirmation.proceed);
        CHECK(confirmation.reason == ConfirmationReason::timeout);
        auto resolved = alice.take("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(bool_of(*resolved, "proceed") == false);
        CHECK(pending(manager) == 0u);
    }

    SECTION("a per-call timeout overrides Options::callback_timeout") {
        Manager manager(options_with(60s));
        start(manager);
        Tab alice(manager.local_port(), "user_id=alice");
        REQUIRE(alice.ok());
        auto const started = steady_clock::now();
        auto decision = ask(host, manager, "alice", "task_timeout", 1, 200ms);
        auto request = alice.take("task_step_result");
        REQUIRE(request);
        CHECK(number_of(*request, "timeout_s").value_or(99) <= 0.2);
        auto const confirmation = get(std::move(decision));
        auto const waited = steady_clock::now() - started;
        CHECK(confirmation.reason == ConfirmationReason::timeout);
        CHECK(confirmation.proceed);
        CHECK(waited >= 150ms);
        CHECK(waited < 3s);
        CHECK(pending(manager) == 0u);
    }
}

TEST_CASE("a user cancels a task while the host awaits its confirmation",
          "[confirm][cancel]") {
    HostContext host;
    Manager manager(options_with(10s));
    std::mutex cancels_mutex;
    std::vector<CancelRequest> cancels;
    manager.on_cancel([&](CancelRequest const& request) {
        std::lock_guard lock(cancels_mutex);
        cancels.push_back(request);
        return true;
    });
    auto cancel_count = [&] {
        std::lock_guard lock(cancels_mutex);
        return cancels.size();
    };
    start(manager);
    auto const port = manager.local_port();
    Tab tab1(port, "user_id=alice");
    Tab tab2(port, "user_id=alice");
    Tab bob(port, "user_id=bob");
    Tab carol(port, "user_id=carol");  // watches the task through its topic
    REQUIRE(tab1.ok());
    REQUIRE(tab2.ok());
    REQUIRE(bob.ok());
    REQUIRE(carol.ok());
    REQUIRE(carol.send(R"({"action":"subscribe","topic":"task:task_456"})"));
    auto subscribed = carol.take("subscribed");
    REQUIRE(subscribed);
    CHECK(text_of(*subscribed, "topic") == "task:task_456");

    auto decision = ask(host, manager, "alice", "task_456", 1);
    auto request = tab1.take("task_step_result");
    REQUIRE(request);
    REQUIRE(tab2.take("task_step_result"));

    // Bob may not cancel Alice's task, whether or not he names her.
    REQUIRE(bob.send(R"({"action":"cancel","task_id":"task_456","request_id":"c1"})"));
    CHECK(bob.error_code() == "forbidden");
    REQUIRE(bob.send(R"({"action":"cancel","user_id":"alice","task_id":"task_456"})"));
    CHECK(bob.error_code() == "forbidden");
    // Alice may not cancel in Bob's name.
    REQUIRE(tab2.send(R"({"action":"cancel","user_id":"bob","task_id":"task_456"})"));
    CHECK(tab2.error_code() == "forbidden");
    REQUIRE(tab2.send(R"({"action":"cancel"})"));
    CHECK(tab2.error_code() == "bad_request");
    CHECK(pending(manager) == 1u);
    CHECK_FALSE(ready(decision));
    CHECK(cancel_count() == 0u);

    // The original's cancel frame, from Alice.
    REQUIRE(tab1.send(R"({"action":"cancel","user_id":"alice","task_id":"task_456"})"));
    auto const confirmation = get(std::move(decision));
    CHECK_FALSE(confirmation.proceed);
    CHECK_FALSE(confirmation.feedback);
    CHECK(confirmation.reason == ConfirmationReason::cancelled);

    REQUIRE(wait_until([&] { return cancel_count() >= 1; }));
    std::this_thread::sleep_for(100ms);
    {
        std::lock_guard lock(cancels_mutex);
        REQUIRE(cancels.size() == 1u);
        CHECK(cancels[0].user_id == "alice");
        CHECK(cancels[0].task_id == "task_456");
        CHECK(cancels[0].connection_id != 0);
    }

    for (auto* tab : {&tab1, &tab2}) {
        auto resolved = tab->take("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(text_of(*resolved, "callback_id") == text_of(*request, "callback_id"));
        CHECK(text_of(*resolved, "reason") == "cancelled");
        CHECK(bool_of(*resolved, "proceed") == false);
        auto cancelled = tab->take("task_cancelled");
        REQUIRE(cancelled);
        CHECK(text_of(*cancelled, "user_id") == "alice");
        CHECK(text_of(*cancelled, "task_id") == "task_456");
        CHECK(number_of(*cancelled, "timestamp"));
    }
    auto watched = carol.take("task_cancelled");
    REQUIRE(watched);
    CHECK(text_of(*watched, "task_id") == "task_456");
    CHECK(text_of(*watched, "user_id") == "alice");
    CHECK_FALSE(carol.take("confirmation_resolved", 200ms));  // Alice's dialogs only

    std::string unexpected;
    CHECK(bob.silent(quiet_period, unexpected));
    INFO(unexpected);
    CHECK(pending(manager) == 0u);
}

TEST_CASE("the host withdraws a confirmation with per-operation cancellation",
          "[confirm][cancel]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    Tab alice(manager.local_port(), "user_id=alice");
    REQUIRE(alice.ok());

    SECTION("awaitable_operators: the timer wins") {
        auto raced = asio::co_spawn(
            host.context(),
            [&manager]() -> asio::awaitable<std::size_t> {
                asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
                auto result = co_await (manager.notify_user(validation_step(), "alice",
                                                            "task_race", 1) ||
                                        timer.async_wait(asio::use_awaitable));
                co_return result.index();
            },
            asio::use_future);
        auto request = alice.take("task_step_result");
        REQUIRE(request);
        CHECK(get(std::move(raced)) == 1u);
        CHECK(pending_becomes(manager, 0, 500ms));
        auto resolved = alice.take("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(text_of(*resolved, "callback_id") == text_of(*request, "callback_id"));
        CHECK(text_of(*resolved, "reason") == "cancelled");
        CHECK(bool_of(*resolved, "proceed") == false);
    }

    SECTION("bind_cancellation_slot: a terminal signal") {
        asio::cancellation_signal signal;
        std::promise<std::pair<std::error_code, UserConfirmation>> done;
        manager.notify_user(
            validation_step(), "alice", "task_slot", 1,
            asio::bind_cancellation_slot(
                signal.slot(), asio::bind_executor(host.executor(), [&done](std::error_code ec,
                                                                            UserConfirmation c) {
                    done.set_value({ec, c});
                })));
        auto request = alice.take("task_step_result");
        REQUIRE(request);
        // Emitted on the handler's executor, where the slot is also cleared.
        asio::post(host.executor(), [&signal] { signal.emit(asio::cancellation_type::terminal); });
        auto const [ec, confirmation] = get(done.get_future());
        CHECK(ec == asio::error::operation_aborted);
        CHECK_FALSE(confirmation.proceed);
        CHECK(pending_becomes(manager, 0, 500ms));
        auto resolved = alice.take("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(text_of(*resolved, "callback_id") == text_of(*request, "callback_id"));
        CHECK(text_of(*resolved, "reason") == "cancelled");
    }
}

TEST_CASE("stop_server resolves pending confirmations before closing", "[confirm][shutdown]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    Tab alice(manager.local_port(), "user_id=alice");
    REQUIRE(alice.ok());

    std::vector<std::future<UserConfirmation>> decisions;
    for (int step = 1; step <= 3; ++step) {
        decisions.push_back(ask(host, manager, "alice", "task_" + std::to_string(step), step));
    }
    for (int i = 0; i < 3; ++i) REQUIRE(alice.take("task_step_result"));
    CHECK(pending(manager) == 3u);

    auto stopped = manager.stop_server(asio::use_future);
    // In order: three confirmation_resolved (shutdown), then the close 1001.
    int resolved = 0;
    for (;;) {
        auto frame = alice.client().next_json(3000ms);
        if (!frame) break;
        INFO(text_of(*frame, "type"));
        CHECK(frame_type(*frame) == "confirmation_resolved");
        CHECK(text_of(*frame, "reason") == "shutdown");
        CHECK(bool_of(*frame, "proceed") == false);
        ++resolved;
    }
    CHECK(resolved == 3);
    auto closed = alice.client().wait_closed(3000ms);
    REQUIRE(closed);
    CHECK(closed->code == 1001);
    get(std::move(stopped));

    for (auto& decision : decisions) {
        auto const confirmation = get(std::move(decision));
        CHECK_FALSE(confirmation.proceed);
        CHECK(confirmation.reason == ConfirmationReason::shutdown);
    }
    CHECK(pending(manager) == 0u);

    // Asked while stopped: error::not_running at once. (as_tuple rather than a rethrown
    // std::system_error: an exception object shared across threads by std::future is a
    // ThreadSanitizer false positive, libstdc++'s reference count being uninstrumented.)
    auto refused = asio::co_spawn(
        host.context(),
        [&manager]() -> asio::awaitable<std::error_code> {
            auto [ec, confirmation] = co_await manager.notify_user(
                validation_step(), "alice", "task_late", 1,
                asio::experimental::as_tuple(asio::use_awaitable));
            co_return ec;
        },
        asio::use_future);
    CHECK(get(std::move(refused)) == wsmanager::error::not_running);
}

TEST_CASE("Options::resolve_on_disconnect gives up after disconnect_grace",
          "[confirm][disconnect]") {
    HostContext host;
    auto options = options_with(10s);
    options.resolve_on_disconnect = true;
    options.disconnect_grace = 200ms;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto alice = std::make_unique<Tab>(port, "user_id=alice");
    REQUIRE(alice->ok());
    auto decision = ask(host, manager, "alice", "task_disconnect", 1);
    auto request = alice->take("task_step_result");
    REQUIRE(request);
    auto const callback_id = text_of(*request, "callback_id");

    SECTION("the user does not come back") {
        auto const left = steady_clock::now();
        alice->close();
        alice.reset();
        auto const confirmation = get(std::move(decision));
        auto const waited = steady_clock::now() - left;
        CHECK_FALSE(confirmation.proceed);
        CHECK(confirmation.reason == ConfirmationReason::disconnected);
        CHECK(waited >= 150ms);
        CHECK(waited < 3s);
        CHECK(pending(manager) == 0u);
    }

    SECTION("the user comes back within the grace period") {
        alice->close();
        alice.reset();
        REQUIRE(wait_until([&] { return manager.get_connection_count() == 0; }));
        Tab back(port, "user_id=alice");
        REQUIRE(back.ok());
        auto again = back.take("task_step_result");
        REQUIRE(again);
        CHECK(text_of(*again, "callback_id") == callback_id);
        std::this_thread::sleep_for(400ms);  // twice the quiet_period: still pending
        CHECK(pending(manager) == 1u);
        CHECK_FALSE(ready(decision));
        REQUIRE(back.send(confirm_json(callback_id, true, "back again")));
        auto const confirmation = get(std::move(decision));
        CHECK(confirmation.proceed);
        CHECK(confirmation.reason == ConfirmationReason::user);
    }

    SECTION("a request for a user who never connects") {
        alice->close();
        alice.reset();
        REQUIRE(pending_becomes(manager, 0, 3000ms));  // the first one gave up
        auto const confirmation = get(ask(host, manager, "zed", "task_nobody", 1));
        CHECK(confirmation.reason == ConfirmationReason::disconnected);
        CHECK(pending(manager) == 0u);
    }
}

TEST_CASE("1000 concurrent notify_user calls each get their own answer",
          "[confirm][concurrency][tsan]") {
    constexpr int users = 10;
    constexpr int requests = 1000;
    constexpr int host_threads = 4;
    constexpr auto budget = 30s;
    auto const user_of = [](int i) { return "user-" + std::to_string(i % users); };
    auto const task_of = [](int i) { return "task-" + std::to_string(i); };

    // The hosts' io_contexts outlive the manager, so completions never meet a dead one.
    std::vector<std::unique_ptr<asio::io_context>> host_contexts;
    for (int t = 0; t < host_threads; ++t) {
        host_contexts.push_back(std::make_unique<asio::io_context>(1));
    }
    auto options = options_with(60s);
    options.threads = 2;
    Manager manager(options);
    start(manager);

    std::vector<std::unique_ptr<Tab>> tabs;
    for (int u = 0; u < users; ++u) {
        tabs.push_back(std::make_unique<Tab>(manager.local_port(), "user_id=" + user_of(u)));
        REQUIRE(tabs.back()->ok());
    }

    // Each tab answers every request it gets: proceed = even step, feedback = task id.
    std::vector<std::string> answer_problems(users);
    std::vector<std::thread> answerers;
    for (int u = 0; u < users; ++u) {
        answerers.emplace_back([&, u] {
            auto& client = tabs[u]->client();
            auto const deadline = steady_clock::now() + budget;
            int answered = 0;
            while (answered < requests / users && steady_clock::now() < deadline) {
                auto frame = client.next_json(1000ms);
                if (!frame || frame_type(*frame) != "task_step_result") continue;
                auto const step = frame->HasMember("step") && (*frame)["step"].IsInt()
                                      ? (*frame)["step"].GetInt()
                                      : -1;
                auto const task = text_of(*frame, "task_id");
                if (text_of(*frame, "user_id") != user_of(u)) {
                    answer_problems[u] = "request for another user at " + user_of(u);
                }
                if (!client.send_text(confirm_json(text_of(*frame, "callback_id"), step % 2 == 0,
                                                   task))) {
                    answer_problems[u] = "send failed";
                    return;
                }
                ++answered;
            }
            if (answered != requests / users) {
                answer_problems[u] = user_of(u) + " answered " + std::to_string(answered);
            }
        });
    }

    struct Outcome {
        std::optional<UserConfirmation> confirmation;
        std::string error;
    };
    std::vector<Outcome> outcomes(requests);
    std::vector<std::thread> hosts;
    for (int t = 0; t < host_threads; ++t) {
        hosts.emplace_back([&, t] {
            auto& io = *host_contexts[t];
            asio::steady_timer watchdog(io, budget);
            watchdog.async_wait([&io](std::error_code ec) {
                if (!ec) io.stop();
            });
            int remaining = requests / host_threads;
            for (int i = t; i < requests; i += host_threads) {
                asio::co_spawn(
                    io,
                    [&, i]() -> asio::awaitable<void> {
                        try {
                            outcomes[i].confirmation =
                                co_await manager.notify_user(validation_step(), user_of(i),
                                                             task_of(i), i);
                        } catch (std::exception const& e) {
                            outcomes[i].error = e.what();
                        }
                        if (--remaining == 0) watchdog.cancel();
                    },
                    asio::detached);
            }
            io.run();
        });
    }
    for (auto& thread : hosts) thread.join();
    for (auto& thread : answerers) thread.join();

    for (auto const& problem : answer_problems) CHECK(problem.empty());
    int right = 0;
    for (int i = 0; i < requests; ++i) {
        auto const& outcome = outcomes[i];
        INFO("request " << i << ": " << outcome.error);
        REQUIRE(outcome.confirmation);
        CHECK(outcome.confirmation->reason == ConfirmationReason::user);
        CHECK(outcome.confirmation->feedback == task_of(i));
        CHECK(outcome.confirmation->proceed == (i % 2 == 0));
        right += outcome.confirmation->feedback == task_of(i) &&
                 outcome.confirmation->proceed == (i % 2 == 0);
    }
    CHECK(right == requests);
    CHECK(pending_becomes(manager, 0));
}

TEST_CASE("the registry never leaks: answers, timeouts, cancels, disconnects, host cancels "
          "and shutdown",
          "[confirm]") {
    HostContext host;
    auto options = options_with(400ms);
    options.resolve_on_disconnect = true;
    options.disconnect_grace = 200ms;
    Manager manager(options);
    std::atomic<int> cancels{0};
    manager.on_cancel([&](CancelRequest const&) {
        ++cancels;
        return true;
    });
    start(manager);
    auto const port = manager.local_port();
    Tab alice(port, "user_id=alice");
    auto carol = std::make_unique<Tab>(port, "user_id=carol");
    REQUIRE(alice.ok());
    REQUIRE(carol->ok());

    auto answered = ask(host, manager, "alice", "mix_answer", 1, 5s);
    auto timed_out = ask(host, manager, "alice", "mix_timeout", 2);
    auto cancelled = ask(host, manager, "alice", "mix_cancel", 3, 5s);
    auto dropped = ask(host, manager, "carol", "mix_disconnect", 1, 5s);
    auto shut = ask(host, manager, "alice", "mix_shutdown", 5, 5s);
    auto raced = asio::co_spawn(
        host.context(),
        [&manager]() -> asio::awaitable<std::size_t> {
            asio::steady_timer timer(co_await asio::this_coro::executor, 100ms);
            auto result =
                co_await (manager.notify_user(validation_step(), "alice", "mix_race", 4, 5s) ||
                          timer.async_wait(asio::use_awaitable));
            co_return result.index();
        },
        asio::use_future);
    auto acked = manager.send_with_ack(
        "alice", json_message(R"({"type":"notice","text":"acked"})"), 5s, asio::use_future);
    auto unacked = manager.send_with_ack(
        "alice", json_message(R"({"type":"notice","text":"ignored"})"), 300ms, asio::use_future);

    std::vector<std::pair<std::string, std::string>> requests;  // task id, callback id
    for (int i = 0; i < 5; ++i) {
        auto request = alice.take("task_step_result");
        REQUIRE(request);
        requests.emplace_back(text_of(*request, "task_id"), text_of(*request, "callback_id"));
    }
    auto callback_of = [&](std::string const& task) {
        for (auto const& [t, id] : requests) {
            if (t == task) return id;
        }
        return std::string("<not received>");
    };
    REQUIRE(carol->take("task_step_result"));
    for (int i = 0; i < 2; ++i) {
        auto notice = alice.take("notice");
        REQUIRE(notice);
        if (text_of(*notice, "text") == "acked") {
            REQUIRE(alice.send(R"({"action":"ack","message_id":")" +
                               text_of(*notice, "message_id") + R"("})"));
        }
    }
    REQUIRE(alice.send(confirm_json(callback_of("mix_answer"), true, "yes")));
    REQUIRE(alice.send(R"({"action":"cancel","task_id":"mix_cancel"})"));
    carol->close();
    carol.reset();

    CHECK(get(std::move(answered)).reason == ConfirmationReason::user);
    CHECK(get(std::move(timed_out)).reason == ConfirmationReason::timeout);
    CHECK(get(std::move(cancelled)).reason == ConfirmationReason::cancelled);
    CHECK(get(std::move(dropped)).reason == ConfirmationReason::disconnected);
    CHECK(get(std::move(raced)) == 1u);
    CHECK(get(std::move(acked)));
    CHECK_FALSE(get(std::move(unacked)));
    CHECK(cancels.load() == 1);
    CHECK(pending_becomes(manager, 1));  // mix_shutdown only

    stop(manager);
    auto const last = get(std::move(shut));
    CHECK(last.reason == ConfirmationReason::shutdown);
    CHECK(pending(manager) == 0u);
    CHECK_FALSE(manager.get_status().running);
}

TEST_CASE("send_heartbeat beats for a task until it is cancelled or the server stops",
          "[confirm][heartbeat]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    auto const port = manager.local_port();
    Tab tab1(port, "user_id=alice");
    Tab tab2(port, "user_id=alice");
    Tab bob(port, "user_id=bob");
    REQUIRE(tab1.ok());
    REQUIRE(tab2.ok());
    REQUIRE(bob.ok());
    constexpr milliseconds interval{200};
    auto recorder = [] {
        auto promise = std::make_shared<std::promise<std::error_code>>();
        return std::make_pair(promise->get_future(),
                              [promise](std::error_code ec) { promise->set_value(ec); });
    };

    SECTION("to every connection of the user, ended by the user's cancel") {
        auto [ended, handler] = recorder();
        manager.send_heartbeat("alice", "task_hb", interval, handler);
        std::this_thread::sleep_for(interval * 7 / 2);
        auto const beats1 = tab1.count_now("heartbeat");
        auto const beats2 = tab2.count_now("heartbeat");
        CHECK(beats1 >= 3);
        CHECK(beats1 <= 5);
        CHECK(beats2 >= 3);
        CHECK(beats2 <= 5);
        std::string unexpected;
        CHECK(bob.silent(quiet_period, unexpected));
        INFO(unexpected);
        CHECK_FALSE(ready(ended));

        auto beat = tab1.take("heartbeat");
        REQUIRE(beat);
        CHECK(text_of(*beat, "user_id") == "alice");
        CHECK(text_of(*beat, "task_id") == "task_hb");
        CHECK(std::abs(number_of(*beat, "timestamp").value_or(0) - unix_time_s()) < 5.0);

        REQUIRE(tab2.send(R"({"action":"cancel","task_id":"task_hb"})"));
        CHECK(get(std::move(ended)) == wsmanager::error::task_cancelled);
        REQUIRE(tab1.take("task_cancelled"));
        // Bob cannot cancel a task whose heartbeats are Alice's.
        auto [ended2, handler2] = recorder();
        manager.send_heartbeat("alice", "task_hb2", interval, handler2);
        REQUIRE(tab1.take("heartbeat"));
        REQUIRE(bob.send(R"({"action":"cancel","task_id":"task_hb2"})"));
        CHECK(bob.error_code() == "forbidden");
        CHECK_FALSE(ready(ended2));
        stop(manager);
        CHECK(get(std::move(ended2)) == wsmanager::error::shutting_down);
    }

    SECTION("beside a step, ended by the host with awaitable_operators") {
        auto seen = std::make_shared<std::promise<std::error_code>>();
        auto raced = asio::co_spawn(
            host.context(),
            [&manager, seen, interval]() -> asio::awaitable<std::size_t> {
                auto beat = [&manager, seen, interval]() -> asio::awaitable<void> {
                    auto [ec] = co_await manager.send_heartbeat(
                        "alice", "task_long", interval,
                        asio::experimental::as_tuple(asio::use_awaitable));
                    seen->set_value(ec);
                };
                asio::steady_timer step(co_await asio::this_coro::executor, 500ms);
                auto result = co_await (beat() || step.async_wait(asio::use_awaitable));
                co_return result.index();
            },
            asio::use_future);
        CHECK(get(std::move(raced)) == 1u);
        CHECK(get(seen->get_future()) == asio::error::operation_aborted);
        CHECK(tab1.count_now("heartbeat") >= 2);
        // No more beats once it ended.
        std::this_thread::sleep_for(interval * 2);
        tab2.count_now("heartbeat");
        std::this_thread::sleep_for(interval * 2);
        CHECK(tab2.count_now("heartbeat") == 0);
    }

    SECTION("ended by stop_server, refused when stopped") {
        auto [ended, handler] = recorder();
        manager.send_heartbeat("alice", "task_hb", interval, handler);
        REQUIRE(tab1.take("heartbeat"));
        stop(manager);
        CHECK(get(std::move(ended)) == wsmanager::error::shutting_down);
        auto [refused, handler2] = recorder();
        manager.send_heartbeat("alice", "task_hb", interval, handler2);
        CHECK(get(std::move(refused)) == wsmanager::error::not_running);
    }
}

TEST_CASE("send_with_ack completes once the user's client acknowledges", "[confirm][ack]") {
    HostContext host;
    Manager manager(options_with(10s));
    start(manager);
    auto const port = manager.local_port();
    Tab alice(port, "user_id=alice");
    Tab bob(port, "user_id=bob");
    REQUIRE(alice.ok());
    REQUIRE(bob.ok());
    auto const notification = json_message(
        R"({"type":"personal_notification","message":"Your task has been completed","task_id":"task_456"})");

    auto acked = manager.send_with_ack("alice", notification, 3s, asio::use_future);
    auto frame = alice.take("personal_notification");
    REQUIRE(frame);
    auto const message_id = text_of(*frame, "message_id");
    CHECK_FALSE(message_id.empty());
    CHECK(bool_of(*frame, "requires_ack") == true);
    CHECK(text_of(*frame, "message") == "Your task has been completed");
    CHECK(text_of(*frame, "task_id") == "task_456");
    CHECK(pending(manager) == 1u);

    REQUIRE(bob.send(R"({"action":"ack","message_id":")" + message_id +
                     R"(","request_id":"b"})"));
    CHECK(bob.error_code() == "forbidden");
    REQUIRE(alice.send(R"({"action":"ack","message_id":"no-such-message"})"));
    CHECK(alice.error_code() == "unknown_callback");
    REQUIRE(alice.send(R"({"action":"ack"})"));
    CHECK(alice.error_code() == "bad_request");
    CHECK_FALSE(ready(acked));

    REQUIRE(alice.send(R"({"action":"ack","message_id":")" + message_id + R"("})"));
    CHECK(get(std::move(acked)));
    REQUIRE(alice.send(R"({"action":"ack","message_id":")" + message_id + R"("})"));
    CHECK(alice.error_code() == "unknown_callback");

    // Nobody acks: false after the timeout.
    auto started = steady_clock::now();
    auto unacked = manager.send_with_ack("alice", notification, 200ms, asio::use_future);
    REQUIRE(alice.take("personal_notification"));
    CHECK_FALSE(get(std::move(unacked)));
    CHECK(steady_clock::now() - started >= 150ms);

    // Nobody to send it to: false at once, nothing kept for later.
    started = steady_clock::now();
    CHECK_FALSE(get(manager.send_with_ack("zed", notification, 5s, asio::use_future)));
    CHECK(steady_clock::now() - started < 1s);

    // A coroutine host, as the original's send_with_ack.
    auto coroutine_acked = asio::co_spawn(
        host.context(),
        [&manager, notification]() -> asio::awaitable<bool> {
            co_return co_await manager.send_with_ack("alice", notification,
                                                     std::chrono::seconds(3));
        },
        asio::use_future);
    auto again = alice.take("personal_notification");
    REQUIRE(again);
    REQUIRE(alice.send(R"({"action":"ack","message_id":")" + text_of(*again, "message_id") +
                       R"("})"));
    CHECK(get(std::move(coroutine_acked)));

    std::string unexpected;
    CHECK(bob.silent(quiet_period, unexpected));
    INFO(unexpected);
    CHECK(pending(manager) == 0u);
}
