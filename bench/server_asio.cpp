// SPDX-License-Identifier: BSL-1.0
//
// The ceiling: the bench protocol on bare Asio, one thread, with nothing a WebSocket library
// needs beyond the handshake and the framing. Each broadcast message is framed once into a
// shared log; every connection keeps an index into it and, whenever it is not writing,
// sends what it has not sent yet in one gather write of up to 64 frames (Asio's writev
// limit). The generator builds 64 messages per loop turn, so writes carry many frames. A
// connection's own frames (handshake answer, pongs, unicast messages, the close) wait in a
// private queue that goes first in its next write. TCP_NODELAY on every connection.

#include "bench_common.hpp"
#include "bench_servers.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

namespace wsbench_local {
namespace {

using tcp = asio::ip::tcp;

constexpr std::size_t frames_per_write = 64;
constexpr std::int64_t messages_per_turn = 64;
constexpr std::size_t max_client_frame = 1 << 20;
constexpr std::size_t max_request_head = 8192;

class ceiling_server;

class ceiling_session : public std::enable_shared_from_this<ceiling_session> {
public:
    ceiling_session(ceiling_server& server, tcp::socket socket)
        : server_(server), socket_(std::move(socket)), read_buffer_(4096) {}

    void start() { read(); }

    /// A frame for this connection only; written with its next write.
    void queue_private(std::string frame) {
        if (dead_) return;
        private_.push_back(std::move(frame));
    }
    /// Starts a write if none is in flight and something waits.
    void kick();

    bool in_broadcast() const noexcept { return upgraded_ && !closing_ && !dead_; }
    bool writing() const noexcept { return writing_; }
    std::uint64_t cursor() const noexcept { return cursor_; }
    long user() const noexcept { return user_; }

    std::size_t slot = static_cast<std::size_t>(-1);  ///< index in the server's session list

private:
    void read();
    void on_read(std::error_code ec, std::size_t n);
    bool handshake();
    bool parse_frames();
    void on_text(std::string_view text);
    void on_written(std::error_code ec);
    void fail();

    ceiling_server& server_;
    tcp::socket socket_;
    std::vector<char> read_buffer_;
    std::size_t read_begin_ = 0, read_end_ = 0;
    std::string fragments_;
    bool in_fragments_ = false;
    bool upgraded_ = false;
    bool closing_ = false;  ///< close frame queued: nothing from the log any more
    bool dead_ = false;
    bool writing_ = false;
    long user_ = -1;
    std::uint64_t cursor_ = 0;     ///< the next log frame to write
    std::uint64_t in_flight_end_ = 0;
    std::vector<std::string> private_, private_in_flight_;
    std::vector<asio::const_buffer> buffers_;
};

class ceiling_server {
public:
    explicit ceiling_server(server_settings const& settings)
        : io_(1), acceptor_(io_), retry_(io_), signals_(io_, SIGINT, SIGTERM), lifetime_(io_),
          timer_(io_) {
        tcp::endpoint const endpoint(asio::ip::make_address("127.0.0.1"), 0);
        acceptor_.open(endpoint.protocol());
        acceptor_.set_option(tcp::acceptor::reuse_address(true));
        acceptor_.bind(endpoint);
        acceptor_.listen(asio::socket_base::max_listen_connections);
        signals_.async_wait([](std::error_code ec, int) {
            if (!ec) std::_Exit(0);
        });
        lifetime_.expires_after(std::chrono::milliseconds(static_cast<long>(settings.max_lifetime_s * 1000)));
        lifetime_.async_wait([](std::error_code ec) {
            if (!ec) std::_Exit(3);
        });
    }

    void run() {
        accept();
        announce_port(acceptor_.local_endpoint().port());
        io_.run();
    }

    std::uint64_t log_end() const noexcept { return log_base_ + log_.size(); }
    std::string const& log_frame(std::uint64_t i) const { return log_[static_cast<std::size_t>(i - log_base_)]; }

    void add(std::shared_ptr<ceiling_session> const& s) {
        s->slot = sessions_.size();
        sessions_.push_back(s);
        if (s->user() >= 0) by_user_[s->user()] = s.get();
    }
    void remove(ceiling_session* s) {
        if (s->slot >= sessions_.size() || sessions_[s->slot].get() != s) return;
        auto it = by_user_.find(s->user());
        if (it != by_user_.end() && it->second == s) by_user_.erase(it);
        auto const slot = s->slot;
        auto keep = std::move(sessions_[slot]);  // destroyed after the swap-remove
        if (slot + 1 != sessions_.size()) {
            sessions_[slot] = std::move(sessions_.back());
            sessions_[slot]->slot = slot;
        }
        sessions_.pop_back();
        s->slot = static_cast<std::size_t>(-1);
        trim();
    }

    /// Wakes every connection that is not writing; drops log frames everyone has written.
    void flush() {
        for (auto& s : sessions_) {
            if (!s->writing()) s->kick();
        }
        trim();
    }

    void start(std::string_view action, std::string_view text) {
        job j;
        j.count = std::clamp<std::int64_t>(json_int(text, "count", 0), 0, max_count);
        j.size = static_cast<std::size_t>(std::clamp<std::int64_t>(json_int(text, "size", 200), 0, max_size));
        j.expect = static_cast<std::size_t>(std::clamp<std::int64_t>(json_int(text, "expect", 0), 0, 1 << 20));
        j.users = std::clamp<std::int64_t>(json_int(text, "users", 1), 1, 1 << 20);
        j.interval = std::chrono::microseconds(std::clamp<std::int64_t>(json_int(text, "interval_us", 10'000), 0, 10'000'000));
        if (action == "bench_fanout" || action == "bench") {  // bench: wsbench's wsload
            j.kind = job::fanout;
        } else if (action == "bench_unicast") {
            j.kind = job::unicast;
        } else if (action == "bench_lone") {
            j.kind = job::lone;
        } else {
            return;  // bench_confirm: the ceiling has no confirmations
        }
        auto shared = std::make_shared<job>(j);
        shared->give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        asio::post(io_, [this, shared] { step(shared); });
    }

private:
    struct job {
        enum kind_type { fanout, unicast, lone } kind = fanout;
        std::int64_t count = 0;
        std::size_t size = 200;
        std::size_t expect = 0;
        std::int64_t users = 1;
        std::chrono::microseconds interval{10'000};
        std::int64_t i = 0;
        bool waited = false;
        std::chrono::steady_clock::time_point give_up, next;
        std::mt19937_64 random{12345};
    };

    void step(std::shared_ptr<job> const& j) {
        if (!j->waited) {  // until `expect` connections are upgraded (at most 10 s)
            if (sessions_.size() < j->expect && std::chrono::steady_clock::now() < j->give_up) {
                timer_.expires_after(std::chrono::milliseconds(1));
                timer_.async_wait([this, j](std::error_code) { step(j); });
                return;
            }
            j->waited = true;
            j->next = std::chrono::steady_clock::now();
        }
        switch (j->kind) {
            case job::fanout:
                for (std::int64_t n = 0; n < messages_per_turn && j->i < j->count; ++n, ++j->i) {
                    log_.push_back(server_frame(0x1, bench_message(j->i, j->size)));
                }
                break;
            case job::unicast:
                for (std::int64_t n = 0; n < messages_per_turn && j->i < j->count; ++n, ++j->i) {
                    auto const user = static_cast<long>(j->random() % static_cast<std::uint64_t>(j->users));
                    auto it = by_user_.find(user);
                    if (it != by_user_.end()) it->second->queue_private(server_frame(0x1, bench_message(j->i, j->size)));
                }
                break;
            case job::lone:
                if (j->i < j->count) log_.push_back(server_frame(0x1, bench_message(j->i++, j->size)));
                break;
        }
        if (j->i >= j->count) log_.push_back(server_frame(0x1, bench_done_message(j->count)));
        flush();
        if (j->i >= j->count) return;
        if (j->kind == job::lone && j->interval.count() > 0) {
            j->next += j->interval;
            timer_.expires_at(j->next);
            timer_.async_wait([this, j](std::error_code) { step(j); });
        } else {
            asio::post(io_, [this, j] { step(j); });
        }
    }

    void trim() {
        auto low = log_end();
        for (auto const& s : sessions_) low = std::min(low, s->cursor());
        while (log_base_ < low) {
            log_.pop_front();
            ++log_base_;
        }
    }

    void accept() {
        acceptor_.async_accept([this](std::error_code ec, tcp::socket socket) {
            if (ec) {  // EMFILE, say: back off instead of spinning
                retry_.expires_after(std::chrono::milliseconds(10));
                retry_.async_wait([this](std::error_code) { accept(); });
                return;
            }
            std::error_code ignored;
            socket.set_option(tcp::no_delay(true), ignored);
            std::make_shared<ceiling_session>(*this, std::move(socket))->start();
            accept();
        });
    }

    asio::io_context io_;
    tcp::acceptor acceptor_;
    asio::steady_timer retry_;
    asio::signal_set signals_;
    asio::steady_timer lifetime_;
    asio::steady_timer timer_;  ///< one job at a time
    std::vector<std::shared_ptr<ceiling_session>> sessions_;  ///< upgraded connections
    std::unordered_map<long, ceiling_session*> by_user_;
    std::deque<std::string> log_;  ///< frame i is log_[i - log_base_]
    std::uint64_t log_base_ = 0;

    friend class ceiling_session;
};

void ceiling_session::read() {
    if (read_end_ == read_buffer_.size()) read_buffer_.resize(read_buffer_.size() * 2);
    socket_.async_read_some(asio::buffer(read_buffer_.data() + read_end_, read_buffer_.size() - read_end_),
                            [self = shared_from_this()](std::error_code ec, std::size_t n) {
                                self->on_read(ec, n);
                            });
}

void ceiling_session::on_read(std::error_code ec, std::size_t n) {
    if (dead_) return;
    if (ec) return fail();
    read_end_ += n;
    if (!upgraded_) {
        if (!handshake()) return;
        if (!upgraded_) return read();
    }
    if (!parse_frames()) return;
    if (!writing_) kick();
    read();
}

bool ceiling_session::handshake() {
    std::string_view const all(read_buffer_.data(), read_end_);
    auto const end = all.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        if (read_end_ > max_request_head) {
            fail();
            return false;
        }
        return true;
    }
    auto const head = all.substr(0, end + 2);
    auto const key = http_header(head, "Sec-WebSocket-Key");
    if (key.empty() || head.substr(0, 4) != "GET ") {
        fail();
        return false;
    }
    user_ = user_index_of(head.substr(0, head.find("\r\n")));
    std::string response =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: ";
    response += websocket_accept(key);
    response += "\r\n\r\n";
    read_begin_ = end + 4;
    upgraded_ = true;
    cursor_ = server_.log_end();  // only what is broadcast from now on
    server_.add(shared_from_this());
    queue_private(std::move(response));
    return true;
}

bool ceiling_session::parse_frames() {
    std::size_t need = 0;
    while (read_end_ - read_begin_ >= 2) {
        auto const available = read_end_ - read_begin_;
        auto const* p = reinterpret_cast<unsigned char const*>(read_buffer_.data() + read_begin_);
        std::uint64_t length = p[1] & 0x7F;
        std::size_t header = 2;
        if (length == 126) {
            if (available < 4) break;
            length = (std::uint64_t{p[2]} << 8) | p[3];
            header = 4;
        } else if (length == 127) {
            if (available < 10) break;
            length = 0;
            for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
            header = 10;
        }
        if ((p[1] & 0x80) == 0 || length > max_client_frame) {  // clients must mask
            fail();
            return false;
        }
        header += 4;
        if (available < header + length) {
            need = header + static_cast<std::size_t>(length);
            break;
        }
        auto const first = p[0];
        auto const* mask = p + header - 4;
        char* payload = read_buffer_.data() + read_begin_ + header;
        for (std::size_t i = 0; i < length; ++i) payload[i] = static_cast<char>(payload[i] ^ mask[i & 3]);
        read_begin_ += header + static_cast<std::size_t>(length);
        std::string_view const data(payload, static_cast<std::size_t>(length));
        bool const fin = (first & 0x80) != 0;
        switch (first & 0x0F) {
            case 0x0:
                if (!in_fragments_) break;
                fragments_.append(data);
                if (fragments_.size() > max_client_frame) {
                    fail();
                    return false;
                }
                if (fin) {
                    in_fragments_ = false;
                    on_text(fragments_);
                    fragments_.clear();
                }
                break;
            case 0x1:
            case 0x2:
                if (fin) {
                    on_text(data);
                } else {
                    in_fragments_ = true;
                    fragments_.assign(data);
                }
                break;
            case 0x8:  // echo the code; TCP ends once it is written
                if (!closing_) {
                    closing_ = true;
                    queue_private(server_frame(0x8, data.substr(0, std::min<std::size_t>(data.size(), 2))));
                }
                break;
            case 0x9:
                if (!closing_) queue_private(server_frame(0xA, data));
                break;
            default:
                break;
        }
        if (dead_) return false;
    }
    if (read_begin_ == read_end_) {
        read_begin_ = read_end_ = 0;
    } else if (read_begin_ > 0) {
        std::memmove(read_buffer_.data(), read_buffer_.data() + read_begin_, read_end_ - read_begin_);
        read_end_ -= read_begin_;
        read_begin_ = 0;
    }
    if (need > read_buffer_.size()) read_buffer_.resize(need);
    return true;
}

void ceiling_session::on_text(std::string_view text) {
    auto const action = json_string(text, "action");
    if (action == "ping") {
        std::string pong = "{\"type\":\"pong\",\"timestamp\":";
        auto const at = json_value_at(text, "timestamp");
        auto end = at;
        while (end < text.size() && text[end] != ',' && text[end] != '}') ++end;
        pong.append(at == std::string_view::npos ? std::string_view("null") : text.substr(at, end - at));
        pong += '}';
        queue_private(server_frame(0x1, pong));
    } else if (action.substr(0, 5) == "bench") {
        server_.start(action, text);
    }
}

void ceiling_session::kick() {
    if (writing_ || dead_) return;
    buffers_.clear();
    private_in_flight_.clear();
    private_in_flight_.swap(private_);
    for (auto const& frame : private_in_flight_) buffers_.emplace_back(asio::buffer(frame));
    in_flight_end_ = cursor_;
    if (in_broadcast()) {
        auto const end = std::min(server_.log_end(), cursor_ + frames_per_write);
        for (auto i = cursor_; i < end; ++i) buffers_.emplace_back(asio::buffer(server_.log_frame(i)));
        in_flight_end_ = end;
    }
    if (buffers_.empty()) {
        if (closing_) {  // the close frame is out: the server ends TCP first (RFC 6455 7.1.1)
            // Posted: kick() runs inside the server's loop over its sessions.
            asio::post(socket_.get_executor(), [self = shared_from_this()] {
                if (self->dead_) return;
                std::error_code ignored;
                self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                self->fail();
            });
        }
        return;
    }
    writing_ = true;
    asio::async_write(socket_, buffers_, [self = shared_from_this()](std::error_code ec, std::size_t) {
        self->on_written(ec);
    });
}

void ceiling_session::on_written(std::error_code ec) {
    writing_ = false;
    if (dead_) return;
    if (ec) return fail();
    private_in_flight_.clear();
    cursor_ = in_flight_end_;
    kick();
}

void ceiling_session::fail() {
    if (dead_) return;
    dead_ = true;
    std::error_code ignored;
    socket_.close(ignored);
    server_.remove(this);
}

}  // namespace

int serve_asio(server_settings const& settings) {
    prepare_server_process();
    ceiling_server server(settings);
    server.run();
    return 0;
}

}  // namespace wsbench_local
