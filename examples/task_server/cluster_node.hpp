// SPDX-License-Identifier: BSL-1.0
#pragma once

// One node of a cluster: with WEBSOCKET_REDIS_URL set, the manager gets the Redis backplane
// (wsmanager::cluster::redis) as its backplane, so several task_servers behind a load balancer
// serve any user (deploy/). Built without wsmanager::cluster (WSMANAGER_CLUSTER=OFF, no
// hiredis), a Redis URL is refused rather than silently running a single server.

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include <wsmanager/wsmanager.hpp>
#if defined(WSMANAGER_TASK_SERVER_CLUSTER)
#include <wsmanager/cluster.hpp>
#endif

#include "task_service.hpp"

namespace task_server {

/// A Redis URL for the log: its password, if any, hidden.
inline std::string redacted(std::string const& url) {
    auto const scheme = url.find("://");
    auto const at = url.rfind('@');
    if (scheme == std::string::npos || at == std::string::npos || at < scheme) return url;
    return url.substr(0, scheme + 3) + "***" + url.substr(at);
}

#if defined(WSMANAGER_TASK_SERVER_CLUSTER)
inline constexpr char const* timings_variable = "TASK_SERVER_CLUSTER_TIMINGS";

/// A duration as WEBSOCKET_* variables spell them: seconds (`2`, `0.5`) or with a unit
/// (`250ms`, `2s`, `1m`); more than 0.
inline std::chrono::milliseconds parse_timing(std::string const& name, std::string const& text) {
    auto fail = [&]() -> std::chrono::milliseconds {
        throw std::invalid_argument(std::string(timings_variable) + ": " + name + "=" + text +
                                    " is not valid: expected a duration above 0, in seconds "
                                    "(2, 0.5) or with a unit (250ms, 2s, 1m)");
    };
    std::string_view number = text;
    double scale = 1000.0;
    if (number.ends_with("ms")) {
        scale = 1.0;
        number.remove_suffix(2);
    } else if (number.ends_with("s")) {
        number.remove_suffix(1);
    } else if (number.ends_with("m")) {
        scale = 60000.0;
        number.remove_suffix(1);
    }
    double amount = 0;
    auto const [end, ec] = std::from_chars(number.data(), number.data() + number.size(), amount);
    if (number.empty() || ec != std::errc{} || end != number.data() + number.size() ||
        !std::isfinite(amount) || amount * scale < 1.0 || amount * scale > 86'400'000.0) {
        return fail();
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(amount * scale)));
}

/// The backplane's timings: RedisOptions' defaults, or TASK_SERVER_CLUSTER_TIMINGS, a
/// comma-separated list of `field=duration` over RedisOptions' fields, e.g.
/// `heartbeat_interval=250ms,node_ttl=2s` (a test's, to notice a dead node sooner).
inline wsmanager::cluster::RedisOptions cluster_timings_from_env() {
    wsmanager::cluster::RedisOptions timings;
    char const* value = std::getenv(timings_variable);
    if (value == nullptr) return timings;
    std::string_view rest = value;
    while (!rest.empty()) {
        auto const comma = rest.find(',');
        auto const item = std::string(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        if (item.empty()) continue;
        auto const equals = item.find('=');
        if (equals == std::string::npos) {
            throw std::invalid_argument(std::string(timings_variable) + ": '" + item +
                                        "' is not field=duration");
        }
        auto const name = item.substr(0, equals);
        auto const duration = parse_timing(name, item.substr(equals + 1));
        if (name == "heartbeat_interval") {
            timings.heartbeat_interval = duration;
        } else if (name == "node_ttl") {
            timings.node_ttl = duration;
        } else if (name == "cancel_timeout") {
            timings.cancel_timeout = duration;
        } else if (name == "decided_kept") {
            timings.decided_kept = duration;
        } else if (name == "connect_timeout") {
            timings.connect_timeout = duration;
        } else if (name == "command_timeout") {
            timings.command_timeout = duration;
        } else if (name == "reconnect_initial") {
            timings.reconnect_initial = duration;
        } else if (name == "reconnect_max") {
            timings.reconnect_max = duration;
        } else {
            throw std::invalid_argument(
                std::string(timings_variable) + ": unknown field '" + name +
                "' (heartbeat_interval, node_ttl, cancel_timeout, decided_kept, "
                "connect_timeout, command_timeout, reconnect_initial, reconnect_max)");
        }
    }
    if (timings.node_ttl <= timings.heartbeat_interval) {
        throw std::invalid_argument(std::string(timings_variable) +
                                    ": node_ttl must be longer than heartbeat_interval");
    }
    if (timings.reconnect_max < timings.reconnect_initial) {
        throw std::invalid_argument(std::string(timings_variable) +
                                    ": reconnect_max must be at least reconnect_initial");
    }
    return timings;
}
#endif

/// The manager: one node of a cluster when Options::redis_url is set (the Redis backplane),
/// else a server on its own.
inline std::unique_ptr<Manager> make_manager(wsmanager::Options const& options) {
#if defined(WSMANAGER_TASK_SERVER_CLUSTER)
    if (!options.redis_url.empty()) {
        return std::make_unique<Manager>(
            options, wsmanager::cluster::redis(options, cluster_timings_from_env()));
    }
#else
    if (!options.redis_url.empty()) {
        throw std::invalid_argument(
            "WEBSOCKET_REDIS_URL is set, but this task_server was built without the Redis "
            "backplane (wsmanager::cluster): install libhiredis-dev "
            "(scripts/install-cluster-deps.sh) and configure with -DWSMANAGER_CLUSTER=ON, or "
            "unset WEBSOCKET_REDIS_URL to run a single server");
    }
#endif
    return std::make_unique<Manager>(options);
}

}  // namespace task_server
