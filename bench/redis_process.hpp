// SPDX-License-Identifier: BSL-1.0
#pragma once

// The cluster scenarios' Redis: a redis-server that `run` starts itself, on a free loopback
// port, with no persistence (--save "" --appendonly no) and a temporary directory of its own
// for its working files and log; stopped by its pid (SIGTERM, then SIGKILL), and killed with
// the benchmark (PR_SET_PDEATHSIG). Every wait is bounded.

#include <string>

#include <sys/types.h>

namespace wsbench_local {

/// redis-server on PATH, or Debian's /usr/bin/redis-server; "" when there is none.
std::string find_redis_server();

class redis_process {
public:
    redis_process() = default;
    redis_process(redis_process const&) = delete;
    redis_process& operator=(redis_process const&) = delete;
    ~redis_process() { stop(); }

    /// Starts `executable` and waits (at most timeout_s) until it answers PING.
    bool start(std::string const& executable, double timeout_s, std::string& error);
    /// SIGTERM, up to 3 s, then SIGKILL; reaped; its directory removed.
    void stop();

    pid_t pid() const noexcept { return pid_; }
    unsigned port() const noexcept { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

private:
    bool try_start(std::string const& executable, double timeout_s, std::string& error);
    void end_child();
    void remove_dir();

    pid_t pid_ = -1;
    unsigned port_ = 0;
    std::string dir_;
};

}  // namespace wsbench_local
