// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
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

inline AuthResult default_authenticate(HandshakeRequest const& request, Options const& options) {
    if (options.auth_secret.empty()) {  // development mode: trust ?user_id=
        return AuthResult::accept(request.query_param("user_id"));
    }
    // JWT mode: ?token= first, else "Authorization: Bearer <token>". ?user_id= is ignored.
    std::string_view token = request.query_param("token");
    if (token.empty()) token = detail::bearer_token(request.header("authorization"));
    if (token.empty()) return AuthResult::reject("Missing token");
    auto const now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto verdict = detail::verify_hs256_jwt(token, options.auth_secret, now);
    if (!verdict) return AuthResult::reject(std::move(verdict.error));
    return AuthResult::accept(std::move(verdict.subject));
}

}  // namespace wsmanager
