// SPDX-License-Identifier: BSL-1.0
#pragma once

// redis_errc: the error codes of redis_connection's operations (beside Asio's and the
// system's own), their error category "wsmanager.redis", and the std::error_code glue.

#include <string>
#include <system_error>
#include <type_traits>

namespace wsmanager::cluster::detail {

/// Errors of redis_connection's operations, beside Asio's and the system's own
/// (`asio::error::operation_aborted` after close(), `not_connected`, `connection_refused`...).
enum class redis_errc {
    connect_timeout = 1,  ///< the TCP connection was not established within the timeout
    command_timeout,      ///< a reply did not arrive within its timeout; connection torn down
    connection_lost,      ///< the connection closed or failed while the operation was pending
    redis_error,          ///< Redis answered with an error reply (the value holds its text)
    protocol_error,       ///< the server sent bytes that are not RESP; connection torn down
    connect_failed,       ///< the connection could not be started (e.g. unknown host)
};

class redis_error_category_impl : public std::error_category {
public:
    char const* name() const noexcept override { return "wsmanager.redis"; }
    std::string message(int value) const override {
        switch (static_cast<redis_errc>(value)) {
            case redis_errc::connect_timeout:
                return "Redis connect timed out";
            case redis_errc::command_timeout:
                return "Redis command timed out";
            case redis_errc::connection_lost:
                return "Redis connection lost";
            case redis_errc::redis_error:
                return "Redis error reply";
            case redis_errc::protocol_error:
                return "Redis protocol error";
            case redis_errc::connect_failed:
                return "Redis connect failed";
        }
        return "unknown Redis error";
    }
};

/// The category of redis_errc codes.
inline std::error_category const& redis_category() noexcept {
    static redis_error_category_impl const category;
    return category;
}

inline std::error_code make_error_code(redis_errc e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

}  // namespace wsmanager::cluster::detail

template <>
struct std::is_error_code_enum<wsmanager::cluster::detail::redis_errc> : std::true_type {};
