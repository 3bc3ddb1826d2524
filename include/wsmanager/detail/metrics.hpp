// SPDX-License-Identifier: BSL-1.0
#pragma once

// The manager's counters and their Prometheus text exposition. Every counter is a relaxed
// atomic written where the event happens (any thread) and read by get_status() and /metrics
// from any thread: statistics need no ordering, and the hot path takes no lock.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <wsmanager/models.hpp>
#include <wsmanager/protocol.hpp>

#ifndef WSMANAGER_VERSION_STRING
#define WSMANAGER_VERSION_STRING "0.1.0"
#endif

namespace wsmanager::detail {

/// A Prometheus histogram with fixed upper bounds (seconds) and atomic buckets.
template <std::size_t N>
class histogram {
public:
    explicit constexpr histogram(std::array<double, N> bounds) : bounds_(bounds) {}

    void observe(double value) noexcept {
        std::size_t i = 0;
        while (i < N && value > bounds_[i]) ++i;
        buckets_[i].fetch_add(1, std::memory_order_relaxed);
        // Sum in nanoseconds, so it stays an integer atomic and short fan-outs still add up.
        sum_ns_.fetch_add(static_cast<std::uint64_t>(value * 1e9), std::memory_order_relaxed);
    }

    void render(std::string& out, std::string_view name) const {
        std::uint64_t cumulative = 0;
        char line[160];
        for (std::size_t i = 0; i <= N; ++i) {
            cumulative += buckets_[i].load(std::memory_order_relaxed);
            if (i < N) {
                std::snprintf(line, sizeof line, "%.*s_bucket{le=\"%g\"} %llu\n",
                              static_cast<int>(name.size()), name.data(), bounds_[i],
                              static_cast<unsigned long long>(cumulative));
            } else {
                std::snprintf(line, sizeof line, "%.*s_bucket{le=\"+Inf\"} %llu\n",
                              static_cast<int>(name.size()), name.data(),
                              static_cast<unsigned long long>(cumulative));
            }
            out += line;
        }
        std::snprintf(line, sizeof line, "%.*s_sum %.6f\n%.*s_count %llu\n",
                      static_cast<int>(name.size()), name.data(),
                      static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9,
                      static_cast<int>(name.size()), name.data(),
                      static_cast<unsigned long long>(cumulative));
        out += line;
    }

private:
    std::array<double, N> bounds_;
    std::array<std::atomic<std::uint64_t>, N + 1> buckets_{};
    std::atomic<std::uint64_t> sum_ns_{0};
};

/// Why a connection was refused (wsmanager_connections_rejected_total{reason}).
enum class reject_reason : std::size_t { limit, auth, origin, handshake, count_ };

constexpr std::string_view to_string(reject_reason reason) noexcept {
    switch (reason) {
        case reject_reason::limit: return "limit";
        case reject_reason::auth: return "auth";
        case reject_reason::origin: return "origin";
        case reject_reason::handshake: return "handshake";
        case reject_reason::count_: break;
    }
    return "other";
}

/// Close codes counted one by one; anything else is "other".
inline constexpr std::array<std::uint16_t, 12> counted_close_codes = {
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013};

struct manager_counters {
    template <class T>
    static void add(std::atomic<T>& counter, T amount = 1) noexcept {
        counter.fetch_add(amount, std::memory_order_relaxed);
    }

    std::atomic<bool> running{false};
    std::atomic<std::uint16_t> port{0};
    std::atomic<std::int64_t> started_at_ms{0};  ///< steady clock, at the last start
    std::int64_t const created_at_ms = steady_ms();

    // Gauges, stored by the manager strand.
    std::atomic<std::size_t> active_connections{0};
    std::atomic<std::size_t> users_online{0};
    std::atomic<std::size_t> topics{0};
    std::atomic<std::size_t> pending_callbacks{0};  ///< confirmations + acks
    std::atomic<std::size_t> pending_confirmations{0};
    std::atomic<std::size_t> pending_acks{0};
    std::atomic<std::size_t> running_heartbeats{0};
    std::size_t max_connections = 0;  ///< set once, before start

    std::atomic<std::uint64_t> connections_opened{0};
    std::atomic<std::uint64_t> connections_rejected{0};
    std::atomic<std::uint64_t> accept_failures{0};  ///< failed accepts (EMFILE, ...)
    std::atomic<std::uint64_t> token_expiry_closes{0};  ///< closed (1008): the token expired
    std::array<std::atomic<std::uint64_t>, static_cast<std::size_t>(reject_reason::count_)>
        rejected_by_reason{};
    std::array<std::atomic<std::uint64_t>, counted_close_codes.size() + 1> closed_by_code{};

    std::atomic<std::uint64_t> messages_sent{0};
    std::atomic<std::uint64_t> bytes_sent{0};
    std::atomic<std::uint64_t> messages_failed{0};
    std::atomic<std::uint64_t> messages_dropped{0};  ///< failed because a send buffer was full
    std::atomic<std::uint64_t> messages_compressed{0};  ///< once per message, not per connection
    std::atomic<std::uint64_t> messages_received{0};
    std::atomic<std::uint64_t> bytes_received{0};
    std::atomic<std::uint64_t> read_pauses{0};  ///< a connection stopped reading (backpressure)
    std::atomic<std::uint64_t> frames_rejected{0};
    std::array<std::atomic<std::uint64_t>, protocol::error_code_count>
        frames_rejected_by_code{};  ///< by protocol::ErrorCode
    std::atomic<std::uint64_t> heartbeats_sent{0};
    std::atomic<std::uint64_t> confirmations_ended{0};
    std::array<std::atomic<std::uint64_t>, confirmation_reason_count>
        confirmations_by_reason{};  ///< by ConfirmationReason
    std::atomic<std::int64_t> confirmation_wait_total_us{0};
    std::atomic<std::uint64_t> acks_received{0};

    histogram<10> confirmation_wait_seconds{{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}};
    histogram<10> broadcast_fanout_seconds{
        {1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5}};

    static std::int64_t steady_ms() noexcept {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }

    /// Manager strand, after pending_confirmations or pending_acks changed.
    void refresh_pending_callbacks() noexcept {
        pending_callbacks.store(pending_confirmations.load(std::memory_order_relaxed) +
                                    pending_acks.load(std::memory_order_relaxed),
                                std::memory_order_relaxed);
    }

    void count_rejected(reject_reason reason) noexcept {
        add(connections_rejected);
        add(rejected_by_reason[static_cast<std::size_t>(reason)]);
    }

    void count_closed(std::uint16_t code) noexcept {
        std::size_t i = 0;
        while (i < counted_close_codes.size() && counted_close_codes[i] != code) ++i;
        add(closed_by_code[i]);
    }

    void count_frame_rejected(protocol::ErrorCode code) noexcept {
        add(frames_rejected);
        add(frames_rejected_by_code[static_cast<std::size_t>(code)]);
    }

    void count_confirmation(ConfirmationReason reason, std::chrono::microseconds waited) noexcept {
        add(confirmations_ended);
        add(confirmations_by_reason[static_cast<std::size_t>(reason)]);
        add(confirmation_wait_total_us, static_cast<std::int64_t>(waited.count()));
        confirmation_wait_seconds.observe(static_cast<double>(waited.count()) / 1e6);
    }

    /// The Prometheus text exposition format (version 0.0.4) of every metric.
    std::string render_prometheus() const;
};

namespace metrics_text {
inline void header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

template <class T>
void sample(std::string& out, std::string_view name, std::string_view labels, T value) {
    out.append(name);
    if (!labels.empty()) out.append("{").append(labels).append("}");
    out.append(" ");
    if constexpr (std::is_floating_point_v<T>) {
        char number[48];
        std::snprintf(number, sizeof number, "%.6f", value);
        out.append(number);
    } else {
        out.append(std::to_string(value));
    }
    out.append("\n");
}

template <class T>
void single(std::string& out, std::string_view name, std::string_view type,
            std::string_view help, T value) {
    header(out, name, type, help);
    sample(out, name, {}, value);
}
}  // namespace metrics_text

inline std::string manager_counters::render_prometheus() const {
    using namespace metrics_text;
    auto const relaxed = std::memory_order_relaxed;
    std::string out;
    out.reserve(8192);

    header(out, "wsmanager_build_info", "gauge", "wsmanager version (value is always 1).");
    sample(out, "wsmanager_build_info", "version=\"" WSMANAGER_VERSION_STRING "\"", 1);
    single(out, "wsmanager_up", "gauge", "1 while the server is listening.",
           running.load(relaxed) ? 1 : 0);
    auto const now = steady_ms();
    single(out, "wsmanager_uptime_seconds", "gauge", "Seconds since the server last started.",
           running.load(relaxed) ? static_cast<double>(now - started_at_ms.load(relaxed)) / 1e3
                                 : 0.0);
    single(out, "wsmanager_process_uptime_seconds", "gauge",
           "Seconds since the manager was created.",
           static_cast<double>(now - created_at_ms) / 1e3);

    single(out, "wsmanager_connections_active", "gauge", "Open WebSocket connections.",
           active_connections.load(relaxed));
    single(out, "wsmanager_connections_max", "gauge",
           "Options::max_connections: connections over it are closed with 1013.",
           max_connections);
    single(out, "wsmanager_users_online", "gauge", "Users with at least one open connection.",
           users_online.load(relaxed));
    single(out, "wsmanager_topics", "gauge", "Topics with at least one subscriber.",
           topics.load(relaxed));
    single(out, "wsmanager_connections_opened_total", "counter",
           "Connections that completed the WebSocket handshake and were admitted.",
           connections_opened.load(relaxed));

    header(out, "wsmanager_connections_closed_total", "counter",
           "Admitted connections that closed, by the close code received or sent.");
    for (std::size_t i = 0; i <= counted_close_codes.size(); ++i) {
        std::string labels = "code=\"";
        labels += i < counted_close_codes.size() ? std::to_string(counted_close_codes[i]) : "other";
        labels += "\"";
        sample(out, "wsmanager_connections_closed_total", labels, closed_by_code[i].load(relaxed));
    }
    single(out, "wsmanager_connections_token_expired_total", "counter",
           "Connections closed with 1008 because their token expired "
           "(Options::close_on_token_expiry).",
           token_expiry_closes.load(relaxed));
    single(out, "wsmanager_accept_failures_total", "counter",
           "Failed accepts (e.g. no file descriptor left); the listener backs off.",
           accept_failures.load(relaxed));
    header(out, "wsmanager_connections_rejected_total", "counter",
           "Connections refused, by reason.");
    for (std::size_t i = 0; i < rejected_by_reason.size(); ++i) {
        sample(out, "wsmanager_connections_rejected_total",
               "reason=\"" + std::string(to_string(static_cast<reject_reason>(i))) + "\"",
               rejected_by_reason[i].load(relaxed));
    }

    single(out, "wsmanager_messages_sent_total", "counter",
           "Frames handed to a connection for sending.", messages_sent.load(relaxed));
    single(out, "wsmanager_sent_bytes_total", "counter", "Payload bytes handed to connections.",
           bytes_sent.load(relaxed));
    single(out, "wsmanager_send_failures_total", "counter",
           "Frames that could not be queued (connection closing or send buffer full).",
           messages_failed.load(relaxed));
    single(out, "wsmanager_send_drops_total", "counter",
           "Frames dropped because a client's send buffer was full (slow consumer).",
           messages_dropped.load(relaxed));
    single(out, "wsmanager_messages_compressed_total", "counter",
           "Messages compressed for permessage-deflate connections: once per message, "
           "however many connections get it.",
           messages_compressed.load(relaxed));
    single(out, "wsmanager_messages_received_total", "counter", "Client frames received.",
           messages_received.load(relaxed));
    single(out, "wsmanager_received_bytes_total", "counter",
           "Payload bytes of client frames received.", bytes_received.load(relaxed));
    single(out, "wsmanager_read_pauses_total", "counter",
           "Times a connection stopped reading because its frames waited for the manager.",
           read_pauses.load(relaxed));
    header(out, "wsmanager_frames_rejected_total", "counter",
           "Client frames answered with an error frame, by error code.");
    for (std::size_t i = 0; i < frames_rejected_by_code.size(); ++i) {
        sample(out, "wsmanager_frames_rejected_total",
               "code=\"" + std::string(protocol::to_string(static_cast<protocol::ErrorCode>(i))) +
                   "\"",
               frames_rejected_by_code[i].load(relaxed));
    }

    single(out, "wsmanager_pending_callbacks", "gauge",
           "Pending confirmations plus messages awaiting an ack.", pending_callbacks.load(relaxed));
    single(out, "wsmanager_pending_confirmations", "gauge",
           "notify_user calls waiting for an answer.", pending_confirmations.load(relaxed));
    header(out, "wsmanager_confirmations_resolved_total", "counter",
           "Confirmations that ended, by reason.");
    for (std::size_t i = 0; i < confirmations_by_reason.size(); ++i) {
        sample(out, "wsmanager_confirmations_resolved_total",
               "reason=\"" + std::string(to_string(static_cast<ConfirmationReason>(i))) + "\"",
               confirmations_by_reason[i].load(relaxed));
    }
    header(out, "wsmanager_confirmation_wait_seconds", "histogram",
           "Time from notify_user to the end of the confirmation.");
    confirmation_wait_seconds.render(out, "wsmanager_confirmation_wait_seconds");
    header(out, "wsmanager_broadcast_fanout_seconds", "histogram",
           "Time to queue one broadcast to every connection.");
    broadcast_fanout_seconds.render(out, "wsmanager_broadcast_fanout_seconds");
    single(out, "wsmanager_heartbeats_running", "gauge", "send_heartbeat operations running.",
           running_heartbeats.load(relaxed));
    single(out, "wsmanager_heartbeats_sent_total", "counter", "Heartbeat ticks (one per interval per send_heartbeat, whatever the connection count).",
           heartbeats_sent.load(relaxed));
    single(out, "wsmanager_acks_received_total", "counter", "Client acks for send_with_ack.",
           acks_received.load(relaxed));
    return out;
}

}  // namespace wsmanager::detail
