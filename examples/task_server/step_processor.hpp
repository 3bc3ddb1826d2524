// SPDX-License-Identifier: BSL-1.0
#pragma once

// StepProcessor: runs a task written in the task language (task_definition.hpp), step by
// step, as a coroutine on the host's io_context - the "DSLProcessor" upstream caller of the
// original WebSocketManager. For each step it
//   - asks first when the step has `confirm` (notify_user; proceed: run it, refuse: cancel),
//   - simulates the work in ticks, sending progress after each (send_to_user + publish),
//     beside `manager.send_heartbeat(...)` when the step is long,
//   - on a simulated failure asks whether to retry (notify_user with status "failed",
//     error_code, error_message; proceed: retry, refuse: cancel), up to max_attempts.
//
// Cancellation is cooperative: the task's flag is checked at every tick and between steps,
// and the task's cancellation signal (bound to this coroutine by TaskService::launch)
// interrupts whatever the coroutine awaits at that moment - a timer, notify_user (which
// withdraws the question: the user's dialogs close) or a heartbeat.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <variant>

#include <asio/error.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/wsmanager.hpp>

#include "json.hpp"
#include "task.hpp"
#include "task_service.hpp"

namespace task_server {

class StepProcessor {
public:
    explicit StepProcessor(TaskNotifier& notifier) : notifier_(notifier) {}

    /// Runs `task` from queued to a final state, telling its user about every change.
    /// Never throws: whatever stops it becomes the task's final state.
    asio::awaitable<void> run(std::shared_ptr<Task> task) {
        Outcome outcome;
        std::optional<std::string> internal_error;
        try {
            outcome = co_await run_steps(*task);
        } catch (std::exception const& e) {
            // Cancellation (operation_aborted, or the heartbeat's task_cancelled) or a bug.
            if (!task->cancel_requested()) internal_error = e.what();
        }
        // A cancelled coroutine would throw at its next co_await; the task must still
        // report how it ended.
        co_await asio::this_coro::reset_cancellation_state();
        if (task->cancel_requested()) {
            outcome = Outcome{TaskState::cancelled, task->cancel_reason()};
        } else if (internal_error) {
            outcome = Outcome{TaskState::failed, "internal error: " + *internal_error};
        }
        co_await finish(*task, outcome);
    }

private:
    using Clock = std::chrono::steady_clock;

    struct Outcome {
        TaskState state = TaskState::completed;
        std::string reason = "all steps done";
        std::optional<std::string> error_code{};
        std::optional<std::string> error_message{};
    };

    asio::awaitable<Outcome> run_steps(Task& task) {
        auto const& definition = task.definition();
        co_await notifier_.update(
            task.update([](TaskSnapshot& s) { s.state = TaskState::running; }));
        co_await notifier_.log(task, "info", "Started");
        auto const count = static_cast<int>(definition.steps.size());
        for (int index = 0; index < count; ++index) {
            auto const& step = definition.steps[static_cast<std::size_t>(index)];
            throw_if_cancel_requested(task);
            co_await notifier_.update(task.update([&](TaskSnapshot& s) {
                s.current_step = step.name;
                s.step_index = index + 1;
                s.attempt = 1;
                s.progress = progress_at(definition, index, 0.0);
            }));
            co_await notifier_.log(task, "info",
                                   "Step " + std::to_string(index + 1) + "/" +
                                       std::to_string(count) + " \"" + step.name + "\"");
            if (step.confirm) {
                wsmanager::TaskStepResult question;
                question.step = step.name;
                question.result = step_result_json(task, index, 1);
                question.message = *step.confirm;
                question.status = "waiting_confirmation";
                auto const answer = co_await ask(task, index, std::move(question));
                if (!answer.proceed) co_return declined(answer, step.name);
            }
            for (int attempt = 1;; ++attempt) {
                if (attempt > 1) {
                    co_await notifier_.update(task.update([&](TaskSnapshot& s) {
                        s.attempt = attempt;
                        s.error_code.reset();
                        s.error_message.reset();
                        s.progress = progress_at(definition, index, 0.0);
                    }));
                    co_await notifier_.log(task, "info",
                                           "Retrying \"" + step.name + "\" (attempt " +
                                               std::to_string(attempt) + " of " +
                                               std::to_string(step.max_attempts) + ")");
                }
                if (co_await work(task, index, attempt)) break;
                co_await notifier_.log(task, "error",
                                       step.error_code + ": " + step.error_message + " (attempt " +
                                           std::to_string(attempt) + ")");
                if (attempt >= step.max_attempts) {
                    co_return Outcome{
                        TaskState::failed,
                        "step \"" + step.name + "\" failed " + std::to_string(attempt) + " time(s)",
                        step.error_code, step.error_message};
                }
                wsmanager::TaskStepResult failure;
                failure.step = step.name;
                failure.result = step_result_json(task, index, attempt);
                failure.completed = false;
                failure.message = "Step \"" + step.name + "\" failed. Retry it?";
                failure.status = "failed";
                failure.error_code = step.error_code;
                failure.error_message = step.error_message;
                auto const answer = co_await ask(task, index, std::move(failure));
                if (!answer.proceed) co_return declined(answer, step.name);
            }
            co_await notifier_.log(task, "info", "Step \"" + step.name + "\" done");
        }
        co_return Outcome{};
    }

    /// Asks the task's user (notify_user) and waits for the answer, the timeout, or a
    /// cancellation. The task is `waiting_confirmation` meanwhile.
    asio::awaitable<wsmanager::UserConfirmation> ask(Task& task, int index,
                                                     wsmanager::TaskStepResult question) {
        co_await notifier_.update(task.update([&](TaskSnapshot& s) {
            s.state = TaskState::waiting_confirmation;
            s.error_code = question.error_code;
            s.error_message = question.error_message;
        }));
        co_await notifier_.log(task, "info",
                               "Waiting for " + task.user_id() + ": " + question.message);
        auto& manager = notifier_.manager();
        int const step_number = index + 1;
        auto const& timeout = task.definition().confirm_timeout;
        // (An if, not `?:`: g++ 12 mishandles co_await inside a conditional expression.)
        wsmanager::UserConfirmation answer;
        for (;;) {
            std::error_code ec;
            auto token = asio::redirect_error(asio::use_awaitable, ec);
            if (timeout) {  // the task's own timeout, through notify_user's timeout overload
                answer = co_await manager.notify_user(question, task.user_id(), task.id(),
                                                      step_number, *timeout, token);
            } else {  // Options::callback_timeout (WEBSOCKET_CALLBACK_TIMEOUT)
                answer = co_await manager.notify_user(question, task.user_id(), task.id(),
                                                      step_number, token);
            }
            if (ec != wsmanager::error::cluster_unavailable) {
                if (ec) throw std::system_error(ec);
                break;
            }
            // In a cluster whose Redis is unreachable the question cannot be recorded (it
            // could not be decided exactly once): nothing was asked, so ask again shortly.
            co_await notifier_.log(task, "warning",
                                   "The cluster cannot record the question now (Redis "
                                   "unreachable); asking again in 1 s");
            asio::steady_timer retry(co_await asio::this_coro::executor,
                                     std::chrono::seconds(1));
            co_await retry.async_wait(asio::use_awaitable);  // cancellation interrupts it
            throw_if_cancel_requested(task);
        }
        std::string text = answer.proceed ? "Proceed" : "Refused";
        text += " (" + std::string(wsmanager::to_string(answer.reason)) + ")";
        if (answer.feedback && !answer.feedback->empty()) {
            text += ", feedback: \"" + *answer.feedback + "\"";
        }
        co_await notifier_.log(task, answer.proceed ? "info" : "warning", "Answer: " + text);
        if (answer.proceed) {
            co_await notifier_.update(
                task.update([](TaskSnapshot& s) { s.state = TaskState::running; }));
        }
        co_return answer;
    }

    Outcome declined(wsmanager::UserConfirmation const& answer, std::string const& step) const {
        using wsmanager::ConfirmationReason;
        switch (answer.reason) {
            case ConfirmationReason::timeout:
                return {TaskState::cancelled, "no answer in time at step \"" + step + "\""};
            case ConfirmationReason::shutdown:
                return {TaskState::cancelled, "server shutting down"};
            case ConfirmationReason::disconnected:
                return {TaskState::cancelled, "user went offline at step \"" + step + "\""};
            case ConfirmationReason::cancelled:
                return {TaskState::cancelled, "cancelled at step \"" + step + "\""};
            case ConfirmationReason::user:
                break;
        }
        return {TaskState::cancelled, "refused at step \"" + step + "\""};
    }

    /// One attempt at a step's work; false when it fails (simulated). Long steps run beside
    /// a heartbeat, which the `||` cancels once the work is done.
    asio::awaitable<bool> work(Task& task, int index, int attempt) {
        using namespace asio::experimental::awaitable_operators;
        auto const& definition = task.definition();
        auto const& step = definition.steps[static_cast<std::size_t>(index)];
        if (step.work < definition.heartbeat_interval) {
            co_return co_await simulate(task, index, attempt);
        }
        auto const result =
            co_await (simulate(task, index, attempt) ||
                      notifier_.manager().send_heartbeat(task.user_id(), task.id(),
                                                         definition.heartbeat_interval));
        // send_heartbeat never succeeds (it runs until cancelled), so the work finished first.
        co_return std::get<0>(result);
    }

    /// Sleeps through the step's work in ticks (about 20 per step, 100 ms to 1 s each),
    /// reporting progress after each one.
    asio::awaitable<bool> simulate(Task& task, int index, int attempt) {
        auto const& definition = task.definition();
        auto const& step = definition.steps[static_cast<std::size_t>(index)];
        bool const fails = attempt <= step.fail_attempts;
        auto const total = fails ? step.work * 6 / 10 : step.work;
        auto const tick = std::clamp<std::chrono::milliseconds>(
            step.work / 20, std::chrono::milliseconds(100), std::chrono::milliseconds(1000));
        asio::steady_timer timer(co_await asio::this_coro::executor);
        auto const started = Clock::now();
        for (;;) {
            auto const elapsed =
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
            if (elapsed >= total) break;
            timer.expires_after(std::min(tick, total - elapsed));
            co_await timer.async_wait(asio::use_awaitable);  // cancellation interrupts it
            throw_if_cancel_requested(task);
            auto const done =
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
            double const fraction = step.work.count() == 0
                                        ? 1.0
                                        : std::min(1.0, static_cast<double>(done.count()) /
                                                            static_cast<double>(step.work.count()));
            co_await notifier_.update(task.update(
                [&](TaskSnapshot& s) { s.progress = progress_at(definition, index, fraction); }));
        }
        if (step.work.count() == 0 && !fails) {
            co_await notifier_.update(task.update(
                [&](TaskSnapshot& s) { s.progress = progress_at(definition, index, 1.0); }));
        }
        co_return !fails;
    }

    asio::awaitable<void> finish(Task& task, Outcome const& outcome) {
        co_await notifier_.update(task.update([&](TaskSnapshot& s) {
            s.state = outcome.state;
            s.outcome = outcome.reason;
            s.error_code = outcome.error_code;
            s.error_message = outcome.error_message;
            if (outcome.state == TaskState::completed) s.progress = 100;
        }));
        auto const level = outcome.state == TaskState::completed ? "info"
                           : outcome.state == TaskState::failed  ? "error"
                                                                 : "warning";
        // "Completed: all steps done", "Cancelled: requested by alice", ...
        std::string text(to_string(outcome.state));
        text[0] = static_cast<char>(text[0] - 'a' + 'A');
        co_await notifier_.log(task, level, text + ": " + outcome.reason);
    }

    static void throw_if_cancel_requested(Task const& task) {
        if (task.cancel_requested()) {
            throw std::system_error(asio::error::operation_aborted, "task cancelled");
        }
    }

    /// Percent of the whole task done: every step weighs its work (at least 1 ms).
    static int progress_at(TaskDefinition const& definition, int index, double fraction) {
        double total = 0;
        double done = 0;
        for (std::size_t i = 0; i < definition.steps.size(); ++i) {
            double const weight =
                std::max<double>(1.0, static_cast<double>(definition.steps[i].work.count()));
            total += weight;
            if (static_cast<int>(i) < index) done += weight;
            if (static_cast<int>(i) == index) done += weight * fraction;
        }
        return static_cast<int>(100.0 * done / total);
    }

    /// TaskStepResult::result: where the task stands, as JSON.
    static std::string step_result_json(Task const& task, int index, int attempt) {
        auto const snapshot = task.snapshot();
        auto const& step = task.definition().steps[static_cast<std::size_t>(index)];
        JsonOut out;
        out.begin_object()
            .field("task_name", snapshot.name)
            .field("step_index", index + 1)
            .field("step_count", snapshot.step_count)
            .field("attempt", attempt)
            .field("max_attempts", step.max_attempts)
            .field("progress", snapshot.progress)
            .end_object();
        return out.str();
    }

    TaskNotifier& notifier_;
};

}  // namespace task_server
