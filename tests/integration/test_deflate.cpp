// SPDX-License-Identifier: BSL-1.0
// permessage-deflate over real connections: negotiated only with Options::compression, a
// broadcast compressed once for every deflate connection, small messages left plain, client
// frames inflated, a compression bomb closed with 1009, and RSV1 refused when not agreed.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <asio/use_future.hpp>
#include <catch2/catch.hpp>

#include <wsmanager/detail/deflate.hpp>

#include "harness.hpp"

using namespace wsmanager::test;

namespace {

using DeflateManager = wsmanager::WebSocketManager<>;

constexpr char const* deflate_offer =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

double deflate_metric(std::string const& text, std::string const& name) {
    auto const at = text.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + name.size() + 2));
}

/// A client's view of a compressed payload: the trailer added back, inflated.
std::string deflate_inflated(std::string const& payload) {
    std::string data = payload;
    data.append("\x00\x00\xff\xff", 4);
    std::string out;
    wsmanager::detail::inflater inflater;
    REQUIRE(inflater.inflate_into(reinterpret_cast<std::uint8_t const*>(data.data()), data.size(),
                                  out));
    return out;
}

std::string deflate_large_json() {
    std::string text = R"({"type":"task_progress","items":[)";
    for (int i = 0; i < 100; ++i) {
        if (i != 0) text += ',';
        text += R"({"task_id":"task-)" + std::to_string(i) + R"(","step":"download","done":false})";
    }
    return text + "]}";
}

/// A raw client past its handshake and its `connected` frame.
std::unique_ptr<RawClient> deflate_client(std::uint16_t port, std::string const& user, bool offer) {
    auto client = std::make_unique<RawClient>(port);
    REQUIRE(client->handshake("/?user_id=" + user, std::chrono::seconds(5),
                              offer ? deflate_offer : "") == 101);
    auto hello = client->read_frame();
    REQUIRE(hello.has_value());
    CHECK(hello->payload.find("\"connected\"") != std::string::npos);
    CHECK_FALSE(hello->rsv1);  // small: never compressed
    return client;
}

}  // namespace

TEST_CASE("permessage-deflate: a broadcast is compressed once for every deflate connection",
          "[deflate]") {
    auto options = test_options();
    options.compression = true;
    DeflateManager manager(options);
    start(manager);
    auto const port = manager.local_port();

    std::vector<std::unique_ptr<RawClient>> deflating;
    for (int i = 0; i < 5; ++i)
        deflating.push_back(deflate_client(port, "d" + std::to_string(i), true));
    for (auto const& client : deflating) {
        CHECK(client->response_head().find(
                  "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n") !=
              std::string::npos);
    }
    auto plain = deflate_client(port, "plain", false);
    CHECK(plain->response_head().find("Sec-WebSocket-Extensions") == std::string::npos);

    auto const before =
        deflate_metric(manager.metrics_text(), "wsmanager_messages_compressed_total");
    auto const text = deflate_large_json();
    CHECK(get(manager.broadcast_message(json_message(text), asio::use_future)) == 6);
    for (auto const& client : deflating) {
        auto frame = client->read_frame();
        REQUIRE(frame.has_value());
        CHECK(frame->opcode == 1);
        CHECK(frame->rsv1);
        CHECK(frame->payload.size() < text.size() / 4);
        CHECK(deflate_inflated(frame->payload) == text);
    }
    auto frame = plain->read_frame();
    REQUIRE(frame.has_value());
    CHECK_FALSE(frame->rsv1);
    CHECK(frame->payload == text);
    CHECK(deflate_metric(manager.metrics_text(), "wsmanager_messages_compressed_total") ==
          before + 1);

    // A small message goes plain even to deflate connections.
    get(manager.broadcast_message(json_message(R"({"type":"tick"})"), asio::use_future));
    auto small = deflating.front()->read_frame();
    REQUIRE(small.has_value());
    CHECK_FALSE(small->rsv1);
    CHECK(small->payload == R"({"type":"tick"})");
    CHECK(deflate_metric(manager.metrics_text(), "wsmanager_messages_compressed_total") ==
          before + 1);
    // Raw clients do not answer a close: they go first, so the stop need not wait for them.
    deflating.clear();
    plain.reset();
    CHECK(wait_until([&] { return manager.get_connection_count() == 0; }));
    stop(manager);
}

TEST_CASE("permessage-deflate: client frames are inflated, a compression bomb gets 1009",
          "[deflate]") {
    auto options = test_options();
    options.compression = true;
    DeflateManager manager(options);
    start(manager);
    auto const port = manager.local_port();
    auto alice = deflate_client(port, "alice", true);

    auto const ping =
        R"({"action":"ping","request_id":"z","padding":")" + std::string(20000, 'p') + R"("})";
    auto const compressed = wsmanager::detail::deflate_message(ping);
    REQUIRE(compressed.has_value());
    REQUIRE_FALSE(alice->send_frame(0x1, *compressed, std::chrono::seconds(5), true));
    auto pong = alice->read_frame();
    REQUIRE(pong.has_value());
    CHECK(pong->payload.find("\"pong\"") != std::string::npos);
    CHECK(pong->payload.find("\"z\"") != std::string::npos);

    // 10 MB that deflate to about 10 kB: far under max_message_size on the wire, far over it
    // inflated.
    auto mallory = deflate_client(port, "mallory", true);
    auto const bomb = wsmanager::detail::deflate_message(std::string(10'000'000, '0'));
    REQUIRE(bomb.has_value());
    CHECK(bomb->size() < options.max_message_size);
    REQUIRE_FALSE(mallory->send_frame(0x1, *bomb, std::chrono::seconds(5), true));
    auto const close = mallory->read_until_close();
    REQUIRE(close.has_value());
    CHECK(close->close_code() == 1009);

    // Nobody else noticed.
    REQUIRE_FALSE(alice->send_text(R"({"action":"ping","request_id":"after"})"));
    auto after = alice->read_frame();
    REQUIRE(after.has_value());
    CHECK(after->payload.find("\"after\"") != std::string::npos);
    CHECK(wait_until([&] { return manager.get_connection_count() == 1; }));
    alice.reset();
    CHECK(wait_until([&] { return manager.get_connection_count() == 0; }));
    stop(manager);
}

TEST_CASE("permessage-deflate is off by default: the offer is not answered, RSV1 gets 1002",
          "[deflate]") {
    DeflateManager manager(test_options());
    start(manager);
    auto client = deflate_client(manager.local_port(), "bob", true);
    CHECK(client->response_head().find("Sec-WebSocket-Extensions") == std::string::npos);

    auto const text = deflate_large_json();
    get(manager.broadcast_message(json_message(text), asio::use_future));
    auto frame = client->read_frame();
    REQUIRE(frame.has_value());
    CHECK_FALSE(frame->rsv1);
    CHECK(frame->payload == text);

    auto const compressed = wsmanager::detail::deflate_message(R"({"action":"ping","padding":")" +
                                                               std::string(1000, 'q') + R"("})");
    REQUIRE(compressed.has_value());
    REQUIRE_FALSE(client->send_frame(0x1, *compressed, std::chrono::seconds(5), true));
    auto const close = client->read_until_close();
    REQUIRE(close.has_value());
    CHECK(close->close_code() == 1002);
    CHECK(deflate_metric(manager.metrics_text(), "wsmanager_messages_compressed_total") == 0);
    stop(manager);
}
