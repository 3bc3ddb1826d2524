// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include <wsmanager/detail/uri.hpp>

namespace wsmanager {

/// What a client sent in its opening handshake, as seen by an Authenticator.
struct HandshakeRequest {
    std::string path;   ///< resource path without the query, e.g. "/ws"
    std::map<std::string, std::string> query;    ///< decoded query parameters
    std::map<std::string, std::string> headers;  ///< header names in lower case
    std::string remote_endpoint;                 ///< "address:port" of the peer

    /// A query parameter, or "" when absent.
    std::string const& query_param(std::string const& name) const {
        static std::string const none;
        auto it = query.find(name);
        return it == query.end() ? none : it->second;
    }
    /// A header (name in any case), or "" when absent.
    std::string const& header(std::string name) const {
        static std::string const none;
        auto it = headers.find(detail::to_lower_ascii(std::move(name)));
        return it == headers.end() ? none : it->second;
    }
};

/// An Authenticator's verdict.
struct AuthResult {
    bool accepted = false;
    std::string user_id;  ///< accepted: the connection's user ("" for anonymous)
    int http_status = 401;  ///< refused: the HTTP status of the refusal
    std::string reason;     ///< refused: the response body, and the log message
    /// accepted: when the identity stops being valid; with Options::close_on_token_expiry
    /// the connection is closed then (1008 "Token expired"). The default check sets it from
    /// a JWT's `exp` plus the clock leeway it allows (30 s); unset: never.
    std::optional<std::chrono::system_clock::time_point> expires_at{};

    static AuthResult accept(std::string user_id,
                             std::optional<std::chrono::system_clock::time_point> expires_at =
                                 std::nullopt) {
        return {true, std::move(user_id), 200, {}, expires_at};
    }
    static AuthResult reject(std::string reason, int http_status = 401) {
        return {false, {}, http_status, std::move(reason), std::nullopt};
    }
};

/**
 * Decides who a connecting client is. Runs during the handshake, on the connection's
 * strand, possibly on several threads at once for different connections; it must not block
 * for long. The default: with Options::auth_secret or Options::auth_public_key, a JWT from
 * `?token=` or `Authorization: Bearer`; without, `?user_id=` as given (development mode).
 */
using Authenticator = std::function<AuthResult(HandshakeRequest const&)>;

struct Options;

/**
 * The manager's own identity check, for an Authenticator that adds to it (checks `iss`, a
 * user allow-list, ...) instead of replacing it: with Options::auth_secret (HS256) or
 * Options::auth_public_key (RS256 or ES256, as the key's type says), a JWT from `?token=` or
 * `Authorization: Bearer` whose `iss` and `aud` match Options::auth_issuer and
 * Options::auth_audience when those are set (see docs/security.md), its `sub` the user id;
 * without a secret or a key, `?user_id=` as given (development mode).
 *
 * The public key is parsed at its first use in the process (Options::validate() does that)
 * and kept, not read per call.
 *
 * @throws std::invalid_argument if Options::auth_public_key does not load (validate() says
 * so first).
 *
 * @par Thread Safety
 * Safe from any thread.
 */
AuthResult default_authenticate(HandshakeRequest const& request, Options const& options);

}  // namespace wsmanager

#include <wsmanager/impl/handshake.hpp>
