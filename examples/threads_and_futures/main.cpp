// SPDX-License-Identifier: BSL-1.0
//
// threads_and_futures: using the manager from plain std::threads, without coroutines.
//
// Every asynchronous member takes a completion token; `asio::use_future` turns it into a
// std::future, so a thread can call `manager.broadcast_message(m, asio::use_future).get()`.
// An error arrives as a std::system_error thrown by get(). get_status() and
// get_connection_count() are plain calls that never block.
//
// The program starts the server, connects one client (a websocketpp client on a thread of
// its own, standing in for a browser), broadcasts from 4 threads at once while a fifth reads
// get_status(), checks that the client got every message, and stops. It checks itself and
// exits 0 when every step went as described, 1 otherwise.
//
// Never call `.get()` on one of the manager's own threads (inside an action handler, say):
// the thread would wait for work that only it can do.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <future>
#include <iostream>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/use_future.hpp>
#include <rapidjson/document.h>
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

using namespace std::chrono_literals;

constexpr int sender_threads = 4;
constexpr int messages_per_thread = 25;
constexpr int total_messages = sender_threads * messages_per_thread;

std::mutex output_mutex;
int failures = 0;

void say(std::string_view line) {
    std::lock_guard lock(output_mutex);
    std::cout << "threads: " << line << std::endl;
}

void check(bool ok, std::string_view what) {
    std::lock_guard lock(output_mutex);
    std::cout << "threads: " << (ok ? "ok    " : "FAILED") << " " << what << std::endl;
    if (!ok) ++failures;
}

// A WebSocket client on its own thread and io_context, counting the broadcasts it receives.
class listener {
public:
    using client_type = websocketpp::client<websocketpp::config::asio_client>;

    explicit listener(std::string const& uri) {
        client_.clear_access_channels(websocketpp::log::alevel::all);
        client_.clear_error_channels(websocketpp::log::elevel::all);
        client_.init_asio();
        client_.set_message_handler(
            [this](websocketpp::connection_hdl, client_type::message_ptr message) {
                on_frame(message->get_payload());
            });
        std::error_code ec;
        auto con = client_.get_connection(uri, ec);
        if (ec) throw std::system_error(ec);
        client_.connect(con);
        thread_ = std::thread([this] { client_.run(); });  // returns once the connection ends
    }

    listener(listener const&) = delete;
    listener& operator=(listener const&) = delete;
    ~listener() { thread_.join(); }

    /// The server's `connected` frame: the manager has registered this connection.
    bool wait_connected(std::chrono::milliseconds timeout) {
        return connected_future_.wait_for(timeout) == std::future_status::ready;
    }
    bool wait_all(std::chrono::milliseconds timeout) {
        return all_future_.wait_for(timeout) == std::future_status::ready;
    }
    int broadcasts() const { return broadcasts_.load(); }

private:
    void on_frame(std::string const& payload) {  // on the client's thread
        rapidjson::Document frame;
        frame.Parse(payload.data(), payload.size());
        if (frame.HasParseError() || !frame.IsObject() || !frame.HasMember("type")) return;
        std::string_view const type = frame["type"].GetString();
        if (type == "connected") connected_.set_value();
        if (type == "counter" && broadcasts_.fetch_add(1) + 1 == total_messages) {
            all_.set_value();
        }
    }

    client_type client_;
    std::promise<void> connected_;
    std::future<void> connected_future_ = connected_.get_future();
    std::promise<void> all_;
    std::future<void> all_future_ = all_.get_future();
    std::atomic<int> broadcasts_{0};
    std::thread thread_;
};

wsmanager::Message counter_message(int thread, int n) {
    return wsmanager::Message::from_json(R"({"type":"counter","thread":)" + std::to_string(thread) +
                                         R"(,"n":)" + std::to_string(n) + "}");
}

}  // namespace

int main() {
    // Owns its io_context, run here on two threads of its own.
    wsmanager::WebSocketManager<> manager(
        wsmanager::Options{.host = "127.0.0.1", .port = 0, .threads = 2});

    // start_server: void(std::error_code) -> std::future<void>.
    try {
        manager.start_server(asio::use_future).get();
        check(true, "start_server(use_future).get() -> listening on port " +
                        std::to_string(manager.local_port()));
    } catch (std::system_error const& e) {
        check(false, std::string("start_server: ") + e.what());
        return 1;
    }

    // Errors arrive as exceptions from get(): starting twice is error::already_running.
    try {
        manager.start_server(asio::use_future).get();
        check(false, "a second start_server should fail");
    } catch (std::system_error const& e) {
        check(e.code() == wsmanager::error::already_running,
              std::string("second start_server throws: ") + e.code().message());
    }

    {
        listener client("ws://127.0.0.1:" + std::to_string(manager.local_port()) +
                        "/?user_id=alice");
        check(client.wait_connected(5s), "a client connected as alice");

        // A fifth thread reads the status while the senders run.
        std::atomic<bool> sending{true};
        std::size_t polls = 0;
        std::size_t max_connections_seen = 0;
        std::thread status_reader([&] {
            while (sending.load()) {
                auto const status = manager.get_status();  // never blocks
                max_connections_seen = std::max(max_connections_seen, status.active_connections);
                ++polls;
                std::this_thread::sleep_for(1ms);
            }
        });

        // broadcast_message: void(std::error_code, std::size_t) -> std::future<std::size_t>.
        std::atomic<std::size_t> queued_total{0};
        std::vector<std::thread> senders;
        for (int t = 0; t < sender_threads; ++t) {
            senders.emplace_back([&manager, &queued_total, t] {
                for (int n = 0; n < messages_per_thread; ++n) {
                    queued_total +=
                        manager.broadcast_message(counter_message(t, n), asio::use_future).get();
                }
            });
        }
        for (auto& sender : senders) sender.join();
        sending.store(false);
        status_reader.join();

        check(queued_total.load() == total_messages,
              std::to_string(sender_threads) + " threads x " + std::to_string(messages_per_thread) +
                  " broadcasts queued to " + std::to_string(queued_total.load()) +
                  " connection(s) in total");
        check(client.wait_all(5s), "the client received " + std::to_string(client.broadcasts()) +
                                       " of " + std::to_string(total_messages) + " broadcasts");
        check(max_connections_seen == 1 && polls > 0,
              "get_status() from another thread: " + std::to_string(polls) +
                  " polls, active_connections " + std::to_string(max_connections_seen));

        // send_to_user works the same way; the count is the user's connections.
        auto to_alice = manager.send_to_user(
            "alice", wsmanager::Message::from_json(R"({"type":"note","text":"bye"})"),
            asio::use_future);
        check(to_alice.get() == 1, "send_to_user(\"alice\") queued to 1 connection");

        // stop_server closes the client's connection (1001), so its thread ends.
        manager.stop_server(asio::use_future).get();
    }

    auto const status = manager.get_status();
    check(!status.running && manager.get_connection_count() == 0,
          "stop_server(use_future).get() -> stopped, no connection left");
    say("status: " + status.to_json());
    say(failures == 0 ? "all checks passed" : std::to_string(failures) + " check(s) failed");
    return failures == 0 ? 0 : 1;
}
