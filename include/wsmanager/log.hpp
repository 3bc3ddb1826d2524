// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace wsmanager {

/// Severity of a log record, lowest first. `off` as a threshold silences everything.
enum class LogLevel { trace, debug, info, warning, error, off };

/// Name of a level as used in logs and in `WEBSOCKET_LOG_LEVEL` ("warning", ...).
constexpr std::string_view to_string(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::trace: return "trace";
        case LogLevel::debug: return "debug";
        case LogLevel::info: return "info";
        case LogLevel::warning: return "warning";
        case LogLevel::error: return "error";
        case LogLevel::off: return "off";
    }
    return "unknown";
}

/// One log event. The views are valid only during the sink call.
struct LogRecord {
    LogLevel level = LogLevel::info;
    std::string_view event;    ///< short machine-readable name, e.g. "connection_closed"
    std::string_view message;  ///< human-readable text
    std::uint64_t connection_id = 0;  ///< 0 when the record is not about one connection
    std::string_view user_id;
};

/// Where the library's log records go. Called from any of the manager's threads, one record
/// at a time (the manager serializes calls), so a sink needs no locking of its own. A sink
/// that throws loses that record only; records the sink causes the same manager to log
/// from inside the call are dropped.
using LogSink = std::function<void(LogRecord const&)>;

/// A sink that writes one human-readable line per record to stderr (the default).
LogSink stderr_log_sink();

/**
 * A sink that writes one JSON object per line (JSON Lines) to `out` (stderr by default):
 * `{"ts":"2026-11-25T21:40:39.919Z","level":"warning","event":"...","message":"...",
 * "connection":12,"user":"alice"}`; `connection` and `user` only when known. For log
 * shippers (Loki, Elasticsearch, CloudWatch). `out` must outlive the sink.
 */
LogSink json_lines_log_sink(std::FILE* out = stderr);

namespace detail {

/// The manager's logger: a level threshold and a replaceable sink, shared by the manager
/// and by websocketpp's access and error logs.
class logger {
public:
    logger(LogSink sink, LogLevel threshold) : sink_(std::move(sink)), threshold_(threshold) {}

    bool enabled(LogLevel level) const noexcept {
        return sink_ && level >= threshold_ && level != LogLevel::off;
    }

    /// Hands one record to the sink. A sink that throws loses that record; a record the
    /// sink itself logs (through the manager) on the same thread is dropped rather than
    /// deadlocking on the mutex.
    void write(LogLevel level, std::string_view event, std::string_view message,
               std::uint64_t connection_id = 0, std::string_view user_id = {}) const noexcept {
        if (!enabled(level) || in_sink_ == this) return;
        std::lock_guard lock(mutex_);
        if (closed_) return;
        in_sink_ = this;
        try {
            sink_(LogRecord{level, event, message, connection_id, user_id});
        } catch (...) {
            // The library's own threads must not end because a sink failed.
        }
        in_sink_ = nullptr;
    }

    /// The sink is not called after this returns (the manager is going away). From inside
    /// the sink, it takes effect when the sink returns.
    void close() noexcept {
        if (in_sink_ == this) {
            closed_ = true;  // this thread holds the mutex already
            return;
        }
        std::lock_guard lock(mutex_);
        closed_ = true;
    }

private:
    LogSink sink_;
    LogLevel threshold_;
    mutable std::mutex mutex_;
    bool closed_ = false;  ///< guarded by mutex_
    static inline thread_local logger const* in_sink_ = nullptr;  ///< whose sink this thread is in
};

}  // namespace detail
}  // namespace wsmanager

#include <wsmanager/impl/log.hpp>
