// SPDX-License-Identifier: BSL-1.0
#pragma once

// redis_server: a real redis-server started by a test as its own child process, on a free
// loopback port, with no persistence; stopped (SIGTERM, then SIGKILL) by the test, or killed
// with SIGKILL on purpose. Only the pid it started is ever signalled. The child also gets
// SIGKILL if the test process dies first (PR_SET_PDEATHSIG), so a crashed test leaves no
// server behind. Every wait is bounded.

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef WSMANAGER_REDIS_SERVER
#define WSMANAGER_REDIS_SERVER "redis-server"
#endif

namespace wsmanager_cluster_test {

/// A loopback port nobody listens on right now: bound to port 0, read back, closed.
inline int free_loopback_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        throw std::runtime_error("free_loopback_port: socket failed");
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("free_loopback_port: bind failed");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

/// True when 127.0.0.1:port answers "PING" with "+PONG" within about a second.
inline bool answers_ping(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        char const ping[] = "PING\r\n";
        if (::send(fd, ping, sizeof(ping) - 1, MSG_NOSIGNAL) == sizeof(ping) - 1) {
            char reply[16] = {};
            ssize_t const n = ::recv(fd, reply, sizeof(reply) - 1, 0);
            ok = n >= 5 && std::strncmp(reply, "+PONG", 5) == 0;
        }
    }
    ::close(fd);
    return ok;
}

class redis_server {
public:
    /// Starts a server on a free port (retrying with another port if it is taken meanwhile).
    redis_server() {
        for (int attempt = 0; attempt < 5; ++attempt) {
            port_ = free_loopback_port();
            if (try_start()) {
                return;
            }
        }
        throw std::runtime_error("redis_server: could not start " WSMANAGER_REDIS_SERVER);
    }
    ~redis_server() { stop(); }
    redis_server(redis_server const&) = delete;
    redis_server& operator=(redis_server const&) = delete;

    int port() const noexcept { return port_; }
    bool running() const noexcept { return pid_ > 0; }

    /// Starts the server again on the same port (after stop() or kill()).
    void restart() {
        // The port was ours a moment ago; a few tries cover a slow release.
        for (int attempt = 0; attempt < 5; ++attempt) {
            if (try_start()) {
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        throw std::runtime_error("redis_server: could not restart on port " +
                                 std::to_string(port_));
    }

    /// SIGKILL: the server vanishes without closing anything itself.
    void kill() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            reap(std::chrono::seconds(10));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 5 s.
    void stop() {
        if (pid_ <= 0) {
            return;
        }
        ::kill(pid_, SIGTERM);
        if (!reap(std::chrono::seconds(5))) {
            kill();
        }
    }

private:
    // Forks and execs redis-server, then waits (10 s at most) until it answers PING.
    bool try_start() {
        std::string const port_text = std::to_string(port_);
        std::vector<std::string> args = {
            WSMANAGER_REDIS_SERVER, "--port", port_text,     "--bind", "127.0.0.1", "--save", "",
            "--appendonly",         "no",     "--daemonize", "no"};
        std::vector<char*> argv;
        for (std::string& arg : args) {
            argv.push_back(arg.data());
        }
        argv.push_back(nullptr);
        pid_t const parent = ::getpid();
        pid_t const pid = ::fork();
        if (pid < 0) {
            return false;
        }
        if (pid == 0) {
            // The child: async-signal-safe calls only, then exec.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(127);
            }
            int const null_fd = ::open("/dev/null", O_RDWR);
            if (null_fd >= 0) {
                ::dup2(null_fd, STDIN_FILENO);
                ::dup2(null_fd, STDOUT_FILENO);
                ::dup2(null_fd, STDERR_FILENO);
            }
            ::execvp(argv[0], argv.data());
            ::_exit(127);
        }
        pid_ = pid;
        auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;  // exited: e.g. the port was taken
                return false;
            }
            if (answers_ping(port_)) {
                return true;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        kill();
        return false;
    }

    // Waits for our child to exit; true if it did within `limit`.
    bool reap(std::chrono::milliseconds limit) {
        auto const deadline = std::chrono::steady_clock::now() + limit;
        while (true) {
            int status = 0;
            pid_t const r = ::waitpid(pid_, &status, WNOHANG);
            if (r == pid_ || (r < 0 && errno == ECHILD)) {
                pid_ = -1;
                return true;
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                return false;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    int port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace wsmanager_cluster_test
