// SPDX-License-Identifier: BSL-1.0
// Fuzz target: admission of an opening handshake (detail/handshake_gate.hpp): the WebSocket
// version, the Origin allow-list, the query string (detail/uri.hpp), the identity
// (default_authenticate: development `?user_id=`, or a JWT from `?token=` or
// `Authorization: Bearer` checked with an HS256 secret and/or an ES256 public key, with or
// without a required issuer and audience; detail/jwt.hpp, detail/jwt_key.hpp) and a host
// Authenticator that wraps it and may throw.
//
// Input (fuzz_support.hpp, handshake_input): a flags byte choosing the gate's options, then
// NUL-separated parts: the resource (path and query), with mint_token a claims and a JOSE
// header JSON text that the harness signs with the gate's secret (so the checks after the
// signature see fuzzed JSON too), then up to 16 `name: value` header lines. The whole input
// is at most websocketpp's limit on a request's header bytes (http::max_header_size), the
// most a client can send before the gate runs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <websocketpp/http/constants.hpp>

#include <wsmanager/detail/handshake_gate.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/uri.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/handshake.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/options.hpp>

#include "fuzz_support.hpp"

namespace detail = wsmanager::detail;
namespace input = wsmanager_fuzz::handshake_input;
using wsmanager_fuzz::require;
using wsmanager_fuzz::touch;

namespace {

std::string_view trim(std::string_view text) {
    auto const first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    auto const last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

/// base64url: what decodes re-encodes to the same text (the decoder takes canonical text
/// only), and every text survives a round trip.
void check_base64url(std::string_view text) {
    auto const encoded = detail::base64url_encode(text);
    require(detail::base64url_decode(encoded) == std::optional<std::string>(std::string(text)),
            "base64url round trip");
    if (auto const decoded = detail::base64url_decode(text)) {
        auto canonical = text;
        if (canonical.size() % 4 == 0) {
            for (int i = 0; i < 2 && !canonical.empty() && canonical.back() == '='; ++i) {
                canonical.remove_suffix(1);
            }
        }
        require(detail::base64url_encode(*decoded) == canonical,
                "base64url_decode accepted a non-canonical text", text);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size) {
    wsmanager_fuzz::splitter in(
        wsmanager_fuzz::as_text(data, size, websocketpp::http::max_header_size));
    auto const flags = in.byte();

    wsmanager::Options options;
    options.log_sink = {};
    if (flags & input::jwt_mode) options.auth_secret = std::string(input::secret);
    if (flags & input::public_key) options.auth_public_key = std::string(input::ec_public_key_pem);
    if ((flags & input::claims_required) &&
        !(options.auth_secret.empty() && options.auth_public_key.empty())) {
        options.auth_issuer = std::string(input::issuer);
        options.auth_audience = std::string(input::audience);
    }
    if (flags & input::origin_list) {
        options.allowed_origins = {std::string(input::allowed_origin_a),
                                   std::string(input::allowed_origin_b)};
    }
    detail::manager_counters counters;
    auto const log = wsmanager_fuzz::quiet_logger(
        (flags & input::log_everything) ? wsmanager::LogLevel::trace : wsmanager::LogLevel::off);
    detail::host_hooks hooks;
    detail::handshake_gate gate(options, hooks, counters, log);
    if (flags & input::authenticator) {
        gate.set_authenticator([&options](wsmanager::HandshakeRequest const& request) {
            if (!request.query_param("fail").empty()) {
                throw std::runtime_error("the host's authenticator failed");
            }
            auto verdict = wsmanager::default_authenticate(request, options);
            if (verdict.accepted && request.header("X-Role") == "banned") {
                return wsmanager::AuthResult::reject("Banned", 403);
            }
            return verdict;
        });
    }

    detail::handshake_attempt attempt;
    attempt.resource = std::string(in.next());
    attempt.remote_endpoint = "198.51.100.7:40000";
    check_base64url(attempt.resource);
    if (flags & input::mint_token) {
        auto const claims = in.next();
        auto const header = in.next();
        auto const token = detail::sign_hs256_jwt(claims, input::secret, header);
        if (flags & input::token_in_header) {
            attempt.headers.emplace("authorization", "Bearer " + token);
        } else {
            attempt.resource +=
                (attempt.resource.find('?') == std::string::npos ? "?token=" : "&token=") + token;
        }
    }
    for (std::size_t i = 0; i < input::max_headers && !in.empty(); ++i) {
        auto const line = in.next();
        auto const colon = line.find(':');
        auto const name = trim(line.substr(0, colon));
        auto const value =
            colon == std::string_view::npos ? std::string_view{} : trim(line.substr(colon + 1));
        // As the transport's lowercase_headers: names in lower case, the first one wins.
        attempt.headers.emplace(detail::to_lower_ascii(std::string(name)), std::string(value));
    }

    auto const verdict = gate.admit(attempt);

    touch(verdict.user_id);
    touch(verdict.reason);
    if (verdict.admitted) {
        require(verdict.http_status == 0 && verdict.reason.empty() && verdict.headers.empty(),
                "an admission carries a refusal");
        require(detail::is_valid_utf8(verdict.user_id), "admitted a user id that is not UTF-8");
        require(counters.connections_rejected.load() == 0, "an admission was counted as refused");
        if (!options.allowed_origins.empty()) {
            auto const origin = attempt.headers.find("origin");
            require(origin != attempt.headers.end() &&
                        std::find(options.allowed_origins.begin(), options.allowed_origins.end(),
                                  origin->second) != options.allowed_origins.end(),
                    "admitted an origin that is not allowed");
        }
        bool const jwt = !options.auth_secret.empty() || !options.auth_public_key.empty();
        if (!jwt && !(flags & input::authenticator)) {
            // Development mode: the user is ?user_id= as given.
            auto const question = attempt.resource.find('?');
            std::string expected;
            if (question != std::string::npos) {
                auto const query =
                    detail::parse_query(std::string_view(attempt.resource).substr(question + 1));
                require(query.has_value(), "admitted a malformed query string");
                if (auto const it = query->find("user_id"); it != query->end()) {
                    expected = it->second;
                }
            }
            require(verdict.user_id == expected, "development mode: not ?user_id=");
        } else if (jwt) {
            require(!verdict.user_id.empty(), "JWT mode admitted an anonymous user");
            // Nothing signs with the key's private half: an admission went through HS256.
            require(!options.auth_secret.empty(), "admitted a token the key cannot have signed");
        }
    } else {
        require(verdict.http_status == 400 || verdict.http_status == 401 ||
                    verdict.http_status == 403 || verdict.http_status == 426 ||
                    verdict.http_status == 500 || verdict.http_status == 503,
                "a refusal with an unexpected status");
        require(!verdict.reason.empty(), "a refusal without a reason");
        require(counters.connections_rejected.load() == 1, "a refusal was not counted once");
        // The headers a refusal needs: RFC 6750 for 401, RFC 6455 4.4 for 426; none else.
        for (auto const& [name, value] : verdict.headers) {
            touch(value);
            require((name == "WWW-Authenticate" && verdict.http_status == 401) ||
                        (name == "Sec-WebSocket-Version" && verdict.http_status == 426),
                    "a refusal header that does not fit the status", name);
        }
        require(verdict.http_status != 401 || verdict.headers.size() == 1,
                "a 401 without WWW-Authenticate");
        require(verdict.http_status != 426 || verdict.headers.size() == 1,
                "a 426 without Sec-WebSocket-Version");
    }
    return 0;
}
