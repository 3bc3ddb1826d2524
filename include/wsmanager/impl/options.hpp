// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <wsmanager/detail/jwt_key.hpp>
#include <wsmanager/detail/utf8.hpp>

namespace wsmanager {
namespace detail {

inline std::optional<std::string> env_value(char const* name) {
    char const* value = std::getenv(name);
    if (value == nullptr) return std::nullopt;
    return std::string(value);
}

[[noreturn]] inline void bad_env(char const* name, std::string const& value,
                                 std::string_view expected) {
    throw std::invalid_argument(std::string(name) + "='" + value + "' is not valid: expected " +
                                std::string(expected));
}

inline std::uint64_t parse_env_unsigned(char const* name, std::string const& value,
                                        std::uint64_t max) {
    std::uint64_t result = 0;
    auto const* first = value.data();
    auto const* last = value.data() + value.size();
    auto const [end, ec] = std::from_chars(first, last, result);
    if (value.empty() || ec != std::errc{} || end != last || result > max) {
        bad_env(name, value, "a whole number from 0 to " + std::to_string(max));
    }
    return result;
}

inline std::chrono::milliseconds parse_env_duration(char const* name, std::string const& value) {
    constexpr std::string_view expected =
        "a duration: seconds (30, 0.5) or a number with a unit (500ms, 30s, 5m)";
    std::string_view text = value;
    double scale_ms = 1000.0;  // bare numbers are seconds, as in the original
    if (text.ends_with("ms")) {
        scale_ms = 1.0;
        text.remove_suffix(2);
    } else if (text.ends_with("s")) {
        text.remove_suffix(1);
    } else if (text.ends_with("m")) {
        scale_ms = 60000.0;
        text.remove_suffix(1);
    }
    if (text.empty() || text.front() == '-' || text.front() == '+') bad_env(name, value, expected);
    std::string number(text);
    char* end = nullptr;
    errno = 0;
    double const amount = std::strtod(number.c_str(), &end);
    if (errno != 0 || end != number.c_str() + number.size() || !std::isfinite(amount) ||
        amount < 0 || amount * scale_ms > 1e12) {
        bad_env(name, value, expected);
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(amount * scale_ms)));
}

inline bool parse_env_bool(char const* name, std::string const& value) {
    if (value == "1" || value == "true" || value == "yes" || value == "on") return true;
    if (value == "0" || value == "false" || value == "no" || value == "off") return false;
    bad_env(name, value, "a boolean (true/false, 1/0, yes/no, on/off)");
}

inline LogLevel parse_env_log_level(char const* name, std::string const& value) {
    for (auto level : {LogLevel::trace, LogLevel::debug, LogLevel::info, LogLevel::warning,
                       LogLevel::error, LogLevel::off}) {
        if (value == to_string(level)) return level;
    }
    if (value == "warn") return LogLevel::warning;
    bad_env(name, value, "one of trace, debug, info, warning, error, off");
}

inline std::vector<std::string> split_list(std::string const& value) {
    std::vector<std::string> items;
    std::size_t start = 0;
    while (start <= value.size()) {
        auto comma = value.find(',', start);
        if (comma == std::string::npos) comma = value.size();
        auto item = value.substr(start, comma - start);
        auto const first = item.find_first_not_of(" \t");
        auto const last = item.find_last_not_of(" \t");
        if (first != std::string::npos) items.push_back(item.substr(first, last - first + 1));
        start = comma + 1;
    }
    return items;
}

/// "host:port" (or "[v6]:port") split in two; nullopt when malformed.
inline std::optional<std::pair<std::string, std::uint16_t>> split_host_port(std::string const& text) {
    auto const colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) return std::nullopt;
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    unsigned port = 0;
    auto const* first = text.data() + colon + 1;
    auto const* last = text.data() + text.size();
    auto const [end, ec] = std::from_chars(first, last, port);
    if (ec != std::errc{} || end != last || port > 65535) return std::nullopt;
    return std::pair{std::move(host), static_cast<std::uint16_t>(port)};
}

}  // namespace detail

inline Options Options::from_env() {
    using namespace detail;
    Options options;
    if (auto v = env_value("WEBSOCKET_HOST")) {
        if (v->empty()) bad_env("WEBSOCKET_HOST", *v, "a host name or address");
        options.host = *v;
    }
    if (auto v = env_value("WEBSOCKET_PORT")) {
        options.port = static_cast<std::uint16_t>(parse_env_unsigned("WEBSOCKET_PORT", *v, 65535));
    }
    if (auto v = env_value("WEBSOCKET_MAX_CONNECTIONS")) {
        options.max_connections = parse_env_unsigned("WEBSOCKET_MAX_CONNECTIONS", *v, 10'000'000);
        if (options.max_connections == 0) bad_env("WEBSOCKET_MAX_CONNECTIONS", *v, "at least 1");
    }
    if (auto v = env_value("WEBSOCKET_PING_INTERVAL")) {
        options.ping_interval = parse_env_duration("WEBSOCKET_PING_INTERVAL", *v);
    }
    if (auto v = env_value("WEBSOCKET_PING_TIMEOUT")) {
        options.ping_timeout = parse_env_duration("WEBSOCKET_PING_TIMEOUT", *v);
    }
    if (auto v = env_value("WEBSOCKET_CALLBACK_TIMEOUT")) {
        options.callback_timeout = parse_env_duration("WEBSOCKET_CALLBACK_TIMEOUT", *v);
    }
    if (auto v = env_value("WEBSOCKET_PROCEED_ON_TIMEOUT")) {
        options.proceed_on_timeout = parse_env_bool("WEBSOCKET_PROCEED_ON_TIMEOUT", *v);
    }
    if (auto v = env_value("WEBSOCKET_RESOLVE_ON_DISCONNECT")) {
        options.resolve_on_disconnect = parse_env_bool("WEBSOCKET_RESOLVE_ON_DISCONNECT", *v);
    }
    if (auto v = env_value("WEBSOCKET_DISCONNECT_GRACE")) {
        options.disconnect_grace = parse_env_duration("WEBSOCKET_DISCONNECT_GRACE", *v);
    }
    if (auto v = env_value("WEBSOCKET_CLOSE_TIMEOUT")) {
        options.close_timeout = parse_env_duration("WEBSOCKET_CLOSE_TIMEOUT", *v);
    }
    if (auto v = env_value("WEBSOCKET_MAX_MESSAGE_SIZE")) {
        options.max_message_size =
            parse_env_unsigned("WEBSOCKET_MAX_MESSAGE_SIZE", *v, std::uint64_t{1} << 30);
    }
    if (auto v = env_value("WEBSOCKET_MAX_SEND_BUFFER")) {
        options.max_send_buffer =
            parse_env_unsigned("WEBSOCKET_MAX_SEND_BUFFER", *v, std::uint64_t{1} << 34);
    }
    if (auto v = env_value("WEBSOCKET_MAX_FRAMES_PER_SECOND")) {
        options.max_frames_per_second =
            parse_env_unsigned("WEBSOCKET_MAX_FRAMES_PER_SECOND", *v, 1'000'000);
    }
    if (auto v = env_value("WEBSOCKET_MAX_TOPICS")) {
        options.max_topics = parse_env_unsigned("WEBSOCKET_MAX_TOPICS", *v, 100'000'000);
    }
    if (auto v = env_value("WEBSOCKET_MAX_CONNECTIONS_PER_USER")) {
        options.max_connections_per_user =
            parse_env_unsigned("WEBSOCKET_MAX_CONNECTIONS_PER_USER", *v, 10'000'000);
    }
    if (auto v = env_value("WEBSOCKET_MAX_PENDING_CONFIRMATIONS_PER_USER")) {
        options.max_pending_confirmations_per_user =
            parse_env_unsigned("WEBSOCKET_MAX_PENDING_CONFIRMATIONS_PER_USER", *v, 100'000'000);
    }
    if (auto v = env_value("WEBSOCKET_MAX_PENDING_CONFIRMATIONS")) {
        options.max_pending_confirmations =
            parse_env_unsigned("WEBSOCKET_MAX_PENDING_CONFIRMATIONS", *v, 100'000'000);
    }
    if (auto v = env_value("WEBSOCKET_MAX_HANDSHAKES_IN_FLIGHT")) {
        options.max_handshakes_in_flight =
            parse_env_unsigned("WEBSOCKET_MAX_HANDSHAKES_IN_FLIGHT", *v, 10'000'000);
    }
    if (auto v = env_value("WEBSOCKET_MAX_HTTP_BODY_SIZE")) {
        options.max_http_body_size =
            parse_env_unsigned("WEBSOCKET_MAX_HTTP_BODY_SIZE", *v, std::uint64_t{1} << 30);
    }
    if (auto v = env_value("WEBSOCKET_COMPRESSION")) {
        options.compression = parse_env_bool("WEBSOCKET_COMPRESSION", *v);
    }
    if (auto v = env_value("WEBSOCKET_COMPRESSION_MIN_SIZE")) {
        options.compression_min_size =
            parse_env_unsigned("WEBSOCKET_COMPRESSION_MIN_SIZE", *v, std::uint64_t{1} << 30);
    }
    if (auto v = env_value("WEBSOCKET_THREADS")) {
        options.threads = parse_env_unsigned("WEBSOCKET_THREADS", *v, 256);
        if (options.threads == 0) bad_env("WEBSOCKET_THREADS", *v, "at least 1");
    }
    if (auto v = env_value("WEBSOCKET_AUTH_SECRET")) options.auth_secret = *v;
    // Not echoed on error like the others (bad_env): it may be a whole PEM. validate() below
    // loads the key and its message is turned into one naming WEBSOCKET_AUTH_PUBLIC_KEY.
    if (auto v = env_value("WEBSOCKET_AUTH_PUBLIC_KEY")) options.auth_public_key = *v;
    if (auto v = env_value("WEBSOCKET_AUTH_ISSUER")) options.auth_issuer = *v;
    if (auto v = env_value("WEBSOCKET_AUTH_AUDIENCE")) options.auth_audience = *v;
    if (auto v = env_value("WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY")) {
        options.close_on_token_expiry = parse_env_bool("WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY", *v);
    }
    if (auto v = env_value("WEBSOCKET_ALLOWED_ORIGINS")) options.allowed_origins = split_list(*v);
    if (auto v = env_value("WEBSOCKET_TLS_CERT")) options.tls_cert = *v;
    if (auto v = env_value("WEBSOCKET_TLS_KEY")) options.tls_key = *v;
    if (auto v = env_value("WEBSOCKET_REDIS_URL")) {
        if (!v->empty() && !v->starts_with("redis://")) {
            bad_env("WEBSOCKET_REDIS_URL", *v, "a redis://host:port URL");
        }
        options.redis_url = *v;
    }
    if (auto v = env_value("WEBSOCKET_NODE_ID")) options.node_id = *v;
    if (auto v = env_value("WEBSOCKET_CLUSTER_PREFIX")) options.cluster_prefix = *v;
    if (auto v = env_value("WEBSOCKET_CLUSTER_DECISION_GRACE")) {
        options.cluster_decision_grace =
            parse_env_duration("WEBSOCKET_CLUSTER_DECISION_GRACE", *v);
    }
    if (auto v = env_value("WEBSOCKET_HTTP_ENDPOINTS")) {
        options.http_endpoints = parse_env_bool("WEBSOCKET_HTTP_ENDPOINTS", *v);
    }
    if (auto v = env_value("WEBSOCKET_METRICS_ADDRESS")) {
        if (!v->empty() && !split_host_port(*v)) {
            bad_env("WEBSOCKET_METRICS_ADDRESS", *v, "host:port, e.g. 127.0.0.1:9100");
        }
        options.metrics_address = *v;
    }
    if (auto v = env_value("WEBSOCKET_METRICS_PUBLIC")) {
        options.metrics_public = parse_env_bool("WEBSOCKET_METRICS_PUBLIC", *v);
    }
    if (auto v = env_value("WEBSOCKET_SERVER_NAME")) options.server_name = *v;
    if (auto v = env_value("WEBSOCKET_LOG_FORMAT")) {
        if (*v == "json") {
            options.log_sink = json_lines_log_sink();
        } else if (*v != "text") {
            bad_env("WEBSOCKET_LOG_FORMAT", *v, "text or json");
        }
    }
    if (auto v = env_value("WEBSOCKET_LOG_LEVEL")) {
        options.log_level = parse_env_log_level("WEBSOCKET_LOG_LEVEL", *v);
    }
    try {
        options.validate();
    } catch (std::invalid_argument const& e) {
        // Name the variable behind the setting: every message starts with the setting's name.
        std::string_view text = e.what();
        constexpr std::string_view prefix = "wsmanager::Options: ";
        if (text.starts_with(prefix)) text.remove_prefix(prefix.size());
        std::string variable = "WEBSOCKET_";
        for (char c : text.substr(0, text.find(' '))) {
            variable.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
        }
        throw std::invalid_argument(variable + ": " + std::string(text));
    }
    return options;
}

inline void Options::validate() const {
    auto fail = [](std::string const& what) { throw std::invalid_argument("wsmanager::Options: " + what); };
    if (host.empty()) fail("host must not be empty");
    if (max_connections == 0) fail("max_connections must be at least 1");
    if (ping_interval.count() < 0) fail("ping_interval must not be negative");
    if (ping_interval.count() > 0 && ping_timeout.count() <= 0) {
        fail("ping_timeout must be positive when ping_interval is set");
    }
    if (callback_timeout.count() <= 0) fail("callback_timeout must be positive");
    if (disconnect_grace.count() < 0) fail("disconnect_grace must not be negative");
    if (cluster_decision_grace.count() < 0) fail("cluster_decision_grace must not be negative");
    if (close_timeout.count() <= 0) fail("close_timeout must be positive");
    if (handshake_timeout.count() <= 0) fail("handshake_timeout must be positive");
    if (max_message_size < 64) fail("max_message_size must be at least 64 bytes");
    if (max_send_buffer < 1024) fail("max_send_buffer must be at least 1024 bytes");
    if (threads == 0) fail("threads must be at least 1");
    if (max_topics == 0) fail("max_topics must be at least 1");
    if (!redis_url.empty() && !redis_url.starts_with("redis://")) {
        fail("redis_url must be a redis://host:port[/db] URL");
    }
    auto const plain_name = [](std::string const& text) {
        return std::all_of(text.begin(), text.end(), [](unsigned char c) {
            return std::isalnum(c) || c == '-' || c == '_' || c == '.';
        });
    };
    if (!plain_name(node_id) || node_id.size() > 128) {
        fail("node_id must be at most 128 letters, digits, '-', '_' or '.'");
    }
    if (cluster_prefix.empty() || !plain_name(cluster_prefix) || cluster_prefix.size() > 64) {
        fail("cluster_prefix must be 1 to 64 letters, digits, '-', '_' or '.'");
    }
    if (max_pending_confirmations_per_user == 0) {
        fail("max_pending_confirmations_per_user must be at least 1");
    }
    if (max_pending_confirmations == 0) fail("max_pending_confirmations must be at least 1");
    if (max_handshakes_in_flight == 0) fail("max_handshakes_in_flight must be at least 1");
    if (!detail::is_valid_utf8(server_name) ||
        server_name.find_first_of("\r\n") != std::string::npos) {
        fail("server_name must be one line of UTF-8 text");
    }
    if (!metrics_address.empty() && !detail::split_host_port(metrics_address)) {
        fail("metrics_address must be host:port");
    }
    if (tls_cert.empty() != tls_key.empty()) fail("tls_cert and tls_key go together");
    if (!auth_public_key.empty()) {
        try {
            (void)detail::shared_jwt_key(auth_public_key);  // loaded here, kept for the gate
        } catch (std::invalid_argument const& e) {
            fail("auth_public_key " + std::string(e.what()));
        }
    }
    // Without a secret or a key nothing is verified: an issuer or audience would be ignored.
    bool const verifies_tokens = !auth_secret.empty() || !auth_public_key.empty();
    if (!auth_issuer.empty() && !verifies_tokens) {
        fail("auth_issuer needs auth_secret or auth_public_key");
    }
    if (!auth_audience.empty() && !verifies_tokens) {
        fail("auth_audience needs auth_secret or auth_public_key");
    }
}

}  // namespace wsmanager
