// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <string_view>
#include <utility>

#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager {

namespace detail {
/// The token of an `Authorization: Bearer <token>` header (scheme in any case), or "".
inline std::string_view bearer_token(std::string_view authorization) {
    constexpr std::string_view scheme = "bearer ";
    bool const bearer =
        authorization.size() > scheme.size() &&
        std::equal(scheme.begin(), scheme.end(), authorization.begin(), [](char a, char b) {
            return a == std::tolower(static_cast<unsigned char>(b));
        });
    if (!bearer) return {};
    auto token = authorization.substr(scheme.size());
    auto const first = token.find_first_not_of(" \t");
    auto const last = token.find_last_not_of(" \t");
    return first == std::string_view::npos ? std::string_view{}
                                           : token.substr(first, last - first + 1);
}
}  // namespace detail

namespace detail {
/// When a token whose `exp` is `exp` stops being accepted: exp + the clock leeway, as
/// verify_jwt checks it. nullopt without an exp, or for one past what the clock can hold
/// (year 2255 and later: never, in practice).
inline std::optional<std::chrono::system_clock::time_point> token_deadline(
    std::optional<double> exp) {
    if (!exp) return std::nullopt;
    double const deadline = *exp + static_cast<double>(jwt_clock_skew_seconds);
    if (!(deadline < 9e9)) return std::nullopt;  // also NaN; system_clock counts nanoseconds
    return std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(deadline)));
}

/// default_authenticate with the public key, if Options::auth_public_key is set, already at
/// hand (the handshake gate holds it; nullptr otherwise).
inline AuthResult authenticate_by_default(HandshakeRequest const& request, Options const& options,
                                          jwt_key const* key) {
    if (options.auth_secret.empty() && options.auth_public_key.empty()) {
        return AuthResult::accept(request.query_param("user_id"));  // development mode
    }
    // JWT mode: ?token= first, else "Authorization: Bearer <token>". ?user_id= is ignored.
    std::string_view token = request.query_param("token");
    if (token.empty()) token = bearer_token(request.header("authorization"));
    if (token.empty()) return AuthResult::reject("Missing token");
    auto const now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto verdict = verify_jwt(token,
                              jwt_requirements{.secret = options.auth_secret,
                                               .key = key,
                                               .issuer = options.auth_issuer,
                                               .audience = options.auth_audience},
                              now);
    if (!verdict) return AuthResult::reject(std::move(verdict.error));
    return AuthResult::accept(std::move(verdict.subject), token_deadline(verdict.expires));
}
}  // namespace detail

inline AuthResult default_authenticate(HandshakeRequest const& request, Options const& options) {
    if (options.auth_public_key.empty()) {
        return detail::authenticate_by_default(request, options, nullptr);
    }
    auto const key = detail::shared_jwt_key(options.auth_public_key);  // parsed once a process
    return detail::authenticate_by_default(request, options, &key);
}

}  // namespace wsmanager
