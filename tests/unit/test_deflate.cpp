// SPDX-License-Identifier: BSL-1.0
// permessage-deflate: a message compressed once, as RFC 7692 frames it; the negotiation of
// an offer; the inflater of client frames.

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <wsmanager/detail/deflate.hpp>
#include <wsmanager/detail/permessage_deflate.hpp>
#include <wsmanager/message.hpp>

using wsmanager::Message;
using wsmanager::detail::frame_of;

namespace {

/// What a client does with a compressed message: the trailer added back, inflated.
std::string deflate_test_inflate(std::string_view compressed) {
    std::string data(compressed);
    data.append("\x00\x00\xff\xff", 4);
    std::string out;
    wsmanager::detail::inflater inflater;
    REQUIRE(inflater.inflate_into(reinterpret_cast<std::uint8_t const*>(data.data()), data.size(),
                                  out));
    return out;
}

std::string deflate_test_json(std::size_t items) {
    std::string text = R"({"type":"progress","items":[)";
    for (std::size_t i = 0; i < items; ++i) {
        if (i != 0) text += ',';
        text += R"({"task_id":"task-)" + std::to_string(i) + R"(","step":"download","done":false})";
    }
    return text + "]}";
}

}  // namespace

TEST_CASE("A message compressed once is a final text frame with RSV1, trailer left off",
          "[deflate]") {
    auto const message = Message::from_json(deflate_test_json(100));
    bool built = false;
    auto const& compressed = frame_of(message)->deflated(&built);
    REQUIRE(compressed != nullptr);
    CHECK(built);
    auto const header = compressed->header();
    CHECK(static_cast<unsigned char>(header[0]) == 0xC1);  // FIN, RSV1, text
    CHECK(compressed->payload().size() < message.size() / 4);
    CHECK_FALSE(compressed->payload().ends_with(std::string_view("\x00\x00\xff\xff", 4)));
    CHECK(deflate_test_inflate(compressed->payload()) == message.text());

    // Built once: the next caller gets the same frame, and is not told it built it.
    bool again = false;
    CHECK(frame_of(message)->deflated(&again).get() == compressed.get());
    CHECK_FALSE(again);
    // Copies of the Message share it.
    Message const copy = message;
    CHECK(frame_of(copy)->deflated().get() == compressed.get());
}

TEST_CASE("Concurrent callers compress a message once", "[deflate]") {
    auto const message = Message::from_json(deflate_test_json(50));
    std::atomic<int> builds{0};
    std::vector<std::thread> threads;
    std::vector<wsmanager::detail::text_frame const*> seen(4);
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            bool built = false;
            seen[static_cast<std::size_t>(t)] = frame_of(message)->deflated(&built).get();
            if (built) ++builds;
        });
    }
    for (auto& thread : threads) thread.join();
    CHECK(builds == 1);
    for (auto const* frame : seen) CHECK(frame == seen[0]);
}

TEST_CASE("A message that does not shrink has no compressed frame", "[deflate]") {
    auto const message = Message::from_json(R"({"a":1})");
    CHECK(frame_of(message)->deflated() == nullptr);
    CHECK_FALSE(wsmanager::detail::deflate_message("x").has_value());
}

TEST_CASE("Each message is compressed on its own (no context takeover)", "[deflate]") {
    auto const text = deflate_test_json(20);
    auto const first = wsmanager::detail::deflate_message(text);
    auto const second = wsmanager::detail::deflate_message(text);
    REQUIRE(first.has_value());
    CHECK(first == second);  // the second does not refer back to the first
    CHECK(deflate_test_inflate(*second) == text);
}

TEST_CASE("The inflater keeps the client's context between messages", "[deflate]") {
    // A client with context takeover: one deflate stream, sync-flushed per message.
    z_stream stream{};
    REQUIRE(deflateInit2(&stream, Z_BEST_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) ==
            Z_OK);
    auto compress = [&](std::string const& text) {
        std::string out(text.size() + 64, '\0');
        stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
        stream.avail_in = static_cast<uInt>(text.size());
        stream.next_out = reinterpret_cast<Bytef*>(out.data());
        stream.avail_out = static_cast<uInt>(out.size());
        REQUIRE(deflate(&stream, Z_SYNC_FLUSH) == Z_OK);
        out.resize(out.size() - stream.avail_out);
        return out;  // with its trailer, as the processor passes it on
    };
    auto const text = deflate_test_json(10);
    auto const one = compress(text);
    auto const two = compress(text);
    deflateEnd(&stream);
    CHECK(two.size() < one.size());  // refers back to the first message
    wsmanager::detail::inflater inflater;
    std::string out;
    REQUIRE(
        inflater.inflate_into(reinterpret_cast<std::uint8_t const*>(one.data()), one.size(), out));
    CHECK(out == text);
    out.clear();
    REQUIRE(
        inflater.inflate_into(reinterpret_cast<std::uint8_t const*>(two.data()), two.size(), out));
    CHECK(out == text);
    // Garbage is refused.
    std::string const garbage = "\xff\xff\xff\xff\xff";
    wsmanager::detail::inflater fresh;
    CHECK_FALSE(fresh.inflate_into(reinterpret_cast<std::uint8_t const*>(garbage.data()),
                                   garbage.size(), out));
}

TEST_CASE("permessage-deflate negotiation answers with server_no_context_takeover", "[deflate]") {
    using wsmanager::detail::permessage_deflate;
    auto negotiate = [](websocketpp::http::attribute_list const& offer) {
        permessage_deflate extension;
        auto result = extension.negotiate(offer);
        CHECK(extension.is_enabled() == !result.first);
        return result;
    };
    // Browsers and Python's websockets offer client_max_window_bits without a value.
    auto plain = negotiate({});
    CHECK_FALSE(plain.first);
    CHECK(plain.second == "permessage-deflate; server_no_context_takeover");
    auto browser = negotiate({{"client_max_window_bits", ""}});
    CHECK_FALSE(browser.first);
    CHECK(browser.second == "permessage-deflate; server_no_context_takeover");
    CHECK_FALSE(negotiate({{"client_max_window_bits", "10"}}).first);
    CHECK_FALSE(
        negotiate({{"client_no_context_takeover", ""}, {"server_no_context_takeover", ""}}).first);
    auto full_window = negotiate({{"server_max_window_bits", "15"}});
    CHECK_FALSE(full_window.first);
    CHECK(full_window.second ==
          "permessage-deflate; server_no_context_takeover; server_max_window_bits=15");
    // What one shared compressed frame cannot honour, or what is malformed, is declined.
    CHECK(negotiate({{"server_max_window_bits", "10"}}).first);
    CHECK(negotiate({{"server_max_window_bits", ""}}).first);
    CHECK(negotiate({{"client_max_window_bits", "16"}}).first);
    CHECK(negotiate({{"server_no_context_takeover", "yes"}}).first);
    CHECK(negotiate({{"x_unknown", ""}}).first);
    // websocketpp's own compression path is never taken.
    permessage_deflate extension;
    std::string out;
    CHECK(extension.compress("text", out));
}
