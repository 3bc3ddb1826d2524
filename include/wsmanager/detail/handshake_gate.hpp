// SPDX-License-Identifier: BSL-1.0
#pragma once

// Admission before the upgrade: the Origin allow-list, the query string, the identity
// (development `?user_id=`, a JWT, or the host's Authenticator) and its validity.
// It answers with the user id to admit, or the HTTP refusal; refusals are counted and
// logged here. The transport turns a websocketpp request into a handshake_attempt and
// applies the answer.
//
// Runs on the connecting connection's strand, possibly on several threads at once for
// different connections: admit() only reads the gate's state, which is set before
// start_server.

#include <algorithm>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <wsmanager/detail/jwt_key.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/uri.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/handshake.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::detail {

/// What a client's opening handshake says, as the gate needs it.
struct handshake_attempt {
    std::string resource;  ///< path and query, as requested
    std::map<std::string, std::string> headers;  ///< names in lower case
    std::string remote_endpoint;                 ///< "address:port"
};

/// The gate's answer.
struct admission {
    bool admitted = false;
    std::string user_id;  ///< admitted: the connection's user ("" for anonymous)
    int http_status = 0;  ///< refused: the response status
    std::string reason;   ///< refused: the response body
    std::vector<std::pair<std::string, std::string>> headers;  ///< refused: extra headers
};

class handshake_gate {
public:
    /// @throws std::invalid_argument if options.auth_public_key does not load.
    handshake_gate(Options const& options, manager_counters& counters, logger const& log)
        : options_(options),
          counters_(counters),
          log_(log),
          token_key_(options.auth_public_key.empty()
                         ? std::nullopt
                         : std::optional(shared_jwt_key(options.auth_public_key))) {}

    /// Replaces the default identity check (before start_server).
    void set_authenticator(Authenticator authenticator) {
        authenticator_ = std::move(authenticator);
    }
    bool has_authenticator() const noexcept { return static_cast<bool>(authenticator_); }

    admission admit(handshake_attempt const& attempt) const {
        if (!options_.allowed_origins.empty()) {
            auto const origin = header(attempt, "origin");
            auto const& allowed = options_.allowed_origins;
            if (std::find(allowed.begin(), allowed.end(), origin) == allowed.end()) {
                return refuse(attempt, AuthResult::reject("Origin not allowed", 403),
                              reject_reason::origin);
            }
        }
        HandshakeRequest request;
        auto const question = attempt.resource.find('?');
        request.path = attempt.resource.substr(0, question);
        if (question != std::string::npos) {
            auto query = parse_query(std::string_view(attempt.resource).substr(question + 1));
            if (!query) {
                return refuse(attempt, AuthResult::reject("Malformed query string", 400),
                              reject_reason::handshake);
            }
            request.query = std::move(*query);
        }
        request.headers = attempt.headers;
        request.remote_endpoint = attempt.remote_endpoint;
        AuthResult verdict;
        try {
            verdict = authenticator_ ? authenticator_(request)
                                     : authenticate_by_default(request, options_,
                                                               token_key_ ? &*token_key_ : nullptr);
        } catch (std::exception const& e) {
            log_.write(LogLevel::error, "authenticator_failed", e.what());
            verdict = AuthResult::reject("Authentication failed", 500);
        }
        if (!verdict.accepted) return refuse(attempt, verdict, reject_reason::auth);
        if (!is_valid_utf8(verdict.user_id)) {
            return refuse(attempt, AuthResult::reject("The user id must be valid UTF-8", 400),
                          reject_reason::handshake);
        }
        return admission{true, std::move(verdict.user_id), 0, {}, {}};
    }

private:
    static std::string header(handshake_attempt const& attempt, std::string const& name) {
        auto it = attempt.headers.find(name);
        return it == attempt.headers.end() ? std::string{} : it->second;
    }

    admission refuse(handshake_attempt const& attempt, AuthResult const& verdict,
                     reject_reason reason) const {
        counters_.count_rejected(reason);
        log_.write(LogLevel::info, "handshake_refused",
                   std::to_string(verdict.http_status) + " " + verdict.reason + " from " +
                       attempt.remote_endpoint);
        admission refused{false, {}, verdict.http_status, verdict.reason, {}};
        if (verdict.http_status == 401) {
            refused.headers.emplace_back("WWW-Authenticate", "Bearer");  // RFC 6750
        }
        return refused;
    }

    Options const& options_;
    manager_counters& counters_;
    logger const& log_;
    // Loaded once, when the gate is built: no handshake parses the PEM.
    std::optional<jwt_key> const token_key_;
    Authenticator authenticator_;
};

}  // namespace wsmanager::detail
