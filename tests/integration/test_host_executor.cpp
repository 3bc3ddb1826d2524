// SPDX-License-Identifier: BSL-1.0
// WebSocketManager(executor, options): a manager on the host's io_context, driven from a
// coroutine and from plain threads; an executor of another kind is refused.
//
// Built by the ctest test integration.host_executor.build rather than by the default build
// (see tests/CMakeLists.txt), so that a compile error in the host-executor constructor fails
// one test instead of every build.

#include <cstdint>
#include <stdexcept>
#include <utility>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;

TEST_CASE("host executor constructor: a coroutine co_awaits start, broadcast, stop",
          "[lifecycle][constructor]") {
    HostContext host;
    Manager manager(host.executor(), test_options());
    CHECK(manager.get_executor() == host.executor());

    auto port = get(asio::co_spawn(
        host.context(),
        [&]() -> asio::awaitable<std::uint16_t> {
            co_await manager.start_server();
            co_return manager.local_port();
        },
        asio::use_future));
    REQUIRE(port != 0);

    auto client = connect_client(port, "user_id=alice");
    REQUIRE(client.hello.has_value());

    auto counts = get(asio::co_spawn(
        host.context(),
        [&]() -> asio::awaitable<std::pair<std::size_t, std::size_t>> {
            auto const everyone =
                co_await manager.broadcast_message(json_message(R"({"type":"to_all"})"));
            auto const alice =
                co_await manager.send_to_user("alice", json_message(R"({"type":"to_alice"})"));
            co_await manager.stop_server();
            co_return std::pair{everyone, alice};
        },
        asio::use_future));
    CHECK(counts.first == 1);
    CHECK(counts.second == 1);
    CHECK(client->next_of_type("to_all").has_value());
    CHECK(client->next_of_type("to_alice").has_value());
    auto const closed = client->wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1001);
    CHECK_FALSE(manager.get_status().running);
}

TEST_CASE("host executor constructor works with use_future from another thread",
          "[lifecycle][constructor]") {
    HostContext host;
    Manager manager(host.executor(), test_options());
    start(manager);
    auto client = connect_client(manager.local_port());
    REQUIRE(client.hello.has_value());
    CHECK(get(manager.broadcast_message(json_message(R"({"type":"x"})"), asio::use_future)) == 1);
    stop(manager);
}

TEST_CASE("an executor that does not belong to an io_context is refused",
          "[lifecycle][constructor]") {
    asio::thread_pool pool(1);
    CHECK_THROWS_AS(Manager(pool.get_executor(), test_options()), std::invalid_argument);
    pool.join();
}

TEST_CASE("host executor constructor validates its options", "[lifecycle][constructor]") {
    auto options = test_options();
    options.host.clear();
    asio::io_context io;
    CHECK_THROWS_AS(Manager(io.get_executor(), options), std::invalid_argument);
}

TEST_CASE("host executor: the destructor leaves a running server to stop on the host",
          "[lifecycle][constructor]") {
    WsClient client;  // outlives the manager
    HostContext host;
    {
        Manager manager(host.executor(), test_options());
        start(manager);
        REQUIRE(client.connect(ws_url(manager.local_port())).opened);
        REQUIRE(client.next_of_type("connected").has_value());
    }
    // The host keeps running its io_context: the stop started by the destructor finishes.
    auto const closed = client.wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1001);
}
