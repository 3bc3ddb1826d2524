// SPDX-License-Identifier: BSL-1.0
//
// embed_in_existing_io_context: a host that already runs an asio::io_context with its own
// work (here, a timer that ticks every 100 ms) adds a WebSocketManager to it.
//
// The manager is constructed with the host's executor (`io.get_executor()`): it starts no
// thread of its own, and its sockets, timers and strand all run inside the host's io.run().
// The host co_spawns a coroutine that starts the server, sends progress, and stops it. Once
// the server has stopped and the host's timer has finished, nothing is left to do and
// io.run() returns by itself: a stopped manager keeps no work alive.
//
// It checks itself and exits 0 when every step went as described, 1 otherwise.

#include <chrono>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <string_view>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

using Manager = wsmanager::WebSocketManager<>;
using namespace std::chrono_literals;

int failures = 0;

void say(std::string_view line) { std::cout << "embed: " << line << std::endl; }

void check(bool ok, std::string_view what) {
    std::cout << "embed: " << (ok ? "ok    " : "FAILED") << " " << what << std::endl;
    if (!ok) ++failures;
}

// The host's own periodic work, unrelated to WebSocket: it keeps ticking while the manager
// serves, on the same thread, until the host cancels the timer.
asio::awaitable<void> host_ticker(asio::steady_timer& timer, int& ticks) {
    for (;;) {
        timer.expires_after(100ms);
        std::error_code ec;
        co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;  // cancelled by the host: done
        ++ticks;
    }
}

wsmanager::Message progress(int percent) {
    return wsmanager::Message::from_json(R"({"type":"task_progress","task_id":"import-42",)"
                                         R"("progress":)" +
                                         std::to_string(percent) + "}");
}

// The host's WebSocket session: start, report progress, stop.
asio::awaitable<void> serve_a_task(Manager& manager, asio::steady_timer& host_timer,
                                   int const& ticks) {
    co_await manager.start_server();
    check(manager.local_port() != 0,
          "server listening on 127.0.0.1:" + std::to_string(manager.local_port()) +
              " (port 0 picked a free one)");
    check(manager.get_status().running, "get_status().running while serving");

    asio::steady_timer step(co_await asio::this_coro::executor);
    int const ticks_before = ticks;
    for (int percent = 0; percent <= 100; percent += 25) {
        step.expires_after(150ms);  // the task's "work"; the host's timer ticks meanwhile
        co_await step.async_wait(asio::use_awaitable);
        auto const queued = co_await manager.publish("task:import-42", progress(percent));
        say("progress " + std::to_string(percent) + "% published to " + std::to_string(queued) +
            " subscriber(s)");
    }
    check(ticks > ticks_before, "the host's timer kept ticking while the manager served (" +
                                    std::to_string(ticks - ticks_before) + " ticks)");

    co_await manager.stop_server();
    check(!manager.get_status().running, "stop_server completed; get_status().running is false");

    // The host ends its own work too; then io.run() has nothing left and returns.
    host_timer.cancel();
}

}  // namespace

int main() {
    asio::io_context io;  // the host's, run on the main thread below

    // Runs on the host's io_context: no threads of its own. It must not outlive `io`.
    Manager manager(io.get_executor(), wsmanager::Options{.host = "127.0.0.1", .port = 0});

    int ticks = 0;
    asio::steady_timer host_timer(io);
    asio::co_spawn(io, host_ticker(host_timer, ticks), asio::detached);

    bool session_done = false;
    asio::co_spawn(io, serve_a_task(manager, host_timer, ticks), [&](std::exception_ptr error) {
        session_done = true;
        if (!error) return;
        try {
            std::rethrow_exception(error);
        } catch (std::exception const& e) {
            check(false, std::string("the session threw: ") + e.what());
        }
        host_timer.cancel();
    });

    io.run();  // returns once the session and the host's timer are both done
    check(session_done, "io.run() returned after the session ended");
    say(failures == 0 ? "all checks passed" : std::to_string(failures) + " check(s) failed");
    return failures == 0 ? 0 : 1;
}
