// SPDX-License-Identifier: BSL-1.0
// detail/task_cancellation.hpp with the real confirmation and heartbeat services: who may
// cancel, the host's verdict, and what an accepted cancel ends and tells.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <catch2/catch.hpp>

#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/confirmation_service.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/heartbeat_service.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/task_cancellation.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>
#include <wsmanager/protocol.hpp>

#include "fake_session.hpp"

namespace cancel_test {

using namespace std::chrono_literals;
using wsmanager::CancelRequest;
using wsmanager::ConfirmationReason;
using wsmanager::UserConfirmation;
using wsmanager::detail::client_request;
using wsmanager::detail::pending_confirmation;
using wsmanager::detail::pending_heartbeat;
using wsmanager::detail::session_ptr;
using wsmanager::detail::codec::CancelAsk;
using wsmanager::protocol::ErrorCode;
using wsmanager_fake::fake_ptr;
using wsmanager_fake::make_fake;
using wsmanager_fake::parse_json;
using wsmanager_fake::string_member;

struct confirmation_end {
    int calls = 0;
    std::error_code ec;
    UserConfirmation confirmation;
};
struct heartbeat_end {
    int calls = 0;
    std::error_code ec;
};
struct rejection {
    ErrorCode code;
    std::string message;
};

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
    wsmanager::detail::confirmation_service confirmations{
        asio::make_strand(io), options, connections, deliver, counters, log, lifetime};
    wsmanager::detail::heartbeat_service heartbeats{asio::make_strand(io), options, deliver,
                                                    counters, lifetime};
    wsmanager::detail::host_hooks hooks;
    wsmanager::detail::task_cancellation cancellation{confirmations, heartbeats, deliver, hooks,
                                                      log};
    std::vector<rejection> rejections;

    ~rig() {
        confirmations.end_all(ConfirmationReason::shutdown);
        heartbeats.end_all(wsmanager::error::shutting_down);
    }

    fake_ptr connect(std::uint64_t id, std::string user) {
        auto session = make_fake(id, std::move(user));
        REQUIRE(connections.add(session));
        return session;
    }

    std::shared_ptr<confirmation_end> confirm(std::string id, std::string user, std::string task) {
        auto record = std::make_shared<confirmation_end>();
        pending_confirmation entry;
        entry.id = std::move(id);
        entry.user_id = std::move(user);
        entry.task_id = std::move(task);
        entry.created = pending_confirmation::clock::now();
        entry.deadline = entry.created + 60s;
        entry.complete = [record](std::error_code ec, UserConfirmation confirmation) {
            ++record->calls;
            record->ec = ec;
            record->confirmation = std::move(confirmation);
        };
        confirmations.begin(std::move(entry));
        return record;
    }

    std::shared_ptr<heartbeat_end> beat(std::string id, std::string user, std::string task) {
        auto record = std::make_shared<heartbeat_end>();
        heartbeats.start(pending_heartbeat{std::move(id), std::move(user), std::move(task), 1h,
                                           nullptr, [record](std::error_code ec) {
                                               ++record->calls;
                                               record->ec = ec;
                                           }});
        return record;
    }

    void cancel(session_ptr sender, std::string task,
                std::optional<std::string> user = std::nullopt) {
        cancellation.request(client_request{std::move(sender), nullptr,
                                            [this](ErrorCode code, std::string_view message) {
                                                rejections.push_back({code, std::string(message)});
                                            }},
                             CancelAsk{std::move(task), std::move(user)});
    }
};

std::size_t cancelled_frames(fake_ptr const& session) {
    return session->count_of_type("task_cancelled");
}

TEST_CASE("task_cancellation: an anonymous connection cannot cancel", "[task_cancellation]") {
    rig r;
    auto anon = r.connect(1, "");
    auto a1 = r.connect(2, "alice");
    auto c1 = r.confirm("c1", "alice", "t1");
    int asked = 0;
    r.cancellation.set_handler([&](CancelRequest const&) {
        ++asked;
        return true;
    });
    r.cancel(anon, "t1");
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::forbidden);
    CHECK(asked == 0);
    CHECK(c1->calls == 0);
    CHECK(cancelled_frames(a1) == 0);
    CHECK(cancelled_frames(anon) == 0);
}

TEST_CASE("task_cancellation: another user's task is forbidden and nothing ends",
          "[task_cancellation]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto b1 = r.connect(2, "bob");
    int asked = 0;
    r.cancellation.set_handler([&](CancelRequest const&) {
        ++asked;
        return true;
    });
    // alice has her own confirmation and heartbeat of t1 in every case.
    auto alice_confirmation = r.confirm("c1", "alice", "t1");
    auto alice_heartbeat = r.beat("h1", "alice", "t1");
    std::shared_ptr<confirmation_end> bob_confirmation;
    std::shared_ptr<heartbeat_end> bob_heartbeat;
    std::optional<std::string> named_user;

    SECTION("bob has a pending confirmation of the task") {
        bob_confirmation = r.confirm("c2", "bob", "t1");
    }
    SECTION("bob has a heartbeat of the task") { bob_heartbeat = r.beat("h2", "bob", "t1"); }
    SECTION("the frame names another user") { named_user = "bob"; }

    r.cancel(a1, "t1", named_user);
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::forbidden);
    CHECK(r.rejections[0].message == "Cannot cancel another user's task");
    CHECK(asked == 0);  // refused before the host is asked
    CHECK(alice_confirmation->calls == 0);
    CHECK(alice_heartbeat->calls == 0);
    if (bob_confirmation) CHECK(bob_confirmation->calls == 0);
    if (bob_heartbeat) CHECK(bob_heartbeat->calls == 0);
    CHECK(cancelled_frames(a1) == 0);
    CHECK(cancelled_frames(b1) == 0);
}

TEST_CASE("task_cancellation: the host's no (or its exception) refuses and nothing ends",
          "[task_cancellation]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto c1 = r.confirm("c1", "alice", "t1");
    auto h1 = r.beat("h1", "alice", "t1");
    std::optional<CancelRequest> seen;
    SECTION("false") {
        r.cancellation.set_handler([&](CancelRequest const& request) {
            seen = request;
            return false;
        });
    }
    SECTION("an exception") {
        r.cancellation.set_handler([&](CancelRequest const& request) -> bool {
            seen = request;
            throw std::runtime_error("database down");
        });
    }
    r.cancel(a1, "t1");
    REQUIRE(seen.has_value());
    CHECK(seen->user_id == "alice");
    CHECK(seen->task_id == "t1");
    CHECK(seen->connection_id == 1);
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::forbidden);
    CHECK(c1->calls == 0);
    CHECK(h1->calls == 0);
    CHECK(r.confirmations.size() == 1);
    CHECK(r.heartbeats.size() == 1);
    CHECK(cancelled_frames(a1) == 0);
}

TEST_CASE("task_cancellation: an accepted cancel ends the task and tells everyone once",
          "[task_cancellation]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto b1 = r.connect(3, "bob");
    auto carol = r.connect(4, "carol");
    auto anon = r.connect(5, "");
    using subscribed = wsmanager::detail::topic_registry::subscribe_result;
    // a1 is alice's and a subscriber of task:t1: it must get one frame, not two.
    for (auto const& s : {a1, b1, anon}) {
        REQUIRE(r.topics.subscribe(s, "task:t1", 10, 1000) == subscribed::subscribed);
    }
    REQUIRE(r.topics.subscribe(carol, "task:t2", 10, 1000) == subscribed::subscribed);

    auto c1 = r.confirm("c1", "alice", "t1");
    auto c2 = r.confirm("c2", "alice", "t1");
    auto c3 = r.confirm("c3", "alice", "t2");
    auto h1 = r.beat("h1", "alice", "t1");
    auto h2 = r.beat("h2", "alice", "t2");

    bool with_handler = GENERATE(false, true);
    int asked = 0;
    if (with_handler) {
        r.cancellation.set_handler([&](CancelRequest const&) {
            ++asked;
            return true;
        });
    }

    r.cancel(a2, "t1", std::string("alice"));  // naming oneself is allowed
    CHECK(r.rejections.empty());
    CHECK(asked == (with_handler ? 1 : 0));
    for (auto const& c : {c1, c2}) {
        REQUIRE(c->calls == 1);
        CHECK_FALSE(c->ec);
        CHECK_FALSE(c->confirmation.proceed);
        CHECK(c->confirmation.reason == ConfirmationReason::cancelled);
    }
    REQUIRE(h1->calls == 1);
    CHECK(h1->ec == wsmanager::error::task_cancelled);
    CHECK(c3->calls == 0);  // the other task goes on
    CHECK(h2->calls == 0);

    for (auto const& s : {a1, a2, b1, anon}) {
        INFO("session " << s->id());
        auto frames = s->frames_of_type("task_cancelled");
        REQUIRE(frames.size() == 1);
        auto frame = parse_json(frames.front());
        CHECK(string_member(frame, "task_id") == "t1");
        CHECK(string_member(frame, "user_id") == "alice");
        CHECK(frame["timestamp"].IsNumber());
    }
    CHECK(cancelled_frames(carol) == 0);
}

TEST_CASE("task_cancellation: without a handler only a task known as the user's cancels",
          "[task_cancellation]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto b1 = r.connect(2, "bob");
    REQUIRE(r.topics.subscribe(b1, "task:t1", 10, 1000) ==
            wsmanager::detail::topic_registry::subscribe_result::subscribed);
    // Nothing pending for t1: the manager cannot tell it is alice's.
    r.cancel(a1, "t1");
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::forbidden);
    CHECK(r.rejections[0].message == "Cancel refused by the server");
    CHECK(cancelled_frames(a1) == 0);
    CHECK(cancelled_frames(b1) == 0);

    // A heartbeat of hers makes it hers.
    auto h1 = r.beat("h1", "alice", "t1");
    r.cancel(a1, "t1");
    CHECK(r.rejections.size() == 1);
    CHECK(h1->calls == 1);
    CHECK(h1->ec == wsmanager::error::task_cancelled);
    CHECK(cancelled_frames(a1) == 1);
    CHECK(cancelled_frames(b1) == 1);
}

TEST_CASE("task_cancellation: once the host hooks are closed, the handler is not asked",
          "[task_cancellation]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto c1 = r.confirm("c1", "alice", "t1");
    int asked = 0;
    r.cancellation.set_handler([&](CancelRequest const&) {
        ++asked;
        return true;
    });
    r.hooks.close_and_wait();
    r.cancel(a1, "t1");
    CHECK(asked == 0);
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0].code == ErrorCode::forbidden);
    CHECK(c1->calls == 0);
    CHECK(cancelled_frames(a1) == 0);
}

}  // namespace cancel_test
