// SPDX-License-Identifier: BSL-1.0
// redis_value::from_reply on replies parsed by hiredis' own reader from RESP bytes (no server).

#include <memory>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>
#include <hiredis/hiredis.h>

#include <wsmanager/cluster/detail/redis_value.hpp>

namespace {

using wsmanager::cluster::detail::redis_type;
using wsmanager::cluster::detail::redis_value;

// Parses one RESP reply with hiredis and copies it.
redis_value parse_resp(std::string_view bytes) {
    std::unique_ptr<redisReader, void (*)(redisReader*)> reader(redisReaderCreate(),
                                                                &redisReaderFree);
    REQUIRE(reader);
    REQUIRE(redisReaderFeed(reader.get(), bytes.data(), bytes.size()) == REDIS_OK);
    void* reply = nullptr;
    REQUIRE(redisReaderGetReply(reader.get(), &reply) == REDIS_OK);
    REQUIRE(reply != nullptr);
    redis_value value = redis_value::from_reply(static_cast<redisReply const*>(reply));
    freeReplyObject(reply);
    return value;
}

}  // namespace

TEST_CASE("redis_value: every RESP2 type is copied", "[redis_value]") {
    SECTION("integer") {
        redis_value const v = parse_resp(":-42\r\n");
        CHECK(v.is_integer());
        CHECK(v.as_integer() == -42);
        CHECK_THROWS_AS(v.as_string(), std::logic_error);
    }
    SECTION("status") {
        redis_value const v = parse_resp("+OK\r\n");
        CHECK(v.is_status());
        CHECK(v.as_string() == "OK");
        CHECK_THROWS_AS(v.as_integer(), std::logic_error);
    }
    SECTION("error") {
        redis_value const v = parse_resp("-NOSCRIPT No matching script\r\n");
        CHECK(v.is_error());
        CHECK(v.as_string() == "NOSCRIPT No matching script");
        CHECK(v.is_error_with_prefix("NOSCRIPT"));
        CHECK_FALSE(v.is_error_with_prefix("ERR"));
    }
    SECTION("bulk string with NUL bytes") {
        redis_value const v = parse_resp(std::string_view("$5\r\na\0b\0c\r\n", 11));
        CHECK(v.is_string());
        CHECK(v.as_string() == std::string("a\0b\0c", 5));
    }
    SECTION("empty bulk string is not nil") {
        redis_value const v = parse_resp("$0\r\n\r\n");
        CHECK(v.is_string());
        CHECK(v.as_string().empty());
    }
    SECTION("nil bulk string and nil array") {
        CHECK(parse_resp("$-1\r\n").is_nil());
        CHECK(parse_resp("*-1\r\n").is_nil());
    }
    SECTION("nested array") {
        redis_value const v = parse_resp("*3\r\n$7\r\nmessage\r\n*2\r\n:1\r\n$-1\r\n+x\r\n");
        REQUIRE(v.is_array());
        auto const& e = v.as_array();
        REQUIRE(e.size() == 3);
        CHECK(e[0] == redis_value::from_text(redis_type::string, "message"));
        REQUIRE(e[1].is_array());
        CHECK(e[1].elements[0] == redis_value::from_integer(1));
        CHECK(e[1].elements[1].is_nil());
        CHECK(e[2] == redis_value::from_text(redis_type::status, "x"));
        CHECK_THROWS_AS(e[0].as_array(), std::logic_error);
    }
    SECTION("empty array") {
        redis_value const v = parse_resp("*0\r\n");
        CHECK(v.is_array());
        CHECK(v.as_array().empty());
    }
    SECTION("a null reply pointer is nil") { CHECK(redis_value::from_reply(nullptr).is_nil()); }
}
