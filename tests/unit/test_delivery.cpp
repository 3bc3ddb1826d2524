// SPDX-License-Identifier: BSL-1.0
// detail/delivery.hpp (and detail/backplane.hpp): targets become sends to exactly the right
// sessions, the local counts, and what a backplane sees and answers.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <catch2/catch.hpp>

#include <wsmanager/detail/backplane.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/message.hpp>

#include "fake_session.hpp"

namespace delivery_test {

using wsmanager::Message;
using wsmanager::detail::backplane;
using wsmanager::detail::connection_registry;
using wsmanager::detail::delivery;
using wsmanager::detail::delivery_target;
using wsmanager::detail::manager_counters;
using wsmanager::detail::topic_registry;
using wsmanager_fake::fake_ptr;
using wsmanager_fake::make_fake;

/// alice has two tabs (a1 subscribed to news), bob one (subscribed), carol one (not), and two
/// anonymous connections (anon1 subscribed).
struct fixture {
    connection_registry connections;
    topic_registry topics;
    manager_counters counters;
    delivery deliver{connections, topics, counters};

    fake_ptr a1 = make_fake(1, "alice");
    fake_ptr a2 = make_fake(2, "alice");
    fake_ptr b1 = make_fake(3, "bob");
    fake_ptr c1 = make_fake(4, "carol");
    fake_ptr anon1 = make_fake(5);
    fake_ptr anon2 = make_fake(6);

    fixture() {
        for (auto const& s : all()) REQUIRE(connections.add(s));
        for (auto const& s : {a1, b1, anon1}) {
            REQUIRE(topics.subscribe(s, "news", 10, 1000) ==
                    topic_registry::subscribe_result::subscribed);
        }
    }

    std::vector<fake_ptr> all() const { return {a1, a2, b1, c1, anon1, anon2}; }

    /// How many frames with this text each session got, in all() order.
    std::vector<std::size_t> received(Message const& message) const {
        std::vector<std::size_t> counts;
        for (auto const& s : all()) {
            std::size_t n = 0;
            for (auto const& frame : s->frames()) n += frame == message.text() ? 1 : 0;
            counts.push_back(n);
        }
        return counts;
    }
    std::size_t total_frames() const {
        std::size_t n = 0;
        for (auto const& s : all()) n += s->frame_count();
        return n;
    }
};

Message text(char const* json) { return Message::from_json(json); }

using counts = std::vector<std::size_t>;  // a1, a2, b1, c1, anon1, anon2

TEST_CASE("delivery: everyone", "[delivery]") {
    fixture f;
    auto const message = text(R"({"type":"hello"})");
    CHECK(f.deliver.deliver_local(delivery_target::everyone(), message) == 6);
    CHECK(f.received(message) == counts{1, 1, 1, 1, 1, 1});
    CHECK(f.total_frames() == 6);
    // The fan-out is timed: one observation in the histogram.
    CHECK_THAT(f.counters.render_prometheus(),
               Catch::Contains("wsmanager_broadcast_fanout_seconds_count 1\n"));
}

TEST_CASE("delivery: one user", "[delivery]") {
    fixture f;
    auto const message = text(R"({"type":"for-alice"})");
    CHECK(f.deliver.deliver_local(delivery_target::user("alice"), message) == 2);
    CHECK(f.received(message) == counts{1, 1, 0, 0, 0, 0});
    CHECK(f.total_frames() == 2);

    auto const nobody = text(R"({"type":"for-nobody"})");
    CHECK(f.deliver.deliver_local(delivery_target::user("zed"), nobody) == 0);
    CHECK(f.deliver.deliver_local(delivery_target::user(""), nobody) == 0);  // not anonymous
    CHECK(f.total_frames() == 2);
}

TEST_CASE("delivery: a topic's subscribers", "[delivery]") {
    fixture f;
    auto const message = text(R"({"type":"news"})");
    CHECK(f.deliver.deliver_local(delivery_target::to_topic("news"), message) == 3);
    CHECK(f.received(message) == counts{1, 0, 1, 0, 1, 0});
    CHECK(f.deliver.deliver_local(delivery_target::to_topic("empty"), message) == 0);
    CHECK(f.total_frames() == 3);
}

TEST_CASE("delivery: a user and a topic, each connection once", "[delivery]") {
    fixture f;
    auto const message = text(R"({"type":"both"})");
    // a1 is alice's and a subscriber: once. anon1 (anonymous subscriber) included.
    CHECK(f.deliver.deliver_local(delivery_target::user_and_topic("alice", "news"), message) == 4);
    CHECK(f.received(message) == counts{1, 1, 1, 0, 1, 0});
    CHECK(f.total_frames() == 4);

    SECTION("a user that is offline: the subscribers only") {
        auto const other = text(R"({"type":"other"})");
        CHECK(f.deliver.deliver_local(delivery_target::user_and_topic("zed", "news"), other) == 3);
        CHECK(f.received(other) == counts{1, 0, 1, 0, 1, 0});
    }
    SECTION("a topic without subscribers: the user only") {
        auto const other = text(R"({"type":"other"})");
        CHECK(f.deliver.deliver_local(delivery_target::user_and_topic("carol", "none"), other) ==
              1);
        CHECK(f.received(other) == counts{0, 0, 0, 1, 0, 0});
    }
    SECTION("the subscribed user's other tab is not sent twice") {
        REQUIRE(f.topics.subscribe(f.a2, "news", 10, 1000) ==
                topic_registry::subscribe_result::subscribed);
        auto const other = text(R"({"type":"other"})");
        CHECK(f.deliver.deliver_local(delivery_target::user_and_topic("alice", "news"), other) ==
              4);
        CHECK(f.received(other) == counts{1, 1, 1, 0, 1, 0});
    }
}

TEST_CASE("delivery: one connection", "[delivery]") {
    fixture f;
    auto const message = text(R"({"type":"direct"})");
    CHECK(f.deliver.deliver_local(delivery_target::connection(3), message) == 1);
    CHECK(f.received(message) == counts{0, 0, 1, 0, 0, 0});
    CHECK(f.deliver.deliver_local(delivery_target::connection(5), message) == 1);
    CHECK(f.received(message) == counts{0, 0, 1, 0, 1, 0});
    CHECK(f.deliver.deliver_local(delivery_target::connection(99), message) == 0);
    CHECK(f.total_frames() == 2);
}

TEST_CASE("delivery: deliver() reports the local count with the single-node backplane",
          "[delivery]") {
    fixture f;
    auto const message = text(R"({"type":"x"})");
    struct call {
        std::error_code ec;
        std::size_t local;
    };
    std::vector<call> calls;
    auto record = [&calls](std::error_code ec, std::size_t local) { calls.push_back({ec, local}); };
    f.deliver.deliver(delivery_target::everyone(), message, record);
    f.deliver.deliver(delivery_target::user("alice"), message, record);
    f.deliver.deliver(delivery_target::to_topic("news"), message, record);
    f.deliver.deliver(delivery_target::user_and_topic("alice", "news"), message, record);
    f.deliver.deliver(delivery_target::connection(4), message, record);
    f.deliver.deliver(delivery_target::connection(404), message, record);
    REQUIRE(calls.size() == 6);
    std::vector<std::size_t> const locals{6, 2, 3, 4, 1, 0};
    for (std::size_t i = 0; i < calls.size(); ++i) {
        INFO("call " << i);
        CHECK_FALSE(calls[i].ec);
        CHECK(calls[i].local == locals[i]);
    }
    // The fire-and-forget overload sends too.
    f.deliver.deliver(delivery_target::user("bob"), message);
    CHECK(f.received(message) == counts{4, 3, 4, 2, 3, 1});
}

/// Records what is published and answers with `answer`, at once or when told to.
class recording_backplane final : public backplane {
public:
    struct publication {
        delivery_target target;
        std::string text;
    };

    void publish(delivery_target const& target, Message const& message, completion done) override {
        published.push_back({target, std::string(message.text())});
        if (answer_later) {
            waiting.push_back(std::move(done));
        } else {
            done(answer);
        }
    }

    void publish_close(delivery_target const& target, std::uint16_t code, std::string const& reason,
                       completion done) override {
        closes.push_back({target, code, reason});
        done(answer);
    }

    struct close_publication {
        delivery_target target;
        std::uint16_t code;
        std::string reason;
    };

    std::error_code answer;
    bool answer_later = false;
    std::vector<publication> published;
    std::vector<completion> waiting;
    std::vector<close_publication> closes;
};

TEST_CASE("delivery: a custom backplane sees every target but one connection",
          "[delivery][backplane]") {
    fixture f;
    auto other_nodes = std::make_shared<recording_backplane>();
    other_nodes->answer = wsmanager::error::shutting_down;  // any error: it must reach done
    f.deliver.set_backplane(other_nodes);
    CHECK(&f.deliver.other_nodes() == other_nodes.get());

    auto const message = text(R"({"type":"cluster"})");
    std::vector<std::error_code> verdicts;
    std::vector<std::size_t> locals;
    auto record = [&](std::error_code ec, std::size_t local) {
        verdicts.push_back(ec);
        locals.push_back(local);
    };
    f.deliver.deliver(delivery_target::everyone(), message, record);
    f.deliver.deliver(delivery_target::user("bob"), message, record);
    f.deliver.deliver(delivery_target::to_topic("news"), message, record);
    f.deliver.deliver(delivery_target::user_and_topic("carol", "task:t1"), message, record);
    f.deliver.deliver(delivery_target::connection(1), message, record);

    using kind = delivery_target::kind;
    REQUIRE(other_nodes->published.size() == 4);  // not the connection
    CHECK(other_nodes->published[0].target.scope == kind::everyone);
    CHECK(other_nodes->published[1].target.scope == kind::user);
    CHECK(other_nodes->published[1].target.user_id == "bob");
    CHECK(other_nodes->published[2].target.scope == kind::topic);
    CHECK(other_nodes->published[2].target.topic == "news");
    CHECK(other_nodes->published[3].target.scope == kind::user_and_topic);
    CHECK(other_nodes->published[3].target.user_id == "carol");
    CHECK(other_nodes->published[3].target.topic == "task:t1");
    for (auto const& publication : other_nodes->published) {
        CHECK(publication.text == message.text());
    }

    REQUIRE(verdicts.size() == 5);
    for (std::size_t i = 0; i < 4; ++i) {
        INFO("target " << i);
        CHECK(verdicts[i] == std::error_code(wsmanager::error::shutting_down));
    }
    CHECK_FALSE(verdicts[4]);  // one connection is node-local: no backplane verdict
    CHECK(locals == std::vector<std::size_t>{6, 1, 3, 1, 1});

    SECTION("deliver_local never publishes") {
        f.deliver.deliver_local(delivery_target::everyone(), message);
        CHECK(other_nodes->published.size() == 4);
    }
}

TEST_CASE("delivery: done waits for the backplane's answer", "[delivery][backplane]") {
    fixture f;
    auto other_nodes = std::make_shared<recording_backplane>();
    other_nodes->answer_later = true;
    f.deliver.set_backplane(other_nodes);

    auto const message = text(R"({"type":"later"})");
    std::optional<std::error_code> verdict;
    std::size_t local = 0;
    f.deliver.deliver(delivery_target::user("alice"), message,
                      [&](std::error_code ec, std::size_t n) {
                          verdict = ec;
                          local = n;
                      });
    // This node's part is sent at once; the verdict is the backplane's to give.
    CHECK(f.received(message) == counts{1, 1, 0, 0, 0, 0});
    CHECK_FALSE(verdict.has_value());
    REQUIRE(other_nodes->waiting.size() == 1);
    other_nodes->waiting.front()(std::make_error_code(std::errc::network_unreachable));
    REQUIRE(verdict.has_value());
    CHECK(*verdict == std::make_error_code(std::errc::network_unreachable));
    CHECK(local == 2);
}

/// How many times each session (in all() order) was closed with this code and reason.
std::vector<std::size_t> closed(fixture const& f, std::uint16_t code, std::string const& reason) {
    std::vector<std::size_t> counts;
    for (auto const& s : f.all()) {
        std::size_t n = 0;
        for (auto const& c : s->closes()) n += c.code == code && c.reason == reason ? 1 : 0;
        counts.push_back(n);
    }
    return counts;
}

TEST_CASE("delivery: close_local closes exactly the target's sessions", "[delivery]") {
    fixture f;
    CHECK(f.deliver.close_local(delivery_target::user("alice"), 1008, "kicked") == 2);
    CHECK(closed(f, 1008, "kicked") == counts{1, 1, 0, 0, 0, 0});
    CHECK(f.deliver.close_local(delivery_target::user_and_topic("alice", "news"), 4000, "x") == 4);
    CHECK(closed(f, 4000, "x") == counts{1, 1, 1, 0, 1, 0});
    CHECK(f.deliver.close_local(delivery_target::to_topic("news"), 4001, "t") == 3);
    CHECK(closed(f, 4001, "t") == counts{1, 0, 1, 0, 1, 0});
    CHECK(f.deliver.close_local(delivery_target::connection(4), 4002, "c") == 1);
    CHECK(closed(f, 4002, "c") == counts{0, 0, 0, 1, 0, 0});
    CHECK(f.deliver.close_local(delivery_target::everyone(), 1001, "bye") == 6);
    CHECK(closed(f, 1001, "bye") == counts{1, 1, 1, 1, 1, 1});
    CHECK(f.deliver.close_local(delivery_target::user("zed"), 1000, "") == 0);
    CHECK(f.total_frames() == 0);  // closing sends no frame of its own
}

TEST_CASE("delivery: close publishes to the other nodes", "[delivery][backplane]") {
    fixture f;
    auto other_nodes = std::make_shared<recording_backplane>();
    other_nodes->answer = std::make_error_code(std::errc::network_unreachable);
    f.deliver.set_backplane(other_nodes);
    std::optional<std::error_code> verdict;
    std::size_t local = 0;
    f.deliver.close(delivery_target::user("alice"), 1008, "kicked",
                    [&](std::error_code ec, std::size_t n) {
                        verdict = ec;
                        local = n;
                    });
    CHECK(closed(f, 1008, "kicked") == counts{1, 1, 0, 0, 0, 0});
    REQUIRE(verdict.has_value());
    CHECK(*verdict == std::make_error_code(std::errc::network_unreachable));
    CHECK(local == 2);
    REQUIRE(other_nodes->closes.size() == 1);
    CHECK(other_nodes->closes[0].target.scope == delivery_target::kind::user);
    CHECK(other_nodes->closes[0].target.user_id == "alice");
    CHECK(other_nodes->closes[0].code == 1008);
    CHECK(other_nodes->closes[0].reason == "kicked");
    CHECK(other_nodes->published.empty());
}

TEST_CASE("delivery: closing one connection is node-local, as delivering to it is",
          "[delivery][backplane]") {
    // A connection id names a connection of this node only (backplane.hpp): deliver() does
    // not publish a connection target, so close() must not either, or another node may
    // close its own, unrelated connection with that id.
    fixture f;
    auto other_nodes = std::make_shared<recording_backplane>();
    f.deliver.set_backplane(other_nodes);
    std::size_t local = 0;
    f.deliver.close(delivery_target::connection(3), 1008, "kicked",
                    [&](std::error_code, std::size_t n) { local = n; });
    CHECK(local == 1);
    CHECK(other_nodes->closes.empty());
}

}  // namespace delivery_test
