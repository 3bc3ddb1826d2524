// SPDX-License-Identifier: BSL-1.0
//
// The load generator (load.hpp). Each I/O thread runs one io_context with its share of the
// clients; the calling thread only starts phases (by posting to the workers), polls atomic
// counters and reads /proc. A client takes one clock reading per read() and stamps every
// frame of that read with it, and parses the bench frames in place (the server's text starts
// with {"type":"bench","seq":), so the generator stays well below the server's CPU.

#include "load.hpp"

#include "bench_common.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

namespace wsbench_local {

// ---- measurement ----------------------------------------------------------------------------

void measurement::set(std::string const& key, double value) {
    for (auto& [k, v] : numbers) {
        if (k == key) {
            v = value;
            return;
        }
    }
    numbers.emplace_back(key, value);
}

double measurement::get(std::string const& key, double fallback) const {
    for (auto const& [k, v] : numbers) {
        if (k == key) return v;
    }
    return fallback;
}

bool measurement::has(std::string const& key) const {
    return std::any_of(numbers.begin(), numbers.end(), [&](auto const& kv) { return kv.first == key; });
}

std::string measurement::json() const {
    json_line line;
    line.add("tool", "wsmanager_bench").add("scenario", label).add("kind", kind).add("impl", impl);
    line.add("rep", rep);
    for (auto const& [k, v] : numbers) line.add(k, v);
    line.add("ok", ok);
    if (!note.empty()) line.add("note", note);
    return line.str();
}

namespace {

using tcp = asio::ip::tcp;

constexpr std::size_t max_server_frame = 16u << 20;

struct tally {
    std::uint64_t frames = 0, bytes = 0, out_of_order = 0, done = 0, other = 0;
    std::uint64_t pongs = 0, pong_mismatch = 0, server_pings = 0;
    std::uint64_t steps = 0, confirms_sent = 0, resolved = 0, error_frames = 0;
    std::uint64_t err_connect = 0, err_handshake = 0, err_read = 0, err_protocol = 0;
    std::uint64_t server_closes = 0;
    std::int64_t last_done = 0;
    std::int64_t first_frame = INT64_MAX;
    histogram latency;
    histogram latency_first, latency_other;  ///< of the clients on the first port, and the rest
    std::string result;  ///< the bench_confirm_result frame, when one came

    void merge(tally const& o) {
        frames += o.frames;
        bytes += o.bytes;
        out_of_order += o.out_of_order;
        done += o.done;
        other += o.other;
        pongs += o.pongs;
        pong_mismatch += o.pong_mismatch;
        server_pings += o.server_pings;
        steps += o.steps;
        confirms_sent += o.confirms_sent;
        resolved += o.resolved;
        error_frames += o.error_frames;
        err_connect += o.err_connect;
        err_handshake += o.err_handshake;
        err_read += o.err_read;
        err_protocol += o.err_protocol;
        server_closes += o.server_closes;
        last_done = std::max(last_done, o.last_done);
        first_frame = std::min(first_frame, o.first_frame);
        latency.merge(o.latency);
        latency_first.merge(o.latency_first);
        latency_other.merge(o.latency_other);
        if (result.empty()) result = o.result;
    }
    std::uint64_t errors() const {
        return err_connect + err_handshake + err_read + err_protocol + server_closes + error_frames +
               pong_mismatch;
    }
};

enum class failure { none, connect, handshake, read, protocol };

class fleet;
struct worker;

class client {
public:
    enum class state : std::uint8_t { idle, connecting, handshaking, open, closing, closed };

    /// `slot`: which of the settings' ports it connects to; `user`: its user_id.
    client(worker& owner, int index, std::size_t slot, std::string user);

    void connect();
    void send_text(std::string_view text) { send_frame(0x1, text); }
    void send_ping_action();
    void begin_close();
    state current() const noexcept { return state_; }

private:
    void on_connected(std::error_code ec);
    void read();
    void on_read(std::error_code ec, std::size_t n);
    int parse_handshake();  // -1 failed, 0 incomplete, 1 open
    bool parse_frames(std::int64_t now);
    bool on_frame(bool fin, int opcode, char* data, std::size_t size, std::int64_t now);
    void on_text(std::string_view text, std::int64_t now);
    void send_frame(std::uint8_t opcode, std::string_view payload);
    void write();
    void terminate(failure why);

    worker& owner_;
    int index_;
    std::size_t slot_;
    std::string user_;
    tcp::socket socket_;
    state state_ = state::idle;
    std::vector<char> buffer_;
    std::size_t begin_ = 0, end_ = 0;
    std::string expected_accept_;
    std::vector<std::string> queue_, sending_;
    std::vector<asio::const_buffer> buffers_;
    bool writing_ = false;
    bool in_fragments_ = false;
    std::string fragments_;
    std::int64_t last_seq_ = -1;
    bool done_ = false;
    bool ping_outstanding_ = false;
    std::int64_t ping_ts_ = 0;
};

struct worker {
    worker(fleet& f, int n);

    void start_connects();
    std::uint32_t random32() {  // xorshift64*
        random_ ^= random_ >> 12;
        random_ ^= random_ << 25;
        random_ ^= random_ >> 27;
        return static_cast<std::uint32_t>((random_ * 2685821657736338717ULL) >> 32);
    }

    fleet& owner;
    int index;
    asio::io_context io{1};  // before the clients: their sockets go first
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::vector<std::unique_ptr<client>> clients;
    std::size_t next_connect = 0;
    int connecting = 0;
    int max_connecting = 200;
    bool starting = false;
    tally counts;
    std::uint64_t random_;
    std::thread thread;
};

class fleet {
public:
    fleet(load_settings const& settings, int conns, bool control_apart, std::size_t read_buffer)
        : settings_(settings), conns_(conns), read_buffer_(read_buffer) {
        auto const host = asio::ip::make_address(settings.host);
        for (auto const port : settings.ports) endpoints_.emplace_back(host, static_cast<unsigned short>(port));
        for (auto const& ip : settings.source_ips) sources_.push_back(asio::ip::make_address(ip));
        if (sources_.empty() && conns > 25'000) {  // the ephemeral port range holds ~28k
            auto const needed = conns / 20'000 + 1;
            for (int i = 1; i <= needed; ++i) {
                sources_.push_back(asio::ip::make_address("127.0.0." + std::to_string(i)));
            }
        }
        auto const threads = std::clamp(settings.threads, 1, std::max(1, conns));
        for (int t = 0; t < threads; ++t) {
            workers_.push_back(std::make_unique<worker>(*this, t));
            workers_.back()->max_connecting = std::max(1, settings.connects_in_flight / threads);
        }
        auto const ports = endpoints_.size();
        for (int i = 0; i < conns; ++i) {
            auto& w = *workers_[static_cast<std::size_t>(i % threads)];
            auto const n = static_cast<std::size_t>(i);
            std::size_t slot = n % ports;
            std::string user = "u" + std::to_string(i);
            if (control_apart && i == 0) {
                slot = 0;
                user = "control";
            } else if (control_apart) {  // the users on the ports after the first, if any
                slot = ports == 1 ? 0 : 1 + (n - 1) % (ports - 1);
                user = "u" + std::to_string(i - 1);
            }
            w.clients.push_back(std::make_unique<client>(w, i, slot, std::move(user)));
        }
        for (auto& w : workers_) w->thread = std::thread([io = &w->io] { io->run(); });
    }

    fleet(fleet const&) = delete;
    fleet& operator=(fleet const&) = delete;

    ~fleet() {
        for (auto& w : workers_) {
            w->guard.reset();
            w->io.stop();
        }
        for (auto& w : workers_) {
            if (w->thread.joinable()) w->thread.join();
        }
    }

    /// Opens every connection (bounded by connect_timeout_s); the number open.
    int connect() {
        auto const deadline = mono_ns() + seconds_to_ns(settings_.connect_timeout_s);
        for (auto& w : workers_) asio::post(w->io, [p = w.get()] { p->start_connects(); });
        wait_until([&] { return opened.load() + failed.load() >= conns_; }, deadline);
        // Stragglers still connecting past the bound are dropped by close_all.
        return opened.load();
    }

    /// Runs f(worker&) on every worker's own thread and waits for all of them.
    template <class F>
    void on_each(F f) {
        std::vector<std::future<void>> done;
        for (auto& w : workers_) {
            auto promise = std::make_shared<std::promise<void>>();
            done.push_back(promise->get_future());
            asio::post(w->io, [p = w.get(), &f, promise] {
                f(*p);
                promise->set_value();
            });
        }
        for (auto& d : done) d.wait();
    }

    tally collect() {
        std::vector<tally> parts(workers_.size());
        on_each([&](worker& w) { parts[static_cast<std::size_t>(w.index)] = w.counts; });
        tally total;
        for (auto const& p : parts) total.merge(p);
        return total;
    }

    /// Sends `text` from the first open connection (the control connection); false if none.
    bool send_from_control(std::string const& text) {
        for (auto& w : workers_) {
            std::promise<bool> sent;
            auto result = sent.get_future();
            asio::post(w->io, [p = w.get(), &text, &sent] {
                for (auto& c : p->clients) {
                    if (c->current() == client::state::open) {
                        c->send_text(text);
                        sent.set_value(true);
                        return;
                    }
                }
                sent.set_value(false);
            });
            if (result.get()) return true;
        }
        return false;
    }

    /// Closing handshakes for every connection; true when all ended within close_timeout_s.
    bool close_all() {
        on_each([](worker& w) {
            w.next_connect = w.clients.size();  // no new connects
            for (auto& c : w.clients) c->begin_close();
        });
        return wait_until([&] { return closed.load() >= opened.load(); },
                          mono_ns() + seconds_to_ns(settings_.close_timeout_s));
    }

    template <class Predicate>
    static bool wait_until(Predicate done, std::int64_t deadline_ns) {
        while (!done()) {
            if (mono_ns() >= deadline_ns) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }

    load_settings const& settings() const noexcept { return settings_; }
    tcp::endpoint const& endpoint(std::size_t slot) const noexcept { return endpoints_[slot]; }
    std::vector<asio::ip::address> const& sources() const noexcept { return sources_; }
    std::size_t read_buffer() const noexcept { return read_buffer_; }

    std::atomic<int> opened{0}, failed{0}, closed{0}, finished{0};
    std::atomic<std::uint64_t> pongs{0}, resolved{0};
    std::atomic<bool> result_ready{false}, ready{false}, ready_answered{false};

private:
    load_settings settings_;
    int conns_;
    std::size_t read_buffer_;
    std::vector<tcp::endpoint> endpoints_;
    std::vector<asio::ip::address> sources_;
    std::vector<std::unique_ptr<worker>> workers_;
};

worker::worker(fleet& f, int n) : owner(f), index(n) {
    std::random_device device;
    random_ = (std::uint64_t{device()} << 32) ^ device() ^ (std::uint64_t(n + 1) * 0x9E3779B97F4A7C15ULL);
    if (random_ == 0) random_ = 88172645463325252ULL;
}

void worker::start_connects() {
    if (starting) return;  // a connect that fails at once re-enters here
    starting = true;
    while (connecting < max_connecting && next_connect < clients.size()) {
        auto& c = *clients[next_connect++];
        ++connecting;
        c.connect();
    }
    starting = false;
}

client::client(worker& owner, int index, std::size_t slot, std::string user)
    : owner_(owner), index_(index), slot_(slot), user_(std::move(user)), socket_(owner.io) {}

void client::connect() {
    state_ = state::connecting;
    auto const& f = owner_.owner;
    std::error_code ec;
    socket_.open(f.endpoint(slot_).protocol(), ec);
    if (ec) return terminate(failure::connect);
    if (!f.sources().empty()) {
        int one = 1;
        ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        socket_.bind(tcp::endpoint(f.sources()[static_cast<std::size_t>(index_) % f.sources().size()], 0), ec);
        if (ec) return terminate(failure::connect);
    }
    socket_.async_connect(f.endpoint(slot_), [this](std::error_code e) { on_connected(e); });
}

void client::on_connected(std::error_code ec) {
    if (state_ != state::connecting) return;
    if (ec) return terminate(failure::connect);
    std::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    state_ = state::handshaking;
    unsigned char key[16];
    for (int i = 0; i < 16; i += 4) {
        auto const r = owner_.random32();
        std::memcpy(key + i, &r, 4);
    }
    auto const encoded = base64(key, sizeof key);
    expected_accept_ = websocket_accept(encoded);
    auto const& settings = owner_.owner.settings();
    std::string request;
    request.reserve(256);
    request += "GET /?user_id=" + user_ + " HTTP/1.1\r\n";
    request += "Host: " + settings.host + ":" + std::to_string(settings.ports[slot_]) + "\r\n";
    request += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + encoded + "\r\n";
    request += "Sec-WebSocket-Version: 13\r\n\r\n";
    buffer_.resize(owner_.owner.read_buffer());
    queue_.push_back(std::move(request));
    write();
    read();
}

void client::read() {
    // --quickack: ACK at once what arrives, so a server's small write behind an unacknowledged
    // one (Nagle, no TCP_NODELAY) is not held for this side's delayed ACK (40 ms on Linux).
    if (owner_.owner.settings().quick_ack) {
        int one = 1;
        ::setsockopt(socket_.native_handle(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    socket_.async_read_some(asio::buffer(buffer_.data() + end_, buffer_.size() - end_),
                            [this](std::error_code ec, std::size_t n) { on_read(ec, n); });
}

void client::on_read(std::error_code ec, std::size_t n) {
    if (state_ == state::closed) return;
    if (ec) {
        if (state_ == state::closing) return terminate(failure::none);
        return terminate(state_ == state::handshaking ? failure::handshake : failure::read);
    }
    auto const now = mono_ns();
    end_ += n;
    if (state_ == state::handshaking) {
        auto const r = parse_handshake();
        if (r < 0) return;
        if (r == 0) {
            if (end_ == buffer_.size()) return terminate(failure::handshake);
            return read();
        }
    }
    if (!parse_frames(now) || state_ == state::closed) return;
    read();
}

int client::parse_handshake() {
    std::string_view const all(buffer_.data(), end_);
    auto const head_end = all.find("\r\n\r\n");
    if (head_end == std::string_view::npos) return 0;
    auto const head = all.substr(0, head_end + 2);
    if (head.substr(0, 12) != "HTTP/1.1 101" || http_header(head, "Sec-WebSocket-Accept") != expected_accept_) {
        if (owner_.owner.settings().verbose) {
            std::fprintf(stderr, "client %d: handshake refused: %.*s\n", index_,
                         static_cast<int>(std::min<std::size_t>(head.size(), 200)), head.data());
        }
        terminate(failure::handshake);
        return -1;
    }
    begin_ = head_end + 4;
    state_ = state::open;
    --owner_.connecting;
    owner_.owner.opened.fetch_add(1);
    owner_.start_connects();
    return 1;
}

bool client::parse_frames(std::int64_t now) {
    std::size_t need = 0;
    while (end_ - begin_ >= 2) {
        auto const available = end_ - begin_;
        auto const* p = reinterpret_cast<unsigned char const*>(buffer_.data() + begin_);
        std::uint64_t length = p[1] & 0x7F;
        std::size_t header = 2;
        if (length == 126) {
            if (available < 4) {
                need = 4;
                break;
            }
            length = (std::uint64_t{p[2]} << 8) | p[3];
            header = 4;
        } else if (length == 127) {
            if (available < 10) {
                need = 10;
                break;
            }
            length = 0;
            for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
            header = 10;
        }
        // Servers never mask (RFC 6455 5.1); no extension was negotiated, so no RSV bits.
        if ((p[1] & 0x80) != 0 || (p[0] & 0x70) != 0 || length > max_server_frame) {
            terminate(failure::protocol);
            return false;
        }
        if (available < header + length) {
            need = header + static_cast<std::size_t>(length);
            break;
        }
        auto const first = p[0];
        char* payload = buffer_.data() + begin_ + header;
        begin_ += header + static_cast<std::size_t>(length);
        if (!on_frame((first & 0x80) != 0, first & 0x0F, payload, static_cast<std::size_t>(length), now)) {
            return false;
        }
        if (state_ == state::closed) return false;
    }
    if (begin_ == end_) {
        begin_ = end_ = 0;
    } else if (begin_ > 0) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (need > buffer_.size()) buffer_.resize(std::max(need, buffer_.size() * 2));
    return true;
}

bool client::on_frame(bool fin, int opcode, char* data, std::size_t size, std::int64_t now) {
    switch (opcode) {
        case 0x1:
        case 0x2:
            if (in_fragments_) {
                terminate(failure::protocol);
                return false;
            }
            if (fin) {
                on_text(std::string_view(data, size), now);
            } else {
                in_fragments_ = true;
                fragments_.assign(data, size);
            }
            return true;
        case 0x0:
            if (!in_fragments_ || fragments_.size() + size > max_server_frame) {
                terminate(failure::protocol);
                return false;
            }
            fragments_.append(data, size);
            if (fin) {
                in_fragments_ = false;
                on_text(fragments_, now);
                fragments_.clear();
            }
            return true;
        case 0x8:  // answer once; the server then ends TCP
            if (state_ == state::open) {
                ++owner_.counts.server_closes;
                state_ = state::closing;
                send_frame(0x8, std::string_view(data, std::min<std::size_t>(size, 2)));
            }
            return true;
        case 0x9:
            ++owner_.counts.server_pings;
            send_frame(0xA, std::string_view(data, size));
            return true;
        case 0xA:
            return true;
        default:
            terminate(failure::protocol);
            return false;
    }
}

/// Reads the digits at `at` into `out`; the position after them, or npos.
std::size_t read_digits(std::string_view text, std::size_t at, std::int64_t& out) {
    auto const start = at;
    std::int64_t value = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') value = value * 10 + (text[at++] - '0');
    if (at == start) return std::string_view::npos;
    out = value;
    return at;
}

void client::on_text(std::string_view text, std::int64_t now) {
    static constexpr std::string_view bench_prefix = "{\"type\":\"bench\",\"seq\":";
    static constexpr std::string_view ts_key = ",\"ts\":";
    auto& counts = owner_.counts;
    if (text.substr(0, bench_prefix.size()) == bench_prefix) {
        std::int64_t seq = 0, ts = 0;
        auto at = read_digits(text, bench_prefix.size(), seq);
        if (at == std::string_view::npos || text.substr(at, ts_key.size()) != ts_key ||
            read_digits(text, at + ts_key.size(), ts) == std::string_view::npos) {
            ++counts.err_protocol;
            return;
        }
        ++counts.frames;
        counts.bytes += text.size();
        if (seq <= last_seq_) ++counts.out_of_order;
        last_seq_ = seq;
        counts.latency.add(now - ts);
        (slot_ == 0 ? counts.latency_first : counts.latency_other).add(now - ts);
        counts.first_frame = std::min(counts.first_frame, now);
        return;
    }
    auto const type = json_string(text, "type");
    auto& f = owner_.owner;
    if (type == "bench_done") {
        ++counts.done;
        if (!done_) {
            done_ = true;
            counts.last_done = std::max(counts.last_done, now);
            f.finished.fetch_add(1);
        }
    } else if (type == "task_step_result") {
        ++counts.steps;
        auto const id = json_string(text, "callback_id");
        std::string answer = "{\"action\":\"confirm\",\"callback_id\":\"";
        answer.append(id);
        answer += "\",\"proceed\":true}";
        send_text(answer);
        ++counts.confirms_sent;
    } else if (type == "confirmation_resolved") {
        ++counts.resolved;
        f.resolved.fetch_add(1);
    } else if (type == "pong") {
        if (!ping_outstanding_) {
            ++counts.other;
            return;
        }
        ping_outstanding_ = false;
        ++counts.pongs;
        if (json_int(text, "timestamp", -1) != ping_ts_) ++counts.pong_mismatch;
        f.pongs.fetch_add(1);
    } else if (type == "bench_confirm_result") {
        counts.result.assign(text);
        f.result_ready.store(true);
    } else if (type == "bench_ready") {
        f.ready.store(json_int(text, "ready", 0) == 1);
        f.ready_answered.store(true);
    } else if (type == "error") {
        ++counts.error_frames;
        if (f.settings().verbose) std::fprintf(stderr, "client %d: %.*s\n", index_, static_cast<int>(text.size()), text.data());
    } else {
        ++counts.other;  // `connected`, say
    }
}

void client::send_ping_action() {
    if (state_ != state::open) return;
    ping_ts_ = mono_ns();
    ping_outstanding_ = true;
    char text[80];
    int const n = std::snprintf(text, sizeof text, "{\"action\":\"ping\",\"timestamp\":%" PRId64 "}", ping_ts_);
    send_text(std::string_view(text, static_cast<std::size_t>(n)));
}

void client::send_frame(std::uint8_t opcode, std::string_view payload) {
    if (state_ == state::closed || state_ == state::idle || state_ == state::connecting) return;
    std::string frame;
    auto const n = payload.size();
    frame.reserve(n + 14);
    frame.push_back(static_cast<char>(0x80 | opcode));
    if (n < 126) {
        frame.push_back(static_cast<char>(0x80 | n));
    } else if (n <= 0xFFFF) {
        frame.push_back(static_cast<char>(0x80 | 126));
        frame.push_back(static_cast<char>((n >> 8) & 0xFF));
        frame.push_back(static_cast<char>(n & 0xFF));
    } else {
        frame.push_back(static_cast<char>(0x80 | 127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            frame.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xFF));
        }
    }
    auto const mask_word = owner_.random32();
    unsigned char mask[4];
    std::memcpy(mask, &mask_word, 4);
    frame.append(reinterpret_cast<char const*>(mask), 4);
    auto const at = frame.size();
    frame.append(payload);
    for (std::size_t i = 0; i < n; ++i) frame[at + i] = static_cast<char>(frame[at + i] ^ static_cast<char>(mask[i & 3]));
    queue_.push_back(std::move(frame));
    if (!writing_) write();
}

void client::write() {
    if (writing_ || queue_.empty() || state_ == state::closed) return;
    sending_.swap(queue_);
    queue_.clear();
    buffers_.clear();
    for (auto const& s : sending_) buffers_.emplace_back(asio::buffer(s));
    writing_ = true;
    asio::async_write(socket_, buffers_, [this](std::error_code ec, std::size_t) {
        writing_ = false;
        sending_.clear();
        if (state_ == state::closed) return;
        if (ec) {
            if (state_ == state::closing) return terminate(failure::none);
            return terminate(failure::read);
        }
        write();
    });
}

void client::begin_close() {
    if (state_ == state::connecting || state_ == state::handshaking || state_ == state::idle) {
        if (state_ != state::idle) terminate(failure::none);
        return;
    }
    if (state_ != state::open) return;
    state_ = state::closing;
    char const code[2] = {static_cast<char>(0x03), static_cast<char>(0xE8)};  // 1000
    send_frame(0x8, std::string_view(code, 2));
}

void client::terminate(failure why) {
    if (state_ == state::closed) return;
    auto const before = state_;
    state_ = state::closed;
    std::error_code ignored;
    socket_.close(ignored);
    auto& counts = owner_.counts;
    switch (why) {
        case failure::none: break;
        case failure::connect: ++counts.err_connect; break;
        case failure::handshake: ++counts.err_handshake; break;
        case failure::read: ++counts.err_read; break;
        case failure::protocol: ++counts.err_protocol; break;
    }
    auto& f = owner_.owner;
    if (before == state::connecting || before == state::handshaking) {
        --owner_.connecting;
        f.failed.fetch_add(1);
        owner_.start_connects();
        return;
    }
    if (!done_) {
        done_ = true;
        f.finished.fetch_add(1);  // nothing more will come: do not wait for it
    }
    f.closed.fetch_add(1);
}

void sleep_s(double seconds) {
    std::this_thread::sleep_for(std::chrono::microseconds(static_cast<std::int64_t>(seconds * 1e6)));
}

double us(std::int64_t ns) { return static_cast<double>(ns) / 1000.0; }

void put_latency(measurement& m, histogram const& h, std::string const& prefix) {
    m.set(prefix + "_p50_us", us(h.quantile(0.50)));
    m.set(prefix + "_p90_us", us(h.quantile(0.90)));
    m.set(prefix + "_p99_us", us(h.quantile(0.99)));
    m.set(prefix + "_p999_us", us(h.quantile(0.999)));
    m.set(prefix + "_max_us", us(h.max()));
    m.set(prefix + "_mean_us", h.mean() / 1000.0);
}

void put_errors(measurement& m, tally const& t) {
    m.set("errors", static_cast<double>(t.errors()));
    m.set("err_connect", static_cast<double>(t.err_connect));
    m.set("err_handshake", static_cast<double>(t.err_handshake));
    m.set("err_read", static_cast<double>(t.err_read));
    m.set("err_protocol", static_cast<double>(t.err_protocol));
    m.set("server_closes", static_cast<double>(t.server_closes));
    m.set("error_frames", static_cast<double>(t.error_frames));
}

/// The server side's CPU times: every node's, and the cluster's redis-server's.
struct server_cpu {
    std::vector<cpu_times> nodes;
    cpu_times redis;

    static server_cpu read(load_settings const& settings) {
        server_cpu c;
        if (settings.server_pid > 0) c.nodes.push_back(read_cpu(settings.server_pid));
        for (auto const pid : settings.peer_pids) c.nodes.push_back(read_cpu(pid));
        if (settings.redis_pid > 0) c.redis = read_cpu(settings.redis_pid);
        return c;
    }
};

/// server_cpu_pct: all nodes together (so one node and two compare as the server's cost);
/// with several, each node's too; redis_cpu_pct apart.
void put_server_cpu(measurement& m, load_settings const& settings, server_cpu const& before,
                    server_cpu const& after, double wall) {
    if (before.nodes.empty() || before.nodes.size() != after.nodes.size()) return;
    double total = 0;
    for (std::size_t i = 0; i < before.nodes.size(); ++i) {
        auto const pct = cpu_percent(before.nodes[i], after.nodes[i], wall);
        if (pct < 0) return;
        total += pct;
        if (before.nodes.size() > 1) m.set("node" + std::to_string(i + 1) + "_cpu_pct", pct);
    }
    m.set("server_cpu_pct", total);
    if (settings.redis_pid > 0) m.set("redis_cpu_pct", cpu_percent(before.redis, after.redis, wall));
}

/// bench_ready (scenario::await_ready): true once the server has answered that it holds
/// every connection. A node hears of the others' connections by their heartbeats (1 s), so
/// this takes up to about two seconds in a cluster; outside the measured phase.
bool await_ready(fleet& f, int open, std::string& note) {
    json_line ask;
    ask.add("action", "bench_ready").add("expect", open);
    if (!f.send_from_control(ask.str())) {
        note = "no open connection to send bench_ready from";
        return false;
    }
    // The server gives up after 15 s and says so; 20 s covers its answer.
    if (!fleet::wait_until([&] { return f.ready_answered.load(); }, mono_ns() + seconds_to_ns(20))) {
        note = "no answer to bench_ready within 20 s";
        return false;
    }
    if (!f.ready.load()) note = "the server never saw every connection (bench_ready)";
    return f.ready.load();
}

/// fanout, unicast and lone: the server sends, the clients count, stamp and order-check.
double settle_s(scenario const& what) {
    return what.settle_ms >= 0 ? what.settle_ms / 1000.0 : 0.1 + what.conns / 20000.0;
}

void measure_stream(fleet& f, load_settings const& settings, scenario const& what, int open,
                    measurement& m) {
    sleep_s(settle_s(what));  // let the last handshakes settle
    if (what.await_ready && !await_ready(f, open, m.note)) return;
    json_line action;
    action.add("action", what.action.empty() ? "bench_" + what.kind : what.action);
    action.add("count", what.count).add("size", what.size);
    action.add("expect", open).add("users", what.conns).add("interval_us", what.interval_us);
    auto const server0 = server_cpu::read(settings);
    auto const self0 = read_self_cpu();
    auto const rss0 = read_rss_kb(settings.server_pid);
    auto const t0 = mono_ns();
    bool const sent = f.send_from_control(action.str());
    bool const complete = sent && fleet::wait_until([&] { return f.finished.load() >= open; },
                                                    t0 + seconds_to_ns(what.timeout_s));
    auto const t1 = mono_ns();
    auto const self1 = read_self_cpu();
    auto const server1 = server_cpu::read(settings);
    auto const rss1 = read_rss_kb(settings.server_pid);
    auto const t = f.collect();

    auto const expected = what.kind == "unicast" ? static_cast<std::uint64_t>(what.count)
                                                 : static_cast<std::uint64_t>(open) * static_cast<std::uint64_t>(what.count);
    auto const last = t.last_done > 0 ? t.last_done : t1;
    double const duration = static_cast<double>(last - t0) / 1e9;
    double const wall = static_cast<double>(t1 - t0) / 1e9;
    m.set("count", static_cast<double>(what.count));
    m.set("size", what.size);
    if (what.kind == "lone") m.set("interval_us", what.interval_us);
    m.set("frames_expected", static_cast<double>(expected));
    m.set("frames_received", static_cast<double>(t.frames));
    m.set("lost", static_cast<double>(expected) - static_cast<double>(t.frames));
    m.set("out_of_order", static_cast<double>(t.out_of_order));
    m.set("bench_done", static_cast<double>(t.done));
    m.set("duration_s", duration);
    m.set("frames_per_s", duration > 0 ? static_cast<double>(t.frames) / duration : 0.0);
    m.set("mbytes_per_s", duration > 0 ? static_cast<double>(t.bytes) / duration / 1e6 : 0.0);
    put_latency(m, t.latency, "lat");
    if (settings.ports.size() > 1) {  // the frames that crossed to another node, and the rest
        put_latency(m, t.latency_first, "lat_first");
        put_latency(m, t.latency_other, "lat_other");
    }
    m.set("first_frame_after_us", t.first_frame != INT64_MAX ? us(t.first_frame - t0) : -1.0);
    put_server_cpu(m, settings, server0, server1, wall);
    if (settings.server_pid > 0) {
        m.set("server_rss_before_kb", static_cast<double>(rss0));
        m.set("server_rss_after_kb", static_cast<double>(rss1));
    }
    m.set("client_cpu_pct", cpu_percent(self0, self1, wall));
    m.set("client_sys_pct", self0.valid() && self1.valid() && wall > 0 ? 100.0 * (self1.sys - self0.sys) / wall : -1.0);
    put_errors(m, t);
    m.ok = complete && t.frames == expected && t.out_of_order == 0 && t.errors() == 0;
    if (!sent) {
        m.note = "no open connection to send the action from";
    } else if (!complete) {
        m.note = "timed out after " + std::to_string(what.timeout_s) + " s";
    } else if (!m.ok) {
        m.note = "lost, reordered or failed frames";
    }
}

/// notify_user round trips: the server measures notify -> resolve, the clients answer.
void measure_confirm(fleet& f, load_settings const& settings, scenario const& what, int open,
                     measurement& m) {
    sleep_s(settle_s(what));
    if (what.await_ready && !await_ready(f, open, m.note)) return;
    json_line action;
    action.add("action", "bench_confirm").add("count", what.count).add("inflight", what.inflight);
    action.add("users", what.conns).add("expect", open);
    auto const server0 = server_cpu::read(settings);
    auto const self0 = read_self_cpu();
    auto const t0 = mono_ns();
    bool const sent = f.send_from_control(action.str());
    bool const answered = sent && fleet::wait_until([&] { return f.result_ready.load(); },
                                                    t0 + seconds_to_ns(what.timeout_s));
    auto const t1 = mono_ns();
    auto const self1 = read_self_cpu();
    auto const server1 = server_cpu::read(settings);
    // The last confirmation_resolved frames may still be on their way to other connections.
    fleet::wait_until([&] { return f.resolved.load() >= static_cast<std::uint64_t>(what.count); },
                      mono_ns() + seconds_to_ns(5));
    auto const t = f.collect();
    double const wall = static_cast<double>(t1 - t0) / 1e9;

    auto field = [&](char const* key) { return static_cast<double>(json_int(t.result, key, -1)); };
    double const resolved = field("resolved");
    double const elapsed_s = field("elapsed_us") / 1e6;
    m.set("count", static_cast<double>(what.count));
    m.set("inflight", what.inflight);
    m.set("resolved", resolved);
    m.set("resolved_by_user", field("by_user"));
    m.set("resolved_by_timeout", field("by_timeout"));
    m.set("notify_errors", field("errors"));
    m.set("duration_s", elapsed_s);
    m.set("confirmations_per_s", elapsed_s > 0 ? resolved / elapsed_s : 0.0);
    m.set("rt_p50_us", field("p50_us"));
    m.set("rt_p90_us", field("p90_us"));
    m.set("rt_p99_us", field("p99_us"));
    m.set("rt_max_us", field("max_us"));
    m.set("rt_mean_us", field("mean_us"));
    m.set("client_requests", static_cast<double>(t.steps));
    m.set("client_confirms_sent", static_cast<double>(t.confirms_sent));
    m.set("client_resolved_frames", static_cast<double>(t.resolved));
    put_server_cpu(m, settings, server0, server1, wall);
    m.set("client_cpu_pct", cpu_percent(self0, self1, wall));
    put_errors(m, t);
    auto const c = static_cast<double>(what.count);
    m.ok = answered && resolved == c && field("by_user") == c && field("errors") == 0 &&
           static_cast<double>(t.resolved) == c && static_cast<double>(t.steps) == c && t.errors() == 0;
    if (!sent) {
        m.note = "no open connection to send the action from";
    } else if (!answered) {
        m.note = "no bench_confirm_result within " + std::to_string(what.timeout_s) + " s";
    } else if (!m.ok) {
        m.note = "a confirmation did not resolve by the user's answer";
    }
}

/// Idle connections: memory per connection, and what keepalive costs while nothing happens.
void measure_idle(fleet& f, load_settings const& settings, scenario const& what, int open,
                  long rss_fresh, measurement& m) {
    sleep_s(1.0);
    auto const rss_open = read_rss_kb(settings.server_pid);
    f.on_each([](worker& w) { w.counts.server_pings = 0; });
    auto const server0 = read_cpu(settings.server_pid);
    auto const self0 = read_self_cpu();
    auto const t0 = mono_ns();
    sleep_s(what.window_s);
    auto const t1 = mono_ns();
    auto const self1 = read_self_cpu();
    auto const server1 = read_cpu(settings.server_pid);
    auto const rss_held = read_rss_kb(settings.server_pid);
    auto const pings = f.collect().server_pings;
    double const wall = static_cast<double>(t1 - t0) / 1e9;

    // Liveness: one ping action per connection, every pong back.
    f.on_each([](worker& w) {
        for (auto& c : w.clients) c->send_ping_action();
    });
    fleet::wait_until([&] { return f.pongs.load() >= static_cast<std::uint64_t>(open); },
                      mono_ns() + seconds_to_ns(15));
    auto const t = f.collect();

    m.set("window_s", wall);
    if (settings.server_pid > 0) {
        m.set("server_rss_fresh_kb", static_cast<double>(rss_fresh));
        m.set("server_rss_open_kb", static_cast<double>(rss_open));
        m.set("server_rss_held_kb", static_cast<double>(rss_held));
        if (rss_fresh >= 0 && rss_held >= 0 && open > 0) {
            m.set("rss_per_conn_bytes", static_cast<double>(rss_held - rss_fresh) * 1024.0 / open);
        }
        m.set("server_idle_cpu_pct", cpu_percent(server0, server1, wall));
    }
    m.set("client_cpu_pct", cpu_percent(self0, self1, wall));
    m.set("keepalive_pings", static_cast<double>(pings));
    m.set("keepalive_pings_per_s", wall > 0 ? static_cast<double>(pings) / wall : 0.0);
    m.set("alive", static_cast<double>(t.pongs));
    put_errors(m, t);
    m.ok = t.pongs == static_cast<std::uint64_t>(open) && t.errors() == 0;
    if (!m.ok) m.note = "not every idle connection answered its ping";
}

}  // namespace

measurement run_load(load_settings const& settings, scenario const& what) {
    measurement m;
    m.kind = what.kind;
    raise_file_limit();
    if (settings.ports.empty()) {
        m.note = "no server port";
        return m;
    }
    int const conns = what.conns + (what.control_apart ? 1 : 0);
    if (static_cast<std::size_t>(conns) + 64 > file_limit()) {
        m.note = "the file limit (" + std::to_string(file_limit()) + ") is below the connections";
        return m;
    }
    std::size_t const read_buffer = what.kind == "idle" ? 2048 : (what.conns <= 1000 ? 65536 : 16384);
    auto const rss_fresh = read_rss_kb(settings.server_pid);
    fleet f(settings, conns, what.control_apart, read_buffer);
    auto const t_connect = mono_ns();
    int const open = f.connect();
    double const connect_s = static_cast<double>(mono_ns() - t_connect) / 1e9;
    m.set("conns", conns);
    m.set("conns_open", open);
    m.set("connect_s", connect_s);
    m.set("connect_rate", connect_s > 0 ? open / connect_s : 0.0);
    if (settings.ports.size() > 1) m.set("nodes", static_cast<double>(settings.ports.size()));
    if (settings.quick_ack) m.set("client_quickack", 1);
    if (open == conns) {
        if (what.kind == "confirm") {
            measure_confirm(f, settings, what, open, m);
        } else if (what.kind == "idle") {
            measure_idle(f, settings, what, open, rss_fresh, m);
        } else {
            measure_stream(f, settings, what, open, m);
        }
    } else {
        auto const t = f.collect();
        put_errors(m, t);
        m.note = std::to_string(conns - open) + " connections did not open";
    }
    bool const clean = f.close_all();
    m.set("closed_clean", clean ? 1 : 0);
    return m;
}

}  // namespace wsbench_local
