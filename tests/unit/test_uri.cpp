// SPDX-License-Identifier: BSL-1.0
// detail::percent_decode, detail::parse_query and detail::to_lower_ascii: the handshake's
// query string and header names.

#include <map>
#include <optional>
#include <string>

#include <catch2/catch.hpp>

#include <wsmanager/detail/uri.hpp>
#include <wsmanager/handshake.hpp>

using wsmanager::detail::parse_query;
using wsmanager::detail::percent_decode;

TEST_CASE("percent_decode decodes escapes and '+'", "[uri]") {
    CHECK(percent_decode("") == std::optional<std::string>(""));
    CHECK(percent_decode("alice") == std::optional<std::string>("alice"));
    CHECK(percent_decode("a%20b") == std::optional<std::string>("a b"));
    CHECK(percent_decode("a+b") == std::optional<std::string>("a b"));
    CHECK(percent_decode("%2B") == std::optional<std::string>("+"));
    CHECK(percent_decode("%41%42c") == std::optional<std::string>("ABc"));
    CHECK(percent_decode("%c3%a9") == std::optional<std::string>("\xc3\xa9"));  // lower-case hex
    CHECK(percent_decode("%C3%A9") == std::optional<std::string>("\xc3\xa9"));
    CHECK(percent_decode("100%25") == std::optional<std::string>("100%"));
    CHECK(percent_decode("%00") == std::optional<std::string>(std::string(1, '\0')));
}

TEST_CASE("percent_decode rejects malformed escapes", "[uri]") {
    for (auto const* text : {"%", "%4", "a%", "a%4", "%zz", "%4g", "%g4", "%%", "abc%2"}) {
        INFO("text: " << text);
        CHECK_FALSE(percent_decode(text).has_value());
    }
}

TEST_CASE("parse_query splits and decodes parameters", "[uri]") {
    using params = std::map<std::string, std::string>;
    CHECK(parse_query("") == std::optional<params>(params{}));
    CHECK(parse_query("user_id=alice") == std::optional<params>(params{{"user_id", "alice"}}));
    CHECK(parse_query("user_id=al%20ice&token=a+b") ==
          std::optional<params>(params{{"user_id", "al ice"}, {"token", "a b"}}));
    // The first occurrence of a name wins.
    CHECK(parse_query("user_id=alice&user_id=mallory") ==
          std::optional<params>(params{{"user_id", "alice"}}));
    // A name without '=' has an empty value; empty pairs are skipped.
    CHECK(parse_query("flag&&x=1&") == std::optional<params>(params{{"flag", ""}, {"x", "1"}}));
    // Only the first '=' separates.
    CHECK(parse_query("a=b=c") == std::optional<params>(params{{"a", "b=c"}}));
    CHECK(parse_query("%75ser_id=bob") == std::optional<params>(params{{"user_id", "bob"}}));
}

TEST_CASE("parse_query rejects a malformed escape anywhere", "[uri]") {
    CHECK_FALSE(parse_query("user_id=%zz").has_value());
    CHECK_FALSE(parse_query("%=x").has_value());
    CHECK_FALSE(parse_query("a=1&b=%4").has_value());
}

TEST_CASE("HandshakeRequest lookups", "[uri][handshake]") {
    wsmanager::HandshakeRequest request;
    request.query = {{"user_id", "alice"}};
    request.headers = {{"authorization", "Bearer x"}};
    CHECK(request.query_param("user_id") == "alice");
    CHECK(request.query_param("token").empty());
    CHECK(request.header("Authorization") == "Bearer x");
    CHECK(request.header("AUTHORIZATION") == "Bearer x");
    CHECK(request.header("Origin").empty());

    auto const yes = wsmanager::AuthResult::accept("bob");
    CHECK(yes.accepted);
    CHECK(yes.user_id == "bob");
    auto const no = wsmanager::AuthResult::reject("bad token");
    CHECK_FALSE(no.accepted);
    CHECK(no.http_status == 401);
    CHECK(no.reason == "bad token");
    CHECK(wsmanager::AuthResult::reject("origin", 403).http_status == 403);
}

TEST_CASE("to_lower_ascii lowers ASCII letters only", "[uri]") {
    CHECK(wsmanager::detail::to_lower_ascii("Sec-WebSocket-Protocol") == "sec-websocket-protocol");
    CHECK(wsmanager::detail::to_lower_ascii("X-\xC3\x84-1") == "x-\xC3\x84-1");  // UTF-8 kept
    CHECK(wsmanager::detail::to_lower_ascii("") == "");
}

TEST_CASE("HandshakeRequest::header finds a header by name in any case", "[uri]") {
    wsmanager::HandshakeRequest request;
    request.headers.emplace("authorization", "Bearer abc");
    CHECK(request.header("Authorization") == "Bearer abc");
    CHECK(request.header("AUTHORIZATION") == "Bearer abc");
    CHECK(request.header("Origin").empty());
}
