// SPDX-License-Identifier: BSL-1.0
// detail/handshake_gate.hpp: admission before the upgrade (development mode, JWT, the Origin
// allow-list, the query, an Authenticator), its refusals and their counters.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <catch2/catch.hpp>

#include <wsmanager/detail/handshake_gate.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/handshake.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/options.hpp>

namespace gate_test {

using wsmanager::AuthResult;
using wsmanager::HandshakeRequest;
using wsmanager::detail::admission;
using wsmanager::detail::handshake_attempt;
using wsmanager::detail::handshake_gate;
using wsmanager::detail::reject_reason;

constexpr char const* secret = "gate-secret";

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string token_for(std::string const& sub, std::int64_t expires_in = 3600,
                      std::string const& key = secret) {
    return wsmanager::detail::sign_hs256_jwt(
        R"({"sub":")" + sub + R"(","exp":)" + std::to_string(unix_now() + expires_in) + "}", key);
}

struct rig {
    wsmanager::Options options;
    wsmanager::detail::manager_counters counters;
    wsmanager::detail::logger log{wsmanager::LogSink{}, wsmanager::LogLevel::trace};
    wsmanager::detail::host_hooks hooks;
    handshake_gate gate{options, hooks, counters, log};

    /// An RFC 6455 attempt (Sec-WebSocket-Version: 13 unless `headers` says otherwise).
    admission admit(std::string resource, std::map<std::string, std::string> headers = {}) {
        headers.emplace("sec-websocket-version", "13");
        return gate.admit(
            handshake_attempt{std::move(resource), std::move(headers), "10.0.0.1:5555"});
    }
    std::uint64_t rejected(reject_reason reason) const {
        return counters.rejected_by_reason[static_cast<std::size_t>(reason)].load();
    }
};

/// The value of a refusal's extra header, if it has it.
std::optional<std::string> header_of(admission const& answer, std::string const& name) {
    for (auto const& [key, value] : answer.headers) {
        if (key == name) return value;
    }
    return std::nullopt;
}

void check_refused(admission const& answer, int status) {
    CHECK_FALSE(answer.admitted);
    CHECK(answer.http_status == status);
    CHECK(answer.user_id.empty());
    if (status == 401) {
        CHECK(header_of(answer, "WWW-Authenticate") == std::optional<std::string>("Bearer"));
    } else {
        CHECK_FALSE(header_of(answer, "WWW-Authenticate").has_value());
    }
}

TEST_CASE("handshake_gate: development mode trusts ?user_id=", "[handshake_gate]") {
    rig r;
    auto answer = r.admit("/ws?user_id=alice");
    CHECK(answer.admitted);
    CHECK(answer.user_id == "alice");
    CHECK(answer.headers.empty());

    CHECK(r.admit("/ws?x=1&user_id=b%C3%A9a+t").user_id ==
          "b\xc3\xa9"
          "a t");
    auto anonymous = r.admit("/ws");
    CHECK(anonymous.admitted);
    CHECK(anonymous.user_id.empty());
    CHECK(r.admit("/ws?").admitted);
    CHECK(r.counters.connections_rejected.load() == 0);
}

TEST_CASE("handshake_gate: the admission carries when the identity expires",
          "[handshake_gate][jwt]") {
    using std::chrono::system_clock;
    rig r;
    r.options.auth_secret = secret;
    auto const exp = unix_now() + 600;
    auto const token = wsmanager::detail::sign_hs256_jwt(
        R"({"sub":"alice","exp":)" + std::to_string(exp) + "}", secret);
    auto const answer = r.admit("/ws?token=" + token);
    REQUIRE(answer.admitted);
    // exp plus the leeway the handshake allows: the moment the same token is refused.
    CHECK(answer.expires_at ==
          system_clock::time_point(
              std::chrono::seconds(exp + wsmanager::detail::jwt_clock_skew_seconds)));

    // No exp: it never expires.
    auto const forever = r.admit(
        "/ws?token=" + wsmanager::detail::sign_hs256_jwt(R"({"sub":"bob"})", secret));
    REQUIRE(forever.admitted);
    CHECK_FALSE(forever.expires_at.has_value());
    // An exp past what the clock holds: never either (not an overflow).
    auto const far = r.admit("/ws?token=" + wsmanager::detail::sign_hs256_jwt(
                                                R"({"sub":"bob","exp":1e300})", secret));
    REQUIRE(far.admitted);
    CHECK_FALSE(far.expires_at.has_value());

    // A custom Authenticator may say so too; development mode never does.
    auto const until = system_clock::now() + std::chrono::minutes(5);
    r.gate.set_authenticator([until](HandshakeRequest const&) {
        return AuthResult::accept("service", until);
    });
    auto const custom = r.admit("/ws");
    REQUIRE(custom.admitted);
    CHECK(custom.expires_at == until);
    r.gate.set_authenticator({});
    r.options.auth_secret.clear();
    CHECK_FALSE(r.admit("/ws?user_id=carol").expires_at.has_value());
}

TEST_CASE("handshake_gate: JWT mode", "[handshake_gate][jwt]") {
    rig r;
    r.options.auth_secret = secret;

    SECTION("a token in the query") {
        auto answer = r.admit("/ws?token=" + token_for("alice"));
        CHECK(answer.admitted);
        CHECK(answer.user_id == "alice");
    }
    SECTION("a token in Authorization: Bearer, the scheme in any case") {
        for (auto const* scheme : {"Bearer ", "bearer ", "BEARER ", "bEaReR "}) {
            INFO(scheme);
            auto answer = r.admit("/ws", {{"authorization", scheme + token_for("bob")}});
            CHECK(answer.admitted);
            CHECK(answer.user_id == "bob");
        }
        CHECK(r.counters.connections_rejected.load() == 0);
    }
    SECTION("?user_id= is ignored: no token, 401") {
        auto answer = r.admit("/ws?user_id=mallory");
        check_refused(answer, 401);
        CHECK(answer.reason == "Missing token");
        CHECK(r.rejected(reject_reason::auth) == 1);
    }
    SECTION("refusals are 401 with WWW-Authenticate: Bearer") {
        check_refused(r.admit("/ws"), 401);
        check_refused(r.admit("/ws", {{"authorization", "Bearer   "}}), 401);
        check_refused(r.admit("/ws", {{"authorization", "Basic " + token_for("alice")}}), 401);
        check_refused(r.admit("/ws?token=" + token_for("alice", 3600, "wrong-key")), 401);
        check_refused(r.admit("/ws?token=" + token_for("alice", -3600)), 401);  // expired
        check_refused(r.admit("/ws?token=not.a.jwt"), 401);
        CHECK(r.rejected(reject_reason::auth) == 6);
        CHECK(r.counters.connections_rejected.load() == 6);
        CHECK(r.rejected(reject_reason::handshake) == 0);
        CHECK(r.rejected(reject_reason::origin) == 0);
    }
}

TEST_CASE("handshake_gate: the Origin allow-list", "[handshake_gate]") {
    rig r;
    r.options.allowed_origins = {"https://app.example", "https://admin.example"};
    auto allowed = r.admit("/ws?user_id=alice", {{"origin", "https://admin.example"}});
    CHECK(allowed.admitted);
    CHECK(allowed.user_id == "alice");

    auto other = r.admit("/ws?user_id=alice", {{"origin", "https://evil.example"}});
    check_refused(other, 403);
    CHECK(other.reason == "Origin not allowed");
    check_refused(r.admit("/ws?user_id=alice"), 403);  // no Origin at all
    CHECK(r.rejected(reject_reason::origin) == 2);
    CHECK(r.rejected(reject_reason::auth) == 0);
    CHECK(r.counters.connections_rejected.load() == 2);
}

TEST_CASE("handshake_gate: a malformed query is 400", "[handshake_gate]") {
    rig r;
    auto answer = r.admit("/ws?user_id=%zz");
    check_refused(answer, 400);
    CHECK(answer.reason == "Malformed query string");
    check_refused(r.admit("/ws?user_id=abc%2"), 400);
    CHECK(r.rejected(reject_reason::handshake) == 2);
    CHECK(r.rejected(reject_reason::auth) == 0);
}

TEST_CASE("handshake_gate: a user id that is not UTF-8 is 400", "[handshake_gate]") {
    rig r;
    SECTION("from the query") { check_refused(r.admit("/ws?user_id=%FF"), 400); }
    SECTION("from an authenticator") {
        r.gate.set_authenticator(
            [](HandshakeRequest const&) { return AuthResult::accept("caf\xc3"); });
        check_refused(r.admit("/ws"), 400);
    }
    CHECK(r.rejected(reject_reason::handshake) == 1);
    CHECK(r.rejected(reject_reason::auth) == 0);
}

TEST_CASE("handshake_gate: a host Authenticator", "[handshake_gate]") {
    rig r;
    CHECK_FALSE(r.gate.has_authenticator());
    std::optional<HandshakeRequest> seen;
    r.gate.set_authenticator([&](HandshakeRequest const& request) {
        seen = request;
        if (request.header("X-Api-Key") == "k1") return AuthResult::accept("service-1");
        if (request.query_param("mode") == "forbidden") return AuthResult::reject("No", 403);
        if (request.query_param("mode") == "throw") throw std::runtime_error("backend down");
        return AuthResult::reject("Who are you?");
    });
    CHECK(r.gate.has_authenticator());

    auto accepted = r.admit("/api/ws?mode=a%20b", {{"x-api-key", "k1"}});
    CHECK(accepted.admitted);
    CHECK(accepted.user_id == "service-1");
    REQUIRE(seen.has_value());
    CHECK(seen->path == "/api/ws");
    CHECK(seen->query_param("mode") == "a b");
    CHECK(seen->remote_endpoint == "10.0.0.1:5555");
    CHECK(seen->headers.at("x-api-key") == "k1");
    CHECK(seen->headers.at("sec-websocket-version") == "13");

    auto unknown = r.admit("/ws");
    check_refused(unknown, 401);
    CHECK(unknown.reason == "Who are you?");
    check_refused(r.admit("/ws?mode=forbidden"), 403);
    CHECK(r.rejected(reject_reason::auth) == 2);

    auto failed = r.admit("/ws?mode=throw");
    check_refused(failed, 500);
    CHECK(failed.reason == "Authentication failed");
    CHECK(r.rejected(reject_reason::auth) == 3);
    CHECK(r.counters.connections_rejected.load() == 3);
}

TEST_CASE("handshake_gate: the origin is checked before the identity", "[handshake_gate]") {
    rig r;
    r.options.allowed_origins = {"https://app.example"};
    int asked = 0;
    r.gate.set_authenticator([&](HandshakeRequest const&) {
        ++asked;
        return AuthResult::accept("alice");
    });
    check_refused(r.admit("/ws", {{"origin", "https://other.example"}}), 403);
    CHECK(asked == 0);
    CHECK(r.admit("/ws", {{"origin", "https://app.example"}}).admitted);
    CHECK(asked == 1);
}

TEST_CASE("handshake_gate: only RFC 6455 (Sec-WebSocket-Version: 13)", "[handshake_gate]") {
    rig r;
    for (auto const* version : {"8", "7", ""}) {
        INFO("version '" << version << "'");
        auto answer = r.admit("/ws?user_id=alice", {{"sec-websocket-version", version}});
        check_refused(answer, 426);
        CHECK(header_of(answer, "Sec-WebSocket-Version") == std::optional<std::string>("13"));
    }
    // hixie-76: no version header at all.
    auto hixie = r.gate.admit(handshake_attempt{"/ws?user_id=alice", {}, "10.0.0.1:5555"});
    check_refused(hixie, 426);
    CHECK(r.rejected(reject_reason::handshake) == 4);
    CHECK(r.rejected(reject_reason::auth) == 0);
    CHECK(r.admit("/ws?user_id=alice").admitted);
}

TEST_CASE("handshake_gate: once the host hooks are closed, the authenticator is not called",
          "[handshake_gate]") {
    rig r;
    int asked = 0;
    r.gate.set_authenticator([&](HandshakeRequest const&) {
        ++asked;
        return AuthResult::accept("alice");
    });
    r.hooks.close_and_wait();
    auto answer = r.admit("/ws");
    CHECK(asked == 0);
    check_refused(answer, 503);
    CHECK(r.rejected(reject_reason::auth) == 1);

    // Without an authenticator the default check needs no host code.
    r.gate.set_authenticator(nullptr);
    CHECK_FALSE(r.gate.has_authenticator());
    CHECK(r.admit("/ws?user_id=bob").admitted);
}

}  // namespace gate_test
