// SPDX-License-Identifier: BSL-1.0
// parse_exact_json: numbers of the kind and value RapidJSON gives, but correctly rounded, and
// the range's ends as infinities or zeros.

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/detail/exact_json.hpp>

using wsmanager::detail::parse_exact_json;

namespace {
rapidjson::Document number(std::string const& text) {
    rapidjson::Document document;
    REQUIRE(parse_exact_json(document, R"({"n":)" + text + "}"));
    REQUIRE(document.IsObject());
    return document;
}
}  // namespace

TEST_CASE("parse_exact_json makes integers of RapidJSON's kinds", "[json]") {
    CHECK(number("0")["n"].IsInt());
    CHECK(number("-7")["n"].GetInt() == -7);
    CHECK(number("2147483647")["n"].IsInt());
    CHECK(number("4294967295")["n"].GetUint() == 4294967295u);
    CHECK_FALSE(number("4294967295")["n"].IsInt());
    CHECK(number("-2147483649")["n"].GetInt64() == -2147483649LL);
    CHECK(number("18446744073709551615")["n"].GetUint64() ==
          std::numeric_limits<std::uint64_t>::max());
    auto const huge = number("123456789012345678901234567890");
    REQUIRE(huge["n"].IsDouble());
    CHECK(huge["n"].GetDouble() == 123456789012345678901234567890.0);
}

TEST_CASE("parse_exact_json reads doubles correctly rounded", "[json]") {
    CHECK(number("0.1")["n"].GetDouble() == 0.1);
    CHECK(number("1733059200.1234567")["n"].GetDouble() == 1733059200.1234567);
    CHECK(number("-0.0")["n"].IsDouble());
    CHECK(std::signbit(number("-0.0")["n"].GetDouble()));
    CHECK(number("4e-320")["n"].GetDouble() == 4e-320);  // a denormal
    CHECK(number("1.7976931348623157e308")["n"].GetDouble() ==
          std::numeric_limits<double>::max());
}

TEST_CASE("parse_exact_json: past the range, infinity or zero, as the magnitude goes", "[json]") {
    auto const inf = std::numeric_limits<double>::infinity();
    CHECK(number("-0.5e309")["n"].GetDouble() == -inf);
    CHECK(number("1e-400")["n"].GetDouble() == 0.0);
    CHECK(std::signbit(number("-1e-400")["n"].GetDouble()));
    CHECK(number("0.0000000001e-320")["n"].GetDouble() == 0.0);
    CHECK(number("100000000000e-330")["n"].GetDouble() == 1e-319);  // a denormal after all
    CHECK(number("0.5e309")["n"].GetDouble() == inf);
    CHECK(number("100000000000000000000e300")["n"].GetDouble() == inf);
    CHECK(number("1e-99999999999999999999")["n"].GetDouble() == 0.0);
}

TEST_CASE("parse_exact_json refuses what is not one JSON value", "[json]") {
    rapidjson::Document document;
    // RapidJSON's reader refuses an exponent past 308 itself (kParseErrorNumberTooBig).
    CHECK_FALSE(parse_exact_json(document, "{\"n\":1e400}"));
    CHECK_FALSE(parse_exact_json(document, "{\"n\":}"));
    CHECK(document.IsNull());
    CHECK_FALSE(parse_exact_json(document, "{} {}"));
    CHECK_FALSE(parse_exact_json(document, ""));
    CHECK_FALSE(parse_exact_json(document, "01"));
    CHECK(parse_exact_json(document, "[1,2.5,\"x\",true,null,{\"a\":[]}]"));
    REQUIRE(document.IsArray());
    CHECK(document.Size() == 6);
    CHECK(document[1].GetDouble() == 2.5);
}
