// SPDX-License-Identifier: BSL-1.0
// Host calls from several plain threads at once (use_future) while clients connect and
// disconnect. Run under ThreadSanitizer in CI (label "threaded"). Catch2's assertions are
// not thread-safe: worker threads only count, the test thread checks.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include "harness.hpp"

using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;

TEST_CASE("host calls from many threads while clients come and go", "[concurrency][threaded]") {
    auto options = test_options();
    options.threads = 2;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();

    constexpr int stable_clients = 3;
    constexpr int workers = 4;
    constexpr int rounds = 45;
    std::vector<Connected> stable;
    for (int i = 0; i < stable_clients; ++i) {
        stable.push_back(connect_client(port, "user_id=stable"));
        REQUIRE(stable.back().hello.has_value());
    }

    std::atomic<std::uint64_t> queued{0};
    std::atomic<int> worker_failures{0};
    std::atomic<int> churned{0};
    std::atomic<bool> workers_done{false};

    // Connections that come and go during the whole run.
    std::thread churn([&] {
        for (int i = 0; !workers_done.load() || i < 6; ++i) {
            WsClient client;
            if (client.connect(ws_url(port, "user_id=churn" + std::to_string(i % 3))).opened) {
                (void)client.next_frame(std::chrono::milliseconds(500));
                churned.fetch_add(1);
            }
            if (i > 200) break;
        }
    });

    std::vector<std::thread> threads;
    for (int w = 0; w < workers; ++w) {
        threads.emplace_back([&, w] {
            try {
                for (int r = 0; r < rounds; ++r) {
                    std::string const body = R"("w":)" + std::to_string(w) + R"(,"r":)" +
                                             std::to_string(r) + "}";
                    switch (r % 3) {
                        case 0:
                            queued += get(manager.broadcast_message(
                                json_message(R"({"type":"all",)" + body), asio::use_future));
                            break;
                        case 1:
                            queued += get(manager.send_to_user(
                                "stable", json_message(R"({"type":"stable",)" + body),
                                asio::use_future));
                            break;
                        default:
                            queued += get(manager.send_to_user(
                                "churn" + std::to_string(w % 3),
                                json_message(R"({"type":"churn",)" + body), asio::use_future));
                            (void)manager.get_status().to_json();
                            (void)manager.get_connection_count();
                            break;
                    }
                }
            } catch (...) {
                worker_failures.fetch_add(1);
            }
        });
    }
    for (auto& thread : threads) thread.join();
    workers_done = true;
    churn.join();
    CHECK(worker_failures.load() == 0);
    CHECK(churned.load() >= 6);

    // Every stable client got every broadcast and every message to "stable", in each
    // worker's order, and nothing else.
    int expected = 0;
    for (int r = 0; r < rounds; ++r) expected += (r % 3 == 0 || r % 3 == 1) ? workers : 0;
    for (int i = 0; i < stable_clients; ++i) {
        INFO("stable client " << i);
        std::map<int, int> last_round;
        int received = 0;
        bool in_order = true;
        for (; received < expected; ++received) {
            auto frame = stable[i]->next_json();
            if (!frame) break;
            auto const type = frame_type(*frame);
            if (type != "all" && type != "stable") break;
            int const w = (*frame)["w"].GetInt();
            int const r = (*frame)["r"].GetInt();
            auto const previous = last_round.find(w);
            if (previous != last_round.end() && previous->second >= r) in_order = false;
            last_round[w] = r;
        }
        CHECK(received == expected);
        CHECK(in_order);
        CHECK(stable[i]->expect_silence(std::chrono::milliseconds(100)));
    }

    // Every frame queued was counted, as sent or as failed (a churn connection that
    // closed meanwhile); the `connected` frames are the rest.
    auto const accounted = [&] {
        auto const s = manager.get_status();
        return s.messages_sent + s.messages_failed == queued.load() + s.connections_opened;
    };
    CHECK(wait_until(accounted));
    auto const status = manager.get_status();
    INFO("sent " << status.messages_sent << " failed " << status.messages_failed << " queued "
                 << queued.load() << " opened " << status.connections_opened);
    CHECK(status.connections_opened == static_cast<std::uint64_t>(stable_clients + churned.load()));
    CHECK(wait_until([&] { return manager.get_connection_count() == stable_clients; }));
    stop(manager);
}

TEST_CASE("clients connecting from several threads at once, then stop", "[concurrency][threaded]") {
    auto options = test_options();
    options.threads = 2;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();

    constexpr int threads_count = 4;
    constexpr int per_thread = 5;
    std::vector<std::vector<std::unique_ptr<WsClient>>> clients(threads_count);
    std::atomic<int> hellos{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < threads_count; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_thread; ++i) {
                auto client = std::make_unique<WsClient>();
                if (client->connect(ws_url(port, "user_id=t" + std::to_string(t))).opened &&
                    client->next_of_type("connected")) {
                    hellos.fetch_add(1);
                }
                clients[t].push_back(std::move(client));
            }
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(hellos.load() == threads_count * per_thread);
    CHECK(wait_until([&] { return manager.get_connection_count() == threads_count * per_thread; }));
    CHECK(manager.get_status().users_online == threads_count);

    stop(manager);
    CHECK(manager.get_connection_count() == 0);
    for (auto& group : clients) {
        for (auto& client : group) {
            auto const closed = client->wait_closed();
            REQUIRE(closed.has_value());
            CHECK(closed->code == 1001);
        }
    }
}

TEST_CASE("start and stop cycles while other threads broadcast", "[concurrency][threaded]") {
    auto options = test_options();
    options.threads = 2;
    Manager manager(options);
    std::atomic<bool> done{false};
    std::atomic<int> failures{0};
    std::atomic<std::uint64_t> calls{0};
    std::vector<std::thread> broadcasters;
    for (int w = 0; w < 3; ++w) {
        broadcasters.emplace_back([&] {
            try {
                while (!done.load()) {
                    (void)get(manager.broadcast_message(json_message(R"({"type":"tick"})"),
                                                        asio::use_future));
                    (void)manager.get_status();
                    calls.fetch_add(1);
                }
            } catch (...) {
                failures.fetch_add(1);
            }
        });
    }
    int cycles = 0;
    for (; cycles < 5; ++cycles) {
        start(manager);
        auto client = connect_client(manager.local_port());
        REQUIRE(client.hello.has_value());
        CHECK(client->next_of_type("tick").has_value());
        stop(manager);
        auto const closed = client->wait_closed();
        REQUIRE(closed.has_value());
        CHECK(closed->code == 1001);
    }
    done = true;
    for (auto& thread : broadcasters) thread.join();
    CHECK(failures.load() == 0);
    CHECK(calls.load() > 0);
    CHECK(cycles == 5);
    CHECK_FALSE(manager.get_status().running);
}
