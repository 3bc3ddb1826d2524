// SPDX-License-Identifier: BSL-1.0
#pragma once

// One task: its definition, its state machine and its log.
//
//   queued -> running <-> waiting_confirmation -> completed | failed | cancelled
//   queued -> cancelled
//
// A Task is shared by the HTTP handlers (which read snapshots, on the manager's connection
// strands), the manager's cancel handler (which sets the cancel flag, on the manager strand)
// and the step processor (which changes it, on the host's io_context). A mutex guards every
// field that changes; each mutator returns what the dashboard must be told.

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <asio/cancellation_signal.hpp>

#include <wsmanager/message.hpp>

#include "json.hpp"
#include "task_definition.hpp"

namespace task_server {

enum class TaskState { queued, running, waiting_confirmation, completed, failed, cancelled };

constexpr std::string_view to_string(TaskState state) noexcept {
    switch (state) {
        case TaskState::queued:
            return "queued";
        case TaskState::running:
            return "running";
        case TaskState::waiting_confirmation:
            return "waiting_confirmation";
        case TaskState::completed:
            return "completed";
        case TaskState::failed:
            return "failed";
        case TaskState::cancelled:
            return "cancelled";
    }
    return "unknown";
}

constexpr bool is_final(TaskState state) noexcept {
    return state == TaskState::completed || state == TaskState::failed ||
           state == TaskState::cancelled;
}

/// One line of a task's log. `seq` counts from 1 per task, so a client that fetched the log
/// over HTTP and also receives `task_log` frames can drop the lines it already has.
struct LogLine {
    std::uint64_t seq = 0;
    double time = 0;
    std::string level;  ///< "info", "warning" or "error"
    std::string text;
};

/// What GET /api/tasks lists and `task_update` frames carry. `version` grows with every
/// change, so a client keeps the newest of a frame and an HTTP answer that crossed.
struct TaskSnapshot {
    std::string id;
    std::string user_id;
    std::string name;
    TaskState state = TaskState::queued;
    int progress = 0;  ///< percent of the whole task's work
    std::string current_step;
    int step_index = 0;  ///< 1-based; 0 before the first step
    int step_count = 0;
    int attempt = 0;  ///< of the current step
    std::optional<std::string> error_code;
    std::optional<std::string> error_message;
    std::optional<std::string> outcome;  ///< why it ended, once final
    double created_at = 0;
    double updated_at = 0;
    std::uint64_t version = 0;
};

/// The snapshot's members, inside an object the caller opened.
inline void write_snapshot_fields(JsonOut& out, TaskSnapshot const& s) {
    out.field("id", s.id)
        .field("user_id", s.user_id)
        .field("name", s.name)
        .field("state", to_string(s.state))
        .field("progress", s.progress)
        .field("current_step", s.current_step)
        .field("step_index", s.step_index)
        .field("step_count", s.step_count)
        .field("attempt", s.attempt)
        .optional_field("error_code", s.error_code)
        .optional_field("error_message", s.error_message)
        .optional_field("outcome", s.outcome)
        .field("created_at", s.created_at)
        .field("updated_at", s.updated_at)
        .field("version", s.version);
}

inline void write_snapshot(JsonOut& out, TaskSnapshot const& s) {
    out.begin_object();
    write_snapshot_fields(out, s);
    out.end_object();
}

inline void write_log_line(JsonOut& out, LogLine const& line) {
    out.begin_object()
        .field("seq", line.seq)
        .field("time", line.time)
        .field("level", line.level)
        .field("text", line.text)
        .end_object();
}

/// `{"type":"task_update","task":{...}}`: the whole visible state of one task.
inline wsmanager::Message task_update_message(TaskSnapshot const& snapshot) {
    JsonOut out;
    out.begin_object().field("type", "task_update").key("task");
    write_snapshot(out, snapshot);
    out.end_object();
    return wsmanager::Message::from_trusted_json(out.str());
}

/// `{"type":"task_log","task_id":...,"user_id":...,"entry":{seq,time,level,text}}`.
inline wsmanager::Message task_log_message(TaskSnapshot const& snapshot, LogLine const& line) {
    JsonOut out;
    out.begin_object()
        .field("type", "task_log")
        .field("task_id", snapshot.id)
        .field("user_id", snapshot.user_id)
        .key("entry");
    write_log_line(out, line);
    out.end_object();
    return wsmanager::Message::from_trusted_json(out.str());
}

class Task {
public:
    static constexpr std::size_t max_log_lines = 200;

    Task(std::string id, std::string user_id, TaskDefinition definition)
        : id_(std::move(id)), user_id_(std::move(user_id)), definition_(std::move(definition)) {
        snapshot_.id = id_;
        snapshot_.user_id = user_id_;
        snapshot_.name = definition_.name;
        snapshot_.step_count = static_cast<int>(definition_.steps.size());
        snapshot_.created_at = snapshot_.updated_at = unix_time();
        snapshot_.version = 1;
    }

    Task(Task const&) = delete;
    Task& operator=(Task const&) = delete;

    // Never change after construction: no lock needed.
    std::string const& id() const noexcept { return id_; }
    std::string const& user_id() const noexcept { return user_id_; }
    TaskDefinition const& definition() const noexcept { return definition_; }

    TaskSnapshot snapshot() const {
        std::lock_guard lock(mutex_);
        return snapshot_;
    }

    /// The last `limit` lines of the log (all of them with the default).
    std::vector<LogLine> log(std::size_t limit = max_log_lines) const {
        std::lock_guard lock(mutex_);
        auto const skip = log_.size() > limit ? log_.size() - limit : 0;
        return {log_.begin() + static_cast<std::ptrdiff_t>(skip), log_.end()};
    }

    /// Changes the task under its lock and returns the new snapshot. `change` must be quick.
    template <class Change>
    TaskSnapshot update(Change&& change) {
        std::lock_guard lock(mutex_);
        change(snapshot_);
        snapshot_.updated_at = unix_time();
        ++snapshot_.version;
        return snapshot_;
    }

    /// Appends a log line (the oldest goes beyond max_log_lines) and returns it.
    LogLine add_log(std::string level, std::string text) {
        std::lock_guard lock(mutex_);
        LogLine line{++log_seq_, unix_time(), std::move(level), std::move(text)};
        log_.push_back(line);
        if (log_.size() > max_log_lines) log_.pop_front();
        return line;
    }

    bool is_final() const {
        std::lock_guard lock(mutex_);
        return task_server::is_final(snapshot_.state);
    }

    // Cooperative cancellation. The flag may be set from any thread and is checked by the
    // step processor between and during steps; the reason is read once the task stops.
    bool request_cancel(std::string reason) {
        std::lock_guard lock(mutex_);
        if (task_server::is_final(snapshot_.state) || cancel_requested_) return false;
        cancel_reason_ = std::move(reason);
        cancel_requested_.store(true);
        return true;
    }
    bool cancel_requested() const noexcept { return cancel_requested_.load(); }
    std::string cancel_reason() const {
        std::lock_guard lock(mutex_);
        return cancel_reason_;
    }

    /// Interrupts whatever the task's coroutine awaits (a timer, notify_user, a heartbeat).
    /// Host io_context only: an asio::cancellation_signal is not thread-safe.
    asio::cancellation_signal& cancel_signal() noexcept { return cancel_signal_; }

private:
    std::string const id_;
    std::string const user_id_;
    TaskDefinition const definition_;
    mutable std::mutex mutex_;
    TaskSnapshot snapshot_;
    std::deque<LogLine> log_;
    std::uint64_t log_seq_ = 0;
    std::atomic<bool> cancel_requested_{false};
    std::string cancel_reason_;
    asio::cancellation_signal cancel_signal_;
};

}  // namespace task_server
