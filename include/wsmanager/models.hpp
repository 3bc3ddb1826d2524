// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wsmanager {

/// Why a confirmation ended.
enum class ConfirmationReason {
    user,          ///< the user answered
    timeout,       ///< nobody answered in time; `proceed` is Options::proceed_on_timeout
    cancelled,     ///< the task was cancelled (by its user or by the host)
    shutdown,      ///< stop_server ran while it was pending
    disconnected,  ///< the user's last connection went away and the host asked to give up
};

inline constexpr std::size_t confirmation_reason_count = 5;
static_assert(static_cast<std::size_t>(ConfirmationReason::disconnected) + 1 ==
              confirmation_reason_count);

constexpr std::string_view to_string(ConfirmationReason reason) noexcept {
    switch (reason) {
        case ConfirmationReason::user: return "user";
        case ConfirmationReason::timeout: return "timeout";
        case ConfirmationReason::cancelled: return "cancelled";
        case ConfirmationReason::shutdown: return "shutdown";
        case ConfirmationReason::disconnected: return "disconnected";
    }
    return "unknown";
}

/// The result of one task step, as the original's TaskStepResult.
struct TaskStepResult {
    std::string step{};              ///< step name
    std::string result = "null";   ///< the step's result as JSON text (validated when sent)
    bool completed = false;
    std::string message{};           ///< what the user is asked / told
    std::string status{};            ///< e.g. "completed", "failed"
    std::optional<std::string> error_code{};
    std::optional<std::string> error_message{};
};

/// A user's decision on a step, as the original's UserConfirmation, plus why it ended.
struct UserConfirmation {
    bool proceed = false;
    std::optional<std::string> feedback{};
    ConfirmationReason reason = ConfirmationReason::user;
};

/// A user's request to cancel a task, handed to the host's on_cancel handler.
struct CancelRequest {
    std::string user_id{};            ///< who asked (from the connection's identity)
    std::string task_id{};
    std::uint64_t connection_id = 0;
};

/// A snapshot of the manager's state and counters; get_status() reads it from any thread.
struct Status {
    bool running = false;
    std::size_t active_connections = 0;
    std::size_t pending_callbacks = 0;
    std::size_t users_online = 0;
    std::size_t topics = 0;
    double uptime_s = 0;  ///< since the last successful start_server; 0 while stopped
    std::uint16_t port = 0;  ///< the bound port while running
    std::uint64_t connections_opened = 0;    ///< connections that completed the handshake
    std::uint64_t connections_rejected = 0;  ///< refused: limit, auth, origin, failed handshake
    std::uint64_t messages_sent = 0;         ///< frames handed to a connection
    std::uint64_t messages_failed = 0;       ///< frames that could not be (closed, overflow)
    std::uint64_t messages_received = 0;     ///< client frames
    std::uint64_t frames_rejected = 0;       ///< client frames answered with an error
    double connection_success_rate = 1.0;    ///< opened / (opened + rejected)
    double avg_confirmation_wait_s = 0;      ///< mean time from notify_user to its end

    /// This node's name in a cluster (Options::node_id); empty without a backplane.
    std::string node_id{};
    /// The cluster this node belongs to, as the backplane last saw it.
    struct Cluster {
        bool enabled = false;    ///< a backplane is configured
        bool connected = false;  ///< it reaches Redis now
        std::size_t nodes = 0;   ///< live nodes, this one included
        std::size_t connections = 0;   ///< open connections on every live node
        std::size_t users_online = 0;  ///< distinct users on every live node
    } cluster{};

    /// The snapshot as one JSON object, with the field names above.
    std::string to_json() const;
};

}  // namespace wsmanager

#include <wsmanager/impl/models.hpp>
