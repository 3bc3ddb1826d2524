// SPDX-License-Identifier: BSL-1.0
// detail/http_routes.hpp: where the built-in routes are served, what they answer, the
// deferred /healthz, and the host's handler.

#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/http_routes.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/http.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>

#include "fake_session.hpp"

namespace routes_test {

using wsmanager::HttpRequest;
using wsmanager::HttpResponse;
using wsmanager::detail::http_routes;
using listener = http_routes::listener;

struct rig {
    wsmanager::Options options;
    wsmanager::detail::manager_counters counters;
    wsmanager::detail::logger log{wsmanager::LogSink{}, wsmanager::LogLevel::trace};
    wsmanager::detail::host_hooks hooks;
    int status_calls = 0;
    std::vector<std::function<void(bool)>> probes;  ///< liveness questions not yet answered
    std::vector<HttpRequest> host_requests;
    http_routes routes{
        options,
        hooks,
        counters,
        log,
        [this] {
            ++status_calls;
            wsmanager::Status status;
            status.running = true;
            status.active_connections = 7;
            return status;
        },
        [this] { return counters.render_prometheus(); },
        [this](std::function<void(bool)> answer) { probes.push_back(std::move(answer)); }};
    std::vector<HttpResponse> later;  ///< what the responders got

    /// A request from a loopback peer unless `peer` says otherwise.
    std::optional<HttpResponse> get(std::string path, listener on = listener::websocket_port,
                                    std::string method = "GET",
                                    std::string peer = "127.0.0.1:50000") {
        HttpRequest request;
        request.method = std::move(method);
        request.path = std::move(path);
        request.remote_endpoint = std::move(peer);
        return routes.route(
            request, on, [this](HttpResponse response) { later.push_back(std::move(response)); });
    }

    /// A host handler that serves /app and records what it was asked.
    void serve_app() {
        routes.set_host_handler([this](HttpRequest const& request, HttpResponse& response) {
            host_requests.push_back(request);
            if (request.path != "/app" && request.method == "GET") return false;
            response.status = 201;
            response.content_type = "text/html";
            response.body = request.method + " " + request.path;
            return true;
        });
    }
};

TEST_CASE("http_routes: /readyz", "[http_routes]") {
    rig r;
    r.options.max_connections = 2;
    auto stopped = r.get("/readyz");
    REQUIRE(stopped.has_value());
    CHECK(stopped->status == 503);
    CHECK(stopped->body == "not listening\n");

    r.counters.running = true;
    auto ready = r.get("/readyz");
    REQUIRE(ready.has_value());
    CHECK(ready->status == 200);
    CHECK(ready->body == "ready\n");
    CHECK(ready->content_type == "text/plain; charset=utf-8");

    r.counters.active_connections = 2;
    auto full = r.get("/readyz");
    REQUIRE(full.has_value());
    CHECK(full->status == 503);
    CHECK(full->body == "connection limit reached\n");
}

TEST_CASE("http_routes: /metrics and /status", "[http_routes]") {
    rig r;
    r.counters.heartbeats_sent = 12;
    auto metrics = r.get("/metrics");
    REQUIRE(metrics.has_value());
    CHECK(metrics->status == 200);
    CHECK(metrics->content_type == "text/plain; version=0.0.4; charset=utf-8");
    CHECK_THAT(metrics->body, Catch::Contains("# TYPE wsmanager_up gauge"));
    CHECK_THAT(metrics->body, Catch::Contains("wsmanager_heartbeats_sent_total 12\n"));

    auto status = r.get("/status");
    REQUIRE(status.has_value());
    CHECK(status->status == 200);
    CHECK(status->content_type == "application/json");
    CHECK(r.status_calls == 1);
    auto document = wsmanager_fake::parse_json(status->body);
    REQUIRE(document["running"].IsBool());
    CHECK(document["running"].GetBool());
    CHECK(document["active_connections"].GetUint64() == 7);
}

TEST_CASE("http_routes: /healthz is answered later, by the probe", "[http_routes]") {
    rig r;
    auto now = r.get("/healthz");
    CHECK_FALSE(now.has_value());  // deferred
    REQUIRE(r.probes.size() == 1);
    CHECK(r.later.empty());

    bool const alive = GENERATE(true, false);
    r.probes.front()(alive);
    REQUIRE(r.later.size() == 1);
    CHECK(r.later[0].status == (alive ? 200 : 503));
    CHECK(r.later[0].body == (alive ? "ok\n" : "stopped\n"));
    CHECK(r.later[0].content_type == "text/plain; charset=utf-8");
}

TEST_CASE("http_routes: built-in routes on the WebSocket port without metrics_address",
          "[http_routes]") {
    rig r;
    r.serve_app();
    for (auto const* path : {"/readyz", "/metrics", "/status"}) {
        INFO(path);
        auto on_ws = r.get(path, listener::websocket_port);
        REQUIRE(on_ws.has_value());
        CHECK(on_ws->status != 404);
        CHECK(on_ws->status != 201);  // not the host's
        auto on_metrics = r.get(path, listener::metrics_port);
        REQUIRE(on_metrics.has_value());
        CHECK(on_metrics->status == 404);  // that listener does not serve them
    }
    CHECK_FALSE(r.get("/healthz", listener::websocket_port).has_value());
    auto health_elsewhere = r.get("/healthz", listener::metrics_port);
    REQUIRE(health_elsewhere.has_value());
    CHECK(health_elsewhere->status == 404);
    CHECK(r.probes.size() == 1);
    CHECK(r.host_requests.empty());  // the metrics listener never asks the host
}

TEST_CASE("http_routes: built-in routes on the metrics listener with metrics_address",
          "[http_routes]") {
    rig r;
    r.options.metrics_address = "127.0.0.1:9100";
    r.serve_app();
    for (auto const* path : {"/readyz", "/metrics", "/status"}) {
        INFO(path);
        auto on_metrics = r.get(path, listener::metrics_port);
        REQUIRE(on_metrics.has_value());
        CHECK(on_metrics->status != 404);
        auto on_ws = r.get(path, listener::websocket_port);  // the host's now: it declines
        REQUIRE(on_ws.has_value());
        CHECK(on_ws->status == 404);
    }
    CHECK(r.host_requests.size() == 3);
    CHECK_FALSE(r.get("/healthz", listener::metrics_port).has_value());
    CHECK(r.probes.size() == 1);
    auto health_on_ws = r.get("/healthz", listener::websocket_port);
    REQUIRE(health_on_ws.has_value());
    CHECK(health_on_ws->status == 404);
    CHECK(r.probes.size() == 1);
    // The host's own routes stay on the WebSocket port.
    auto app = r.get("/app", listener::websocket_port);
    REQUIRE(app.has_value());
    CHECK(app->status == 201);
    auto app_on_metrics = r.get("/app", listener::metrics_port);
    REQUIRE(app_on_metrics.has_value());
    CHECK(app_on_metrics->status == 404);
}

TEST_CASE("http_routes: http_endpoints off serves no built-in route", "[http_routes]") {
    rig r;
    r.options.http_endpoints = false;
    for (auto const* path : {"/readyz", "/metrics", "/status", "/healthz"}) {
        INFO(path);
        auto answer = r.get(path);
        REQUIRE(answer.has_value());
        CHECK(answer->status == 404);
    }
    CHECK(r.probes.empty());
}

TEST_CASE("http_routes: the host's handler", "[http_routes]") {
    rig r;
    SECTION("no handler: 404") {
        auto answer = r.get("/app");
        REQUIRE(answer.has_value());
        CHECK(answer->status == 404);
        CHECK(answer->body == "not found\n");
    }
    SECTION("serves, declines") {
        r.serve_app();
        auto app = r.get("/app");
        REQUIRE(app.has_value());
        CHECK(app->status == 201);
        CHECK(app->content_type == "text/html");
        CHECK(app->body == "GET /app");
        auto declined = r.get("/elsewhere");
        REQUIRE(declined.has_value());
        CHECK(declined->status == 404);
        CHECK(declined->body == "not found\n");
        CHECK(r.host_requests.size() == 2);
    }
    SECTION("a non-GET built-in path goes to the host") {
        r.serve_app();
        auto posted = r.get("/metrics", listener::websocket_port, "POST");
        REQUIRE(posted.has_value());
        CHECK(posted->status == 201);
        CHECK(posted->body == "POST /metrics");
        auto health = r.get("/healthz", listener::websocket_port, "HEAD");
        REQUIRE(health.has_value());
        CHECK(health->body == "HEAD /healthz");
        CHECK(r.probes.empty());
        REQUIRE(r.host_requests.size() == 2);
        CHECK(r.host_requests[0].method == "POST");
    }
    SECTION("throws: 500") {
        r.routes.set_host_handler([](HttpRequest const&, HttpResponse&) -> bool {
            throw std::runtime_error("handler bug");
        });
        auto failed = r.get("/app");
        REQUIRE(failed.has_value());
        CHECK(failed->status == 500);
        CHECK(failed->body == "internal error\n");
    }
    CHECK(r.later.empty());
}

TEST_CASE("http_routes: /metrics and /status on the WebSocket port are for loopback peers",
          "[http_routes]") {
    rig r;
    r.serve_app();
    for (auto const* peer : {"203.0.113.9:40000", "[2001:db8::1]:443", "localhost:1", "bad"}) {
        INFO(peer);
        for (auto const* path : {"/metrics", "/status"}) {
            INFO(path);
            auto answer = r.get(path, listener::websocket_port, "GET", peer);
            REQUIRE(answer.has_value());
            CHECK(answer->status == 403);
        }
        // Liveness and readiness stay public.
        auto ready = r.get("/readyz", listener::websocket_port, "GET", peer);
        REQUIRE(ready.has_value());
        CHECK(ready->status != 403);
        CHECK_FALSE(r.get("/healthz", listener::websocket_port, "GET", peer).has_value());
    }
    for (auto const* peer : {"127.0.0.1:1", "127.8.9.10:2", "[::1]:3", "[::ffff:127.0.0.1]:4"}) {
        INFO(peer);
        auto answer = r.get("/metrics", listener::websocket_port, "GET", peer);
        REQUIRE(answer.has_value());
        CHECK(answer->status == 200);
    }
    CHECK(r.status_calls == 0);
    CHECK(r.host_requests.empty());

    SECTION("metrics_public serves everyone") {
        r.options.metrics_public = true;
        auto metrics = r.get("/metrics", listener::websocket_port, "GET", "203.0.113.9:40000");
        REQUIRE(metrics.has_value());
        CHECK(metrics->status == 200);
        auto status = r.get("/status", listener::websocket_port, "GET", "203.0.113.9:40000");
        REQUIRE(status.has_value());
        CHECK(status->status == 200);
    }
    SECTION("the metrics listener serves everyone") {
        r.options.metrics_address = "0.0.0.0:9100";
        auto metrics = r.get("/metrics", listener::metrics_port, "GET", "203.0.113.9:40000");
        REQUIRE(metrics.has_value());
        CHECK(metrics->status == 200);
    }
}

TEST_CASE("http_routes: is_loopback_endpoint", "[http_routes]") {
    wsmanager::HttpRequest request;
    request.remote_endpoint = "[::1]:5000";
    CHECK(request.from_loopback());
    request.remote_endpoint = "192.0.2.7:5000";
    CHECK_FALSE(request.from_loopback());
    CHECK(wsmanager::detail::is_loopback_endpoint("127.0.0.1:80"));
    CHECK(wsmanager::detail::is_loopback_endpoint("127.255.255.254:80"));
    CHECK(wsmanager::detail::is_loopback_endpoint("[::1]:80"));
    CHECK(wsmanager::detail::is_loopback_endpoint("[::ffff:127.0.0.1]:80"));
    CHECK_FALSE(wsmanager::detail::is_loopback_endpoint("[::ffff:10.0.0.1]:80"));
    CHECK_FALSE(wsmanager::detail::is_loopback_endpoint("10.0.0.1:80"));
    CHECK_FALSE(wsmanager::detail::is_loopback_endpoint("128.0.0.1:80"));
    CHECK_FALSE(wsmanager::detail::is_loopback_endpoint("[2001:db8::1]:80"));
    CHECK_FALSE(
        wsmanager::detail::is_loopback_endpoint("127.0.0.1"));  // no port: "127.0.0" is no address
    CHECK_FALSE(wsmanager::detail::is_loopback_endpoint(""));
    CHECK_FALSE(wsmanager::detail::is_loopback_endpoint(":80"));
}

TEST_CASE("http_routes: once the host hooks are closed, the host handler is not called",
          "[http_routes]") {
    rig r;
    r.serve_app();
    r.hooks.close_and_wait();
    auto answer = r.get("/app");
    REQUIRE(answer.has_value());
    CHECK(answer->status == 503);
    CHECK(answer->body == "stopping\n");
    CHECK(r.host_requests.empty());
    // The built-in routes need no host code.
    auto metrics = r.get("/metrics");
    REQUIRE(metrics.has_value());
    CHECK(metrics->status == 200);
}

}  // namespace routes_test
