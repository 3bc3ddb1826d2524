// SPDX-License-Identifier: BSL-1.0
#pragma once

// What the benchmark's load generator and its servers share: the clock, /proc readings, starting and
// ending a child process, a latency histogram, a JSON line writer, the bench protocol's messages,
// server-side framing and the WebSocket handshake's accept key. No websocketpp, no wsmanager.
//
// The bench protocol (every frame is JSON text; the servers in server_*.cpp implement it):
//   client -> server                                  server -> clients
//   {"action":"ping","timestamp":T}                   {"type":"pong","timestamp":T,...}
//   {"action":"bench_fanout","count":K,"size":S}      K x broadcast {"type":"bench","seq":i,
//                                                     "ts":<CLOCK_MONOTONIC ns>,"pad":"x.."},
//                                                     then broadcast {"type":"bench_done"}
//   {"action":"bench_unicast","count":K,"size":S,     K x one message to user u<random < N>,
//    "users":N}                                       then broadcast bench_done
//   {"action":"bench_lone","count":K,"size":S,        one broadcast every I µs, K times (I = 0:
//    "interval_us":I}                                 back to back, each awaited), then bench_done
//   {"action":"bench_confirm","count":C,              wsmanager only: C notify_user calls, F in
//    "inflight":F,"users":N}                          flight, to users u0..u(N-1); the client
//                                                     answers each task_step_result with a
//                                                     confirm; then a bench_confirm_result
//                                                     frame to the control connection
// Clients connect to /?user_id=u<index>. Every server also takes wsbench's
// {"action":"bench","count":K,"size":S} as bench_fanout, so wsbench's wsload can measure it too.

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <openssl/sha.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace wsbench_local {

/// CLOCK_MONOTONIC in nanoseconds: system-wide, so a stamp taken in the server process can be
/// compared with the load generator's clock.
inline std::int64_t mono_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline std::int64_t seconds_to_ns(double s) { return static_cast<std::int64_t>(s * 1e9); }

/// Raises the soft file limit to the hard one (20,000 on the bench machine).
inline void raise_file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/// Starts `args[0]` with `args` (no shell), dying with this process (PR_SET_PDEATHSIG). Its
/// standard output goes to `stdout_fd`, or, with -1, its input and output to /dev/null. The
/// child's pid, or -1 with `error` set.
inline pid_t spawn_child(std::vector<std::string> args, int stdout_fd, std::string& error) {
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    auto const parent = ::getpid();
    std::fflush(stdout);
    std::fflush(stderr);
    auto const pid = ::fork();
    if (pid < 0) {
        error = std::string("fork: ") + std::strerror(errno);
        return -1;
    }
    if (pid == 0) {  // the child: only async-signal-safe calls until exec
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (::getppid() != parent) ::_exit(126);
        if (stdout_fd >= 0) {
            ::dup2(stdout_fd, STDOUT_FILENO);
        } else if (int const null_fd = ::open("/dev/null", O_RDWR); null_fd >= 0) {
            ::dup2(null_fd, STDIN_FILENO);
            ::dup2(null_fd, STDOUT_FILENO);
        }
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    return pid;
}

/// Ends a child process: SIGTERM, up to 3 s for it to go, then SIGKILL; reaped either way.
inline void terminate_child(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    for (int i = 0; i < 300; ++i) {
        int status = 0;
        auto const r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
}

inline std::size_t file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
    return static_cast<std::size_t>(limit.rlim_cur);
}

// ---- /proc ------------------------------------------------------------------------------

/// VmRSS of a process in KiB; -1 when unreadable.
inline long read_rss_kb(long pid) {
    if (pid <= 0) return -1;
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    }
    return -1;
}

struct cpu_times {
    double user = -1;  ///< seconds
    double sys = -1;
    bool valid() const noexcept { return user >= 0; }
};

/// utime and stime of `/proc/<what>/stat` ("self" or a pid), in seconds.
inline cpu_times read_cpu(std::string const& what) {
    std::ifstream file("/proc/" + what + "/stat");
    std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    auto const paren = text.rfind(')');
    if (paren == std::string::npos || paren + 2 >= text.size()) return {};
    std::istringstream fields(text.substr(paren + 2));
    std::string field;
    unsigned long long utime = 0, stime = 0;
    for (int index = 3; fields >> field; ++index) {  // field 3 is the state
        if (index == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
        if (index == 15) {
            stime = std::strtoull(field.c_str(), nullptr, 10);
            auto const tick = static_cast<double>(sysconf(_SC_CLK_TCK));
            return {static_cast<double>(utime) / tick, static_cast<double>(stime) / tick};
        }
    }
    return {};
}
inline cpu_times read_cpu(long pid) {
    return pid > 0 ? read_cpu(std::to_string(pid)) : cpu_times{};
}
inline cpu_times read_self_cpu() { return read_cpu(std::string("self")); }

/// CPU used between two readings over `wall_s`, in % of one core; -1 when unknown.
inline double cpu_percent(cpu_times const& before, cpu_times const& after, double wall_s) {
    if (!before.valid() || !after.valid() || wall_s <= 0) return -1;
    return 100.0 * ((after.user + after.sys) - (before.user + before.sys)) / wall_s;
}

// ---- latency histogram ------------------------------------------------------------------

/// Nanosecond values: exact below 64, then 32 buckets per power of two (error < 3.2%).
class histogram {
public:
    histogram() : counts_(64 + 58 * 32, 0) {}

    void add(std::int64_t value) {
        if (value < 0) value = 0;
        auto const v = static_cast<std::uint64_t>(value);
        ++counts_[index_of(v)];
        ++count_;
        sum_ += static_cast<double>(v);
        max_ = std::max(max_, value);
    }
    void merge(histogram const& other) {
        for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
        count_ += other.count_;
        sum_ += other.sum_;
        max_ = std::max(max_, other.max_);
    }
    void clear() { *this = histogram(); }

    std::uint64_t count() const noexcept { return count_; }
    std::int64_t max() const noexcept { return max_; }
    double mean() const noexcept { return count_ == 0 ? 0.0 : sum_ / static_cast<double>(count_); }

    /// The value at quantile q (0..1): the middle of the bucket holding that rank.
    std::int64_t quantile(double q) const {
        if (count_ == 0) return 0;
        auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count_)));
        rank = std::clamp<std::uint64_t>(rank, 1, count_);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < counts_.size(); ++i) {
            seen += counts_[i];
            if (seen >= rank) {
                auto const [low, width] = bucket(i);
                return std::min<std::int64_t>(static_cast<std::int64_t>(low + width / 2), max_);
            }
        }
        return max_;
    }

private:
    static std::size_t index_of(std::uint64_t v) {
        if (v < 64) return static_cast<std::size_t>(v);
        int const exponent = 63 - __builtin_clzll(v);  // >= 6
        auto const sub = (v >> (exponent - 5)) & 31;
        return static_cast<std::size_t>(64 + (exponent - 6) * 32) + static_cast<std::size_t>(sub);
    }
    static std::pair<std::uint64_t, std::uint64_t> bucket(std::size_t index) {
        if (index < 64) return {index, 1};
        auto const exponent = static_cast<int>((index - 64) / 32) + 6;
        auto const sub = static_cast<std::uint64_t>((index - 64) % 32);
        auto const width = std::uint64_t{1} << (exponent - 5);
        return {(std::uint64_t{1} << exponent) + sub * width, width};
    }

    std::vector<std::uint64_t> counts_;
    std::uint64_t count_ = 0;
    double sum_ = 0;
    std::int64_t max_ = 0;
};

// ---- one JSON object on one line --------------------------------------------------------

class json_line {
public:
    json_line& add(std::string_view key, std::string_view value) {
        begin(key);
        text_ += '"';
        for (char c : value) {
            if (c == '"' || c == '\\') {
                text_ += '\\';
                text_ += c;
            } else if (static_cast<unsigned char>(c) < 0x20) {
                text_ += ' ';
            } else {
                text_ += c;
            }
        }
        text_ += '"';
        return *this;
    }
    json_line& add(std::string_view key, char const* value) {
        return add(key, std::string_view(value));
    }
    json_line& add(std::string_view key, std::string const& value) {
        return add(key, std::string_view(value));
    }
    json_line& add(std::string_view key, bool value) {
        begin(key);
        text_ += value ? "true" : "false";
        return *this;
    }
    json_line& add(std::string_view key, double value) {
        begin(key);
        char buffer[64];
        if (!std::isfinite(value)) {
            std::snprintf(buffer, sizeof buffer, "null");
        } else if (value == std::floor(value) && std::fabs(value) < 1e15) {
            std::snprintf(buffer, sizeof buffer, "%.0f", value);
        } else {
            std::snprintf(buffer, sizeof buffer, "%.3f", value);
        }
        text_ += buffer;
        return *this;
    }
    json_line& add(std::string_view key, std::int64_t value) {
        begin(key);
        text_ += std::to_string(value);
        return *this;
    }
    json_line& add(std::string_view key, std::uint64_t value) {
        begin(key);
        text_ += std::to_string(value);
        return *this;
    }
    json_line& add(std::string_view key, int value) { return add(key, std::int64_t{value}); }
    /// A value that is JSON text already.
    json_line& add_raw(std::string_view key, std::string_view json) {
        begin(key);
        text_ += json;
        return *this;
    }
    std::string str() const { return "{" + text_ + "}"; }

private:
    void begin(std::string_view key) {
        if (!text_.empty()) text_ += ',';
        text_ += '"';
        text_ += key;
        text_ += "\":";
    }
    std::string text_;
};

// ---- flat JSON scanning (the bench's own frames: no nesting where it is used) -----------

/// Where the value of top-level `"key":` starts in `text`, or npos. Strings are skipped
/// whole, so a key inside a string value is never taken.
inline std::size_t json_value_at(std::string_view text, std::string_view key) {
    std::size_t i = 0;
    while (i < text.size()) {
        auto const open = text.find('"', i);
        if (open == std::string_view::npos) return std::string_view::npos;
        auto close = open + 1;
        while (close < text.size() && text[close] != '"') close += text[close] == '\\' ? 2 : 1;
        if (close >= text.size()) return std::string_view::npos;
        auto after = close + 1;
        while (after < text.size() && (text[after] == ' ' || text[after] == '\t')) ++after;
        if (after < text.size() && text[after] == ':' &&
            text.substr(open + 1, close - open - 1) == key) {
            ++after;
            while (after < text.size() && (text[after] == ' ' || text[after] == '\t')) ++after;
            return after;
        }
        i = close + 1;
    }
    return std::string_view::npos;
}

/// The string value of `key` (without unescaping; the bench's ids need none).
inline std::string_view json_string(std::string_view text, std::string_view key) {
    auto const at = json_value_at(text, key);
    if (at == std::string_view::npos || at >= text.size() || text[at] != '"') return {};
    auto const end = text.find('"', at + 1);
    if (end == std::string_view::npos) return {};
    return text.substr(at + 1, end - at - 1);
}

/// The integer value of `key`; `fallback` when absent or not an integer.
inline std::int64_t json_int(std::string_view text, std::string_view key, std::int64_t fallback) {
    auto at = json_value_at(text, key);
    if (at == std::string_view::npos || at >= text.size()) return fallback;
    bool const negative = text[at] == '-';
    if (negative) ++at;
    if (at >= text.size() || text[at] < '0' || text[at] > '9') return fallback;
    std::int64_t value = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
        value = value * 10 + (text[at++] - '0');
    }
    return negative ? -value : value;
}

// ---- the bench protocol's server messages ------------------------------------------------

/// {"type":"bench","seq":i,"ts":<now>,"pad":"xx…"}, about `size` bytes; `ts` is taken here.
inline std::string bench_message(std::int64_t seq, std::size_t size) {
    char head[96];
    int const n = std::snprintf(head, sizeof head,
                                "{\"type\":\"bench\",\"seq\":%" PRId64 ",\"ts\":%" PRId64
                                ",\"pad\":\"",
                                seq, mono_ns());
    auto const fixed = static_cast<std::size_t>(n) + 2;
    std::string text;
    text.reserve(std::max(size, fixed));
    text.append(head, static_cast<std::size_t>(n));
    if (size > fixed) text.append(size - fixed, 'x');
    text.append("\"}");
    return text;
}

inline std::string bench_done_message(std::int64_t count) {
    return "{\"type\":\"bench_done\",\"count\":" + std::to_string(count) + "}";
}

/// Bounds every server applies to what a client asks for.
inline constexpr std::int64_t max_count = 20'000'000;
inline constexpr std::int64_t max_size = 1 << 20;

// ---- WebSocket framing and handshake ------------------------------------------------------

/// An unmasked, final server frame: header and payload in one string.
inline std::string server_frame(std::uint8_t opcode, std::string_view payload) {
    std::string frame;
    auto const n = payload.size();
    frame.reserve(n + 10);
    frame.push_back(static_cast<char>(0x80 | opcode));
    if (n < 126) {
        frame.push_back(static_cast<char>(n));
    } else if (n <= 0xFFFF) {
        frame.push_back(static_cast<char>(126));
        frame.push_back(static_cast<char>((n >> 8) & 0xFF));
        frame.push_back(static_cast<char>(n & 0xFF));
    } else {
        frame.push_back(static_cast<char>(127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            frame.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xFF));
        }
    }
    frame.append(payload);
    return frame;
}

inline std::string base64(unsigned char const* data, std::size_t size) {
    static constexpr char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((size + 2) / 3 * 4);
    for (std::size_t i = 0; i < size; i += 3) {
        std::uint32_t chunk = std::uint32_t{data[i]} << 16;
        if (i + 1 < size) chunk |= std::uint32_t{data[i + 1]} << 8;
        if (i + 2 < size) chunk |= data[i + 2];
        out.push_back(table[(chunk >> 18) & 63]);
        out.push_back(table[(chunk >> 12) & 63]);
        out.push_back(i + 1 < size ? table[(chunk >> 6) & 63] : '=');
        out.push_back(i + 2 < size ? table[chunk & 63] : '=');
    }
    return out;
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2).
inline std::string websocket_accept(std::string_view key) {
    std::string text(key);
    text += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<unsigned char const*>(text.data()), text.size(), digest);
    return base64(digest, sizeof digest);
}

/// The value of an HTTP header in a header block (case-insensitive name); "" when absent.
inline std::string_view http_header(std::string_view head, std::string_view name) {
    std::size_t line = head.find("\r\n");
    while (line != std::string_view::npos && line + 2 < head.size()) {
        auto const start = line + 2;
        auto const end = std::min(head.find("\r\n", start), head.size());
        auto const text = head.substr(start, end - start);
        auto const colon = text.find(':');
        if (colon == name.size()) {
            bool same = true;
            for (std::size_t i = 0; i < colon && same; ++i) {
                auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
                same = lower(text[i]) == lower(name[i]);
            }
            if (same) {
                auto value = text.substr(colon + 1);
                while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
                while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
                return value;
            }
        }
        if (end >= head.size()) break;
        line = end;
    }
    return {};
}

/// The N of `user_id=uN` in a request target; -1 when absent.
inline long user_index_of(std::string_view target) {
    auto const at = target.find("user_id=u");
    if (at == std::string_view::npos) return -1;
    long value = 0;
    bool any = false;
    for (auto i = at + 9; i < target.size() && target[i] >= '0' && target[i] <= '9'; ++i) {
        value = value * 10 + (target[i] - '0');
        any = true;
    }
    return any ? value : -1;
}

}  // namespace wsbench_local
