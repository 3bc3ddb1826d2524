// SPDX-License-Identifier: BSL-1.0
#pragma once

// The load generator: N WebSocket clients of its own (RFC 6455 from scratch on standalone
// Asio, no websocketpp: masked client frames, unmasked server frames of any length,
// fragments, ping/pong/close) against a server in another process, and one scenario of the
// bench protocol (bench_common.hpp) measured from outside it.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wsbench_local {

struct load_settings {
    std::string host = "127.0.0.1";  ///< must be a loopback address
    /// The servers' ports: connections go round-robin over them, the control connection
    /// (the first) to the first. Several: the nodes of one cluster.
    std::vector<unsigned> ports;
    long server_pid = 0;  ///< the first port's server: its CPU and VmRSS; 0: not reported
    std::vector<long> peer_pids;  ///< the other nodes: their CPU is added to the server's
    long redis_pid = 0;           ///< the cluster's redis-server: its CPU; 0: none
    int threads = 1;      ///< client I/O threads, one io_context each
    int connects_in_flight = 200;
    /// Source addresses to spread connections over (127.0.0.x); empty: the kernel's choice,
    /// or 127.0.0.1-127.0.0.k automatically above 25,000 connections.
    std::vector<std::string> source_ips;
    double connect_timeout_s = 60;
    double close_timeout_s = 10;
    bool verbose = false;
    /// TCP_QUICKACK before every read (a diagnosis: what a server's Nagle stalls cost).
    bool quick_ack = false;
};

/// One scenario, as the load generator runs it.
struct scenario {
    std::string kind;           ///< fanout, unicast, lone, confirm, idle
    int conns = 100;
    std::int64_t count = 1000;  ///< messages (fanout: per client), or confirmations
    int size = 200;             ///< message size in bytes
    int inflight = 1;           ///< confirm: notify_user calls in flight
    int interval_us = 10000;    ///< lone: between messages (0: back to back)
    double window_s = 5;        ///< idle: how long the connections stay idle
    double timeout_s = 60;      ///< the measured phase's bound
    /// The action's name; empty: bench_<kind>. `bench` drives a wsbench peer (fanout only).
    std::string action;
    /// Pause between "all open" and the action, in ms; negative: 100 + conns / 20.
    int settle_ms = -1;
    /// One more connection, the first, as the control connection (user `control`) on the
    /// first port; the conns users on the other ports (all on the first when there is one).
    /// So a confirmation asked on one node is answered on another.
    bool control_apart = false;
    /// Before the measured phase, bench_ready: the server answers once it (with a backplane:
    /// the whole cluster) holds every connection. wsmanager only.
    bool await_ready = false;
};

/// What one run measured: named numbers (the JSON line's fields) and a verdict.
struct measurement {
    std::string label;     ///< the plan's name for the scenario (fanout_1000, ...)
    std::string kind;
    std::string impl;      ///< the server
    int rep = 0;
    bool ok = false;       ///< delivered everything, resolved everything, no errors
    std::string note;      ///< why not ok, when it is not
    std::vector<std::pair<std::string, double>> numbers;

    void set(std::string const& key, double value);
    double get(std::string const& key, double fallback = -1) const;
    bool has(std::string const& key) const;
    std::string json() const;
};

/// Runs one scenario against the server at settings.port; never takes longer than the
/// connect, measure and close bounds together.
measurement run_load(load_settings const& settings, scenario const& what);

}  // namespace wsbench_local
