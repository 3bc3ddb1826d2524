// SPDX-License-Identifier: BSL-1.0
#pragma once

// Shared helpers of the integration tests: options for a manager on 127.0.0.1 with a free
// port, bounded waits on futures and conditions, URLs, and a host io_context on its own
// thread. Header-only; the Catch2 assertions stay in the tests.

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_future.hpp>

#include <wsmanager/wsmanager.hpp>

#include "raw_client.hpp"
#include "ws_client.hpp"

namespace wsmanager::test {

using namespace std::chrono_literals;

/// How long "nothing else arrives" is watched for.
inline constexpr std::chrono::milliseconds silence_window{200};

/// Seconds since the Unix epoch, as the server's timestamps count them.
inline double unix_time_s() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Log level of managers under test: WSMANAGER_TEST_LOG (trace ... off), else error.
inline LogLevel test_log_level() {
    char const* value = std::getenv("WSMANAGER_TEST_LOG");
    if (value == nullptr) return LogLevel::error;
    for (auto level : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warning,
                       LogLevel::error, LogLevel::off}) {
        if (to_string(level) == value) return level;
    }
    return LogLevel::error;
}

/// Options of a manager under test: 127.0.0.1, a free port (see local_port()), quiet logs.
inline Options test_options() {
    Options options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.log_level = test_log_level();
    return options;
}

/// Waits for a future for at most `timeout`; throws std::runtime_error when it is not
/// ready by then (a hung operation fails the test), else returns its value or rethrows.
template <class T>
T get(std::future<T> future, std::chrono::milliseconds timeout = default_wait) {
    if (future.wait_for(timeout) != std::future_status::ready) {
        throw std::runtime_error("asynchronous operation did not complete in time");
    }
    return future.get();
}

/// Polls `condition` every few milliseconds for at most `timeout`.
template <class Condition>
bool wait_until(Condition condition, std::chrono::milliseconds timeout = default_wait) {
    auto const deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
}

/// ws://127.0.0.1:<port>/ with an optional query (without the '?').
inline std::string ws_url(std::uint16_t port, std::string_view query = {},
                          std::string_view path = "/") {
    std::string url = "ws://127.0.0.1:" + std::to_string(port) + std::string(path);
    if (!query.empty()) url.append("?").append(query);
    return url;
}

/// Starts a manager and waits (bounded) until it listens.
template <class Manager>
void start(Manager& manager) {
    get(manager.start_server(asio::use_future));
}

/// Stops a manager and waits (bounded) until every connection is closed.
template <class Manager>
void stop(Manager& manager) {
    get(manager.stop_server(asio::use_future));
}

/// Message from JSON text; throws on invalid JSON (a bug in the test).
inline Message json_message(std::string_view text) { return Message::from_json(text); }

/// A client connected to a manager and past its `connected` frame.
struct Connected {
    std::unique_ptr<WsClient> client;
    std::optional<rapidjson::Document> hello;  ///< the `connected` frame
    WsClient::ConnectResult result;

    WsClient* operator->() const { return client.get(); }
    WsClient& operator*() const { return *client; }
};

/// Connects a WsClient and reads its `connected` frame; `hello` stays empty when the
/// handshake failed or no `connected` frame came.
inline Connected connect_client(std::uint16_t port, std::string_view query = {},
                                std::vector<std::string> subprotocols = {"wsmanager.v1"}) {
    Connected c;
    c.client = std::make_unique<WsClient>();
    c.result = c.client->connect(ws_url(port, query), std::move(subprotocols));
    if (c.result) c.hello = c.client->next_json();
    return c;
}

/// Sends a `ping` action with a request id and waits for the matching `pong`: proof that
/// the connection is open and served.
template <class Client>
bool ping_pong(Client& client, std::string const& request_id = "health") {
    if (!client.send_text(R"({"action":"ping","request_id":")" + request_id + R"("})")) {
        return false;
    }
    auto pong = client.next_of_type("pong");
    return pong && string_member(*pong, "request_id") == request_id;
}

/// An io_context run by a host thread, as a host application would have: a work guard
/// keeps it running until the HostContext is destroyed, which waits (bounded) for the
/// queued work to finish, then stops it.
class HostContext {
public:
    HostContext() : guard_(asio::make_work_guard(io_)) {
        thread_ = std::thread([this] {
            io_.run();
            std::lock_guard lock(mutex_);
            done_ = true;
            changed_.notify_all();
        });
    }
    HostContext(HostContext const&) = delete;
    HostContext& operator=(HostContext const&) = delete;
    ~HostContext() {
        guard_.reset();
        {
            std::unique_lock lock(mutex_);
            changed_.wait_for(lock, 5s, [this] { return done_; });
        }
        io_.stop();
        thread_.join();
    }

    asio::io_context& context() noexcept { return io_; }
    asio::io_context::executor_type executor() noexcept { return io_.get_executor(); }

private:
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::thread thread_;
    std::mutex mutex_;
    std::condition_variable changed_;
    bool done_ = false;
};

}  // namespace wsmanager::test
