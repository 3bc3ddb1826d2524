// SPDX-License-Identifier: BSL-1.0
// detail/confirmation_service.hpp, built as manager_core builds it (a strand of an
// io_context this test runs itself, the registries, delivery, counters, a silent logger and
// an owner's lifetime) with fake sessions: who gets the request, the first valid answer
// wins, every ending completes once and tells the user's sessions. Then a randomized mix of
// every way a confirmation ends, and a directory (detail/confirmation_directory.hpp) that
// decides otherwise.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/confirmation_directory.hpp>
#include <wsmanager/detail/confirmation_service.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>
#include <wsmanager/protocol.hpp>

#include "fake_session.hpp"

namespace confirm_test {

using namespace std::chrono_literals;
using wsmanager::ConfirmationReason;
using wsmanager::TaskStepResult;
using wsmanager::UserConfirmation;
using wsmanager::detail::client_request;
using wsmanager::detail::confirmation_directory;
using wsmanager::detail::confirmation_record;
using wsmanager::detail::confirmation_service;
using wsmanager::detail::decision;
using wsmanager::detail::decision_verdict;
using wsmanager::detail::pending_confirmation;
using wsmanager::detail::session_ptr;
using wsmanager::protocol::ErrorCode;
using wsmanager_fake::fake_ptr;
using wsmanager_fake::make_fake;
using wsmanager_fake::parse_json;
using wsmanager_fake::run_for;
using wsmanager_fake::run_until;
using wsmanager_fake::string_member;

/// What one confirmation's completion handler saw.
struct outcome {
    int calls = 0;
    std::error_code ec;
    UserConfirmation confirmation;
};

struct rejection {
    ErrorCode code;
    std::string message;
};

TaskStepResult sample_result() {
    TaskStepResult result;
    result.step = "review";
    result.result = R"({"files":3})";
    result.completed = true;
    result.message = "Proceed with the deploy?";
    result.status = "completed";
    return result;
}

std::size_t reason_index(ConfirmationReason reason) { return static_cast<std::size_t>(reason); }

/// The service and what it needs, as manager_core wires them.
struct rig {
    asio::io_context io;
    wsmanager::Options options;
    wsmanager::detail::connection_registry connections;
    wsmanager::detail::topic_registry topics;
    wsmanager::detail::manager_counters counters;
    wsmanager::detail::delivery deliver{connections, topics, counters};
    wsmanager::detail::logger log{wsmanager::LogSink{}, wsmanager::LogLevel::trace};
    std::shared_ptr<int> alive = std::make_shared<int>(1);
    std::weak_ptr<void const> lifetime = alive;
    confirmation_service service{
        asio::make_strand(io), options, connections, deliver, counters, log, lifetime};

    std::map<std::string, std::shared_ptr<outcome>> outcomes;
    std::vector<rejection> rejections;
    /// Called by every completion after it is recorded (the mix test looks around then).
    std::function<void(std::string const&)> on_complete;

    fake_ptr connect(std::uint64_t id, std::string user) {
        auto session = make_fake(id, std::move(user));
        REQUIRE(connections.add(session));
        return session;
    }

    std::shared_ptr<outcome> begin(std::string const& id, std::string user, std::string task,
                                   std::chrono::milliseconds timeout,
                                   TaskStepResult result = sample_result(), int step = 1) {
        auto record = std::make_shared<outcome>();
        outcomes[id] = record;
        pending_confirmation entry;
        entry.id = id;
        entry.user_id = std::move(user);
        entry.task_id = std::move(task);
        entry.step = step;
        entry.result = std::move(result);
        entry.created = pending_confirmation::clock::now();
        entry.deadline = entry.created + timeout;
        entry.complete = [this, record, id](std::error_code ec, UserConfirmation confirmation) {
            ++record->calls;
            record->ec = ec;
            record->confirmation = std::move(confirmation);
            if (on_complete) on_complete(id);
        };
        service.begin(std::move(entry));
        return record;
    }

    client_request request_from(session_ptr sender) {
        return client_request{std::move(sender), nullptr,
                              [this](ErrorCode code, std::string_view message) {
                                  rejections.push_back({code, std::string(message)});
                              }};
    }

    void answer(session_ptr const& sender, std::string const& id, bool proceed,
                std::optional<std::string> feedback = std::nullopt) {
        service.answer(request_from(sender),
                       wsmanager::detail::codec::ConfirmAnswer{id, proceed, std::move(feedback)});
    }

    std::uint64_t ended_by(ConfirmationReason reason) const {
        return counters.confirmations_by_reason[reason_index(reason)].load();
    }
};

/// The session's `task_step_result` frames, parsed.
std::vector<rapidjson::Document> requests_of(fake_ptr const& session) {
    std::vector<rapidjson::Document> requests;
    for (auto const& frame : session->frames_of_type("task_step_result")) {
        requests.push_back(parse_json(frame));
    }
    return requests;
}

/// The session's `confirmation_resolved` frames for one callback id, parsed.
std::vector<rapidjson::Document> resolved_of(fake_ptr const& session, std::string const& id) {
    std::vector<rapidjson::Document> resolved;
    for (auto const& frame : session->frames_of_type("confirmation_resolved")) {
        auto document = parse_json(frame);
        if (string_member(document, "callback_id") == id) resolved.push_back(std::move(document));
    }
    return resolved;
}

/// Checks one confirmation_resolved frame.
void check_resolved(rapidjson::Document const& frame, std::string const& id,
                    std::string const& task, bool proceed, ConfirmationReason reason,
                    std::optional<std::string> const& feedback = std::nullopt) {
    CHECK(string_member(frame, "callback_id") == id);
    CHECK(string_member(frame, "task_id") == task);
    REQUIRE(frame["proceed"].IsBool());
    CHECK(frame["proceed"].GetBool() == proceed);
    CHECK(string_member(frame, "reason") == std::string(wsmanager::to_string(reason)));
    REQUIRE(frame.HasMember("feedback"));
    if (feedback) {
        CHECK(string_member(frame, "feedback") == *feedback);
    } else {
        CHECK(frame["feedback"].IsNull());
    }
}

TEST_CASE("confirmation_service: the request goes to the user's sessions only",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto b1 = r.connect(3, "bob");
    auto anon = r.connect(4, "");

    auto done = r.begin("cb-1", "alice", "task-9", 10s, sample_result(), 3);
    CHECK(done->calls == 0);
    CHECK(r.service.size() == 1);
    CHECK(r.counters.pending_confirmations.load() == 1);
    CHECK(r.counters.pending_callbacks.load() == 1);

    for (auto const& session : {a1, a2}) {
        auto requests = requests_of(session);
        REQUIRE(requests.size() == 1);
        auto const& request = requests.front();
        CHECK(string_member(request, "type") == "task_step_result");
        CHECK(string_member(request, "callback_id") == "cb-1");
        CHECK(string_member(request, "user_id") == "alice");
        CHECK(string_member(request, "task_id") == "task-9");
        REQUIRE(request["step"].IsInt());
        CHECK(request["step"].GetInt() == 3);
        CHECK(string_member(request, "message") == "Proceed with the deploy?");
        REQUIRE(request["timeout_s"].IsNumber());
        CHECK(request["timeout_s"].GetDouble() > 0);
        CHECK(request["timeout_s"].GetDouble() <= 10.0);
        REQUIRE(request["step_result"].IsObject());
        CHECK(request["step_result"]["result"]["files"].GetInt() == 3);
        CHECK(session->frame_count() == 1);
    }
    CHECK(b1->frame_count() == 0);
    CHECK(anon->frame_count() == 0);

    r.service.end_all(ConfirmationReason::shutdown);
    CHECK(done->calls == 1);
}

TEST_CASE("confirmation_service: the user's answer wins once and every tab hears it",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto b1 = r.connect(3, "bob");
    auto done = r.begin("cb-1", "alice", "t1", 10s);

    r.answer(a2, "cb-1", true, "looks good");
    CHECK(r.rejections.empty());
    REQUIRE(done->calls == 1);
    CHECK_FALSE(done->ec);
    CHECK(done->confirmation.proceed);
    CHECK(done->confirmation.feedback == std::optional<std::string>("looks good"));
    CHECK(done->confirmation.reason == ConfirmationReason::user);
    CHECK(r.service.size() == 0);
    CHECK(r.counters.pending_confirmations.load() == 0);
    CHECK(r.counters.pending_callbacks.load() == 0);
    CHECK(r.counters.confirmations_ended.load() == 1);
    CHECK(r.ended_by(ConfirmationReason::user) == 1);

    for (auto const& session : {a1, a2}) {
        auto resolved = resolved_of(session, "cb-1");
        REQUIRE(resolved.size() == 1);
        check_resolved(resolved.front(), "cb-1", "t1", true, ConfirmationReason::user,
                       "looks good");
    }
    CHECK(b1->frame_count() == 0);

    SECTION("a second answer gets unknown_callback and changes nothing") {
        r.answer(a1, "cb-1", false);
        REQUIRE(r.rejections.size() == 1);
        CHECK(r.rejections[0].code == ErrorCode::unknown_callback);
        CHECK(done->calls == 1);
        CHECK(done->confirmation.proceed);
        CHECK(resolved_of(a1, "cb-1").size() == 1);
        CHECK(r.counters.confirmations_ended.load() == 1);
    }
    SECTION("an answer for an id that never was gets unknown_callback") {
        r.answer(a1, "never", true);
        REQUIRE(r.rejections.size() == 1);
        CHECK(r.rejections[0].code == ErrorCode::unknown_callback);
    }
}

TEST_CASE("confirmation_service: another user's or an anonymous answer is forbidden",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto b1 = r.connect(2, "bob");
    auto anon = r.connect(3, "");
    auto done = r.begin("cb-1", "alice", "t1", 10s);

    r.answer(b1, "cb-1", true);
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::forbidden);
    r.answer(anon, "cb-1", true);
    REQUIRE(r.rejections.size() == 2);
    CHECK(r.rejections[1].code == ErrorCode::forbidden);
    r.answer(anon, "never", true);  // anonymous is refused before the id is looked at
    REQUIRE(r.rejections.size() == 3);
    CHECK(r.rejections[2].code == ErrorCode::forbidden);

    CHECK(done->calls == 0);
    CHECK(r.service.size() == 1);
    CHECK(resolved_of(a1, "cb-1").empty());

    // The right user still can.
    r.answer(a1, "cb-1", false);
    REQUIRE(done->calls == 1);
    CHECK_FALSE(done->confirmation.proceed);
    CHECK(done->confirmation.reason == ConfirmationReason::user);
    CHECK(r.rejections.size() == 3);
}

TEST_CASE("confirmation_service: a timeout resolves with proceed_on_timeout",
          "[confirmation_service][timer]") {
    bool const proceed_on_timeout = GENERATE(true, false);
    rig r;
    r.options.proceed_on_timeout = proceed_on_timeout;
    auto a1 = r.connect(1, "alice");
    auto const started = std::chrono::steady_clock::now();
    auto done = r.begin("cb-1", "alice", "t1", 30ms);
    CHECK(done->calls == 0);

    REQUIRE(run_until(r.io, [&] { return done->calls > 0; }));
    CHECK(std::chrono::steady_clock::now() - started >= 30ms);  // never early
    CHECK(done->calls == 1);
    CHECK_FALSE(done->ec);
    CHECK(done->confirmation.proceed == proceed_on_timeout);
    CHECK(done->confirmation.reason == ConfirmationReason::timeout);
    CHECK_FALSE(done->confirmation.feedback.has_value());
    auto resolved = resolved_of(a1, "cb-1");
    REQUIRE(resolved.size() == 1);
    check_resolved(resolved.front(), "cb-1", "t1", proceed_on_timeout, ConfirmationReason::timeout);
    CHECK(r.service.size() == 0);
    CHECK(r.ended_by(ConfirmationReason::timeout) == 1);

    // A late answer finds nothing.
    r.answer(a1, "cb-1", true);
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::unknown_callback);
    CHECK(done->calls == 1);
}

TEST_CASE("confirmation_service: withdraw ends with operation_aborted, reason cancelled",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto done = r.begin("cb-1", "alice", "t1", 10s);
    r.service.withdraw("cb-1");
    REQUIRE(done->calls == 1);
    CHECK(done->ec == asio::error::operation_aborted);
    CHECK_FALSE(done->confirmation.proceed);
    CHECK(done->confirmation.reason == ConfirmationReason::cancelled);
    auto resolved = resolved_of(a1, "cb-1");
    REQUIRE(resolved.size() == 1);
    check_resolved(resolved.front(), "cb-1", "t1", false, ConfirmationReason::cancelled);

    r.service.withdraw("cb-1");   // again: nothing
    r.service.withdraw("never");  // unknown: nothing
    CHECK(done->calls == 1);
    CHECK(resolved_of(a1, "cb-1").size() == 1);
    CHECK(r.service.size() == 0);
}

TEST_CASE("confirmation_service: cancel_task ends that task's confirmations only",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto b1 = r.connect(2, "bob");
    auto c1 = r.begin("c1", "alice", "t1", 10s);
    auto c2 = r.begin("c2", "alice", "t1", 10s);
    auto c3 = r.begin("c3", "bob", "t1", 10s);
    auto c4 = r.begin("c4", "alice", "t2", 10s);

    r.service.cancel_task("t1");
    for (auto const& done : {c1, c2, c3}) {
        REQUIRE(done->calls == 1);
        CHECK_FALSE(done->ec);
        CHECK_FALSE(done->confirmation.proceed);
        CHECK(done->confirmation.reason == ConfirmationReason::cancelled);
    }
    CHECK(c4->calls == 0);
    CHECK(r.service.size() == 1);
    CHECK(r.service.entries().find("c4") != nullptr);
    CHECK(resolved_of(a1, "c1").size() == 1);
    CHECK(resolved_of(a1, "c2").size() == 1);
    CHECK(resolved_of(b1, "c3").size() == 1);
    CHECK(resolved_of(a1, "c3").empty());  // bob's, not alice's
    CHECK(resolved_of(a1, "c4").empty());

    r.service.cancel_task("t1");  // nothing left there
    r.service.cancel_task("unknown");
    CHECK(c4->calls == 0);
    CHECK(r.ended_by(ConfirmationReason::cancelled) == 3);

    r.service.end_all(ConfirmationReason::shutdown);
    CHECK(c4->calls == 1);
}

TEST_CASE("confirmation_service: end_all ends every confirmation with its reason",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto b1 = r.connect(2, "bob");
    std::vector<std::shared_ptr<outcome>> all;
    for (int i = 0; i < 10; ++i) {
        all.push_back(r.begin("c" + std::to_string(i), i % 2 == 0 ? "alice" : "bob",
                              "t" + std::to_string(i % 3), 10s));
    }
    r.service.end_all(ConfirmationReason::shutdown);
    for (auto const& done : all) {
        REQUIRE(done->calls == 1);
        CHECK_FALSE(done->ec);
        CHECK_FALSE(done->confirmation.proceed);
        CHECK(done->confirmation.reason == ConfirmationReason::shutdown);
    }
    CHECK(r.service.size() == 0);
    CHECK(r.service.entries().indexed_users() == 0);
    CHECK(r.service.entries().indexed_tasks() == 0);
    CHECK(a1->count_of_type("confirmation_resolved") == 5);
    CHECK(b1->count_of_type("confirmation_resolved") == 5);
    CHECK(r.ended_by(ConfirmationReason::shutdown) == 10);
    CHECK(r.counters.pending_confirmations.load() == 0);

    r.service.end_all(ConfirmationReason::shutdown);  // nothing left
    for (auto const& done : all) CHECK(done->calls == 1);
}

TEST_CASE("confirmation_service: user_online sends the pending requests to a new session",
          "[confirmation_service]") {
    rig r;
    // alice is offline when asked: nobody gets the request yet.
    auto c1 = r.begin("c1", "alice", "t1", 10s);
    auto c2 = r.begin("c2", "alice", "t2", 10s);
    auto c3 = r.begin("c3", "bob", "t3", 10s);
    CHECK(r.service.size() == 3);

    auto a1 = r.connect(1, "alice");
    CHECK(a1->frame_count() == 0);
    r.service.user_online(a1);
    auto requests = requests_of(a1);
    REQUIRE(requests.size() == 2);
    std::set<std::string> ids;
    for (auto const& request : requests) {
        ids.insert(string_member(request, "callback_id"));
        CHECK(string_member(request, "user_id") == "alice");
        CHECK(request["timeout_s"].GetDouble() > 0);
        CHECK(request["timeout_s"].GetDouble() <= 10.0);
    }
    CHECK(ids == std::set<std::string>{"c1", "c2"});

    // A second tab gets them too; the first does not get them again.
    auto a2 = r.connect(2, "alice");
    r.service.user_online(a2);
    CHECK(requests_of(a2).size() == 2);
    CHECK(requests_of(a1).size() == 2);

    // Once one has ended, a new tab gets only what is still pending.
    r.answer(a1, "c1", true);
    REQUIRE(c1->calls == 1);
    auto a3 = r.connect(3, "alice");
    r.service.user_online(a3);
    auto later = requests_of(a3);
    REQUIRE(later.size() == 1);
    CHECK(string_member(later.front(), "callback_id") == "c2");

    CHECK(c2->calls == 0);
    CHECK(c3->calls == 0);
    r.service.end_all(ConfirmationReason::shutdown);
}

TEST_CASE("confirmation_service: resolve_on_disconnect ends a confirmation after the grace",
          "[confirmation_service][timer]") {
    rig r;
    r.options.resolve_on_disconnect = true;
    r.options.disconnect_grace = 30ms;
    auto a1 = r.connect(1, "alice");
    auto done = r.begin("c1", "alice", "t1", 60s);
    auto bob = r.begin("c2", "bob", "t2", 60s);  // bob never connected: ends too
    auto const offline_at = std::chrono::steady_clock::now();
    REQUIRE(r.connections.remove(1).user_went_offline);
    r.service.user_offline("alice");
    CHECK(done->calls == 0);  // not at once

    REQUIRE(run_until(r.io, [&] { return done->calls > 0 && bob->calls > 0; }));
    CHECK(std::chrono::steady_clock::now() - offline_at >= 30ms);
    for (auto const& ended : {done, bob}) {
        CHECK(ended->calls == 1);
        CHECK_FALSE(ended->ec);
        CHECK_FALSE(ended->confirmation.proceed);
        CHECK(ended->confirmation.reason == ConfirmationReason::disconnected);
    }
    CHECK(r.ended_by(ConfirmationReason::disconnected) == 2);
    CHECK(r.service.size() == 0);
}

TEST_CASE("confirmation_service: coming back within the grace keeps the confirmation",
          "[confirmation_service][timer]") {
    rig r;
    r.options.resolve_on_disconnect = true;
    r.options.disconnect_grace = 40ms;
    r.connect(1, "alice");
    auto done = r.begin("c1", "alice", "t1", 60s);
    REQUIRE(r.connections.remove(1).user_went_offline);
    r.service.user_offline("alice");

    auto a2 = r.connect(2, "alice");
    r.service.user_online(a2);
    CHECK(requests_of(a2).size() == 1);
    run_for(r.io, 250ms);  // well past the grace
    CHECK(done->calls == 0);
    CHECK(r.service.size() == 1);

    SECTION("going offline again starts a new grace") {
        REQUIRE(r.connections.remove(2).user_went_offline);
        r.service.user_offline("alice");
        REQUIRE(run_until(r.io, [&] { return done->calls > 0; }));
        CHECK(done->confirmation.reason == ConfirmationReason::disconnected);
    }
    SECTION("the answer still works") {
        r.answer(a2, "c1", true);
        REQUIRE(done->calls == 1);
        CHECK(done->confirmation.reason == ConfirmationReason::user);
    }
    CHECK(done->calls == 1);
}

TEST_CASE("confirmation_service: without resolve_on_disconnect a confirmation waits",
          "[confirmation_service][timer]") {
    rig r;
    r.options.resolve_on_disconnect = false;
    r.options.disconnect_grace = 10ms;
    r.connect(1, "alice");
    auto done = r.begin("c1", "alice", "t1", 60s);
    REQUIRE(r.connections.remove(1).user_went_offline);
    r.service.user_offline("alice");
    run_for(r.io, 100ms);
    CHECK(done->calls == 0);
    r.service.end_all(ConfirmationReason::shutdown);
    CHECK(done->calls == 1);
}

TEST_CASE("confirmation_service: an invalid request completes at once with invalid_message",
          "[confirmation_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    TaskStepResult result = sample_result();
    std::string user = "alice";
    SECTION("a result that is not JSON") { result.result = "{not json"; }
    SECTION("a result with trailing text") { result.result = "{} {}"; }
    SECTION("an empty result") { result.result = ""; }
    SECTION("a result with invalid UTF-8") { result.result = "\"\xff\""; }
    SECTION("a message with invalid UTF-8") { result.message = "caf\xc3"; }
    SECTION("a status with a surrogate") { result.status = "\xed\xa0\x80"; }
    SECTION("an error_message with invalid UTF-8") { result.error_message = "\xc0\xaf"; }
    SECTION("no user") { user = ""; }
    auto done = r.begin("c1", user, "t1", 10s, result);
    REQUIRE(done->calls == 1);
    CHECK(done->ec == wsmanager::error::invalid_message);
    CHECK_FALSE(done->confirmation.proceed);
    CHECK(r.service.size() == 0);
    CHECK(a1->frame_count() == 0);
    CHECK(r.counters.pending_confirmations.load() == 0);
}

TEST_CASE("confirmation_service: the limits on pending confirmations", "[confirmation_service]") {
    rig r;
    r.options.max_pending_confirmations_per_user = 2;
    r.options.max_pending_confirmations = 3;
    auto a1 = r.connect(1, "alice");
    auto c1 = r.begin("c1", "alice", "t1", 10s);
    auto c2 = r.begin("c2", "alice", "t1", 10s);
    auto c3 = r.begin("c3", "alice", "t1", 10s);  // a third for alice
    REQUIRE(c3->calls == 1);
    CHECK(c3->ec == wsmanager::error::too_many_pending);
    CHECK_FALSE(c3->confirmation.proceed);  // never an automatic yes
    auto c4 = r.begin("c4", "bob", "t2", 10s);
    CHECK(c4->calls == 0);
    auto c5 = r.begin("c5", "carol", "t3", 10s);  // a fourth in all
    REQUIRE(c5->calls == 1);
    CHECK(c5->ec == wsmanager::error::too_many_pending);
    CHECK(r.service.size() == 3);
    CHECK(requests_of(a1).size() == 2);  // a refused one is not asked
    CHECK(r.counters.confirmations_ended.load() == 0);

    r.answer(a1, "c1", true);  // an ending makes room
    auto c6 = r.begin("c6", "alice", "t1", 10s);
    CHECK(c6->calls == 0);
    CHECK(r.service.size() == 3);
    r.service.end_all(ConfirmationReason::shutdown);
    for (auto const& done : {c1, c2, c3, c4, c5, c6}) CHECK(done->calls == 1);
}

/// A directory that never completes record(): begin() then writes no request, which lets
/// a test see what begin() accepted without writing it.
class silent_directory final : public confirmation_directory {
public:
    void record(confirmation_record const&, record_done done) override {
        held.push_back(std::move(done));
    }
    void decide(std::string const&, std::string const&, UserConfirmation const& proposal,
                bool asked_here, decide_done done) override {
        done(asked_here ? decision{decision_verdict::won, proposal} : decision{});
    }
    void pending_elsewhere(std::string const&, pending_done done) override { done({}); }

    std::vector<record_done> held;  ///< never called
};

TEST_CASE("confirmation_service: a result with a NUL byte is refused at once",
          "[confirmation_service]") {
    // RapidJSON stops at a NUL byte, so invalid() accepts "{}" + NUL + more text as "{}".
    // Written into the request (frame_writer::raw_field), it trips RapidJSON's assertion
    // `json[i] != '\0'` in WriteRawValue (SIGABRT without NDEBUG), or, with NDEBUG, sends a
    // frame that is not JSON. Message::from_json refuses NUL bytes for this reason; begin()
    // should too. The silent directory keeps the request from being written here, so this
    // test fails instead of aborting the run.
    rig r;
    auto directory = std::make_shared<silent_directory>();
    r.service.set_directory(directory);
    auto a1 = r.connect(1, "alice");
    TaskStepResult result = sample_result();
    result.result = std::string("{}\0, \"injected\": 1", 18);
    REQUIRE(result.result.find('\0') == 2);
    auto done = r.begin("c1", "alice", "t1", 10s, result);
    CHECK(done->calls == 1);
    CHECK(done->ec == wsmanager::error::invalid_message);
    CHECK(r.service.size() == 0);
    r.service.end_all(ConfirmationReason::shutdown);  // the resolved frame has no result
    CHECK(done->calls == 1);
}

TEST_CASE("confirmation_service: timers do nothing once the owner's lifetime has expired",
          "[confirmation_service][timer]") {
    rig r;
    r.connect(1, "alice");
    auto done = r.begin("c1", "alice", "t1", 20ms);
    r.alive.reset();
    run_for(r.io, 150ms);
    CHECK(done->calls == 0);
    CHECK(r.service.size() == 1);
    r.service.end_all(ConfirmationReason::shutdown);  // not a timer: still ends it
    CHECK(done->calls == 1);
    CHECK(done->confirmation.reason == ConfirmationReason::shutdown);
}

TEST_CASE("confirmation_service: many confirmations, every ending mixed, each ends once",
          "[confirmation_service][timer][model]") {
    std::size_t const total = 500;
    rig r;
    r.options.resolve_on_disconnect = true;
    r.options.disconnect_grace = 25ms;
    r.options.proceed_on_timeout = false;
    r.options.max_pending_confirmations_per_user = total;  // no refusal in this mix

    std::mt19937 random(424242);
    auto chance = [&](int percent) {
        return std::uniform_int_distribution<int>(0, 99)(random) < percent;
    };
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
    };

    std::vector<std::string> const users{"u0", "u1", "u2", "u3", "u4", "u5"};
    std::vector<std::string> const tasks{"t0", "t1", "t2", "t3", "t4",  "t5",
                                         "t6", "t7", "t8", "t9", "t10", "t11"};
    std::map<std::string, std::vector<fake_ptr>> online;  // the model of who is connected
    std::vector<fake_ptr> every_session;
    std::uint64_t next_session = 1;
    auto connect = [&](std::string const& user) {
        auto session = r.connect(next_session++, user);
        online[user].push_back(session);
        every_session.push_back(session);
        return session;
    };
    for (std::size_t i = 0; i < 4; ++i) {
        connect(users[i]);
        if (i % 2 == 0) connect(users[i]);
    }

    std::vector<std::string> ids;
    std::map<std::string, std::string> user_of;
    // At each ending: the sessions of the user then, which must each get one resolved frame.
    std::map<std::string, std::set<std::uint64_t>> told;
    r.on_complete = [&](std::string const& id) {
        REQUIRE_FALSE(told.contains(id));
        auto& sessions = told[id];
        for (auto const& session : r.connections.of_user(user_of.at(id))) {
            sessions.insert(session->id());
        }
    };
    std::size_t answered = 0, withdrawn = 0, forbidden = 0, late = 0;

    auto pending = [&](std::string const& id) { return r.service.entries().find(id) != nullptr; };
    auto sender_for = [&](std::string const& user) -> session_ptr {
        auto& tabs = online[user];
        if (tabs.empty()) return make_fake(100000 + next_session++, user);  // not registered
        return tabs[pick(tabs.size())];
    };

    // Until the last one has begun, which is then still pending for end_all.
    while (ids.size() < total) {
        int const action = std::uniform_int_distribution<int>(0, 99)(random);
        if (action < 30) {
            auto id = "cb" + std::to_string(ids.size());
            auto const& user = users[pick(users.size())];
            auto timeout = chance(50) ? 60s : std::chrono::milliseconds(5 + pick(80));
            ids.push_back(id);
            user_of[id] = user;
            r.begin(id, user, tasks[pick(tasks.size())], timeout);
        } else if (ids.empty()) {
            continue;
        } else if (action < 45) {  // the user answers (maybe late)
            auto const& id = ids[pick(ids.size())];
            bool const was_pending = pending(id);
            bool const proceed = chance(50);
            auto const rejected_before = r.rejections.size();
            r.answer(sender_for(user_of[id]), id, proceed, "fb-" + id);
            auto const& done = *r.outcomes.at(id);
            if (was_pending) {
                ++answered;
                REQUIRE(r.rejections.size() == rejected_before);
                REQUIRE(done.calls == 1);
                REQUIRE_FALSE(done.ec);
                REQUIRE(done.confirmation.reason == ConfirmationReason::user);
                REQUIRE(done.confirmation.proceed == proceed);
                REQUIRE(done.confirmation.feedback == std::optional<std::string>("fb-" + id));
            } else {
                ++late;
                REQUIRE(r.rejections.size() == rejected_before + 1);
                REQUIRE(r.rejections.back().code == ErrorCode::unknown_callback);
            }
        } else if (action < 50) {  // someone else answers
            auto const& id = ids[pick(ids.size())];
            bool const was_pending = pending(id);
            auto const calls_before = r.outcomes.at(id)->calls;
            auto other = users[pick(users.size())];
            if (other == user_of[id]) other = "intruder";
            r.answer(sender_for(other), id, true);
            REQUIRE_FALSE(r.rejections.empty());
            REQUIRE(r.rejections.back().code ==
                    (was_pending ? ErrorCode::forbidden : ErrorCode::unknown_callback));
            REQUIRE(r.outcomes.at(id)->calls == calls_before);
            REQUIRE(pending(id) == was_pending);
            forbidden += was_pending ? 1 : 0;
        } else if (action < 58) {  // the host withdraws
            auto const& id = ids[pick(ids.size())];
            bool const was_pending = pending(id);
            r.service.withdraw(id);
            REQUIRE_FALSE(pending(id));
            if (was_pending) {
                ++withdrawn;
                auto const& done = *r.outcomes.at(id);
                REQUIRE(done.calls == 1);
                REQUIRE(done.ec == asio::error::operation_aborted);
                REQUIRE(done.confirmation.reason == ConfirmationReason::cancelled);
            }
        } else if (action < 62) {  // a task is cancelled
            auto const& task = tasks[pick(tasks.size())];
            auto const of_task = r.service.entries().ids_of_task(task);
            r.service.cancel_task(task);
            REQUIRE(r.service.entries().ids_of_task(task).empty());
            for (auto const& id : of_task) {
                auto const& done = *r.outcomes.at(id);
                REQUIRE(done.calls == 1);
                REQUIRE_FALSE(done.ec);
                REQUIRE(done.confirmation.reason == ConfirmationReason::cancelled);
            }
        } else if (action < 72) {  // a user's last tab closes
            auto const& user = users[pick(users.size())];
            auto& tabs = online[user];
            if (tabs.empty()) continue;
            for (std::size_t i = 0; i < tabs.size(); ++i) {
                auto removed = r.connections.remove(tabs[i]->id());
                REQUIRE(removed.session == tabs[i]);
                REQUIRE(removed.user_went_offline == (i + 1 == tabs.size()));
            }
            tabs.clear();
            r.service.user_offline(user);
        } else if (action < 84) {  // a user opens a tab
            auto const& user = users[pick(users.size())];
            auto const waiting = r.service.entries().ids_of_user(user);
            auto session = connect(user);
            r.service.user_online(session);
            auto requests = requests_of(session);
            REQUIRE(requests.size() == waiting.size());
            std::set<std::string> got, want(waiting.begin(), waiting.end());
            for (auto const& request : requests) got.insert(string_member(request, "callback_id"));
            REQUIRE(got == want);
        } else {  // time passes
            run_for(r.io, std::chrono::milliseconds(1 + pick(3)));
        }
    }

    REQUIRE(pending(ids.back()));
    r.service.end_all(ConfirmationReason::shutdown);
    run_for(r.io, 1s);  // the cancelled timers' handlers (returns once there is no work)

    // Every completion ran exactly once.
    REQUIRE(ids.size() == total);
    std::map<ConfirmationReason, std::size_t> by_reason;
    for (auto const& id : ids) {
        INFO("confirmation " << id);
        auto const& done = *r.outcomes.at(id);
        REQUIRE(done.calls == 1);
        ++by_reason[done.confirmation.reason];
        if (done.confirmation.reason != ConfirmationReason::user) {
            CHECK_FALSE(done.confirmation.proceed);  // proceed_on_timeout is false here
        }
        if (done.confirmation.reason == ConfirmationReason::timeout ||
            done.confirmation.reason == ConfirmationReason::disconnected) {
            CHECK_FALSE(done.ec);
        }
    }
    CHECK(r.service.size() == 0);
    CHECK(r.service.entries().indexed_users() == 0);
    CHECK(r.service.entries().indexed_tasks() == 0);
    CHECK(r.counters.pending_confirmations.load() == 0);
    CHECK(r.counters.pending_callbacks.load() == 0);
    CHECK(r.counters.confirmations_ended.load() == total);
    std::uint64_t counted = 0;
    for (std::size_t i = 0; i < wsmanager::confirmation_reason_count; ++i) {
        auto const reason = static_cast<ConfirmationReason>(i);
        INFO("reason " << wsmanager::to_string(reason));
        CHECK(r.ended_by(reason) == by_reason[reason]);
        counted += r.ended_by(reason);
    }
    CHECK(counted == total);
    CHECK(by_reason[ConfirmationReason::user] == answered);
    // The mix did reach the endings it is about.
    CHECK(answered > 0);
    CHECK(withdrawn > 0);
    CHECK(forbidden > 0);
    CHECK(late > 0);
    CHECK(by_reason[ConfirmationReason::cancelled] > withdrawn);  // withdrawn + task cancels
    CHECK(by_reason[ConfirmationReason::shutdown] > 0);
    CHECK(by_reason[ConfirmationReason::timeout] > 0);
    CHECK(by_reason[ConfirmationReason::disconnected] > 0);

    // Each session of the user at the ending heard it once; no other session did.
    REQUIRE(told.size() == total);
    for (auto const& session : every_session) {
        std::map<std::string, int> heard;
        for (auto const& frame : session->frames_of_type("confirmation_resolved")) {
            ++heard[string_member(parse_json(frame), "callback_id")];
        }
        for (auto const& [id, times] : heard) {
            INFO("session " << session->id() << " confirmation " << id);
            CHECK(times == 1);
            CHECK(told.at(id).contains(session->id()));
            CHECK(user_of.at(id) == session->user_id());
        }
        for (auto const& [id, sessions] : told) {
            if (sessions.contains(session->id())) {
                INFO("session " << session->id() << " missed " << id);
                CHECK(heard.contains(id));
            }
        }
    }
}

/// A directory that decides as the test says (a cluster's view of this node).
class scripted_directory final : public confirmation_directory {
public:
    struct proposal_seen {
        std::string callback_id;
        std::string user_id;
        UserConfirmation proposal;
        bool asked_here;
    };

    void record(confirmation_record const& confirmation, record_done done) override {
        recorded.push_back(confirmation);
        done(record_error);
    }

    void decide(std::string const& callback_id, std::string const& user_id,
                UserConfirmation const& proposal, bool asked_here, decide_done done) override {
        proposals.push_back({callback_id, user_id, proposal, asked_here});
        done(verdict ? *verdict : decision{decision_verdict::won, proposal});
    }

    void pending_elsewhere(std::string const& user_id, pending_done done) override {
        auto it = elsewhere.find(user_id);
        done(it == elsewhere.end() ? std::vector<confirmation_record>{} : it->second);
    }

    std::error_code record_error;
    std::optional<decision> verdict;  ///< none: the proposal wins
    std::map<std::string, std::vector<confirmation_record>> elsewhere;
    std::vector<confirmation_record> recorded;
    std::vector<proposal_seen> proposals;
};

TEST_CASE("confirmation_service: a directory's lost verdict ends with the winner",
          "[confirmation_service][directory]") {
    rig r;
    auto directory = std::make_shared<scripted_directory>();
    r.service.set_directory(directory);
    auto a1 = r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto done = r.begin("c1", "alice", "t1", 10s);
    REQUIRE(directory->recorded.size() == 1);
    CHECK(directory->recorded[0].callback_id == "c1");
    CHECK(directory->recorded[0].user_id == "alice");
    CHECK(directory->recorded[0].task_id == "t1");
    CHECK(directory->recorded[0].expires_at > std::chrono::system_clock::now());
    CHECK(requests_of(a1).size() == 1);

    UserConfirmation const winner{false, std::string("answered on another node"),
                                  ConfirmationReason::user};
    directory->verdict = decision{decision_verdict::lost, winner};

    SECTION("the user's answer loses") {
        r.answer(a1, "c1", true, "mine");
        REQUIRE(directory->proposals.size() == 1);
        CHECK(directory->proposals[0].callback_id == "c1");
        CHECK(directory->proposals[0].user_id == "alice");
        CHECK(directory->proposals[0].asked_here);
        CHECK(directory->proposals[0].proposal.proceed);
        CHECK(directory->proposals[0].proposal.feedback == std::optional<std::string>("mine"));

        REQUIRE(done->calls == 1);
        CHECK_FALSE(done->ec);
        CHECK_FALSE(done->confirmation.proceed);
        CHECK(done->confirmation.feedback == winner.feedback);
        CHECK(done->confirmation.reason == ConfirmationReason::user);
        REQUIRE(r.rejections.size() == 1);
        CHECK(r.rejections[0].code == ErrorCode::unknown_callback);
        for (auto const& session : {a1, a2}) {
            auto resolved = resolved_of(session, "c1");
            REQUIRE(resolved.size() == 1);
            check_resolved(resolved.front(), "c1", "t1", false, ConfirmationReason::user,
                           winner.feedback);
        }
    }
    SECTION("this node's withdraw loses: the winner, without operation_aborted") {
        r.service.withdraw("c1");
        REQUIRE(done->calls == 1);
        CHECK_FALSE(done->ec);
        CHECK(done->confirmation.feedback == winner.feedback);
        CHECK(done->confirmation.reason == ConfirmationReason::user);
    }
    CHECK(r.service.size() == 0);
}

TEST_CASE("confirmation_service: what else a directory may answer",
          "[confirmation_service][directory]") {
    rig r;
    auto directory = std::make_shared<scripted_directory>();
    r.service.set_directory(directory);
    auto a1 = r.connect(1, "alice");

    SECTION("a failed record ends the confirmation with its error, unasked") {
        directory->record_error = std::make_error_code(std::errc::network_unreachable);
        auto done = r.begin("c1", "alice", "t1", 10s);
        REQUIRE(done->calls == 1);
        CHECK(done->ec == std::make_error_code(std::errc::network_unreachable));
        CHECK(done->confirmation.reason == ConfirmationReason::cancelled);
        CHECK(requests_of(a1).empty());
        CHECK(r.service.size() == 0);
    }
    SECTION("unavailable: the answer is refused and the confirmation stays") {
        auto done = r.begin("c1", "alice", "t1", 10s);
        directory->verdict = decision{decision_verdict::unavailable, {}};
        r.answer(a1, "c1", true);
        REQUIRE(r.rejections.size() == 1);
        CHECK(r.rejections[0].code == ErrorCode::unavailable);
        CHECK(done->calls == 0);
        CHECK(r.service.size() == 1);
        directory->verdict.reset();
        r.answer(a1, "c1", true);
        CHECK(done->calls == 1);
    }
    SECTION("forbidden by the directory") {
        auto done = r.begin("c1", "alice", "t1", 10s);
        directory->verdict = decision{decision_verdict::forbidden, {}};
        r.answer(a1, "c1", true);
        REQUIRE(r.rejections.size() == 1);
        CHECK(r.rejections[0].code == ErrorCode::forbidden);
        CHECK(done->calls == 0);
        directory->verdict.reset();
        r.service.end_all(ConfirmationReason::shutdown);
        CHECK(done->calls == 1);
    }
    SECTION("an answer for a confirmation asked on another node") {
        directory->verdict =
            decision{decision_verdict::won, {true, std::nullopt, ConfirmationReason::user}};
        r.answer(a1, "remote-1", true);
        REQUIRE(directory->proposals.size() == 1);
        CHECK_FALSE(directory->proposals[0].asked_here);
        CHECK(r.rejections.empty());  // won elsewhere: nothing to end here, nothing to refuse
    }
    SECTION("a new session also gets what other nodes asked") {
        auto local = r.begin("c1", "alice", "t1", 10s);
        confirmation_record remote;
        remote.callback_id = "remote-1";
        remote.user_id = "alice";
        remote.task_id = "t7";
        remote.step = 2;
        remote.result = sample_result();
        remote.expires_at = std::chrono::system_clock::now() + 30s;
        directory->elsewhere["alice"] = {remote};
        auto a2 = r.connect(2, "alice");
        r.service.user_online(a2);
        auto requests = requests_of(a2);
        REQUIRE(requests.size() == 2);
        std::map<std::string, double> timeouts;
        for (auto const& request : requests) {
            timeouts[string_member(request, "callback_id")] = request["timeout_s"].GetDouble();
        }
        REQUIRE(timeouts.size() == 2);
        CHECK(timeouts.at("c1") <= 10.0);
        CHECK(timeouts.at("remote-1") > 10.0);
        CHECK(timeouts.at("remote-1") <= 30.0);
        CHECK(local->calls == 0);
        r.service.end_all(ConfirmationReason::shutdown);
    }
}

}  // namespace confirm_test
