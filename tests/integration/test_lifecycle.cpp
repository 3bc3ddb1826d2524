// SPDX-License-Identifier: BSL-1.0
// The server's life: constructors (owning, host executor, host and port), start_server,
// stop_server, restart, destruction, and the HTTP endpoints on the same port.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>

#include "harness.hpp"

using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;

TEST_CASE("start_server on port 0 listens on a free port", "[lifecycle]") {
    Manager manager(test_options());
    CHECK(manager.local_port() == 0);
    CHECK_FALSE(manager.get_status().running);

    start(manager);
    CHECK(manager.local_port() != 0);
    auto const status = manager.get_status();
    CHECK(status.running);
    CHECK(status.port == manager.local_port());
    CHECK(status.active_connections == 0);

    auto client = connect_client(manager.local_port());
    REQUIRE(client.result.opened);
    CHECK(client.hello.has_value());
    stop(manager);
}

TEST_CASE("start_server on a busy port fails with address_in_use", "[lifecycle]") {
    Manager first(test_options());
    start(first);
    auto options = test_options();
    options.port = first.local_port();
    Manager second(options);

    SECTION("through use_future") {
        try {
            get(second.start_server(asio::use_future));
            FAIL("start_server succeeded on a busy port");
        } catch (std::system_error const& e) {
            CHECK(e.code() == asio::error::address_in_use);
        }
    }
    SECTION("through co_await in a coroutine") {
        asio::io_context io;
        std::optional<std::error_code> code;
        bool completed = false;
        asio::co_spawn(
            io,
            [&]() -> asio::awaitable<void> {
                try {
                    co_await second.start_server();
                    code = std::error_code{};
                } catch (std::system_error const& e) {
                    code = e.code();
                }
                completed = true;
            },
            asio::detached);
        io.run_for(default_wait);
        REQUIRE(completed);
        REQUIRE(code.has_value());
        CHECK(*code == asio::error::address_in_use);
    }
    CHECK_FALSE(second.get_status().running);
    // The failed manager is still usable: on a free port it starts.
    CHECK(first.get_status().running);
}

TEST_CASE("start_server while running fails with already_running", "[lifecycle]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    try {
        get(manager.start_server(asio::use_future));
        FAIL("second start_server succeeded");
    } catch (std::system_error const& e) {
        CHECK(e.code() == wsmanager::error::already_running);
    }
    // Still running, on the same port.
    CHECK(manager.get_status().running);
    CHECK(manager.local_port() == port);
    auto client = connect_client(port);
    CHECK(client.hello.has_value());
}

TEST_CASE("start_server refuses redis_url without a backplane, rather than run alone",
          "[lifecycle]") {
    // The sink is called one record at a time (LogSink), but read here from the test thread.
    std::mutex mutex;
    std::vector<std::string> errors;
    auto options = test_options();
    options.log_level = wsmanager::LogLevel::warning;
    options.log_sink = [&](wsmanager::LogRecord const& record) {
        std::lock_guard lock(mutex);
        if (record.level == wsmanager::LogLevel::error) errors.emplace_back(record.message);
    };
    SECTION("set: start_server fails with error::no_backplane, and nothing listens") {
        options.redis_url = "redis://127.0.0.1:6379";
        Manager manager(options);
        auto started = manager.start_server(asio::use_future);
        CHECK_THROWS_AS(get(std::move(started)), std::system_error);
        std::promise<std::error_code> again;
        manager.start_server([&again](std::error_code ec) { again.set_value(ec); });
        CHECK(get(again.get_future()) == wsmanager::error::no_backplane);
        CHECK_FALSE(manager.get_status().running);
        std::lock_guard lock(mutex);
        REQUIRE_FALSE(errors.empty());
        CHECK(errors.front().find("backplane") != std::string::npos);
    }
    SECTION("unset: a single node starts") {
        Manager manager(options);
        start(manager);
        CHECK(manager.get_status().running);
        CHECK(manager.get_status().node_id.empty());
        CHECK_FALSE(manager.get_status().cluster.enabled);
        stop(manager);
        std::lock_guard lock(mutex);
        CHECK(errors.empty());
    }
}

TEST_CASE("stop_server closes every connection with 1001", "[lifecycle]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    std::vector<Connected> clients;
    for (int i = 0; i < 5; ++i) {
        clients.push_back(connect_client(port, "user_id=u" + std::to_string(i)));
        REQUIRE(clients.back().hello.has_value());
    }
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 5; }));

    stop(manager);
    // Completing means every connection is gone.
    auto const status = manager.get_status();
    CHECK_FALSE(status.running);
    CHECK(status.active_connections == 0);
    CHECK(status.users_online == 0);
    CHECK(manager.get_connection_count() == 0);
    for (auto& client : clients) {
        auto const closed = client->wait_closed();
        REQUIRE(closed.has_value());
        CHECK(closed->code == 1001);
        CHECK(closed->reason == "Server shutting down");
    }
    // No longer listening.
    WsClient late;
    CHECK_FALSE(late.connect(ws_url(port)).opened);
}

TEST_CASE("stop_server completes when a client does not answer the close", "[lifecycle]") {
    auto options = test_options();
    options.close_timeout = std::chrono::milliseconds(500);
    Manager manager(options);
    start(manager);
    RawClient silent(manager.local_port());
    REQUIRE(silent.handshake("/?user_id=silent") == 101);
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 1; }));

    auto const begin = std::chrono::steady_clock::now();
    stop(manager);
    auto const took = std::chrono::steady_clock::now() - begin;
    CHECK(took < std::chrono::seconds(3));
    CHECK(manager.get_connection_count() == 0);
    auto const close = silent.read_until_close();
    REQUIRE(close.has_value());
    CHECK(close->close_code() == 1001);
}

TEST_CASE("stop_server on a stopped manager completes at once", "[lifecycle]") {
    Manager manager(test_options());
    SECTION("never started") {
        CHECK_NOTHROW(stop(manager));
        CHECK_FALSE(manager.get_status().running);
    }
    SECTION("stopped twice") {
        start(manager);
        stop(manager);
        CHECK_NOTHROW(stop(manager));
        CHECK_FALSE(manager.get_status().running);
    }
    SECTION("two stops at once") {
        start(manager);
        auto client = connect_client(manager.local_port());
        REQUIRE(client.hello.has_value());
        auto a = manager.stop_server(asio::use_future);
        auto b = manager.stop_server(asio::use_future);
        CHECK_NOTHROW(get(std::move(a)));
        CHECK_NOTHROW(get(std::move(b)));
        CHECK(manager.get_connection_count() == 0);
    }
}

TEST_CASE("a stopped manager starts again", "[lifecycle]") {
    Manager manager(test_options());
    start(manager);
    {
        auto client = connect_client(manager.local_port(), "user_id=first");
        REQUIRE(client.hello.has_value());
        stop(manager);
        auto const closed = client->wait_closed();
        REQUIRE(closed.has_value());
        CHECK(closed->code == 1001);
    }
    CHECK_FALSE(manager.get_status().running);

    start(manager);
    CHECK(manager.get_status().running);
    CHECK(manager.local_port() != 0);
    auto client = connect_client(manager.local_port(), "user_id=second");
    REQUIRE(client.hello.has_value());
    CHECK(string_member(*client.hello, "user_id") == "second");
    CHECK(get(manager.broadcast_message(json_message(R"({"type":"again"})"), asio::use_future)) == 1);
    auto frame = client->next_of_type("again");
    CHECK(frame.has_value());
    CHECK(manager.get_status().connections_opened == 2);
    stop(manager);
}

TEST_CASE("the destructor stops a running server", "[lifecycle]") {
    WsClient client;  // outlives the manager
    {
        Manager manager(test_options());
        start(manager);
        REQUIRE(client.connect(ws_url(manager.local_port())).opened);
        REQUIRE(client.next_of_type("connected").has_value());
    }
    auto const closed = client.wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1001);
}

TEST_CASE("owning constructor runs on its own threads", "[lifecycle][constructor]") {
    auto const threads = GENERATE(std::size_t{1}, std::size_t{2});
    INFO("threads = " << threads);
    auto options = test_options();
    options.threads = threads;
    Manager manager(options);
    start(manager);
    std::vector<Connected> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(connect_client(manager.local_port()));
        REQUIRE(clients.back().hello.has_value());
    }
    CHECK(get(manager.broadcast_message(json_message(R"({"type":"hello"})"), asio::use_future)) == 4);
    for (auto& client : clients) CHECK(client->next_of_type("hello").has_value());
    stop(manager);
    CHECK(manager.get_connection_count() == 0);
}

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

TEST_CASE("host executor constructor accepts a strand of an io_context", "[lifecycle][constructor]") {
    HostContext host;
    Manager manager(asio::make_strand(host.executor()), test_options());
    CHECK(manager.get_executor() == host.executor());
    start(manager);
    auto client = connect_client(manager.local_port());
    CHECK(client.hello.has_value());
    stop(manager);
}

TEST_CASE("the (host, port) constructor", "[lifecycle][constructor]") {
    Manager manager("127.0.0.1", 0);
    start(manager);
    CHECK(manager.local_port() != 0);
    CHECK(manager.get_status().running);
    auto client = connect_client(manager.local_port());
    CHECK(client.hello.has_value());
    stop(manager);
}

TEST_CASE("settings that make no sense throw from the constructor", "[lifecycle][constructor]") {
    auto options = test_options();
    options.max_connections = 0;
    CHECK_THROWS_AS(Manager(options), std::invalid_argument);
    auto empty_host = test_options();
    empty_host.host.clear();
    CHECK_THROWS_AS(Manager(empty_host), std::invalid_argument);
}

TEST_CASE("HTTP on the same port: /healthz and /status", "[lifecycle][http]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    {
        RawClient http(port);
        auto const [status, body] = http.http_get("/healthz");
        CHECK(status == 200);
        CHECK_FALSE(body.empty());
    }
    {
        RawClient http(port);
        auto const [status, body] = http.http_get("/status");
        CHECK(status == 200);
        auto json = parse_json(body);
        REQUIRE(json.has_value());
        REQUIRE(json->IsObject());
        CHECK((*json)["running"].GetBool());
        CHECK((*json)["port"].GetUint() == port);
    }
    {
        RawClient http(port);
        CHECK(http.http_get("/no-such-page").first == 404);
    }
    stop(manager);
}

// DESIGN.md: "GET /metrics (Prometheus text format)".
TEST_CASE("HTTP on the same port: /metrics", "[lifecycle][http]") {
    Manager manager(test_options());
    start(manager);
    RawClient http(manager.local_port());
    auto const [status, body] = http.http_get("/metrics");
    CHECK(status == 200);
    CHECK_THAT(body, Catch::Contains("# TYPE"));
    stop(manager);
}
