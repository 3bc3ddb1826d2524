// SPDX-License-Identifier: BSL-1.0
// detail/heartbeat_service.hpp on an io_context this test runs itself: frames to the user's
// sessions at each tick, and every way a heartbeat ends, once.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <catch2/catch.hpp>

#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/heartbeat_service.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/options.hpp>

#include "fake_session.hpp"

namespace heartbeat_test {

using namespace std::chrono_literals;
using wsmanager::detail::heartbeat_service;
using wsmanager::detail::pending_heartbeat;
using wsmanager_fake::fake_ptr;
using wsmanager_fake::make_fake;
using wsmanager_fake::parse_json;
using wsmanager_fake::run_for;
using wsmanager_fake::run_until;
using wsmanager_fake::string_member;

struct ending {
    int calls = 0;
    std::error_code ec;
};

struct rig {
    asio::io_context io;
    wsmanager::Options options;
    wsmanager::detail::connection_registry connections;
    wsmanager::detail::topic_registry topics;
    wsmanager::detail::manager_counters counters;
    wsmanager::detail::delivery deliver{connections, topics, counters};
    std::shared_ptr<int> alive = std::make_shared<int>(1);
    std::weak_ptr<void const> lifetime = alive;
    heartbeat_service service{asio::make_strand(io), options, deliver, counters, lifetime};

    fake_ptr connect(std::uint64_t id, std::string user) {
        auto session = make_fake(id, std::move(user));
        REQUIRE(connections.add(session));
        return session;
    }

    std::shared_ptr<ending> start(std::string id, std::string user, std::string task,
                                  std::chrono::milliseconds interval) {
        auto record = std::make_shared<ending>();
        service.start(pending_heartbeat{std::move(id), std::move(user), std::move(task), interval,
                                        nullptr, [record](std::error_code ec) {
                                            ++record->calls;
                                            record->ec = ec;
                                        }});
        return record;
    }
};

TEST_CASE("heartbeat_service: frames to the user's sessions at each tick",
          "[heartbeat_service][timer]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto b1 = r.connect(3, "bob");
    auto done = r.start("h1", "alice", "t1", 20ms);

    // One at once.
    CHECK(a1->count_of_type("heartbeat") == 1);
    CHECK(a2->count_of_type("heartbeat") == 1);
    CHECK(r.service.size() == 1);
    CHECK(r.counters.running_heartbeats.load() == 1);

    run_for(r.io, 60ms);  // about three intervals
    // At least one more tick; wait (bounded) in case the machine is busy.
    REQUIRE(run_until(r.io, [&] {
        return a1->count_of_type("heartbeat") >= 2 && a2->count_of_type("heartbeat") >= 2;
    }));
    CHECK(b1->frame_count() == 0);
    CHECK(r.counters.heartbeats_sent.load() >= 2);
    for (auto const& frame : a1->frames()) {
        auto document = parse_json(frame);
        CHECK(string_member(document, "type") == "heartbeat");
        CHECK(string_member(document, "user_id") == "alice");
        CHECK(string_member(document, "task_id") == "t1");
        CHECK(document["timestamp"].IsNumber());
    }
    CHECK(done->calls == 0);

    r.service.stop("h1", asio::error::operation_aborted);
    CHECK(done->calls == 1);
}

TEST_CASE("heartbeat_service: stop ends it once and the frames stop",
          "[heartbeat_service][timer]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto done = r.start("h1", "alice", "t1", 20ms);
    r.service.stop("h1", asio::error::operation_aborted);
    REQUIRE(done->calls == 1);
    CHECK(done->ec == asio::error::operation_aborted);
    CHECK(r.service.size() == 0);
    CHECK(r.counters.running_heartbeats.load() == 0);

    auto const frames = a1->frame_count();
    run_for(r.io, 100ms);  // the cancelled timer must not beat again
    CHECK(a1->frame_count() == frames);

    r.service.stop("h1", asio::error::operation_aborted);  // again: nothing
    r.service.stop("never", asio::error::operation_aborted);
    CHECK(done->calls == 1);
}

TEST_CASE("heartbeat_service: cancel_task and end_all", "[heartbeat_service][timer]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto h1 = r.start("h1", "alice", "t1", 20ms);
    auto h2 = r.start("h2", "alice", "t1", 20ms);
    auto h3 = r.start("h3", "alice", "t2", 20ms);
    auto h4 = r.start("h4", "bob", "t3", 20ms);
    CHECK(r.service.size() == 4);
    CHECK(r.counters.running_heartbeats.load() == 4);

    r.service.cancel_task("t1");
    for (auto const& done : {h1, h2}) {
        REQUIRE(done->calls == 1);
        CHECK(done->ec == wsmanager::error::task_cancelled);
    }
    CHECK(h3->calls == 0);
    CHECK(h4->calls == 0);
    CHECK(r.service.size() == 2);
    CHECK(r.counters.running_heartbeats.load() == 2);

    // The others still beat.
    auto const t2_frames = a1->frame_count();
    REQUIRE(run_until(r.io, [&] { return a1->frame_count() > t2_frames; }));

    r.service.end_all(wsmanager::error::shutting_down);
    for (auto const& done : {h3, h4}) {
        REQUIRE(done->calls == 1);
        CHECK(done->ec == wsmanager::error::shutting_down);
    }
    for (auto const& done : {h1, h2}) CHECK(done->calls == 1);
    CHECK(r.service.size() == 0);
    CHECK(r.service.entries().indexed_users() == 0);
    CHECK(r.service.entries().indexed_tasks() == 0);
    CHECK(r.counters.running_heartbeats.load() == 0);

    r.service.cancel_task("t2");
    r.service.end_all(wsmanager::error::shutting_down);
    for (auto const& done : {h1, h2, h3, h4}) CHECK(done->calls == 1);
}

TEST_CASE("heartbeat_service: invalid arguments complete at once", "[heartbeat_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    std::string user = "alice";
    std::string task = "t1";
    auto interval = std::chrono::milliseconds(20);
    SECTION("interval 0") { interval = 0ms; }
    SECTION("negative interval") { interval = -5ms; }
    SECTION("no user") { user = ""; }
    SECTION("no task") { task = ""; }
    SECTION("a user id that is not UTF-8") { user = "al\xffice"; }
    SECTION("a task id that is not UTF-8") { task = "t\xc3"; }
    auto done = r.start("h1", user, task, interval);
    REQUIRE(done->calls == 1);
    CHECK(done->ec == asio::error::invalid_argument);
    CHECK(r.service.size() == 0);
    CHECK(a1->frame_count() == 0);
    CHECK(r.counters.running_heartbeats.load() == 0);
}

TEST_CASE("heartbeat_service: the limits on running heartbeats", "[heartbeat_service]") {
    rig r;
    r.options.max_pending_confirmations_per_user = 2;
    r.options.max_pending_confirmations = 3;
    auto h1 = r.start("h1", "alice", "t1", 1h);
    auto h2 = r.start("h2", "alice", "t2", 1h);
    auto h3 = r.start("h3", "alice", "t3", 1h);  // a third for alice
    REQUIRE(h3->calls == 1);
    CHECK(h3->ec == wsmanager::error::too_many_pending);
    auto h4 = r.start("h4", "bob", "t4", 1h);
    CHECK(h4->calls == 0);
    auto h5 = r.start("h5", "carol", "t5", 1h);  // a fourth in all
    REQUIRE(h5->calls == 1);
    CHECK(h5->ec == wsmanager::error::too_many_pending);
    CHECK(r.service.size() == 3);
    CHECK(r.counters.running_heartbeats.load() == 3);

    // An ending makes room.
    r.service.stop("h1", asio::error::operation_aborted);
    auto h6 = r.start("h6", "alice", "t6", 1h);
    CHECK(h6->calls == 0);
    CHECK(r.service.size() == 3);
    r.service.end_all(wsmanager::error::shutting_down);
    for (auto const& done : {h1, h2, h3, h4, h5, h6}) CHECK(done->calls == 1);
}

TEST_CASE("heartbeat_service: beats for an offline user and knows whose task it is",
          "[heartbeat_service][timer]") {
    rig r;
    auto done = r.start("h1", "alice", "t1", 20ms);
    CHECK(r.counters.heartbeats_sent.load() == 1);  // counted per tick, whoever is online
    REQUIRE(run_until(r.io, [&] { return r.counters.heartbeats_sent.load() >= 2; }));
    CHECK(r.service.task_has_other_user("t1", "bob"));
    CHECK_FALSE(r.service.task_has_other_user("t1", "alice"));
    CHECK_FALSE(r.service.task_has_other_user("t9", "bob"));

    // alice connects: the next ticks reach her.
    auto a1 = r.connect(1, "alice");
    REQUIRE(run_until(r.io, [&] { return a1->count_of_type("heartbeat") >= 1; }));
    r.service.stop("h1", asio::error::operation_aborted);
    CHECK(done->calls == 1);
}

TEST_CASE("heartbeat_service: no tick once the owner's lifetime has expired",
          "[heartbeat_service][timer]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto done = r.start("h1", "alice", "t1", 20ms);
    REQUIRE(a1->frame_count() == 1);
    r.alive.reset();
    run_for(r.io, 100ms);
    CHECK(a1->frame_count() == 1);
    r.service.end_all(wsmanager::error::shutting_down);
    CHECK(done->calls == 1);
}

}  // namespace heartbeat_test
