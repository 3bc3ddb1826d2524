// SPDX-License-Identifier: BSL-1.0
// Client frames: the ping action, rejected frames (an error, the connection stays),
// protocol violations (the connection closes with 1003 / 1007 / 1009), keepalive, and a
// client that never reads.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include "harness.hpp"

using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;

TEST_CASE("ping action: pong echoes the timestamp and adds server_time", "[frames][ping]") {
    Manager manager(test_options());
    start(manager);
    auto client = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(client.hello.has_value());

    SECTION("numeric timestamp") {
        REQUIRE(client->send_text(R"({"action":"ping","timestamp":1712345678.5})"));
        auto pong = client->next_json();
        REQUIRE(pong.has_value());
        CHECK(frame_type(*pong) == "pong");
        REQUIRE((*pong)["timestamp"].IsNumber());
        CHECK((*pong)["timestamp"].GetDouble() == 1712345678.5);
        REQUIRE((*pong)["server_time"].IsNumber());
        CHECK(std::abs((*pong)["server_time"].GetDouble() - unix_time_s()) < 60);
        CHECK_FALSE(pong->HasMember("request_id"));
    }
    SECTION("string timestamp and request_id") {
        REQUIRE(client->send_text(R"({"action":"ping","timestamp":"t-1","request_id":"x"})"));
        auto pong = client->next_json();
        REQUIRE(pong.has_value());
        CHECK(frame_type(*pong) == "pong");
        CHECK(string_member(*pong, "timestamp") == "t-1");
        CHECK(string_member(*pong, "request_id") == "x");
    }
    SECTION("no timestamp") {
        REQUIRE(client->send_text(R"({"action":"ping"})"));
        auto pong = client->next_json();
        REQUIRE(pong.has_value());
        CHECK(frame_type(*pong) == "pong");
        REQUIRE(pong->HasMember("timestamp"));
        CHECK((*pong)["timestamp"].IsNull());
        CHECK((*pong)["server_time"].IsNumber());
    }
    SECTION("many pings are answered in order") {
        for (int i = 0; i < 50; ++i) {
            REQUIRE(client->send_text(R"({"action":"ping","request_id":)" + std::to_string(i) + "}"));
        }
        for (int i = 0; i < 50; ++i) {
            auto pong = client->next_json();
            REQUIRE(pong.has_value());
            REQUIRE((*pong)["request_id"].IsInt());
            CHECK((*pong)["request_id"].GetInt() == i);
        }
    }
    stop(manager);
}

TEST_CASE("bad frames get an error and the connection stays usable", "[frames][errors]") {
    Manager manager(test_options());
    start(manager);
    auto client = connect_client(manager.local_port(), "user_id=alice");
    auto bystander = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(client.hello.has_value());
    REQUIRE(bystander.hello.has_value());

    struct Case {
        std::string frame;
        char const* code;
        char const* message;        // nullptr: any message
        char const* string_id;      // the request_id expected back, when a string
        int numeric_id;             // ... when a number (-1: none)
    };
    std::vector<Case> const cases = {
        {"{not json", "invalid_json", "Invalid JSON format", nullptr, -1},
        {"", "invalid_json", "Invalid JSON format", nullptr, -1},
        {R"({"action":"ping"} {"action":"ping"})", "invalid_json", "Invalid JSON format", nullptr, -1},
        {"[1,2,3]", "bad_request", nullptr, nullptr, -1},
        {R"("ping")", "bad_request", nullptr, nullptr, -1},
        {"42", "bad_request", nullptr, nullptr, -1},
        {R"({"request_id":"r1"})", "bad_request", nullptr, "r1", -1},
        {R"({"action":5,"request_id":"r2"})", "bad_request", nullptr, "r2", -1},
        {R"({"action":["ping"]})", "bad_request", nullptr, nullptr, -1},
        {R"({"action":"zzz","request_id":"r3"})", "unknown_action", "Unknown action: zzz", "r3", -1},
        {R"({"action":""})", "unknown_action", "Unknown action: ", nullptr, -1},
        {R"({"action":"subscribe","request_id":4})", "bad_request", nullptr, nullptr, 4},
        {R"({"action":"subscribe","topic":""})", "bad_request", nullptr, nullptr, -1},
        {R"({"action":"subscribe","topic":7})", "bad_request", nullptr, nullptr, -1},
        {R"({"action":"unsubscribe","request_id":"u"})", "bad_request", nullptr, "u", -1},
        {R"({"action":"subscribe","topic":")" + std::string(300, 't') + R"("})", "bad_request",
         nullptr, nullptr, -1},
        {R"({"action":"ping","request_id":true})", "bad_request", nullptr, nullptr, -1},
    };
    for (auto const& c : cases) {
        INFO("frame: " << c.frame);
        REQUIRE(client->send_text(c.frame));
        auto error = client->next_json();
        REQUIRE(error.has_value());
        CHECK(frame_type(*error) == "error");
        CHECK(string_member(*error, "code") == c.code);
        auto const message = string_member(*error, "message");
        REQUIRE(message.has_value());
        if (c.message != nullptr) CHECK(*message == c.message);
        CHECK_FALSE(message->empty());
        if (c.string_id != nullptr) {
            CHECK(string_member(*error, "request_id") == c.string_id);
        } else if (c.numeric_id >= 0) {
            REQUIRE(error->HasMember("request_id"));
            REQUIRE((*error)["request_id"].IsInt());
            CHECK((*error)["request_id"].GetInt() == c.numeric_id);
        } else {
            CHECK_FALSE(error->HasMember("request_id"));
        }
        // Still open and served.
        CHECK(ping_pong(*client));
    }
    CHECK(client->is_open());
    // Nobody else saw any of it.
    std::string extra;
    CHECK(bystander->expect_silence(silence_window, &extra));
    CHECK(extra.empty());
    CHECK(ping_pong(*bystander));
    CHECK(manager.get_status().frames_rejected == cases.size());
    CHECK(manager.get_connection_count() == 2);
    stop(manager);
}

// JSON escapes can spell a lone UTF-16 surrogate ("\udc00"), which has no UTF-8 form.
// Whatever the server does with such a string (rejecting the frame, or echoing it in an
// error or a `subscribed` frame), what it sends back must be valid UTF-8, or the client
// fails the connection (1007): "a bad frame never closes the connection".
TEST_CASE("lone surrogate escapes never make the server send invalid UTF-8", "[frames][errors]") {
    Manager manager(test_options());
    start(manager);
    for (std::string const frame : {
             R"({"action":"\udc00","request_id":"s1"})",                 // unknown_action echoes it
             R"({"action":"subscribe","topic":"\udfff","request_id":"s2"})",  // subscribed echoes it
             R"({"action":"subscribe","topic":"\ud800","request_id":"s3"})",  // high, unpaired
             R"({"action":"ping","timestamp":"\udc01","request_id":"s4"})",  // pong echoes it
             R"({"action":"ping","request_id":"\udc02"})",                // echoed request_id
         }) {
        INFO("frame: " << frame);
        auto client = connect_client(manager.local_port(), "user_id=alice");
        REQUIRE(client.hello.has_value());
        REQUIRE(client->send_text(frame));
        auto reply = client->next_json();
        auto const closed = client->wait_closed(std::chrono::milliseconds(0));
        INFO("closed with " << (closed ? closed->code : 0) << " " << (closed ? closed->reason : ""));
        CHECK(reply.has_value());
        CHECK(client->is_open());
        if (client->is_open()) CHECK(ping_pong(*client));
    }
    stop(manager);
}

TEST_CASE("a binary frame closes the connection with 1003", "[frames][violations]") {
    Manager manager(test_options());
    start(manager);
    auto client = connect_client(manager.local_port());
    auto other = connect_client(manager.local_port());
    REQUIRE(client.hello.has_value());
    REQUIRE(other.hello.has_value());
    REQUIRE(client->send_binary(std::string("\x01\x02\x03", 3)));
    auto const closed = client->wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1003);
    CHECK(ping_pong(*other));
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }));
    stop(manager);
}

TEST_CASE("a frame over max_message_size closes the connection with 1009", "[frames][violations]") {
    auto options = test_options();
    options.max_message_size = 1024;
    Manager manager(options);
    start(manager);
    auto client = connect_client(manager.local_port());
    auto other = connect_client(manager.local_port());
    REQUIRE(client.hello.has_value());
    REQUIRE(other.hello.has_value());

    // Just under the limit is fine.
    std::string const fits = R"({"action":"ping","pad":")" + std::string(900, 'x') + R"("})";
    REQUIRE(fits.size() < 1024);
    REQUIRE(client->send_text(fits));
    CHECK(client->next_of_type("pong").has_value());

    std::string const big = R"({"action":"ping","pad":")" + std::string(4096, 'x') + R"("})";
    REQUIRE(client->send_text(big));
    auto const closed = client->wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1009);
    CHECK(ping_pong(*other));
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }));
    stop(manager);
}

TEST_CASE("invalid UTF-8 in a text frame closes the connection with 1007", "[frames][violations]") {
    Manager manager(test_options());
    start(manager);
    auto other = connect_client(manager.local_port());
    REQUIRE(other.hello.has_value());
    RawClient raw(manager.local_port());
    REQUIRE(raw.handshake("/?user_id=raw") == 101);
    auto hello = raw.read_frame();
    REQUIRE(hello.has_value());
    CHECK(hello->opcode == 1);
    CHECK(hello->payload.find("\"connected\"") != std::string::npos);

    // A valid frame first: the hand-made framing is right.
    REQUIRE_FALSE(raw.send_text(R"({"action":"ping","request_id":"raw"})"));
    auto pong = raw.read_frame();
    REQUIRE(pong.has_value());
    CHECK(pong->payload.find("\"pong\"") != std::string::npos);

    REQUIRE_FALSE(raw.send_text("{\"action\":\"\xff\xfe\"}"));
    auto const close = raw.read_until_close();
    REQUIRE(close.has_value());
    CHECK(close->close_code() == 1007);
    CHECK(ping_pong(*other));
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }));
    stop(manager);
}

TEST_CASE("keepalive drops a client that does not answer pings", "[frames][keepalive]") {
    auto options = test_options();
    options.ping_interval = std::chrono::milliseconds(200);
    options.ping_timeout = std::chrono::milliseconds(300);
    options.close_timeout = std::chrono::milliseconds(500);
    Manager manager(options);
    start(manager);

    auto healthy = connect_client(manager.local_port(), "user_id=healthy");
    REQUIRE(healthy.hello.has_value());
    RawClient mute(manager.local_port());
    REQUIRE(mute.handshake("/?user_id=mute") == 101);
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 2; }));

    // The mute client never reads, so never answers a ping: ping (<= 200 ms) + pong
    // timeout (300 ms) + close timeout (500 ms) and it is gone.
    auto const begin = std::chrono::steady_clock::now();
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }, std::chrono::seconds(5)));
    auto const took = std::chrono::steady_clock::now() - begin;
    CHECK(took < std::chrono::seconds(4));

    // The websocketpp client answers pings by itself: still there after several rounds.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    CHECK(healthy->is_open());
    CHECK(manager.get_connection_count() == 1);
    CHECK(ping_pong(*healthy));

    // What the mute client was sent: its `connected` frame, at least one ping, then a
    // close with 1011.
    std::vector<int> opcodes;
    std::optional<RawClient::Frame> close;
    while (auto frame = mute.read_frame(std::chrono::seconds(2))) {
        opcodes.push_back(frame->opcode);
        if (frame->opcode == 8) {
            close = frame;
            break;
        }
    }
    CHECK(std::count(opcodes.begin(), opcodes.end(), 9) >= 1);
    REQUIRE(close.has_value());
    CHECK(close->close_code() == 1011);
    stop(manager);
}

TEST_CASE("a client that never reads is dropped, not buffered without bound", "[frames][backpressure]") {
    auto options = test_options();
    options.max_send_buffer = 256 * 1024;
    options.close_timeout = std::chrono::milliseconds(500);
    options.ping_interval = std::chrono::milliseconds(0);  // only the send buffer acts here
    Manager manager(options);
    start(manager);

    auto reader = connect_client(manager.local_port(), "user_id=reader");
    REQUIRE(reader.hello.has_value());
    RawClient stalled(manager.local_port(), 4096);
    REQUIRE(stalled.handshake("/?user_id=stalled") == 101);
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 2; }));

    std::string const pad(64 * 1024, 'p');
    int sent = 0;
    bool overflowed = false;
    // Each broadcast waits until the reader has it, so only the stalled client falls
    // behind. The kernel's socket buffers take a few MB before the server's queue grows.
    for (int n = 0; n < 1000 && !overflowed; ++n) {
        auto const message =
            json_message(R"({"type":"big","n":)" + std::to_string(n) + R"(,"pad":")" + pad + "\"}");
        auto const queued = get(manager.broadcast_message(message, asio::use_future));
        CHECK(queued >= 1);
        auto frame = reader->next_json();
        REQUIRE(frame.has_value());
        REQUIRE((*frame)["n"].GetInt() == n);
        ++sent;
        overflowed = manager.get_status().messages_failed > 0;
    }
    INFO("broadcasts sent: " << sent);
    CHECK(overflowed);
    // The stalled client is closed and dropped (close_timeout, as it never reads the close).
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }, std::chrono::seconds(5)));
    CHECK(manager.get_status().active_connections == 1);

    // The reader was never disturbed, and still receives.
    CHECK(reader->is_open());
    CHECK(get(manager.broadcast_message(json_message(R"({"type":"after"})"), asio::use_future)) == 1);
    CHECK(reader->next_of_type("after").has_value());
    CHECK(ping_pong(*reader));
    stop(manager);
}

TEST_CASE("deeply nested frames are parsed and echoed without exhausting the stack",
          "[frames][errors]") {
    Manager manager(test_options());  // max_message_size 64 KiB: about 32,000 levels fit
    start(manager);
    auto client = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(client.hello.has_value());
    constexpr std::size_t depth = 32000;
    std::string const nested = std::string(depth, '[') + std::string(depth, ']');

    SECTION("in a field the server ignores") {
        std::string const frame = R"({"action":"ping","request_id":"deep","x":)" + nested + "}";
        REQUIRE(frame.size() < 64 * 1024);
        REQUIRE(client->send_text(frame));
        auto pong = client->next_json();
        REQUIRE(pong.has_value());
        CHECK(frame_type(*pong) == "pong");
        CHECK(string_member(*pong, "request_id") == "deep");
    }
    SECTION("in a field the server echoes (pong.timestamp)") {
        std::string const frame =
            R"({"action":"ping","request_id":"deep","timestamp":)" + nested + "}";
        REQUIRE(frame.size() < 64 * 1024);
        REQUIRE(client->send_text(frame));
        auto reply = client->next_text();
        REQUIRE(reply.has_value());
        CHECK(reply->find("\"pong\"") != std::string::npos);
    }
    CHECK(ping_pong(*client));
    stop(manager);
}

TEST_CASE("frames over max_frames_per_second get rate_limited, the connection stays",
          "[frames][errors]") {
    auto options = test_options();
    options.max_frames_per_second = 5;  // a burst of 10, then 5 a second
    Manager manager(options);
    start(manager);
    auto flooder = connect_client(manager.local_port(), "user_id=alice");
    auto other = connect_client(manager.local_port(), "user_id=bob");
    REQUIRE(flooder.hello.has_value());
    REQUIRE(other.hello.has_value());

    constexpr int sent = 30;
    for (int i = 0; i < sent; ++i) {
        REQUIRE(flooder->send_text(R"({"action":"ping","request_id":)" + std::to_string(i) + "}"));
    }
    int pongs = 0;
    int limited = 0;
    for (int i = 0; i < sent; ++i) {
        auto frame = flooder->next_json();
        REQUIRE(frame.has_value());
        if (frame_type(*frame) == "pong") {
            ++pongs;
        } else if (frame_type(*frame) == "error" &&
                   string_member(*frame, "code") == "rate_limited") {
            ++limited;
        }
    }
    INFO("pongs " << pongs << ", rate_limited " << limited);
    CHECK(pongs + limited == sent);  // every frame answered, one way or the other
    CHECK(pongs >= 10);              // the burst
    CHECK(pongs < sent);
    CHECK(limited >= 10);
    CHECK(flooder->is_open());
    // Another connection has its own budget.
    CHECK(ping_pong(*other));
    // The budget refills.
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
    CHECK(ping_pong(*flooder));
    CHECK(manager.get_status().frames_rejected >= static_cast<std::uint64_t>(limited));
    stop(manager);
}

namespace {
/// The value of an unlabelled sample in Prometheus text.
double frames_metric(std::string const& text, std::string const& name) {
    auto const at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}
}  // namespace

TEST_CASE("a connection whose frames wait for a busy manager stops reading, and loses none",
          "[frames][backpressure]") {
    auto options = test_options();
    options.max_frames_per_second = 0;
    // Two threads: while "hold" keeps one on the manager strand, the other goes on reading
    // the connection (on one thread the reads would wait too, and nothing would pile up).
    options.threads = 2;
    Manager manager(options);
    std::atomic<bool> block{true};
    // The first "hold" frame keeps the manager strand busy while the pings pile up.
    manager.on_action("hold", [&](wsmanager::ActionContext const&, rapidjson::Value const&) {
        if (block.exchange(false)) std::this_thread::sleep_for(std::chrono::milliseconds(700));
    });
    start(manager);
    auto client = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(client.hello.has_value());
    auto const pauses_before = frames_metric(manager.metrics_text(), "wsmanager_read_pauses_total");

    constexpr int sent = 2000;
    REQUIRE(client->send_text(R"({"action":"hold"})"));
    for (int i = 0; i < sent; ++i) {
        REQUIRE(client->send_text(R"({"action":"ping","request_id":)" + std::to_string(i) + "}"));
    }
    int next = 0;
    while (next < sent) {
        auto frame = client->next_json(std::chrono::seconds(20));
        REQUIRE(frame.has_value());
        REQUIRE(frame_type(*frame) == "pong");
        REQUIRE((*frame)["request_id"].GetInt() == next);  // all of them, in order
        ++next;
    }
    CHECK(frames_metric(manager.metrics_text(), "wsmanager_read_pauses_total") > pauses_before);
    CHECK(ping_pong(*client));
    stop(manager);
}

namespace {
/// TCP_NODELAY of the server's end of every connection accepted on `port`, found among this
/// process's own descriptors (the manager runs in the test process).
std::vector<int> accepted_nodelay(std::uint16_t port) {
    std::vector<int> found;
    for (int fd = 0; fd < 4096; ++fd) {
        sockaddr_in local{};
        socklen_t length = sizeof local;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) != 0) continue;
        if (local.sin_family != AF_INET || ntohs(local.sin_port) != port) continue;
        sockaddr_in peer{};
        length = sizeof peer;
        if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &length) != 0) continue;  // the listener
        int nodelay = -1;
        length = sizeof nodelay;
        if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &length) != 0) continue;
        found.push_back(nodelay);
    }
    return found;
}
}  // namespace

TEST_CASE("accepted connections have Nagle's algorithm off", "[frames][tcp]") {
    // With Nagle on, a small frame written while an earlier one is unacknowledged waits for
    // the peer's delayed ACK: 40 ms on Linux, in every confirmation round trip.
    Manager manager(test_options());
    start(manager);
    auto first = connect_client(manager.local_port(), "user_id=alice");
    auto second = connect_client(manager.local_port(), "user_id=bob");
    REQUIRE(first.hello.has_value());
    REQUIRE(second.hello.has_value());
    auto const nodelay = accepted_nodelay(manager.local_port());
    CHECK(nodelay.size() == 2);
    for (int value : nodelay) CHECK(value != 0);
    stop(manager);
}
