// SPDX-License-Identifier: BSL-1.0
//
// wsmanager_test_server: a WebSocketManager on 127.0.0.1 for tests written in other
// languages (tests/integration/python_client_test.py).
//
//   - listens on a free port and prints `PORT <n>` on stdout (one line, flushed);
//   - registers the host action "echo": replies to the sender only with
//     {"type":"echo","user_id":<sender or null>,"data":<the frame's "data" or null>};
//   - registers the host action "broadcast": sends {"type":"broadcast","data":<its "data">}
//     to every connection (python_deflate_test.py: one message, many connections);
//   - stops (closing every connection with 1001) and exits 0 on stdin EOF, SIGTERM or
//     SIGINT; exits 1 when it cannot start or stop.
//
// Options come from the environment (Options::from_env), then host and port are forced
// to 127.0.0.1:0 unless WSMANAGER_TEST_SERVER_PORT is set.

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <thread>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <asio/detached.hpp>
#include <asio/use_future.hpp>
#include <rapidjson/document.h>

#include <wsmanager/wsmanager.hpp>

namespace {

wsmanager::Message echo_reply(wsmanager::ActionContext const& context,
                              rapidjson::Value const& frame) {
    rapidjson::Document reply(rapidjson::kObjectType);
    auto& allocator = reply.GetAllocator();
    reply.AddMember("type", "echo", allocator);
    if (context.user_id().empty()) {
        reply.AddMember("user_id", rapidjson::Value(), allocator);
    } else {
        reply.AddMember("user_id", rapidjson::Value(context.user_id().c_str(), allocator),
                        allocator);
    }
    rapidjson::Value data;
    if (auto it = frame.FindMember("data"); it != frame.MemberEnd()) {
        data.CopyFrom(it->value, allocator);
    }
    reply.AddMember("data", data, allocator);
    if (context.request_id() != nullptr) {
        reply.AddMember("request_id", rapidjson::Value(*context.request_id(), allocator),
                        allocator);
    }
    return wsmanager::Message(reply);
}

}  // namespace

int main() {
    // Block the stop signals in every thread (the manager's threads inherit the mask);
    // the main thread takes them with sigwait.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::signal(SIGPIPE, SIG_IGN);

    try {
        auto options = wsmanager::Options::from_env();
        options.host = "127.0.0.1";
        options.port = 0;
        if (char const* port = std::getenv("WSMANAGER_TEST_SERVER_PORT")) {
            options.port = static_cast<std::uint16_t>(std::atoi(port));
        }
        wsmanager::WebSocketManager<> manager(options);
        manager.on_action("echo", [](wsmanager::ActionContext const& context,
                                     rapidjson::Value const& frame) {
            context.reply(echo_reply(context, frame));
        });
        manager.on_action("broadcast", [&manager](wsmanager::ActionContext const&,
                                                  rapidjson::Value const& frame) {
            rapidjson::Document message(rapidjson::kObjectType);
            auto& allocator = message.GetAllocator();
            message.AddMember("type", "broadcast", allocator);
            rapidjson::Value data;
            if (auto it = frame.FindMember("data"); it != frame.MemberEnd()) {
                data.CopyFrom(it->value, allocator);
            }
            message.AddMember("data", data, allocator);
            manager.broadcast_message(wsmanager::Message(message), asio::detached);
        });
        auto started = manager.start_server(asio::use_future);
        if (started.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
            std::fprintf(stderr, "wsmanager_test_server: start timed out\n");
            return 1;
        }
        started.get();
        std::printf("PORT %u\n", static_cast<unsigned>(manager.local_port()));
        std::fflush(stdout);

        // stdin EOF raises SIGTERM on ourselves, so one sigwait covers both ways to stop.
        std::thread([] {
            char buffer[256];
            while (::read(STDIN_FILENO, buffer, sizeof buffer) > 0) {
            }
            ::kill(::getpid(), SIGTERM);
        }).detach();

        int received = 0;
        sigwait(&stop_signals, &received);

        auto stopped = manager.stop_server(asio::use_future);
        if (stopped.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
            std::fprintf(stderr, "wsmanager_test_server: stop timed out\n");
            return 1;
        }
        stopped.get();
        std::fprintf(stderr, "wsmanager_test_server: stopped (signal %d)\n", received);
        return 0;
    } catch (std::exception const& e) {
        std::fprintf(stderr, "wsmanager_test_server: %s\n", e.what());
        return 1;
    }
}
