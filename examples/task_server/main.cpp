// SPDX-License-Identifier: BSL-1.0
//
// task_server: a host application that embeds wsmanager beside its own task service, and
// serves a live dashboard on the same port. See README.md in this folder.
//
//   task_server [--host H] [--port N] [--web-root DIR] [--max-running N]
//
// Open http://localhost:8765/?user_id=alice, press "Start sample task", answer its questions.
// Settings come from Options::from_env() (WEBSOCKET_HOST, WEBSOCKET_PORT, ...); --host and
// --port override them. --port 0 picks a free port; the program prints `LISTENING <port>`
// once it listens. SIGINT/SIGTERM: a notice to every client, running tasks cancelled, every
// connection closed with 1001, exit status 0.
//
// Cluster: with WEBSOCKET_REDIS_URL set, the program is one node of a cluster (several
// task_servers behind a load balancer, Redis between them: deploy/, cluster_node.hpp;
// WEBSOCKET_NODE_ID, WEBSOCKET_CLUSTER_PREFIX, TASK_SERVER_CLUSTER_TIMINGS), and prints
// `NODE <id>` before `LISTENING <port>`. The operator routes /api/admin/* (admin_api.hpp,
// loopback peers only) drive broadcast_message, send_to_user, publish and disconnect_user
// from outside.
//
// Threads: the manager owns its io_context and network thread(s) (Options::threads). The
// host's io_context runs on the main thread: signals, the task service's queue and every
// task coroutine; `co_await manager.xxx(...)` resumes there. HTTP requests run on the
// manager's threads and only touch TaskService's mutex-guarded registry.

#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/wsmanager.hpp>

#include "admin_api.hpp"
#include "cluster_node.hpp"
#include "http_api.hpp"
#include "step_processor.hpp"
#include "task_service.hpp"

#ifndef WSMANAGER_TASK_SERVER_WEB_ROOT
#define WSMANAGER_TASK_SERVER_WEB_ROOT ""
#endif

namespace {

using task_server::Manager;

void say(std::string_view line) { std::cout << "task_server: " << line << std::endl; }

constexpr std::string_view usage =
    "usage: task_server [--host H] [--port N] [--web-root DIR] [--max-running N]";

struct Settings {
    std::optional<std::string> host;    // --host, over WEBSOCKET_HOST
    std::optional<std::uint16_t> port;  // --port, over WEBSOCKET_PORT
    std::optional<std::filesystem::path> web_root;
    std::size_t max_running = 4;
    bool help = false;
};

template <class Number>
Number parse_number(std::string_view option, std::string const& text, Number low, Number high) {
    Number value{};
    auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < low ||
        value > high) {
        throw std::invalid_argument(std::string(option) + " " + text + ": expected " +
                                    std::to_string(low) + ".." + std::to_string(high));
    }
    return value;
}

Settings parse_arguments(int argc, char** argv) {
    Settings settings;
    for (int i = 1; i < argc; ++i) {
        std::string_view const arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
            return argv[++i];
        };
        if (arg == "--host") {
            settings.host = value();
        } else if (arg == "--port") {
            settings.port = parse_number<std::uint16_t>(arg, value(), 0, 65535);
        } else if (arg == "--web-root") {
            settings.web_root = std::filesystem::path(value());
        } else if (arg == "--max-running") {
            settings.max_running = parse_number<std::size_t>(arg, value(), 1, 64);
        } else if (arg == "--help" || arg == "-h") {
            settings.help = true;
        } else {
            throw std::invalid_argument("unknown argument " + std::string(arg) + " (" +
                                        std::string(usage) + ")");
        }
    }
    return settings;
}

/// The dashboard's folder: --web-root, else web/ beside the executable (a relocated or
/// installed program), else this source folder's web/ (compiled in, for the build tree).
std::filesystem::path find_web_root(std::optional<std::filesystem::path> const& given) {
    auto const usable = [](std::filesystem::path const& dir) {
        std::error_code ec;
        return !dir.empty() && std::filesystem::is_regular_file(dir / "index.html", ec);
    };
    if (given) {
        if (!usable(*given)) {
            throw std::invalid_argument("--web-root " + given->string() + ": no index.html there");
        }
        return std::filesystem::absolute(*given);
    }
    std::error_code ec;
    auto const exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec && usable(exe.parent_path() / "web")) return exe.parent_path() / "web";
    std::filesystem::path const compiled(WSMANAGER_TASK_SERVER_WEB_ROOT);
    if (usable(compiled)) return compiled;
    throw std::runtime_error("cannot find the dashboard's files (index.html); pass --web-root DIR");
}

/// The manager's on_cancel: true only when the task is the user's and now stopping; a "no"
/// is answered `forbidden` and nobody else hears of the cancel. In a cluster every node is
/// asked and the node that runs the task decides; the others know nothing of it.
bool on_cancel(task_server::TaskService& service, wsmanager::CancelRequest const& request,
               bool clustered) {
    using Outcome = task_server::TaskService::CancelOutcome;
    switch (service.request_cancel(request.task_id, request.user_id,
                                   "requested by " + request.user_id)) {
        case Outcome::cancelling:
            say(request.user_id + " cancels task " + request.task_id);
            return true;
        case Outcome::not_found:
            if (!clustered) {
                say("refused: " + request.user_id + " asked to cancel unknown task " +
                    request.task_id);
            }
            return false;
        case Outcome::forbidden:
            say("refused: " + request.user_id + " asked to cancel another user's task " +
                request.task_id);
            return false;
        case Outcome::already_finished:
            return false;
    }
    return false;
}

/// Topics: `task:<id>` only for the task's own user; any other topic is refused.
bool may_subscribe(task_server::TaskService const& service, std::string const& user_id,
                   std::string const& topic) {
    constexpr std::string_view prefix = "task:";
    if (user_id.empty() || topic.compare(0, prefix.size(), prefix) != 0) return false;
    auto task = service.find(topic.substr(prefix.size()));
    return task && task->user_id() == user_id;
}

asio::awaitable<int> serve(Manager& manager, task_server::TaskService& service,
                           wsmanager::Options const& options, asio::signal_set& signals,
                           std::filesystem::path const& web_root) {
    try {
        co_await manager.start_server();
    } catch (std::system_error const& e) {
        std::cerr << "task_server: cannot listen on " << options.host << ":" << options.port << ": "
                  << e.code().message() << std::endl;
        co_return 1;
    }
    auto const port = std::to_string(manager.local_port());
    bool const any_address = options.host == "0.0.0.0" || options.host == "::";
    if (auto const status = manager.get_status(); status.cluster.enabled) {
        say("cluster node " + status.node_id + " (prefix " + options.cluster_prefix +
            ", Redis " + task_server::redacted(options.redis_url) + ")");
        std::cout << "NODE " << status.node_id << std::endl;  // for scripts and tests
    }
    say("listening on " + options.host + ":" + port + " (dashboard files from " +
        web_root.string() + ")");
    say("open http://" + (any_address ? std::string("localhost") : options.host) + ":" + port +
        "/?user_id=alice  (press Ctrl-C to stop)");
    std::cout << "LISTENING " << port << std::endl;  // for scripts and tests (--port 0)

    int const signal = co_await signals.async_wait(asio::use_awaitable);
    say(std::string(signal == SIGINT ? "SIGINT" : "SIGTERM") +
        " received: cancelling tasks and closing connections");
    co_await service.shutdown("server shutting down", std::chrono::seconds(3));
    // Closes every connection with 1001 and resolves what is still pending (reason shutdown).
    co_await manager.stop_server();
    auto const status = manager.get_status();
    say("stopped: " + std::to_string(status.connections_opened) + " connection(s) served, " +
        std::to_string(status.messages_sent) + " frame(s) sent");
    co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Settings settings;
    wsmanager::Options options;
    std::filesystem::path web_root;
    try {
        settings = parse_arguments(argc, argv);
        if (settings.help) {
            std::cout << usage << "\n";
            return 0;
        }
        options = wsmanager::Options::from_env();  // a malformed variable is an error, by name
        if (settings.host) options.host = *settings.host;
        if (settings.port) options.port = *settings.port;
        web_root = find_web_root(settings.web_root);
    } catch (std::exception const& e) {
        std::cerr << "task_server: " << e.what() << std::endl;
        return 2;
    }

    asio::io_context io;  // the host's: tasks, the service's queue, signals
    // Installed before the server starts, so Ctrl-C always ends the program cleanly.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    try {
        // Owns its io_context and network thread(s); a cluster node with WEBSOCKET_REDIS_URL.
        auto const owned_manager = task_server::make_manager(options);
        Manager& manager = *owned_manager;
        auto const node_id = manager.get_status().node_id;  // empty unless clustered
        bool const clustered = !node_id.empty();
        task_server::TaskService service(
            io, manager,
            {.history = 200, .max_running = settings.max_running, .node_id = node_id});
        task_server::StepProcessor processor(service.notifier());
        service.set_runner([&processor](std::shared_ptr<task_server::Task> task) {
            return processor.run(std::move(task));
        });
        // These run on the manager's threads; they only touch thread-safe TaskService members.
        manager.on_http([admin = task_server::AdminApi(manager, node_id),
                         api = task_server::HttpApi(service, web_root)](
                            wsmanager::HttpRequest const& request,
                            wsmanager::HttpResponse& response) {
            return admin(request, response) || api(request, response);
        });
        manager.on_cancel([&service, clustered](wsmanager::CancelRequest const& request) {
            return on_cancel(service, request, clustered);
        });
        manager.on_subscribe([&service](std::string const& user_id, std::string const& topic) {
            return may_subscribe(service, user_id, topic);
        });

        int exit_code = 1;
        asio::co_spawn(io, serve(manager, service, options, signals, web_root),
                       [&](std::exception_ptr error, int status) {
                           signals.cancel();
                           exit_code = status;
                           if (!error) return;
                           exit_code = 1;
                           try {
                               std::rethrow_exception(error);
                           } catch (std::exception const& e) {
                               std::cerr << "task_server: " << e.what() << std::endl;
                           }
                       });
        io.run();
        return exit_code;
    } catch (std::exception const& e) {  // invalid Options or cluster settings
        std::cerr << "task_server: " << e.what() << std::endl;
        return 2;
    }
}
