// SPDX-License-Identifier: BSL-1.0
#pragma once

// The benchmark's servers, each in its own translation unit (websocketpp and the manager are
// most of the build time). Each listens on 127.0.0.1, port 0, prints `listening <port>` on
// stdout once it accepts connections, serves the bench protocol (bench_common.hpp) and runs
// until SIGTERM or SIGINT, or until max_lifetime_s has passed, whichever comes first; then it
// leaves at once (std::_Exit: the bench measures serving, not teardown).
//
//   wsmanager            WebSocketManager<> on the host's io_context, run by `threads` threads;
//                        the host co_awaits each call before building the next message; with
//                        redis_url, one node of a cluster
//   asio                 bare Asio, 1 thread: each message framed once into a shared log,
//                        every connection writes what it has not sent yet with gather writes
//                        of up to 64 frames, 64 messages generated per loop turn: the ceiling
//   websocketpp          websocketpp 0.8.2 as usually written: server.send(hdl, text) per
//                        connection, one asio::post per message, 1 thread
//   websocketpp_prepared the same, one prepared (framed once) message for every connection

#include <chrono>
#include <cstdint>
#include <string>

namespace wsbench_local {

struct server_settings {
    unsigned threads = 1;
    /// wsmanager: Options::ping_interval in ms; 0 keeps the library default (30 s).
    long ping_interval_ms = 0;
    double max_lifetime_s = 900;
    /// wsmanager: a node of the cluster behind this Redis (redis://127.0.0.1:P); empty: alone.
    std::string redis_url;
    std::string node_id;
    std::string cluster_prefix = "wsmbench";
    /// wsmanager in a cluster: RedisOptions::heartbeat_interval in ms; 0 keeps the default (1 s).
    long heartbeat_ms = 0;
};

/// Whether this build has the Redis backplane (the wsmanager::cluster target).
constexpr bool cluster_built() noexcept {
#if WSMANAGER_BENCH_CLUSTER
    return true;
#else
    return false;
#endif
}

int serve_wsmanager(server_settings const& settings);
int serve_asio(server_settings const& settings);
int serve_websocketpp(server_settings const& settings, bool prepared);

/// Prints the announcement the load generator waits for.
void announce_port(unsigned port);

/// The server's process-wide setup: file limit, SIGPIPE ignored.
void prepare_server_process();

}  // namespace wsbench_local
