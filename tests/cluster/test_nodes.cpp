// SPDX-License-Identifier: BSL-1.0
// Several managers in one process, one real redis-server between them: every call means what
// it means on one node, cluster-wide (DESIGN.md's Cluster section). Real WebSocket clients
// connect to each node directly; the process-level test with nginx and killed nodes is
// tests/cluster/cluster_deployment_test.py.

#include <algorithm>
#include <atomic>
#include <istream>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>

#include <wsmanager/cluster.hpp>

#include "harness.hpp"
#include "redis_server.hpp"

namespace nodes_test {

using namespace std::chrono_literals;
using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;
using wsmanager_cluster_test::redis_server;

/// Fast timings, so a dead node is noticed in a second or two.
inline wsmanager::cluster::RedisOptions fast() {
    wsmanager::cluster::RedisOptions r;
    r.heartbeat_interval = 200ms;
    r.node_ttl = 1000ms;
    r.cancel_timeout = 2000ms;
    r.reconnect_initial = 50ms;
    r.reconnect_max = 500ms;
    return r;
}

/// One node: a manager with the Redis backplane on a free port; `adjust_redis` changes its
/// fast() timings.
struct node {
    node(redis_server const& redis, std::string id, std::string prefix = "wsmtest",
         std::function<void(wsmanager::Options&)> const& adjust = {},
         std::function<void(wsmanager::cluster::RedisOptions&)> const& adjust_redis = {}) {
        auto options = test_options();
        if (adjust) adjust(options);
        options.redis_url = "redis://127.0.0.1:" + std::to_string(redis.port());
        options.node_id = std::move(id);
        options.cluster_prefix = std::move(prefix);
        options.threads = 2;
        auto timings = fast();
        if (adjust_redis) adjust_redis(timings);
        manager = std::make_unique<Manager>(options, wsmanager::cluster::redis(options, timings));
        start(*manager);
    }
    std::uint16_t port() const { return manager->local_port(); }
    std::unique_ptr<Manager> manager;
};

/// Waits until every node sees `count` live nodes.
inline bool cluster_of(std::vector<node*> const& nodes, std::size_t count) {
    return wait_until(
        [&] {
            for (auto* n : nodes) {
                auto const s = n->manager->get_status();
                if (!s.cluster.connected || s.cluster.nodes != count) return false;
            }
            return true;
        },
        10s);
}

inline wsmanager::TaskStepResult step() {
    wsmanager::TaskStepResult r;
    r.step = "deploy";
    r.result = R"({"ok":true})";
    r.message = "Proceed?";
    r.status = "waiting";
    return r;
}

}  // namespace nodes_test

using namespace nodes_test;

TEST_CASE("cluster: broadcast, send_to_user, publish and disconnect_user reach every node",
          "[cluster][nodes][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    auto on_a = connect_client(a.port(), "user_id=alice");
    auto on_b = connect_client(b.port(), "user_id=alice");
    auto bob_b = connect_client(b.port(), "user_id=bob");
    REQUIRE(on_a.hello);
    REQUIRE(on_b.hello);
    REQUIRE(bob_b.hello);
    REQUIRE(bob_b->send_text(R"({"action":"subscribe","topic":"news"})"));
    REQUIRE(bob_b->next_of_type("subscribed"));

    SECTION("broadcast from A: every connection of both nodes, once") {
        CHECK(get(a.manager->broadcast_message(json_message(R"({"type":"hello"})"),
                                               asio::use_future)) == 1);
        for (auto* c : {&on_a, &on_b, &bob_b}) {
            auto frame = (*c)->next_of_type("hello");
            CHECK(frame.has_value());
            CHECK((*c)->expect_silence(silence_window));
        }
    }
    SECTION("send_to_user from A reaches the user's tabs on A and B, nobody else") {
        CHECK(get(a.manager->send_to_user("alice", json_message(R"({"type":"yours"})"),
                                          asio::use_future)) == 1);
        CHECK(on_a->next_of_type("yours"));
        CHECK(on_b->next_of_type("yours"));
        CHECK(bob_b->expect_silence(silence_window));
    }
    SECTION("publish from A reaches B's subscriber") {
        CHECK(get(a.manager->publish("news", json_message(R"({"type":"story"})"),
                                     asio::use_future)) == 0);
        CHECK(bob_b->next_of_type("story"));
        CHECK(on_a->expect_silence(silence_window));
    }
    SECTION("disconnect_user on A closes the user's tabs on A and B") {
        CHECK(get(a.manager->disconnect_user("alice", 4001, "logged out", asio::use_future)) ==
              1);
        auto closed_a = on_a->wait_closed();
        auto closed_b = on_b->wait_closed();
        REQUIRE(closed_a);
        REQUIRE(closed_b);
        CHECK(closed_b->code == 4001);
        CHECK(closed_b->reason == "logged out");
        CHECK(ping_pong(*bob_b));
    }
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: a confirmation asked on A and answered on B resolves A's call once",
          "[cluster][nodes][confirm][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    node c(redis, "c");
    REQUIRE(cluster_of({&a, &b, &c}, 3));
    auto tab_a = connect_client(a.port(), "user_id=alice");
    auto tab_b = connect_client(b.port(), "user_id=alice");
    REQUIRE(tab_a.hello);
    REQUIRE(tab_b.hello);

    auto decision = a.manager->notify_user(step(), "alice", "task-1", 1, 10s, asio::use_future);
    auto request_b = tab_b->next_of_type("task_step_result");
    REQUIRE(request_b);
    REQUIRE(tab_a->next_of_type("task_step_result"));
    auto const id = *string_member(*request_b, "callback_id");
    // Alice connects to C after the request: C shows it too.
    auto tab_c = connect_client(c.port(), "user_id=alice");
    REQUIRE(tab_c.hello);
    auto request_c = tab_c->next_of_type("task_step_result");
    REQUIRE(request_c);
    CHECK(*string_member(*request_c, "callback_id") == id);

    REQUIRE(tab_b->send_text(R"({"action":"confirm","callback_id":")" + id +
                             R"(","proceed":true,"feedback":"go"})"));
    auto const answer = get(std::move(decision), 10s);
    CHECK(answer.proceed);
    CHECK(answer.feedback == std::optional<std::string>("go"));
    CHECK(answer.reason == wsmanager::ConfirmationReason::user);
    for (auto* t : {&tab_a, &tab_b, &tab_c}) {
        auto resolved = (*t)->next_of_type("confirmation_resolved");
        REQUIRE(resolved);
        CHECK(*string_member(*resolved, "callback_id") == id);
    }
    // A late answer, from any tab, loses.
    REQUIRE(tab_c->send_text(R"({"action":"confirm","callback_id":")" + id +
                             R"(","proceed":false,"request_id":"late"})"));
    auto late = tab_c->next_of_type("error");
    REQUIRE(late);
    CHECK(*string_member(*late, "code") == "unknown_callback");
    CHECK(wait_until([&] { return a.manager->get_status().pending_callbacks == 0; }));
    stop(*a.manager);
    stop(*b.manager);
    stop(*c.manager);
}

TEST_CASE("cluster: two tabs on two nodes answering at once: exactly one wins",
          "[cluster][nodes][confirm][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    auto tab_a = connect_client(a.port(), "user_id=alice");
    auto tab_b = connect_client(b.port(), "user_id=alice");
    REQUIRE(tab_a.hello);
    REQUIRE(tab_b.hello);
    constexpr int rounds = 40;
    int won_by_a = 0;
    int won_by_b = 0;
    for (int round = 0; round < rounds; ++round) {
        INFO("round " << round);
        auto decision = a.manager->notify_user(step(), "alice", "race-" + std::to_string(round),
                                               round, 10s, asio::use_future);
        auto request_a = tab_a->next_of_type("task_step_result");
        auto request_b = tab_b->next_of_type("task_step_result");
        REQUIRE(request_a);
        REQUIRE(request_b);
        auto const id = *string_member(*request_a, "callback_id");
        auto confirm = [&](bool proceed) {
            return R"({"action":"confirm","callback_id":")" + id + R"(","proceed":)" +
                   (proceed ? "true" : "false") + R"(,"request_id":"r"})";
        };
        std::thread answer_b([&] { tab_b->send_text(confirm(false)); });
        tab_a->send_text(confirm(true));
        answer_b.join();
        auto const answer = get(std::move(decision), 10s);
        (answer.proceed ? won_by_a : won_by_b) += 1;
        // Both tabs hear confirmation_resolved with the winner; the loser also hears
        // unknown_callback (in either order), the winner nothing else.
        auto* loser = answer.proceed ? &tab_b : &tab_a;
        for (auto* t : {&tab_a, &tab_b}) {
            int const expected = t == loser ? 2 : 1;
            int errors = 0;
            int resolved = 0;
            for (int frames = 0; frames < expected; ++frames) {
                auto frame = (*t)->next_json(5s);
                REQUIRE(frame);
                auto const type = frame_type(*frame);
                if (type == "error") {
                    CHECK(*string_member(*frame, "code") == "unknown_callback");
                    ++errors;
                } else {
                    REQUIRE(type == "confirmation_resolved");
                    CHECK((*frame)["proceed"].GetBool() == answer.proceed);
                    ++resolved;
                }
            }
            CHECK(resolved == 1);
            CHECK(errors == expected - 1);
        }
    }
    CHECK(won_by_a + won_by_b == rounds);
    CHECK(a.manager->get_status().pending_callbacks == 0);
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: a cancel on B reaches the owner's on_cancel on A",
          "[cluster][nodes][cancel][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    std::atomic<int> asked_a{0};
    std::atomic<int> asked_b{0};
    a.manager->on_cancel([&](wsmanager::CancelRequest const& r) {
        ++asked_a;
        return r.task_id == "task-a" && r.user_id == "alice";  // A runs task-a
    });
    b.manager->on_cancel([&](wsmanager::CancelRequest const&) {
        ++asked_b;
        return false;  // B knows no such task
    });
    auto tab_b = connect_client(b.port(), "user_id=alice");
    auto watcher_a = connect_client(a.port(), "user_id=carol");
    REQUIRE(tab_b.hello);
    REQUIRE(watcher_a.hello);
    REQUIRE(watcher_a->send_text(R"({"action":"subscribe","topic":"task:task-a"})"));
    REQUIRE(watcher_a->next_of_type("subscribed"));
    // The handlers are registered through the strand: let them land.
    std::this_thread::sleep_for(100ms);

    REQUIRE(tab_b->send_text(R"({"action":"cancel","task_id":"task-a"})"));
    auto cancelled = tab_b->next_of_type("task_cancelled");
    REQUIRE(cancelled);
    CHECK(*string_member(*cancelled, "task_id") == "task-a");
    CHECK(watcher_a->next_of_type("task_cancelled"));
    CHECK(asked_a.load() == 1);
    CHECK(asked_b.load() == 1);

    // A task nobody knows: every node says no.
    REQUIRE(tab_b->send_text(R"({"action":"cancel","task_id":"task-x","request_id":"x"})"));
    auto refused = tab_b->next_of_type("error");
    REQUIRE(refused);
    CHECK(*string_member(*refused, "code") == "forbidden");
    CHECK(watcher_a->expect_silence(silence_window));
    stop(*a.manager);
    stop(*b.manager);
}

namespace nodes_test {

/// A blocking RESP exchange with the test's redis-server: one command, its reply flattened
/// to strings (an integer as its digits, nil as "(nil)"). For the test's own checks only.
inline std::vector<std::string> redis_command(int port, std::vector<std::string> const& argv) {
    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
    std::string out = "*" + std::to_string(argv.size()) + "\r\n";
    for (auto const& a : argv) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    asio::write(socket, asio::buffer(out));
    asio::streambuf buffer;
    std::istream in(&buffer);
    auto line = [&] {
        asio::read_until(socket, buffer, "\r\n");
        std::string l;
        std::getline(in, l);
        if (!l.empty() && l.back() == '\r') l.pop_back();
        return l;
    };
    auto bulk = [&](long size) {
        if (size < 0) return std::string("(nil)");
        while (buffer.size() < static_cast<std::size_t>(size) + 2) {
            asio::read(socket, buffer, asio::transfer_at_least(1));
        }
        std::string s(static_cast<std::size_t>(size), '\0');
        in.read(s.data(), size);
        in.ignore(2);
        return s;
    };
    std::vector<std::string> reply;
    auto const first = line();
    if (first.empty()) return reply;
    if (first[0] == '*') {
        auto const n = std::stol(first.substr(1));
        for (long i = 0; i < n; ++i) {
            auto const item = line();
            reply.push_back(item[0] == '$' ? bulk(std::stol(item.substr(1))) : item.substr(1));
        }
    } else if (first[0] == '$') {
        reply.push_back(bulk(std::stol(first.substr(1))));
    } else {
        reply.push_back(first.substr(1));
    }
    return reply;
}

inline std::vector<std::string> keys(redis_server const& redis) {
    return redis_command(redis.port(), {"KEYS", "*"});
}

}  // namespace nodes_test

TEST_CASE("cluster: Redis killed and restarted: local delivery goes on, cross-node resumes, "
          "no confirmation is lost or decided twice",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    auto tab_a = connect_client(a.port(), "user_id=alice");
    auto tab_b = connect_client(b.port(), "user_id=alice");
    REQUIRE(tab_a.hello);
    REQUIRE(tab_b.hello);
    // A confirmation pending on A when Redis goes (and comes back empty: no persistence).
    auto decision = a.manager->notify_user(step(), "alice", "task-r", 1, 30s, asio::use_future);
    auto request = tab_b->next_of_type("task_step_result");
    REQUIRE(request);
    REQUIRE(tab_a->next_of_type("task_step_result"));
    auto const id = *string_member(*request, "callback_id");

    redis.kill();
    REQUIRE(wait_until([&] { return !a.manager->get_status().cluster.connected; }, 10s));
    // Local delivery goes on; the other nodes cannot be reached, and the host is told.
    auto broadcast = a.manager->broadcast_message(json_message(R"({"type":"local"})"),
                                                  asio::use_future);
    CHECK_THROWS_AS(get(std::move(broadcast)), std::system_error);
    CHECK(tab_a->next_of_type("local"));
    CHECK(tab_b->expect_silence(silence_window));
    // An answer that cannot be decided is refused with `unavailable`: the client may retry.
    REQUIRE(tab_b->send_text(R"({"action":"confirm","callback_id":")" + id +
                             R"(","proceed":true,"request_id":"early"})"));
    auto refused = tab_b->next_of_type("error");
    REQUIRE(refused);
    CHECK(*string_member(*refused, "code") == "unavailable");
    CHECK(decision.wait_for(0s) != std::future_status::ready);
    // A new confirmation cannot be recorded: an error, never a decision.
    auto unrecorded = a.manager->notify_user(step(), "alice", "task-u", 2, 30s, asio::use_future);
    CHECK_THROWS_AS(get(std::move(unrecorded)), std::system_error);

    redis.restart();
    REQUIRE(cluster_of({&a, &b}, 2));
    // Cross-node delivery resumes.
    get(a.manager->broadcast_message(json_message(R"({"type":"again"})"), asio::use_future));
    CHECK(tab_a->next_of_type("again"));
    CHECK(tab_b->next_of_type("again"));
    // A reconciled the confirmation Redis lost: B's answer decides it, once.
    std::optional<rapidjson::Document> resolved;
    REQUIRE(wait_until(
        [&] {
            tab_b->send_text(R"({"action":"confirm","callback_id":")" + id +
                             R"(","proceed":true,"feedback":"after"})");
            auto frame = tab_b->next_json(1000ms);
            while (frame && frame_type(*frame) != "confirmation_resolved" &&
                   frame_type(*frame) != "error") {
                frame = tab_b->next_json(1000ms);
            }
            if (frame && frame_type(*frame) == "confirmation_resolved") resolved = std::move(frame);
            return resolved.has_value();
        },
        15s));
    auto const answer = get(std::move(decision), 10s);
    CHECK(answer.proceed);
    CHECK(answer.feedback == std::optional<std::string>("after"));
    CHECK(answer.reason == wsmanager::ConfirmationReason::user);
    CHECK(wait_until([&] { return a.manager->get_status().pending_callbacks == 0; }));
    auto const metrics = a.manager->metrics_text();
    CHECK(metrics.find("wsmanager_cluster_reconnects_total 0\n") == std::string::npos);
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: Redis restarted empty: an answer on a node back before the asking node "
          "has recorded its confirmations again is `unavailable`, not lost",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    // A comes back late (its first backoff 8 s, jittered to 4-12 s), B at once. Both have the
    // same reconnect_max, as a cluster's nodes do: B's settle window after its reconnect,
    // 1.5 x 8 s + connect and command timeouts, covers A's return and reconcile.
    node a(redis, "a", "wsmtest", {}, [](wsmanager::cluster::RedisOptions& r) {
        r.reconnect_initial = 8s;
        r.reconnect_max = 8s;
    });
    node b(redis, "b", "wsmtest", {}, [](wsmanager::cluster::RedisOptions& r) {
        r.reconnect_initial = 50ms;
        r.reconnect_max = 8s;
    });
    REQUIRE(cluster_of({&a, &b}, 2));
    auto tab_a = connect_client(a.port(), "user_id=alice");
    auto tab_b = connect_client(b.port(), "user_id=alice");
    REQUIRE(tab_a.hello);
    REQUIRE(tab_b.hello);
    auto decision = a.manager->notify_user(step(), "alice", "task-s", 1, 120s, asio::use_future);
    auto request = tab_b->next_of_type("task_step_result");
    REQUIRE(request);
    REQUIRE(tab_a->next_of_type("task_step_result"));
    auto const id = *string_member(*request, "callback_id");
    auto confirm = [&](std::string const& feedback) {
        return R"({"action":"confirm","callback_id":")" + id +
               R"(","proceed":true,"feedback":")" + feedback + R"(","request_id":"r"})";
    };

    redis.kill();
    REQUIRE(wait_until(
        [&] {
            return !a.manager->get_status().cluster.connected &&
                   !b.manager->get_status().cluster.connected;
        },
        10s));
    redis.restart();  // empty: A's confirmation is gone from Redis
    REQUIRE(wait_until([&] { return b.manager->get_status().cluster.connected; }, 20s));
    // A waits out its backoff (4 s at least): B decides alone, and Redis has no record.
    REQUIRE_FALSE(a.manager->get_status().cluster.connected);
    REQUIRE(tab_b->send_text(confirm("early")));
    auto refused = tab_b->next_of_type("error", 10s);
    REQUIRE(refused);
    CHECK(*string_member(*refused, "code") == "unavailable");  // not unknown_callback
    CHECK(decision.wait_for(0s) != std::future_status::ready);

    // A is back and records its confirmation again: alice's next answer decides it, once.
    REQUIRE(wait_until([&] { return a.manager->get_status().cluster.connected; }, 30s));
    std::optional<rapidjson::Document> resolved;
    std::vector<std::string> errors;
    REQUIRE(wait_until(
        [&] {
            tab_b->send_text(confirm("after"));
            auto frame = tab_b->next_json(1000ms);
            while (frame && frame_type(*frame) != "confirmation_resolved" &&
                   frame_type(*frame) != "error") {
                frame = tab_b->next_json(1000ms);
            }
            if (frame && frame_type(*frame) == "error") {
                errors.push_back(string_member(*frame, "code").value_or("?"));
            }
            if (frame && frame_type(*frame) == "confirmation_resolved") resolved = std::move(frame);
            return resolved.has_value();
        },
        30s));
    for (auto const& code : errors) CHECK(code == "unavailable");  // until A has reconciled
    CHECK(*string_member(*resolved, "callback_id") == id);
    CHECK((*resolved)["proceed"].GetBool());
    auto const answer = get(std::move(decision), 10s);
    CHECK(answer.proceed);
    CHECK(answer.feedback == std::optional<std::string>("after"));
    CHECK(answer.reason == wsmanager::ConfirmationReason::user);
    auto resolved_a = tab_a->next_of_type("confirmation_resolved", 10s);
    REQUIRE(resolved_a);
    CHECK(*string_member(*resolved_a, "callback_id") == id);
    CHECK((*resolved_a)["proceed"].GetBool());
    CHECK(tab_a->expect_silence(silence_window));  // told once
    CHECK(tab_b->expect_silence(silence_window));
    CHECK(a.manager->get_status().pending_callbacks == 0);
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: CLIENT KILL TYPE pubsub: the node resubscribes and hears the others again",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    auto tab_b = connect_client(b.port(), "user_id=alice");
    REQUIRE(tab_b.hello);
    auto const killed = redis_command(redis.port(), {"CLIENT", "KILL", "TYPE", "pubsub"});
    REQUIRE_FALSE(killed.empty());
    CHECK(std::stoi(killed[0]) >= 2);
    // Within a few reconnect attempts B hears A again.
    bool heard = false;
    for (int attempt = 0; attempt < 40 && !heard; ++attempt) {
        try {
            get(a.manager->broadcast_message(json_message(R"({"type":"back"})"),
                                             asio::use_future));
        } catch (std::system_error const&) {
            // A reconnecting itself: cluster_unavailable for a moment.
        }
        heard = tab_b->next_of_type("back", 250ms).has_value();
    }
    CHECK(heard);
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: a node starts while Redis is unreachable, alone, and joins when it appears",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    redis.stop();
    node a(redis, "a");  // start_server succeeds: degraded, not failed
    auto status = a.manager->get_status();
    CHECK(status.running);
    CHECK(status.cluster.enabled);
    CHECK_FALSE(status.cluster.connected);
    CHECK(status.node_id == "a");
    auto tab = connect_client(a.port(), "user_id=alice");
    REQUIRE(tab.hello);
    CHECK(ping_pong(*tab));
    redis.restart();
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    get(b.manager->send_to_user("alice", json_message(R"({"type":"joined"})"), asio::use_future));
    CHECK(tab->next_of_type("joined"));
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: a dead node is reaped: its confirmations dismissed on every tab, the "
          "cluster counts one node less, no keys left at the end",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    node a(redis, "a");
    REQUIRE(cluster_of({&a}, 1));
    auto tab = connect_client(a.port(), "user_id=alice");
    REQUIRE(tab.hello);
    // A node "ghost" that asked alice to confirm, then died: its records, its heartbeat
    // long expired (as a node killed with SIGKILL leaves them).
    redis_command(redis.port(), {"ZADD", "wsmtest:nodes", "1", "ghost"});
    redis_command(redis.port(), {"HSET", "wsmtest:conf:g1", "state", "pending", "user", "alice",
                                 "task", "ghost-task", "step", "1", "owner", "ghost", "expires",
                                 "9999999999999", "result",
                                 R"({"step":"s","result":null,"completed":false,"message":"m",)"
                                 R"("status":"waiting","error_code":null,"error_message":null})"});
    redis_command(redis.port(), {"SADD", "wsmtest:user:alice:conf", "g1"});
    redis_command(redis.port(), {"SADD", "wsmtest:node:ghost:conf", "g1"});
    auto dismissed = tab->next_of_type("confirmation_resolved", 10s);
    REQUIRE(dismissed);
    CHECK(*string_member(*dismissed, "callback_id") == "g1");
    CHECK(*string_member(*dismissed, "reason") == "shutdown");
    CHECK_FALSE((*dismissed)["proceed"].GetBool());
    CHECK(redis_command(redis.port(), {"ZSCORE", "wsmtest:nodes", "ghost"}) ==
          std::vector<std::string>{"(nil)"});
    CHECK(a.manager->get_status().cluster.nodes == 1);
    stop(*a.manager);
    // Decided confirmations expire by themselves (RedisOptions::decided_kept); nothing else
    // of this cluster stays.
    for (auto const& key : keys(redis)) {
        INFO(key);
        CHECK(key.rfind("wsmtest:conf:", 0) == 0);
    }
}

TEST_CASE("cluster: a slow Redis: local delivery goes on, cross-node calls report "
          "cluster_unavailable, then the cluster recovers",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    node a(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({&a, &b}, 2));
    auto tab_a = connect_client(a.port(), "user_id=alice");
    auto tab_b = connect_client(b.port(), "user_id=bob");
    REQUIRE(tab_a.hello);
    REQUIRE(tab_b.hello);
    // A script that keeps Redis busy for about four seconds: longer than the backplane's
    // command timeout (2 s), shorter than Redis' own script limit (5 s).
    std::thread busy([port = redis.port()] {
        try {
            redis_command(port, {"EVAL",
                                 "local t = redis.call('TIME') local stop = t[1] + 4 "
                                 "while tonumber(redis.call('TIME')[1]) < stop do end return 1",
                                 "0"});
        } catch (std::exception const&) {
        }
    });
    std::this_thread::sleep_for(200ms);
    auto local = a.manager->broadcast_message(json_message(R"({"type":"slow"})"),
                                              asio::use_future);
    CHECK(tab_a->next_of_type("slow", 3s));  // at once, whatever Redis does
    bool unavailable = false;
    try {
        get(std::move(local), 15s);
    } catch (std::system_error const& e) {
        unavailable = e.code() == wsmanager::error::cluster_unavailable;
    }
    CHECK(unavailable);
    busy.join();
    REQUIRE(cluster_of({&a, &b}, 2));
    bool heard = false;
    for (int attempt = 0; attempt < 40 && !heard; ++attempt) {
        try {
            get(a.manager->broadcast_message(json_message(R"({"type":"fast"})"),
                                             asio::use_future));
        } catch (std::system_error const&) {
        }
        heard = tab_b->next_of_type("fast", 250ms).has_value();
    }
    CHECK(heard);
    stop(*a.manager);
    stop(*b.manager);
}

TEST_CASE("cluster: a node restarted under the same node id is heard again",
          "[cluster][nodes][threaded]") {
    // Deployments name their nodes (WEBSOCKET_NODE_ID=node-1): the restarted process counts
    // its envelopes from 1 again, and its peers must not take them for duplicates.
    redis_server redis;
    auto a = std::make_unique<node>(redis, "a");
    node b(redis, "b");
    REQUIRE(cluster_of({a.get(), &b}, 2));
    auto tab = connect_client(b.port(), "user_id=bob");
    REQUIRE(tab.hello);
    for (int i = 0; i < 5; ++i) {
        get(a->manager->broadcast_message(json_message(R"({"type":"before"})"),
                                          asio::use_future));
        CHECK(tab->next_of_type("before"));
    }
    stop(*a->manager);
    a.reset();
    a = std::make_unique<node>(redis, "a");
    REQUIRE(cluster_of({a.get(), &b}, 2));
    get(a->manager->broadcast_message(json_message(R"({"type":"after"})"), asio::use_future));
    CHECK(tab->next_of_type("after"));
    stop(*a->manager);
    stop(*b.manager);
}

TEST_CASE("cluster: a timeout while Redis stays away is decided on the node after "
          "cluster_decision_grace, once",
          "[cluster][nodes][faults][threaded]") {
    redis_server redis;
    std::mutex log_mutex;
    std::vector<std::string> events;
    node a(redis, "a", "wsmtest", [&](wsmanager::Options& o) {
        o.cluster_decision_grace = 1s;
        o.proceed_on_timeout = false;
        o.log_level = wsmanager::LogLevel::warning;
        o.log_sink = [&](wsmanager::LogRecord const& r) {
            std::lock_guard lock(log_mutex);
            events.emplace_back(r.event);
        };
    });
    REQUIRE(cluster_of({&a}, 1));
    auto tab = connect_client(a.port(), "user_id=alice");
    REQUIRE(tab.hello);
    auto decision = a.manager->notify_user(step(), "alice", "task-g", 1, 3s, asio::use_future);
    REQUIRE(tab->next_of_type("task_step_result"));
    redis.kill();
    REQUIRE(wait_until([&] { return !a.manager->get_status().cluster.connected; }, 10s));
    // The timeout comes while Redis is away: it waits for the grace, then ends here.
    auto const answer = get(std::move(decision), 60s);
    CHECK_FALSE(answer.proceed);
    CHECK(answer.reason == wsmanager::ConfirmationReason::timeout);
    auto resolved = tab->next_of_type("confirmation_resolved", 10s);
    REQUIRE(resolved);
    CHECK(*string_member(*resolved, "reason") == "timeout");
    CHECK(tab->expect_silence(silence_window));  // told once
    CHECK(a.manager->get_status().pending_callbacks == 0);
    {
        std::lock_guard lock(log_mutex);
        CHECK(std::find(events.begin(), events.end(), "confirmation_decided_alone") !=
              events.end());
    }
    stop(*a.manager);
}
