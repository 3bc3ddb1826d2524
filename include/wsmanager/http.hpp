// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <wsmanager/detail/loopback.hpp>

namespace wsmanager {

/// A plain HTTP request that reached the WebSocket port (no upgrade).
struct HttpRequest {
    std::string method;  ///< "GET", "POST", ...
    std::string path;    ///< without the query, e.g. "/api/tasks"
    std::string query;   ///< the raw query string after '?', may be empty
    std::map<std::string, std::string> headers;  ///< names in lower case
    std::string body;
    std::string remote_endpoint;  ///< the peer's "address:port"

    /// True when the peer is on this host (127.0.0.0/8, ::1, IPv4-mapped loopback), e.g. to
    /// keep an operator route to local callers. Behind a reverse proxy on the same host, every
    /// request is.
    bool from_loopback() const { return detail::is_loopback_endpoint(remote_endpoint); }
};

/// The answer to an HttpRequest. Content-Length is set from the body.
struct HttpResponse {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body{};
    std::vector<std::pair<std::string, std::string>> headers{};  ///< extra headers
};

/**
 * Serves the host's own HTTP routes on the WebSocket port (the demo's page and REST API).
 * Returns false to decline a request, which is then answered 404. Runs on the connection's
 * strand, possibly on several threads at once: make it thread-safe and quick. The built-in
 * routes (/healthz, /readyz, /metrics, /status, see Options::http_endpoints) come first.
 */
using HttpHandler = std::function<bool(HttpRequest const&, HttpResponse&)>;

}  // namespace wsmanager
