// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <wsmanager/log.hpp>

namespace wsmanager {

/**
 * Every setting of a WebSocketManager, with the original component's defaults.
 *
 * An aggregate, so hosts can write
 * `Options{.host = "127.0.0.1", .port = 9000, .callback_timeout = std::chrono::seconds(60)}`.
 * Durations accept any `std::chrono` duration of millisecond resolution or coarser.
 */
struct Options {
    std::string host = "0.0.0.0";  ///< address to listen on (WEBSOCKET_HOST)
    std::uint16_t port = 8765;     ///< 0 picks a free port; see WebSocketManager::local_port()
    std::size_t max_connections = 1000;  ///< the next connection is closed with 1013

    /// WebSocket ping sent to every connection this often; 0 disables keepalive.
    std::chrono::milliseconds ping_interval = std::chrono::seconds(30);
    /// A connection whose pong is this late is closed (1011) and then dropped.
    std::chrono::milliseconds ping_timeout = std::chrono::seconds(10);
    /// How long notify_user waits for an answer (the original's 300 s).
    std::chrono::milliseconds callback_timeout = std::chrono::seconds(300);
    /// The decision a timed-out confirmation resolves with (the original proceeds).
    bool proceed_on_timeout = true;
    /// By default a confirmation waits for its user to (re)connect until it times out.
    /// With this set, it ends (`proceed = false`, reason `disconnected`) once the user has had
    /// no connection for disconnect_grace.
    bool resolve_on_disconnect = false;
    std::chrono::milliseconds disconnect_grace = std::chrono::seconds(10);

    /// How long a closing handshake may take before the TCP connection is dropped.
    std::chrono::milliseconds close_timeout = std::chrono::seconds(5);
    /// How long a client may take to complete the opening handshake.
    std::chrono::milliseconds handshake_timeout = std::chrono::seconds(5);

    /// Largest client frame accepted; larger ones close the connection with 1009.
    std::size_t max_message_size = 64 * 1024;
    /// Bytes one connection may hold on their way to its socket (frames waiting and the write
    /// in flight, headers included). A frame that does not fit is dropped (counted as failed)
    /// and the connection, a client that does not read, is closed with 1008.
    std::size_t max_send_buffer = 4 * 1024 * 1024;
    /// Client frames one connection may send per second (bursts of twice that); frames over
    /// it get a `rate_limited` error and are ignored. 0 disables the limit.
    std::size_t max_frames_per_second = 100;
    /// Topics one connection may be subscribed to at once.
    std::size_t max_topics_per_connection = 100;
    /// Topics with at least one subscriber, over all connections; a `subscribe` that would
    /// add one more gets `forbidden`.
    std::size_t max_topics = 10'000;
    /// Connections one user may have open at once (tabs, devices); the next one is closed
    /// with 1008. 0: no limit.
    std::size_t max_connections_per_user = 32;
    /// notify_user calls pending for one user at once; the next completes with
    /// error::too_many_pending (never an automatic decision). The same bound applies, each
    /// on its own, to send_with_ack and send_heartbeat operations.
    std::size_t max_pending_confirmations_per_user = 100;
    /// notify_user calls pending in total (and likewise send_with_ack, send_heartbeat).
    std::size_t max_pending_confirmations = 10'000;
    /// Opening handshakes in progress at once; the listener stops accepting until one ends.
    std::size_t max_handshakes_in_flight = 1'000;
    /// Largest body of a plain HTTP request (the host's on_http routes); larger: 413.
    std::size_t max_http_body_size = 64 * 1024;

    /// Negotiate permessage-deflate (RFC 7692) with the clients that offer it
    /// (WEBSOCKET_COMPRESSION). A message is compressed once for every such connection
    /// (server_no_context_takeover), and the clients' compressed frames are accepted,
    /// bounded by max_message_size once inflated (a compression bomb is closed with 1009).
    bool compression = false;
    /// Messages smaller than this go uncompressed even to those clients
    /// (WEBSOCKET_COMPRESSION_MIN_SIZE): compressing them saves little and costs CPU.
    std::size_t compression_min_size = 256;

    /// Threads running the manager's own io_context (owning constructor only).
    std::size_t threads = 1;

    /// HS256 secret for JWT authentication. Empty, with no auth_public_key either, means
    /// development mode (`?user_id=`).
    std::string auth_secret{};
    /// An identity provider's public key for JWT authentication: PEM text (anything that
    /// contains `-----BEGIN`), else the path of a PEM file. A `PUBLIC KEY` or a
    /// `CERTIFICATE`, RSA (2048 bits or more; tokens must then be RS256) or EC P-256 (ES256).
    /// Loaded once per process (validate() fails if it does not load); see docs/security.md.
    std::string auth_public_key{};
    /// When set, a token's `iss` must equal it. Needs auth_secret or auth_public_key.
    std::string auth_issuer{};
    /// When set, a token's `aud` (a string, or an array of strings) must contain it. Needs
    /// auth_secret or auth_public_key.
    std::string auth_audience{};
    /// Close a connection (1008 "Token expired") when the identity it was admitted with
    /// expires: a JWT's `exp` plus the 30 s clock leeway the handshake allows, or the
    /// AuthResult::expires_at of a custom Authenticator. Connections without an expiry are
    /// never closed for it (WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY).
    bool close_on_token_expiry = true;
    /// Accepted `Origin` header values; empty accepts any origin.
    std::vector<std::string> allowed_origins{};
    /// PEM files for config::tls.
    std::string tls_cert{};
    std::string tls_key{};
    /// The Redis of a cluster, `redis://host:port[/db]` (docs/cluster.md): read by
    /// wsmanager::cluster::redis(). Set without a backplane, start_server fails
    /// (error::no_backplane) rather than run as a lone node.
    std::string redis_url{};
    /// This node's name in the cluster; empty: host name, process id and a random suffix.
    std::string node_id{};
    /// Prefix of every Redis key and channel, so clusters can share one Redis.
    std::string cluster_prefix = "wsm";
    /// In a cluster, a confirmation whose timeout (or disconnect deadline) comes while Redis
    /// cannot be reached waits this long for Redis to decide it (a user may have answered on
    /// another node); then this node decides it alone, with the timeout's decision, so the
    /// host's call always ends (docs/cluster.md).
    std::chrono::milliseconds cluster_decision_grace = std::chrono::seconds(30);

    /// Serve GET /healthz, /readyz, /metrics and /status (WEBSOCKET_HTTP_ENDPOINTS).
    bool http_endpoints = true;
    /// "host:port" to serve those endpoints on instead of the WebSocket port, e.g. an
    /// address only the monitoring network reaches (WEBSOCKET_METRICS_ADDRESS). Empty: the
    /// WebSocket port.
    std::string metrics_address{};
    /// Serve /metrics and /status on the WebSocket port to any peer. By default only loopback
    /// peers get them there (a scraper on the same host; otherwise use metrics_address):
    /// they tell connection counts and user activity. /healthz and /readyz stay public.
    bool metrics_public = false;
    /// The `Server` header of every HTTP response; empty sends none.
    std::string server_name = "wsmanager";

    /// Records at or above this level reach log_sink.
    LogLevel log_level = LogLevel::warning;
    /// Where log records go; empty discards them.
    LogSink log_sink = stderr_log_sink();

    /**
     * Options from the environment: the original's `WEBSOCKET_HOST`, `WEBSOCKET_PORT`,
     * `WEBSOCKET_MAX_CONNECTIONS`, `WEBSOCKET_PING_INTERVAL`, `WEBSOCKET_PING_TIMEOUT`,
     * `WEBSOCKET_CALLBACK_TIMEOUT`, and `WEBSOCKET_PROCEED_ON_TIMEOUT`,
     * `WEBSOCKET_RESOLVE_ON_DISCONNECT`, `WEBSOCKET_DISCONNECT_GRACE`,
     * `WEBSOCKET_CLOSE_TIMEOUT`, `WEBSOCKET_MAX_MESSAGE_SIZE`, `WEBSOCKET_MAX_SEND_BUFFER`,
     * `WEBSOCKET_MAX_FRAMES_PER_SECOND`, `WEBSOCKET_MAX_TOPICS`,
     * `WEBSOCKET_MAX_CONNECTIONS_PER_USER`, `WEBSOCKET_MAX_PENDING_CONFIRMATIONS_PER_USER`,
     * `WEBSOCKET_MAX_PENDING_CONFIRMATIONS`, `WEBSOCKET_MAX_HANDSHAKES_IN_FLIGHT`,
     * `WEBSOCKET_MAX_HTTP_BODY_SIZE`, `WEBSOCKET_COMPRESSION`,
     * `WEBSOCKET_COMPRESSION_MIN_SIZE`, `WEBSOCKET_METRICS_PUBLIC`, `WEBSOCKET_SERVER_NAME`,
     * `WEBSOCKET_THREADS`, `WEBSOCKET_AUTH_SECRET`, `WEBSOCKET_AUTH_PUBLIC_KEY`,
     * `WEBSOCKET_AUTH_ISSUER`, `WEBSOCKET_AUTH_AUDIENCE`, `WEBSOCKET_CLOSE_ON_TOKEN_EXPIRY`,
     * `WEBSOCKET_ALLOWED_ORIGINS`
     * (comma-separated), `WEBSOCKET_TLS_CERT`, `WEBSOCKET_TLS_KEY`, `WEBSOCKET_REDIS_URL`,
     * `WEBSOCKET_NODE_ID`, `WEBSOCKET_CLUSTER_PREFIX`, `WEBSOCKET_CLUSTER_DECISION_GRACE`,
     * `WEBSOCKET_HTTP_ENDPOINTS`, `WEBSOCKET_METRICS_ADDRESS`, `WEBSOCKET_LOG_LEVEL`,
     * `WEBSOCKET_LOG_FORMAT` (`text`, the default, or `json` for JSON lines).
     * Unset variables keep the defaults.
     *
     * Durations are seconds as in the original (`30`, `0.5`) or carry a unit (`500ms`,
     * `30s`, `5m`).
     *
     * @throws std::invalid_argument naming the variable when a value is malformed or out
     * of range; never falls back to a default silently.
     */
    static Options from_env();

    /// Throws std::invalid_argument naming the first setting that makes no sense.
    void validate() const;
};

}  // namespace wsmanager

#include <wsmanager/impl/options.hpp>
