// SPDX-License-Identifier: BSL-1.0
// Observability over real HTTP: GET /metrics before and after a scenario whose every frame
// is known, so each counter must move by exactly what happened; /healthz, /readyz, /status;
// Options::http_endpoints and Options::metrics_address; host routes (on_http); and
// `promtool check metrics` on the exposition (skipped with a warning when promtool is
// missing; the ctest wsmanager_promtool_installed fails then, see observability.cmake).
//
// Every wait is bounded (polls with a deadline), never a sleep that hopes.

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/buffer.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/use_future.hpp>
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.hpp"

using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;
using wsmanager::AuthResult;
using wsmanager::ConfirmationReason;
using wsmanager::HandshakeRequest;
using wsmanager::HttpRequest;
using wsmanager::HttpResponse;
using wsmanager::Options;
using wsmanager::TaskStepResult;

namespace {

// ---- a tiny HTTP/1.1 client on a raw asio socket ------------------------------------------

struct HttpReply {
    int status = 0;    ///< 0 on a transport error or timeout (see error)
    std::string head;  ///< status line and headers
    std::string body;
    std::string error;

    /// A response header's value (name in any case), "" when absent.
    std::string header(std::string_view name) const {
        auto lower = [](std::string text) {
            for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            return text;
        };
        auto const head_lower = lower(head);
        auto const key = "\r\n" + lower(std::string(name)) + ":";
        auto const at = head_lower.find(key);
        if (at == std::string::npos) return {};
        auto const start = head.find_first_not_of(' ', at + key.size());
        auto const end = head.find("\r\n", start);
        return head.substr(start, end - start);
    }
};

/// One request on its own connection (`Connection: close`), bounded by `timeout`.
HttpReply http_request(std::uint16_t port, std::string const& method, std::string const& target,
                       std::string const& body = {},
                       std::chrono::milliseconds timeout = default_wait) {
    HttpReply reply;
    std::string request = method + " " + target +
                          " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                          "\r\nConnection: close\r\n";
    if (method != "GET" && method != "HEAD") {
        request +=
            "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    request += "\r\n" + body;

    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    std::string received;
    std::optional<std::error_code> outcome;
    asio::ip::tcp::endpoint const endpoint(asio::ip::make_address("127.0.0.1"), port);
    socket.async_connect(endpoint, [&](std::error_code ec) {
        if (ec) return void(outcome = ec);
        asio::async_write(socket, asio::buffer(request), [&](std::error_code ec, std::size_t) {
            if (ec) return void(outcome = ec);
            asio::async_read(socket, asio::dynamic_buffer(received),
                             [&](std::error_code ec, std::size_t) { outcome = ec; });
        });
    });
    io.run_for(timeout);
    if (!outcome) {
        reply.error = "no complete response within " + std::to_string(timeout.count()) + " ms";
        return reply;
    }
    if (*outcome != asio::error::eof) {
        reply.error = outcome->message();
        return reply;
    }
    auto const end_of_head = received.find("\r\n\r\n");
    auto const space = received.find(' ');
    if (end_of_head == std::string::npos || space == std::string::npos) {
        reply.error = "malformed response: " + received.substr(0, 200);
        return reply;
    }
    reply.status = std::atoi(received.c_str() + space + 1);
    reply.head = received.substr(0, end_of_head);
    reply.body = received.substr(end_of_head + 4);
    return reply;
}

HttpReply http_get(std::uint16_t port, std::string const& target) {
    return http_request(port, "GET", target);
}

// ---- the Prometheus text exposition --------------------------------------------------------

/// One scrape: every sample as `name{labels}` (exactly as exposed) -> value.
class Scrape {
public:
    Scrape() = default;

    static Scrape parse(std::string text) {
        Scrape scrape;
        std::size_t start = 0;
        while (start < text.size()) {
            auto end = text.find('\n', start);
            if (end == std::string::npos) end = text.size();
            auto const line = text.substr(start, end - start);
            start = end + 1;
            if (line.empty() || line.front() == '#') continue;
            auto const space = line.rfind(' ');
            if (space == std::string::npos) {
                throw std::runtime_error("malformed sample line: " + line);
            }
            char* parsed_end = nullptr;
            auto const value_text = line.substr(space + 1);
            double const value = std::strtod(value_text.c_str(), &parsed_end);
            if (parsed_end != value_text.c_str() + value_text.size()) {
                throw std::runtime_error("malformed sample value: " + line);
            }
            if (!scrape.samples_.emplace(line.substr(0, space), value).second) {
                throw std::runtime_error("duplicate sample: " + line);
            }
        }
        scrape.text_ = std::move(text);
        return scrape;
    }

    /// The value of a sample; throws (failing the test with the key) when it is missing.
    double operator()(std::string const& key) const {
        auto it = samples_.find(key);
        if (it == samples_.end()) throw std::runtime_error("metric not exported: " + key);
        return it->second;
    }

    std::string const& text() const noexcept { return text_; }
    std::size_t size() const noexcept { return samples_.size(); }

private:
    std::map<std::string, double> samples_;
    std::string text_;
};

/// GET /metrics on `port`; the test fails (REQUIRE) when the scrape is not a 200.
Scrape scrape(std::uint16_t port) {
    auto const reply = http_get(port, "/metrics");
    INFO("GET /metrics: " << reply.error);
    REQUIRE(reply.status == 200);
    return Scrape::parse(reply.body);
}

/// Scrapes until `key` has `expected` (bounded); the last scrape either way.
Scrape scrape_until(std::uint16_t port, std::string const& key, double expected) {
    auto last = scrape(port);
    wait_until([&] {
        if (last(key) == expected) return true;
        last = scrape(port);
        return last(key) == expected;
    });
    return last;
}

std::string labelled(std::string_view name, std::string_view label, std::string_view value) {
    return std::string(name) + "{" + std::string(label) + "=\"" + std::string(value) + "\"}";
}

// ---- promtool ---------------------------------------------------------------------------

/// promtool from WSMANAGER_PROMTOOL, else the one on PATH.
std::string promtool_command() {
    if (char const* path = std::getenv("WSMANAGER_PROMTOOL"); path != nullptr && *path != 0) {
        return path;
    }
    return "promtool";
}

bool promtool_available() {
    auto const probe = "command -v '" + promtool_command() + "' >/dev/null 2>&1";
    return std::system(probe.c_str()) == 0;
}

struct PromtoolVerdict {
    int exit_code = -1;
    std::string output;  ///< what promtool printed (its lint problems, if any)
};

/// `promtool check metrics` on `text` (fed on stdin, as `curl ... | promtool check metrics`).
PromtoolVerdict promtool_check_metrics(std::string const& text) {
    PromtoolVerdict verdict;
    auto pattern = (std::filesystem::temp_directory_path() / "wsmanager_metrics_XXXXXX").string();
    int const fd = ::mkstemp(pattern.data());
    if (fd < 0) {
        verdict.output = "mkstemp failed";
        return verdict;
    }
    bool const written =
        ::write(fd, text.data(), text.size()) == static_cast<::ssize_t>(text.size());
    ::close(fd);
    if (written) {
        auto const command = "'" + promtool_command() + "' check metrics < '" + pattern + "' 2>&1";
        if (std::FILE* pipe = ::popen(command.c_str(), "r")) {
            char buffer[512];
            std::size_t n = 0;
            while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
                verdict.output.append(buffer, n);
            }
            int const status = ::pclose(pipe);
            verdict.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
    }
    std::filesystem::remove(pattern);
    return verdict;
}

/// Checks the exposition with promtool, or warns that it cannot.
void check_with_promtool(std::string const& text) {
    if (!promtool_available()) {
        WARN(
            "promtool not found (install Debian's prometheus package, see "
            "scripts/install-observability-deps.sh, or set WSMANAGER_PROMTOOL): "
            "skipping `promtool check metrics`");
        return;
    }
    auto const verdict = promtool_check_metrics(text);
    INFO("promtool check metrics said:\n" << verdict.output);
    CHECK(verdict.exit_code == 0);
    CHECK(verdict.output.empty());  // lint problems are printed, one per line
}

// ---- clients that account for every frame --------------------------------------------------

/// A WsClient that records every frame it takes and every frame it sends, so the test can
/// compare the server's counters with what really crossed the wire.
class Observed {
public:
    Observed(std::uint16_t port, std::string query) : client_(std::make_unique<WsClient>()) {
        result_ = client_->connect(ws_url(port, query), {"wsmanager.v1"});
    }

    WsClient::ConnectResult const& result() const noexcept { return result_; }
    WsClient& client() noexcept { return *client_; }

    /// Takes frames until one of `type` (the others are recorded too); nullopt on timeout.
    std::optional<rapidjson::Document> expect(std::string_view type,
                                              std::chrono::milliseconds timeout = default_wait) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto frame = client_->next_frame(left);
            if (!frame) return std::nullopt;
            record(*frame);
            auto json = parse_json(frame->payload);
            if (json && frame_type(*json) == type) return json;
        }
    }

    /// Records the frames already received, without waiting.
    void drain() {
        while (client_->queued_frames() > 0) {
            auto frame = client_->next_frame(std::chrono::milliseconds(0));
            if (!frame) break;
            record(*frame);
        }
    }

    /// Waits (bounded) until `count` frames in all were taken.
    bool received(std::size_t count) {
        return wait_until([&] {
            drain();
            return frames_ >= count;
        });
    }

    bool send(std::string text) {
        bytes_sent_ += text.size();
        ++frames_sent_;
        return client_->send_text(std::move(text));
    }

    std::size_t frames() const noexcept { return frames_; }
    std::size_t bytes() const noexcept { return bytes_; }
    std::size_t frames_sent() const noexcept { return frames_sent_; }
    std::size_t bytes_sent() const noexcept { return bytes_sent_; }
    std::vector<std::string> const& types() const noexcept { return types_; }

private:
    void record(WsClient::Frame const& frame) {
        ++frames_;
        bytes_ += frame.payload.size();
        auto json = parse_json(frame.payload);
        types_.push_back(json ? frame_type(*json) : "<not json>");
    }

    std::unique_ptr<WsClient> client_;
    WsClient::ConnectResult result_;
    std::size_t frames_ = 0;
    std::size_t bytes_ = 0;
    std::size_t frames_sent_ = 0;
    std::size_t bytes_sent_ = 0;
    std::vector<std::string> types_;
};

std::string joined(std::vector<std::string> const& items) {
    std::string text;
    for (auto const& item : items) text += (text.empty() ? "" : ", ") + item;
    return text;
}

TaskStepResult step_needing_confirmation() {
    TaskStepResult step;
    step.step = "review";
    step.result = R"({"rows":3})";
    step.message = "Apply 3 rows?";
    step.status = "waiting";
    return step;
}

/// A port that was free a moment ago (for Options::metrics_address).
std::uint16_t free_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor acceptor(
        io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return acceptor.local_endpoint().port();
}

}  // namespace

TEST_CASE("observability: /metrics counters move by exactly what happened", "[metrics]") {
    constexpr std::size_t max_connections = 5;
    constexpr int broadcasts = 3;
    HostContext host;
    auto options = test_options();
    options.max_connections = max_connections;
    options.ping_interval = std::chrono::milliseconds(0);  // no keepalive traffic
    Manager manager(options);
    manager.set_authenticator([](HandshakeRequest const& request) {
        auto const& user = request.query_param("user_id");
        if (user == "mallory") return AuthResult::reject("mallory is not welcome", 403);
        return AuthResult::accept(user);
    });
    start(manager);
    auto const port = manager.local_port();

    auto const before = scrape(port);
    CHECK(before("wsmanager_up") == 1);
    CHECK(before("wsmanager_connections_active") == 0);
    check_with_promtool(before.text());
    auto delta = [&before](Scrape const& after, std::string const& key) {
        return after(key) - before(key);
    };

    // N = 5 connections: alice twice (two tabs), bob, carol, one anonymous.
    Observed a1(port, "user_id=alice");
    Observed a2(port, "user_id=alice");
    Observed b1(port, "user_id=bob");
    Observed c1(port, "user_id=carol");
    REQUIRE(http_get(port, "/readyz").status == 200);  // 4 of 5
    Observed anon(port, "");
    std::vector<Observed*> const clients{&a1, &a2, &b1, &c1, &anon};
    for (auto* client : clients) {
        REQUIRE(client->result().opened);
        REQUIRE(client->expect("connected"));
    }

    // At max_connections: not ready, still alive.
    {
        auto const ready = http_get(port, "/readyz");
        CHECK(ready.status == 503);
        CHECK(http_get(port, "/healthz").status == 200);
    }

    // One over max_connections: upgraded, then closed with 1013.
    Observed over(port, "user_id=dave");
    REQUIRE(over.result().opened);
    auto const over_closed = over.client().wait_closed();
    REQUIRE(over_closed);
    CHECK(over_closed->code == 1013);

    // One refused by the authenticator: HTTP 403, no upgrade.
    Observed refused(port, "user_id=mallory");
    CHECK_FALSE(refused.result().opened);
    CHECK(refused.result().http_status == 403);

    // Topics: bob and the anonymous connection subscribe to "news".
    REQUIRE(b1.send(R"({"action":"subscribe","topic":"news"})"));
    REQUIRE(anon.send(R"({"action":"subscribe","topic":"news","request_id":7})"));
    REQUIRE(b1.expect("subscribed"));
    REQUIRE(anon.expect("subscribed"));

    // M broadcasts to all five.
    for (int i = 0; i < broadcasts; ++i) {
        auto const queued = get(manager.broadcast_message(
            json_message(R"({"type":"notice","n":)" + std::to_string(i) + "}"), asio::use_future));
        CHECK(queued == max_connections);
    }
    for (auto* client : clients) {
        for (int i = 0; i < broadcasts; ++i) REQUIRE(client->expect("notice"));
    }

    // send_to_user reaches both of alice's tabs; publish reaches the two subscribers.
    CHECK(get(manager.send_to_user("alice", json_message(R"({"type":"direct","text":"hi alice"})"),
                                   asio::use_future)) == 2);
    REQUIRE(a1.expect("direct"));
    REQUIRE(a2.expect("direct"));
    CHECK(get(manager.publish("news", json_message(R"({"type":"headline","text":"extra"})"),
                              asio::use_future)) == 2);
    REQUIRE(b1.expect("headline"));
    REQUIRE(anon.expect("headline"));

    // A bad frame of each kind, each answered with an error frame; and a ping.
    REQUIRE(c1.send("this is not json"));
    auto invalid = c1.expect("error");
    REQUIRE(invalid);
    CHECK(string_member(*invalid, "code") == "invalid_json");
    REQUIRE(c1.send(R"({"no_action":true})"));
    auto bad = c1.expect("error");
    REQUIRE(bad);
    CHECK(string_member(*bad, "code") == "bad_request");
    REQUIRE(c1.send(R"({"action":"frobnicate"})"));
    auto unknown = c1.expect("error");
    REQUIRE(unknown);
    CHECK(string_member(*unknown, "code") == "unknown_action");
    REQUIRE(a1.send(R"({"action":"ping","request_id":"p1"})"));
    REQUIRE(a1.expect("pong"));

    // A confirmation that alice answers: pending while she thinks.
    auto answered =
        manager.notify_user(step_needing_confirmation(), "alice", "task-a", 1, asio::use_future);
    auto request = a1.expect("task_step_result");
    REQUIRE(request);
    REQUIRE(a2.expect("task_step_result"));
    {
        auto const pending = scrape(port);
        CHECK(pending("wsmanager_pending_confirmations") == 1);
        CHECK(pending("wsmanager_pending_callbacks") == 1);
    }
    auto const callback_id = string_member(*request, "callback_id");
    REQUIRE(callback_id);
    REQUIRE(a1.send(R"({"action":"confirm","callback_id":")" + *callback_id +
                    R"(","proceed":true,"feedback":"go"})"));
    CHECK(get(std::move(answered)).reason == ConfirmationReason::user);
    REQUIRE(a1.expect("confirmation_resolved"));
    REQUIRE(a2.expect("confirmation_resolved"));

    // A confirmation that bob lets time out.
    auto ignored = manager.notify_user(step_needing_confirmation(), "bob", "task-b", 1,
                                       std::chrono::milliseconds(200), asio::use_future);
    REQUIRE(b1.expect("task_step_result"));
    CHECK(get(std::move(ignored)).reason == ConfirmationReason::timeout);
    REQUIRE(b1.expect("confirmation_resolved"));

    // A heartbeat for carol, briefly: the first beat goes at once, then it is cancelled.
    {
        asio::cancellation_signal signal;
        std::promise<std::error_code> beat_ended;
        manager.send_heartbeat(
            "carol", "task-c", std::chrono::hours(1),
            asio::bind_cancellation_slot(
                signal.slot(),
                asio::bind_executor(host.executor(), [&beat_ended](std::error_code ec) {
                    beat_ended.set_value(ec);
                })));
        REQUIRE(c1.expect("heartbeat"));
        CHECK(scrape(port)("wsmanager_heartbeats_running") == 1);
        // Emitted on the handler's executor, as Asio requires of a cancellation signal.
        asio::post(host.executor(), [&signal] { signal.emit(asio::cancellation_type::terminal); });
        CHECK(get(beat_ended.get_future()) == asio::error::operation_aborted);
    }

    // What every client must have received by now (connected frames included).
    std::map<Observed*, std::size_t> const expected_frames{
        {&a1, 1 + broadcasts + 1 + 1 + 2},  // + direct, pong, request + resolved
        {&a2, 1 + broadcasts + 1 + 2},      // + direct, request + resolved
        {&b1, 1 + 1 + broadcasts + 1 + 2},  // + subscribed, headline, request + resolved
        {&c1, 1 + broadcasts + 3 + 1},      // + three errors, heartbeat
        {&anon, 1 + 1 + broadcasts + 1},    // + subscribed, headline
    };
    std::size_t frames_expected = 0;
    for (auto const& [client, count] : expected_frames) {
        frames_expected += count;
        INFO("frames received: " << joined(client->types()));
        CHECK(client->received(count));
    }
    REQUIRE(frames_expected == 37);

    // Three clients leave with 1000; alice's first tab and bob stay.
    for (auto* client : {&a2, &c1, &anon}) client->client().close(1000, "bye");
    for (auto* client : {&a2, &c1, &anon}) REQUIRE(client->client().wait_closed());
    auto const closed_key = labelled("wsmanager_connections_closed_total", "code", "1000");
    scrape_until(port, closed_key, before(closed_key) + 3);
    auto const sent_key = std::string("wsmanager_messages_sent_total");
    scrape_until(port, sent_key, before(sent_key) + static_cast<double>(frames_expected));
    CHECK(http_get(port, "/readyz").status == 200);
    auto const after = scrape(port);
    auto const status_reply = http_get(port, "/status");

    // Nothing arrived that the scenario did not ask for.
    std::size_t frames_received = 0;
    std::size_t bytes_received = 0;
    std::size_t frames_from_clients = 0;
    std::size_t bytes_from_clients = 0;
    for (auto* client : std::vector<Observed*>{&a1, &a2, &b1, &c1, &anon, &over, &refused}) {
        client->drain();
        frames_received += client->frames();
        bytes_received += client->bytes();
        frames_from_clients += client->frames_sent();
        bytes_from_clients += client->bytes_sent();
    }
    CHECK(over.frames() == 0);
    CHECK(frames_received == frames_expected);
    CHECK(frames_from_clients == 7);  // 2 subscribes, 3 bad frames, a ping, a confirm

    // Connections.
    CHECK(after("wsmanager_up") == 1);
    CHECK(after("wsmanager_connections_active") == 2);
    CHECK(after("wsmanager_users_online") == 2);  // alice (first tab) and bob
    CHECK(after("wsmanager_topics") == 1);        // bob is still subscribed to news
    CHECK(delta(after, "wsmanager_connections_opened_total") == 5);
    CHECK(delta(after, closed_key) == 3);
    for (auto const* code : {"1001", "1006", "1011", "1013", "other"}) {
        INFO("close code " << code);
        CHECK(delta(after, labelled("wsmanager_connections_closed_total", "code", code)) == 0);
    }
    auto const rejected = [&](char const* reason) {
        return delta(after, labelled("wsmanager_connections_rejected_total", "reason", reason));
    };
    CHECK(rejected("limit") == 1);
    CHECK(rejected("auth") == 1);
    CHECK(rejected("origin") == 0);
    CHECK(rejected("handshake") == 0);  // the HTTP scrapes are not failed handshakes

    // Frames and bytes, both ways: exactly what the clients saw.
    CHECK(delta(after, sent_key) == static_cast<double>(frames_received));
    CHECK(delta(after, "wsmanager_sent_bytes_total") == static_cast<double>(bytes_received));
    CHECK(delta(after, "wsmanager_send_failures_total") == 0);
    CHECK(delta(after, "wsmanager_send_drops_total") == 0);
    CHECK(delta(after, "wsmanager_messages_received_total") ==
          static_cast<double>(frames_from_clients));
    CHECK(delta(after, "wsmanager_received_bytes_total") ==
          static_cast<double>(bytes_from_clients));
    auto const frames_rejected = [&](char const* code) {
        return delta(after, labelled("wsmanager_frames_rejected_total", "code", code));
    };
    CHECK(frames_rejected("invalid_json") == 1);
    CHECK(frames_rejected("bad_request") == 1);
    CHECK(frames_rejected("unknown_action") == 1);
    for (auto const* code : {"unknown_callback", "forbidden", "rate_limited", "internal"}) {
        INFO("error code " << code);
        CHECK(frames_rejected(code) == 0);
    }

    // Confirmations, fan-out, heartbeats.
    CHECK(after("wsmanager_pending_confirmations") == 0);
    CHECK(after("wsmanager_pending_callbacks") == 0);
    auto const resolved = [&](char const* reason) {
        return delta(after, labelled("wsmanager_confirmations_resolved_total", "reason", reason));
    };
    CHECK(resolved("user") == 1);
    CHECK(resolved("timeout") == 1);
    CHECK(resolved("cancelled") == 0);
    CHECK(resolved("shutdown") == 0);
    CHECK(resolved("disconnected") == 0);
    CHECK(delta(after, "wsmanager_confirmation_wait_seconds_count") == 2);
    CHECK(after("wsmanager_confirmation_wait_seconds_bucket{le=\"+Inf\"}") == 2);
    CHECK(after("wsmanager_confirmation_wait_seconds_sum") >= 0.2);  // bob's waited 200 ms
    CHECK(delta(after, "wsmanager_broadcast_fanout_seconds_count") == broadcasts);
    CHECK(after("wsmanager_broadcast_fanout_seconds_bucket{le=\"+Inf\"}") == broadcasts);
    CHECK(delta(after, "wsmanager_heartbeats_sent_total") == 1);
    CHECK(after("wsmanager_heartbeats_running") == 0);
    CHECK(delta(after, "wsmanager_acks_received_total") == 0);

    // /status is get_status() as JSON, and agrees with /metrics.
    {
        INFO("GET /status: " << status_reply.error << status_reply.body);
        REQUIRE(status_reply.status == 200);
        CHECK(status_reply.header("Content-Type") == "application/json");
        auto json = parse_json(status_reply.body);
        REQUIRE(json);
        REQUIRE(json->IsObject());
        auto const& status = *json;
        for (auto const* field :
             {"running", "active_connections", "pending_callbacks", "users_online", "topics",
              "uptime_s", "messages_sent", "messages_failed", "connection_success_rate",
              "avg_confirmation_wait_s"}) {
            INFO("field " << field);
            CHECK(status.HasMember(field));
        }
        CHECK(status["running"].GetBool());
        CHECK(status["active_connections"].GetUint64() == 2);
        CHECK(status["pending_callbacks"].GetUint64() == 0);
        CHECK(status["users_online"].GetUint64() == 2);
        CHECK(status["topics"].GetUint64() == 1);
        CHECK(status["uptime_s"].GetDouble() > 0);
        CHECK(status["messages_sent"].GetUint64() == frames_expected);
        CHECK(status["messages_failed"].GetUint64() == 0);
        CHECK(status["connection_success_rate"].GetDouble() == Approx(5.0 / 7.0));
        CHECK(status["avg_confirmation_wait_s"].GetDouble() ==
              Approx(after("wsmanager_confirmation_wait_seconds_sum") / 2).margin(1e-5));
    }

    check_with_promtool(after.text());

    // stop_server closes the two that stayed with 1001; nothing listens any more, so
    // the last look is through metrics_text().
    stop(manager);
    auto const stopped = Scrape::parse(manager.metrics_text());
    CHECK(stopped("wsmanager_up") == 0);
    CHECK(stopped("wsmanager_connections_active") == 0);
    CHECK(stopped(labelled("wsmanager_connections_closed_total", "code", "1001")) == 2);
    CHECK(stopped(closed_key) == 3);
    CHECK(http_get(port, "/healthz").status == 0);  // refused: nothing listens
}

TEST_CASE("observability: the HTTP endpoints and their content types", "[metrics]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();

    auto const health = http_get(port, "/healthz");
    CHECK(health.status == 200);
    auto const ready = http_get(port, "/readyz");
    CHECK(ready.status == 200);
    auto const metrics = http_get(port, "/metrics?name[]=ignored");  // the query is ignored
    CHECK(metrics.status == 200);
    CHECK_THAT(metrics.header("Content-Type"), Catch::StartsWith("text/plain; version=0.0.4"));
    auto const parsed = Scrape::parse(metrics.body);
    CHECK(parsed("wsmanager_up") == 1);
    CHECK(parsed("wsmanager_build_info{version=\"" WSMANAGER_VERSION_STRING "\"}") == 1);
    // metrics_text() is the same exposition.
    CHECK(Scrape::parse(manager.metrics_text()).size() == parsed.size());
    CHECK(http_get(port, "/nothing-here").status == 404);
    stop(manager);
}

TEST_CASE("observability: Options::http_endpoints = false turns the endpoints off", "[metrics]") {
    auto options = test_options();
    options.http_endpoints = false;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    for (auto const* path : {"/metrics", "/healthz", "/readyz", "/status"}) {
        INFO(path);
        CHECK(http_get(port, path).status == 404);
    }
    // WebSocket service is unaffected, and the counters still count.
    auto client = connect_client(port, "user_id=alice");
    REQUIRE(client.hello);
    CHECK(Scrape::parse(manager.metrics_text())("wsmanager_connections_opened_total") == 1);
    stop(manager);
}

TEST_CASE("observability: Options::metrics_address moves the endpoints to their own listener",
          "[metrics]") {
    // The free port may be taken between probing and binding: try a few.
    std::unique_ptr<Manager> manager;
    std::uint16_t metrics_port = 0;
    for (int attempt = 0; attempt < 5 && !manager; ++attempt) {
        metrics_port = free_port();
        auto options = test_options();
        options.metrics_address = "127.0.0.1:" + std::to_string(metrics_port);
        auto candidate = std::make_unique<Manager>(options);
        try {
            start(*candidate);
            manager = std::move(candidate);
        } catch (std::system_error const& e) {
            WARN("metrics port " << metrics_port << " was taken: " << e.what());
        }
    }
    REQUIRE(manager);
    auto const port = manager->local_port();
    REQUIRE(port != metrics_port);

    auto client = connect_client(port, "user_id=alice");
    REQUIRE(client.hello);
    auto const metrics = http_get(metrics_port, "/metrics");
    CHECK(metrics.status == 200);
    CHECK_THAT(metrics.header("Content-Type"), Catch::StartsWith("text/plain; version=0.0.4"));
    auto const parsed = Scrape::parse(metrics.body);
    CHECK(parsed("wsmanager_connections_active") == 1);
    check_with_promtool(metrics.body);
    CHECK(http_get(metrics_port, "/healthz").status == 200);
    CHECK(http_get(metrics_port, "/readyz").status == 200);
    auto const status = http_get(metrics_port, "/status");
    CHECK(status.status == 200);
    auto json = parse_json(status.body);
    REQUIRE(json);
    CHECK((*json)["active_connections"].GetUint64() == 1);
    CHECK(http_get(metrics_port, "/elsewhere").status == 404);

    // Not on the WebSocket port any more.
    for (auto const* path : {"/metrics", "/healthz", "/readyz", "/status"}) {
        INFO(path);
        CHECK(http_get(port, path).status == 404);
    }
    stop(*manager);
    CHECK(http_get(metrics_port, "/metrics").status == 0);  // its listener stopped too
}

TEST_CASE("observability: host routes through on_http", "[metrics]") {
    Manager manager(test_options());
    manager.on_http([](HttpRequest const& request, HttpResponse& response) {
        if (request.method == "GET" && request.path == "/hello") {
            response.body = "hello " + request.query + "\n";
            return true;
        }
        if (request.method == "POST" && request.path == "/echo") {
            response.content_type = "application/json";
            response.headers.emplace_back("X-Echo-Length", std::to_string(request.body.size()));
            response.body = request.body;
            return true;
        }
        if (request.path == "/metrics") {  // built-in routes come first for GET
            response.status = 418;
            return true;
        }
        return false;
    });
    start(manager);
    auto const port = manager.local_port();

    auto const hello = http_get(port, "/hello?name=ops");
    CHECK(hello.status == 200);
    CHECK(hello.body == "hello name=ops\n");

    std::string const body = R"({"task":"t-1","rows":[1,2,3]})";
    auto const echo = http_request(port, "POST", "/echo", body);
    INFO(echo.error << echo.head);
    CHECK(echo.status == 200);
    CHECK(echo.body == body);
    CHECK(echo.header("Content-Type") == "application/json");
    CHECK(echo.header("X-Echo-Length") == std::to_string(body.size()));

    CHECK(http_get(port, "/metrics").status == 200);
    CHECK(http_request(port, "POST", "/metrics", "x").status == 418);
    CHECK(http_get(port, "/unknown").status == 404);
    stop(manager);
}

TEST_CASE("observability: refusals by origin and failed handshakes count by reason", "[metrics]") {
    auto const rejected_key = [](char const* reason) {
        return labelled("wsmanager_connections_rejected_total", "reason", reason);
    };

    SECTION("an Origin outside allowed_origins is refused (403) as origin") {
        auto options = test_options();
        options.allowed_origins = {"https://app.example"};
        Manager manager(options);
        start(manager);
        auto const port = manager.local_port();
        WsClient client;  // sends no Origin header
        auto const result = client.connect(ws_url(port, "user_id=alice"));
        CHECK_FALSE(result.opened);
        CHECK(result.http_status == 403);
        auto const after = scrape_until(port, rejected_key("origin"), 1);
        CHECK(after(rejected_key("origin")) == 1);
        CHECK(after(rejected_key("auth")) == 0);
        CHECK(after(rejected_key("handshake")) == 0);
        CHECK(after("wsmanager_connections_opened_total") == 0);
        stop(manager);
    }

    SECTION("a malformed query string (400) and a TCP connection that never upgrades") {
        Manager manager(test_options());
        start(manager);
        auto const port = manager.local_port();
        {
            RawClient raw(port);
            REQUIRE(raw.connected());
            CHECK(raw.handshake("/?user_id=%zz") == 400);
        }
        auto const malformed = scrape_until(port, rejected_key("handshake"), 1);
        CHECK(malformed(rejected_key("handshake")) == 1);
        CHECK(malformed(rejected_key("auth")) == 0);
        {
            // What a TCP-only load-balancer health check does: connect, then close.
            RawClient raw(port);
            REQUIRE(raw.connected());
        }
        auto const tcp_only = scrape_until(port, rejected_key("handshake"), 2);
        CHECK(tcp_only(rejected_key("handshake")) == 2);
        CHECK(tcp_only("wsmanager_connections_opened_total") == 0);
        stop(manager);
    }
}
