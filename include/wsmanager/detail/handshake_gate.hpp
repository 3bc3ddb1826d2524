// SPDX-License-Identifier: BSL-1.0
#pragma once

// Admission before the upgrade: the WebSocket version (RFC 6455 only), the Origin
// allow-list, the query string, the identity (development `?user_id=`, a JWT, or the host's
// Authenticator) and its validity. It answers with the user id to admit (and when that
// identity expires, for the session to close it then), or the HTTP refusal; refusals are
// counted and logged here. The transport turns a websocketpp request into a
// handshake_attempt and applies the answer.
//
// Runs on the connecting connection's strand, possibly on several threads at once for
// different connections: admit() reads options and the authenticator, which
// set_authenticator may replace at any time (a shared pointer under a short mutex).

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <wsmanager/detail/host_hooks.hpp>
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
    /// admitted: when the identity expires (AuthResult::expires_at), if it does.
    std::optional<std::chrono::system_clock::time_point> expires_at{};
};

class handshake_gate {
public:
    /// @throws std::invalid_argument if options.auth_public_key does not load.
    handshake_gate(Options const& options, host_hooks& hooks, manager_counters& counters,
                   logger const& log)
        : options_(options),
          hooks_(hooks),
          counters_(counters),
          log_(log),
          token_key_(options.auth_public_key.empty()
                         ? std::nullopt
                         : std::optional(shared_jwt_key(options.auth_public_key))) {}

    /// Replaces the default identity check; any thread, also while handshakes run (the next
    /// handshake uses the new one).
    void set_authenticator(Authenticator authenticator) {
        auto replacement = authenticator ? std::make_shared<Authenticator const>(
                                               std::move(authenticator))
                                         : nullptr;
        std::lock_guard lock(authenticator_mutex_);
        authenticator_ = std::move(replacement);
    }
    bool has_authenticator() const { return current_authenticator() != nullptr; }

    admission admit(handshake_attempt const& attempt) const {
        // RFC 6455 only: hixie-76 (no version header) and the hybi drafts 7 and 8 are
        // unmasked or differently framed, and the prepared frames are RFC 6455 frames.
        if (header(attempt, "sec-websocket-version") != "13") {
            auto refused = refuse(attempt,
                                  AuthResult::reject("Unsupported WebSocket version: only "
                                                     "RFC 6455 (Sec-WebSocket-Version: 13)",
                                                     426),
                                  reject_reason::handshake);
            refused.headers.emplace_back("Sec-WebSocket-Version", "13");  // RFC 6455 4.4
            return refused;
        }
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
        AuthResult verdict = AuthResult::reject("Server shutting down", 503);
        if (auto const authenticator = current_authenticator()) {
            try {
                hooks_.call([&] { verdict = (*authenticator)(request); });
            } catch (std::exception const& e) {
                log_.write(LogLevel::error, "authenticator_failed", e.what());
                verdict = AuthResult::reject("Authentication failed", 500);
            } catch (...) {
                log_.write(LogLevel::error, "authenticator_failed", "unknown exception");
                verdict = AuthResult::reject("Authentication failed", 500);
            }
        } else {
            verdict = authenticate_by_default(request, options_,
                                              token_key_ ? &*token_key_ : nullptr);
        }
        if (!verdict.accepted) return refuse(attempt, verdict, reject_reason::auth);
        if (!is_valid_utf8(verdict.user_id)) {
            return refuse(attempt, AuthResult::reject("The user id must be valid UTF-8", 400),
                          reject_reason::handshake);
        }
        return admission{true, std::move(verdict.user_id), 0, {}, {}, verdict.expires_at};
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
        admission refused{false, {}, verdict.http_status, verdict.reason, {}, std::nullopt};
        if (verdict.http_status == 401) {
            refused.headers.emplace_back("WWW-Authenticate", "Bearer");  // RFC 6750
        }
        return refused;
    }

    std::shared_ptr<Authenticator const> current_authenticator() const {
        std::lock_guard lock(authenticator_mutex_);
        return authenticator_;
    }

    Options const& options_;
    host_hooks& hooks_;
    manager_counters& counters_;
    logger const& log_;
    mutable std::mutex authenticator_mutex_;
    std::shared_ptr<Authenticator const> authenticator_;  ///< guarded by authenticator_mutex_
    // Loaded once, when the gate is built: no handshake parses the PEM.
    std::optional<jwt_key> const token_key_;
};

}  // namespace wsmanager::detail
