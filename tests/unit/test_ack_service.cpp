// SPDX-License-Identifier: BSL-1.0
// detail/ack_service.hpp on an io_context this test runs itself: the framed message reaches
// the user's sessions, only that user's ack completes it, and every other ending, once.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <catch2/catch.hpp>

#include <wsmanager/detail/ack_service.hpp>
#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/options.hpp>
#include <wsmanager/protocol.hpp>

#include "fake_session.hpp"

namespace ack_test {

using namespace std::chrono_literals;
using wsmanager::Message;
using wsmanager::detail::ack_service;
using wsmanager::detail::client_request;
using wsmanager::detail::session_ptr;
using wsmanager::protocol::ErrorCode;
using wsmanager_fake::fake_ptr;
using wsmanager_fake::make_fake;
using wsmanager_fake::parse_json;
using wsmanager_fake::run_for;
using wsmanager_fake::run_until;
using wsmanager_fake::string_member;

struct ending {
    int calls = 0;
    std::error_code ec;
    bool acked = false;
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
    ack_service service{asio::make_strand(io), options, deliver, counters, lifetime};
    std::vector<ErrorCode> rejections;

    fake_ptr connect(std::uint64_t id, std::string user) {
        auto session = make_fake(id, std::move(user));
        REQUIRE(connections.add(session));
        return session;
    }

    std::shared_ptr<ending> start(std::string id, std::string user,
                                  std::chrono::milliseconds timeout,
                                  std::string_view json = R"({"type":"order","n":1})") {
        auto record = std::make_shared<ending>();
        service.start(std::move(id), std::move(user), Message::from_json(json), timeout,
                      [record](std::error_code ec, bool acked) {
                          ++record->calls;
                          record->ec = ec;
                          record->acked = acked;
                      });
        return record;
    }

    void ack(session_ptr sender, std::string const& id) {
        service.acknowledge(client_request{std::move(sender), nullptr,
                                           [this](ErrorCode code, std::string_view) {
                                               rejections.push_back(code);
                                           }},
                            id);
    }
};

TEST_CASE("ack_service: the message goes to the user's sessions with its message_id",
          "[ack_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto b1 = r.connect(3, "bob");
    auto done = r.start("m1", "alice", 10s, R"({"type":"order","n":1,"message_id":"old"})");
    CHECK(done->calls == 0);
    CHECK(r.service.size() == 1);
    CHECK(r.counters.pending_acks.load() == 1);
    CHECK(r.counters.pending_callbacks.load() == 1);
    for (auto const& session : {a1, a2}) {
        REQUIRE(session->frame_count() == 1);
        auto frame = parse_json(session->last_frame());
        CHECK(string_member(frame, "type") == "order");
        CHECK(frame["n"].GetInt() == 1);
        CHECK(string_member(frame, "message_id") == "m1");  // replaces the host's
        REQUIRE(frame["requires_ack"].IsBool());
        CHECK(frame["requires_ack"].GetBool());
    }
    CHECK(b1->frame_count() == 0);
    r.service.end_all(wsmanager::error::shutting_down);
}

TEST_CASE("ack_service: the user's ack completes it once", "[ack_service]") {
    rig r;
    r.connect(1, "alice");
    auto a2 = r.connect(2, "alice");
    auto b1 = r.connect(3, "bob");
    auto anon = r.connect(4, "");
    auto done = r.start("m1", "alice", 10s);

    r.ack(b1, "m1");
    r.ack(anon, "m1");
    REQUIRE(r.rejections.size() == 2);
    CHECK(r.rejections[0] == ErrorCode::forbidden);
    CHECK(r.rejections[1] == ErrorCode::forbidden);
    CHECK(done->calls == 0);
    CHECK(r.counters.acks_received.load() == 0);

    r.ack(a2, "m1");  // from any tab of the user
    REQUIRE(done->calls == 1);
    CHECK_FALSE(done->ec);
    CHECK(done->acked);
    CHECK(r.rejections.size() == 2);
    CHECK(r.service.size() == 0);
    CHECK(r.counters.acks_received.load() == 1);
    CHECK(r.counters.pending_acks.load() == 0);
    CHECK(r.counters.pending_callbacks.load() == 0);

    r.ack(a2, "m1");  // twice
    r.ack(a2, "never");
    REQUIRE(r.rejections.size() == 4);
    CHECK(r.rejections[2] == ErrorCode::unknown_callback);
    CHECK(r.rejections[3] == ErrorCode::unknown_callback);
    CHECK(done->calls == 1);
    CHECK(r.counters.acks_received.load() == 1);
}

TEST_CASE("ack_service: no ack in time completes false", "[ack_service][timer]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto const started = std::chrono::steady_clock::now();
    auto done = r.start("m1", "alice", 30ms);
    REQUIRE(run_until(r.io, [&] { return done->calls > 0; }));
    CHECK(std::chrono::steady_clock::now() - started >= 30ms);
    CHECK(done->calls == 1);
    CHECK_FALSE(done->ec);
    CHECK_FALSE(done->acked);
    CHECK(r.service.size() == 0);
    r.ack(a1, "m1");  // too late
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0] == ErrorCode::unknown_callback);
    CHECK(done->calls == 1);
}

TEST_CASE("ack_service: nobody connected completes false at once", "[ack_service]") {
    rig r;
    r.connect(1, "bob");
    auto done = r.start("m1", "alice", 10s);
    REQUIRE(done->calls == 1);
    CHECK_FALSE(done->ec);
    CHECK_FALSE(done->acked);
    CHECK(r.service.size() == 0);
    CHECK(r.counters.pending_acks.load() == 0);
    auto anonymous = r.start("m2", "", 10s);  // anonymous connections are nobody's
    REQUIRE(anonymous->calls == 1);
    CHECK_FALSE(anonymous->acked);
}

TEST_CASE("ack_service: a message that is not an object is refused", "[ack_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto done = r.start("m1", "alice", 10s, "[1,2,3]");
    REQUIRE(done->calls == 1);
    CHECK(done->ec == wsmanager::error::invalid_message);
    CHECK_FALSE(done->acked);
    CHECK(a1->frame_count() == 0);
    CHECK(r.service.size() == 0);
}

TEST_CASE("ack_service: a trusted message that is not UTF-8 is refused, not sent",
          "[ack_service]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto record = std::make_shared<ending>();
    r.service.start("m1", "alice", Message::from_trusted_json("{\"type\":\"x\xff\"}"), 10s,
                    [record](std::error_code ec, bool acked) {
                        ++record->calls;
                        record->ec = ec;
                        record->acked = acked;
                    });
    REQUIRE(record->calls == 1);
    CHECK(record->ec == wsmanager::error::invalid_message);
    CHECK(a1->frame_count() == 0);
    CHECK(r.service.size() == 0);
}

TEST_CASE("ack_service: the limits on pending acks", "[ack_service]") {
    rig r;
    r.options.max_pending_confirmations_per_user = 2;
    r.options.max_pending_confirmations = 3;
    auto a1 = r.connect(1, "alice");
    r.connect(2, "bob");
    r.connect(3, "carol");
    auto m1 = r.start("m1", "alice", 10s);
    auto m2 = r.start("m2", "alice", 10s);
    auto m3 = r.start("m3", "alice", 10s);  // a third for alice
    REQUIRE(m3->calls == 1);
    CHECK(m3->ec == wsmanager::error::too_many_pending);
    CHECK_FALSE(m3->acked);
    auto m4 = r.start("m4", "bob", 10s);
    CHECK(m4->calls == 0);
    auto m5 = r.start("m5", "carol", 10s);  // a fourth in all
    REQUIRE(m5->calls == 1);
    CHECK(m5->ec == wsmanager::error::too_many_pending);
    CHECK(r.service.size() == 3);
    CHECK(a1->frame_count() == 2);  // a refused message is not sent

    r.ack(a1, "m1");  // an ending makes room
    auto m6 = r.start("m6", "alice", 10s);
    CHECK(m6->calls == 0);
    r.service.end_all(wsmanager::error::shutting_down);
    for (auto const& done : {m1, m2, m3, m4, m5, m6}) CHECK(done->calls == 1);
}

TEST_CASE("ack_service: stop and end_all end each once", "[ack_service][timer]") {
    rig r;
    auto a1 = r.connect(1, "alice");
    auto m1 = r.start("m1", "alice", 10s);
    auto m2 = r.start("m2", "alice", 10s);
    auto m3 = r.start("m3", "alice", 10s);

    r.service.stop("m1", false, asio::error::operation_aborted);
    REQUIRE(m1->calls == 1);
    CHECK(m1->ec == asio::error::operation_aborted);
    CHECK_FALSE(m1->acked);
    r.service.stop("m1", false, asio::error::operation_aborted);
    CHECK(m1->calls == 1);

    r.service.end_all(wsmanager::error::shutting_down);
    for (auto const& done : {m2, m3}) {
        REQUIRE(done->calls == 1);
        CHECK(done->ec == wsmanager::error::shutting_down);
        CHECK_FALSE(done->acked);
    }
    CHECK(r.service.size() == 0);
    CHECK(r.service.entries().indexed_users() == 0);
    CHECK(r.counters.pending_acks.load() == 0);

    run_for(r.io, 50ms);  // cancelled timers: nothing more
    for (auto const& done : {m1, m2, m3}) CHECK(done->calls == 1);
    r.ack(a1, "m2");
    REQUIRE(r.rejections.size() == 1);
    CHECK(r.rejections[0] == ErrorCode::unknown_callback);
}

TEST_CASE("ack_service: no timeout once the owner's lifetime has expired", "[ack_service][timer]") {
    rig r;
    r.connect(1, "alice");
    auto done = r.start("m1", "alice", 20ms);
    r.alive.reset();
    run_for(r.io, 100ms);
    CHECK(done->calls == 0);
    r.service.end_all(wsmanager::error::shutting_down);
    CHECK(done->calls == 1);
}

}  // namespace ack_test
