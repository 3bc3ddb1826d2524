// SPDX-License-Identifier: BSL-1.0
//
// wsmanager_browser_test_server: the host side of the browser test (original_client.test.mjs).
//
// Starts a manager on 127.0.0.1 with a free port and prints `PORT <n>`. Then, for every line
// `ask` read from stdin, it asks user "alice" to confirm a step with notify_user, as the
// original's DSL processor does, prints `ASKED <step>`, and once the step is decided prints
//   RESULT proceed=<0|1> feedback=<text or -> reason=<user|timeout|...>
// It exits 0 after `--results N` results (default 2), 1 when stdin ends first, and 2 when
// `--timeout-s S` (default 60) passes first, so a browser that never answers fails the test.
// The test drives the asks, so each one reaches exactly the page it has just opened.
//
//   wsmanager_browser_test_server [--results N] [--timeout-s S]

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <future>
#include <iostream>
#include <string>
#include <string_view>
#include <thread>

#include <asio/use_future.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

void print_line(std::string const& line) {
    std::cout << line << std::endl;  // flushed: the test reads it through a pipe
}

int number_argument(int argc, char** argv, std::string_view name, int fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (argv[i] == name) return std::atoi(argv[i + 1]);
    }
    return fallback;
}

}  // namespace

int main(int argc, char** argv) {
    int const results_wanted = number_argument(argc, argv, "--results", 2);
    int const timeout_s = number_argument(argc, argv, "--timeout-s", 60);
    if (results_wanted <= 0 || timeout_s <= 0) {
        std::cerr << "usage: wsmanager_browser_test_server [--results N] [--timeout-s S]\n";
        return 64;
    }

    // A test that hangs must fail, not stall: give up after --timeout-s whatever happens.
    std::thread([timeout_s] {
        std::this_thread::sleep_for(std::chrono::seconds(timeout_s));
        print_line("TIMEOUT after " + std::to_string(timeout_s) + " s");
        std::_Exit(2);
    }).detach();

    try {
        wsmanager::Options options;
        options.host = "127.0.0.1";
        options.port = 0;
        options.callback_timeout = std::chrono::seconds(timeout_s);
        options.log_level = wsmanager::LogLevel::warning;
        wsmanager::WebSocketManager<> manager(options);
        manager.start_server(asio::use_future).get();
        print_line("PORT " + std::to_string(manager.local_port()));

        int results = 0;
        std::string command;
        while (results < results_wanted && std::getline(std::cin, command)) {
            if (command != "ask") {
                print_line("IGNORED " + command);
                continue;
            }
            int const step = results + 1;
            wsmanager::TaskStepResult const step_result{
                .step = "data_validation",
                .result = R"({"validated_rows":1000,"errors":5})",
                .completed = true,
                .message = "Step " + std::to_string(step) +
                           ": data validation completed, found 5 errors. Continue?",
                .status = "completed"};
            auto decision =
                manager.notify_user(step_result, "alice", "browser_task", step, asio::use_future);
            print_line("ASKED " + std::to_string(step));
            auto const confirmation = decision.get();
            print_line("RESULT proceed=" + std::string(confirmation.proceed ? "1" : "0") +
                       " feedback=" + confirmation.feedback.value_or("-") +
                       " reason=" + std::string(wsmanager::to_string(confirmation.reason)));
            ++results;
        }
        manager.stop_server(asio::use_future).get();
        return results == results_wanted ? 0 : 1;
    } catch (std::exception const& e) {
        print_line(std::string("ERROR ") + e.what());
        return 1;
    }
}
