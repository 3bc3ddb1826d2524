// SPDX-License-Identifier: BSL-1.0
// HS256 JWT verification and base64url (wsmanager/detail/jwt.hpp).

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

#include <wsmanager/detail/jwt.hpp>

using wsmanager::detail::base64url_decode;
using wsmanager::detail::base64url_encode;
using wsmanager::detail::jwt_clock_skew_seconds;
using wsmanager::detail::sign_hs256_jwt;
using wsmanager::detail::verify_hs256_jwt;

namespace {

constexpr std::int64_t now = 1'700'000'000;
constexpr char const* secret = "s3cret";

std::string claims(std::string const& extra) { return R"({"sub":"alice")" + extra + "}"; }

/// Replaces part `index` (0 header, 1 payload, 2 signature) of a compact token.
std::string with_part(std::string const& token, int index, std::string const& part) {
    auto const a = token.find('.');
    auto const b = token.find('.', a + 1);
    std::string parts[3] = {token.substr(0, a), token.substr(a + 1, b - a - 1),
                            token.substr(b + 1)};
    parts[index] = part;
    return parts[0] + "." + parts[1] + "." + parts[2];
}

}  // namespace

TEST_CASE("base64url round-trips every length and byte value", "[jwt][base64url]") {
    std::string data;
    for (int i = 0; i < 300; ++i) {
        auto const encoded = base64url_encode(data);
        CHECK(encoded.find_first_of("+/=") == std::string::npos);
        auto const decoded = base64url_decode(encoded);
        REQUIRE(decoded);
        CHECK(*decoded == data);
        data.push_back(static_cast<char>(i * 37));
    }
}

TEST_CASE("base64url known values", "[jwt][base64url]") {
    CHECK(base64url_encode("") == "");
    CHECK(base64url_encode("f") == "Zg");
    CHECK(base64url_encode("fo") == "Zm8");
    CHECK(base64url_encode("foo") == "Zm9v");
    CHECK(base64url_encode("foob") == "Zm9vYg");
    CHECK(base64url_encode("\xfb\xff") == "-_8");
    CHECK(base64url_decode("-_8") == std::string("\xfb\xff"));
    CHECK(base64url_decode("Zm9vYg") == std::string("foob"));
    // Padding is optional, but must be right when present.
    CHECK(base64url_decode("Zm9vYg==") == std::string("foob"));
    CHECK(base64url_decode("Zm8=") == std::string("fo"));
    CHECK_FALSE(base64url_decode("Zm9vYg="));
    CHECK_FALSE(base64url_decode("Zg==="));
    CHECK_FALSE(base64url_decode("Z==="));
}

TEST_CASE("base64url rejects invalid input", "[jwt][base64url]") {
    CHECK_FALSE(base64url_decode("+/8"));     // plain base64 alphabet
    CHECK_FALSE(base64url_decode("Zm 9v"));   // whitespace
    CHECK_FALSE(base64url_decode("Zm9v!"));   // punctuation
    CHECK_FALSE(base64url_decode("Zm9.v"));   // dot
    CHECK_FALSE(base64url_decode("Z"));       // impossible length
    CHECK_FALSE(base64url_decode("Zm9vY"));   // impossible length
    CHECK_FALSE(base64url_decode("Zh"));      // non-zero unused bits (canonical is "Zg")
    CHECK_FALSE(base64url_decode(std::string("Zm\0v", 4)));
    CHECK(base64url_decode("") == std::string());
}

TEST_CASE("a fixed HS256 vector, computed independently with Python", "[jwt]") {
    // python3: header {"alg":"HS256","typ":"JWT"}, payload {"sub":"alice","exp":2000000000},
    // hmac.new(b"s3cret", signing_input, hashlib.sha256), base64url without padding.
    std::string const token =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
        ".eyJzdWIiOiJhbGljZSIsImV4cCI6MjAwMDAwMDAwMH0"
        ".lt-JcNhfCJgWKbfJs1WnLYmiq7W-OvHlmKI80d-Q078";
    CHECK(sign_hs256_jwt(R"({"sub":"alice","exp":2000000000})", "s3cret") == token);
    auto const result = verify_hs256_jwt(token, "s3cret", now);
    REQUIRE(result.valid);
    CHECK(result.subject == "alice");
    CHECK(result.error.empty());
    CHECK_FALSE(verify_hs256_jwt(token, "s3cret", 2'000'000'000 + jwt_clock_skew_seconds));
}

TEST_CASE("RFC 7515 appendix A.1 signature", "[jwt]") {
    // The RFC's key (a JWK "k") and token. Its signature verifies; it is then refused
    // because it carries no "sub".
    auto const key = base64url_decode(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
    REQUIRE(key);
    std::string const token =
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
        ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    auto const digest = wsmanager::detail::hmac_sha256(*key, token.substr(0, token.rfind('.')));
    REQUIRE(digest);
    CHECK(base64url_encode(std::string(digest->begin(), digest->end())) ==
          "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    auto const result = verify_hs256_jwt(token, *key, 1'300'819'000);
    CHECK_FALSE(result.valid);
    CHECK(result.error == "Token has no sub claim");
    CHECK(verify_hs256_jwt(token, "other key", 1'300'819'000).error == "Invalid token signature");
}

TEST_CASE("a valid token yields its subject", "[jwt]") {
    auto const token = sign_hs256_jwt(claims(R"(,"exp":1700003600,"nbf":1699990000)"), secret);
    auto const result = verify_hs256_jwt(token, secret, now);
    REQUIRE(result.valid);
    CHECK(result.subject == "alice");
    // No exp and no nbf: valid forever.
    CHECK(verify_hs256_jwt(sign_hs256_jwt(R"({"sub":"bob"})", secret), secret, now).subject ==
          "bob");
    // Unicode subjects pass through unchanged.
    CHECK(verify_hs256_jwt(sign_hs256_jwt(R"({"sub":"z\u00fcrich"})", secret), secret, now)
              .subject == "z\xc3\xbcrich");
    // A header without typ is fine.
    CHECK(verify_hs256_jwt(sign_hs256_jwt(claims(""), secret, R"({"alg":"HS256"})"), secret, now)
              .valid);
}

TEST_CASE("wrong secret and tampering are refused", "[jwt]") {
    auto const token = sign_hs256_jwt(claims(""), secret);
    auto const wrong = verify_hs256_jwt(token, "not the secret", now);
    CHECK_FALSE(wrong.valid);
    CHECK(wrong.error == "Invalid token signature");
    CHECK(wrong.subject.empty());

    SECTION("tampered payload") {
        auto const forged = with_part(token, 1, base64url_encode(R"({"sub":"mallory"})"));
        CHECK(verify_hs256_jwt(forged, secret, now).error == "Invalid token signature");
    }
    SECTION("tampered signature") {
        auto forged = token;
        forged.back() = forged.back() == 'A' ? 'B' : 'A';
        CHECK(verify_hs256_jwt(forged, secret, now).error == "Invalid token signature");
    }
    SECTION("truncated or missing signature") {  // 40 digits: 30 bytes, not 32
        CHECK(verify_hs256_jwt(token.substr(0, token.size() - 3), secret, now).error ==
              "Invalid token signature");
        CHECK(verify_hs256_jwt(with_part(token, 2, ""), secret, now).error ==
              "Invalid token signature");
    }
    SECTION("an empty secret verifies nothing") {
        auto const unsigned_token = sign_hs256_jwt(claims(""), "");
        CHECK_FALSE(verify_hs256_jwt(unsigned_token, "", now).valid);
    }
}

TEST_CASE("only HS256 is accepted (no algorithm confusion)", "[jwt]") {
    auto const payload = base64url_encode(claims(""));
    SECTION("alg none, unsigned") {
        auto const token = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
        auto const result = verify_hs256_jwt(token, secret, now);
        CHECK_FALSE(result.valid);
        CHECK(result.error == "Unsupported token algorithm: only HS256 is accepted");
    }
    SECTION("alg none, even with a valid HMAC") {
        auto const token = sign_hs256_jwt(claims(""), secret, R"({"alg":"none"})");
        CHECK_FALSE(verify_hs256_jwt(token, secret, now).valid);
    }
    SECTION("other algorithms, signed with the secret anyway") {
        for (char const* header :
             {R"({"alg":"HS512","typ":"JWT"})", R"({"alg":"RS256","typ":"JWT"})",
              R"({"alg":"hs256"})", R"({"alg":"HS256 "})", R"({"alg":["HS256"]})",
              R"({"alg":null})", R"({"typ":"JWT"})"}) {
            INFO(header);
            auto const result = verify_hs256_jwt(sign_hs256_jwt(claims(""), secret, header),
                                                 secret, now);
            CHECK_FALSE(result.valid);
            CHECK(result.error == "Unsupported token algorithm: only HS256 is accepted");
        }
    }
    SECTION("duplicate alg and crit are refused") {
        CHECK_FALSE(verify_hs256_jwt(
            sign_hs256_jwt(claims(""), secret, R"({"alg":"HS256","alg":"none"})"), secret, now));
        CHECK_FALSE(verify_hs256_jwt(
            sign_hs256_jwt(claims(""), secret, R"({"alg":"HS256","crit":["exp"]})"), secret,
            now));
    }
}

TEST_CASE("exp and nbf, with the clock skew", "[jwt]") {
    auto verify = [](std::string const& extra) {
        return verify_hs256_jwt(sign_hs256_jwt(claims(extra), secret), secret, now);
    };
    auto const skew = jwt_clock_skew_seconds;
    auto const at = [](std::int64_t t) { return std::to_string(t); };

    CHECK(verify(",\"exp\":" + at(now - 3600)).error == "Token expired");
    CHECK(verify(",\"exp\":" + at(now - skew)).error == "Token expired");
    CHECK(verify(",\"exp\":" + at(now - skew + 1)).valid);
    CHECK(verify(",\"exp\":" + at(now + 60)).valid);
    CHECK(verify(",\"exp\":1700000000.5").valid);

    CHECK(verify(",\"nbf\":" + at(now + 3600)).error == "Token not yet valid");
    CHECK(verify(",\"nbf\":" + at(now + skew + 1)).error == "Token not yet valid");
    CHECK(verify(",\"nbf\":" + at(now + skew)).valid);
    CHECK(verify(",\"nbf\":" + at(now - 60)).valid);

    CHECK(verify(R"(,"exp":"1800000000")").error == "Token exp claim is not a number");
    CHECK(verify(R"(,"exp":null)").error == "Token exp claim is not a number");
    CHECK(verify(R"(,"nbf":true)").error == "Token nbf claim is not a number");
    CHECK_FALSE(verify(",\"exp\":1800000000,\"exp\":1").valid);  // duplicate claim
}

TEST_CASE("the subject must be a non-empty string", "[jwt]") {
    auto verify = [](std::string const& payload) {
        return verify_hs256_jwt(sign_hs256_jwt(payload, secret), secret, now);
    };
    CHECK(verify(R"({"exp":1800000000})").error == "Token has no sub claim");
    CHECK(verify(R"({})").error == "Token has no sub claim");
    CHECK(verify(R"({"sub":42})").error == "Token sub claim is not a non-empty string");
    CHECK(verify(R"({"sub":null})").error == "Token sub claim is not a non-empty string");
    CHECK(verify(R"({"sub":["alice"]})").error == "Token sub claim is not a non-empty string");
    CHECK(verify(R"({"sub":""})").error == "Token sub claim is not a non-empty string");
    CHECK_FALSE(verify(R"({"sub":"alice","sub":"mallory"})").valid);
}

TEST_CASE("malformed tokens are refused", "[jwt]") {
    auto const token = sign_hs256_jwt(claims(""), secret);
    auto const error = [](std::string const& t) { return verify_hs256_jwt(t, secret, now).error; };
    std::string const three_parts = "Malformed token: expected three dot-separated parts";

    CHECK(error("") == "Empty token");
    CHECK(error("abc") == three_parts);
    CHECK(error("a.b") == three_parts);
    CHECK(error(token.substr(0, token.rfind('.'))) == three_parts);  // two parts
    CHECK(error(token + ".") == three_parts);                        // four parts
    CHECK(error(token + ".abc") == three_parts);
    CHECK(error("..") == "Malformed token: header is not a JSON object");

    // Invalid base64url in each part.
    CHECK(error(with_part(token, 0, "eyJhbGciOiJIUzI1NiJ9!")) ==
          "Malformed token: header is not base64url");
    CHECK(error(with_part(token, 2, "lt+JcNhfCJgWKbfJs1WnLYmiq7W/OvHlmKI80d+Q078")) ==
          "Malformed token: signature is not base64url");
    // The payload is checked after the signature, so a bad one needs a signed token.
    auto const bad_payload = base64url_encode(R"({"alg":"HS256"})") + ".e30*";
    auto const digest = wsmanager::detail::hmac_sha256(secret, bad_payload);
    REQUIRE(digest);
    CHECK(error(bad_payload + "." + base64url_encode(std::string(digest->begin(), digest->end()))) ==
          "Malformed token: payload is not base64url");

    // Headers and payloads that are not JSON objects.
    CHECK(error(with_part(token, 0, base64url_encode("not json"))) ==
          "Malformed token: header is not a JSON object");
    CHECK(error(with_part(token, 0, base64url_encode(R"(["HS256"])"))) ==
          "Malformed token: header is not a JSON object");
    CHECK(error(with_part(token, 0, base64url_encode(R"({"alg":"HS256"} x)"))) ==
          "Malformed token: header is not a JSON object");
    for (char const* payload : {"not json", "[]", "\"alice\"", "{\"sub\":\"alice\"", ""}) {
        INFO(payload);
        CHECK(error(sign_hs256_jwt(payload, secret)) ==
              "Malformed token: payload is not a JSON object");
    }
    // Invalid UTF-8 in a claim.
    CHECK(error(sign_hs256_jwt("{\"sub\":\"\xff\xfe\"}", secret)) ==
          "Malformed token: payload is not a JSON object");
}
