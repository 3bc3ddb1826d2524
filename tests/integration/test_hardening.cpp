// SPDX-License-Identifier: BSL-1.0
// Regression tests, over real loopback connections, of the hardening in commit 2554d27:
// RFC 6455 only (426), the Server header, on_cancel's yes or no, the destructor on one of the
// manager's own threads and on a host executor, checked timeouts, send_with_ack of invalid
// UTF-8, log sinks that throw or re-enter, pong echo of nested timestamps, the limits
// (connections per user, pending operations, topics, handshakes in flight, HTTP body),
// disconnect_user, token redaction, /metrics and /status for loopback peers, and the accept
// backoff under EMFILE. Every wait is bounded; nothing asserts how fast the server is.
//
// The integration tests compile as one translation unit: everything here lives in the
// namespace wsmanager_hardening_tests.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/connect.hpp>
#include <asio/error.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/wsmanager.hpp>

#include "harness.hpp"

namespace wsmanager_hardening_tests {

using namespace std::chrono_literals;
using wsmanager::CancelRequest;
using wsmanager::ConfirmationReason;
using wsmanager::LogLevel;
using wsmanager::LogRecord;
using wsmanager::Message;
using wsmanager::Options;
using wsmanager::TaskStepResult;
using wsmanager::UserConfirmation;
using wsmanager::test::connect_client;
using wsmanager::test::Connected;
using wsmanager::test::frame_type;
using wsmanager::test::get;
using wsmanager::test::json_message;
using wsmanager::test::parse_json;
using wsmanager::test::ping_pong;
using wsmanager::test::RawClient;
using wsmanager::test::start;
using wsmanager::test::stop;
using wsmanager::test::string_member;
using wsmanager::test::test_options;
using wsmanager::test::wait_until;
using wsmanager::test::ws_url;
using wsmanager::test::WsClient;
using Manager = wsmanager::WebSocketManager<>;
using Document = rapidjson::Document;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

/// How long "nothing (more) arrives" is watched for.
constexpr milliseconds quiet{300};

// ---- helpers --------------------------------------------------------------------------------

/// A connected tab whose frames can be taken by type in any order: frames of other types are
/// kept for later takes.
class Peer {
public:
    Peer(std::uint16_t port, std::string_view query) : c_(connect_client(port, query)) {}

    bool ok() const { return c_.result.opened && c_.hello.has_value(); }
    WsClient& client() { return *c_; }
    bool send(std::string const& json) { return c_->send_text(json); }

    /// The first frame of `type`, already received or arriving within `timeout`.
    std::optional<Document> take(std::string_view type, milliseconds timeout = 3000ms) {
        for (auto it = kept_.begin(); it != kept_.end(); ++it) {
            if (auto doc = parse_json(*it); doc && frame_type(*doc) == type) {
                kept_.erase(it);
                return doc;
            }
        }
        auto const deadline = steady_clock::now() + timeout;
        for (;;) {
            auto const left =
                std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto text = c_->next_text(left);
            if (!text) {
                if (!c_->is_open()) return std::nullopt;
                continue;
            }
            if (auto doc = parse_json(*text); doc && frame_type(*doc) == type) return doc;
            kept_.push_back(std::move(*text));
        }
    }

    /// The code of the next `error` frame.
    std::string error_code(milliseconds timeout = 3000ms) {
        auto error = take("error", timeout);
        if (!error) return "<no error frame>";
        return string_member(*error, "code").value_or("<no code>");
    }

    /// Sends a subscribe and returns "subscribed" or the error code of the refusal.
    std::string subscribe(std::string const& topic) {
        if (!send(R"({"action":"subscribe","topic":")" + topic + R"("})")) return "<send failed>";
        auto const deadline = steady_clock::now() + 3000ms;
        while (steady_clock::now() < deadline) {
            auto text = c_->next_text(100ms);
            if (!text) continue;
            auto doc = parse_json(*text);
            if (doc && frame_type(*doc) == "subscribed" &&
                string_member(*doc, "topic") == topic) {
                return "subscribed";
            }
            if (doc && frame_type(*doc) == "error") {
                return string_member(*doc, "code").value_or("<no code>");
            }
            kept_.push_back(std::move(*text));
        }
        return "<no answer>";
    }

    /// Frames of `type` among those kept and those arriving within `period`; the others are
    /// kept.
    int count_during(std::string_view type, milliseconds period) {
        int count = 0;
        for (auto it = kept_.begin(); it != kept_.end();) {
            if (auto doc = parse_json(*it); doc && frame_type(*doc) == type) {
                ++count;
                it = kept_.erase(it);
            } else {
                ++it;
            }
        }
        auto const deadline = steady_clock::now() + period;
        for (;;) {
            auto const left =
                std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
            if (left.count() <= 0) return count;
            auto text = c_->next_text(left);
            if (!text) continue;
            if (auto doc = parse_json(*text); doc && frame_type(*doc) == type) {
                ++count;
            } else {
                kept_.push_back(std::move(*text));
            }
        }
    }

    /// True when no frame at all (kept or new) arrives within `period`.
    bool silent(milliseconds period, std::string& unexpected) {
        if (!kept_.empty()) {
            unexpected = kept_.front();
            return false;
        }
        return c_->expect_silence(period, &unexpected);
    }

private:
    Connected c_;
    std::deque<std::string> kept_;
};

/// A completion handler that records its arguments, and the future that gets them.
template <class... Args>
struct Recorder {
    std::shared_ptr<std::promise<std::tuple<Args...>>> promise =
        std::make_shared<std::promise<std::tuple<Args...>>>();
    std::future<std::tuple<Args...>> future = promise->get_future();

    auto handler() const {
        return [p = promise](Args... args) { p->set_value(std::make_tuple(std::move(args)...)); };
    }
    std::tuple<Args...> result(milliseconds timeout = 5000ms) {
        return get(std::move(future), timeout);
    }
    bool ready() const { return future.wait_for(0ms) == std::future_status::ready; }
};

TaskStepResult sample_step() {
    return TaskStepResult{.step = "data_validation",
                          .result = R"({"validated_rows":1000,"errors":5})",
                          .completed = true,
                          .message = "Data validation completed",
                          .status = "completed"};
}

/// The value of one series of the Prometheus text ("name" or "name{labels}"), or nullopt.
std::optional<double> metric_value(std::string const& text, std::string_view series) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
            line[series.size()] == ' ') {
            return std::stod(line.substr(series.size() + 1));
        }
    }
    return std::nullopt;
}

double metric(Manager const& manager, std::string_view series) {
    return metric_value(manager.metrics_text(), series).value_or(-1.0);
}

constexpr std::string_view rejected_handshake =
    R"(wsmanager_connections_rejected_total{reason="handshake"})";
constexpr std::string_view rejected_limit = R"(wsmanager_connections_rejected_total{reason="limit"})";

std::string lower(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

/// The status of an HTTP response head ("HTTP/1.1 426 Upgrade Required ..."), 0 if none.
int status_of(std::string const& head) {
    if (head.rfind("HTTP/1.1 ", 0) != 0 || head.size() < 12) return 0;
    return std::atoi(head.c_str() + 9);
}

/// Every value of the header `name` (any case) in a response head, trimmed.
std::vector<std::string> header_values(std::string const& head, std::string const& name) {
    std::vector<std::string> values;
    std::istringstream in(head);
    std::string line;
    std::getline(in, line);  // the status line
    auto const wanted = lower(name);
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto const colon = line.find(':');
        if (colon == std::string::npos) continue;
        if (lower(line.substr(0, colon)) != wanted) continue;
        auto value = line.substr(colon + 1);
        auto const first = value.find_first_not_of(" \t");
        auto const last = value.find_last_not_of(" \t");
        values.push_back(first == std::string::npos ? std::string{}
                                                    : value.substr(first, last - first + 1));
    }
    return values;
}

/// A TCP connection that sends bytes written by hand and reads the raw answer; every call
/// runs its own io_context for at most its timeout.
class Wire {
public:
    explicit Wire(std::uint16_t port, std::string const& address = "127.0.0.1",
                  milliseconds timeout = 5000ms)
        : socket_(io_) {
        asio::ip::tcp::endpoint const endpoint(asio::ip::make_address(address), port);
        connect_error_ =
            run([&](auto done) { socket_.async_connect(endpoint, std::move(done)); }, timeout);
    }

    bool connected() const noexcept { return !connect_error_; }

    std::error_code send(std::string_view bytes, milliseconds timeout = 5000ms) {
        return run(
            [&](auto done) { asio::async_write(socket_, asio::buffer(bytes), std::move(done)); },
            timeout);
    }

    /// The status line and headers, through the blank line; nullopt when they do not come.
    std::optional<std::string> read_head(milliseconds timeout = 5000ms) {
        std::size_t end = 0;
        auto const ec = run(
            [&](auto done) {
                asio::async_read_until(
                    socket_, asio::dynamic_buffer(buffer_), "\r\n\r\n",
                    [&end, done = std::move(done)](std::error_code e, std::size_t n) mutable {
                        end = n;
                        done(e, n);
                    });
            },
            timeout);
        if (ec) return std::nullopt;
        auto head = buffer_.substr(0, end);
        buffer_.erase(0, end);
        return head;
    }

    /// Reads until the peer ends the connection; true when it did within `timeout`. What
    /// came is in rest().
    bool read_to_eof(milliseconds timeout = 5000ms) {
        auto const ec = run(
            [&](auto done) {
                asio::async_read(socket_, asio::dynamic_buffer(buffer_), std::move(done));
            },
            timeout);
        return ec && ec != asio::error::timed_out;
    }

    std::string const& rest() const noexcept { return buffer_; }

private:
    template <class Start>
    std::error_code run(Start start, milliseconds timeout) {
        std::optional<std::error_code> result;
        start([&result](std::error_code ec, auto&&...) { result = ec; });
        io_.restart();
        io_.run_for(timeout);
        if (!result) {
            std::error_code ignored;
            socket_.cancel(ignored);
            io_.restart();
            io_.run();
            return asio::error::timed_out;
        }
        return *result;
    }

    asio::io_context io_;
    asio::ip::tcp::socket socket_;
    std::error_code connect_error_;
    std::string buffer_;
};

/// One HTTP exchange: the response's status, head and body, and whether the server ended the
/// connection after it.
struct HttpReply {
    int status = 0;
    std::string head;
    std::string body;
    bool ended = false;
};

HttpReply http_exchange(std::uint16_t port, std::string const& request,
                        std::string const& address = "127.0.0.1") {
    HttpReply reply;
    Wire wire(port, address);
    if (!wire.connected() || wire.send(request)) return reply;
    auto head = wire.read_head();
    if (!head) return reply;
    reply.head = *head;
    reply.status = status_of(*head);
    reply.ended = wire.read_to_eof();
    reply.body = wire.rest();
    return reply;
}

HttpReply http_get(std::uint16_t port, std::string const& target,
                   std::string const& address = "127.0.0.1") {
    return http_exchange(port, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", address);
}

/// An upgrade request for RFC 6455 (version 13) or a hybi draft with `version` ("" for none).
std::string upgrade_request(std::string const& target, std::string const& version) {
    std::string request = "GET " + target +
                          " HTTP/1.1\r\n"
                          "Host: 127.0.0.1\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          "Sec-WebSocket-Origin: http://127.0.0.1\r\n";
    if (!version.empty()) request += "Sec-WebSocket-Version: " + version + "\r\n";
    return request + "\r\n";
}

/// A hixie-76 (hybi-00) upgrade: no version, Key1/Key2 and 8 bytes of key3 after the headers
/// (the example of draft-hixie-thewebsocketprotocol-76).
std::string hixie76_request(std::string const& target) {
    return "GET " + target +
           " HTTP/1.1\r\n"
           "Host: 127.0.0.1\r\n"
           "Connection: Upgrade\r\n"
           "Upgrade: WebSocket\r\n"
           "Origin: http://127.0.0.1\r\n"
           "Sec-WebSocket-Key1: 4 @1  46546xW%0l 1 5\r\n"
           "Sec-WebSocket-Key2: 12998 5 Y3 1  .P00\r\n"
           "\r\n"
           "^n:ds[4U";
}

/// An io_context run by two host threads, kept running by a work guard until finish().
class TwoThreadHost {
public:
    TwoThreadHost() : guard_(asio::make_work_guard(io_)) {
        for (int i = 0; i < 2; ++i) {
            threads_.emplace_back([this] {
                io_.run();
                std::lock_guard lock(mutex_);
                ++finished_;
                changed_.notify_all();
            });
        }
    }
    TwoThreadHost(TwoThreadHost const&) = delete;
    TwoThreadHost& operator=(TwoThreadHost const&) = delete;
    ~TwoThreadHost() { finish(1000ms); }

    asio::io_context& context() noexcept { return io_; }

    /// Lets the io_context run out of work; true when both threads returned from run() by
    /// themselves within `timeout` (else it is stopped). Joins them.
    bool finish(milliseconds timeout) {
        if (threads_.empty()) return finished_by_itself_;
        guard_.reset();
        {
            std::unique_lock lock(mutex_);
            finished_by_itself_ =
                changed_.wait_for(lock, timeout, [this] { return finished_ == 2; });
        }
        io_.stop();
        for (auto& t : threads_) t.join();
        threads_.clear();
        return finished_by_itself_;
    }

private:
    asio::io_context io_{2};
    asio::executor_work_guard<asio::io_context::executor_type> guard_;
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable changed_;
    int finished_ = 0;
    bool finished_by_itself_ = false;
};

/// A gate threads wait at until it opens.
class Gate {
public:
    void wait() {
        std::unique_lock lock(mutex_);
        ++waiting_;
        changed_.notify_all();
        changed_.wait(lock, [this] { return open_; });
    }
    bool wait_for_waiters(int count, milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] { return waiting_ >= count; });
    }
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        changed_.notify_all();
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    int waiting_ = 0;
    bool open_ = false;
};

/// Log records kept by a sink, for the test thread to read.
class LogBook {
public:
    wsmanager::LogSink sink() {
        return [this](LogRecord const& record) {
            std::lock_guard lock(mutex_);
            records_.push_back(Entry{record.level, std::string(record.event),
                                     std::string(record.message), std::string(record.user_id)});
        };
    }
    struct Entry {
        LogLevel level;
        std::string event;
        std::string message;
        std::string user_id;
    };
    std::vector<Entry> entries() const {
        std::lock_guard lock(mutex_);
        return records_;
    }
    std::size_t count(std::string_view event) const {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(std::count_if(
            records_.begin(), records_.end(), [&](Entry const& e) { return e.event == event; }));
    }

private:
    mutable std::mutex mutex_;
    std::vector<Entry> records_;
};

std::int64_t unix_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string jwt_for(std::string const& sub, std::string const& key) {
    return wsmanager::detail::sign_hs256_jwt(
        R"({"sub":")" + sub + R"(","exp":)" + std::to_string(unix_seconds() + 3600) + "}", key);
}

// ---- 1. RFC 6455 only -----------------------------------------------------------------------

TEST_CASE("hardening: hixie-76 and hybi drafts 7 and 8 get 426 with Sec-WebSocket-Version: 13",
          "[hardening][rfc6455]") {
    auto options = test_options();
    options.close_timeout = 1000ms;  // the raw client below never answers the close
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto const rejected_before = metric(manager, rejected_handshake);
    REQUIRE(rejected_before == 0.0);

    struct Case {
        char const* name;
        std::string request;
    };
    std::vector<Case> const cases{
        {"hixie-76", hixie76_request("/?user_id=old")},
        {"hybi-07", upgrade_request("/?user_id=old", "7")},
        {"hybi-08", upgrade_request("/?user_id=old", "8")},
    };
    for (auto const& c : cases) {
        INFO(c.name);
        Wire wire(port);
        REQUIRE(wire.connected());
        REQUIRE_FALSE(wire.send(c.request));
        auto const head = wire.read_head();
        REQUIRE(head.has_value());
        INFO(*head);
        CHECK(status_of(*head) == 426);
        CHECK(header_values(*head, "Sec-WebSocket-Version") == std::vector<std::string>{"13"});
        // No upgrade: nothing of a 101, and the server ends the connection after the body.
        CHECK(header_values(*head, "Sec-WebSocket-Accept").empty());
        CHECK(header_values(*head, "Sec-WebSocket-Location").empty());
        CHECK(wire.read_to_eof());
        CHECK(wire.rest().find("RFC 6455") != std::string::npos);
    }
    CHECK(manager.get_connection_count() == 0);
    CHECK(metric(manager, rejected_handshake) == rejected_before + 3);
    CHECK(manager.get_status().connections_rejected == 3);

    // RFC 6455 still works, by hand and with websocketpp's client.
    RawClient raw(port);
    REQUIRE(raw.handshake("/?user_id=raw") == 101);
    auto hello = raw.read_frame();
    REQUIRE(hello.has_value());
    CHECK(hello->payload.find("\"connected\"") != std::string::npos);
    auto client = connect_client(port, "user_id=modern");
    REQUIRE(client.hello.has_value());
    CHECK(ping_pong(*client));
    CHECK(wait_until([&] { return manager.get_connection_count() == 2; }));
    CHECK(metric(manager, rejected_handshake) == rejected_before + 3);
    stop(manager);
}

// RFC 6455 section 4.4: a server that does not speak the requested version answers 426 with the
// versions it is willing to use. A version websocketpp has no processor for (14) is refused by
// websocketpp itself before the handshake gate runs.
TEST_CASE("hardening: an unknown WebSocket version is told only 13 is spoken",
          "[hardening][rfc6455]") {
    Manager manager(test_options());
    start(manager);
    auto const reply = http_exchange(manager.local_port(), upgrade_request("/?user_id=x", "14"));
    INFO(reply.head);
    CHECK(reply.status != 101);
    CHECK(reply.status == 426);
    CHECK(header_values(reply.head, "Sec-WebSocket-Version") == std::vector<std::string>{"13"});
    stop(manager);
}

TEST_CASE("hardening: an oversized opening handshake gets 431 and loses nothing else",
          "[hardening][rfc6455][limits]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    auto watcher = connect_client(port, "user_id=watcher");
    REQUIRE(watcher.hello);
    SECTION("one header of 20,000 bytes") {
        auto request = upgrade_request("/?user_id=big", "13");
        request.insert(request.size() - 2, "X-Padding: " + std::string(20000, 'a') + "\r\n");
        auto const reply = http_exchange(port, request);
        INFO(reply.head);
        CHECK(reply.status == 431);
    }
    SECTION("a thousand small headers") {
        auto request = upgrade_request("/?user_id=many", "13");
        std::string headers;
        for (int i = 0; i < 1000; ++i) headers += "X-H" + std::to_string(i) + ": value\r\n";
        request.insert(request.size() - 2, headers);
        auto const reply = http_exchange(port, request);
        INFO(reply.head);
        CHECK(reply.status == 431);
    }
    SECTION("a request target of 20,000 bytes") {
        auto const reply =
            http_exchange(port, upgrade_request("/?user_id=x&pad=" + std::string(20000, 'b'), "13"));
        INFO(reply.head);
        CHECK(reply.status == 431);
    }
    CHECK(manager.get_connection_count() == 1);
    CHECK(ping_pong(*watcher));
    auto next = connect_client(port, "user_id=next");
    CHECK(next.hello.has_value());
    stop(manager);
}

// ---- 2. Server header -----------------------------------------------------------------------

TEST_CASE("hardening: the Server header comes from Options::server_name",
          "[hardening][server_header]") {
    auto options = test_options();
    options.close_timeout = 1000ms;  // the raw client below never answers the close
    std::optional<std::string> expected;
    SECTION("default: wsmanager") { expected = "wsmanager"; }
    SECTION("acme") {
        options.server_name = "acme";
        expected = "acme";
    }
    SECTION("empty: no Server header") { options.server_name = ""; }
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto const want = expected ? std::vector<std::string>{*expected} : std::vector<std::string>{};

    auto const healthz = http_get(port, "/healthz");
    INFO(healthz.head);
    CHECK(healthz.status == 200);
    CHECK(header_values(healthz.head, "Server") == want);
    CHECK(healthz.head.find("WebSocket++") == std::string::npos);

    auto const missing = http_get(port, "/no-such-page");
    INFO(missing.head);
    CHECK(missing.status == 404);
    CHECK(header_values(missing.head, "Server") == want);

    RawClient raw(port);
    REQUIRE(raw.handshake("/?user_id=alice") == 101);
    INFO(raw.response_head());
    CHECK(header_values(raw.response_head(), "Server") == want);
    CHECK(raw.response_head().find("WebSocket++") == std::string::npos);

    auto const refused = http_exchange(port, upgrade_request("/?user_id=old", "8"));
    INFO(refused.head);
    CHECK(refused.status == 426);
    CHECK(header_values(refused.head, "Server") == want);
    stop(manager);
}

/// A TCP port nobody listens on right now (bound, then released: another process could take
/// it meanwhile, so callers retry).
std::uint16_t free_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return acceptor.local_endpoint().port();
}

TEST_CASE("hardening: the metrics listener sends the same Server header",
          "[hardening][server_header]") {
    auto options = test_options();
    std::vector<std::string> want;
    SECTION("default") { want = {"wsmanager"}; }
    SECTION("acme") {
        options.server_name = "acme";
        want = {"acme"};
    }
    SECTION("empty") { options.server_name = ""; }
    std::unique_ptr<Manager> manager;
    std::uint16_t metrics_port = 0;
    for (int attempt = 0; attempt < 5 && !manager; ++attempt) {
        metrics_port = free_port();
        options.metrics_address = "127.0.0.1:" + std::to_string(metrics_port);
        auto candidate = std::make_unique<Manager>(options);
        try {
            start(*candidate);
            manager = std::move(candidate);
        } catch (std::system_error const&) {
            // the port was taken meanwhile: another one
        }
    }
    REQUIRE(manager);
    auto const metrics = http_get(metrics_port, "/metrics");
    INFO(metrics.head);
    CHECK(metrics.status == 200);
    CHECK(header_values(metrics.head, "Server") == want);
    auto const missing = http_get(metrics_port, "/elsewhere");
    INFO(missing.head);
    CHECK(missing.status == 404);
    CHECK(header_values(missing.head, "Server") == want);
    stop(*manager);
}

// ---- 3. Cancel semantics --------------------------------------------------------------------

TEST_CASE("hardening: on_cancel decides; without it only the user's own pending task is cancelled",
          "[hardening][cancel]") {
    auto options = test_options();
    options.callback_timeout = 20s;
    std::atomic<int> asked{0};

    SECTION("the handler says no: forbidden, nothing cancelled, nobody told") {
        Manager manager(options);
        manager.on_cancel([&](CancelRequest const&) {
            ++asked;
            return false;
        });
        start(manager);
        auto const port = manager.local_port();
        Peer tab1(port, "user_id=alice");
        Peer tab2(port, "user_id=alice");
        Peer carol(port, "user_id=carol");
        REQUIRE(tab1.ok());
        REQUIRE(tab2.ok());
        REQUIRE(carol.ok());
        REQUIRE(carol.subscribe("task:t_refused") == "subscribed");
        Recorder<std::error_code, UserConfirmation> decision;
        manager.notify_user(sample_step(), "alice", "t_refused", 1, 20s, decision.handler());
        auto request = tab1.take("task_step_result");
        REQUIRE(request);
        REQUIRE(tab2.take("task_step_result"));

        REQUIRE(tab1.send(R"({"action":"cancel","task_id":"t_refused","request_id":"c1"})"));
        auto refusal = tab1.take("error");
        REQUIRE(refusal);
        CHECK(string_member(*refusal, "code") == "forbidden");
        CHECK(string_member(*refusal, "request_id") == "c1");
        CHECK(asked.load() == 1);

        std::string unexpected;
        CHECK(carol.silent(quiet, unexpected));
        INFO(unexpected);
        CHECK(tab2.silent(quiet, unexpected));
        INFO(unexpected);
        CHECK(tab1.count_during("task_cancelled", 0ms) == 0);
        CHECK_FALSE(decision.ready());
        CHECK(manager.get_status().pending_callbacks == 1);

        // The confirmation is still the user's to answer.
        REQUIRE(tab1.send(R"({"action":"confirm","callback_id":")" +
                          string_member(*request, "callback_id").value_or("") +
                          R"(","proceed":true})"));
        auto const [ec, confirmation] = decision.result();
        CHECK_FALSE(ec);
        CHECK(confirmation.reason == ConfirmationReason::user);
        CHECK(confirmation.proceed);
        CHECK(carol.count_during("task_cancelled", quiet) == 0);
        stop(manager);
    }

    SECTION("no handler and nothing pending for the task: forbidden, nobody hears") {
        Manager manager(options);
        start(manager);
        auto const port = manager.local_port();
        Peer tab1(port, "user_id=alice");
        Peer tab2(port, "user_id=alice");
        Peer carol(port, "user_id=carol");
        REQUIRE(tab1.ok());
        REQUIRE(tab2.ok());
        REQUIRE(carol.ok());
        REQUIRE(carol.subscribe("task:t_unknown") == "subscribed");
        REQUIRE(tab2.subscribe("task:t_unknown") == "subscribed");

        REQUIRE(tab1.send(R"({"action":"cancel","task_id":"t_unknown","request_id":"c2"})"));
        auto refusal = tab1.take("error");
        REQUIRE(refusal);
        CHECK(string_member(*refusal, "code") == "forbidden");
        CHECK(string_member(*refusal, "request_id") == "c2");
        std::string unexpected;
        CHECK(carol.silent(quiet, unexpected));
        INFO(unexpected);
        CHECK(tab2.silent(quiet, unexpected));
        INFO(unexpected);
        CHECK(tab1.silent(quiet, unexpected));
        INFO(unexpected);
        stop(manager);
    }

    SECTION("no handler, the user's own pending confirmation: cancelled, each told once") {
        Manager manager(options);
        start(manager);
        auto const port = manager.local_port();
        Peer tab1(port, "user_id=alice");
        Peer tab2(port, "user_id=alice");  // also subscribed to the task's topic
        Peer carol(port, "user_id=carol");
        Peer bob(port, "user_id=bob");
        REQUIRE(tab1.ok());
        REQUIRE(tab2.ok());
        REQUIRE(carol.ok());
        REQUIRE(bob.ok());
        REQUIRE(carol.subscribe("task:t_mine") == "subscribed");
        REQUIRE(tab2.subscribe("task:t_mine") == "subscribed");
        Recorder<std::error_code, UserConfirmation> decision;
        manager.notify_user(sample_step(), "alice", "t_mine", 1, 20s, decision.handler());
        auto request = tab1.take("task_step_result");
        REQUIRE(request);
        REQUIRE(tab2.take("task_step_result"));

        REQUIRE(tab1.send(R"({"action":"cancel","task_id":"t_mine"})"));
        auto const [ec, confirmation] = decision.result();
        CHECK_FALSE(ec);
        CHECK(confirmation.reason == ConfirmationReason::cancelled);
        CHECK_FALSE(confirmation.proceed);

        for (auto* tab : {&tab1, &tab2}) {
            auto resolved = tab->take("confirmation_resolved");
            REQUIRE(resolved);
            CHECK(string_member(*resolved, "reason") == "cancelled");
            auto cancelled = tab->take("task_cancelled");
            REQUIRE(cancelled);
            CHECK(string_member(*cancelled, "task_id") == "t_mine");
            CHECK(string_member(*cancelled, "user_id") == "alice");
        }
        auto watched = carol.take("task_cancelled");
        REQUIRE(watched);
        CHECK(string_member(*watched, "task_id") == "t_mine");
        // Once each, tab2 too although it is both the user's and a subscriber.
        CHECK(tab1.count_during("task_cancelled", quiet) == 0);
        CHECK(tab2.count_during("task_cancelled", quiet) == 0);
        CHECK(carol.count_during("task_cancelled", quiet) == 0);
        CHECK(carol.count_during("confirmation_resolved", 0ms) == 0);
        std::string unexpected;
        CHECK(bob.silent(quiet, unexpected));
        INFO(unexpected);
        CHECK(manager.get_status().pending_callbacks == 0);
        stop(manager);
    }

    SECTION("no handler, the user's own heartbeats: cancelled") {
        Manager manager(options);
        start(manager);
        auto const port = manager.local_port();
        Peer tab1(port, "user_id=alice");
        Peer carol(port, "user_id=carol");
        REQUIRE(tab1.ok());
        REQUIRE(carol.ok());
        REQUIRE(carol.subscribe("task:t_beating") == "subscribed");
        Recorder<std::error_code> beating;
        manager.send_heartbeat("alice", "t_beating", 10s, beating.handler());
        REQUIRE(tab1.take("heartbeat"));
        REQUIRE(tab1.send(R"({"action":"cancel","task_id":"t_beating"})"));
        auto const [ec] = beating.result();
        CHECK(ec == wsmanager::error::task_cancelled);
        CHECK(tab1.take("task_cancelled"));
        CHECK(carol.take("task_cancelled"));
        CHECK(carol.count_during("task_cancelled", quiet) == 0);
        stop(manager);
    }

    SECTION("a handler that throws refuses") {
        Manager manager(options);
        manager.on_cancel([&](CancelRequest const&) -> bool {
            ++asked;
            throw std::runtime_error("the task store is down");
        });
        start(manager);
        auto const port = manager.local_port();
        Peer tab1(port, "user_id=alice");
        Peer carol(port, "user_id=carol");
        REQUIRE(tab1.ok());
        REQUIRE(carol.ok());
        REQUIRE(carol.subscribe("task:t_throws") == "subscribed");
        Recorder<std::error_code, UserConfirmation> decision;
        manager.notify_user(sample_step(), "alice", "t_throws", 1, 20s, decision.handler());
        REQUIRE(tab1.take("task_step_result"));

        REQUIRE(tab1.send(R"({"action":"cancel","task_id":"t_throws","request_id":"c3"})"));
        auto refusal = tab1.take("error");
        REQUIRE(refusal);
        CHECK(string_member(*refusal, "code") == "forbidden");
        CHECK(string_member(*refusal, "request_id") == "c3");
        CHECK(asked.load() == 1);
        std::string unexpected;
        CHECK(carol.silent(quiet, unexpected));
        INFO(unexpected);
        CHECK(tab1.count_during("task_cancelled", 0ms) == 0);
        CHECK_FALSE(decision.ready());
        CHECK(manager.get_status().pending_callbacks == 1);
        CHECK(ping_pong(tab1.client()));
        stop(manager);
        auto const [ec, confirmation] = decision.result();
        CHECK(confirmation.reason == ConfirmationReason::shutdown);
    }
}

// ---- 4. Destructor on one of the manager's own threads --------------------------------------

TEST_CASE("hardening: a manager destroyed on one of its own threads neither crashes nor hangs",
          "[hardening][destructor]") {
    bool const from_action = GENERATE(true, false);
    INFO((from_action ? "from an on_action handler" : "from a handler posted to its executor"));
    for (int round = 0; round < 5; ++round) {
        INFO("round " << round);
        auto options = test_options();
        options.threads = 2;
        auto holder = std::make_unique<Manager>(options);
        std::atomic<bool> handed_over{false};  // the test thread no longer touches `holder`
        std::atomic<bool> destroyed{false};
        std::atomic<bool> inside{false};
        auto destroy = [&] {
            while (!handed_over.load(std::memory_order_acquire)) std::this_thread::yield();
            inside = true;
            holder.reset();
            destroyed.store(true, std::memory_order_release);
        };
        holder->on_action("quit", [&](wsmanager::ActionContext const&, rapidjson::Value const&) {
            destroy();
        });
        // Handshakes on the other thread while it goes: the destructor closes the host's hooks
        // and must wait for an Authenticator call in progress there, not for its own call.
        std::atomic<int> authenticated{0};
        holder->set_authenticator([&](wsmanager::HandshakeRequest const& request) {
            ++authenticated;
            return wsmanager::AuthResult::accept(request.query_param("user_id"));
        });
        start(*holder);
        auto const port = holder->local_port();
        auto client = connect_client(port, "user_id=alice");
        REQUIRE(client.hello.has_value());
        std::atomic<bool> stop_knocking{false};
        std::thread knocker([&] {
            while (!stop_knocking) {
                RawClient raw(port, 0, 1000ms);
                if (!raw.connected()) {
                    std::this_thread::sleep_for(5ms);
                    continue;
                }
                raw.handshake("/?user_id=knock", 1000ms);
            }
        });
        REQUIRE(wait_until([&] { return authenticated.load() >= 3; }));

        if (from_action) {
            handed_over.store(true, std::memory_order_release);
            REQUIRE(client->send_text(R"({"action":"quit"})"));
        } else {
            // handed_over after the post has returned: the io_context may go with the
            // manager, and must not go while this thread is still inside asio::post.
            auto const executor = holder->get_executor();
            asio::post(executor, destroy);
            handed_over.store(true, std::memory_order_release);
        }
        if (!wait_until([&] { return destroyed.load(std::memory_order_acquire); }, 20000ms)) {
            // `holder` is still inside its destructor on the manager's thread: nothing here
            // can be cleaned up safely.
            std::fprintf(stderr, "the destructor on the manager's own thread did not return\n");
            std::fflush(stderr);
            std::_Exit(4);
        }
        CHECK(inside.load());
        // The connection goes: a close frame, or the end of the stream.
        CHECK(client->wait_closed(10000ms).has_value());
        stop_knocking = true;
        knocker.join();
        // Nothing listens any more.
        WsClient late;
        CHECK_FALSE(late.connect(ws_url(port), {}, 2000ms).opened);
    }
}

// The destructor "stops the server if it is running": pending confirmations end with reason
// `shutdown` and the clients get 1001, as stop_server does, also when it runs on one of the
// manager's own threads (which then run the stop to its end, detached).
TEST_CASE("hardening: a manager destroyed on its own thread still ends its pending operations",
          "[hardening][destructor]") {
    wsmanager::test::HostContext host;
    auto options = test_options();
    options.threads = 2;
    auto holder = std::make_unique<Manager>(options);
    std::atomic<bool> handed_over{false};
    std::atomic<bool> destroyed{false};
    holder->on_action("quit", [&](wsmanager::ActionContext const&, rapidjson::Value const&) {
        while (!handed_over.load(std::memory_order_acquire)) std::this_thread::yield();
        holder.reset();
        destroyed.store(true, std::memory_order_release);
    });
    start(*holder);
    Peer alice(holder->local_port(), "user_id=alice");
    REQUIRE(alice.ok());
    auto decision =
        std::make_shared<std::promise<std::pair<std::error_code, UserConfirmation>>>();
    auto decided = decision->get_future();
    // Only the handler holds the promise: destroyed without a call, it breaks the promise.
    holder->notify_user(
        sample_step(), "alice", "task_pending", 1, 60s,
        asio::bind_executor(host.executor(), [decision = std::move(decision)](
                                                 std::error_code ec, UserConfirmation c) {
            decision->set_value({ec, c});
        }));
    REQUIRE(alice.take("task_step_result"));
    handed_over.store(true, std::memory_order_release);
    REQUIRE(alice.send(R"({"action":"quit"})"));
    if (!wait_until([&] { return destroyed.load(std::memory_order_acquire); }, 20000ms)) {
        std::fprintf(stderr, "the destructor on the manager's own thread did not return\n");
        std::fflush(stderr);
        std::_Exit(4);
    }
    auto const closed = alice.client().wait_closed(10000ms);
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1001);
    REQUIRE(decided.wait_for(10s) == std::future_status::ready);
    try {
        auto const [ec, confirmation] = decided.get();
        CHECK_FALSE(ec);
        CHECK(confirmation.reason == ConfirmationReason::shutdown);
        CHECK_FALSE(confirmation.proceed);
    } catch (std::future_error const& e) {
        FAIL_CHECK("notify_user's completion handler was destroyed without being called: "
                   << e.what());
    }
}

// ---- 5. Host-executor destructor ------------------------------------------------------------

TEST_CASE("hardening: on a host executor no hook is called once the destructor has returned",
          "[hardening][destructor][host]") {
    bool const host_busy = GENERATE(false, true);
    INFO((host_busy ? "the host's threads are busy elsewhere during the destructor"
                    : "the host's threads run the manager during the destructor"));
    TwoThreadHost host;
    std::atomic<bool> destroyed{false};
    std::atomic<int> actions{0};
    std::atomic<bool> action_after{false};
    std::atomic<bool> auth_after{false};
    std::atomic<bool> http_after{false};
    std::atomic<bool> sink_after{false};
    std::atomic<int> authenticated{0};
    auto options = test_options();
    options.close_timeout = 1000ms;
    options.log_level = LogLevel::debug;
    options.log_sink = [&](LogRecord const&) {
        if (destroyed.load()) sink_after = true;
    };
    auto manager = std::make_unique<Manager>(asio::any_io_executor(host.context().get_executor()),
                                             options);
    manager->on_action("work", [&](wsmanager::ActionContext const&, rapidjson::Value const&) {
        if (destroyed.load()) action_after = true;
        ++actions;
        std::this_thread::sleep_for(1ms);  // a call in progress is what the destructor waits for
    });
    manager->set_authenticator([&](wsmanager::HandshakeRequest const& request) {
        if (destroyed.load()) auth_after = true;
        ++authenticated;
        return wsmanager::AuthResult::accept(request.query_param("user_id"));
    });
    manager->on_http([&](wsmanager::HttpRequest const& request, wsmanager::HttpResponse& response) {
        if (destroyed.load()) http_after = true;
        if (request.path != "/hello") return false;
        response.status = 200;
        response.body = "hello\n";
        return true;
    });
    start(*manager);
    auto const port = manager->local_port();
    REQUIRE(http_get(port, "/hello").status == 200);

    std::vector<std::unique_ptr<Connected>> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(std::make_unique<Connected>(
            connect_client(port, "user_id=sender" + std::to_string(i))));
        REQUIRE(clients.back()->hello.has_value());
    }
    std::atomic<bool> stop_sending{false};
    std::vector<std::thread> senders;
    for (auto& c : clients) {
        senders.emplace_back([&stop_sending, client = c->client.get()] {
            while (!stop_sending) {
                client->send_text(R"({"action":"work"})");
                std::this_thread::sleep_for(15ms);
            }
        });
    }
    REQUIRE(wait_until([&] { return actions.load() >= 20; }));

    Gate gate;
    if (host_busy) {
        for (int i = 0; i < 2; ++i) asio::post(host.context(), [&gate] { gate.wait(); });
        REQUIRE(gate.wait_for_waiters(2, 5000ms));
    }
    auto destructor = std::async(std::launch::async, [&] {
        manager.reset();
        destroyed = true;
    });
    bool const returned = destructor.wait_for(10s) == std::future_status::ready;
    CHECK(returned);
    if (!returned) {
        gate.open();
        destructor.wait();
    }

    // After it: a handshake and a request for the host's route. With the host's threads held,
    // the listener may still be open when they arrive.
    auto late_upgrade = std::async(std::launch::async, [port] {
        RawClient raw(port, 0, 2000ms);
        return raw.connected() ? raw.handshake("/?user_id=late", 5000ms) : -1;
    });
    auto late_get = std::async(std::launch::async, [port] { return http_get(port, "/hello"); });
    std::this_thread::sleep_for(100ms);
    gate.open();
    auto const upgrade_status = get(std::move(late_upgrade), 10000ms);
    auto const get_reply = get(std::move(late_get), 10000ms);
    INFO("late upgrade: " << upgrade_status << ", late GET: " << get_reply.status);
    CHECK(upgrade_status != 101);
    CHECK(get_reply.status != 200);

    std::this_thread::sleep_for(400ms);  // the clients keep sending
    stop_sending = true;
    for (auto& t : senders) t.join();
    CHECK_FALSE(action_after.load());
    CHECK_FALSE(auth_after.load());
    CHECK_FALSE(http_after.load());
    CHECK_FALSE(sink_after.load());
    for (auto& c : clients) CHECK((*c)->wait_closed(5000ms).has_value());
    clients.clear();
    // A stopped manager holds no work: the host's io.run() returns by itself.
    CHECK(host.finish(10000ms));
}

// ---- 6. Checked timeouts --------------------------------------------------------------------

TEST_CASE("hardening: zero, negative and huge timeouts are invalid_argument, never a decision",
          "[hardening][timeouts]") {
    Manager manager(test_options());
    start(manager);
    Peer alice(manager.local_port(), "user_id=alice");
    REQUIRE(alice.ok());
    auto const nan = std::chrono::duration<double>(std::numeric_limits<double>::quiet_NaN());
    auto const inf = std::chrono::duration<double>(std::numeric_limits<double>::infinity());

    auto notify = [&](auto timeout) {
        Recorder<std::error_code, UserConfirmation> r;
        manager.notify_user(sample_step(), "alice", "task_timeouts", 1, timeout, r.handler());
        return r.result();
    };
    auto check_refused = [](std::tuple<std::error_code, UserConfirmation> const& outcome) {
        auto const& [ec, confirmation] = outcome;
        CHECK(ec == asio::error::invalid_argument);
        CHECK_FALSE(confirmation.proceed);
        CHECK(confirmation.reason != ConfirmationReason::timeout);
    };
    {
        INFO("notify_user 0ms");
        check_refused(notify(0ms));
    }
    {
        INFO("notify_user -5s");
        check_refused(notify(-5s));
    }
    {
        INFO("notify_user milliseconds::max()");
        check_refused(notify(milliseconds::max()));
    }
    {
        INFO("notify_user hours::max()");
        check_refused(notify(std::chrono::hours::max()));
    }
    {
        INFO("notify_user NaN seconds");
        check_refused(notify(nan));
    }
    {
        INFO("notify_user infinite seconds");
        check_refused(notify(inf));
    }
    CHECK(manager.get_status().pending_callbacks == 0);

    auto ack = [&](auto timeout) {
        Recorder<std::error_code, bool> r;
        manager.send_with_ack("alice", json_message(R"({"type":"notice"})"), timeout,
                              r.handler());
        return r.result();
    };
    for (auto const& [name, outcome] :
         {std::pair{"send_with_ack 0ms", ack(0ms)},
          std::pair{"send_with_ack milliseconds::max()", ack(milliseconds::max())},
          std::pair{"send_with_ack -1s", ack(-1s)}}) {
        INFO(name);
        CHECK(std::get<0>(outcome) == asio::error::invalid_argument);
        CHECK_FALSE(std::get<1>(outcome));
    }

    auto beat = [&](auto interval) {
        Recorder<std::error_code> r;
        manager.send_heartbeat("alice", "task_timeouts", interval, r.handler());
        return std::get<0>(r.result());
    };
    CHECK(beat(0ms) == asio::error::invalid_argument);
    CHECK(beat(milliseconds::max()) == asio::error::invalid_argument);
    CHECK(beat(std::chrono::hours::max()) == asio::error::invalid_argument);

    // None of it reached the user.
    std::string unexpected;
    CHECK(alice.silent(quiet, unexpected));
    INFO(unexpected);

    // A timeout of 1 ms is a timeout like any other.
    auto const [ec, confirmation] = notify(1ms);
    CHECK_FALSE(ec);
    CHECK(confirmation.reason == ConfirmationReason::timeout);
    CHECK(confirmation.proceed);  // Options::proceed_on_timeout
    auto resolved = alice.take("confirmation_resolved");
    REQUIRE(resolved);
    CHECK(string_member(*resolved, "reason") == "timeout");
    auto const [ack_ec, acked] = ack(1ms);
    CHECK_FALSE(ack_ec);
    CHECK_FALSE(acked);
    CHECK(ping_pong(alice.client()));
    stop(manager);
}

// ---- 7. send_with_ack of invalid UTF-8 ------------------------------------------------------

TEST_CASE("hardening: send_with_ack of trusted JSON that is not UTF-8 is invalid_message",
          "[hardening][utf8]") {
    auto options = test_options();
    options.threads = GENERATE(std::size_t{1}, std::size_t{2});
    INFO("threads: " << options.threads);
    Manager manager(options);
    start(manager);
    Peer alice(manager.local_port(), "user_id=alice");
    REQUIRE(alice.ok());
    for (std::string const& text : {std::string("{\"bad\":\"\xff\"}"),
                                   std::string("{\"k\xc3\":1}"),
                                   std::string("{\"nested\":{\"x\":[\"\xed\xa0\x80\"]}}")}) {
        Recorder<std::error_code, bool> r;
        manager.send_with_ack("alice", Message::from_trusted_json(text), 5s, r.handler());
        auto const [ec, acked] = r.result();
        CHECK(ec == wsmanager::error::invalid_message);
        CHECK_FALSE(acked);
        CHECK(ping_pong(alice.client()));
    }
    std::string unexpected;
    CHECK(alice.silent(quiet, unexpected));
    INFO(unexpected);
    CHECK(manager.get_status().pending_callbacks == 0);
    // Still serving everything.
    auto other = connect_client(manager.local_port(), "user_id=bob");
    REQUIRE(other.hello.has_value());
    CHECK(ping_pong(*other));
    Recorder<std::error_code, bool> fine;
    manager.send_with_ack("bob", json_message(R"({"type":"fine"})"), 5s, fine.handler());
    auto notice = other->next_of_type("fine");
    REQUIRE(notice);
    REQUIRE(other->send_text(R"({"action":"ack","message_id":")" +
                             string_member(*notice, "message_id").value_or("") + R"("})"));
    auto const [ec, acked] = fine.result();
    CHECK_FALSE(ec);
    CHECK(acked);
    stop(manager);
}

// ---- 8. Log sinks that throw or re-enter ----------------------------------------------------

TEST_CASE("hardening: a log sink that throws or re-enters the manager changes nothing",
          "[hardening][log_sink]") {
    auto options = test_options();
    options.log_level = LogLevel::debug;
    options.threads = 2;
    std::atomic<int> calls{0};
    std::atomic<int> reentered{0};
    std::atomic<Manager*> self{nullptr};
    bool reentering = false;
    SECTION("a sink that throws on every record") {
        options.log_sink = [&](LogRecord const&) {
            ++calls;
            throw std::runtime_error("the log disk is full");
        };
    }
    SECTION("a sink that calls get_status() and metrics_text()") {
        reentering = true;
        options.log_sink = [&](LogRecord const&) {
            ++calls;
            if (auto* manager = self.load()) {
                auto const status = manager->get_status();
                auto const text = manager->metrics_text();
                (void)manager->get_connection_count();
                if (!text.empty() && status.connections_opened < 1'000'000) ++reentered;
            }
        };
    }
    auto manager = std::make_unique<Manager>(options);
    self = manager.get();
    start(*manager);
    auto const port = manager->local_port();
    std::vector<Connected> clients;
    for (int i = 0; i < 4; ++i) {
        clients.push_back(connect_client(port, "user_id=u" + std::to_string(i)));
        REQUIRE(clients.back().hello.has_value());
        CHECK(ping_pong(*clients.back()));
    }
    REQUIRE(get(manager->broadcast_message(json_message(R"({"type":"news"})"), asio::use_future)) ==
            4);
    for (auto& c : clients) CHECK(c->next_of_type("news").has_value());
    CHECK(http_get(port, "/healthz").status == 200);
    auto refused = connect_client(port, "user_id=%zz");  // a refusal is logged too
    CHECK_FALSE(refused.result.opened);
    CHECK(wait_until([&] { return manager->get_connection_count() == 4; }));
    stop(*manager);
    for (auto& c : clients) CHECK(c->wait_closed().has_value());
    CHECK(calls.load() > 0);
    if (reentering) CHECK(reentered.load() > 0);
    // Started again, still serving.
    start(*manager);
    auto again = connect_client(manager->local_port(), "user_id=again");
    REQUIRE(again.hello.has_value());
    CHECK(ping_pong(*again));
    self = nullptr;
    manager.reset();  // returns: no deadlock in the destructor either
    CHECK(again->wait_closed().has_value());
}

// ---- 9. pong echo of nested timestamps ------------------------------------------------------

/// A member of a JSON object, or nullptr (rapidjson's operator[] asserts on a missing one).
rapidjson::Value const* member(rapidjson::Value const& object, char const* name) {
    if (!object.IsObject()) return nullptr;
    auto it = object.FindMember(name);
    return it == object.MemberEnd() ? nullptr : &it->value;
}

TEST_CASE("hardening: a ping's nested timestamp is not echoed; a scalar one is",
          "[hardening][pong]") {
    auto options = test_options();
    options.max_message_size = 1024 * 1024;
    Manager manager(options);
    start(manager);
    auto client = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(client.hello.has_value());

    // The pong answering a ping with this timestamp (JSON text).
    auto pong_for = [&](std::string const& timestamp, std::string const& id) {
        std::string frame = R"({"action":"ping","request_id":")" + id + R"(","timestamp":)";
        frame += timestamp;
        frame += "}";
        REQUIRE(frame.size() < options.max_message_size);
        REQUIRE(client->send_text(std::move(frame)));
        auto pong = client->next_of_type("pong");
        REQUIRE(pong.has_value());
        CHECK(string_member(*pong, "request_id") == id);
        auto const* server_time = member(*pong, "server_time");
        CHECK((server_time != nullptr && server_time->IsNumber()));
        REQUIRE(member(*pong, "timestamp") != nullptr);
        return std::move(*pong);
    };
    for (int depth : {20'000, 100'000}) {
        INFO("depth " << depth);
        auto const arrays = std::string(static_cast<std::size_t>(depth), '[') +
                            std::string(static_cast<std::size_t>(depth), ']');
        auto const pong = pong_for(arrays, "arrays");
        CHECK(member(pong, "timestamp")->IsNull());
        std::string objects;
        for (int i = 0; i < depth / 5; ++i) objects += R"({"a":)";
        objects += "1";
        objects += std::string(static_cast<std::size_t>(depth / 5), '}');
        auto const pong2 = pong_for(objects, "objects");
        CHECK(member(pong2, "timestamp")->IsNull());
        CHECK(client->is_open());
        CHECK(ping_pong(*client));
    }
    CHECK(member(pong_for("[1,2]", "shallow array"), "timestamp")->IsNull());
    CHECK(member(pong_for(R"({"t":1})", "shallow object"), "timestamp")->IsNull());
    auto const number = pong_for("1712345678.5", "number");
    REQUIRE(member(number, "timestamp")->IsNumber());
    CHECK(member(number, "timestamp")->GetDouble() == 1712345678.5);
    CHECK(string_member(pong_for(R"("t-1")", "string"), "timestamp") == "t-1");
    auto const flag = pong_for("true", "bool");
    REQUIRE(member(flag, "timestamp")->IsBool());
    CHECK(member(flag, "timestamp")->GetBool());
    CHECK(member(pong_for("null", "null"), "timestamp")->IsNull());
    CHECK(client->is_open());
    CHECK(manager.get_connection_count() == 1);
    stop(manager);
}

// ---- 10. Limits -----------------------------------------------------------------------------

TEST_CASE("hardening: max_connections_per_user closes the next tab with 1008",
          "[hardening][limits]") {
    auto options = test_options();
    options.max_connections_per_user = 2;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto tab1 = std::make_unique<Connected>(connect_client(port, "user_id=alice"));
    auto tab2 = connect_client(port, "user_id=alice");
    REQUIRE(tab1->hello.has_value());
    REQUIRE(tab2.hello.has_value());
    REQUIRE(metric(manager, rejected_limit) == 0.0);

    auto tab3 = connect_client(port, "user_id=alice");
    CHECK_FALSE(tab3.hello.has_value());
    auto const closed = tab3->wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1008);
    CHECK(closed->reason == "Connection limit per user reached");
    CHECK(wait_until([&] { return metric(manager, rejected_limit) == 1.0; }));

    // Other users, and anonymous connections, are not limited by alice's tabs.
    std::vector<Connected> others;
    for (auto const* query : {"user_id=bob", "user_id=bob", "", "", ""}) {
        others.push_back(connect_client(port, query));
        REQUIRE(others.back().hello.has_value());
        CHECK(ping_pong(*others.back()));
    }
    CHECK(ping_pong(*tab1->client));
    CHECK(ping_pong(*tab2));
    CHECK(wait_until([&] { return manager.get_connection_count() == 7; }));

    // A closed tab frees its place.
    tab1->client->close(1000, "bye");
    REQUIRE(tab1->client->wait_closed().has_value());
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 6; }));
    auto again = connect_client(port, "user_id=alice");
    CHECK(again.hello.has_value());
    CHECK(metric(manager, rejected_limit) == 1.0);
    stop(manager);
}

TEST_CASE("hardening: pending confirmations are limited per user and in total",
          "[hardening][limits]") {
    auto options = test_options();
    bool const per_user = GENERATE(true, false);
    if (per_user) {
        options.max_pending_confirmations_per_user = 2;
    } else {
        options.max_pending_confirmations = 2;
    }
    INFO((per_user ? "max_pending_confirmations_per_user = 2" : "max_pending_confirmations = 2"));
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    Peer alice(port, "user_id=alice");
    Peer bob(port, "user_id=bob");
    REQUIRE(alice.ok());
    REQUIRE(bob.ok());

    std::vector<Recorder<std::error_code, UserConfirmation>> held(2);
    manager.notify_user(sample_step(), "alice", "task_a1", 1, 20s, held[0].handler());
    if (per_user) {
        manager.notify_user(sample_step(), "alice", "task_a2", 1, 20s, held[1].handler());
    } else {
        manager.notify_user(sample_step(), "bob", "task_b1", 1, 20s, held[1].handler());
    }
    REQUIRE(wait_until([&] { return manager.get_status().pending_callbacks == 2; }));

    Recorder<std::error_code, UserConfirmation> over;
    manager.notify_user(sample_step(), "alice", "task_over", 1, 20s, over.handler());
    auto const [ec, confirmation] = over.result();
    CHECK(ec == wsmanager::error::too_many_pending);
    CHECK_FALSE(confirmation.proceed);
    CHECK(confirmation.reason != ConfirmationReason::timeout);
    CHECK(confirmation.reason != ConfirmationReason::user);

    Recorder<std::error_code, UserConfirmation> other;
    manager.notify_user(sample_step(), per_user ? "bob" : "carol", "task_other", 1, 20s,
                        other.handler());
    if (per_user) {
        // Bob's own count is 0: his works.
        auto request = bob.take("task_step_result");
        REQUIRE(request);
        REQUIRE(bob.send(R"({"action":"confirm","callback_id":")" +
                         string_member(*request, "callback_id").value_or("") +
                         R"(","proceed":false})"));
        auto const [other_ec, other_confirmation] = other.result();
        CHECK_FALSE(other_ec);
        CHECK(other_confirmation.reason == ConfirmationReason::user);
    } else {
        auto const [other_ec, other_confirmation] = other.result();
        CHECK(other_ec == wsmanager::error::too_many_pending);
        CHECK_FALSE(other_confirmation.proceed);
    }
    // Alice saw only the requests that were accepted.
    for (int i = 0; i < (per_user ? 2 : 1); ++i) REQUIRE(alice.take("task_step_result"));
    CHECK(alice.count_during("task_step_result", quiet) == 0);

    // An answered request makes room again.
    Recorder<std::error_code, UserConfirmation> after;
    {
        Peer again(port, "user_id=alice");  // gets the pending requests again on connecting
        REQUIRE(again.ok());
        auto request = again.take("task_step_result");
        REQUIRE(request);
        auto const task = string_member(*request, "task_id").value_or("");
        REQUIRE(again.send(R"({"action":"confirm","callback_id":")" +
                           string_member(*request, "callback_id").value_or("") +
                           R"(","proceed":true})"));
        auto& answered = task == "task_a1" ? held[0] : held[1];
        auto const [answered_ec, answered_confirmation] = answered.result();
        CHECK_FALSE(answered_ec);
        CHECK(answered_confirmation.reason == ConfirmationReason::user);
    }
    manager.notify_user(sample_step(), "alice", "task_after", 1, 20s, after.handler());
    CHECK(alice.take("task_step_result").has_value());
    CHECK_FALSE(after.ready());
    stop(manager);
    CHECK(std::get<1>(after.result()).reason == ConfirmationReason::shutdown);
}

TEST_CASE("hardening: max_topics refuses a new topic, not an existing one",
          "[hardening][limits]") {
    auto options = test_options();
    options.max_topics = 2;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    Peer a(port, "user_id=alice");
    Peer b(port, "user_id=bob");
    REQUIRE(a.ok());
    REQUIRE(b.ok());
    CHECK(a.subscribe("t1") == "subscribed");
    CHECK(a.subscribe("t2") == "subscribed");
    CHECK(a.subscribe("t3") == "forbidden");
    CHECK(b.subscribe("t3") == "forbidden");
    CHECK(b.subscribe("t1") == "subscribed");  // exists already
    CHECK(b.subscribe("t2") == "subscribed");
    CHECK(manager.get_status().topics == 2);
    CHECK(get(manager.publish("t3", json_message(R"({"type":"t3"})"), asio::use_future)) == 0);
    CHECK(get(manager.publish("t1", json_message(R"({"type":"t1"})"), asio::use_future)) == 2);
    CHECK(a.take("t1").has_value());
    CHECK(b.take("t1").has_value());
    // A topic whose last subscriber left makes room.
    for (auto* peer : {&a, &b}) {
        REQUIRE(peer->send(R"({"action":"unsubscribe","topic":"t2"})"));
        REQUIRE(peer->take("unsubscribed").has_value());
    }
    CHECK(wait_until([&] { return manager.get_status().topics == 1; }));
    CHECK(b.subscribe("t3") == "subscribed");
    CHECK(a.subscribe("t4") == "forbidden");
    stop(manager);
}

TEST_CASE("hardening: send_with_ack and send_heartbeat have their own per-user limit",
          "[hardening][limits]") {
    auto options = test_options();
    options.max_pending_confirmations_per_user = 2;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    Peer alice(port, "user_id=alice");
    Peer bob(port, "user_id=bob");
    REQUIRE(alice.ok());
    REQUIRE(bob.ok());
    auto const notice = json_message(R"({"type":"notice"})");

    // Two confirmations pending for alice do not count against her acks and heartbeats.
    std::vector<Recorder<std::error_code, UserConfirmation>> confirmations(2);
    for (auto& c : confirmations) {
        manager.notify_user(sample_step(), "alice", "task_c", 1, 20s, c.handler());
    }
    std::vector<Recorder<std::error_code, bool>> acks(2);
    for (auto& a : acks) manager.send_with_ack("alice", notice, 20s, a.handler());
    REQUIRE(alice.take("notice"));
    REQUIRE(alice.take("notice"));
    Recorder<std::error_code, bool> ack_over;
    manager.send_with_ack("alice", notice, 20s, ack_over.handler());
    auto const [ack_ec, acked] = ack_over.result();
    CHECK(ack_ec == wsmanager::error::too_many_pending);
    CHECK_FALSE(acked);
    CHECK(alice.count_during("notice", quiet) == 0);

    // Bob's ack is his own.
    Recorder<std::error_code, bool> bobs;
    manager.send_with_ack("bob", notice, 20s, bobs.handler());
    auto frame = bob.take("notice");
    REQUIRE(frame);
    REQUIRE(bob.send(R"({"action":"ack","message_id":")" +
                     string_member(*frame, "message_id").value_or("") + R"("})"));
    CHECK(std::get<1>(bobs.result()));

    std::vector<Recorder<std::error_code>> beats(2);
    manager.send_heartbeat("alice", "task_h1", 10s, beats[0].handler());
    manager.send_heartbeat("alice", "task_h2", 10s, beats[1].handler());
    REQUIRE(alice.take("heartbeat"));
    REQUIRE(alice.take("heartbeat"));
    Recorder<std::error_code> beat_over;
    manager.send_heartbeat("alice", "task_h3", 10s, beat_over.handler());
    CHECK(std::get<0>(beat_over.result()) == wsmanager::error::too_many_pending);
    CHECK(alice.count_during("heartbeat", quiet) == 0);
    Recorder<std::error_code> bob_beat;
    manager.send_heartbeat("bob", "task_hb", 10s, bob_beat.handler());
    CHECK(bob.take("heartbeat").has_value());
    CHECK_FALSE(bob_beat.ready());

    stop(manager);
    for (auto& b : beats) CHECK(std::get<0>(b.result()) == wsmanager::error::shutting_down);
    CHECK(std::get<0>(bob_beat.result()) == wsmanager::error::shutting_down);
    for (auto& a : acks) CHECK_FALSE(std::get<1>(a.result()));
    for (auto& c : confirmations) {
        CHECK(std::get<1>(c.result()).reason == ConfirmationReason::shutdown);
    }
}

// ---- 11. Handshakes in flight ---------------------------------------------------------------

TEST_CASE("hardening: max_handshakes_in_flight holds the next handshake until a slot frees",
          "[hardening][limits][handshakes]") {
    auto options = test_options();
    options.max_handshakes_in_flight = 2;
    bool const by_timeout = GENERATE(false, true);
    INFO((by_timeout ? "the holders' handshakes time out" : "a holder goes away"));
    // Long enough that the holders keep their slots while the test looks, unless they are to
    // time out.
    options.handshake_timeout = by_timeout ? 500ms : 30s;
    options.close_timeout = 1000ms;  // the raw client below never answers the close
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();

    // Two TCP connections that never send a byte. The listener accepts in order, so both are
    // accepted before the client that connects after them.
    auto holder1 = std::make_unique<RawClient>(port);
    auto holder2 = std::make_unique<RawClient>(port);
    REQUIRE(holder1->connected());
    REQUIRE(holder2->connected());
    RawClient third(port);
    REQUIRE(third.connected());
    auto upgraded = std::async(std::launch::async,
                               [&third] { return third.handshake("/?user_id=third", 15000ms); });

    if (!by_timeout) {
        CHECK(upgraded.wait_for(500ms) == std::future_status::timeout);
        CHECK(manager.get_connection_count() == 0);
        holder1.reset();  // its handshake fails: its slot frees
    }
    REQUIRE(upgraded.wait_for(15s) == std::future_status::ready);
    CHECK(upgraded.get() == 101);
    auto hello = third.read_frame();
    REQUIRE(hello.has_value());
    CHECK(hello->payload.find("\"connected\"") != std::string::npos);
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }));
    CHECK(metric(manager, "wsmanager_connections_active") == 1.0);

    if (by_timeout) {
        CHECK(holder1->wait_eof());
        CHECK(holder2->wait_eof());
        CHECK(wait_until([&] { return metric(manager, rejected_handshake) >= 2.0; }));
    }
    // One slot is still held (or none): another client gets through.
    auto next = connect_client(port, "user_id=next");
    REQUIRE(next.hello.has_value());
    CHECK(ping_pong(*next));
    holder2.reset();
    CHECK(wait_until([&] {
        return manager.get_connection_count() == 2 &&
               metric(manager, "wsmanager_connections_active") == 2.0;
    }));
    auto last = connect_client(port, "user_id=last");
    CHECK(last.hello.has_value());
    CHECK(wait_until([&] { return metric(manager, "wsmanager_connections_active") == 3.0; }));

    // Plain HTTP requests and refused handshakes give their slots back too: many more of them
    // than there are slots, one after the other, are all answered.
    for (int i = 0; i < 10; ++i) {
        INFO("request " << i);
        CHECK(http_get(port, "/healthz").status == 200);
        CHECK(http_exchange(port, upgrade_request("/?user_id=old", "8")).status == 426);
        CHECK(http_exchange(port, upgrade_request("/?user_id=%zz", "13")).status == 400);
    }
    auto after = connect_client(port, "user_id=after");
    CHECK(after.hello.has_value());
    CHECK(wait_until([&] { return metric(manager, "wsmanager_connections_active") == 4.0; }));
    stop(manager);
    CHECK(metric(manager, "wsmanager_connections_active") == 0.0);
}

// ---- 12. HTTP body size ---------------------------------------------------------------------

TEST_CASE("hardening: max_http_body_size: larger bodies never reach on_http",
          "[hardening][limits][http]") {
    auto options = test_options();
    options.max_http_body_size = 1024;
    Manager manager(options);
    std::mutex mutex;
    std::vector<std::size_t> bodies;  // sizes the handler saw
    manager.on_http([&](wsmanager::HttpRequest const& request, wsmanager::HttpResponse& response) {
        if (request.path != "/upload") return false;
        std::lock_guard lock(mutex);
        bodies.push_back(request.body.size());
        response.status = 200;
        response.body = "got " + std::to_string(request.body.size()) + "\n";
        return true;
    });
    auto seen = [&] {
        std::lock_guard lock(mutex);
        return bodies;
    };
    start(manager);
    auto const port = manager.local_port();
    auto post_head = [](std::size_t size) {
        return "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
               "Content-Length: " +
               std::to_string(size) + "\r\n\r\n";
    };

    for (std::size_t size : {std::size_t{512}, std::size_t{1024}}) {
        INFO("body of " << size);
        auto const reply = http_exchange(port, post_head(size) + std::string(size, 'x'));
        INFO(reply.head);
        CHECK(reply.status == 200);
        CHECK(reply.body == "got " + std::to_string(size) + "\n");
    }
    CHECK(seen() == std::vector<std::size_t>{512, 1024});

    for (std::size_t size : {std::size_t{1025}, std::size_t{4096}}) {
        INFO("body of " << size);
        // The head alone: the server answers once it has read the Content-Length, and the
        // body is not left unread (which would reset the connection under the answer).
        Wire wire(port);
        REQUIRE(wire.connected());
        REQUIRE_FALSE(wire.send(post_head(size)));
        auto const head = wire.read_head();
        REQUIRE(head.has_value());
        INFO(*head);
        auto const status = status_of(*head);
        CHECK(status >= 400);
        CHECK(status < 500);
        CHECK(status == 413);
        CHECK(wire.read_to_eof());
    }
    {
        // The whole body at once; whatever the server answers (or a reset), not the handler.
        Wire wire(port);
        REQUIRE(wire.connected());
        wire.send(post_head(4096) + std::string(4096, 'y'));
        if (auto head = wire.read_head()) {
            INFO(*head);
            CHECK(status_of(*head) >= 400);
            CHECK(status_of(*head) < 500);
        }
    }
    CHECK(seen() == std::vector<std::size_t>{512, 1024});

    // Still serving.
    CHECK(http_get(port, "/healthz").status == 200);
    auto const small = http_exchange(port, post_head(10) + std::string(10, 'z'));
    CHECK(small.status == 200);
    auto client = connect_client(port, "user_id=alice");
    REQUIRE(client.hello.has_value());
    CHECK(ping_pong(*client));
    stop(manager);
}

// ---- 13. disconnect_user --------------------------------------------------------------------

TEST_CASE("hardening: disconnect_user closes every tab of the user with the code and reason",
          "[hardening][disconnect]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    auto tab1 = connect_client(port, "user_id=alice");
    auto tab2 = connect_client(port, "user_id=alice");
    auto bob = connect_client(port, "user_id=bob");
    REQUIRE(tab1.hello.has_value());
    REQUIRE(tab2.hello.has_value());
    REQUIRE(bob.hello.has_value());
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 3; }));

    auto disconnect = [&](std::string user, std::uint16_t code, std::string reason) {
        Recorder<std::error_code, std::size_t> r;
        manager.disconnect_user(std::move(user), code, std::move(reason), r.handler());
        return r.result();
    };
    struct Invalid {
        char const* what;
        std::string user;
        std::uint16_t code;
        std::string reason;
    };
    std::vector<Invalid> const invalid{
        {"code 1005", "alice", 1005, "x"},
        {"code 1006", "alice", 1006, "x"},
        {"code 1004", "alice", 1004, "x"},
        {"code 1015", "alice", 1015, "x"},
        {"code 2000", "alice", 2000, "x"},
        {"code 2999", "alice", 2999, "x"},
        {"code 5000", "alice", 5000, "x"},
        {"code 0", "alice", 0, "x"},
        {"empty user", "", 4001, "x"},
        {"reason of 124 bytes", "alice", 4001, std::string(124, 'r')},
        {"reason not UTF-8", "alice", 4001, "\xff\xfe"},
    };
    for (auto const& c : invalid) {
        INFO(c.what);
        auto const [ec, closed] = disconnect(c.user, c.code, c.reason);
        CHECK(ec == asio::error::invalid_argument);
        CHECK(closed == 0);
    }
    // Nobody was closed by those.
    CHECK(ping_pong(*tab1));
    CHECK(ping_pong(*tab2));
    CHECK(manager.get_connection_count() == 3);

    auto const [offline_ec, offline] = disconnect("zed", 4001, "logged out");
    CHECK_FALSE(offline_ec);
    CHECK(offline == 0);

    auto const [ec, closed] = disconnect("alice", 4001, "logged out");
    CHECK_FALSE(ec);
    CHECK(closed == 2);
    for (auto* tab : {&tab1, &tab2}) {
        auto const info = (*tab)->wait_closed();
        REQUIRE(info.has_value());
        CHECK(info->code == 4001);
        CHECK(info->reason == "logged out");
    }
    CHECK(bob->is_open());
    CHECK(ping_pong(*bob));
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }));

    // The longest reason allowed (123 bytes), and an RFC code.
    std::string const longest(123, 'q');
    auto const [bob_ec, bob_closed] = disconnect("bob", 1008, longest);
    CHECK_FALSE(bob_ec);
    CHECK(bob_closed == 1);
    auto const info = bob->wait_closed();
    REQUIRE(info.has_value());
    CHECK(info->code == 1008);
    CHECK(info->reason == longest);
    CHECK(wait_until([&] { return manager.get_connection_count() == 0; }));
    // A user disconnected may connect again.
    auto back = connect_client(port, "user_id=alice");
    CHECK(back.hello.has_value());
    stop(manager);
}

// ---- 14. Token redaction --------------------------------------------------------------------

TEST_CASE("hardening: a ?token= JWT never reaches the log", "[hardening][redaction]") {
    std::string const secret = "hardening-s3cret";
    LogBook book;
    auto options = test_options();
    options.auth_secret = secret;
    options.log_level = LogLevel::debug;
    options.log_sink = book.sink();
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto const good = jwt_for("alice", secret);
    auto const other = jwt_for("bob", secret);
    auto const forged = jwt_for("mallory", "not-the-secret");

    auto client = connect_client(port, "token=" + good);
    REQUIRE(client.hello.has_value());
    CHECK(string_member(*client.hello, "user_id") == "alice");
    auto second = connect_client(port, "lang=en&token=" + other + "&theme=dark");
    REQUIRE(second.hello.has_value());
    CHECK(string_member(*second.hello, "user_id") == "bob");
    auto refused = connect_client(port, "token=" + forged);
    CHECK_FALSE(refused.result.opened);
    CHECK(refused.result.http_status == 401);
    CHECK(ping_pong(*client));
    stop(manager);

    auto const entries = book.entries();
    REQUIRE_FALSE(entries.empty());
    bool redacted = false;
    for (auto const& e : entries) {
        INFO(e.event << ": " << e.message);
        for (auto const* token : {&good, &other, &forged}) {
            CHECK(e.message.find(*token) == std::string::npos);
            CHECK(e.event.find(*token) == std::string::npos);
            CHECK(e.user_id.find(*token) == std::string::npos);
            // Not even its signature alone.
            CHECK(e.message.find(token->substr(token->rfind('.') + 1)) == std::string::npos);
        }
        redacted = redacted || e.message.find("token=[redacted]") != std::string::npos;
    }
    CHECK(redacted);
}

// parse_query percent-decodes parameter names, so `?%74oken=<jwt>` authenticates as `?token=`;
// the access log prints the resource as sent, and the redaction looks for "token=" only.
TEST_CASE("hardening: a percent-encoded ?token= name does not leak the JWT to the log",
          "[hardening][redaction]") {
    std::string const secret = "hardening-s3cret";
    LogBook book;
    auto options = test_options();
    options.auth_secret = secret;
    options.log_level = LogLevel::debug;
    options.log_sink = book.sink();
    Manager manager(options);
    start(manager);
    auto const token = jwt_for("alice", secret);
    auto client = connect_client(manager.local_port(), "%74oken=" + token);
    REQUIRE(client.hello.has_value());
    CHECK(string_member(*client.hello, "user_id") == "alice");
    stop(manager);
    for (auto const& e : book.entries()) {
        INFO(e.event << ": " << e.message);
        CHECK(e.message.find(token) == std::string::npos);
    }
}

// ---- 15. /metrics and /status for loopback peers --------------------------------------------

// A peer that is not loopback cannot be produced on this machine's loopback connections; the
// unit tests (test_http_routes.cpp) cover the refusal of other peers.
TEST_CASE("hardening: /metrics and /status are served to loopback peers", "[hardening][metrics]") {
    auto options = test_options();
    SECTION("default (metrics_public = false)") {}
    SECTION("metrics_public = false") { options.metrics_public = false; }
    SECTION("metrics_public = true") { options.metrics_public = true; }
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto const metrics = http_get(port, "/metrics");
    INFO(metrics.head);
    CHECK(metrics.status == 200);
    CHECK(metrics.body.find("wsmanager_connections_active") != std::string::npos);
    auto const status = http_get(port, "/status");
    INFO(status.head);
    CHECK(status.status == 200);
    auto json = parse_json(status.body);
    REQUIRE(json.has_value());
    REQUIRE(json->IsObject());
    CHECK(json->HasMember("running"));
    CHECK(http_get(port, "/healthz").status == 200);
    CHECK(http_get(port, "/readyz").status == 200);
    stop(manager);
}

TEST_CASE("hardening: /metrics and /status are served to an IPv6 loopback peer",
          "[hardening][metrics][ipv6]") {
    auto options = test_options();
    options.host = "::1";
    options.metrics_public = false;
    Manager manager(options);
    try {
        start(manager);
    } catch (std::exception const& e) {
        WARN("no IPv6 loopback here (" << e.what() << "): skipped");
        return;
    }
    auto const port = manager.local_port();
    auto const metrics = http_get(port, "/metrics", "::1");
    INFO(metrics.head);
    CHECK(metrics.status == 200);
    CHECK(http_get(port, "/status", "::1").status == 200);
    stop(manager);
}

// ---- 16. Accept backoff under EMFILE --------------------------------------------------------

/// Lowers RLIMIT_NOFILE's soft limit, and puts it back on destruction, whatever happens.
class FdLimit {
public:
    FdLimit() { ok_ = ::getrlimit(RLIMIT_NOFILE, &saved_) == 0; }
    FdLimit(FdLimit const&) = delete;
    FdLimit& operator=(FdLimit const&) = delete;
    ~FdLimit() { restore(); }

    bool lower_to(rlim_t soft) {
        if (!ok_ || soft > saved_.rlim_cur) return false;
        rlimit lowered = saved_;
        lowered.rlim_cur = soft;
        lowered_ = ::setrlimit(RLIMIT_NOFILE, &lowered) == 0;
        return lowered_;
    }
    void restore() {
        if (lowered_) {
            ::setrlimit(RLIMIT_NOFILE, &saved_);
            lowered_ = false;
        }
    }

private:
    rlimit saved_{};
    bool ok_ = false;
    bool lowered_ = false;
};

/// File descriptors closed on destruction.
struct OwnedFds {
    std::vector<int> fds;
    OwnedFds() = default;
    OwnedFds(OwnedFds const&) = delete;
    OwnedFds& operator=(OwnedFds const&) = delete;
    ~OwnedFds() { close_all(); }
    void close_all() {
        for (int fd : fds) ::close(fd);
        fds.clear();
    }
};

/// The highest open file descriptor of this process.
int highest_open_fd() {
    int highest = -1;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return -1;
    int const own = ::dirfd(dir);
    while (dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        int const fd = std::atoi(entry->d_name);
        if (fd != own) highest = std::max(highest, fd);
    }
    ::closedir(dir);
    return highest;
}

/// Connects `fd` to 127.0.0.1:port without blocking for more than `timeout`.
bool connect_within(int fd, std::uint16_t port, milliseconds timeout) {
    int const flags = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr const*>(&address), sizeof address) == 0) {
        return true;
    }
    if (errno != EINPROGRESS) return false;
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return false;
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    return error == 0;
}

double cpu_seconds() {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    auto const seconds = [](timeval const& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

// UBSan's vptr check, on a type it has not seen yet, tests whether the vtable is readable with
// pipe(): with no descriptor left that fails, and it reports a valid object as having an
// invalid vptr (and halts). UBSan's runtime defines this function; a build without it does not.
extern "C" __attribute__((weak)) void __ubsan_get_current_report_data(char const**, char const**,
                                                                      char const**, unsigned*,
                                                                      unsigned*, char**);

TEST_CASE("hardening: out of file descriptors the listener backs off instead of spinning",
          "[hardening][emfile]") {
    if (&__ubsan_get_current_report_data != nullptr) {
        WARN("skipped under UBSan: its vptr check needs file descriptors (pipe) and reports "
             "false positives while there are none");
        return;
    }
    LogBook book;
    auto options = test_options();
    options.log_level = LogLevel::warning;  // accept_failed warnings go to the book, not stderr
    options.log_sink = book.sink();
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    REQUIRE(metric(manager, "wsmanager_accept_failures_total") == 0.0);

    {
        OwnedFds fillers;
        OwnedFds clients;
        FdLimit limit;
        // Descriptors are numbered lowest free first, and the limit bounds the number: the
        // holes below the highest open descriptor are filled first, so that exactly two free
        // numbers are left under the limit.
        int const highest_before = highest_open_fd();
        REQUIRE(highest_before > 0);
        for (;;) {
            int const fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
            REQUIRE(fd >= 0);
            if (fd > highest_before) {
                ::close(fd);
                break;
            }
            fillers.fds.push_back(fd);
        }
        // The client sockets exist before the limit drops; connecting them needs no more
        // descriptors, accepting them on the server side does.
        for (int i = 0; i < 16; ++i) {
            int const fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            REQUIRE(fd >= 0);
            clients.fds.push_back(fd);
        }
        int const highest = highest_open_fd();
        REQUIRE(highest > highest_before);
        REQUIRE(limit.lower_to(static_cast<rlim_t>(highest + 1 + 2)));  // two left
        int connected = 0;
        for (int fd : clients.fds) connected += connect_within(fd, port, 2000ms) ? 1 : 0;
        // The kernel completes them all; the server can accept two.
        CHECK(connected == static_cast<int>(clients.fds.size()));
        REQUIRE(wait_until(
            [&] { return metric(manager, "wsmanager_accept_failures_total") >= 1.0; }, 10000ms));

        // Not spinning: a retry loop without backoff fails hundreds of thousands of times a
        // second; with it, a handful.
        auto const failures_before = metric(manager, "wsmanager_accept_failures_total");
        auto const cpu_before = cpu_seconds();
        std::this_thread::sleep_for(1000ms);
        auto const failures = metric(manager, "wsmanager_accept_failures_total") - failures_before;
        auto const cpu = cpu_seconds() - cpu_before;
        INFO("accept failures in 1 s: " << failures << ", CPU: " << cpu << " s");
        CHECK(failures < 200);
        CHECK(cpu < 0.9);

        limit.restore();
        clients.close_all();
        fillers.close_all();
    }
    CHECK(book.count("accept_failed") >= 1);
    // With descriptors again, the listener accepts again (after its current back-off).
    std::optional<Connected> client;
    CHECK(wait_until(
        [&] {
            client.emplace(connect_client(port, "user_id=after"));
            return client->hello.has_value();
        },
        15000ms));
    REQUIRE(client);
    REQUIRE(client->hello.has_value());
    CHECK(ping_pong(**client));
    stop(manager);
}

}  // namespace wsmanager_hardening_tests
