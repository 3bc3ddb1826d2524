// SPDX-License-Identifier: BSL-1.0
// Options: defaults, validate(), from_env() for every variable, malformed values.

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <wsmanager/options.hpp>

using namespace std::chrono_literals;
using wsmanager::Options;

namespace {

/// Every variable from_env() reads.
std::vector<std::string> const all_variables = {
    "WEBSOCKET_HOST",           "WEBSOCKET_PORT",          "WEBSOCKET_MAX_CONNECTIONS",
    "WEBSOCKET_PING_INTERVAL",  "WEBSOCKET_PING_TIMEOUT",  "WEBSOCKET_CALLBACK_TIMEOUT",
    "WEBSOCKET_PROCEED_ON_TIMEOUT", "WEBSOCKET_CLOSE_TIMEOUT", "WEBSOCKET_MAX_MESSAGE_SIZE",
    "WEBSOCKET_MAX_SEND_BUFFER", "WEBSOCKET_THREADS",      "WEBSOCKET_AUTH_SECRET",
    "WEBSOCKET_ALLOWED_ORIGINS", "WEBSOCKET_TLS_CERT",     "WEBSOCKET_TLS_KEY",
    "WEBSOCKET_REDIS_URL",      "WEBSOCKET_LOG_LEVEL",     "WEBSOCKET_RESOLVE_ON_DISCONNECT",
    "WEBSOCKET_DISCONNECT_GRACE", "WEBSOCKET_MAX_FRAMES_PER_SECOND", "WEBSOCKET_HTTP_ENDPOINTS",
    "WEBSOCKET_METRICS_ADDRESS", "WEBSOCKET_LOG_FORMAT", "WEBSOCKET_AUTH_PUBLIC_KEY",
    "WEBSOCKET_AUTH_ISSUER",    "WEBSOCKET_AUTH_AUDIENCE", "WEBSOCKET_MAX_TOPICS",
    "WEBSOCKET_MAX_CONNECTIONS_PER_USER", "WEBSOCKET_MAX_PENDING_CONFIRMATIONS_PER_USER",
    "WEBSOCKET_MAX_PENDING_CONFIRMATIONS", "WEBSOCKET_MAX_HANDSHAKES_IN_FLIGHT",
    "WEBSOCKET_MAX_HTTP_BODY_SIZE", "WEBSOCKET_NODE_ID", "WEBSOCKET_CLUSTER_PREFIX",
    "WEBSOCKET_CLUSTER_DECISION_GRACE", "WEBSOCKET_METRICS_PUBLIC", "WEBSOCKET_SERVER_NAME",
    "WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY", "WEBSOCKET_COMPRESSION", "WEBSOCKET_COMPRESSION_MIN_SIZE",
};

/// A P-256 public key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 |
/// openssl pkey -pubout), whose private half was thrown away.
constexpr char const* options_test_public_key =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbXOGpRhsYzFlp4eL4KEErBgWN86x\n"
    "/gpdg0SuIbm3z/f0XEel2SRKQ0fVPA5v2RqHYg0Tw8A2GtdDI0nPvh3XqA==\n"
    "-----END PUBLIC KEY-----\n";

/// Clears every WEBSOCKET_* variable for the test's duration and restores them after.
class CleanEnvironment {
public:
    CleanEnvironment() {
        for (auto const& name : all_variables) {
            if (char const* value = std::getenv(name.c_str())) saved_[name] = value;
            ::unsetenv(name.c_str());
        }
    }
    ~CleanEnvironment() {
        for (auto const& name : all_variables) ::unsetenv(name.c_str());
        for (auto const& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
    }
    CleanEnvironment(CleanEnvironment const&) = delete;
    CleanEnvironment& operator=(CleanEnvironment const&) = delete;

    void set(std::string const& name, std::string const& value) {
        ::setenv(name.c_str(), value.c_str(), 1);
    }
    void unset(std::string const& name) { ::unsetenv(name.c_str()); }

private:
    std::map<std::string, std::string> saved_;
};

/// The what() of the std::invalid_argument from_env() throws, or nullopt if it does not.
std::optional<std::string> from_env_error() {
    try {
        (void)Options::from_env();
    } catch (std::invalid_argument const& e) {
        return std::string(e.what());
    }
    return std::nullopt;
}

/// The what() of the std::invalid_argument validate() throws, or nullopt.
std::optional<std::string> validate_error(Options const& options) {
    try {
        options.validate();
    } catch (std::invalid_argument const& e) {
        return std::string(e.what());
    }
    return std::nullopt;
}

}  // namespace

TEST_CASE("Options defaults are the original component's", "[options]") {
    Options const options;
    CHECK(options.host == "0.0.0.0");
    CHECK(options.port == 8765);
    CHECK(options.max_connections == 1000);
    CHECK(options.ping_interval == 30s);
    CHECK(options.ping_timeout == 10s);
    CHECK(options.callback_timeout == 300s);
    CHECK(options.proceed_on_timeout);
    CHECK(options.auth_secret.empty());
    CHECK(options.auth_public_key.empty());
    CHECK(options.auth_issuer.empty());
    CHECK(options.auth_audience.empty());
    CHECK(options.close_on_token_expiry);
    CHECK(options.allowed_origins.empty());
    CHECK(options.threads == 1);
    CHECK_FALSE(options.compression);
    CHECK(options.compression_min_size == 256);
    CHECK_NOTHROW(options.validate());
}

TEST_CASE("Options accept designated initializers and any chrono duration", "[options]") {
    Options const options{.host = "127.0.0.1", .port = 9000, .ping_interval = 500ms,
                          .ping_timeout = 2s, .callback_timeout = std::chrono::minutes(1)};
    CHECK(options.host == "127.0.0.1");
    CHECK(options.port == 9000);
    CHECK(options.ping_interval == 500ms);
    CHECK(options.ping_timeout == 2000ms);
    CHECK(options.callback_timeout == 60s);
    CHECK_NOTHROW(options.validate());
}

TEST_CASE("Options::validate names the setting that makes no sense", "[options]") {
    struct Case {
        char const* setting;
        void (*spoil)(Options&);
    };
    Case const cases[] = {
        {"host", [](Options& o) { o.host.clear(); }},
        {"max_connections", [](Options& o) { o.max_connections = 0; }},
        {"ping_interval", [](Options& o) { o.ping_interval = -1ms; }},
        {"ping_timeout", [](Options& o) { o.ping_timeout = 0ms; }},
        {"callback_timeout", [](Options& o) { o.callback_timeout = 0ms; }},
        {"close_timeout", [](Options& o) { o.close_timeout = 0ms; }},
        {"handshake_timeout", [](Options& o) { o.handshake_timeout = -5ms; }},
        {"max_message_size", [](Options& o) { o.max_message_size = 63; }},
        {"max_send_buffer", [](Options& o) { o.max_send_buffer = 1023; }},
        {"threads", [](Options& o) { o.threads = 0; }},
        {"tls_cert", [](Options& o) { o.tls_cert = "cert.pem"; }},
        {"tls_key", [](Options& o) { o.tls_key = "key.pem"; }},
        {"disconnect_grace", [](Options& o) { o.disconnect_grace = -1ms; }},
        {"metrics_address", [](Options& o) { o.metrics_address = "no-port"; }},
        {"auth_public_key", [](Options& o) { o.auth_public_key = "/nonexistent/key.pem"; }},
        {"auth_public_key",
         [](Options& o) {
             o.auth_public_key = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
         }},
        {"auth_issuer", [](Options& o) { o.auth_issuer = "https://idp.example"; }},
        {"auth_audience", [](Options& o) { o.auth_audience = "wsmanager"; }},
    };
    for (auto const& c : cases) {
        INFO("setting: " << c.setting);
        Options options;
        c.spoil(options);
        auto const error = validate_error(options);
        REQUIRE(error.has_value());
        CHECK_THAT(*error, Catch::Contains(c.setting));
    }
}

TEST_CASE("Options::validate accepts the edge values", "[options]") {
    Options options;
    options.ping_interval = 0ms;  // keepalive off: ping_timeout is then irrelevant
    options.ping_timeout = 0ms;
    options.max_message_size = 64;
    options.max_send_buffer = 1024;
    options.port = 0;
    options.tls_cert = "cert.pem";
    options.tls_key = "key.pem";
    options.disconnect_grace = 0ms;
    options.max_frames_per_second = 0;  // no limit
    options.metrics_address = "[::1]:9100";
    CHECK_NOTHROW(options.validate());
}

TEST_CASE("Options::validate loads auth_public_key; iss and aud need a way to verify",
          "[options]") {
    Options options;
    options.auth_public_key = options_test_public_key;
    CHECK_NOTHROW(options.validate());
    options.auth_issuer = "https://idp.example";
    options.auth_audience = "wsmanager";
    CHECK_NOTHROW(options.validate());
    options.auth_public_key.clear();
    options.auth_secret = "s3cret";
    CHECK_NOTHROW(options.validate());

    // The refusal names the setting, never the key it was given.
    Options bad;
    bad.auth_public_key = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
                          "-----END PUBLIC KEY-----\n";
    auto const error = validate_error(bad);
    REQUIRE(error.has_value());
    CHECK_THAT(*error, Catch::StartsWith("wsmanager::Options: auth_public_key "));
    CHECK_THAT(*error, !Catch::Contains("MFkwEwYHKoZIzj0CAQYIKoZIzj0D"));
}

TEST_CASE("Options::from_env with no variable set gives the defaults", "[options][env]") {
    CleanEnvironment env;
    auto const options = Options::from_env();
    Options const defaults;
    CHECK(options.host == defaults.host);
    CHECK(options.port == defaults.port);
    CHECK(options.max_connections == defaults.max_connections);
    CHECK(options.ping_interval == defaults.ping_interval);
    CHECK(options.ping_timeout == defaults.ping_timeout);
    CHECK(options.callback_timeout == defaults.callback_timeout);
    CHECK(options.proceed_on_timeout == defaults.proceed_on_timeout);
    CHECK(options.close_timeout == defaults.close_timeout);
    CHECK(options.max_message_size == defaults.max_message_size);
    CHECK(options.max_send_buffer == defaults.max_send_buffer);
    CHECK(options.threads == defaults.threads);
    CHECK(options.log_level == defaults.log_level);
    CHECK(options.resolve_on_disconnect == defaults.resolve_on_disconnect);
    CHECK(options.disconnect_grace == defaults.disconnect_grace);
    CHECK(options.max_frames_per_second == defaults.max_frames_per_second);
    CHECK(options.http_endpoints == defaults.http_endpoints);
    CHECK(options.metrics_address == defaults.metrics_address);
    CHECK(static_cast<bool>(options.log_sink));
}

TEST_CASE("Options::from_env reads every variable", "[options][env]") {
    CleanEnvironment env;
    env.set("WEBSOCKET_HOST", "127.0.0.1");
    env.set("WEBSOCKET_PORT", "9001");
    env.set("WEBSOCKET_MAX_CONNECTIONS", "5");
    env.set("WEBSOCKET_PING_INTERVAL", "15");
    env.set("WEBSOCKET_PING_TIMEOUT", "2.5");
    env.set("WEBSOCKET_CALLBACK_TIMEOUT", "60");
    env.set("WEBSOCKET_PROCEED_ON_TIMEOUT", "false");
    env.set("WEBSOCKET_CLOSE_TIMEOUT", "250ms");
    env.set("WEBSOCKET_MAX_MESSAGE_SIZE", "2048");
    env.set("WEBSOCKET_MAX_SEND_BUFFER", "65536");
    env.set("WEBSOCKET_THREADS", "4");
    env.set("WEBSOCKET_AUTH_SECRET", "s3cret");
    env.set("WEBSOCKET_ALLOWED_ORIGINS", " https://a.example ,https://b.example,, ");
    env.set("WEBSOCKET_TLS_CERT", "/etc/cert.pem");
    env.set("WEBSOCKET_TLS_KEY", "/etc/key.pem");
    env.set("WEBSOCKET_REDIS_URL", "redis://localhost:6379");
    env.set("WEBSOCKET_LOG_LEVEL", "debug");
    env.set("WEBSOCKET_RESOLVE_ON_DISCONNECT", "yes");
    env.set("WEBSOCKET_DISCONNECT_GRACE", "2s");
    env.set("WEBSOCKET_MAX_FRAMES_PER_SECOND", "50");
    env.set("WEBSOCKET_HTTP_ENDPOINTS", "off");
    env.set("WEBSOCKET_METRICS_ADDRESS", "127.0.0.1:9100");
    env.set("WEBSOCKET_LOG_FORMAT", "json");
    env.set("WEBSOCKET_AUTH_PUBLIC_KEY", options_test_public_key);
    env.set("WEBSOCKET_AUTH_ISSUER", "https://idp.example/realms/app");
    env.set("WEBSOCKET_AUTH_AUDIENCE", "wsmanager");

    auto const options = Options::from_env();
    CHECK(options.host == "127.0.0.1");
    CHECK(options.port == 9001);
    CHECK(options.max_connections == 5);
    CHECK(options.ping_interval == 15s);
    CHECK(options.ping_timeout == 2500ms);
    CHECK(options.callback_timeout == 60s);
    CHECK_FALSE(options.proceed_on_timeout);
    CHECK(options.close_timeout == 250ms);
    CHECK(options.max_message_size == 2048);
    CHECK(options.max_send_buffer == 65536);
    CHECK(options.threads == 4);
    CHECK(options.auth_secret == "s3cret");
    CHECK(options.allowed_origins == std::vector<std::string>{"https://a.example", "https://b.example"});
    CHECK(options.tls_cert == "/etc/cert.pem");
    CHECK(options.tls_key == "/etc/key.pem");
    CHECK(options.redis_url == "redis://localhost:6379");
    CHECK(options.log_level == wsmanager::LogLevel::debug);
    CHECK(options.resolve_on_disconnect);
    CHECK(options.disconnect_grace == 2s);
    CHECK(options.max_frames_per_second == 50);
    CHECK_FALSE(options.http_endpoints);
    CHECK(options.metrics_address == "127.0.0.1:9100");
    CHECK(options.auth_public_key == options_test_public_key);
    CHECK(options.auth_issuer == "https://idp.example/realms/app");
    CHECK(options.auth_audience == "wsmanager");
    CHECK(static_cast<bool>(options.log_sink));
}

TEST_CASE("Options::from_env reads the limits, the cluster's settings and the HTTP ones",
          "[options][env]") {
    CleanEnvironment env;
    env.set("WEBSOCKET_MAX_TOPICS", "50");
    env.set("WEBSOCKET_MAX_CONNECTIONS_PER_USER", "3");
    env.set("WEBSOCKET_MAX_PENDING_CONFIRMATIONS_PER_USER", "7");
    env.set("WEBSOCKET_MAX_PENDING_CONFIRMATIONS", "70");
    env.set("WEBSOCKET_MAX_HANDSHAKES_IN_FLIGHT", "20");
    env.set("WEBSOCKET_MAX_HTTP_BODY_SIZE", "4096");
    env.set("WEBSOCKET_REDIS_URL", "redis://127.0.0.1:6379/2");
    env.set("WEBSOCKET_NODE_ID", "node-1");
    env.set("WEBSOCKET_CLUSTER_PREFIX", "staging");
    env.set("WEBSOCKET_CLUSTER_DECISION_GRACE", "45s");
    env.set("WEBSOCKET_METRICS_PUBLIC", "true");
    env.set("WEBSOCKET_SERVER_NAME", "");

    auto const options = Options::from_env();
    CHECK(options.max_topics == 50);
    CHECK(options.max_connections_per_user == 3);
    CHECK(options.max_pending_confirmations_per_user == 7);
    CHECK(options.max_pending_confirmations == 70);
    CHECK(options.max_handshakes_in_flight == 20);
    CHECK(options.max_http_body_size == 4096);
    CHECK(options.node_id == "node-1");
    CHECK(options.cluster_prefix == "staging");
    CHECK(options.cluster_decision_grace == 45s);
    CHECK(options.metrics_public);
    CHECK(options.server_name.empty());

    Options const defaults;
    CHECK(defaults.cluster_decision_grace == 30s);
    CHECK(defaults.cluster_prefix == "wsm");
    CHECK_FALSE(defaults.metrics_public);
}

TEST_CASE("Options::from_env names WEBSOCKET_AUTH_PUBLIC_KEY, without echoing a PEM",
          "[options][env]") {
    CleanEnvironment env;
    std::string const broken = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
                               "-----END PUBLIC KEY-----\n";
    for (auto const& value : {broken, std::string("/nonexistent/wsmanager/key.pem")}) {
        INFO("WEBSOCKET_AUTH_PUBLIC_KEY=" << value);
        env.set("WEBSOCKET_AUTH_PUBLIC_KEY", value);
        auto const error = from_env_error();
        REQUIRE(error.has_value());
        CHECK_THAT(*error, Catch::StartsWith("WEBSOCKET_AUTH_PUBLIC_KEY: auth_public_key "));
        CHECK_THAT(*error, !Catch::Contains("MFkwEwYHKoZIzj0CAQYIKoZIzj0D"));
    }
    env.set("WEBSOCKET_AUTH_PUBLIC_KEY", "");  // empty: no key
    CHECK(Options::from_env().auth_public_key.empty());
}

TEST_CASE("Options::from_env duration syntax", "[options][env]") {
    CleanEnvironment env;
    std::pair<char const*, std::chrono::milliseconds> const cases[] = {
        {"30", 30s},     {"0.5", 500ms},  {"500ms", 500ms},          {"30s", 30s},
        {"5m", std::chrono::minutes(5)},  {"1.5m", 90s},             {"0", 0ms},
        {"0ms", 0ms},    {"2.5s", 2500ms}, {"1e1", 10s},
    };
    for (auto const& [text, expected] : cases) {
        INFO("WEBSOCKET_PING_INTERVAL=" << text);
        env.set("WEBSOCKET_PING_INTERVAL", text);
        CHECK(Options::from_env().ping_interval == expected);
    }
}

TEST_CASE("Options::from_env boolean and log level spellings", "[options][env]") {
    CleanEnvironment env;
    for (auto const* yes : {"1", "true", "yes", "on"}) {
        INFO("WEBSOCKET_PROCEED_ON_TIMEOUT=" << yes);
        env.set("WEBSOCKET_PROCEED_ON_TIMEOUT", yes);
        CHECK(Options::from_env().proceed_on_timeout);
    }
    for (auto const* no : {"0", "false", "no", "off"}) {
        INFO("WEBSOCKET_PROCEED_ON_TIMEOUT=" << no);
        env.set("WEBSOCKET_PROCEED_ON_TIMEOUT", no);
        CHECK_FALSE(Options::from_env().proceed_on_timeout);
    }
    env.unset("WEBSOCKET_PROCEED_ON_TIMEOUT");
    std::pair<char const*, wsmanager::LogLevel> const levels[] = {
        {"trace", wsmanager::LogLevel::trace},  {"debug", wsmanager::LogLevel::debug},
        {"info", wsmanager::LogLevel::info},    {"warning", wsmanager::LogLevel::warning},
        {"warn", wsmanager::LogLevel::warning}, {"error", wsmanager::LogLevel::error},
        {"off", wsmanager::LogLevel::off},
    };
    for (auto const& [text, level] : levels) {
        INFO("WEBSOCKET_LOG_LEVEL=" << text);
        env.set("WEBSOCKET_LOG_LEVEL", text);
        CHECK(Options::from_env().log_level == level);
    }
}

TEST_CASE("Options::from_env accepts the boundary values", "[options][env]") {
    CleanEnvironment env;
    env.set("WEBSOCKET_PORT", "0");
    CHECK(Options::from_env().port == 0);
    env.set("WEBSOCKET_PORT", "65535");
    CHECK(Options::from_env().port == 65535);
    env.set("WEBSOCKET_MAX_CONNECTIONS", "1");
    CHECK(Options::from_env().max_connections == 1);
    env.set("WEBSOCKET_AUTH_SECRET", "");
    CHECK(Options::from_env().auth_secret.empty());
    env.set("WEBSOCKET_REDIS_URL", "");
    CHECK(Options::from_env().redis_url.empty());
    env.set("WEBSOCKET_PING_INTERVAL", "0");  // keepalive off
    env.set("WEBSOCKET_PING_TIMEOUT", "0");
    CHECK(Options::from_env().ping_interval == 0ms);
}

TEST_CASE("Options::from_env rejects malformed values, naming the variable", "[options][env]") {
    std::vector<std::pair<char const*, char const*>> const cases = {
        {"WEBSOCKET_HOST", ""},
        {"WEBSOCKET_PORT", ""},
        {"WEBSOCKET_PORT", "abc"},
        {"WEBSOCKET_PORT", "-1"},
        {"WEBSOCKET_PORT", "+80"},
        {"WEBSOCKET_PORT", "65536"},
        {"WEBSOCKET_PORT", "80x"},
        {"WEBSOCKET_PORT", " 80"},
        {"WEBSOCKET_PORT", "8.5"},
        {"WEBSOCKET_PORT", "99999999999999999999999"},
        {"WEBSOCKET_MAX_CONNECTIONS", "0"},
        {"WEBSOCKET_MAX_CONNECTIONS", "ten"},
        {"WEBSOCKET_MAX_CONNECTIONS", "-5"},
        {"WEBSOCKET_PING_INTERVAL", "abc"},
        {"WEBSOCKET_PING_INTERVAL", ""},
        {"WEBSOCKET_PING_INTERVAL", "-1"},
        {"WEBSOCKET_PING_INTERVAL", "5h"},
        {"WEBSOCKET_PING_INTERVAL", "ms"},
        {"WEBSOCKET_PING_INTERVAL", "5 s"},
        {"WEBSOCKET_PING_INTERVAL", "nan"},
        {"WEBSOCKET_PING_INTERVAL", "inf"},
        {"WEBSOCKET_PING_INTERVAL", "1e400"},
        {"WEBSOCKET_PING_TIMEOUT", "soon"},
        {"WEBSOCKET_CALLBACK_TIMEOUT", "5x"},
        {"WEBSOCKET_CALLBACK_TIMEOUT", "-300"},
        {"WEBSOCKET_PROCEED_ON_TIMEOUT", "maybe"},
        {"WEBSOCKET_PROCEED_ON_TIMEOUT", "2"},
        {"WEBSOCKET_PROCEED_ON_TIMEOUT", ""},
        {"WEBSOCKET_CLOSE_TIMEOUT", "x"},
        {"WEBSOCKET_MAX_MESSAGE_SIZE", "big"},
        {"WEBSOCKET_MAX_MESSAGE_SIZE", "-1"},
        {"WEBSOCKET_MAX_MESSAGE_SIZE", "2000000000"},
        {"WEBSOCKET_MAX_SEND_BUFFER", "1MB"},
        {"WEBSOCKET_THREADS", "0"},
        {"WEBSOCKET_THREADS", "many"},
        {"WEBSOCKET_THREADS", "1000"},
        {"WEBSOCKET_REDIS_URL", "http://localhost:6379"},
        {"WEBSOCKET_LOG_LEVEL", "verbose"},
        {"WEBSOCKET_LOG_LEVEL", ""},
        {"WEBSOCKET_RESOLVE_ON_DISCONNECT", "sometimes"},
        {"WEBSOCKET_DISCONNECT_GRACE", "-1"},
        {"WEBSOCKET_DISCONNECT_GRACE", "later"},
        {"WEBSOCKET_MAX_FRAMES_PER_SECOND", "fast"},
        {"WEBSOCKET_MAX_FRAMES_PER_SECOND", "2000000"},
        {"WEBSOCKET_HTTP_ENDPOINTS", "maybe"},
        {"WEBSOCKET_METRICS_ADDRESS", "9100"},
        {"WEBSOCKET_METRICS_ADDRESS", "localhost:"},
        {"WEBSOCKET_METRICS_ADDRESS", ":9100"},
        {"WEBSOCKET_METRICS_ADDRESS", "localhost:99999"},
        {"WEBSOCKET_METRICS_ADDRESS", "localhost:http"},
        {"WEBSOCKET_MAX_TOPICS", "many"},
        {"WEBSOCKET_MAX_CONNECTIONS_PER_USER", "-1"},
        {"WEBSOCKET_MAX_PENDING_CONFIRMATIONS", "1k"},
        {"WEBSOCKET_MAX_HTTP_BODY_SIZE", "64KiB"},
        {"WEBSOCKET_CLUSTER_DECISION_GRACE", "-1"},
        {"WEBSOCKET_CLUSTER_DECISION_GRACE", "never"},
        {"WEBSOCKET_METRICS_PUBLIC", "perhaps"},
        {"WEBSOCKET_NODE_ID", "node 1"},
        {"WEBSOCKET_LOG_FORMAT", "xml"},
        {"WEBSOCKET_LOG_FORMAT", ""},
    };
    for (auto const& [name, value] : cases) {
        INFO(name << "='" << value << "'");
        CleanEnvironment env;
        env.set(name, value);
        auto const error = from_env_error();
        REQUIRE(error.has_value());
        CHECK_THAT(*error, Catch::Contains(name));
    }
}

TEST_CASE("Options::from_env reads WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY", "[options][env]") {
    {
        CleanEnvironment env;
        CHECK(Options::from_env().close_on_token_expiry);  // unset: the default, on
    }
    for (auto const* off : {"false", "0", "no", "off"}) {
        INFO(off);
        CleanEnvironment env;
        env.set("WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY", off);
        CHECK_FALSE(Options::from_env().close_on_token_expiry);
    }
    for (auto const* on : {"true", "1", "yes", "on"}) {
        INFO(on);
        CleanEnvironment env;
        env.set("WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY", on);
        CHECK(Options::from_env().close_on_token_expiry);
    }
    for (auto const* bad : {"", "sometimes", "2"}) {
        INFO(bad);
        CleanEnvironment env;
        env.set("WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY", bad);
        auto const error = from_env_error();
        REQUIRE(error.has_value());
        CHECK_THAT(*error, Catch::Contains("WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY"));
    }
}

TEST_CASE("Options::from_env reads WEBSOCKET_COMPRESSION and its minimum size", "[options][env]") {
    {
        CleanEnvironment env;
        CHECK_FALSE(Options::from_env().compression);  // unset: off
    }
    for (auto const* on : {"true", "1", "yes", "on"}) {
        INFO(on);
        CleanEnvironment env;
        env.set("WEBSOCKET_COMPRESSION", on);
        CHECK(Options::from_env().compression);
    }
    for (auto const* off : {"false", "0", "no", "off"}) {
        INFO(off);
        CleanEnvironment env;
        env.set("WEBSOCKET_COMPRESSION", off);
        CHECK_FALSE(Options::from_env().compression);
    }
    {
        CleanEnvironment env;
        env.set("WEBSOCKET_COMPRESSION_MIN_SIZE", "0");
        CHECK(Options::from_env().compression_min_size == 0);
        env.set("WEBSOCKET_COMPRESSION_MIN_SIZE", "4096");
        CHECK(Options::from_env().compression_min_size == 4096);
    }
    for (auto const& [name, bad] : {std::pair{"WEBSOCKET_COMPRESSION", "deflate"},
                                    std::pair{"WEBSOCKET_COMPRESSION_MIN_SIZE", "-1"},
                                    std::pair{"WEBSOCKET_COMPRESSION_MIN_SIZE", "1k"}}) {
        INFO(name << "=" << bad);
        CleanEnvironment env;
        env.set(name, bad);
        auto const error = from_env_error();
        REQUIRE(error.has_value());
        CHECK_THAT(*error, Catch::Contains(name));
    }
}

// Options::from_env() documents "@throws std::invalid_argument naming the variable when a
// value is malformed or out of range". A well-formed number that validate() rejects is out
// of range: the message must still name the variable the operator has to fix.
TEST_CASE("Options::from_env names the variable of an out-of-range value", "[options][env]") {
    std::vector<std::vector<std::pair<char const*, char const*>>> const cases = {
        {{"WEBSOCKET_PING_TIMEOUT", "0"}},
        {{"WEBSOCKET_CALLBACK_TIMEOUT", "0"}},
        {{"WEBSOCKET_CLOSE_TIMEOUT", "0"}},
        {{"WEBSOCKET_MAX_MESSAGE_SIZE", "10"}},
        {{"WEBSOCKET_MAX_SEND_BUFFER", "100"}},
        {{"WEBSOCKET_TLS_CERT", "/etc/cert.pem"}},
        {{"WEBSOCKET_AUTH_ISSUER", "https://idp.example"}},  // nothing verifies tokens
        {{"WEBSOCKET_AUTH_AUDIENCE", "wsmanager"}},
    };
    for (auto const& variables : cases) {
        CleanEnvironment env;
        for (auto const& [name, value] : variables) env.set(name, value);
        auto const name = variables.front().first;
        INFO(name << "='" << variables.front().second << "'");
        auto const error = from_env_error();
        REQUIRE(error.has_value());
        CHECK_THAT(*error, Catch::Contains(name));
    }
}
