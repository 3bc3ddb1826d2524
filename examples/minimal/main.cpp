// SPDX-License-Identifier: BSL-1.0
//
// minimal: the smallest complete wsmanager program, and the demo `scripts/demo.sh` runs.
//
// It reads its settings from the environment (Options::from_env(): WEBSOCKET_HOST,
// WEBSOCKET_PORT, ...), starts the server, prints the URL to open, sends one message of each
// kind (a broadcast, a message to one user, progress published to a topic), then pushes a
// progress message every 2 s until Ctrl-C (SIGINT/SIGTERM) or `--run-for <seconds>`.
//
//   minimal [--port N] [--run-for SECONDS] [--self-test]
//
// Try it with a browser console, websocat or wscat:
//   websocat 'ws://localhost:8765/?user_id=alice'
//   then send {"action":"subscribe","topic":"task:demo"} to get the task's progress too.
//
// `--self-test` connects a websocketpp client as alice to the server and checks that it
// receives the `connected` frame, the broadcast, alice's message and the published progress;
// exit status 0 when it did, 1 when not (bounded to 10 s). The tests run it that way.
//
// The manager owns its io_context and network thread; this program's own work (signals,
// timers, the coroutine below) runs on a second io_context on the main thread, and each
// `co_await manager.xxx(...)` resumes there. Coroutines follow Asio's cpp20 examples.

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>

#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <rapidjson/document.h>
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

using namespace asio::experimental::awaitable_operators;
using std::chrono::steady_clock;
using Manager = wsmanager::WebSocketManager<>;

constexpr std::string_view demo_user = "alice";
constexpr std::string_view demo_task = "demo";
constexpr std::string_view demo_topic = "task:demo";  // protocol::task_topic("demo")
constexpr auto progress_period = std::chrono::seconds(2);
constexpr auto self_test_budget = std::chrono::seconds(10);

void say(std::string_view line) { std::cout << "minimal: " << line << std::endl; }

struct Settings {
    std::optional<std::uint16_t> port;                 // --port, over WEBSOCKET_PORT
    std::optional<std::chrono::milliseconds> run_for;  // --run-for; none: until a signal
    bool self_test = false;
};

Settings parse_arguments(int argc, char** argv) {
    Settings settings;
    for (int i = 1; i < argc; ++i) {
        std::string_view const arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
            return argv[++i];
        };
        if (arg == "--port") {
            auto const text = value();
            std::uint16_t port = 0;
            auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
            if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
                throw std::invalid_argument("--port " + text + ": expected 0..65535");
            }
            settings.port = port;
        } else if (arg == "--run-for") {
            auto const text = value();
            double seconds = 0;
            auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
            if (ec != std::errc{} || end != text.data() + text.size() || !(seconds > 0) ||
                seconds > 1e6) {
                throw std::invalid_argument("--run-for " + text + ": expected seconds > 0");
            }
            settings.run_for = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
        } else if (arg == "--self-test") {
            settings.self_test = true;
        } else {
            throw std::invalid_argument("unknown argument " + std::string(arg) +
                                        " (usage: minimal [--port N] [--run-for SECONDS] "
                                        "[--self-test])");
        }
    }
    return settings;
}

rapidjson::Value text_value(std::string_view text, rapidjson::Document::AllocatorType& alloc) {
    return rapidjson::Value(text.data(), static_cast<rapidjson::SizeType>(text.size()), alloc);
}

double unix_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// A host-defined message: any JSON object; clients tell them apart by "type". It is
// serialized once here and the same bytes go to every connection it is sent to.
wsmanager::Message progress_message(int percent, std::string_view text) {
    rapidjson::Document doc(rapidjson::kObjectType);
    auto& alloc = doc.GetAllocator();
    doc.AddMember("type", "task_progress", alloc);
    doc.AddMember("task_id", text_value(demo_task, alloc), alloc);
    doc.AddMember("progress", percent, alloc);
    doc.AddMember("message", text_value(text, alloc), alloc);
    doc.AddMember("timestamp", unix_time(), alloc);
    return wsmanager::Message(doc);
}

// What every client sees once: a system notice to all, a notification to alice, and three
// progress steps of the demo task to its subscribers.
asio::awaitable<void> send_demo_messages(Manager& manager) {
    // JSON text works too; Message::from_json validates it.
    auto const notice = wsmanager::Message::from_json(
        R"({"type":"system_notice","level":"info","message":"wsmanager demo is up"})");
    std::size_t n = co_await manager.broadcast_message(notice);
    say("broadcast a system notice -> queued to " + std::to_string(n) + " connection(s)");

    auto const personal = wsmanager::Message::from_json(
        R"({"type":"notification","title":"Hello alice","message":"This one is only for you"})");
    n = co_await manager.send_to_user(std::string(demo_user), personal);
    say("sent " + std::string(demo_user) + " a notification -> queued to " + std::to_string(n) +
        " of their connection(s)");

    for (int percent : {25, 50, 75}) {
        n = co_await manager.publish(
            std::string(demo_topic),
            progress_message(percent, "step " + std::to_string(percent / 25)));
        say("published progress " + std::to_string(percent) + "% to " + std::string(demo_topic) +
            " -> " + std::to_string(n) + " subscriber(s)");
    }
}

// Every 2 s, a progress message to every connection, so a freshly connected client sees
// traffic. Runs until cancelled (the `||` in run_demo cancels it).
asio::awaitable<void> push_progress(Manager& manager) {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (int tick = 1;; ++tick) {
        timer.expires_after(progress_period);
        co_await timer.async_wait(asio::use_awaitable);
        int const percent = (tick * 10) % 110;
        auto const n = co_await manager.broadcast_message(
            progress_message(percent, "tick " + std::to_string(tick)));
        say("tick " + std::to_string(tick) + ": broadcast progress " + std::to_string(percent) +
            "% -> " + std::to_string(n) + " connection(s)");
    }
}

// Completes on SIGINT/SIGTERM, or after `run_for` when given.
asio::awaitable<void> wait_for_stop(asio::signal_set& signals,
                                    std::optional<std::chrono::milliseconds> run_for) {
    if (!run_for) {
        int const signal = co_await signals.async_wait(asio::use_awaitable);
        say(std::string(signal == SIGINT ? "SIGINT" : "SIGTERM") + " received; stopping");
        co_return;
    }
    asio::steady_timer timer(co_await asio::this_coro::executor, *run_for);
    auto const which =
        co_await (signals.async_wait(asio::use_awaitable) || timer.async_wait(asio::use_awaitable));
    say(which.index() == 0 ? "signal received; stopping" : "--run-for elapsed; stopping");
}

// ---- --self-test: a websocketpp client connected as alice -------------------------------

// A client on the same io_context as the coroutines above, so its handlers and the checks
// never run at the same time. Every handler wakes `wake` after recording what happened.
class self_test_client {
public:
    using client_type = websocketpp::client<websocketpp::config::asio_client>;

    explicit self_test_client(asio::io_context& io) : wake_(io) {
        client_.clear_access_channels(websocketpp::log::alevel::all);
        client_.clear_error_channels(websocketpp::log::elevel::all);
        client_.init_asio(&io);
        client_.set_open_handshake_timeout(2000);
        client_.set_close_handshake_timeout(1000);
        client_.set_fail_handler([this](websocketpp::connection_hdl) {
            failure_ = "connection failed";
            wake();
        });
        client_.set_close_handler([this](websocketpp::connection_hdl) {
            closed_ = true;
            wake();
        });
        client_.set_message_handler(
            [this](websocketpp::connection_hdl hdl, client_type::message_ptr message) {
                on_frame(hdl, message->get_payload());
                wake();
            });
    }

    void connect(std::string const& uri) {
        std::error_code ec;
        auto con = client_.get_connection(uri, ec);
        if (ec) {
            failure_ = "bad uri: " + ec.message();
            return;
        }
        hdl_ = con->get_handle();
        client_.connect(con);
    }

    void close() {
        std::error_code ec;
        if (!closed_) client_.close(hdl_, websocketpp::close::status::normal, "done", ec);
    }

    /// Waits until `done()` holds or something failed; false at the deadline or on failure.
    asio::awaitable<bool> wait_until(std::function<bool()> done,
                                     steady_clock::time_point deadline) {
        while (!done()) {
            if (!failure_.empty() || steady_clock::now() >= deadline) co_return false;
            wake_.expires_at(deadline);
            std::error_code ignored;  // operation_aborted: woken by a handler
            co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
        }
        co_return true;
    }

    bool saw(std::string const& type) const { return types_.count(type) != 0; }
    int progress_frames() const { return progress_frames_; }
    bool subscribed() const { return saw("subscribed"); }
    std::string const& failure() const { return failure_; }

private:
    void wake() { wake_.cancel(); }

    void on_frame(websocketpp::connection_hdl hdl, std::string const& payload) {
        rapidjson::Document frame;
        frame.Parse(payload.data(), payload.size());
        if (frame.HasParseError() || !frame.IsObject() || !frame.HasMember("type") ||
            !frame["type"].IsString()) {
            failure_ = "frame without a type: " + payload;
            return;
        }
        std::string const type = frame["type"].GetString();
        std::cout << "minimal: [client alice] received " << payload << std::endl;
        types_.insert(type);
        if (type == "task_progress") ++progress_frames_;
        if (type == "connected") {
            // Join the demo task's topic; the server answers `subscribed`.
            std::error_code ec;
            client_.send(hdl, R"({"action":"subscribe","topic":"task:demo"})",
                         websocketpp::frame::opcode::text, ec);
            if (ec) failure_ = "subscribe: " + ec.message();
        }
    }

    client_type client_;
    asio::steady_timer wake_;
    websocketpp::connection_hdl hdl_;
    std::set<std::string> types_;
    int progress_frames_ = 0;
    bool closed_ = false;
    std::string failure_;
};

asio::awaitable<int> self_test(Manager& manager, self_test_client& client) {
    auto const deadline = steady_clock::now() + self_test_budget - std::chrono::seconds(3);
    auto const uri = "ws://127.0.0.1:" + std::to_string(manager.local_port()) +
                     "/?user_id=" + std::string(demo_user);
    say("self-test: connecting " + uri);
    client.connect(uri);
    if (!co_await client.wait_until([&] { return client.subscribed(); }, deadline)) {
        say("self-test FAILED: no connected/subscribed frames (" + client.failure() + ")");
        co_return 1;
    }
    co_await send_demo_messages(manager);
    bool const received = co_await client.wait_until(
        [&] {
            return client.saw("system_notice") && client.saw("notification") &&
                   client.progress_frames() == 3;
        },
        deadline);
    client.close();
    if (!received) {
        say("self-test FAILED: broadcast " +
            std::string(client.saw("system_notice") ? "ok" : "missing") + ", user message " +
            (client.saw("notification") ? "ok" : "missing") + ", progress " +
            std::to_string(client.progress_frames()) + "/3 (" + client.failure() + ")");
        co_return 1;
    }
    say("self-test passed: connected, broadcast, user message and 3 published progress frames");
    co_return 0;
}

// ---- the program ------------------------------------------------------------------------

asio::awaitable<int> run(Manager& manager, wsmanager::Options const& options,
                         Settings const& settings, asio::signal_set& signals,
                         self_test_client* client) {
    co_await manager.start_server();  // throws std::system_error, e.g. address in use
    auto const port = std::to_string(manager.local_port());
    bool const any_address = options.host == "0.0.0.0" || options.host == "::";
    say("listening on " + options.host + ":" + port);
    say("open ws://" + (any_address ? std::string("localhost") : options.host) + ":" + port +
        "/?user_id=" + std::string(demo_user) + "  (browser, websocat or wscat)");
    say(R"(send {"action":"subscribe","topic":"task:demo"} to get the demo task's progress)");

    int status = 0;
    if (client != nullptr) {
        status = co_await self_test(manager, *client);
    } else {
        co_await send_demo_messages(manager);
        say(settings.run_for ? "pushing progress every 2 s until --run-for elapses"
                             : "pushing progress every 2 s; press Ctrl-C to stop");
        co_await (push_progress(manager) || wait_for_stop(signals, settings.run_for));
    }

    // Closes every connection with 1001 and waits for them (at most Options::close_timeout).
    co_await manager.stop_server();
    auto const s = manager.get_status();
    say("stopped: " + std::to_string(s.connections_opened) + " connection(s) served, " +
        std::to_string(s.messages_sent) + " frame(s) sent, " + std::to_string(s.messages_failed) +
        " failed");
    co_return status;
}

}  // namespace

int main(int argc, char** argv) {
    Settings settings;
    wsmanager::Options options;
    try {
        settings = parse_arguments(argc, argv);
        options = wsmanager::Options::from_env();  // a malformed variable is an error, by name
    } catch (std::exception const& e) {
        std::cerr << "minimal: " << e.what() << std::endl;
        return 2;
    }
    if (settings.port) options.port = *settings.port;
    if (settings.self_test) {
        // Loopback, a free port unless --port says otherwise, development identities
        // (?user_id=), and short closing handshakes so a failure still ends within 10 s.
        options.host = "127.0.0.1";
        if (!settings.port) options.port = 0;
        options.auth_secret.clear();
        options.auth_public_key.clear();
        options.auth_issuer.clear();
        options.auth_audience.clear();
        options.allowed_origins.clear();
        options.close_timeout = std::chrono::seconds(1);
    }

    asio::io_context io;
    // Installed before the server starts, so Ctrl-C always ends the program cleanly.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    std::optional<self_test_client> client;
    if (settings.self_test) client.emplace(io);

    try {
        Manager manager(options);  // owns its io_context and runs it on options.threads threads
        int exit_code = 1;
        asio::co_spawn(io, run(manager, options, settings, signals, client ? &*client : nullptr),
                       [&](std::exception_ptr error, int status) {
                           signals.cancel();
                           if (!error) {
                               exit_code = status;
                               return;
                           }
                           try {
                               std::rethrow_exception(error);
                           } catch (std::exception const& e) {
                               std::cerr << "minimal: " << e.what() << std::endl;
                           }
                       });
        io.run();
        return exit_code;
    } catch (std::exception const& e) {  // invalid Options
        std::cerr << "minimal: " << e.what() << std::endl;
        return 2;
    }
}
