// SPDX-License-Identifier: BSL-1.0
//
// Fan-out benchmark: one server sends M messages to K connected clients, three ways, in
// the same process and run, so the ratios hold on a shared, noisy machine:
//
//   raw          a bare Asio server that frames each message once and gathers each
//                connection's queued frames into one write (the target to approach)
//   websocketpp  websocketpp used plainly: con->send(text) per connection, which copies and
//                frames the payload once per connection
//   wsmanager    WebSocketManager::broadcast_message: serialized and framed once, shared
//
// Clients are raw TCP sockets on their own thread that do the upgrade by hand and count
// frames. Time runs from the first send until every client has every message.
//
//   wsmanager_bench_fanout [--clients K] [--messages M] [--size BYTES] [--rounds R]

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>
#include <asio/use_future.hpp>
#include <openssl/sha.h>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

struct Settings {
    int clients = 200;
    int messages = 2000;
    std::size_t size = 512;
    int rounds = 3;
};

std::string make_payload(std::size_t size, int sequence) {
    std::string text = R"({"type":"task_progress","task_id":"task-42","sequence":)" +
                       std::to_string(sequence) + R"(,"message":")";
    while (text.size() + 2 < size) text.push_back('x');
    text += "\"}";
    return text;
}

std::string frame_text(std::string const& payload) {
    std::string frame;
    frame.push_back(static_cast<char>(0x81));
    auto const n = payload.size();
    if (n < 126) {
        frame.push_back(static_cast<char>(n));
    } else if (n < 65536) {
        frame.push_back(static_cast<char>(126));
        frame.push_back(static_cast<char>((n >> 8) & 0xFF));
        frame.push_back(static_cast<char>(n & 0xFF));
    } else {
        frame.push_back(static_cast<char>(127));
        for (int shift = 56; shift >= 0; shift -= 8) {
            frame.push_back(static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xFF));
        }
    }
    return frame + payload;
}

// ---- clients ----------------------------------------------------------------------------

/// K raw WebSocket clients on one thread, counting text frames.
class ClientFleet {
public:
    ClientFleet(std::uint16_t port, int clients) : expected_per_client_(0) {
        for (int i = 0; i < clients; ++i) {
            auto c = std::make_unique<Client>(io_);
            tcp::socket& socket = c->socket;
            socket.connect(tcp::endpoint(asio::ip::address_v4::loopback(), port));
            socket.set_option(tcp::no_delay(true));
            std::string request =
                "GET /?user_id=u" + std::to_string(i) +
                " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
            asio::write(socket, asio::buffer(request));
            asio::streambuf response;
            asio::read_until(socket, response, "\r\n\r\n");
            // Bytes after the headers (e.g. wsmanager's `connected` frame) are frames too.
            std::string rest(asio::buffers_begin(response.data()), asio::buffers_end(response.data()));
            c->pending = rest.substr(rest.find("\r\n\r\n") + 4);
            clients_.push_back(std::move(c));
        }
    }

    /// Starts counting: every client must receive `per_client` more text frames whose
    /// payload starts with the benchmark's prefix.
    std::future<void> expect(int per_client) {
        expected_per_client_ = per_client;
        remaining_.store(static_cast<int>(clients_.size()));
        done_ = std::promise<void>();
        for (auto& c : clients_) {
            c->received = 0;
            parse(*c);
            read(*c);
        }
        return done_.get_future();
    }

    void run_for_round() {
        io_.restart();
        io_.run();
    }

private:
    struct Client {
        explicit Client(asio::io_context& io) : socket(io) {}
        tcp::socket socket;
        std::string pending;
        std::array<char, 65536> buffer{};
        int received = 0;
        bool finished = false;
    };

    void read(Client& c) {
        c.finished = c.received >= expected_per_client_;
        if (c.finished) return;
        c.socket.async_read_some(asio::buffer(c.buffer), [this, &c](std::error_code ec, std::size_t n) {
            if (ec) {
                std::fprintf(stderr, "client read failed: %s\n", ec.message().c_str());
                std::exit(1);
            }
            c.pending.append(c.buffer.data(), n);
            parse(c);
            read(c);
        });
    }

    void parse(Client& c) {
        std::size_t offset = 0;
        while (c.pending.size() - offset >= 2) {
            auto const* p = reinterpret_cast<unsigned char const*>(c.pending.data() + offset);
            std::size_t header = 2;
            std::uint64_t length = p[1] & 0x7F;
            if (length == 126) {
                if (c.pending.size() - offset < 4) break;
                length = (std::uint64_t{p[2]} << 8) | p[3];
                header = 4;
            } else if (length == 127) {
                if (c.pending.size() - offset < 10) break;
                length = 0;
                for (int i = 0; i < 8; ++i) length = (length << 8) | p[2 + i];
                header = 10;
            }
            if (c.pending.size() - offset < header + length) break;
            bool const counted = (p[0] & 0x0F) == 0x1 && length > 30 &&
                                 std::memcmp(p + header, R"({"type":"task_progress")", 23) == 0;
            offset += header + length;
            if (counted && ++c.received == expected_per_client_) {
                if (remaining_.fetch_sub(1) == 1) done_.set_value();
            }
        }
        c.pending.erase(0, offset);
    }

    asio::io_context io_;
    std::vector<std::unique_ptr<Client>> clients_;
    int expected_per_client_;
    std::atomic<int> remaining_{0};
    std::promise<void> done_;
};

// ---- the raw Asio baseline --------------------------------------------------------------

std::string websocket_accept(std::string const& key) {
    std::string const text = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<unsigned char const*>(text.data()), text.size(), digest);
    static constexpr char table[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (int i = 0; i < SHA_DIGEST_LENGTH; i += 3) {
        std::uint32_t chunk = std::uint32_t{digest[i]} << 16;
        if (i + 1 < SHA_DIGEST_LENGTH) chunk |= std::uint32_t{digest[i + 1]} << 8;
        if (i + 2 < SHA_DIGEST_LENGTH) chunk |= digest[i + 2];
        out.push_back(table[(chunk >> 18) & 63]);
        out.push_back(table[(chunk >> 12) & 63]);
        out.push_back(i + 1 < SHA_DIGEST_LENGTH ? table[(chunk >> 6) & 63] : '=');
        out.push_back(i + 2 < SHA_DIGEST_LENGTH ? table[chunk & 63] : '=');
    }
    return out;
}

class RawServer {
public:
    RawServer() : acceptor_(io_, tcp::endpoint(asio::ip::address_v4::loopback(), 0)) {
        accept();
        thread_ = std::thread([this] { io_.run(); });
    }
    ~RawServer() {
        work_.reset();
        io_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

    void wait_for(std::size_t count) {
        while (ready_.load() < count) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }

    /// Frames once; each connection queues the same shared frame.
    void broadcast(std::string const& payload) {
        auto frame = std::make_shared<std::string const>(frame_text(payload));
        asio::post(io_, [this, frame] {
            for (auto& session : sessions_) session->send(frame);
        });
    }

private:
    struct Session : std::enable_shared_from_this<Session> {
        explicit Session(tcp::socket s) : socket(std::move(s)) {}
        tcp::socket socket;
        asio::streambuf request;
        std::string response;
        std::vector<std::shared_ptr<std::string const>> queue, writing;
        std::vector<asio::const_buffer> buffers;

        void send(std::shared_ptr<std::string const> const& frame) {
            queue.push_back(frame);
            if (writing.empty()) flush();
        }
        void flush() {
            writing.swap(queue);
            buffers.clear();
            for (auto& f : writing) buffers.emplace_back(asio::buffer(*f));
            asio::async_write(socket, buffers, [self = shared_from_this()](std::error_code ec, std::size_t) {
                if (ec) return;
                self->writing.clear();
                if (!self->queue.empty()) self->flush();
            });
        }
    };

    void accept() {
        acceptor_.async_accept([this](std::error_code ec, tcp::socket socket) {
            if (ec) return;
            socket.set_option(tcp::no_delay(true));
            auto session = std::make_shared<Session>(std::move(socket));
            asio::async_read_until(session->socket, session->request, "\r\n\r\n",
                                   [this, session](std::error_code ec, std::size_t) {
                if (ec) return;
                std::string head(asio::buffers_begin(session->request.data()),
                                 asio::buffers_end(session->request.data()));
                auto const key_at = head.find("Sec-WebSocket-Key: ") + 19;
                auto const key = head.substr(key_at, head.find("\r\n", key_at) - key_at);
                session->response =
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: " + websocket_accept(key) + "\r\n\r\n";
                asio::async_write(session->socket, asio::buffer(session->response),
                                  [this, session](std::error_code ec, std::size_t) {
                    if (ec) return;
                    sessions_.push_back(session);
                    ready_.fetch_add(1);
                });
            });
            accept();
        });
    }

    asio::io_context io_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{io_.get_executor()};
    tcp::acceptor acceptor_;
    std::vector<std::shared_ptr<Session>> sessions_;
    std::atomic<std::size_t> ready_{0};
    std::thread thread_;
};

// ---- plain websocketpp ------------------------------------------------------------------

struct quiet_asio : websocketpp::config::asio {
    static const websocketpp::log::level elog_level = websocketpp::log::elevel::none;
    static const websocketpp::log::level alog_level = websocketpp::log::alevel::none;
};

class PlainWebsocketppServer {
public:
    PlainWebsocketppServer() {
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.clear_error_channels(websocketpp::log::elevel::all);
        server_.init_asio();
        server_.set_open_handler([this](websocketpp::connection_hdl hdl) {
            connections_.push_back(hdl);
            ready_.fetch_add(1);
        });
        server_.listen(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
        server_.start_accept();
        asio::error_code ec;
        port_ = server_.get_local_endpoint(ec).port();
        thread_ = std::thread([this] { server_.run(); });
    }
    ~PlainWebsocketppServer() {
        server_.stop();
        thread_.join();
    }
    std::uint16_t port() const { return port_; }
    void wait_for(std::size_t count) {
        while (ready_.load() < count) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    /// The usual websocketpp broadcast: send(text) to each connection.
    void broadcast(std::string payload) {
        asio::post(server_.get_io_service(), [this, payload = std::move(payload)] {
            for (auto& hdl : connections_) {
                websocketpp::lib::error_code ec;
                server_.send(hdl, payload, websocketpp::frame::opcode::text, ec);
            }
        });
    }

private:
    websocketpp::server<quiet_asio> server_;
    std::vector<websocketpp::connection_hdl> connections_;
    std::atomic<std::size_t> ready_{0};
    std::uint16_t port_ = 0;
    std::thread thread_;
};

// ---- the harness --------------------------------------------------------------------------

/// Connects the fleet, then times `rounds` rounds of M sends; returns the best round's
/// messages delivered per second (message x client).
template <class Send>
double measure(char const* name, std::uint16_t port, std::function<void(std::size_t)> wait_ready,
               Send send, Settings const& s) {
    ClientFleet fleet(port, s.clients);
    wait_ready(static_cast<std::size_t>(s.clients));
    std::vector<std::string> payloads;
    for (int i = 0; i < s.messages; ++i) payloads.push_back(make_payload(s.size, i));
    double best = 0;
    for (int round = 0; round < s.rounds; ++round) {
        auto done = fleet.expect(s.messages);
        std::thread clients([&] { fleet.run_for_round(); });
        auto const start = clock_type::now();
        for (auto const& payload : payloads) send(payload);
        done.wait();
        auto const seconds = std::chrono::duration<double>(clock_type::now() - start).count();
        clients.join();
        double const rate = static_cast<double>(s.messages) * s.clients / seconds;
        std::printf("  %-12s round %d: %8.3f s  %12.0f msg/s\n", name, round + 1, seconds, rate);
        best = std::max(best, rate);
    }
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    Settings s;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string const flag = argv[i];
        if (flag == "--clients") s.clients = std::atoi(argv[i + 1]);
        else if (flag == "--messages") s.messages = std::atoi(argv[i + 1]);
        else if (flag == "--size") s.size = static_cast<std::size_t>(std::atoll(argv[i + 1]));
        else if (flag == "--rounds") s.rounds = std::atoi(argv[i + 1]);
    }
    std::printf("fan-out: %d clients x %d messages of %zu bytes, best of %d rounds\n", s.clients,
                s.messages, s.size, s.rounds);

    double raw = 0, plain = 0, managed = 0;
    {
        RawServer server;
        raw = measure("raw", server.port(), [&](std::size_t n) { server.wait_for(n); },
                      [&](std::string const& p) { server.broadcast(p); }, s);
    }
    {
        PlainWebsocketppServer server;
        plain = measure("websocketpp", server.port(), [&](std::size_t n) { server.wait_for(n); },
                        [&](std::string const& p) { server.broadcast(p); }, s);
    }
    {
        wsmanager::Options options;
        options.host = "127.0.0.1";
        options.port = 0;
        options.threads = 1;
        options.max_connections = static_cast<std::size_t>(s.clients) + 10;
        options.max_send_buffer = std::size_t{1} << 34;  // measure speed, not the overflow policy
        options.log_level = wsmanager::LogLevel::error;
        wsmanager::WebSocketManager<> manager(options);
        manager.start_server(asio::use_future).get();
        managed = measure(
            "wsmanager", manager.local_port(),
            [&](std::size_t n) {
                while (manager.get_connection_count() < n) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(5));
                }
            },
            [&](std::string const& p) {
                manager.broadcast_message(wsmanager::Message::from_trusted_json(p),
                                          [](std::error_code, std::size_t) {});
            },
            s);
        manager.stop_server(asio::use_future).get();
    }
    std::printf("\nbest msg/s: raw %.0f, websocketpp %.0f, wsmanager %.0f\n", raw, plain, managed);
    std::printf("ratios: wsmanager/websocketpp %.2f, wsmanager/raw %.2f, websocketpp/raw %.2f\n",
                managed / plain, managed / raw, plain / raw);
    return 0;
}
