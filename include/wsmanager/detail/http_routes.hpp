// SPDX-License-Identifier: BSL-1.0
#pragma once

// Plain HTTP requests (no upgrade): the built-in routes GET /healthz, /readyz, /metrics and
// /status (Options::http_endpoints; on the WebSocket port, or alone on the metrics listener
// with Options::metrics_address), then the host's on_http handler, then 404.
//
// Runs on the requesting connection's strand, possibly on several threads at once: route()
// reads only atomics and state set before start_server. /healthz is answered later, after a
// trip through the manager strand, because liveness is the event loop answering.

#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/http.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::detail {

class http_routes {
public:
    using responder = std::function<void(HttpResponse)>;
    /// Asks the manager strand whether the server runs; answers on the strand.
    using liveness_probe = std::function<void(std::function<void(bool running)>)>;

    http_routes(Options const& options, manager_counters const& counters, logger const& log,
                std::function<Status()> status, liveness_probe probe)
        : options_(options),
          counters_(counters),
          log_(log),
          status_(std::move(status)),
          probe_(std::move(probe)) {}

    /// The host's routes on the WebSocket port (before start_server).
    void set_host_handler(HttpHandler handler) { host_handler_ = std::move(handler); }

    /// Where the built-in routes are served.
    enum class listener { websocket_port, metrics_port };

    /**
     * Answers a request: the response now, or nullopt when it will be handed to `later`
     * (from another thread, after this call has returned).
     */
    std::optional<HttpResponse> route(HttpRequest const& request, listener on,
                                      responder later) const {
        bool const builtin_here = options_.http_endpoints &&
                                  (on == listener::metrics_port) ==
                                      !options_.metrics_address.empty();
        if (builtin_here && request.method == "GET") {
            if (request.path == "/healthz") {
                probe_([later = std::move(later)](bool alive) {
                    later(HttpResponse{alive ? 200 : 503, "text/plain; charset=utf-8",
                                       alive ? "ok\n" : "stopped\n", {}});
                });
                return std::nullopt;
            }
            if (auto response = builtin(request.path)) return response;
        }
        if (on == listener::websocket_port && host_handler_) {
            HttpResponse response;
            try {
                if (host_handler_(request, response)) return response;
            } catch (std::exception const& e) {
                log_.write(LogLevel::error, "http_handler_failed",
                           request.method + " " + request.path + ": " + e.what());
                return HttpResponse{500, "text/plain; charset=utf-8", "internal error\n", {}};
            }
        }
        return not_found();
    }

    static HttpResponse not_found() {
        return HttpResponse{404, "text/plain; charset=utf-8", "not found\n", {}};
    }

private:
    std::optional<HttpResponse> builtin(std::string const& path) const {
        bool const running = counters_.running.load(std::memory_order_relaxed);
        if (path == "/readyz") {
            bool const ready =
                running && counters_.active_connections.load(std::memory_order_relaxed) <
                               options_.max_connections;
            return HttpResponse{ready ? 200 : 503, "text/plain; charset=utf-8",
                                ready ? "ready\n"
                                      : (running ? "connection limit reached\n"
                                                 : "not listening\n"),
                                {}};
        }
        if (path == "/metrics") {
            return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                counters_.render_prometheus(), {}};
        }
        if (path == "/status") {
            return HttpResponse{200, "application/json", status_().to_json(), {}};
        }
        return std::nullopt;
    }

    Options const& options_;
    manager_counters const& counters_;
    logger const& log_;
    std::function<Status()> status_;
    liveness_probe probe_;
    HttpHandler host_handler_;
};

}  // namespace wsmanager::detail
