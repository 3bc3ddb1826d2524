// SPDX-License-Identifier: BSL-1.0
#pragma once

// JSON Web Tokens (RFC 7519 / RFC 7515), just enough for the default Authenticator:
// base64url, verification of a compact token signed with HS256 (a shared secret) or with
// RS256 / ES256 (an identity provider's public key, detail/jwt_key.hpp), and HS256 signing
// (for tests and hosts' development tooling).
//
// Verification rules, in order; the three algorithms share all of them but the signature:
//  - exactly three dot-separated parts, each base64url (padding optional);
//  - the header is a JSON object with no "crit" parameter, whose "alg" is one the server
//    chose: "HS256" when a secret is configured, and the key's own algorithm ("RS256" for
//    an RSA key, "ES256" for a P-256 key) when a key is. Anything else ("none", "HS512",
//    "RS384", "HS256" without a secret, "RS256" with an EC key...) is refused, so the token
//    cannot choose how it is checked: in particular an HS256 token is never checked with the
//    public key as its HMAC secret;
//  - the signature: HMAC-SHA256(secret, header_b64 "." payload_b64) compared in constant
//    time, or the key's RS256 / ES256 signature checked by OpenSSL; the payload is only
//    parsed once the signature is good;
//  - the payload is a JSON object;
//  - "exp", when present, is a number and the token is refused once now >= exp + skew (it is
//    also returned, so a connection can be closed when its token expires);
//    "nbf", when present, is a number and the token is refused while now < nbf - skew, where
//    skew is jwt_clock_skew_seconds (30 s) to tolerate clocks that differ a little;
//  - with a required issuer, "iss" is a string equal to it; with a required audience, "aud"
//    is a string equal to it or an array of strings that contains it;
//  - "sub" is a non-empty string (the user id);
//  - a claim or header parameter named twice is refused (parsers disagree on which wins).
// Other claims (iat, jti, ...) and header parameters (kid, typ, ...) are not checked; a host
// that needs them installs its own Authenticator.

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <rapidjson/document.h>

#include <wsmanager/detail/jwt_key.hpp>

namespace wsmanager::detail {

/// Tolerance, in seconds, applied to "exp" and "nbf" for clocks that differ a little.
inline constexpr std::int64_t jwt_clock_skew_seconds = 30;

/// Base64url (RFC 4648 section 5) without padding.
inline std::string base64url_encode(std::string_view data) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string out;
    out.reserve((data.size() * 4 + 2) / 3);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (char const c : data) {
        buffer = (buffer << 8) | static_cast<unsigned char>(c);
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out.push_back(alphabet[(buffer >> bits) & 0x3F]);
        }
    }
    if (bits > 0) out.push_back(alphabet[(buffer << (6 - bits)) & 0x3F]);
    return out;
}

/// The value of a base64url digit, or -1.
inline int base64url_digit(char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/**
 * Decodes base64url. Padding is not required; when present it must be correct ("QQ==").
 * nullopt on any other character (including the '+' and '/' of plain base64), on an
 * impossible length, or on non-zero unused bits (a non-canonical encoding).
 */
inline std::optional<std::string> base64url_decode(std::string_view text) {
    if (text.size() % 4 == 0) {
        for (int i = 0; i < 2 && !text.empty() && text.back() == '='; ++i) text.remove_suffix(1);
    }
    if (text.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(text.size() / 4 * 3 + 2);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (char const c : text) {
        int const digit = base64url_digit(c);
        if (digit < 0) return std::nullopt;
        buffer = (buffer << 6) | static_cast<std::uint32_t>(digit);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
        }
    }
    if (bits > 0 && (buffer & ((1u << bits) - 1u)) != 0) return std::nullopt;
    return out;
}

using hmac_sha256_digest = std::array<unsigned char, 32>;

/// HMAC-SHA256 through OpenSSL's one-shot HMAC(); nullopt if OpenSSL fails.
inline std::optional<hmac_sha256_digest> hmac_sha256(std::string_view key, std::string_view data) {
    if (key.size() > static_cast<std::size_t>(INT_MAX)) return std::nullopt;
    static unsigned char const empty = 0;  // OpenSSL wants non-null pointers
    void const* key_ptr = key.empty() ? static_cast<void const*>(&empty) : key.data();
    auto const* data_ptr = data.empty() ? &empty
                                        : reinterpret_cast<unsigned char const*>(data.data());
    hmac_sha256_digest digest{};
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()), data_ptr, data.size(),
             digest.data(), &length) == nullptr ||
        length != digest.size()) {
        return std::nullopt;
    }
    return digest;
}

/// The outcome of verify_jwt: the subject, or why the token was refused.
struct jwt_verification {
    bool valid = false;
    std::string subject;  ///< valid: the "sub" claim, i.e. the user id
    std::string error;    ///< refused: a human-readable reason (safe to show the client)
    /// valid: the "exp" claim (seconds since the epoch, as given), when the token has one.
    /// The token is refused from exp + jwt_clock_skew_seconds on.
    std::optional<double> expires{};

    explicit operator bool() const noexcept { return valid; }

    static jwt_verification accept(std::string subject,
                                   std::optional<double> expires = std::nullopt) {
        return {true, std::move(subject), {}, expires};
    }
    static jwt_verification reject(std::string error) { return {false, {}, std::move(error), {}}; }
};

namespace jwt_impl {

/// Parses a JSON object (UTF-8 validated); false on anything else.
inline bool parse_object(std::string const& text, rapidjson::Document& document) {
    // Iterative: the header and payload come from the client, before any signature check.
    document.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(
        text.data(), text.size());
    return !document.HasParseError() && document.IsObject();
}

/// The member called `name`, or nullptr (names are known to be unique: see below).
inline rapidjson::Value const* member(rapidjson::Value const& object, std::string_view name) {
    for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
        if (std::string_view(it->name.GetString(), it->name.GetStringLength()) == name) {
            return &it->value;
        }
    }
    return nullptr;
}

/// True when some name occurs twice (RapidJSON keeps both; other parsers take the last).
inline bool has_duplicate_names(rapidjson::Value const& object) {
    std::vector<std::string_view> names;
    names.reserve(object.MemberCount());
    for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
        names.emplace_back(it->name.GetString(), it->name.GetStringLength());
    }
    std::sort(names.begin(), names.end());
    return std::adjacent_find(names.begin(), names.end()) != names.end();
}

}  // namespace jwt_impl

/// What verify_jwt accepts. The views must outlive the call.
struct jwt_requirements {
    std::string_view secret{};     ///< non-empty: HS256 tokens are checked with it
    jwt_key const* key = nullptr;  ///< set: tokens of the key's algorithm are checked with it
    std::string_view issuer{};     ///< non-empty: "iss" must equal it
    std::string_view audience{};   ///< non-empty: "aud" must be or contain it
};

namespace jwt_impl {

inline std::string_view string_of(rapidjson::Value const& value) {
    return {value.GetString(), value.GetStringLength()};
}

/// The refusal of an "alg" the requirements do not allow; names what is allowed, never
/// what the token said.
inline std::string unsupported_algorithm(jwt_requirements const& requirements) {
    std::string allowed;
    if (!requirements.secret.empty()) allowed = "HS256";
    if (requirements.key != nullptr) {
        if (!allowed.empty()) allowed += " and ";
        allowed += requirements.key->algorithm_name();
    }
    bool const both = !requirements.secret.empty() && requirements.key != nullptr;
    return "Unsupported token algorithm: only " + allowed + (both ? " are" : " is") + " accepted";
}

/// "aud" (RFC 7519 section 4.1.3: one string, or an array of strings) names `audience`.
inline bool audience_contains(rapidjson::Value const& aud, std::string_view audience) {
    if (aud.IsString()) return string_of(aud) == audience;
    if (!aud.IsArray()) return false;
    bool found = false;
    for (auto const& entry : aud.GetArray()) {
        if (!entry.IsString()) return false;  // a malformed claim is not half-trusted
        found = found || string_of(entry) == audience;
    }
    return found;
}

}  // namespace jwt_impl

/**
 * Verifies a compact JWT (see the rules at the top of this file) at time `now_unix_seconds`
 * against `requirements`. Never throws for any input other than std::bad_alloc.
 * @par Thread Safety
 * Safe to call concurrently, with the same key too.
 */
inline jwt_verification verify_jwt(std::string_view token, jwt_requirements const& requirements,
                                   std::int64_t now_unix_seconds) {
    if (requirements.secret.empty() && requirements.key == nullptr) {
        return jwt_verification::reject("No token secret or key configured");
    }
    if (token.empty()) return jwt_verification::reject("Empty token");

    auto const first_dot = token.find('.');
    auto const second_dot = first_dot == std::string_view::npos
                                ? std::string_view::npos
                                : token.find('.', first_dot + 1);
    if (second_dot == std::string_view::npos ||
        token.find('.', second_dot + 1) != std::string_view::npos) {
        return jwt_verification::reject("Malformed token: expected three dot-separated parts");
    }
    auto const header_b64 = token.substr(0, first_dot);
    auto const payload_b64 = token.substr(first_dot + 1, second_dot - first_dot - 1);
    auto const signature_b64 = token.substr(second_dot + 1);
    auto const signing_input = token.substr(0, second_dot);

    auto const header_text = base64url_decode(header_b64);
    if (!header_text) return jwt_verification::reject("Malformed token: header is not base64url");
    rapidjson::Document header;
    if (!jwt_impl::parse_object(*header_text, header)) {
        return jwt_verification::reject("Malformed token: header is not a JSON object");
    }
    if (jwt_impl::has_duplicate_names(header)) {
        return jwt_verification::reject("Malformed token: duplicate header parameter");
    }
    // The algorithm follows from what the server holds; the token's "alg" only has to agree.
    auto const* alg_value = jwt_impl::member(header, "alg");
    auto const alg = alg_value != nullptr && alg_value->IsString() ? jwt_impl::string_of(*alg_value)
                                                                   : std::string_view{};
    bool const with_secret = !requirements.secret.empty() && alg == "HS256";
    bool const with_key = requirements.key != nullptr && alg == requirements.key->algorithm_name();
    if (!with_secret && !with_key) {
        return jwt_verification::reject(jwt_impl::unsupported_algorithm(requirements));
    }
    if (jwt_impl::member(header, "crit") != nullptr) {
        return jwt_verification::reject("Unsupported critical token header parameters");
    }

    auto const signature = base64url_decode(signature_b64);
    if (!signature) {
        return jwt_verification::reject("Malformed token: signature is not base64url");
    }
    if (with_secret) {
        auto const expected = hmac_sha256(requirements.secret, signing_input);
        if (!expected) return jwt_verification::reject("Token signature could not be computed");
        if (signature->size() != expected->size() ||
            CRYPTO_memcmp(signature->data(), expected->data(), expected->size()) != 0) {
            return jwt_verification::reject("Invalid token signature");
        }
    } else if (!requirements.key->verify(signing_input, *signature)) {
        return jwt_verification::reject("Invalid token signature");
    }

    auto const payload_text = base64url_decode(payload_b64);
    if (!payload_text) {
        return jwt_verification::reject("Malformed token: payload is not base64url");
    }
    rapidjson::Document payload;
    if (!jwt_impl::parse_object(*payload_text, payload)) {
        return jwt_verification::reject("Malformed token: payload is not a JSON object");
    }
    if (jwt_impl::has_duplicate_names(payload)) {
        return jwt_verification::reject("Malformed token: duplicate claim");
    }

    auto const now = static_cast<double>(now_unix_seconds);
    auto const skew = static_cast<double>(jwt_clock_skew_seconds);
    std::optional<double> expires;
    if (auto const* exp = jwt_impl::member(payload, "exp")) {
        if (!exp->IsNumber()) return jwt_verification::reject("Token exp claim is not a number");
        if (now >= exp->GetDouble() + skew) return jwt_verification::reject("Token expired");
        expires = exp->GetDouble();
    }
    if (auto const* nbf = jwt_impl::member(payload, "nbf")) {
        if (!nbf->IsNumber()) return jwt_verification::reject("Token nbf claim is not a number");
        if (now + skew < nbf->GetDouble()) return jwt_verification::reject("Token not yet valid");
    }
    if (!requirements.issuer.empty()) {
        auto const* iss = jwt_impl::member(payload, "iss");
        if (iss == nullptr || !iss->IsString() ||
            jwt_impl::string_of(*iss) != requirements.issuer) {
            return jwt_verification::reject("Token issuer not accepted");
        }
    }
    if (!requirements.audience.empty()) {
        auto const* aud = jwt_impl::member(payload, "aud");
        if (aud == nullptr || !jwt_impl::audience_contains(*aud, requirements.audience)) {
            return jwt_verification::reject("Token audience not accepted");
        }
    }
    auto const* sub = jwt_impl::member(payload, "sub");
    if (sub == nullptr) return jwt_verification::reject("Token has no sub claim");
    if (!sub->IsString() || sub->GetStringLength() == 0) {
        return jwt_verification::reject("Token sub claim is not a non-empty string");
    }
    return jwt_verification::accept(std::string(jwt_impl::string_of(*sub)), expires);
}

/**
 * Verifies a compact HS256 JWT with `secret` only (verify_jwt with just a secret): the
 * rules at the top of this file without iss or aud checks.
 */
inline jwt_verification verify_hs256_jwt(std::string_view token, std::string_view secret,
                                         std::int64_t now_unix_seconds) {
    if (secret.empty()) return jwt_verification::reject("No token secret configured");
    return verify_jwt(token, jwt_requirements{.secret = secret}, now_unix_seconds);
}

/// The header sign_hs256_jwt uses by default.
inline constexpr std::string_view jwt_default_header = R"({"alg":"HS256","typ":"JWT"})";

/**
 * Signs `claims_json` (used as given, not validated, so tests can sign malformed payloads)
 * into a compact JWT with HMAC-SHA256: base64url(header) "." base64url(claims) "."
 * base64url(signature). `header_json` is also used as given (tests pass other "alg" values).
 * For tests and hosts' development tooling, e.g. minting a token for a local client.
 * @throws std::runtime_error if OpenSSL fails.
 */
inline std::string sign_hs256_jwt(std::string_view claims_json, std::string_view secret,
                                  std::string_view header_json = jwt_default_header) {
    std::string token = base64url_encode(header_json);
    token.push_back('.');
    token += base64url_encode(claims_json);
    auto const digest = hmac_sha256(secret, token);
    if (!digest) throw std::runtime_error("wsmanager: HMAC-SHA256 failed");
    token.push_back('.');
    token += base64url_encode(
        std::string_view(reinterpret_cast<char const*>(digest->data()), digest->size()));
    return token;
}

}  // namespace wsmanager::detail
