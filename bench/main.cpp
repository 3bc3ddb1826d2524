// SPDX-License-Identifier: BSL-1.0
//
// wsmanager_bench: wsmanager's end-to-end benchmark, and its baselines, in one run.
//
//   wsmanager_bench run [--quick | --smoke] [--reps R] [--only a,b] [--impls a,b]
//                       [--client-threads T] [--json FILE] [--quickack]
//       Runs the plan: for every scenario, every server (started as `serve` in a process
//       of its own, on a fresh port), R repetitions interleaved across the servers. Prints
//       one JSON line per run on stdout as it ends, then the tables and wsmanager's ratios.
//       Exit status 1 when any run lost a frame, left a confirmation unresolved, lost an
//       idle connection or had an error (never because of a number).
//       The cluster scenarios (cluster_*, `--only cluster`): wsmanager alone against
//       cluster_Nnodes, N `serve --redis-url` processes behind a private redis-server that
//       the run starts on a free port for each run and stops after it.
//   wsmanager_bench serve --impl wsmanager|asio|websocketpp|websocketpp_prepared
//                         [--threads T] [--ping-interval-ms MS] [--max-lifetime-s S]
//                         [--redis-url redis://127.0.0.1:P --node-id ID [--cluster-prefix P]
//                          [--heartbeat-ms MS]]
//       One server (bench_servers.hpp); prints `listening <port>`.
//   wsmanager_bench load fanout|unicast|lone|confirm|idle --port P[,P2,...] [--server-pid PID]
//                        [--conns N] [--count K] [--size S] [--inflight F] [--interval-us I]
//                        [--window-s W] [--timeout-s T] [--client-threads T] [--src-ips a,b]
//                        [--action NAME] [--settle-ms MS] [--quickack]
//       One scenario against a server started elsewhere; one JSON line. `--action bench`
//       drives a wsbench peer (shared/wsbench) with its own fan-out action.
//
// Only 127.0.0.0/8 is contacted. Every process `run` starts is stopped by its pid (SIGTERM,
// then SIGKILL), and dies with `run` (PR_SET_PDEATHSIG); every phase has a time bound.

#include "bench_common.hpp"
#include "bench_servers.hpp"
#include "load.hpp"
#include "redis_process.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <asio/ip/address.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace wsbench_local {

void announce_port(unsigned port) {
    std::printf("listening %u\n", port);
    std::fflush(stdout);
}

void prepare_server_process() {
    raise_file_limit();
    std::signal(SIGPIPE, SIG_IGN);
}

namespace {

[[noreturn]] void usage(std::string const& why = {}) {
    if (!why.empty()) std::fprintf(stderr, "wsmanager_bench: %s\n", why.c_str());
    std::fprintf(stderr,
                 "usage:\n"
                 "  wsmanager_bench run [--quick | --smoke] [--reps R] [--only SCENARIOS] [--impls IMPLS]\n"
                 "                      [--client-threads T] [--json FILE] [--quickack]\n"
                 "  wsmanager_bench serve --impl wsmanager|asio|websocketpp|websocketpp_prepared\n"
                 "                        [--threads T] [--ping-interval-ms MS] [--max-lifetime-s S]\n"
                 "                        [--redis-url URL --node-id ID [--cluster-prefix P] [--heartbeat-ms MS]]\n"
                 "  wsmanager_bench load fanout|unicast|lone|confirm|idle --port P[,P2,...] [--server-pid PID]\n"
                 "                       [--conns N] [--count K] [--size S] [--inflight F] [--interval-us I]\n"
                 "                       [--window-s W] [--timeout-s T] [--client-threads T] [--src-ips A,B]\n"
                 "                       [--action NAME] [--settle-ms MS] [--quickack]\n");
    std::exit(2);
}

std::vector<std::string> split(std::string const& text) {
    std::vector<std::string> parts;
    std::size_t at = 0;
    while (at <= text.size()) {
        auto const comma = text.find(',', at);
        auto part = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        if (!part.empty()) parts.push_back(part);
        if (comma == std::string::npos) break;
        at = comma + 1;
    }
    return parts;
}

bool is_loopback(std::string const& host) {
    std::error_code ec;
    auto const address = asio::ip::make_address(host, ec);
    return !ec && address.is_v4() && address.is_loopback();
}

/// Arguments after the subcommand, as --name value pairs.
class arguments {
public:
    arguments(int argc, char** argv, int first) {
        for (int i = first; i < argc; ++i) {
            std::string name = argv[i];
            if (name.rfind("--", 0) != 0) usage("unexpected argument " + name);
            if (name == "--quick" || name == "--smoke" || name == "--verbose" || name == "--quickack") {
                values_[name].assign(1, '1');  // not = "1": a false GCC 12 -Wrestrict (PR 105329)
                continue;
            }
            if (i + 1 >= argc) usage("missing value for " + name);
            values_[name] = argv[++i];
        }
    }
    bool flag(std::string const& name) const { return values_.count(name) != 0; }
    std::string text(std::string const& name, std::string const& fallback) const {
        auto it = values_.find(name);
        used_.push_back(name);
        return it == values_.end() ? fallback : it->second;
    }
    double number(std::string const& name, double fallback, double low, double high) const {
        auto it = values_.find(name);
        used_.push_back(name);
        if (it == values_.end()) return fallback;
        char* end = nullptr;
        double const value = std::strtod(it->second.c_str(), &end);
        if (end == it->second.c_str() || *end != '\0' || value < low || value > high) {
            usage(name + " must be a number in [" + std::to_string(low) + ", " + std::to_string(high) + "]");
        }
        return value;
    }
    void check_all_known(std::vector<std::string> const& flags) const {
        for (auto const& [name, value] : values_) {
            if (std::find(used_.begin(), used_.end(), name) == used_.end() &&
                std::find(flags.begin(), flags.end(), name) == flags.end()) {
                usage("unknown option " + name);
            }
        }
    }

private:
    std::map<std::string, std::string> values_;
    mutable std::vector<std::string> used_;
};

// ---- the server process -------------------------------------------------------------------

/// A `serve` child: started with fork/exec, stopped by its pid.
class server_process {
public:
    server_process() = default;
    server_process(server_process const&) = delete;
    server_process& operator=(server_process const&) = delete;
    ~server_process() { stop(); }

    /// Starts `exe serve ...`; waits (at most timeout_s) for its `listening <port>`.
    bool start(std::string const& exe, std::vector<std::string> const& args, double timeout_s,
               std::string& error) {
        int pipe_fds[2];
        if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
            error = std::string("pipe: ") + std::strerror(errno);
            return false;
        }
        std::vector<std::string> argv{exe, "serve"};
        argv.insert(argv.end(), args.begin(), args.end());
        pid_ = spawn_child(std::move(argv), pipe_fds[1], error);
        if (pid_ < 0) {
            ::close(pipe_fds[0]);
            ::close(pipe_fds[1]);
            return false;
        }
        ::close(pipe_fds[1]);
        out_ = pipe_fds[0];
        std::string line;
        auto const deadline = mono_ns() + seconds_to_ns(timeout_s);
        while (line.find('\n') == std::string::npos) {
            auto const left_ms = (deadline - mono_ns()) / 1'000'000;
            if (left_ms <= 0) {
                error = "the server did not announce its port in time";
                stop();
                return false;
            }
            pollfd p{out_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left_ms)) <= 0) continue;
            char chunk[256];
            auto const n = ::read(out_, chunk, sizeof chunk);
            if (n <= 0) {
                error = "the server exited before listening";
                stop();
                return false;
            }
            line.append(chunk, static_cast<std::size_t>(n));
        }
        if (std::sscanf(line.c_str(), "listening %u", &port_) != 1 || port_ == 0) {
            error = "unexpected announcement: " + line;
            stop();
            return false;
        }
        return true;
    }

    /// Ends the server (terminate_child) and closes its output.
    void stop() {
        terminate_child(pid_);
        pid_ = -1;
        if (out_ >= 0) {
            ::close(out_);
            out_ = -1;
        }
    }

    pid_t pid() const noexcept { return pid_; }
    unsigned port() const noexcept { return port_; }

private:
    pid_t pid_ = -1;
    int out_ = -1;
    unsigned port_ = 0;
};

std::string own_executable() {
    char path[4096];
    auto const n = ::readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0) return {};
    path[n] = '\0';
    return path;
}

// ---- the plan ---------------------------------------------------------------------------------

/// One scenario of the plan, for each of its servers.
struct planned {
    std::string label;
    std::string title;
    scenario base;
    std::vector<std::string> impls;
    long ping_interval_ms = 0;  ///< wsmanager's keepalive for this scenario (0: default)
    /// A cluster scenario: its impls are wsmanager (alone, no backplane) and cluster_Nnodes;
    /// chosen by label or by `--only cluster`, never by kind (so `--only fanout` is as before).
    bool cluster = false;
    long heartbeat_ms = 0;  ///< the cluster nodes' heartbeat (0: the default, 1 s)
    /// fanout: frames per run (count = frames / conns), unicast: messages; by server speed.
    std::int64_t fast_total = 0, slow_total = 0;

    scenario for_impl(std::string const& impl) const {
        scenario s = base;
        bool const slow = impl.rfind("websocketpp", 0) == 0;
        auto const total = slow ? slow_total : fast_total;
        if (s.kind == "fanout" && total > 0) s.count = std::max<std::int64_t>(1, total / s.conns);
        if (s.kind == "unicast" && total > 0) s.count = total;
        return s;
    }
};

std::vector<std::string> const all_fanout_impls{"wsmanager", "wsmanager_t2", "websocketpp",
                                                "websocketpp_prepared", "asio"};

/// cluster_1node, cluster_2nodes, ...: how many nodes; 0 for any other server (no backplane).
int nodes_of(std::string const& impl) {
    if (impl.rfind("cluster_", 0) != 0) return 0;
    return std::atoi(impl.c_str() + 8);
}

std::vector<planned> make_plan(std::string const& scale) {
    bool const quick = scale == "quick";
    bool const smoke = scale == "smoke";
    std::vector<planned> plan;
    auto fanout = [&](int conns, std::int64_t fast, std::int64_t slow) {
        planned p;
        p.label = "fanout_" + std::to_string(conns);
        p.title = "fan-out: broadcast_message to " + std::to_string(conns) +
                  " clients, 200-byte messages, the host awaiting each";
        p.base.kind = "fanout";
        p.base.conns = conns;
        p.base.timeout_s = smoke ? 30 : 60;
        p.impls = all_fanout_impls;
        p.fast_total = fast;
        p.slow_total = slow;
        plan.push_back(p);
    };
    if (smoke) {
        fanout(50, 50 * 200, 50 * 200);
    } else {
        fanout(1000, quick ? 1'000'000 : 3'000'000, quick ? 300'000 : 1'000'000);
        fanout(5000, quick ? 1'000'000 : 3'000'000, quick ? 300'000 : 1'000'000);
    }
    {
        planned p;
        int const conns = smoke ? 50 : 1000;
        p.label = "unicast_" + std::to_string(conns);
        p.title = "send_to_user: one message at a time to a random one of " + std::to_string(conns) +
                  " users (one connection each)";
        p.base.kind = "unicast";
        p.base.conns = conns;
        p.base.timeout_s = smoke ? 30 : 60;
        p.impls = {"wsmanager", "websocketpp", "asio"};
        p.fast_total = smoke ? 2000 : (quick ? 100'000 : 300'000);
        p.slow_total = smoke ? 2000 : (quick ? 50'000 : 150'000);
        plan.push_back(p);
    }
    {
        planned p;
        int const conns = smoke ? 50 : 1000;
        p.label = "confirm_" + std::to_string(conns);
        p.title = "notify_user round trips: " + std::to_string(conns) + " in flight (one per user), each answered at once";
        p.base.kind = "confirm";
        p.base.conns = conns;
        p.base.inflight = conns;
        p.base.count = smoke ? 50 : (quick ? 5'000 : 20'000);
        p.base.timeout_s = smoke ? 30 : 60;
        p.impls = {"wsmanager"};
        plan.push_back(p);
    }
    {
        planned p;
        p.label = "confirm_1";
        p.title = "notify_user round trips: one at a time, one user";
        p.base.kind = "confirm";
        p.base.conns = 1;
        p.base.inflight = 1;
        p.base.count = smoke ? 10 : (quick ? 300 : 1'000);
        p.base.timeout_s = smoke ? 30 : 60;
        p.impls = {"wsmanager"};
        plan.push_back(p);
    }
    {
        planned p;
        int const conns = smoke ? 200 : (quick ? 5000 : 15000);
        p.label = "idle_" + std::to_string(conns);
        p.title = std::to_string(conns) + " idle connections, keepalive ping every " +
                  std::string(smoke ? "200 ms" : "1 s") + " (wsmanager)";
        p.base.kind = "idle";
        p.base.conns = conns;
        p.base.window_s = smoke ? 1 : (quick ? 3 : 5);
        p.impls = {"wsmanager", "asio"};
        p.ping_interval_ms = smoke ? 200 : 1000;
        plan.push_back(p);
    }
    {
        planned p;
        p.label = "lone";
        p.base.kind = "lone";
        p.base.conns = 1;
        p.base.count = smoke ? 20 : (quick ? 200 : 500);
        p.base.interval_us = 10'000;
        p.base.timeout_s = static_cast<double>(p.base.count) * p.base.interval_us / 1e6 + 10;
        p.title = "lone messages: one client, one broadcast every 10 ms, " + std::to_string(p.base.count) + " times";
        p.impls = {"wsmanager", "websocketpp", "asio"};
        plan.push_back(p);
    }
    {
        planned p;
        p.label = "stream_1";
        p.base.kind = "lone";
        p.base.conns = 1;
        p.base.count = smoke ? 50 : (quick ? 2000 : 5000);
        p.base.interval_us = 0;
        p.base.timeout_s = 30;
        p.title = "one client, the host sending back to back (awaiting each), " + std::to_string(p.base.count) +
                  " messages: what the cork holds under a steady stream";
        p.impls = {"wsmanager", "websocketpp", "asio"};
        plan.push_back(p);
    }
    {
        planned p;
        p.label = "trickle_1";
        p.base.kind = "lone";
        p.base.conns = 1;
        p.base.count = smoke ? 50 : (quick ? 2000 : 5000);
        p.base.interval_us = 50;
        p.base.timeout_s = 30;
        p.title = "one client, one broadcast every 50 us (a timer wait between messages), " +
                  std::to_string(p.base.count) + " messages";
        p.impls = {"wsmanager", "websocketpp", "asio"};
        plan.push_back(p);
    }
    // The cluster: the same host calls against one node alone and against 2 or 3 nodes in
    // processes of their own behind a private Redis. Every frame is counted (0 lost); the
    // clients' frames are split into those on the host's node (lat_first) and the rest
    // (lat_other: they crossed Redis). bench_ready first: the nodes see each other's
    // connections by their heartbeats.
    {
        planned p;
        int const conns = smoke ? 30 : 1000;
        p.label = "cluster_fanout_" + std::to_string(conns);
        p.title = "cluster fan-out: broadcast_message on node A to " + std::to_string(conns) +
                  " clients spread over the nodes, 200-byte messages, the host awaiting each";
        p.base.kind = "fanout";
        p.base.conns = conns;
        p.base.await_ready = true;
        p.base.timeout_s = smoke ? 30 : 120;
        p.impls = {"wsmanager", "cluster_1node", "cluster_2nodes", "cluster_3nodes"};
        p.fast_total = smoke ? 30 * 50 : (quick ? 1'000'000 : 3'000'000);
        p.cluster = true;
        p.heartbeat_ms = smoke ? 100 : 0;
        plan.push_back(p);
    }
    auto cluster_confirm = [&](int inflight, std::int64_t count) {
        planned p;
        p.label = "cluster_confirm_" + std::to_string(inflight);
        p.title = "cluster notify_user round trips, " + std::to_string(inflight) +
                  (inflight == 1 ? " at a time" : " in flight (one per user)") +
                  ": asked on node A, answered by the user's client on the last node";
        p.base.kind = "confirm";
        p.base.conns = inflight;
        p.base.inflight = inflight;
        p.base.count = count;
        p.base.control_apart = true;
        p.base.await_ready = true;
        p.base.timeout_s = smoke ? 30 : 120;
        p.impls = {"wsmanager", "cluster_1node", "cluster_2nodes"};
        p.cluster = true;
        p.heartbeat_ms = smoke ? 100 : 0;
        plan.push_back(p);
    };
    // One at a time is bounded by a 40 ms Nagle stall per round trip (docs/performance.md):
    // few round trips, or the run takes minutes.
    cluster_confirm(1, smoke ? 10 : (quick ? 200 : 500));
    cluster_confirm(smoke ? 10 : 100, smoke ? 50 : (quick ? 5'000 : 20'000));
    return plan;
}

// ---- the report -------------------------------------------------------------------------------

std::string human(double value) {
    char text[32];
    if (value < 0) return "-";
    if (value >= 1e6) {
        std::snprintf(text, sizeof text, "%.2fM", value / 1e6);
    } else if (value >= 1e4) {
        std::snprintf(text, sizeof text, "%.0fk", value / 1e3);
    } else if (value >= 100) {
        std::snprintf(text, sizeof text, "%.0f", value);
    } else {
        std::snprintf(text, sizeof text, "%.1f", value);
    }
    return text;
}

std::string micros(double value) {
    char text[32];
    if (value < 0) return "-";
    if (value >= 10'000) {
        std::snprintf(text, sizeof text, "%.1f ms", value / 1000);
    } else if (value >= 1000) {
        std::snprintf(text, sizeof text, "%.2f ms", value / 1000);
    } else {
        std::snprintf(text, sizeof text, "%.0f us", value);
    }
    return text;
}

struct column {
    std::string title;
    std::string key;
    std::function<std::string(double)> show;
};

/// The headline number of a kind, and whether higher is better.
std::pair<std::string, bool> headline(std::string const& kind) {
    if (kind == "fanout" || kind == "unicast") return {"frames_per_s", true};
    if (kind == "confirm") return {"confirmations_per_s", true};
    if (kind == "idle") return {"rss_per_conn_bytes", false};
    return {"lat_p50_us", false};  // lone
}

std::vector<column> columns_of(std::string const& kind) {
    auto pct = [](double v) { return v < 0 ? std::string("-") : std::to_string(static_cast<int>(v + 0.5)) + "%"; };
    auto count = [](double v) { return v < 0 ? std::string("-") : std::to_string(static_cast<long long>(v)); };
    if (kind == "fanout" || kind == "unicast") {
        return {{"frames/s", "frames_per_s", human}, {"p50", "lat_p50_us", micros},
                {"p99", "lat_p99_us", micros},      {"lost", "lost", count},
                {"srv cpu", "server_cpu_pct", pct}, {"cli cpu", "client_cpu_pct", pct}};
    }
    if (kind == "confirm") {
        return {{"confirm/s", "confirmations_per_s", human}, {"p50", "rt_p50_us", micros},
                {"p99", "rt_p99_us", micros},              {"max", "rt_max_us", micros},
                {"resolved", "resolved", count},           {"srv cpu", "server_cpu_pct", pct},
                {"cli cpu", "client_cpu_pct", pct}};
    }
    if (kind == "idle") {
        return {{"RSS/conn", "rss_per_conn_bytes", [](double v) { return v < 0 ? std::string("-") : human(v) + " B"; }},
                {"idle srv cpu", "server_idle_cpu_pct", pct}, {"cli cpu", "client_cpu_pct", pct},
                {"pings/s", "keepalive_pings_per_s", human}, {"alive", "alive", count},
                {"connect/s", "connect_rate", human}};
    }
    return {{"p50", "lat_p50_us", micros}, {"p90", "lat_p90_us", micros}, {"p99", "lat_p99_us", micros},
            {"max", "lat_max_us", micros}, {"frames/s", "frames_per_s", human}, {"lost", "lost", count}};
}

double mean_of(std::vector<measurement const*> const& runs, std::string const& key) {
    double sum = 0;
    int n = 0;
    for (auto const* m : runs) {
        if (m->has(key) && m->get(key) >= 0) {
            sum += m->get(key);
            ++n;
        }
    }
    return n == 0 ? -1 : sum / n;
}

void print_report(std::vector<planned> const& plan, std::vector<measurement> const& results, int reps) {
    std::printf("\nwsmanager_bench: %d repetition%s, interleaved across servers; values are means of the runs "
                "(each run in brackets for the headline); ratios only within this run.\n",
                reps, reps == 1 ? "" : "s");
    bool all_ok = true;
    for (auto const& p : plan) {
        std::map<std::string, std::vector<measurement const*>> by_impl;
        for (auto const& m : results) {
            if (m.label == p.label) by_impl[m.impl].push_back(&m);
        }
        if (by_impl.empty()) continue;
        std::printf("\n## %s  [%s]\n", p.title.c_str(), p.label.c_str());
        auto columns = columns_of(p.base.kind);
        if (p.cluster) {  // the frames that crossed Redis, and Redis' own CPU
            auto pct = [](double v) { return v < 0 ? std::string("-") : std::to_string(static_cast<int>(v + 0.5)) + "%"; };
            if (p.base.kind == "fanout") {
                columns.push_back({"cross p50", "lat_other_p50_us", micros});
                columns.push_back({"cross p99", "lat_other_p99_us", micros});
            }
            columns.push_back({"redis cpu", "redis_cpu_pct", pct});
        }
        std::printf("%-22s", "server");
        for (auto const& c : columns) std::printf(" %12s", c.title.c_str());
        std::printf("  %-4s %s\n", "ok", "runs");
        auto const [key, higher_better] = headline(p.base.kind);
        std::map<std::string, double> headline_of;
        for (auto const& impl : p.impls) {
            auto it = by_impl.find(impl);
            if (it == by_impl.end()) continue;
            std::printf("%-22s", impl.c_str());
            for (auto const& c : columns) std::printf(" %12s", c.show(mean_of(it->second, c.key)).c_str());
            bool ok = true;
            std::string runs;
            for (auto const* m : it->second) {
                ok = ok && m->ok;
                runs += (runs.empty() ? "" : " / ") + columns.front().show(m->get(columns.front().key));
            }
            all_ok = all_ok && ok;
            std::printf("  %-4s %s\n", ok ? "yes" : "NO", runs.c_str());
            headline_of[impl] = mean_of(it->second, key);
        }
        // wsmanager against every other server of this scenario, from the same run.
        auto ratio = [&](std::string const& a, std::string const& b) {
            if (!headline_of.count(a) || !headline_of.count(b) || headline_of[a] <= 0 || headline_of[b] <= 0) return;
            std::printf("  %s / %s: %.2fx", a.c_str(), b.c_str(), headline_of[a] / headline_of[b]);
        };
        if (headline_of.size() > 1) {
            std::printf("ratios (%s, %s is better):", key.c_str(), higher_better ? "higher" : "lower");
            for (auto const& impl : p.impls) {
                if (impl != "wsmanager") ratio("wsmanager", impl);
            }
            if (headline_of.count("wsmanager_t2")) ratio("wsmanager_t2", "wsmanager");
            std::printf("\n");
        }
        for (auto const& [impl, runs] : by_impl) {
            for (auto const* m : runs) {
                if (!m->ok) std::printf("  ! %s rep %d: %s\n", impl.c_str(), m->rep, m->note.c_str());
            }
        }
    }
    std::printf("\n%s\n", all_ok ? "every run delivered every frame and resolved every confirmation, without errors"
                                  : "SOME RUNS FAILED (see the ! lines)");
}

int run_plan(arguments const& args) {
    std::string const scale = args.flag("--smoke") ? "smoke" : (args.flag("--quick") ? "quick" : "full");
    int const reps = static_cast<int>(args.number("--reps", scale == "full" ? 2 : 1, 1, 20));
    auto const only = split(args.text("--only", ""));
    auto const impls = split(args.text("--impls", ""));
    auto const json_path = args.text("--json", "");
    load_settings settings;
    settings.threads = static_cast<int>(args.number("--client-threads", 1, 1, 16));
    args.check_all_known({"--smoke", "--quick", "--verbose", "--quickack"});
    settings.verbose = args.flag("--verbose");
    settings.quick_ack = args.flag("--quickack");

    auto const exe = own_executable();
    if (exe.empty()) {
        std::fprintf(stderr, "wsmanager_bench: cannot find my own executable\n");
        return 2;
    }
    raise_file_limit();
    std::signal(SIGPIPE, SIG_IGN);
    std::FILE* json_file = nullptr;
    if (!json_path.empty()) {
        json_file = std::fopen(json_path.c_str(), "w");
        if (json_file == nullptr) {
            std::fprintf(stderr, "wsmanager_bench: cannot write %s\n", json_path.c_str());
            return 2;
        }
    }

    auto plan = make_plan(scale);
    if (!only.empty()) {
        std::erase_if(plan, [&](planned const& p) {
            return std::none_of(only.begin(), only.end(), [&](std::string const& o) {
                return p.label == o || (p.cluster ? o == "cluster" : p.base.kind == o);
            });
        });
    }
    if (!impls.empty()) {
        for (auto& p : plan) {
            std::erase_if(p.impls, [&](std::string const& i) {
                return std::find(impls.begin(), impls.end(), i) == impls.end();
            });
        }
    }

    // The cluster's nodes need the backplane built and a redis-server to start; without
    // either, the cluster_Nnodes runs are left out (said on stderr), never failed.
    auto const redis_server = find_redis_server();
    std::string const no_cluster = !cluster_built() ? "built without wsmanager::cluster (hiredis)"
                                   : redis_server.empty() ? "no redis-server on PATH" : "";
    if (!no_cluster.empty()) {
        for (auto& p : plan) {
            if (std::erase_if(p.impls, [](std::string const& i) { return nodes_of(i) > 0; }) > 0) {
                std::fprintf(stderr, "wsmanager_bench: %s: %s, so only wsmanager alone\n", p.label.c_str(),
                             no_cluster.c_str());
            }
        }
    }

    std::vector<measurement> results;
    auto const started = mono_ns();
    for (auto const& p : plan) {
        for (int rep = 1; rep <= reps; ++rep) {
            for (auto const& impl : p.impls) {
                auto const what = p.for_impl(impl);
                int const nodes = nodes_of(impl);
                bool const wsm = impl.rfind("wsmanager", 0) == 0 || nodes > 0;
                std::vector<std::string> server_args{"--impl", wsm ? "wsmanager" : impl};
                server_args.insert(server_args.end(), {"--threads", impl == "wsmanager_t2" ? "2" : "1"});
                if (wsm && p.ping_interval_ms > 0) {
                    server_args.insert(server_args.end(), {"--ping-interval-ms", std::to_string(p.ping_interval_ms)});
                }
                std::fprintf(stderr, "[%6.1f s] %s rep %d/%d: %s\n",
                             static_cast<double>(mono_ns() - started) / 1e9, p.label.c_str(), rep, reps,
                             impl.c_str());
                measurement m;
                // One server, or a fresh Redis and `nodes` servers: node1 (the host's, and
                // the control connection's) first.
                redis_process redis;
                std::vector<std::unique_ptr<server_process>> servers;
                std::string error;
                bool started_all = nodes == 0 || redis.start(redis_server, 10, error);
                if (!started_all) error = "redis-server did not start: " + error;
                for (int n = 0; started_all && n < std::max(1, nodes); ++n) {
                    auto args_n = server_args;
                    if (nodes > 0) {
                        args_n.insert(args_n.end(), {"--redis-url", redis.url(), "--node-id",
                                                     "node" + std::to_string(n + 1)});
                        if (p.heartbeat_ms > 0) {
                            args_n.insert(args_n.end(), {"--heartbeat-ms", std::to_string(p.heartbeat_ms)});
                        }
                    }
                    servers.push_back(std::make_unique<server_process>());
                    if (!servers.back()->start(exe, args_n, 15, error)) {
                        started_all = false;
                        error = "server did not start: " + error;
                    }
                }
                if (started_all) {
                    load_settings s = settings;
                    for (auto const& server : servers) s.ports.push_back(server->port());
                    s.server_pid = servers.front()->pid();
                    for (std::size_t n = 1; n < servers.size(); ++n) s.peer_pids.push_back(servers[n]->pid());
                    s.redis_pid = nodes > 0 ? redis.pid() : 0;
                    m = run_load(s, what);
                } else {
                    m.kind = what.kind;
                    m.note = error;
                }
                for (auto& server : servers) server->stop();
                redis.stop();
                m.label = p.label;
                m.impl = impl;
                m.rep = rep;
                auto const line = m.json();
                std::printf("%s\n", line.c_str());
                std::fflush(stdout);
                if (json_file != nullptr) {
                    std::fprintf(json_file, "%s\n", line.c_str());
                    std::fflush(json_file);
                }
                auto const cols = columns_of(m.kind);
                std::fprintf(stderr, "           %s %s%s%s\n", cols.front().title.c_str(),
                             cols.front().show(m.get(cols.front().key)).c_str(), m.ok ? "" : "  FAILED: ",
                             m.ok ? "" : m.note.c_str());
                results.push_back(std::move(m));
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        }
    }
    if (json_file != nullptr) std::fclose(json_file);
    print_report(plan, results, reps);
    std::printf("total %.0f s\n", static_cast<double>(mono_ns() - started) / 1e9);
    bool const ok = std::all_of(results.begin(), results.end(), [](measurement const& m) { return m.ok; });
    return ok && !results.empty() ? 0 : 1;
}

int serve(arguments const& args) {
    auto const impl = args.text("--impl", "wsmanager");
    server_settings settings;
    settings.threads = static_cast<unsigned>(args.number("--threads", 1, 1, 64));
    settings.ping_interval_ms = static_cast<long>(args.number("--ping-interval-ms", 0, 0, 3'600'000));
    settings.max_lifetime_s = args.number("--max-lifetime-s", 900, 1, 86'400);
    settings.redis_url = args.text("--redis-url", "");
    settings.node_id = args.text("--node-id", "");
    settings.cluster_prefix = args.text("--cluster-prefix", settings.cluster_prefix);
    settings.heartbeat_ms = static_cast<long>(args.number("--heartbeat-ms", 0, 0, 60'000));
    args.check_all_known({});
    if (!settings.redis_url.empty() && impl != "wsmanager") usage("--redis-url is for --impl wsmanager");
    if (impl == "wsmanager") return serve_wsmanager(settings);
    if (impl == "asio") return serve_asio(settings);
    if (impl == "websocketpp") return serve_websocketpp(settings, false);
    if (impl == "websocketpp_prepared") return serve_websocketpp(settings, true);
    usage("unknown --impl " + impl);
}

int load(std::string const& kind, arguments const& args) {
    if (kind != "fanout" && kind != "unicast" && kind != "lone" && kind != "confirm" && kind != "idle") {
        usage("unknown scenario " + kind);
    }
    load_settings settings;
    settings.host = args.text("--host", "127.0.0.1");
    for (auto const& port : split(args.text("--port", ""))) {
        char* end = nullptr;
        auto const value = std::strtoul(port.c_str(), &end, 10);
        if (*end != '\0' || value == 0 || value > 65535) usage("--port takes ports 1-65535, comma-separated");
        settings.ports.push_back(static_cast<unsigned>(value));
    }
    settings.server_pid = static_cast<long>(args.number("--server-pid", 0, 0, 1e9));
    settings.threads = static_cast<int>(args.number("--client-threads", 1, 1, 16));
    settings.source_ips = split(args.text("--src-ips", ""));
    scenario what;
    what.kind = kind;
    what.conns = static_cast<int>(args.number("--conns", kind == "lone" ? 1 : 100, 1, 60'000));
    what.count = static_cast<std::int64_t>(args.number("--count", 1000, 0, static_cast<double>(max_count)));
    what.size = static_cast<int>(args.number("--size", 200, 0, static_cast<double>(max_size)));
    what.inflight = static_cast<int>(args.number("--inflight", 1, 1, 100'000));
    what.interval_us = static_cast<int>(args.number("--interval-us", 10'000, 0, 10'000'000));
    what.window_s = args.number("--window-s", 5, 0, 600);
    what.timeout_s = args.number("--timeout-s", 60, 1, 600);
    what.action = args.text("--action", "");
    what.settle_ms = static_cast<int>(args.number("--settle-ms", -1, -1, 60'000));
    args.check_all_known({"--verbose", "--quickack"});
    settings.verbose = args.flag("--verbose");
    settings.quick_ack = args.flag("--quickack");
    if (settings.ports.empty()) usage("--port is required");
    if (!is_loopback(settings.host)) usage("--host must be in 127.0.0.0/8");
    for (auto const& ip : settings.source_ips) {
        if (!is_loopback(ip)) usage("--src-ips must be in 127.0.0.0/8");
    }
    std::signal(SIGPIPE, SIG_IGN);
    auto m = run_load(settings, what);
    m.label = kind;
    m.impl = "external";
    std::printf("%s\n", m.json().c_str());
    return m.ok ? 0 : 1;
}

}  // namespace
}  // namespace wsbench_local

int main(int argc, char** argv) {
    using namespace wsbench_local;
    if (argc < 2) usage();
    std::string const command = argv[1];
    if (command == "run") return run_plan(arguments(argc, argv, 2));
    if (command == "serve") return serve(arguments(argc, argv, 2));
    if (command == "load") {
        if (argc < 3) usage("load needs a scenario");
        return load(argv[2], arguments(argc, argv, 3));
    }
    usage(command == "-h" || command == "--help" || command == "help" ? "" : "unknown command " + command);
}
