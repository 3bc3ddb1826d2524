// SPDX-License-Identifier: BSL-1.0
// JWT verification (HS256, RS256, ES256) and base64url (wsmanager/detail/jwt.hpp), and the
// issuer's public key (wsmanager/detail/jwt_key.hpp). The RSA and EC keys are generated
// here, with OpenSSL, and tokens are signed here with their private halves.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/detail/jwt_key.hpp>

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

// ---- RS256 and ES256 with an identity provider's public key -------------------------------

namespace jwt_key_tests {

using wsmanager::detail::jwt_key;
using wsmanager::detail::jwt_requirements;
using wsmanager::detail::jwt_verification;
using wsmanager::detail::verify_jwt;

struct pkey_free {
    void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using pkey = std::unique_ptr<EVP_PKEY, pkey_free>;

pkey rsa_key(std::size_t bits = 2048) {
    pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
    REQUIRE(key);
    return key;
}

pkey ec_key(std::string curve = "P-256") {
    pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve.data()));  // wants a char*
    REQUIRE(key);
    return key;
}

/// The keys most tests use, generated once for the run (RSA generation takes a while).
struct test_keys {
    pkey rsa = rsa_key();
    pkey other_rsa = rsa_key();
    pkey ec = ec_key();
    pkey other_ec = ec_key();
};

test_keys const& keys() {
    static test_keys const generated;
    return generated;
}

/// What a memory BIO holds, as text.
std::string bio_text(BIO* bio) {
    char* data = nullptr;
    long const length = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(length));
}

std::string public_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    REQUIRE(PEM_write_bio_PUBKEY(bio.get(), key) == 1);
    return bio_text(bio.get());
}

std::string private_pem(EVP_PKEY* key) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1);
    return bio_text(bio.get());
}

/// A self-signed certificate for `key`, as identity providers publish (Auth0's /pem, x5c).
std::string certificate_pem(EVP_PKEY* key) {
    std::unique_ptr<X509, decltype(&X509_free)> certificate(X509_new(), &X509_free);
    REQUIRE(certificate);
    auto* x = certificate.get();
    REQUIRE(X509_set_version(x, 2) == 1);
    REQUIRE(ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1);
    REQUIRE(X509_gmtime_adj(X509_getm_notBefore(x), 0) != nullptr);
    REQUIRE(X509_gmtime_adj(X509_getm_notAfter(x), 86400) != nullptr);
    REQUIRE(X509_set_pubkey(x, key) == 1);
    auto* name = X509_get_subject_name(x);
    REQUIRE(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                       reinterpret_cast<unsigned char const*>("issuer.test"), -1,
                                       -1, 0) == 1);
    REQUIRE(X509_set_issuer_name(x, name) == 1);
    REQUIRE(X509_sign(x, key, EVP_sha256()) > 0);
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
    REQUIRE(PEM_write_bio_X509(bio.get(), x) == 1);
    return bio_text(bio.get());
}

jwt_key load(EVP_PKEY* key) { return jwt_key::load(public_pem(key)); }

/// EVP_DigestSign with SHA-256: PKCS#1 v1.5 for an RSA key, DER ECDSA for an EC key.
std::string digest_sign(EVP_PKEY* key, std::string_view input) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                    &EVP_MD_CTX_free);
    REQUIRE(context);
    REQUIRE(EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key) == 1);
    auto const* data = reinterpret_cast<unsigned char const*>(input.data());
    std::size_t length = 0;
    REQUIRE(EVP_DigestSign(context.get(), nullptr, &length, data, input.size()) == 1);
    std::string signature(length, '\0');
    REQUIRE(EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()),
                           &length, data, input.size()) == 1);
    signature.resize(length);
    return signature;
}

/// A DER ECDSA-Sig-Value as JOSE's raw r||s, 32 bytes each.
std::string der_to_raw(std::string const& der) {
    auto const* cursor = reinterpret_cast<unsigned char const*>(der.data());
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> signature(
        d2i_ECDSA_SIG(nullptr, &cursor, static_cast<long>(der.size())), &ECDSA_SIG_free);
    REQUIRE(signature);
    BIGNUM const* r = nullptr;
    BIGNUM const* s = nullptr;
    ECDSA_SIG_get0(signature.get(), &r, &s);
    std::string raw(64, '\0');
    auto* out = reinterpret_cast<unsigned char*>(raw.data());
    REQUIRE(BN_bn2binpad(r, out, 32) == 32);
    REQUIRE(BN_bn2binpad(s, out + 32, 32) == 32);
    return raw;
}

/// base64url(header) "." base64url(claims) "." base64url(signature) with `signature` given.
std::string with_signature(std::string_view header, std::string_view claims_json,
                           std::string const& signature) {
    return base64url_encode(header) + "." + base64url_encode(claims_json) + "." +
           base64url_encode(signature);
}

/// A compact token signed by `key`: RS256 for an RSA key, ES256 (raw r||s) for an EC key.
/// `header` defaults to the algorithm's own; tests give other ones to lie about it.
std::string sign(EVP_PKEY* key, std::string_view claims_json,
                 std::optional<std::string> header = std::nullopt) {
    bool const ec = EVP_PKEY_is_a(key, "EC") == 1;
    if (!header) header = ec ? R"({"alg":"ES256","typ":"JWT"})" : R"({"alg":"RS256","typ":"JWT"})";
    std::string const input = base64url_encode(*header) + "." + base64url_encode(claims_json);
    auto signature = digest_sign(key, input);
    if (ec) signature = der_to_raw(signature);
    return input + "." + base64url_encode(signature);
}

jwt_verification verify(std::string const& token, jwt_key const& key, std::int64_t at = now) {
    return verify_jwt(token, jwt_requirements{.key = &key}, at);
}

/// The message of the std::invalid_argument jwt_key::load throws, or "" if it loads.
std::string load_error(std::string const& setting) {
    try {
        (void)jwt_key::load(setting);
    } catch (std::invalid_argument const& e) {
        return e.what();
    }
    return {};
}

/// A file in the temporary directory, removed at the end of the scope.
class temp_file {
public:
    temp_file(std::string const& name, std::string const& content)
        : path_(std::filesystem::temp_directory_path() /
                ("wsmanager-jwt-test-" + std::to_string(::getpid()) + "-" + name)) {
        write(content);
    }
    temp_file(temp_file const&) = delete;
    temp_file& operator=(temp_file const&) = delete;
    ~temp_file() {
        std::error_code ignored;
        std::filesystem::remove(path_, ignored);
    }
    void write(std::string const& content) const {
        std::ofstream(path_, std::ios::binary | std::ios::trunc) << content;
    }
    std::string path() const { return path_.string(); }

private:
    std::filesystem::path path_;
};

}  // namespace jwt_key_tests

using namespace jwt_key_tests;

TEST_CASE("jwt_key: an RSA key verifies RS256, a P-256 key ES256", "[jwt][jwt_key]") {
    auto const rsa = load(keys().rsa.get());
    CHECK(rsa.algorithm() == wsmanager::detail::jwt_key_algorithm::rs256);
    CHECK(rsa.algorithm_name() == "RS256");
    auto const ec = load(keys().ec.get());
    CHECK(ec.algorithm() == wsmanager::detail::jwt_key_algorithm::es256);
    CHECK(ec.algorithm_name() == "ES256");

    auto const rs256 = verify(sign(keys().rsa.get(), claims(R"(,"exp":1700003600)")), rsa);
    INFO(rs256.error);
    REQUIRE(rs256.valid);
    CHECK(rs256.subject == "alice");
    auto const es256 = verify(sign(keys().ec.get(), R"({"sub":"bob","exp":1700003600})"), ec);
    INFO(es256.error);
    REQUIRE(es256.valid);
    CHECK(es256.subject == "bob");
    // ECDSA signatures differ each time; every one verifies.
    for (int i = 0; i < 8; ++i) CHECK(verify(sign(keys().ec.get(), claims("")), ec).valid);
    // Unicode subjects pass through unchanged.
    CHECK(verify(sign(keys().rsa.get(), R"({"sub":"z\u00fcrich"})"), rsa).subject ==
          "z\xc3\xbcrich");
}

TEST_CASE("jwt_key: tampering and the wrong key are refused", "[jwt][jwt_key]") {
    auto const rsa = load(keys().rsa.get());
    auto const ec = load(keys().ec.get());
    for (EVP_PKEY* private_key : {keys().rsa.get(), keys().ec.get()}) {
        auto const& key = EVP_PKEY_is_a(private_key, "EC") == 1 ? ec : rsa;
        INFO(key.algorithm_name());
        auto const token = sign(private_key, claims(""));
        REQUIRE(verify(token, key).valid);

        auto const forged = with_part(token, 1, base64url_encode(R"({"sub":"mallory"})"));
        CHECK(verify(forged, key).error == "Invalid token signature");
        auto flipped = token;
        flipped[flipped.size() - 5] = flipped[flipped.size() - 5] == 'A' ? 'B' : 'A';
        CHECK(verify(flipped, key).error == "Invalid token signature");
        CHECK(verify(with_part(token, 2, ""), key).error == "Invalid token signature");
        CHECK(verify(with_part(token, 2, token.substr(0, token.find('.'))), key).error ==
              "Invalid token signature");
    }
    // Signed by another key of the same type.
    CHECK(verify(sign(keys().other_rsa.get(), claims("")), rsa).error == "Invalid token signature");
    CHECK(verify(sign(keys().other_ec.get(), claims("")), ec).error == "Invalid token signature");
}

TEST_CASE("jwt_key: the key decides the algorithm, never the token", "[jwt][jwt_key]") {
    auto const rsa_pem = public_pem(keys().rsa.get());
    auto const rsa = jwt_key::load(rsa_pem);
    auto const ec = load(keys().ec.get());
    std::string const only_rs256 = "Unsupported token algorithm: only RS256 is accepted";
    std::string const only_es256 = "Unsupported token algorithm: only ES256 is accepted";

    SECTION("an RS256 token for an EC key, and an ES256 token for an RSA key") {
        CHECK(verify(sign(keys().rsa.get(), claims("")), ec).error == only_es256);
        CHECK(verify(sign(keys().ec.get(), claims("")), rsa).error == only_rs256);
        // Lying about the algorithm does not help either.
        CHECK(verify(sign(keys().rsa.get(), claims(""), R"({"alg":"ES256"})"), ec).error ==
              "Invalid token signature");
        CHECK(verify(sign(keys().ec.get(), claims(""), R"({"alg":"RS256"})"), rsa).error ==
              "Invalid token signature");
    }
    SECTION("alg none") {
        auto const unsigned_token = base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
                                    base64url_encode(claims("")) + ".";
        CHECK(verify(unsigned_token, rsa).error == only_rs256);
        CHECK(verify(unsigned_token, ec).error == only_es256);
        CHECK(verify(sign(keys().rsa.get(), claims(""), R"({"alg":"none"})"), rsa).error ==
              only_rs256);
    }
    SECTION("HS256 with the public key's PEM as the HMAC secret (algorithm confusion)") {
        auto const confused = sign_hs256_jwt(claims(""), rsa_pem);
        CHECK(verify(confused, rsa).error == only_rs256);
        // With a secret configured as well, HS256 is checked with the secret only.
        auto const both =
            verify_jwt(confused, jwt_requirements{.secret = secret, .key = &rsa}, now);
        CHECK(both.error == "Invalid token signature");
    }
    SECTION("other algorithms and spellings, signed with the key anyway") {
        for (char const* header :
             {R"({"alg":"RS384"})", R"({"alg":"RS512"})", R"({"alg":"PS256"})",
              R"({"alg":"rs256"})", R"({"alg":"RS256 "})", R"({"alg":["RS256"]})",
              R"({"alg":null})", R"({"typ":"JWT"})", R"({"alg":"HS256"})"}) {
            INFO(header);
            CHECK(verify(sign(keys().rsa.get(), claims(""), header), rsa).error == only_rs256);
        }
        for (char const* header : {R"({"alg":"ES384"})", R"({"alg":"ES512"})",
                                   R"({"alg":"ES256K"})", R"({"alg":"EdDSA"})"}) {
            INFO(header);
            CHECK(verify(sign(keys().ec.get(), claims(""), header), ec).error == only_es256);
        }
    }
    SECTION("duplicate alg and crit are refused") {
        CHECK(verify(sign(keys().rsa.get(), claims(""), R"({"alg":"RS256","alg":"none"})"), rsa)
                  .error == "Malformed token: duplicate header parameter");
        CHECK(verify(sign(keys().rsa.get(), claims(""), R"({"alg":"RS256","crit":["exp"]})"), rsa)
                  .error == "Unsupported critical token header parameters");
    }
    SECTION("kid and typ are not looked at") {
        CHECK(
            verify(sign(keys().rsa.get(), claims(""), R"({"alg":"RS256","kid":"k1"})"), rsa).valid);
        CHECK(verify(sign(keys().ec.get(), claims(""), R"({"alg":"ES256","typ":"at+jwt"})"), ec)
                  .valid);
    }
}

TEST_CASE("jwt_key: a secret and a key together accept HS256 and the key's algorithm",
          "[jwt][jwt_key]") {
    auto const ec = load(keys().ec.get());
    jwt_requirements const both{.secret = secret, .key = &ec};
    CHECK(verify_jwt(sign_hs256_jwt(claims(""), secret), both, now).subject == "alice");
    CHECK(verify_jwt(sign(keys().ec.get(), R"({"sub":"bob"})"), both, now).subject == "bob");
    CHECK(verify_jwt(sign_hs256_jwt(claims(""), "not the secret"), both, now).error ==
          "Invalid token signature");
    CHECK(verify_jwt(sign(keys().rsa.get(), claims("")), both, now).error ==
          "Unsupported token algorithm: only HS256 and ES256 are accepted");
    CHECK(verify_jwt(sign_hs256_jwt(claims(""), secret, R"({"alg":"none"})"), both, now).error ==
          "Unsupported token algorithm: only HS256 and ES256 are accepted");
    // Neither: nothing verifies.
    CHECK(verify_jwt(sign_hs256_jwt(claims(""), secret), jwt_requirements{}, now).error ==
          "No token secret or key configured");
}

TEST_CASE("jwt_key: ES256 signatures are exactly 64 raw bytes", "[jwt][jwt_key]") {
    auto const ec = load(keys().ec.get());
    std::string const header = R"({"alg":"ES256"})";
    std::string const payload = claims("");
    std::string const input = base64url_encode(header) + "." + base64url_encode(payload);
    auto const der = digest_sign(keys().ec.get(), input);
    auto const raw = der_to_raw(der);
    REQUIRE(verify(with_signature(header, payload, raw), ec).valid);

    CHECK(verify(with_signature(header, payload, der), ec).error == "Invalid token signature");
    CHECK(verify(with_signature(header, payload, raw.substr(0, 63)), ec).error ==
          "Invalid token signature");
    CHECK(verify(with_signature(header, payload, raw + '\0'), ec).error ==
          "Invalid token signature");
    CHECK(verify(with_signature(header, payload, '\0' + raw), ec).error ==
          "Invalid token signature");
    CHECK(verify(with_signature(header, payload, std::string(64, '\0')), ec).error ==
          "Invalid token signature");
    CHECK(verify(with_signature(header, payload, std::string(64, '\xff')), ec).error ==
          "Invalid token signature");
    CHECK(verify(with_signature(header, payload, raw.substr(32) + raw.substr(0, 32)), ec).error ==
          "Invalid token signature");
    // RS256 likewise wants the modulus' length: no truncated or padded signature.
    auto const rsa = load(keys().rsa.get());
    std::string const rs_header = R"({"alg":"RS256"})";
    auto const rs_input = base64url_encode(rs_header) + "." + base64url_encode(payload);
    auto const rs_signature = digest_sign(keys().rsa.get(), rs_input);
    REQUIRE(rs_signature.size() == 256);
    REQUIRE(verify(with_signature(rs_header, payload, rs_signature), rsa).valid);
    CHECK_FALSE(verify(with_signature(rs_header, payload, '\0' + rs_signature), rsa).valid);
    CHECK_FALSE(verify(with_signature(rs_header, payload, rs_signature.substr(1)), rsa).valid);
}

TEST_CASE("jwt_key: issuer and audience, when required", "[jwt][jwt_key]") {
    auto const rsa = load(keys().rsa.get());
    auto const token = [](std::string const& extra) {
        return sign(keys().rsa.get(), claims(extra));
    };
    std::string const iss = R"(,"iss":"https://idp.example/realms/app")";

    SECTION("not required: iss and aud are not looked at") {
        CHECK(verify(token(R"(,"iss":"anyone","aud":42)"), rsa).valid);
    }
    SECTION("iss must equal the issuer") {
        jwt_requirements const required{.key = &rsa, .issuer = "https://idp.example/realms/app"};
        auto const check = [&](std::string const& extra) {
            return verify_jwt(token(extra), required, now);
        };
        CHECK(check(iss).subject == "alice");
        CHECK(check("").error == "Token issuer not accepted");
        CHECK(check(R"(,"iss":"https://idp.example/realms/other")").error ==
              "Token issuer not accepted");
        CHECK(check(R"(,"iss":"https://idp.example/realms/app/")").error ==
              "Token issuer not accepted");
        CHECK(check(R"(,"iss":"HTTPS://IDP.EXAMPLE/realms/app")").error ==
              "Token issuer not accepted");
        CHECK(check(R"(,"iss":["https://idp.example/realms/app"])").error ==
              "Token issuer not accepted");
        CHECK(check(R"(,"iss":null)").error == "Token issuer not accepted");
        CHECK_FALSE(check(iss + R"(,"iss":"https://idp.example/realms/app")").valid);  // twice
    }
    SECTION("aud must be, or contain, the audience") {
        jwt_requirements const required{.key = &rsa, .audience = "wsmanager"};
        auto const check = [&](std::string const& extra) {
            return verify_jwt(token(extra), required, now);
        };
        CHECK(check(R"(,"aud":"wsmanager")").subject == "alice");
        CHECK(check(R"(,"aud":["account","wsmanager"])").subject == "alice");
        CHECK(check(R"(,"aud":["wsmanager"])").valid);
        CHECK(check("").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":"account")").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":"wsmanager2")").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":["account","billing"])").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":[])").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":["wsmanager",7])").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":[["wsmanager"]])").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":{"wsmanager":true})").error == "Token audience not accepted");
        CHECK(check(R"(,"aud":null)").error == "Token audience not accepted");
    }
    SECTION("both, and with HS256 too") {
        jwt_requirements const required{.secret = secret,
                                        .key = &rsa,
                                        .issuer = "https://idp.example/realms/app",
                                        .audience = "wsmanager"};
        auto const extra = iss + R"(,"aud":"wsmanager")";
        CHECK(verify_jwt(token(extra), required, now).valid);
        CHECK(verify_jwt(sign_hs256_jwt(claims(extra), secret), required, now).valid);
        CHECK(verify_jwt(sign_hs256_jwt(claims(iss), secret), required, now).error ==
              "Token audience not accepted");
        CHECK(verify_jwt(sign_hs256_jwt(claims(R"(,"aud":"wsmanager")"), secret), required, now)
                  .error == "Token issuer not accepted");
    }
}

TEST_CASE("jwt_key: exp and nbf are enforced for RS256 and ES256", "[jwt][jwt_key]") {
    auto const rsa = load(keys().rsa.get());
    auto const ec = load(keys().ec.get());
    auto const skew = jwt_clock_skew_seconds;
    auto const at = [](std::int64_t t) { return std::to_string(t); };
    for (EVP_PKEY* private_key : {keys().rsa.get(), keys().ec.get()}) {
        auto const& key = EVP_PKEY_is_a(private_key, "EC") == 1 ? ec : rsa;
        INFO(key.algorithm_name());
        auto const check = [&](std::string const& extra) {
            return verify(sign(private_key, claims(extra)), key);
        };
        CHECK(check(",\"exp\":" + at(now - 3600)).error == "Token expired");
        CHECK(check(",\"exp\":" + at(now - skew)).error == "Token expired");
        CHECK(check(",\"exp\":" + at(now - skew + 1)).valid);
        CHECK(check(",\"nbf\":" + at(now + skew + 1)).error == "Token not yet valid");
        CHECK(check(",\"nbf\":" + at(now + skew)).valid);
        CHECK(check(R"(,"exp":"soon")").error == "Token exp claim is not a number");
        CHECK(check(R"(,"exp":1,"exp":1800000000)").error == "Malformed token: duplicate claim");
        CHECK(verify(sign(private_key, R"({"exp":1800000000})"), key).error ==
              "Token has no sub claim");
        CHECK(verify(sign(private_key, R"({"sub":""})"), key).error ==
              "Token sub claim is not a non-empty string");
        CHECK(verify(sign(private_key, "not json"), key).error ==
              "Malformed token: payload is not a JSON object");
    }
}

TEST_CASE("jwt_key: a certificate's key, and a key from a file", "[jwt][jwt_key]") {
    SECTION("certificates") {
        auto const rsa = jwt_key::load(certificate_pem(keys().rsa.get()));
        CHECK(rsa.algorithm_name() == "RS256");
        CHECK(verify(sign(keys().rsa.get(), claims("")), rsa).subject == "alice");
        CHECK_FALSE(verify(sign(keys().other_rsa.get(), claims("")), rsa).valid);
        auto const ec = jwt_key::load(certificate_pem(keys().ec.get()));
        CHECK(ec.algorithm_name() == "ES256");
        CHECK(verify(sign(keys().ec.get(), claims("")), ec).subject == "alice");
        // The first PEM block counts; text before it (openssl x509 -text) is skipped.
        auto const chain = "subject=CN = issuer.test\n" + certificate_pem(keys().ec.get()) +
                           certificate_pem(keys().rsa.get());
        CHECK(jwt_key::load(chain).algorithm_name() == "ES256");
    }
    SECTION("PEM text with white space around it") {
        auto const key = jwt_key::load("\n  " + public_pem(keys().ec.get()) + "\n\n");
        CHECK(verify(sign(keys().ec.get(), claims("")), key).valid);
    }
    SECTION("a path to a PEM file") {
        temp_file const file("rsa.pem", public_pem(keys().rsa.get()));
        auto const key = jwt_key::load(file.path());
        CHECK(verify(sign(keys().rsa.get(), claims("")), key).valid);
        temp_file const certificate("ec-cert.pem", certificate_pem(keys().ec.get()));
        CHECK(jwt_key::load(certificate.path()).algorithm_name() == "ES256");
    }
    SECTION("shared_jwt_key reads a file once per process") {
        temp_file const file("shared.pem", public_pem(keys().ec.get()));
        auto const first = wsmanager::detail::shared_jwt_key(file.path());
        file.write(public_pem(keys().other_ec.get()));
        auto const again = wsmanager::detail::shared_jwt_key(file.path());
        CHECK(verify(sign(keys().ec.get(), claims("")), again).valid);
        CHECK_FALSE(verify(sign(keys().other_ec.get(), claims("")), again).valid);
        CHECK(verify(sign(keys().ec.get(), claims("")), first).valid);
    }
}

TEST_CASE("jwt_key: what is not a usable public key is refused, without echoing it",
          "[jwt][jwt_key]") {
    auto const pem_body = [](std::string const& pem) {  // the base64 between the armour lines
        auto const begin = pem.find('\n') + 1;
        return pem.substr(begin, 40);
    };
    SECTION("not PEM, or not a key") {
        CHECK_THAT(load_error(""), Catch::Contains("cannot be read"));
        CHECK_THAT(
            load_error("/nonexistent/wsmanager/key.pem"),
            Catch::Contains("cannot be read") && Catch::Contains("/nonexistent/wsmanager/key.pem"));
        // Keycloak shows its key as bare base64, which is taken for a path.
        CHECK_THAT(load_error("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"),
                   Catch::Contains("must contain -----BEGIN"));
        CHECK_THAT(load_error("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"),
                   Catch::Contains("holds no PEM public key or certificate"));
        CHECK_THAT(load_error("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
                   Catch::Contains("malformed PEM PUBLIC KEY"));
        CHECK_THAT(load_error("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                   Catch::Contains("malformed PEM CERTIFICATE"));
        CHECK_THAT(load_error("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"),
                   Catch::Contains("expected PUBLIC KEY or CERTIFICATE"));
        temp_file const empty("empty.pem", "");
        CHECK_THAT(load_error(empty.path()),
                   Catch::Contains("holds no PEM") && Catch::Contains(empty.path()));
    }
    SECTION("a private key") {
        auto const pem = private_pem(keys().ec.get());
        auto const error = load_error(pem);
        CHECK_THAT(error, Catch::Contains("is a private key"));
        CHECK_THAT(error, !Catch::Contains(pem_body(pem)));
    }
    SECTION("keys of other types and sizes") {
        auto const small = public_pem(rsa_key(1024).get());
        auto const error = load_error(small);
        CHECK_THAT(error, Catch::Contains("1024 bits") && Catch::Contains("2048"));
        CHECK_THAT(error, !Catch::Contains(pem_body(small)));
        CHECK_THAT(load_error(public_pem(ec_key("P-384").get())),
                   Catch::Contains("secp384r1") && Catch::Contains("only P-256"));
        pkey ed25519(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
        REQUIRE(ed25519);
        CHECK_THAT(load_error(public_pem(ed25519.get())), Catch::Contains("unsupported type"));
    }
}

TEST_CASE("jwt_key: one key verifies on several threads at once", "[jwt][jwt_key]") {
    auto const rsa = load(keys().rsa.get());
    auto const ec = load(keys().ec.get());
    auto const rs256 = sign(keys().rsa.get(), claims(""));
    auto const es256 = sign(keys().ec.get(), claims(""));
    auto const forged = with_part(es256, 1, base64url_encode(R"({"sub":"mallory"})"));
    std::vector<int> failures(4, 0);
    {
        std::vector<std::jthread> threads;
        for (std::size_t t = 0; t < failures.size(); ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < 50; ++i) {
                    if (!verify(rs256, rsa).valid || !verify(es256, ec).valid ||
                        verify(forged, ec).valid) {
                        ++failures[t];
                    }
                }
            });
        }
    }
    CHECK(failures == std::vector<int>(4, 0));
}
