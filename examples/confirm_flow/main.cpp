// SPDX-License-Identifier: BSL-1.0
//
// confirm_flow: a host task that asks its user what to do when a step fails, as the
// original component's "Error Handling and User Choice" (section 4.2).
//
// The task has three steps. `train_model` fails on its first attempt (GPU memory) and
// `publish_results` fails on every attempt (the model registry is down). After a failed step
// the host sends the step result (status "failed", error_code, error_message) with
// notify_user and co_awaits the user's decision: proceed retries the step, refusal cancels
// the task. Completed steps are pushed to the user as `task_progress` messages.
//
//   confirm_flow [--port N] [--self-test]
//
// Without --self-test it prints the URL to connect to and waits (Options::callback_timeout,
// 300 s by default) for a real client, e.g. the original's browser client:
//   tests/browser/original_client.html?url=ws://localhost:8765/?user_id=user_123
// or websocat 'ws://localhost:8765/?user_id=user_123', answering with
//   {"action":"confirm","callback_id":"<from the task_step_result>","proceed":true}
//
// --self-test runs the same flow unattended: a websocketpp client on its own thread connects
// as the user and answers the first request `proceed: true` and the second `false`. The
// program exits 0 when the flow went as expected (train_model retried and completed, the
// task cancelled at publish_results), 1 otherwise; it is bounded to 30 s.

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <exception>
#include <future>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

using Manager = wsmanager::WebSocketManager<>;
using wsmanager::ConfirmationReason;
using wsmanager::TaskStepResult;
using wsmanager::UserConfirmation;

constexpr std::string_view user_id = "user_123";
constexpr std::string_view task_id = "task_789";
constexpr int max_attempts = 3;
constexpr auto self_test_budget = std::chrono::seconds(30);

void say(std::string_view line) { std::cout << "confirm_flow: " << line << std::endl; }

/// One step of the task and how it (pretends to) fail.
struct StepPlan {
    std::string name;
    int failing_attempts = 0;  ///< attempts that fail before one succeeds
    std::string error_code;
    std::string error_message;
};

std::vector<StepPlan> const task_plan = {
    {"load_data", 0, "", ""},
    {"train_model", 1, "E003", "GPU memory insufficient"},
    {"publish_results", max_attempts, "E010", "Model registry unreachable"},
};

/// What happened to the task, for the self-test's verdict.
struct TaskOutcome {
    bool completed = false;
    std::string cancelled_at;                ///< the step it stopped at, if it stopped
    std::vector<std::string> completed_steps;
    std::vector<UserConfirmation> decisions;  ///< every notify_user result, in order
};

std::string describe(UserConfirmation const& decision) {
    return std::string("proceed=") + (decision.proceed ? "true" : "false") +
           " feedback=" + (decision.feedback ? "\"" + *decision.feedback + "\"" : "none") +
           " reason=" + std::string(wsmanager::to_string(decision.reason));
}

wsmanager::Message progress_message(std::string const& step, int number) {
    rapidjson::Document doc(rapidjson::kObjectType);
    auto& alloc = doc.GetAllocator();
    auto text = [&alloc](std::string_view s) {
        return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()), alloc);
    };
    doc.AddMember("type", "task_progress", alloc);
    doc.AddMember("task_id", text(task_id), alloc);
    doc.AddMember("step", number, alloc);
    doc.AddMember("message", text(step + " completed"), alloc);
    doc.AddMember("progress", number * 100 / static_cast<int>(task_plan.size()), alloc);
    return wsmanager::Message(doc);
}

/// The host's task: runs each step, asks the user after a failure, retries or cancels.
asio::awaitable<TaskOutcome> run_task(Manager& manager, std::atomic<bool> const& user_cancelled) {
    TaskOutcome outcome;
    asio::steady_timer work(co_await asio::this_coro::executor);
    for (std::size_t index = 0; index < task_plan.size(); ++index) {
        auto const& step = task_plan[index];
        int const number = static_cast<int>(index) + 1;
        for (int attempt = 1;; ++attempt) {
            if (user_cancelled) {
                say("the user cancelled the task; stopping before " + step.name);
                outcome.cancelled_at = step.name;
                co_return outcome;
            }
            say("step " + std::to_string(number) + " " + step.name + ", attempt " +
                std::to_string(attempt) + ": running");
            work.expires_after(std::chrono::milliseconds(100));  // the step's work
            co_await work.async_wait(asio::use_awaitable);

            if (attempt > step.failing_attempts) {
                outcome.completed_steps.push_back(step.name);
                auto const told = co_await manager.send_to_user(std::string(user_id),
                                                                progress_message(step.name, number));
                say("step " + std::to_string(number) + " " + step.name + ": completed (progress " +
                    "sent to " + std::to_string(told) + " connection(s))");
                break;
            }

            say("step " + std::to_string(number) + " " + step.name + ": failed with " +
                step.error_code + " (" + step.error_message + "); asking " +
                std::string(user_id) + " whether to retry");
            TaskStepResult const failed{
                .step = step.name,
                .result = R"({"attempt":)" + std::to_string(attempt) + "}",
                .completed = false,
                .message = step.name + " failed (" + step.error_message + "), retry?",
                .status = "failed",
                .error_code = step.error_code,
                .error_message = step.error_message};
            auto const decision = co_await manager.notify_user(failed, std::string(user_id),
                                                               std::string(task_id), number);
            outcome.decisions.push_back(decision);
            say("the user's decision: " + describe(decision));

            if (!decision.proceed) {
                say("cancelling " + std::string(task_id) + " at step " + std::to_string(number) +
                    " " + step.name);
                outcome.cancelled_at = step.name;
                co_return outcome;
            }
            if (attempt >= max_attempts) {
                say("giving up on " + step.name + " after " + std::to_string(attempt) +
                    " attempts; cancelling the task");
                outcome.cancelled_at = step.name;
                co_return outcome;
            }
            say("retrying " + step.name);
        }
    }
    outcome.completed = true;
    say(std::string(task_id) + " completed");
    co_return outcome;
}

// ---- --self-test: a client that answers like a user -------------------------------------

/// A websocketpp client on its own thread, connected as the user: answers the n-th
/// `task_step_result` with `answers[n]` (feedback as the original's browser client).
class AutoAnswerer {
public:
    using client_type = websocketpp::client<websocketpp::config::asio_client>;

    AutoAnswerer(std::string url, std::vector<bool> answers) : answers_(std::move(answers)) {
        client_.clear_access_channels(websocketpp::log::alevel::all);
        client_.clear_error_channels(websocketpp::log::elevel::all);
        client_.init_asio(&io_);
        client_.set_open_handshake_timeout(5000);
        client_.set_close_handshake_timeout(1000);
        client_.set_open_handler([](websocketpp::connection_hdl) {
            say("[auto-answer] connected as the user");
        });
        client_.set_fail_handler([](websocketpp::connection_hdl) {
            say("[auto-answer] could not connect");
        });
        client_.set_message_handler(
            [this](websocketpp::connection_hdl hdl, client_type::message_ptr message) {
                on_message(hdl, message->get_payload());
            });
        std::error_code ec;
        connection_ = client_.get_connection(url, ec);
        if (ec) throw std::runtime_error("auto-answer client: " + ec.message());
        client_.connect(connection_);
        thread_ = std::thread([this] { io_.run(); });
    }

    AutoAnswerer(AutoAnswerer const&) = delete;
    AutoAnswerer& operator=(AutoAnswerer const&) = delete;

    ~AutoAnswerer() {
        asio::post(io_, [this] {
            std::error_code ec;
            connection_->close(websocketpp::close::status::normal, "self-test done", ec);
        });
        thread_.join();  // returns once the connection has closed (close timeout: 1 s)
    }

    int answered() const { return answered_.load(); }

private:
    void on_message(websocketpp::connection_hdl hdl, std::string const& payload) {
        rapidjson::Document frame;
        frame.Parse(payload.data(), payload.size());
        auto is_string = [&frame](char const* name) {
            return frame.IsObject() && frame.HasMember(name) && frame[name].IsString();
        };
        if (frame.HasParseError() || !is_string("type") || !is_string("callback_id") ||
            !is_string("message") ||
            std::string_view(frame["type"].GetString()) != "task_step_result") {
            return;
        }
        auto const index = static_cast<std::size_t>(answered_.load());
        if (index >= answers_.size()) {
            say("[auto-answer] an unexpected extra request; not answering it");
            return;
        }
        bool const proceed = answers_[index];
        rapidjson::StringBuffer buffer;
        rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
        writer.StartObject();
        writer.Key("action");
        writer.String("confirm");
        writer.Key("callback_id");
        writer.String(frame["callback_id"].GetString());
        writer.Key("proceed");
        writer.Bool(proceed);
        writer.Key("feedback");
        writer.String(proceed ? "Agree to continue" : "Cancel execution");
        writer.EndObject();
        say(std::string("[auto-answer] asked \"") + frame["message"].GetString() +
            "\": answering proceed=" + (proceed ? "true" : "false"));
        std::error_code ec;
        client_.send(hdl, buffer.GetString(), websocketpp::frame::opcode::text, ec);
        if (ec) say("[auto-answer] send failed: " + ec.message());
        ++answered_;
    }

    asio::io_context io_;
    client_type client_;
    client_type::connection_ptr connection_;
    std::vector<bool> answers_;
    std::atomic<int> answered_{0};
    std::thread thread_;
};

bool went_as_expected(TaskOutcome const& outcome) {
    auto is = [](UserConfirmation const& d, bool proceed) {
        return d.proceed == proceed && d.reason == ConfirmationReason::user;
    };
    return !outcome.completed && outcome.cancelled_at == "publish_results" &&
           outcome.completed_steps == std::vector<std::string>{"load_data", "train_model"} &&
           outcome.decisions.size() == 2 && is(outcome.decisions[0], true) &&
           is(outcome.decisions[1], false);
}

struct Arguments {
    bool self_test = false;
    std::optional<std::uint16_t> port;
};

Arguments parse_arguments(int argc, char** argv) {
    Arguments arguments;
    for (int i = 1; i < argc; ++i) {
        std::string_view const arg = argv[i];
        if (arg == "--self-test") {
            arguments.self_test = true;
        } else if (arg == "--port" && i + 1 < argc) {
            std::string_view const text = argv[++i];
            std::uint16_t port = 0;
            auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
            if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
                throw std::invalid_argument("--port " + std::string(text) + ": expected 0..65535");
            }
            arguments.port = port;
        } else {
            throw std::invalid_argument("unknown argument " + std::string(arg) +
                                        " (usage: confirm_flow [--port N] [--self-test])");
        }
    }
    return arguments;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        auto const arguments = parse_arguments(argc, argv);
        auto options = wsmanager::Options::from_env();  // WEBSOCKET_HOST, WEBSOCKET_PORT, ...
        if (arguments.port) options.port = *arguments.port;
        if (arguments.self_test) {
            options.host = "127.0.0.1";
            options.port = 0;
            options.callback_timeout = std::chrono::seconds(10);
        }

        Manager manager(options);
        std::atomic<bool> user_cancelled{false};
        manager.on_cancel([&user_cancelled](wsmanager::CancelRequest const& request) {
            say(request.user_id + " asked to cancel " + request.task_id);
            if (request.task_id != task_id) return false;  // not a task of ours: refused
            user_cancelled = true;
            return true;
        });
        manager.start_server(asio::use_future).get();
        auto const host = options.host == "0.0.0.0" ? std::string("localhost") : options.host;
        auto const url = "ws://" + host + ":" + std::to_string(manager.local_port()) +
                         "/?user_id=" + std::string(user_id);
        say("listening; " + std::string(user_id) + " connects to " + url);

        std::optional<AutoAnswerer> answerer;
        if (arguments.self_test) {
            answerer.emplace(url, std::vector<bool>{true, false});
        } else {
            say("waiting for " + std::string(user_id) +
                " (a browser or any WebSocket client) to answer");
        }

        // The host's own io_context runs the task; each co_await on the manager resumes here.
        asio::io_context host_io;
        // Through a coroutine lambda rather than co_spawn(host_io, run_task(...)): g++ 12 at
        // -O2 inlines run_task's frame allocation into main and then reports a false
        // -Wmismatched-new-delete between Asio's awaitable frame operator new and delete.
        auto task = asio::co_spawn(
            host_io,
            [&manager, &user_cancelled]() -> asio::awaitable<TaskOutcome> {
                co_return co_await run_task(manager, user_cancelled);
            },
            asio::use_future);
        if (arguments.self_test) {
            host_io.run_for(self_test_budget);
        } else {
            host_io.run();
        }
        if (task.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
            say("self-test: the task did not finish in time");
            return 1;
        }
        auto const outcome = task.get();
        answerer.reset();
        manager.stop_server(asio::use_future).get();

        if (!arguments.self_test) return 0;
        if (went_as_expected(outcome)) {
            say("self-test passed: train_model was retried after proceed=true, the task was "
                "cancelled at publish_results after proceed=false");
            return 0;
        }
        say("self-test FAILED: the flow differs from the expected one");
        return 1;
    } catch (std::exception const& e) {
        std::cerr << "confirm_flow: " << e.what() << std::endl;
        return 1;
    }
}
