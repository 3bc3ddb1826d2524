// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <string>
#include <system_error>
#include <type_traits>

namespace wsmanager {

/// Errors reported by the manager's asynchronous operations (first argument of every
/// completion handler). Socket errors such as `address_in_use` are reported as they are.
enum class error {
    already_running = 1,  ///< start_server while running or stopping
    not_running,          ///< an operation that needs a running server
    invalid_message,      ///< JSON text that does not parse or is not an object
    shutting_down,        ///< the server stopped while the operation was pending
    task_cancelled,       ///< the task was cancelled (send_heartbeat ends with it)
    tls_not_configured,   ///< config::tls without Options::tls_cert and tls_key
    too_many_pending,     ///< a limit on pending operations (Options::max_pending_*) is reached
    cluster_unavailable,  ///< the other nodes could not be reached (Redis is down or slow)
    no_backplane,         ///< Options::redis_url is set but the manager was given no backplane
};

namespace detail {
class error_category_impl : public std::error_category {
public:
    char const* name() const noexcept override { return "wsmanager"; }
    std::string message(int value) const override {
        switch (static_cast<error>(value)) {
            case error::already_running: return "server is already running";
            case error::not_running: return "server is not running";
            case error::invalid_message: return "invalid JSON message";
            case error::shutting_down: return "server is shutting down";
            case error::task_cancelled: return "task was cancelled";
            case error::tls_not_configured:
                return "TLS needs a certificate and a key (Options::tls_cert, tls_key)";
            case error::too_many_pending:
                return "too many pending operations (Options::max_pending_confirmations)";
            case error::cluster_unavailable:
                return "the cluster's other nodes cannot be reached";
            case error::no_backplane:
                return "redis_url is set, but no backplane was given (wsmanager::cluster::redis)";
        }
        return "unknown wsmanager error";
    }
};
}  // namespace detail

/// The category of wsmanager::error codes.
inline std::error_category const& error_category() noexcept {
    static detail::error_category_impl const category;
    return category;
}

inline std::error_code make_error_code(error e) noexcept {
    return {static_cast<int>(e), error_category()};
}

}  // namespace wsmanager

template <>
struct std::is_error_code_enum<wsmanager::error> : std::true_type {};
