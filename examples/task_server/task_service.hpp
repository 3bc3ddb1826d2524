// SPDX-License-Identifier: BSL-1.0
#pragma once

// TaskService: the host's own task registry and scheduler, the "TaskService" upstream caller
// of the original WebSocketManager.
//
// Threads. The registry (the map of tasks and the bounded history) is guarded by a mutex,
// because HTTP handlers read and add to it from the manager's connection strands, possibly
// on several threads at once, and the manager's cancel handler looks tasks up from the
// manager strand. Nothing holds that mutex for longer than a map operation, and nothing
// waits for the host's thread while holding it, so the manager's threads are never blocked.
// Everything else - the queue, the running set, starting tasks, cancellation signals, and
// every frame sent about a task - happens on the host's io_context (one thread), which is
// therefore the service's strand: callers on other threads post to it.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/wsmanager.hpp>

#include "json.hpp"
#include "task.hpp"
#include "task_definition.hpp"

namespace task_server {

using Manager = wsmanager::WebSocketManager<>;

/// `{"type":"system_notice","level":...,"message":...,"timestamp":...}`, broadcast to all.
inline wsmanager::Message system_notice(std::string_view level, std::string_view text) {
    JsonOut out;
    out.begin_object()
        .field("type", "system_notice")
        .field("level", level)
        .field("message", text)
        .field("timestamp", unix_time())
        .end_object();
    return wsmanager::Message::from_trusted_json(out.str());
}

/// Tells the dashboard about tasks. Every frame about a task goes to its user's connections
/// (send_to_user: all their tabs, nobody else) and to subscribers of the topic `task:<id>`
/// (publish), the same serialized message to both. Host io_context only, so frames about a
/// task leave in the order they were made.
class TaskNotifier {
public:
    explicit TaskNotifier(Manager& manager) : manager_(manager) {}

    // Coroutine parameters are taken by value: a coroutine outlives its caller's temporaries.

    asio::awaitable<void> update(TaskSnapshot snapshot) {
        auto message = task_update_message(snapshot);
        co_await send(snapshot.user_id, snapshot.id, std::move(message));
    }

    /// Appends a line to the task's log and sends it.
    asio::awaitable<void> log(Task& task, std::string level, std::string text) {
        auto const line = task.add_log(std::move(level), std::move(text));
        auto message = task_log_message(task.snapshot(), line);
        co_await send(task.user_id(), task.id(), std::move(message));
    }

    asio::awaitable<std::size_t> notice(std::string level, std::string text) {
        auto message = system_notice(level, text);
        std::error_code ec;
        auto const count = co_await manager_.broadcast_message(
            std::move(message), asio::redirect_error(asio::use_awaitable, ec));
        check(ec);
        co_return count;
    }

    Manager& manager() noexcept { return manager_; }

private:
    asio::awaitable<void> send(std::string user_id, std::string task_id,
                               wsmanager::Message message) {
        std::error_code ec;
        co_await manager_.send_to_user(std::move(user_id), message,
                                       asio::redirect_error(asio::use_awaitable, ec));
        check(ec);
        co_await manager_.publish(wsmanager::protocol::task_topic(task_id), message,
                                  asio::redirect_error(asio::use_awaitable, ec));
        check(ec);
    }

    /// In a cluster, a send whose other nodes could not be told (Redis unreachable,
    /// error::cluster_unavailable) has still reached this node's connections: the task goes
    /// on, and the outage is said once. Any other error is thrown, as before.
    void check(std::error_code ec) {
        if (ec == wsmanager::error::cluster_unavailable) {
            if (!cluster_down_) {
                cluster_down_ = true;
                std::cout << "task_server: the other nodes cannot be reached (Redis); task "
                             "frames reach this node's connections only until it is back"
                          << std::endl;
            }
            return;
        }
        if (ec) throw std::system_error(ec);
        if (cluster_down_) {
            cluster_down_ = false;
            std::cout << "task_server: the other nodes can be reached again" << std::endl;
        }
    }

    Manager& manager_;
    bool cluster_down_ = false;  ///< host io_context only
};

class TaskService {
public:
    struct Limits {
        std::size_t history = 200;    ///< tasks kept, finished ones evicted oldest first
        std::size_t max_running = 4;  ///< tasks that run at once; the others wait, queued
        /// In a cluster, this node's id: system notices (broadcast to every node's
        /// connections) then say which node they are about. Empty: "this server".
        std::string node_id{};
    };

    /// Runs one task to its end (the step processor); never throws.
    using Runner = std::function<asio::awaitable<void>(std::shared_ptr<Task>)>;

    /// Why create() refused, as an HTTP status and a JSON error.
    struct Refusal {
        int status;
        std::string code;
        std::string message;
    };

    enum class CancelOutcome { cancelling, not_found, forbidden, already_finished };

    TaskService(asio::io_context& io, Manager& manager, Limits limits)
        : io_(io), notifier_(manager), limits_(limits), ids_(std::random_device{}()) {}

    TaskService(TaskService const&) = delete;
    TaskService& operator=(TaskService const&) = delete;

    /// Sets the step processor. Before the first create().
    void set_runner(Runner runner) { runner_ = std::move(runner); }

    TaskNotifier& notifier() noexcept { return notifier_; }

    // ---- any thread -----------------------------------------------------------------

    /// Registers a queued task for `user_id` and hands it to the host's io_context, which
    /// announces and schedules it. Quick: never waits for the io_context.
    std::variant<TaskSnapshot, Refusal> create(std::string user_id, TaskDefinition definition) {
        std::shared_ptr<Task> task;
        {
            std::lock_guard lock(mutex_);
            if (!accepting_) {
                return Refusal{503, "shutting_down", "The server is shutting down"};
            }
            evict_finished_locked();
            if (order_.size() >= limits_.history) {
                return Refusal{503, "busy", "Too many unfinished tasks; try again later"};
            }
            task =
                std::make_shared<Task>(next_id_locked(), std::move(user_id), std::move(definition));
            order_.push_back(task);
            by_id_.emplace(task->id(), task);
        }
        asio::co_spawn(io_, admit(task), asio::detached);
        return task->snapshot();
    }

    /// Tasks, newest first; only `user_id`'s when given.
    std::vector<std::shared_ptr<Task>> list(std::optional<std::string> const& user_id) const {
        std::lock_guard lock(mutex_);
        std::vector<std::shared_ptr<Task>> tasks;
        for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
            if (!user_id || (*it)->user_id() == *user_id) tasks.push_back(*it);
        }
        return tasks;
    }

    std::shared_ptr<Task> find(std::string const& id) const {
        std::lock_guard lock(mutex_);
        auto it = by_id_.find(id);
        return it == by_id_.end() ? nullptr : it->second;
    }

    /// A user asks to cancel their task (the manager's on_cancel handler, on its strand):
    /// sets the task's flag and posts the interruption to the host's io_context.
    CancelOutcome request_cancel(std::string const& task_id, std::string const& user_id,
                                 std::string reason) {
        auto task = find(task_id);
        if (!task) return CancelOutcome::not_found;
        if (task->user_id() != user_id) return CancelOutcome::forbidden;
        if (!task->request_cancel(std::move(reason))) return CancelOutcome::already_finished;
        asio::post(io_, [this, task] { interrupt(task); });
        return CancelOutcome::cancelling;
    }

    // ---- host io_context --------------------------------------------------------------

    /// Stops taking tasks, tells every client, cancels every unfinished task and waits (at
    /// most `grace`) until the running ones have stopped and said so.
    asio::awaitable<void> shutdown(std::string reason, std::chrono::milliseconds grace) {
        std::vector<std::shared_ptr<Task>> unfinished;
        {
            std::lock_guard lock(mutex_);
            accepting_ = false;
            for (auto const& task : order_) {
                if (!task->is_final()) unfinished.push_back(task);
            }
        }
        auto const who = limits_.node_id.empty() ? std::string("Server")
                                                 : "Node " + limits_.node_id;
        co_await notifier_.notice("warning",
                                  who + " shutting down: " + std::to_string(unfinished.size()) +
                                      " unfinished task(s) will be cancelled");
        for (auto const& task : unfinished) {
            if (task->request_cancel(reason)) interrupt(task);
        }
        asio::steady_timer timer(io_);
        auto const deadline = std::chrono::steady_clock::now() + grace;
        while ((!running_.empty() || admitting_ > 0) &&
               std::chrono::steady_clock::now() < deadline) {
            timer.expires_after(std::chrono::milliseconds(20));
            co_await timer.async_wait(asio::use_awaitable);
        }
    }

    /// Tasks running right now (host io_context).
    std::size_t running_count() const noexcept { return running_.size(); }

private:
    /// Announces a new task and queues it.
    asio::awaitable<void> admit(std::shared_ptr<Task> task) {
        ++admitting_;
        co_await notifier_.update(task->snapshot());
        co_await notifier_.log(*task, "info",
                               "Queued: \"" + task->definition().name + "\", " +
                                   std::to_string(task->definition().steps.size()) + " step(s)");
        auto const active = count_unfinished();
        auto const where =
            limits_.node_id.empty() ? std::string("this server") : "node " + limits_.node_id;
        co_await notifier_.notice("info", task->user_id() + " started a task (" +
                                              std::to_string(active) + " unfinished on " +
                                              where + ")");
        --admitting_;
        if (task->cancel_requested()) {
            co_await finish_unstarted(task);
            co_return;
        }
        queue_.push_back(task);
        pump();
    }

    /// Starts queued tasks while there is room.
    void pump() {
        while (running_.size() < limits_.max_running && !queue_.empty()) {
            auto task = std::move(queue_.front());
            queue_.pop_front();
            launch(std::move(task));
        }
    }

    /// Runs a task as a coroutine on the host's io_context. Its cancellation slot is the
    /// task's signal: emitting it interrupts whatever the coroutine awaits.
    void launch(std::shared_ptr<Task> task) {
        running_.insert(task);
        auto& signal = task->cancel_signal();
        asio::co_spawn(
            io_, runner_(task),
            asio::bind_cancellation_slot(signal.slot(), [this, task](std::exception_ptr error) {
                if (error) {
                    try {
                        std::rethrow_exception(error);
                    } catch (std::exception const& e) {
                        std::cerr << "task_server: task " << task->id()
                                  << " ended with an exception: " << e.what() << std::endl;
                    }
                }
                running_.erase(task);
                pump();
            }));
    }

    /// Interrupts a task whose cancel flag is set: a queued one ends at once, a running one
    /// is woken from whatever it awaits (its coroutine then finishes it).
    void interrupt(std::shared_ptr<Task> const& task) {
        if (auto it = std::find(queue_.begin(), queue_.end(), task); it != queue_.end()) {
            queue_.erase(it);
            asio::co_spawn(io_, finish_unstarted(task), asio::detached);
        } else if (running_.count(task) != 0) {
            task->cancel_signal().emit(asio::cancellation_type::terminal);
        }
        // Otherwise admit() has not queued it yet, and will see the flag.
    }

    asio::awaitable<void> finish_unstarted(std::shared_ptr<Task> task) {
        auto const reason = task->cancel_reason();
        co_await notifier_.update(task->update([&](TaskSnapshot& s) {
            s.state = TaskState::cancelled;
            s.outcome = reason;
        }));
        co_await notifier_.log(*task, "warning", "Cancelled before it started: " + reason);
    }

    std::size_t count_unfinished() const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (auto const& task : order_) n += task->is_final() ? 0 : 1;
        return n;
    }

    void evict_finished_locked() {
        for (auto it = order_.begin(); order_.size() >= limits_.history && it != order_.end();) {
            if ((*it)->is_final()) {
                by_id_.erase((*it)->id());
                it = order_.erase(it);
            } else {
                ++it;
            }
        }
    }

    /// `t<sequence>-<random>`: ordered for people, not guessable by other users.
    std::string next_id_locked() {
        char suffix[9];
        std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(ids_() & 0xffffffffu));
        return "t" + std::to_string(++sequence_) + "-" + suffix;
    }

    asio::io_context& io_;
    TaskNotifier notifier_;
    Limits const limits_;
    Runner runner_;

    // Guarded by mutex_ (any thread).
    mutable std::mutex mutex_;
    std::deque<std::shared_ptr<Task>> order_;  ///< oldest first
    std::unordered_map<std::string, std::shared_ptr<Task>> by_id_;
    bool accepting_ = true;
    std::uint64_t sequence_ = 0;
    std::mt19937_64 ids_;

    // Host io_context only.
    std::deque<std::shared_ptr<Task>> queue_;
    std::unordered_set<std::shared_ptr<Task>> running_;
    int admitting_ = 0;
};

}  // namespace task_server
