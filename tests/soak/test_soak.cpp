// SPDX-License-Identifier: BSL-1.0
//
// The soak test: 2,000 WebSocket clients connecting and dropping at random against a
// wsmanager in a child process (wsmanager_soak_server), while that host asks for
// confirmations, broadcasts and messages users; then everything must add up, and the
// server's memory must come back to within a margin of where it was after the first round.
//
// The clients are written here on bare Asio (RFC 6455 by hand: the handshake, masked client
// frames, ping/pong, close), all 2,000 of them as coroutines on two io_context threads: a
// thread, or a websocketpp client, per connection would not scale to this on 2 cores.
//
// One round (three by default, identical but for the seeds):
//   churn  (8 s)  each of the 2,000 client slots connects as one of 250 users (8 slots a
//                 user), lives 0.5-5 s, drops, reconnects. How a connection ends: half with
//                 a close handshake (1000); the other half vanish without a close frame:
//                 the TCP socket just closed (FIN), reset (SO_LINGER 0: RST), or gone silent
//                 (still connected, never answering a ping or the close: the server's
//                 keepalive must find it and close it with 1011). Meanwhile the server, every
//                 10 ms, calls notify_user (answered, left to time out, withdrawn by
//                 per-operation cancellation, answered and withdrawn at once: a race) and
//                 send_to_user, and every 100 ms broadcast_message. The clients answer the
//                 confirmations whose task id asks for it (feedback = task id, proceed = n
//                 even).
//   hold          no more drops: every slot reconnects and stays. Then the server's
//                 active_connections must equal the connections the test holds open (2,000)
//                 and users_online 250.
//   results       the server reports every call: each notify_user completed exactly once,
//                 with a sane ending for its fate (soak_server.cpp); pending_callbacks 0.
//   drain         every connection ends, in the same mix of ways; active_connections must
//                 come to 0 (the silent ones only through keepalive) and pending_callbacks
//                 stay 0.
//   memory        the server's VmRSS from /proc/<pid>/status (the round's peak, sampled,
//                 and after the round) and its heap in use; after the last round, each
//                 round's against round 1's (the margin, and why: at the end of the test).
// Client-side checks per round: no frame for another user, no malformed frame, no client
// left hanging, every silent client closed by the server with 1011, no unexpected close of a
// well-behaved client, no failed handshake.
//
// Nothing is timed: every wait is bounded and generous (a busy 2-core machine), and no
// assertion is about speed. WSMANAGER_SOAK_ROUNDS, WSMANAGER_SOAK_CHURN_MS and
// WSMANAGER_SOAK_CLIENTS change the size for a longer run by hand.

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <asio/buffer.hpp>
#include <asio/co_spawn.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#ifndef WSMANAGER_SOAK_SERVER
#error "WSMANAGER_SOAK_SERVER must name the wsmanager_soak_server executable"
#endif

namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using asio::ip::tcp;
constexpr auto use_tuple = asio::experimental::as_tuple(asio::use_awaitable);

int env_int(char const* name, int fallback) {
    char const* value = std::getenv(name);
    return value != nullptr && std::atoi(value) > 0 ? std::atoi(value) : fallback;
}

// ---- the server process ----------------------------------------------------------------

/// A child process with its stdin and stdout as pipes; one line per command and answer.
/// Only this child is ever signalled, by its pid, and it dies with the test
/// (PR_SET_PDEATHSIG), so a crashed test leaves nothing behind.
class ChildProcess {
public:
    explicit ChildProcess(char const* path) {
        int to_child[2];
        int from_child[2];
        if (::pipe2(to_child, O_CLOEXEC) != 0 || ::pipe2(from_child, O_CLOEXEC) != 0) {
            throw std::system_error(errno, std::generic_category(), "pipe2");
        }
        pid_ = ::fork();
        if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            ::dup2(to_child[0], STDIN_FILENO);
            ::dup2(from_child[1], STDOUT_FILENO);
            ::execl(path, path, static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(to_child[0]);
        ::close(from_child[1]);
        to_ = to_child[1];
        from_ = from_child[0];
    }
    ChildProcess(ChildProcess const&) = delete;
    ChildProcess& operator=(ChildProcess const&) = delete;
    ~ChildProcess() { (void)finish(15s); }

    pid_t pid() const noexcept { return pid_; }

    bool send_line(std::string const& line) {
        if (to_ < 0) return false;
        std::string const text = line + "\n";
        std::size_t done = 0;
        while (done < text.size()) {
            auto const n = ::write(to_, text.data() + done, text.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            done += static_cast<std::size_t>(n);
        }
        return true;
    }

    /// The next line, or nullopt when none is complete within `timeout` (or the pipe ended).
    std::optional<std::string> read_line(milliseconds timeout) {
        auto const deadline = steady_clock::now() + timeout;
        for (;;) {
            if (auto const eol = buffer_.find('\n'); eol != std::string::npos) {
                auto line = buffer_.substr(0, eol);
                buffer_.erase(0, eol + 1);
                return line;
            }
            auto const left =
                std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
            if (left.count() <= 0 || from_ < 0) return std::nullopt;
            pollfd fd{from_, POLLIN, 0};
            auto const ready = ::poll(&fd, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno == EINTR) continue;
            if (ready <= 0) return std::nullopt;
            char chunk[4096];
            auto const n = ::read(from_, chunk, sizeof chunk);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return std::nullopt;
            buffer_.append(chunk, static_cast<std::size_t>(n));
        }
    }

    /// Closes its stdin (it stops and exits), waits at most `timeout`, then kills it.
    /// Returns its exit status, or -1 when it had to be killed.
    int finish(milliseconds timeout) {
        if (to_ >= 0) ::close(to_);
        to_ = -1;
        if (pid_ <= 0) return exit_status_;
        auto const deadline = steady_clock::now() + timeout;
        int status = 0;
        for (;;) {
            auto const done = ::waitpid(pid_, &status, WNOHANG);
            if (done == pid_) {
                exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (done < 0 && errno != EINTR) break;
            if (steady_clock::now() >= deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                exit_status_ = -1;
                break;
            }
            std::this_thread::sleep_for(20ms);
        }
        pid_ = -1;
        if (from_ >= 0) ::close(from_);
        from_ = -1;
        return exit_status_;
    }

private:
    pid_t pid_ = -1;
    int to_ = -1;
    int from_ = -1;
    int exit_status_ = -1;
    std::string buffer_;
};

/// "VERB key=value key=value ..." -> {key: value}; "verb" -> VERB.
using Fields = std::map<std::string, std::string>;
Fields parse_fields(std::string const& line) {
    Fields fields;
    std::istringstream in(line);
    std::string word;
    in >> word;
    fields["verb"] = word;
    while (in >> word) {
        auto const eq = word.find('=');
        if (eq == std::string::npos) continue;
        fields[word.substr(0, eq)] = word.substr(eq + 1);
    }
    return fields;
}

/// A number field; -1 when absent (so that a CHECK against 0 fails visibly).
long long number(Fields const& fields, std::string const& key) {
    auto const it = fields.find(key);
    return it == fields.end() ? -1 : std::atoll(it->second.c_str());
}

// ---- the clients -------------------------------------------------------------------------

/// Client-side counters, summed over all connections.
enum Stat : std::size_t {
    connects,            ///< TCP connects started
    connect_errors,      ///< TCP connect failed (or timed out)
    handshake_failures,  ///< no 101 (refused, or no answer in time)
    registered,          ///< `connected` frames: the server registered the connection
    refused_after_open,  ///< closed by the server before `connected` (a connection limit)
    drop_clean,          ///< ended with a close handshake (1000)
    drop_fin,            ///< vanished: socket closed
    drop_rst,            ///< vanished: reset (SO_LINGER 0)
    drop_silent,         ///< vanished: went silent; the server must close it (1011)
    clean_close_echoed,  ///< the server answered our close frame
    silent_closed_1011,  ///< a silent client got the server's close 1011, then lost TCP
    silent_closed_other, ///< a silent client's connection ended otherwise
    silent_hung,         ///< a silent client still connected after 30 s (keepalive missed it)
    unexpected_close,    ///< the server closed a well-behaved, registered client
    unexpected_eof,      ///< the TCP connection of a well-behaved client just ended
    protocol_errors,     ///< a malformed server frame (masked, fragmented, reserved opcode)
    bad_json,            ///< a text frame that is not a JSON object with a type
    wrong_user,          ///< a frame for another user (user messages, confirmation requests)
    pings,               ///< pings received
    requests,            ///< task_step_result frames received
    answers,             ///< confirm actions sent
    resolved,            ///< confirmation_resolved frames
    broadcasts,          ///< soak_broadcast frames
    user_messages,       ///< soak_user frames
    late_answers,        ///< error unknown_callback: another tab answered first, or it ended
    other_errors,        ///< any other error frame
    other_frames,        ///< any other frame type
    slot_exceptions,     ///< a client coroutine threw (a bug in the test)
    stat_count_
};
constexpr std::array<char const*, stat_count_> stat_names = {
    "connects", "connect_errors", "handshake_failures", "registered", "refused_after_open",
    "drop_clean", "drop_fin", "drop_rst", "drop_silent", "clean_close_echoed",
    "silent_closed_1011", "silent_closed_other", "silent_hung", "unexpected_close",
    "unexpected_eof", "protocol_errors", "bad_json", "wrong_user", "pings", "requests",
    "answers", "resolved", "broadcasts", "user_messages", "late_answers", "other_errors",
    "other_frames", "slot_exceptions"};

using Snapshot = std::array<std::uint64_t, stat_count_>;

enum class Phase { churn, hold, drain };
enum class Drop { clean, fin, rst, silent };

/// A frame from the server.
struct Frame {
    std::uint8_t opcode = 0;
    std::string payload;
};

/// Takes one complete frame off the front of `in`; nullopt when incomplete. Server frames
/// are unmasked, final, and not fragmented (the server never fragments): anything else sets
/// `error`.
std::optional<Frame> take_frame(std::string& in, bool& error) {
    if (in.size() < 2) return std::nullopt;
    auto const b0 = static_cast<unsigned char>(in[0]);
    auto const b1 = static_cast<unsigned char>(in[1]);
    std::size_t header = 2;
    std::uint64_t size = b1 & 0x7f;
    if ((b1 & 0x80) != 0 || (b0 & 0x80) == 0 || (b0 & 0x70) != 0) {
        error = true;
        return std::nullopt;
    }
    if (size == 126) {
        header = 4;
        if (in.size() < header) return std::nullopt;
        size = (static_cast<std::uint64_t>(static_cast<unsigned char>(in[2])) << 8) |
               static_cast<unsigned char>(in[3]);
    } else if (size == 127) {
        header = 10;
        if (in.size() < header) return std::nullopt;
        size = 0;
        for (std::size_t i = 2; i < 10; ++i) size = (size << 8) | static_cast<unsigned char>(in[i]);
    }
    if (size > (1u << 20)) {
        error = true;
        return std::nullopt;
    }
    if (in.size() < header + size) return std::nullopt;
    Frame frame;
    frame.opcode = b0 & 0x0f;
    frame.payload = in.substr(header, size);
    in.erase(0, header + size);
    return frame;
}

/// A masked client frame.
std::string client_frame(std::uint8_t opcode, std::string_view payload, std::uint32_t mask_bits) {
    std::string frame;
    frame.push_back(static_cast<char>(0x80 | opcode));
    auto const size = payload.size();
    if (size < 126) {
        frame.push_back(static_cast<char>(0x80 | size));
    } else {
        frame.push_back(static_cast<char>(0x80 | 126));
        frame.push_back(static_cast<char>((size >> 8) & 0xff));
        frame.push_back(static_cast<char>(size & 0xff));
    }
    std::array<unsigned char, 4> mask{};
    for (int i = 0; i < 4; ++i) mask[i] = static_cast<unsigned char>(mask_bits >> (8 * i));
    for (auto byte : mask) frame.push_back(static_cast<char>(byte));
    for (std::size_t i = 0; i < size; ++i) {
        frame.push_back(static_cast<char>(static_cast<unsigned char>(payload[i]) ^ mask[i % 4]));
    }
    return frame;
}

std::string close_payload(std::uint16_t code) {
    return {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
}

std::string member(rapidjson::Value const& object, char const* name) {
    auto it = object.FindMember(name);
    if (it == object.MemberEnd() || !it->value.IsString()) return {};
    return {it->value.GetString(), it->value.GetStringLength()};
}

class Fleet;

/// One WebSocket connection of a slot. Only its io_context's thread touches it.
struct Connection {
    explicit Connection(asio::any_io_executor const& executor) : socket(executor), timer(executor) {}
    tcp::socket socket;
    asio::steady_timer timer;  ///< connect bound, then lifetime, then the silent bound
    std::string in;
    bool reading = false;   ///< a read is outstanding
    bool expired = false;   ///< its end was decided
    bool counted = false;   ///< counted in Fleet::open_now
    bool silent = false;    ///< answers nothing any more
    Drop drop = Drop::clean;
    std::uint16_t server_close = 0;  ///< the code of the server's close frame, 0 before one
};

/// A client slot: one connection at a time, again and again, as one user.
struct Slot {
    int index = 0;
    std::string user;
    std::mt19937 random;
    std::shared_ptr<Connection> current;
    asio::io_context* io = nullptr;
};

class Fleet {
public:
    Fleet(std::uint16_t port, int slots, int users, int threads)
        : endpoint_(asio::ip::make_address("127.0.0.1"), port) {
        for (int t = 0; t < threads; ++t) {
            ios_.push_back(std::make_unique<asio::io_context>(1));
            guards_.emplace_back(ios_.back()->get_executor());
        }
        for (int i = 0; i < slots; ++i) {
            auto slot = std::make_unique<Slot>();
            slot->index = i;
            slot->user = "u" + std::to_string(i % users);
            slot->random.seed(static_cast<unsigned>(0x50a4 + i));
            slot->io = ios_[static_cast<std::size_t>(i % threads)].get();
            slots_.push_back(std::move(slot));
        }
        for (auto& io : ios_) {
            threads_.emplace_back([&io] { io->run(); });
        }
    }
    Fleet(Fleet const&) = delete;
    Fleet& operator=(Fleet const&) = delete;
    ~Fleet() {
        guards_.clear();
        for (auto& io : ios_) io->stop();
        for (auto& thread : threads_) thread.join();
        ios_.clear();  // destroys the coroutines (and their sockets) before the slots
    }

    /// Starts every slot's loop, spread over `ramp` so the listener is not hit at once.
    void start_round(Phase phase, milliseconds ramp) {
        phase_.store(phase);
        auto const count = static_cast<int>(slots_.size());
        for (auto& slot : slots_) {
            running_.fetch_add(1);
            milliseconds const delay(ramp.count() * slot->index / std::max(1, count));
            asio::co_spawn(*slot->io, run_slot(*slot, delay),
                           [this](std::exception_ptr e) {
                               if (e) add(slot_exceptions);
                               running_.fetch_sub(1);
                           });
        }
    }

    void set_phase(Phase phase) { phase_.store(phase); }

    /// Drain: every connection ends now, in the usual mix of ways; no slot reconnects.
    void drain() {
        phase_.store(Phase::drain);
        for (auto& io : ios_) {
            asio::post(*io, [this, io = io.get()] {
                for (auto& slot : slots_) {
                    if (slot->io == io && slot->current) expire(*slot, slot->current);
                }
            });
        }
    }

    int running() const noexcept { return running_.load(); }
    long open_now() const noexcept { return open_now_.load(); }
    std::size_t size() const noexcept { return slots_.size(); }

    Snapshot snapshot() const {
        Snapshot s{};
        for (std::size_t i = 0; i < stat_count_; ++i) s[i] = stats_[i].load();
        return s;
    }

private:
    void add(Stat stat, std::uint64_t n = 1) { stats_[stat].fetch_add(n, std::memory_order_relaxed); }

    static Drop pick_drop(Slot& slot) {
        auto const roll = std::uniform_int_distribution<int>(0, 99)(slot.random);
        // Half with a close frame, half vanishing without one.
        return roll < 50 ? Drop::clean : roll < 70 ? Drop::fin : roll < 90 ? Drop::rst : Drop::silent;
    }

    void uncount(Connection& c) {
        if (c.counted) {
            c.counted = false;
            open_now_.fetch_sub(1);
        }
    }

    /// Decides how `c` ends; the session loop carries it out.
    void expire(Slot& slot, std::shared_ptr<Connection> const& conn) {
        Connection& c = *conn;
        if (c.expired) return;
        c.expired = true;
        c.drop = pick_drop(slot);
        uncount(c);  // from now on the test no longer holds it open
        std::error_code ignored;
        if (c.drop == Drop::silent) {
            c.silent = true;
            add(drop_silent);
            // Keepalive must close it: ping_interval + ping_timeout + close_timeout is 5.5 s
            // (soak_server.cpp); past 30 s it missed it.
            c.timer.expires_after(30s);
            c.timer.async_wait([this, conn](std::error_code ec) {
                if (ec) return;
                add(silent_hung);
                std::error_code ignore;
                conn->socket.set_option(asio::socket_base::linger(true, 0), ignore);
                conn->socket.close(ignore);
            });
            return;
        }
        c.timer.cancel();
        if (c.reading) c.socket.cancel(ignored);
    }

    asio::awaitable<bool> write(Connection& c, Slot& slot, std::uint8_t opcode,
                                std::string_view payload) {
        auto const frame = client_frame(opcode, payload, static_cast<std::uint32_t>(slot.random()));
        auto [ec, n] = co_await asio::async_write(c.socket, asio::buffer(frame), use_tuple);
        (void)n;
        co_return !ec;
    }

    /// One text frame from the server; may answer a confirmation.
    asio::awaitable<void> on_text(Slot& slot, Connection& c, std::string& text) {
        rapidjson::Document doc;
        doc.ParseInsitu(text.data());
        if (doc.HasParseError() || !doc.IsObject()) {
            add(bad_json);
            co_return;
        }
        auto const type = member(doc, "type");
        if (type == "connected") {
            if (member(doc, "user_id") != slot.user) add(wrong_user);
            add(registered);
            if (!c.expired && !c.counted) {
                c.counted = true;
                open_now_.fetch_add(1);
            }
        } else if (type == "task_step_result") {
            add(requests);
            if (member(doc, "user_id") != slot.user) add(wrong_user);
            auto const task = member(doc, "task_id");
            auto const callback = member(doc, "callback_id");
            // "<fate>-<round>-<n>": the clients answer fates a and r.
            if (!c.silent && !c.expired && !task.empty() && (task[0] == 'a' || task[0] == 'r')) {
                auto const n = std::atoi(task.c_str() + task.rfind('-') + 1);
                std::string const answer = R"({"action":"confirm","callback_id":")" + callback +
                                           R"(","proceed":)" + (n % 2 == 0 ? "true" : "false") +
                                           R"(,"feedback":")" + task + R"("})";
                if (co_await write(c, slot, 0x1, answer)) add(answers);
            }
        } else if (type == "confirmation_resolved") {
            add(resolved);
        } else if (type == "soak_broadcast") {
            add(broadcasts);
        } else if (type == "soak_user") {
            add(user_messages);
            if (member(doc, "user") != slot.user) add(wrong_user);
        } else if (type == "error") {
            add(member(doc, "code") == "unknown_callback" ? late_answers : other_errors);
        } else if (type.empty()) {
            add(bad_json);
        } else {
            add(other_frames);
        }
    }

    /// Reads until the server closes TCP (or `bound` passes), keeping any close frame's code.
    asio::awaitable<void> read_to_eof(std::shared_ptr<Connection> conn, milliseconds bound) {
        Connection& c = *conn;
        c.timer.expires_after(bound);
        c.timer.async_wait([conn](std::error_code ec) {
            if (!ec) {
                std::error_code ignore;
                conn->socket.close(ignore);
            }
        });
        std::array<char, 4096> chunk{};
        for (;;) {
            auto [ec, n] = co_await c.socket.async_read_some(asio::buffer(chunk), use_tuple);
            if (ec) break;
            c.in.append(chunk.data(), n);
            bool error = false;
            while (auto frame = take_frame(c.in, error)) {
                if (frame->opcode == 8 && frame->payload.size() >= 2) {
                    c.server_close = static_cast<std::uint16_t>(
                        (static_cast<unsigned char>(frame->payload[0]) << 8) |
                        static_cast<unsigned char>(frame->payload[1]));
                }
            }
            if (error) break;
        }
        c.timer.cancel();
    }

    /// One open connection, from the `connected` frame to its end.
    asio::awaitable<void> session(Slot& slot, std::shared_ptr<Connection> conn) {
        Connection& c = *conn;
        std::array<char, 16384> chunk{};
        for (;;) {
            bool error = false;
            while (auto frame = take_frame(c.in, error)) {
                switch (frame->opcode) {
                    case 0x1: co_await on_text(slot, c, frame->payload); break;
                    case 0x9:
                        add(pings);
                        if (!c.silent) (void)co_await write(c, slot, 0xA, frame->payload);
                        break;
                    case 0xA: break;
                    case 0x8: {
                        c.server_close =
                            frame->payload.size() >= 2
                                ? static_cast<std::uint16_t>(
                                      (static_cast<unsigned char>(frame->payload[0]) << 8) |
                                      static_cast<unsigned char>(frame->payload[1]))
                                : 1005;
                        if (c.silent) break;  // it does not answer; the server drops it
                        if (!c.counted && !c.expired) {
                            add(refused_after_open);
                        } else {
                            add(unexpected_close);
                            std::cerr << "soak client " << slot.index << " (" << slot.user
                                      << "): unexpected close " << c.server_close << "\n";
                        }
                        uncount(c);
                        c.expired = true;
                        (void)co_await write(c, slot, 0x8, close_payload(c.server_close));
                        co_await read_to_eof(conn, 5s);
                        co_return;
                    }
                    default: error = true; break;
                }
                if (error) break;
            }
            if (error) {
                add(protocol_errors);
                uncount(c);
                co_return;
            }
            if (c.expired && !c.silent) break;
            c.reading = true;
            auto [ec, n] = co_await c.socket.async_read_some(asio::buffer(chunk), use_tuple);
            c.reading = false;
            if (ec == asio::error::operation_aborted && c.expired && !c.silent) break;
            if (ec) {
                if (c.silent) {
                    c.timer.cancel();
                    add(c.server_close == 1011 ? silent_closed_1011 : silent_closed_other);
                    if (c.server_close != 1011) {
                        std::cerr << "soak client " << slot.index << ": silent, ended with close "
                                  << c.server_close << " (" << ec.message() << ")\n";
                    }
                } else {
                    add(unexpected_eof);
                    std::cerr << "soak client " << slot.index << ": connection lost: "
                              << ec.message() << "\n";
                }
                uncount(c);
                co_return;
            }
            c.in.append(chunk.data(), n);
        }
        // Our end, as decided by expire().
        std::error_code ignored;
        switch (c.drop) {
            case Drop::clean:
                add(drop_clean);
                if (co_await write(c, slot, 0x8, close_payload(1000))) {
                    co_await read_to_eof(conn, 5s);
                    if (c.server_close == 1000) add(clean_close_echoed);
                }
                break;
            case Drop::fin:
                add(drop_fin);
                c.socket.shutdown(tcp::socket::shutdown_both, ignored);
                c.socket.close(ignored);
                break;
            case Drop::rst:
                add(drop_rst);
                c.socket.set_option(asio::socket_base::linger(true, 0), ignored);
                c.socket.close(ignored);
                break;
            case Drop::silent: break;  // not here: silent connections end in the loop
        }
    }

    /// One connection's life: connect, handshake, session, end.
    asio::awaitable<void> life(Slot& slot) {
        auto executor = co_await asio::this_coro::executor;
        auto c = std::make_shared<Connection>(executor);
        add(connects);
        // Connect and handshake within 15 s, else the socket is closed under them.
        c->timer.expires_after(15s);
        c->timer.async_wait([c](std::error_code ec) {
            if (!ec) {
                std::error_code ignore;
                c->socket.close(ignore);
            }
        });
        auto [connect_ec] = co_await c->socket.async_connect(endpoint_, use_tuple);
        if (connect_ec) {
            add(connect_errors);
            c->timer.cancel();
            co_return;
        }
        std::string const request = "GET /?user_id=" + slot.user +
                                    " HTTP/1.1\r\n"
                                    "Host: 127.0.0.1\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    "Sec-WebSocket-Version: 13\r\n"
                                    "\r\n";
        auto [write_ec, written] = co_await asio::async_write(c->socket, asio::buffer(request), use_tuple);
        (void)written;
        std::size_t head = 0;
        std::error_code read_ec = write_ec;
        if (!write_ec) {
            auto [ec, n] = co_await asio::async_read_until(c->socket, asio::dynamic_buffer(c->in),
                                                           "\r\n\r\n", use_tuple);
            read_ec = ec;
            head = n;
        }
        c->timer.cancel();
        if (read_ec || c->in.compare(0, 12, "HTTP/1.1 101") != 0) {
            add(handshake_failures);
            std::cerr << "soak client " << slot.index << ": handshake failed: "
                      << (read_ec ? read_ec.message() : c->in.substr(0, c->in.find('\r')))
                      << "\n";
            co_return;
        }
        c->in.erase(0, head);

        slot.current = c;
        if (phase_.load() == Phase::drain) {
            expire(slot, c);
        } else if (phase_.load() == Phase::churn) {
            milliseconds const lifetime(std::uniform_int_distribution<int>(500, 5000)(slot.random));
            c->timer.expires_after(lifetime);
            c->timer.async_wait([this, &slot, weak = std::weak_ptr<Connection>(c)](std::error_code ec) {
                auto conn = weak.lock();
                if (ec || !conn || phase_.load() != Phase::churn) return;  // hold: stays
                expire(slot, conn);
            });
        }
        co_await session(slot, c);
        slot.current.reset();
        std::error_code ignored;
        c->timer.cancel();
        c->socket.close(ignored);
    }

    asio::awaitable<void> run_slot(Slot& slot, milliseconds delay) {
        asio::steady_timer pause(co_await asio::this_coro::executor);
        pause.expires_after(delay);
        co_await pause.async_wait(use_tuple);
        while (phase_.load() != Phase::drain) {
            co_await life(slot);
            if (phase_.load() == Phase::drain) break;
            pause.expires_after(milliseconds(std::uniform_int_distribution<int>(10, 100)(slot.random)));
            co_await pause.async_wait(use_tuple);
        }
    }

    // Declared before the io_contexts: destroyed after them, and so after the coroutines.
    std::array<std::atomic<std::uint64_t>, stat_count_> stats_{};
    std::vector<std::unique_ptr<Slot>> slots_;
    std::atomic<Phase> phase_{Phase::churn};
    std::atomic<int> running_{0};
    std::atomic<long> open_now_{0};
    tcp::endpoint endpoint_;
    std::vector<std::unique_ptr<asio::io_context>> ios_;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
    std::vector<std::thread> threads_;
};

/// Polls `condition` every 100 ms for at most `timeout`.
template <class Condition>
bool wait_until(Condition condition, milliseconds timeout) {
    auto const deadline = steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(100ms);
    }
}

/// The soft descriptor limit raised to the hard one (20,000 on CI): 2,000 clients here.
void raise_descriptor_limit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &limit);
    }
}

/// "VmRSS:   12345 kB" -> 12345, from /proc/<pid>/status; -1 when absent.
long long proc_status_kb(pid_t pid, std::string_view key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
            line[key.size()] == ':') {
            return std::atoll(line.c_str() + key.size() + 1);
        }
    }
    return -1;
}

/// The highest VmRSS of a process, sampled every 50 ms until destroyed; take() returns the
/// peak since the last take(). Sampled rather than read from VmHWM, which cannot be reset
/// without clear_refs, and after that reset the kernel updates it only on some unmap paths.
class PeakSampler {
public:
    explicit PeakSampler(pid_t pid)
        : thread_([this, pid] {
              while (!stop_.load()) {
                  auto const kb = proc_status_kb(pid, "VmRSS");
                  long long seen = peak_.load();
                  while (kb > seen && !peak_.compare_exchange_weak(seen, kb)) {
                  }
                  std::this_thread::sleep_for(50ms);
              }
          }) {}
    PeakSampler(PeakSampler const&) = delete;
    PeakSampler& operator=(PeakSampler const&) = delete;
    ~PeakSampler() {
        stop_.store(true);
        thread_.join();
    }
    long long take() { return peak_.exchange(0); }

private:
    std::atomic<bool> stop_{false};
    std::atomic<long long> peak_{0};
    std::thread thread_;
};

std::string describe(Snapshot const& s) {
    std::ostringstream out;
    for (std::size_t i = 0; i < stat_count_; ++i) {
        if (s[i] != 0) out << " " << stat_names[i] << "=" << s[i];
    }
    return out.str();
}

}  // namespace

TEST_CASE("soak: 2,000 clients come and go while confirmations, broadcasts and user messages "
          "flow; everything ends once and the memory comes back",
          "[soak]") {
    int const rounds = env_int("WSMANAGER_SOAK_ROUNDS", 3);
    int const churn_ms = env_int("WSMANAGER_SOAK_CHURN_MS", 8000);
    int const clients = env_int("WSMANAGER_SOAK_CLIENTS", 2000);
    int const users = std::max(1, clients / 8);  // 8 slots a user (max_connections_per_user 64)
    auto const started = steady_clock::now();

    raise_descriptor_limit();
    rlimit limit{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
    INFO("RLIMIT_NOFILE soft " << limit.rlim_cur << " hard " << limit.rlim_max);
    // The clients' sockets, a few for Catch2 and the pipes; the server raises its own.
    REQUIRE(limit.rlim_cur >= static_cast<rlim_t>(clients) + 200);

    // The server first, before any thread of ours exists (fork).
    ChildProcess server(WSMANAGER_SOAK_SERVER);
    auto const hello = server.read_line(30s);
    REQUIRE(hello.has_value());
    REQUIRE(hello->rfind("PORT ", 0) == 0);
    auto const port = static_cast<std::uint16_t>(std::atoi(hello->c_str() + 5));
    REQUIRE(port != 0);

    auto const status = [&server](char const* verb = "STATUS") {
        if (!server.send_line(verb)) return Fields{};
        auto line = server.read_line(20s);
        return line ? parse_fields(*line) : Fields{};
    };

    Fleet fleet(port, clients, users, 2);
    // Per round, from /proc/<server pid>/status: the peak VmRSS during the round and VmRSS
    // after it (trimmed, see the margin below); and the server's heap in use (mallinfo2).
    PeakSampler sampler(server.pid());
    (void)sampler.take();  // the idle server's, before the first round
    std::vector<long long> rss_kb;
    std::vector<long long> peak_kb;
    std::vector<long long> heap_kb;
    Snapshot before = fleet.snapshot();

    for (int round = 1; round <= rounds; ++round) {
        INFO("round " << round);
        auto const round_start = steady_clock::now();
        // How long the waits took: printed, never asserted (only bounded).
        auto const seconds_since = [](steady_clock::time_point t) {
            return std::chrono::duration<double>(steady_clock::now() - t).count();
        };

        // churn, with the host's calls running in the server
        fleet.start_round(Phase::churn, 1000ms);
        REQUIRE(server.send_line("ROUND " + std::to_string(round) + " " + std::to_string(churn_ms) +
                                 " " + std::to_string(1000 + round) + " " + std::to_string(users)));
        std::this_thread::sleep_for(milliseconds(churn_ms));

        // hold: every slot connected, and the server sees exactly those
        fleet.set_phase(Phase::hold);
        auto const hold_start = steady_clock::now();
        bool const all_open = wait_until(
            [&] { return fleet.open_now() == static_cast<long>(fleet.size()); }, 60s);
        INFO("client connections open: " << fleet.open_now() << " of " << fleet.size());
        CHECK(all_open);

        double const hold_s = seconds_since(hold_start);
        auto const results_start = steady_clock::now();
        auto const result_line = server.read_line(90s);
        double const results_s = seconds_since(results_start);
        REQUIRE(result_line.has_value());
        auto const result = parse_fields(*result_line);
        INFO("server: " << *result_line);
        REQUIRE(result.at("verb") == "ROUND");
        CHECK(number(result, "calls") > 0);
        CHECK(number(result, "missing") == 0);     // every notify_user ended ...
        CHECK(number(result, "duplicates") == 0);  // ... exactly once
        CHECK(number(result, "bad") == 0);         // with a sane ending (first_bad names one)
        CHECK(number(result, "sends") > 0);
        CHECK(number(result, "sends_missing") == 0);
        CHECK(number(result, "a_user") > 0);  // answers reach their call
        CHECK(number(result, "t_timeout") > 0);
        CHECK(number(result, "w_aborted") > 0);
        CHECK(number(result, "broadcast_queued_max") <= 4000);
        CHECK(number(result, "user_queued_max") <= 64);

        Fields held;
        bool const matched = wait_until(
            [&] {
                held = status();
                return number(held, "active") == fleet.open_now();
            },
            30s);
        INFO("held: " << fleet.open_now() << ", server: active=" << number(held, "active")
                      << " users=" << number(held, "users"));
        CHECK(matched);
        CHECK(number(held, "users") == users);
        CHECK(number(held, "pending") == 0);

        // drain: every connection ends; the silent ones only through keepalive
        fleet.drain();
        auto const drain_start = steady_clock::now();
        bool const clients_done = wait_until([&] { return fleet.running() == 0; }, 60s);
        INFO("client slots still running: " << fleet.running());
        CHECK(clients_done);
        CHECK(fleet.open_now() == 0);
        Fields drained;
        bool const empty = wait_until(
            [&] {
                drained = status();
                return number(drained, "active") == 0 && number(drained, "pending") == 0;
            },
            30s);
        INFO("after drain: active=" << number(drained, "active")
                                    << " pending=" << number(drained, "pending"));
        CHECK(empty);
        CHECK(number(drained, "users") == 0);
        double const drain_s = seconds_since(drain_start);

        // client-side accounting for the round
        auto const now = fleet.snapshot();
        Snapshot delta{};
        for (std::size_t i = 0; i < stat_count_; ++i) delta[i] = now[i] - before[i];
        before = now;
        INFO("clients:" << describe(delta));
        CHECK(delta[slot_exceptions] == 0);
        CHECK(delta[connect_errors] == 0);
        CHECK(delta[handshake_failures] == 0);
        CHECK(delta[refused_after_open] == 0);
        CHECK(delta[protocol_errors] == 0);
        CHECK(delta[bad_json] == 0);
        CHECK(delta[wrong_user] == 0);
        CHECK(delta[unexpected_close] == 0);
        CHECK(delta[unexpected_eof] == 0);
        CHECK(delta[silent_hung] == 0);
        CHECK(delta[silent_closed_other] == 0);
        CHECK(delta[silent_closed_1011] == delta[drop_silent]);
        CHECK(delta[drop_silent] > 0);
        CHECK(delta[drop_fin] + delta[drop_rst] > 0);
        CHECK(delta[registered] > static_cast<std::uint64_t>(clients));  // slots reconnected
        CHECK(delta[answers] > 0);
        CHECK(delta[broadcasts] > 0);
        CHECK(delta[user_messages] > 0);
        CHECK(delta[pings] > 0);

        // memory, after the round: see the margin below
        std::this_thread::sleep_for(500ms);
        peak_kb.push_back(sampler.take());
        auto const memory = status("MEMORY");  // the server trims its heap first
        REQUIRE(memory.count("verb") == 1);
        REQUIRE(memory.at("verb") == "MEMORY");
        rss_kb.push_back(proc_status_kb(server.pid(), "VmRSS"));
        heap_kb.push_back(number(memory, "heap_inuse_kb"));
        REQUIRE(rss_kb.back() > 0);
        REQUIRE(peak_kb.back() > 0);
        REQUIRE(heap_kb.back() > 0);
        auto const round_s =
            std::chrono::duration<double>(steady_clock::now() - round_start).count();
        std::cout << "soak round " << round << " (" << round_s << " s; waits: hold "
                  << hold_s << " s, results " << results_s << " s, drain " << drain_s
                  << " s): " << *result_line
                  << "\n  held:" << " active=" << number(held, "active")
                  << " users=" << number(held, "users") << "\n  after drain: active="
                  << number(drained, "active") << " pending=" << number(drained, "pending")
                  << " opened=" << number(drained, "opened")
                  << " rejected=" << number(drained, "rejected")
                  << " closed_1000=" << number(drained, "closed_1000")
                  << " closed_1006=" << number(drained, "closed_1006")
                  << " closed_1011=" << number(drained, "closed_1011")
                  << " closed_other=" << number(drained, "closed_other")
                  << " accept_failures=" << number(drained, "accept_failures")
                  << "\n  memory (kB): peak " << peak_kb.back() << ", after "
                  << number(memory, "rss_kb") << ", after malloc_trim " << rss_kb.back()
                  << ", heap in use " << heap_kb.back()
                  << "\n  clients:" << describe(delta) << std::endl;
    }

    // The memory margin. Round 1 is the warm-up and its end the baseline: it fills glibc's
    // arenas (one per thread that allocates), Asio's per-thread recycled handler memory, the
    // capacity of the registries' hash tables and websocketpp's buffers, none of which is
    // handed back. Each later, identical round must bring the server's VmRSS back to within
    // max(8 MiB, 25% of the peak's growth over the baseline) of it. RSS is read after
    // malloc_trim(0), which returns the free pages glibc keeps; what stays is what is
    // allocated plus fragmentation, and fragmentation varies with the random interleaving
    // (it costs 0.5-1.5 MiB a round here), hence a margin in MiB rather than a tight one. A
    // leak of ~1 KiB per connection (~6,400 a round) or ~6 KiB per notify_user (~800 a
    // round) passes it by round 3.
    // The heap in use (mallinfo2) has no fragmentation in it, so its margin is tighter:
    // 2 MiB over round 1, which a leak of ~200 B per connection or ~1.5 KiB per call passes
    // by round 3. Within it, by design: the confirmation service remembers the ids of the
    // latest 4,096 ended confirmations (told_, ~210 B each, ~0.85 MiB when full, in round 5
    // or 6), so the heap grows ~0.2 MiB a round until then.
    if (rounds >= 2) {
        long long const baseline_kb = rss_kb.front();
        long long const peak = *std::max_element(peak_kb.begin() + 1, peak_kb.end());
        long long const growth_kb = peak - baseline_kb;
        long long const margin_kb = std::max<long long>(8 * 1024, growth_kb / 4);
        long long const heap_margin_kb = 2 * 1024;
        std::cout << "soak memory (kB): baseline (round 1, trimmed) " << baseline_kb
                  << ", peak of later rounds " << peak << ", margin " << margin_kb
                  << "; after each round (trimmed)";
        for (auto v : rss_kb) std::cout << " " << v;
        std::cout << "; peaks";
        for (auto v : peak_kb) std::cout << " " << v;
        std::cout << "; heap in use";
        for (auto v : heap_kb) std::cout << " " << v;
        std::cout << ", margin " << heap_margin_kb << std::endl;
        CHECK(growth_kb > 0);  // the load showed in the peak: the readings are live
        for (std::size_t r = 1; r < rss_kb.size(); ++r) {
            INFO("round " << r + 1 << ": VmRSS " << rss_kb[r] << " kB, baseline " << baseline_kb
                          << " kB, margin " << margin_kb << " kB; heap in use " << heap_kb[r]
                          << " kB, round 1 " << heap_kb.front() << " kB, margin "
                          << heap_margin_kb << " kB");
            CHECK(rss_kb[r] <= baseline_kb + margin_kb);
            CHECK(heap_kb[r] <= heap_kb.front() + heap_margin_kb);
        }
    }

    // The server stops cleanly: stop_server in time, nothing left.
    REQUIRE(server.send_line("QUIT"));
    auto const stopped = server.read_line(30s);
    REQUIRE(stopped.has_value());
    auto const last = parse_fields(*stopped);
    CHECK(last.at("verb") == "STOPPED");
    CHECK(number(last, "active") == 0);
    CHECK(number(last, "pending") == 0);
    CHECK(server.finish(30s) == 0);
    std::cout << "soak: " << rounds << " rounds in "
              << std::chrono::duration<double>(steady_clock::now() - started).count() << " s"
              << std::endl;
}
