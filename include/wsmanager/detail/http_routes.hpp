// SPDX-License-Identifier: BSL-1.0
#pragma once

// Plain HTTP requests (no upgrade): the built-in routes GET /healthz, /readyz, /metrics and
// /status (Options::http_endpoints; on the WebSocket port, or alone on the metrics listener
// with Options::metrics_address), then the host's on_http handler, then 404.
//
// /metrics and /status on the WebSocket port answer only loopback peers unless
// Options::metrics_public is set.
//
// Runs on the requesting connection's strand, possibly on several threads at once: route()
// reads atomics, options, and the host's handler, which set_host_handler may replace at any
// time (a shared pointer under a short mutex). /healthz is answered later, after a
// trip through the manager strand, because liveness is the event loop answering.

#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <wsmanager/detail/host_hooks.hpp>
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

    http_routes(Options const& options, host_hooks& hooks, manager_counters const& counters,
                logger const& log, std::function<Status()> status,
                std::function<std::string()> metrics, liveness_probe probe)
        : options_(options),
          hooks_(hooks),
          counters_(counters),
          log_(log),
          status_(std::move(status)),
          metrics_(std::move(metrics)),
          probe_(std::move(probe)) {}

    /// The host's routes on the WebSocket port; any thread, also while requests run.
    void set_host_handler(HttpHandler handler) {
        auto replacement =
            handler ? std::make_shared<HttpHandler const>(std::move(handler)) : nullptr;
        std::lock_guard lock(host_handler_mutex_);
        host_handler_ = std::move(replacement);
    }

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
            if (auto response = builtin(request, on)) return response;
        }
        auto const host_handler = current_host_handler();
        if (on == listener::websocket_port && host_handler) {
            HttpResponse response;
            try {
                bool handled = false;
                if (!hooks_.call([&] { handled = (*host_handler)(request, response); })) {
                    return HttpResponse{503, "text/plain; charset=utf-8", "stopping\n", {}};
                }
                if (handled) return response;
            } catch (std::exception const& e) {
                log_.write(LogLevel::error, "http_handler_failed",
                           request.method + " " + request.path + ": " + e.what());
                return HttpResponse{500, "text/plain; charset=utf-8", "internal error\n", {}};
            } catch (...) {
                log_.write(LogLevel::error, "http_handler_failed",
                           request.method + " " + request.path + ": unknown exception");
                return HttpResponse{500, "text/plain; charset=utf-8", "internal error\n", {}};
            }
        }
        return not_found();
    }


    static HttpResponse not_found() {
        return HttpResponse{404, "text/plain; charset=utf-8", "not found\n", {}};
    }

private:
    std::optional<HttpResponse> builtin(HttpRequest const& request, listener on) const {
        auto const& path = request.path;
        if ((path == "/metrics" || path == "/status") && on == listener::websocket_port &&
            !options_.metrics_public && !request.from_loopback()) {
            // Counts and activity are not for everyone who can reach the public port.
            return HttpResponse{403, "text/plain; charset=utf-8",
                                "forbidden: served to loopback peers only (see "
                                "Options::metrics_public, metrics_address)\n",
                                {}};
        }
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
                                metrics_(), {}};
        }
        if (path == "/status") {
            return HttpResponse{200, "application/json", status_().to_json(), {}};
        }
        return std::nullopt;
    }

    std::shared_ptr<HttpHandler const> current_host_handler() const {
        std::lock_guard lock(host_handler_mutex_);
        return host_handler_;
    }

    Options const& options_;
    host_hooks& hooks_;
    manager_counters const& counters_;
    logger const& log_;
    std::function<Status()> status_;
    std::function<std::string()> metrics_;
    liveness_probe probe_;
    mutable std::mutex host_handler_mutex_;
    std::shared_ptr<HttpHandler const> host_handler_;  ///< guarded by host_handler_mutex_
};

}  // namespace wsmanager::detail
