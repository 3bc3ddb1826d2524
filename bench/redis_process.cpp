// SPDX-License-Identifier: BSL-1.0
//
// redis_process (redis_process.hpp): fork/exec of redis-server, PING until it answers.

#include "redis_process.hpp"

#include "bench_common.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

namespace wsbench_local {
namespace {

/// A loopback port nobody listens on right now (another process may take it before Redis
/// does: start() then tries another).
unsigned free_loopback_port() {
    int const fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    unsigned port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
        port = ntohs(addr.sin_port);
    }
    ::close(fd);
    return port;
}

/// True when 127.0.0.1:port answers PING with +PONG within about a second.
bool answers_ping(unsigned port) {
    int const fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        static constexpr char ping[] = "PING\r\n";
        if (::send(fd, ping, sizeof ping - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof ping - 1)) {
            char reply[16] = {};
            auto const n = ::recv(fd, reply, sizeof reply - 1, 0);
            ok = n >= 5 && std::strncmp(reply, "+PONG", 5) == 0;
        }
    }
    ::close(fd);
    return ok;
}

/// The last lines of Redis' log, for an error message.
std::string log_tail(std::string const& path) {
    std::ifstream file(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(file, line);) {
        lines.push_back(line);
        if (lines.size() > 3) lines.erase(lines.begin());
    }
    std::string text;
    for (auto const& line : lines) text += (text.empty() ? "" : " | ") + line;
    return text;
}

}  // namespace

std::string find_redis_server() {
    if (char const* path = std::getenv("PATH")) {
        std::istringstream dirs(path);
        for (std::string dir; std::getline(dirs, dir, ':');) {
            auto const candidate = (dir.empty() ? std::string(".") : dir) + "/redis-server";
            if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        }
    }
    return ::access("/usr/bin/redis-server", X_OK) == 0 ? "/usr/bin/redis-server" : "";
}

bool redis_process::start(std::string const& executable, double timeout_s, std::string& error) {
    stop();
    char dir[] = "/tmp/wsmanager_bench_redis.XXXXXX";
    if (::mkdtemp(dir) == nullptr) {
        error = std::string("mkdtemp: ") + std::strerror(errno);
        return false;
    }
    dir_ = dir;
    for (int attempt = 0; attempt < 5; ++attempt) {  // a port taken meanwhile: another one
        if (try_start(executable, timeout_s, error)) return true;
    }
    remove_dir();
    return false;
}

bool redis_process::try_start(std::string const& executable, double timeout_s, std::string& error) {
    port_ = free_loopback_port();
    if (port_ == 0) {
        error = "no free loopback port";
        return false;
    }
    auto const log = dir_ + "/redis.log";
    std::vector<std::string> args{executable, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--daemonize", "no",
                                  "--dir", dir_, "--logfile", log};
    pid_ = spawn_child(std::move(args), -1, error);
    if (pid_ < 0) return false;
    auto const deadline = mono_ns() + seconds_to_ns(timeout_s);
    while (mono_ns() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: the port was taken, say
            pid_ = -1;
            error = "redis-server exited at start: " + log_tail(log);
            return false;
        }
        if (answers_ping(port_)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error = "redis-server did not answer PING in time: " + log_tail(log);
    end_child();
    return false;
}

void redis_process::stop() {
    end_child();
    remove_dir();
}

void redis_process::end_child() {
    terminate_child(pid_);
    pid_ = -1;
}

void redis_process::remove_dir() {
    if (dir_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    dir_.clear();
}

}  // namespace wsbench_local
