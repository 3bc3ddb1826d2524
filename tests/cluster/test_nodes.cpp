// SPDX-License-Identifier: BSL-1.0
// Several managers in one process, one real redis-server between them: every call means what
// it means on one node, cluster-wide (DESIGN.md's Cluster section). Real WebSocket clients
// connect to each node directly; the process-level test with nginx and killed nodes is
// tests/cluster/cluster_deployment_test.py.

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/use_future.hpp>
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

/// One node: a manager with the Redis backplane on a free port.
struct node {
    node(redis_server const& redis, std::string id, std::string prefix = "wsmtest") {
        auto options = test_options();
        options.redis_url = "redis://127.0.0.1:" + std::to_string(redis.port());
        options.node_id = std::move(id);
        options.cluster_prefix = std::move(prefix);
        options.threads = 2;
        manager = std::make_unique<Manager>(options, wsmanager::cluster::redis(options, fast()));
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
