// SPDX-License-Identifier: BSL-1.0
// Message: validated JSON, serialized and framed once, shared by copies.

#include <stdexcept>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/message.hpp>

using wsmanager::Message;
using wsmanager::detail::frame_of;  // the prepared frame behind a Message

namespace {

/// The bytes of a frame's header as unsigned values.
std::string header_of(Message const& message) { return std::string(frame_of(message)->header()); }

unsigned byte(std::string const& bytes, std::size_t i) {
    return static_cast<unsigned char>(bytes.at(i));
}

}  // namespace

TEST_CASE("Message::from_json keeps valid JSON byte for byte", "[message]") {
    for (std::string_view const text :
         {std::string_view(R"({"type":"progress","step":3,"done":false})"),
          std::string_view(R"({ "type" : "spaced" ,  "list" : [1, 2.5, "x", null] })"),
          std::string_view(R"({"type":"unicode","text":"h\u00e9llo \u2603 \ud83d\ude00 日本"})"),
          std::string_view(R"([1,2,3])"), std::string_view(R"("just a string")"),
          std::string_view("{\"type\":\"trailing whitespace\"}  \n")}) {
        INFO(text);
        auto const message = Message::from_json(text);
        CHECK(message.text() == text);
        CHECK(message.size() == text.size());
    }
}

TEST_CASE("Message::from_json rejects invalid JSON", "[message]") {
    for (std::string_view const text :
         {std::string_view(""), std::string_view("   "), std::string_view("{"),
          std::string_view(R"({"a":})"), std::string_view("nul"), std::string_view("[1,2"),
          std::string_view(R"({"a":1,})"), std::string_view("{'a':1}"),
          std::string_view(R"({"a":"unterminated)")}) {
        INFO("text: " << text);
        CHECK_THROWS_AS(Message::from_json(text), std::invalid_argument);
    }
}

TEST_CASE("Message::from_json rejects trailing garbage after the value", "[message]") {
    for (std::string_view const text :
         {std::string_view(R"({"a":1} x)"), std::string_view(R"({"a":1}{"b":2})"),
          std::string_view(R"({"a":1},)"), std::string_view("[1] [2]"),
          std::string_view("{\"a\":1}\n{\"b\":2}")}) {
        INFO("text: " << text);
        CHECK_THROWS_AS(Message::from_json(text), std::invalid_argument);
    }
    // After a NUL byte too: RapidJSON stops at NUL, but the whole text would be sent.
    CHECK_THROWS_AS(Message::from_json(std::string_view("{\"a\":1}\0x", 9)), std::invalid_argument);
    CHECK_THROWS_AS(Message::from_json(std::string_view("{\"a\":1}\0", 8)), std::invalid_argument);
}

TEST_CASE("Message::from_json rejects invalid UTF-8", "[message]") {
    using namespace std::string_literals;
    for (std::string const& text : {
             "{\"a\":\"\xff\"}"s,              // never valid in UTF-8
             "{\"a\":\"\xc0\xaf\"}"s,          // overlong '/'
             "{\"a\":\"\xe2\x82\"}"s,          // truncated sequence
             "{\"a\":\"\xed\xa0\x80\"}"s,      // UTF-16 surrogate encoded in UTF-8
             "{\"\xfe\":1}"s,                  // in a key
         }) {
        INFO("text: " << text);
        CHECK_THROWS_AS(Message::from_json(text), std::invalid_argument);
    }
}

TEST_CASE("Message error text says where the JSON is wrong", "[message]") {
    try {
        (void)Message::from_json(R"({"a":})");
        FAIL("no exception");
    } catch (std::invalid_argument const& e) {
        CHECK_THAT(e.what(), Catch::Contains("offset"));
    }
}

TEST_CASE("Message copies share one frame", "[message]") {
    auto const original = Message::from_json(R"({"type":"shared"})");
    Message const copy = original;  // NOLINT(performance-unnecessary-copy-initialization)
    Message assigned = Message::from_json("{}");
    assigned = original;
    CHECK(frame_of(copy).get() == frame_of(original).get());
    CHECK(frame_of(assigned).get() == frame_of(original).get());
    CHECK(copy.text().data() == original.text().data());
    Message moved = std::move(assigned);
    CHECK(frame_of(moved).get() == frame_of(original).get());
}

TEST_CASE("Message from a rapidjson value is serialized once, compactly", "[message]") {
    rapidjson::Document document(rapidjson::kObjectType);
    auto& allocator = document.GetAllocator();
    document.AddMember("type", "notice", allocator);
    document.AddMember("count", 3, allocator);
    rapidjson::Value list(rapidjson::kArrayType);
    list.PushBack(true, allocator).PushBack(rapidjson::Value(), allocator);
    document.AddMember("list", list, allocator);
    document.AddMember("text", "quote \" and \\ and \n", allocator);

    Message const message(document);
    CHECK(message.text() == R"({"type":"notice","count":3,"list":[true,null],"text":"quote \" and \\ and \n"})");
    // The value is copied out: changing the document afterwards does not change the message.
    document["count"] = 4;
    CHECK(message.text().find("\"count\":3") != std::string_view::npos);
}

// A text frame that is not UTF-8 makes every client close the connection (1007), so the
// library must never send one. Message::from_json checks; a rapidjson::Value holding
// arbitrary bytes (e.g. a file name in Latin-1) must be refused as well, or escaped.
TEST_CASE("Message from a rapidjson value with invalid UTF-8 is refused", "[message]") {
    rapidjson::Document document(rapidjson::kObjectType);
    auto& allocator = document.GetAllocator();
    document.AddMember("type", "notice", allocator);
    document.AddMember("name", rapidjson::Value("caf\xe9", allocator), allocator);
    CHECK_THROWS_AS(Message(document), std::invalid_argument);
}

TEST_CASE("Message::from_trusted_json frames text as given", "[message]") {
    auto const message = Message::from_trusted_json(R"({"type":"trusted"})");
    CHECK(message.text() == R"({"type":"trusted"})");
}

TEST_CASE("Message frames are prepared, unmasked, final text frames", "[message]") {
    SECTION("short payload: 7-bit length") {
        auto const message = Message::from_json(R"({"type":"x"})");
        auto const header = header_of(message);
        REQUIRE(header.size() == 2);
        CHECK(byte(header, 0) == 0x81);  // FIN + text
        CHECK(byte(header, 1) == message.size());  // no mask bit
    }
    SECTION("payload of 126..65535 bytes: 16-bit length") {
        auto const text = "\"" + std::string(300, 'a') + "\"";
        auto const message = Message::from_json(text);
        auto const header = header_of(message);
        REQUIRE(header.size() == 4);
        CHECK(byte(header, 0) == 0x81);
        CHECK(byte(header, 1) == 126);
        CHECK((byte(header, 2) << 8 | byte(header, 3)) == text.size());
    }
    SECTION("payload over 65535 bytes: 64-bit length") {
        auto const text = "\"" + std::string(70000, 'b') + "\"";
        auto const message = Message::from_json(text);
        auto const header = header_of(message);
        REQUIRE(header.size() == 10);
        CHECK(byte(header, 0) == 0x81);
        CHECK(byte(header, 1) == 127);
        std::uint64_t size = 0;
        for (std::size_t i = 2; i < 10; ++i) size = size << 8 | byte(header, i);
        CHECK(size == text.size());
    }
    // Framed once, ready to write as it is: a final text frame, header then payload.
    auto const message = Message::from_json("{}");
    CHECK(frame_of(message)->wire() == std::string("\x81\x02{}", 4));
    CHECK(byte(header_of(message), 0) == 0x81);  // FIN + opcode text
    CHECK(frame_of(message)->payload() == "{}");
}
