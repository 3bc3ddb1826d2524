// SPDX-License-Identifier: BSL-1.0
// What reaches whom: the connected frame, broadcast_message, send_to_user, publish and
// topics, max_connections, host actions (on_action), and the status counters.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include "harness.hpp"

using namespace wsmanager::test;
using Manager = wsmanager::WebSocketManager<>;

namespace {

/// The integer member "n" of a frame, or -1.
int seq_of(rapidjson::Value const& frame) {
    if (!frame.IsObject() || !frame.HasMember("n") || !frame["n"].IsInt()) return -1;
    return frame["n"].GetInt();
}

}  // namespace

TEST_CASE("connected frame on open", "[delivery][handshake]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();

    SECTION("a user offering wsmanager.v1") {
        auto client = connect_client(port, "user_id=alice", {"wsmanager.v1"});
        REQUIRE(client.result.opened);
        CHECK(client.result.http_status == 101);
        CHECK(client->subprotocol() == "wsmanager.v1");
        REQUIRE(client.hello.has_value());
        auto const& hello = *client.hello;
        CHECK(frame_type(hello) == "connected");
        REQUIRE(hello.HasMember("connection_id"));
        REQUIRE(hello["connection_id"].IsString());
        CHECK(hello["connection_id"].GetStringLength() > 0);
        CHECK(string_member(hello, "user_id") == "alice");
        CHECK(string_member(hello, "protocol") == "wsmanager.v1");
        REQUIRE(hello.HasMember("server_time"));
        REQUIRE(hello["server_time"].IsNumber());
        CHECK(std::abs(hello["server_time"].GetDouble() - unix_time_s()) < 60);
    }
    SECTION("an anonymous client offering no subprotocol (the original's browser client)") {
        auto client = connect_client(port, "", {});
        REQUIRE(client.result.opened);
        CHECK(client->subprotocol().empty());
        REQUIRE(client.hello.has_value());
        CHECK(frame_type(*client.hello) == "connected");
        REQUIRE(client.hello->HasMember("user_id"));
        CHECK((*client.hello)["user_id"].IsNull());
        CHECK(string_member(*client.hello, "protocol") == "");
    }
    SECTION("wsmanager.v1 among other offers is selected") {
        auto client = connect_client(port, "user_id=bob", {"chat", "wsmanager.v1"});
        REQUIRE(client.result.opened);
        CHECK(client->subprotocol() == "wsmanager.v1");
        REQUIRE(client.hello.has_value());
        CHECK(string_member(*client.hello, "protocol") == "wsmanager.v1");
    }
    SECTION("only unknown subprotocols offered: accepted without one") {
        auto client = connect_client(port, "user_id=carol", {"chat.v2"});
        REQUIRE(client.result.opened);
        CHECK(client->subprotocol().empty());
        REQUIRE(client.hello.has_value());
        CHECK(string_member(*client.hello, "protocol") == "");
    }
    SECTION("user_id is percent-decoded, any path works") {
        auto client = std::make_unique<WsClient>();
        REQUIRE(client->connect(ws_url(port, "user_id=al%20ice+b&x=1", "/ws")).opened);
        auto hello = client->next_json();
        REQUIRE(hello.has_value());
        CHECK(string_member(*hello, "user_id") == "al ice b");
    }
    SECTION("connection ids are distinct") {
        std::set<std::string> ids;
        std::vector<Connected> clients;
        for (int i = 0; i < 5; ++i) {
            clients.push_back(connect_client(port, "user_id=same"));
            REQUIRE(clients.back().hello.has_value());
            ids.insert(string_member(*clients.back().hello, "connection_id").value_or(""));
        }
        CHECK(ids.size() == 5);
        CHECK(ids.count("") == 0);
    }
    SECTION("a malformed query string is refused with 400") {
        WsClient client;
        auto const result = client.connect(ws_url(port, "user_id=%zz"));
        CHECK_FALSE(result.opened);
        CHECK(result.http_status == 400);
    }
    stop(manager);
}

// A user id is whatever the query carried, percent-decoded: the bytes may not be UTF-8.
// Sent as is in the `connected` text frame, they make the client fail the connection
// (1007). The handshake must be refused (400) or the id escaped; never a broken frame.
TEST_CASE("a user_id that is not UTF-8 never produces an invalid frame", "[delivery][handshake]") {
    Manager manager(test_options());
    start(manager);
    WsClient client;
    auto const result = client.connect(ws_url(manager.local_port(), "user_id=%FF%FE"));
    if (result.opened) {
        auto hello = client.next_json();
        auto const closed = client.wait_closed(std::chrono::milliseconds(0));
        INFO("connection closed with " << (closed ? closed->code : 0));
        REQUIRE(hello.has_value());
        CHECK(frame_type(*hello) == "connected");
        CHECK(client.is_open());
    } else {
        CHECK(result.http_status == 400);
    }
    stop(manager);
}

TEST_CASE("broadcast_message reaches every connection exactly once, in order", "[delivery]") {
    Manager manager(test_options());
    start(manager);
    constexpr int connections = 20;
    constexpr int messages = 5;
    std::vector<Connected> clients;
    for (int i = 0; i < connections; ++i) {
        // A mix of users and anonymous connections: broadcasts go to all.
        clients.push_back(connect_client(manager.local_port(),
                                         i % 3 == 0 ? "" : "user_id=u" + std::to_string(i % 4)));
        REQUIRE(clients.back().hello.has_value());
    }
    REQUIRE(manager.get_connection_count() == connections);

    // Started back to back, without waiting: their order must be kept.
    std::vector<std::future<std::size_t>> results;
    for (int n = 0; n < messages; ++n) {
        results.push_back(manager.broadcast_message(
            json_message(R"({"type":"broadcast","n":)" + std::to_string(n) + "}"),
            asio::use_future));
    }
    for (auto& result : results) CHECK(get(std::move(result)) == connections);

    for (int i = 0; i < connections; ++i) {
        INFO("client " << i);
        for (int n = 0; n < messages; ++n) {
            auto frame = clients[i]->next_json();
            REQUIRE(frame.has_value());
            CHECK(frame_type(*frame) == "broadcast");
            CHECK(seq_of(*frame) == n);
        }
    }
    for (int i = 0; i < connections; ++i) {
        INFO("client " << i);
        std::string extra;
        CHECK(clients[i]->expect_silence(i == 0 ? silence_window : std::chrono::milliseconds(0),
                                         &extra));
        CHECK(extra.empty());
    }
    stop(manager);
}

TEST_CASE("broadcast_message with nobody connected returns 0", "[delivery]") {
    Manager manager(test_options());
    CHECK(get(manager.broadcast_message(json_message("{}"), asio::use_future)) == 0);
    start(manager);
    CHECK(get(manager.broadcast_message(json_message("{}"), asio::use_future)) == 0);
    stop(manager);
}

TEST_CASE("host messages are delivered exactly as built", "[delivery]") {
    Manager manager(test_options());
    start(manager);
    auto client = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(client.hello.has_value());
    std::string const text = R"({ "type" : "custom",  "nested" : {"a" : [1, 2.5, "\u00e9"]} })";
    REQUIRE(get(manager.broadcast_message(json_message(text), asio::use_future)) == 1);
    CHECK(client->next_text() == text);

    rapidjson::Document value(rapidjson::kObjectType);
    value.AddMember("type", "built", value.GetAllocator());
    REQUIRE(get(manager.send_to_user("alice", wsmanager::Message(value), asio::use_future)) == 1);
    CHECK(client->next_text() == R"({"type":"built"})");
    stop(manager);
}

TEST_CASE("send_to_user reaches all and only that user's connections", "[delivery]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    std::vector<Connected> alice, bob;
    for (int i = 0; i < 3; ++i) {
        alice.push_back(connect_client(port, "user_id=alice"));
        REQUIRE(alice.back().hello.has_value());
    }
    for (int i = 0; i < 2; ++i) {
        bob.push_back(connect_client(port, "user_id=bob"));
        REQUIRE(bob.back().hello.has_value());
    }
    auto anonymous = connect_client(port);
    REQUIRE(anonymous.hello.has_value());
    CHECK(manager.get_status().users_online == 2);

    CHECK(get(manager.send_to_user("alice", json_message(R"({"type":"for_alice"})"),
                                   asio::use_future)) == 3);
    for (auto& c : alice) {
        auto frame = c->next_json();
        REQUIRE(frame.has_value());
        CHECK(frame_type(*frame) == "for_alice");
    }
    CHECK(bob[0]->expect_silence(silence_window));
    CHECK(bob[1]->expect_silence(std::chrono::milliseconds(0)));
    CHECK(anonymous->expect_silence(std::chrono::milliseconds(0)));

    CHECK(get(manager.send_to_user("bob", json_message(R"({"type":"for_bob"})"),
                                   asio::use_future)) == 2);
    for (auto& c : bob) CHECK(c->next_of_type("for_bob").has_value());

    SECTION("unknown or empty user: nobody") {
        CHECK(get(manager.send_to_user("carol", json_message("{}"), asio::use_future)) == 0);
        // Anonymous connections are not a user called "".
        CHECK(get(manager.send_to_user("", json_message("{}"), asio::use_future)) == 0);
        CHECK(anonymous->expect_silence(silence_window));
    }
    SECTION("a closed connection no longer counts") {
        alice[0]->close();
        REQUIRE(alice[0]->wait_closed().has_value());
        REQUIRE(wait_until([&] { return manager.get_connection_count() == 5; }));
        CHECK(get(manager.send_to_user("alice", json_message(R"({"type":"again"})"),
                                       asio::use_future)) == 2);
        CHECK(alice[1]->next_of_type("again").has_value());
        CHECK(alice[2]->next_of_type("again").has_value());
    }
    SECTION("a user whose connections all closed is offline") {
        for (auto& c : bob) c->close();
        for (auto& c : bob) REQUIRE(c->wait_closed().has_value());
        REQUIRE(wait_until([&] { return manager.get_status().users_online == 1; }));
        CHECK(get(manager.send_to_user("bob", json_message("{}"), asio::use_future)) == 0);
    }
    stop(manager);
}

TEST_CASE("publish reaches the subscribers of a topic only", "[delivery][topics]") {
    Manager manager(test_options());
    start(manager);
    auto const port = manager.local_port();
    auto news = connect_client(port, "user_id=alice");
    auto sports = connect_client(port, "user_id=bob");
    auto nothing = connect_client(port);
    REQUIRE(news.hello.has_value());
    REQUIRE(sports.hello.has_value());
    REQUIRE(nothing.hello.has_value());

    REQUIRE(news->send_text(R"({"action":"subscribe","topic":"news","request_id":"s1"})"));
    auto reply = news->next_json();
    REQUIRE(reply.has_value());
    CHECK(frame_type(*reply) == "subscribed");
    CHECK(string_member(*reply, "topic") == "news");
    CHECK(string_member(*reply, "request_id") == "s1");

    REQUIRE(sports->send_text(R"({"action":"subscribe","topic":"sports"})"));
    reply = sports->next_json();
    REQUIRE(reply.has_value());
    CHECK(frame_type(*reply) == "subscribed");
    CHECK(string_member(*reply, "topic") == "sports");
    CHECK(manager.get_status().topics == 2);

    CHECK(get(manager.publish("news", json_message(R"({"type":"headline"})"), asio::use_future)) == 1);
    reply = news->next_json();
    REQUIRE(reply.has_value());
    CHECK(frame_type(*reply) == "headline");
    CHECK(sports->expect_silence(silence_window));
    CHECK(nothing->expect_silence(std::chrono::milliseconds(0)));
    CHECK(get(manager.publish("weather", json_message("{}"), asio::use_future)) == 0);

    SECTION("subscribing twice is one subscription") {
        REQUIRE(news->send_text(R"({"action":"subscribe","topic":"news"})"));
        CHECK(news->next_of_type("subscribed").has_value());
        CHECK(get(manager.publish("news", json_message(R"({"type":"once"})"), asio::use_future)) == 1);
        CHECK(news->next_of_type("once").has_value());
        CHECK(news->expect_silence(silence_window));
    }
    SECTION("unsubscribe stops delivery") {
        REQUIRE(news->send_text(R"({"action":"unsubscribe","topic":"news","request_id":7})"));
        reply = news->next_json();
        REQUIRE(reply.has_value());
        CHECK(frame_type(*reply) == "unsubscribed");
        CHECK(string_member(*reply, "topic") == "news");
        REQUIRE((*reply).HasMember("request_id"));
        CHECK((*reply)["request_id"].GetInt() == 7);
        CHECK(get(manager.publish("news", json_message("{}"), asio::use_future)) == 0);
        CHECK(news->expect_silence(silence_window));
        CHECK(manager.get_status().topics == 1);
    }
    SECTION("closing a subscribed connection removes it from its topics") {
        sports->close();
        REQUIRE(sports->wait_closed().has_value());
        REQUIRE(wait_until([&] { return manager.get_connection_count() == 2; }));
        CHECK(get(manager.publish("sports", json_message("{}"), asio::use_future)) == 0);
        news->close();
        REQUIRE(news->wait_closed().has_value());
        CHECK(wait_until([&] { return manager.get_status().topics == 0; }));
    }
    stop(manager);
}

TEST_CASE("max_connections: the next connection is closed with 1013", "[delivery][limits]") {
    auto options = test_options();
    options.max_connections = 3;
    Manager manager(options);
    start(manager);
    auto const port = manager.local_port();
    std::vector<Connected> clients;
    for (int i = 0; i < 3; ++i) {
        clients.push_back(connect_client(port, "user_id=u" + std::to_string(i)));
        REQUIRE(clients.back().hello.has_value());
    }

    WsClient fourth;
    auto const result = fourth.connect(ws_url(port, "user_id=late"), {"wsmanager.v1"});
    auto const closed = fourth.wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1013);
    CHECK(closed->reason == "Server connection limit reached");
    // Nothing else came first (no `connected` frame for a refused connection).
    CHECK_FALSE(fourth.next_frame(std::chrono::milliseconds(0)).has_value());
    (void)result;

    CHECK(manager.get_connection_count() == 3);
    for (auto& client : clients) CHECK(ping_pong(*client));
    auto const status = manager.get_status();
    CHECK(status.connections_rejected == 1);
    CHECK(status.connections_opened == 3);

    clients[0]->close();
    REQUIRE(clients[0]->wait_closed().has_value());
    REQUIRE(wait_until([&] { return manager.get_connection_count() == 2; }));
    auto again = connect_client(port, "user_id=again");
    REQUIRE(again.hello.has_value());
    CHECK(frame_type(*again.hello) == "connected");
    CHECK(ping_pong(*again));
    CHECK(manager.get_connection_count() == 3);
    stop(manager);
}

TEST_CASE("on_action: host-defined client actions", "[delivery][actions]") {
    Manager manager(test_options());
    manager.on_action("echo", [](wsmanager::ActionContext const& context,
                                 rapidjson::Value const& frame) {
        rapidjson::Document reply(rapidjson::kObjectType);
        auto& allocator = reply.GetAllocator();
        reply.AddMember("type", "echo", allocator);
        reply.AddMember("user", rapidjson::Value(context.user_id().c_str(), allocator), allocator);
        reply.AddMember("action", rapidjson::Value(std::string(context.action()).c_str(), allocator),
                        allocator);
        rapidjson::Value data;
        if (frame.HasMember("data")) data.CopyFrom(frame["data"], allocator);
        reply.AddMember("data", data, allocator);
        context.reply(wsmanager::Message(reply));
    });
    manager.on_action("boom", [](wsmanager::ActionContext const&, rapidjson::Value const&) {
        throw std::runtime_error("handler failed");
    });
    manager.on_action("deny", [](wsmanager::ActionContext const& context, rapidjson::Value const&) {
        context.reply_error(wsmanager::protocol::ErrorCode::forbidden, "Not for you");
    });
    start(manager);
    auto sender = connect_client(manager.local_port(), "user_id=alice");
    auto other = connect_client(manager.local_port(), "user_id=alice");
    REQUIRE(sender.hello.has_value());
    REQUIRE(other.hello.has_value());

    SECTION("a reply goes to the sender only") {
        REQUIRE(sender->send_text(R"({"action":"echo","data":{"x":[1,2]},"request_id":"e1"})"));
        auto reply = sender->next_json();
        REQUIRE(reply.has_value());
        CHECK(frame_type(*reply) == "echo");
        CHECK(string_member(*reply, "user") == "alice");
        CHECK(string_member(*reply, "action") == "echo");
        REQUIRE((*reply)["data"].IsObject());
        CHECK((*reply)["data"]["x"][1].GetInt() == 2);
        CHECK(other->expect_silence(silence_window));
    }
    SECTION("a handler that throws: internal error, connection stays usable") {
        REQUIRE(sender->send_text(R"({"action":"boom","request_id":"b1"})"));
        auto reply = sender->next_json();
        REQUIRE(reply.has_value());
        CHECK(frame_type(*reply) == "error");
        CHECK(string_member(*reply, "code") == "internal");
        CHECK(string_member(*reply, "request_id") == "b1");
        CHECK(ping_pong(*sender));
        REQUIRE(sender->send_text(R"({"action":"echo"})"));
        CHECK(sender->next_of_type("echo").has_value());
        CHECK(other->expect_silence(silence_window));
    }
    SECTION("reply_error echoes the request_id") {
        REQUIRE(sender->send_text(R"({"action":"deny","request_id":99})"));
        auto reply = sender->next_json();
        REQUIRE(reply.has_value());
        CHECK(frame_type(*reply) == "error");
        CHECK(string_member(*reply, "code") == "forbidden");
        CHECK(string_member(*reply, "message") == "Not for you");
        CHECK((*reply)["request_id"].GetInt() == 99);
    }
    SECTION("an empty handler removes the action") {
        manager.on_action("echo", {});
        REQUIRE(sender->send_text(R"({"action":"echo"})"));
        auto reply = sender->next_json();
        REQUIRE(reply.has_value());
        CHECK(string_member(*reply, "code") == "unknown_action");
    }
    SECTION("built-in actions cannot be replaced") {
        manager.on_action("ping", [](wsmanager::ActionContext const& context, rapidjson::Value const&) {
            context.reply(json_message(R"({"type":"hijacked"})"));
        });
        REQUIRE(sender->send_text(R"({"action":"ping","request_id":"p"})"));
        auto reply = sender->next_json();
        REQUIRE(reply.has_value());
        CHECK(frame_type(*reply) == "pong");
    }
    stop(manager);
}

TEST_CASE("get_status counters move as expected", "[delivery][status]") {
    auto options = test_options();
    options.max_connections = 2;
    Manager manager(options);
    auto const initial = manager.get_status();
    CHECK_FALSE(initial.running);
    CHECK(initial.connections_opened == 0);
    CHECK(initial.messages_received == 0);
    CHECK(initial.connection_success_rate == 1.0);
    CHECK(initial.port == 0);
    CHECK(initial.uptime_s == 0);

    start(manager);
    auto alice = connect_client(manager.local_port(), "user_id=alice");
    auto bob = connect_client(manager.local_port(), "user_id=bob");
    REQUIRE(alice.hello.has_value());
    REQUIRE(bob.hello.has_value());
    auto status = manager.get_status();
    CHECK(status.running);
    CHECK(status.port == manager.local_port());
    CHECK(status.connections_opened == 2);
    CHECK(status.active_connections == 2);
    CHECK(status.users_online == 2);
    CHECK(status.connection_success_rate == 1.0);

    REQUIRE(alice->send_text(R"({"action":"ping"})"));
    REQUIRE(alice->send_text("not json"));
    REQUIRE(alice->send_text(R"({"action":"nope"})"));
    REQUIRE(alice->next_of_type("pong").has_value());
    REQUIRE(alice->next_of_type("error").has_value());
    REQUIRE(alice->next_of_type("error").has_value());
    CHECK(wait_until([&] { return manager.get_status().messages_received == 3; }));
    CHECK(manager.get_status().frames_rejected == 2);

    auto const sent_before = manager.get_status().messages_sent;
    CHECK(get(manager.broadcast_message(json_message("{}"), asio::use_future)) == 2);
    REQUIRE(alice->next_frame().has_value());
    REQUIRE(bob->next_frame().has_value());
    CHECK(wait_until([&] { return manager.get_status().messages_sent == sent_before + 2; }));

    WsClient third;  // over max_connections
    third.connect(ws_url(manager.local_port()));
    REQUIRE(third.wait_closed().has_value());
    CHECK(wait_until([&] { return manager.get_status().connections_rejected == 1; }));
    status = manager.get_status();
    CHECK(status.connection_success_rate == Approx(2.0 / 3.0));
    CHECK(status.uptime_s > 0);
    CHECK(status.messages_failed == 0);

    auto json = parse_json(status.to_json());
    REQUIRE(json.has_value());
    CHECK((*json)["connections_opened"].GetUint64() == 2);
    CHECK((*json)["frames_rejected"].GetUint64() == 2);

    stop(manager);
    status = manager.get_status();
    CHECK_FALSE(status.running);
    CHECK(status.port == 0);
    CHECK(status.active_connections == 0);
    CHECK(status.users_online == 0);
    CHECK(status.connections_opened == 2);  // counters are cumulative
}
