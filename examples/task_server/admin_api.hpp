// SPDX-License-Identifier: BSL-1.0
#pragma once

// The task server's operator routes: the manager's fan-out calls, reachable over HTTP so an
// operator (or a test) can exercise a cluster from outside. They answer loopback peers only,
// like wsmanager's /metrics and /status: behind a reverse proxy on the same host every request
// comes from loopback, so the proxy must refuse /api/admin/ itself (deploy/nginx.conf does).
//
//   POST /api/admin/broadcast        {"message": {...}}                    broadcast_message
//   POST /api/admin/send_to_user     {"user_id": "alice", "message": {...}} send_to_user
//   POST /api/admin/publish          {"topic": "task:<id>", "message": {...}} publish
//   POST /api/admin/disconnect_user  {"user_id": "alice", "code": 4001, "reason": "..."}
//                                    disconnect_user (code default 1008, reason optional)
//
// -> 202 {"queued": "<operation>", "node_id": "<this node, or null>"}. The call completes
// later (an HTTP handler may not wait for the manager); its outcome (this node's count, and
// error::cluster_unavailable when the other nodes could not be told) is logged on stdout.
// Errors: 400 bad_request / invalid_json, 403 forbidden (not a loopback peer), 405, 413, 415.
// `message` must be a JSON object; it is delivered exactly as given.
//
// Runs on the manager's connection strands, possibly on several threads at once: it only
// parses and calls the manager's thread-safe members.

#include <cstdint>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <rapidjson/document.h>

#include <wsmanager/http.hpp>
#include <wsmanager/message.hpp>

#include "json.hpp"
#include "task_service.hpp"

namespace task_server {

class AdminApi {
public:
    static constexpr std::size_t max_body_bytes = 64 * 1024;
    static constexpr std::string_view prefix = "/api/admin/";

    AdminApi(Manager& manager, std::string node_id)
        : manager_(manager), node_id_(std::move(node_id)) {}

    /// The manager's HttpHandler: false for paths outside /api/admin/.
    bool operator()(wsmanager::HttpRequest const& request,
                    wsmanager::HttpResponse& response) const {
        auto const& path = request.path;
        if (path.compare(0, prefix.size(), prefix) != 0) return false;
        if (!request.from_loopback()) {
            return error(response, 403, "forbidden",
                         "The admin routes answer loopback peers only");
        }
        auto const operation = path.substr(prefix.size());
        if (operation != "broadcast" && operation != "send_to_user" && operation != "publish" &&
            operation != "disconnect_user") {
            return error(response, 404, "not_found", "No admin route " + path);
        }
        if (request.method != "POST") {
            error(response, 405, "method_not_allowed", "Allowed: POST");
            response.headers.emplace_back("Allow", "POST");
            return true;
        }
        if (request.body.size() > max_body_bytes) {
            return error(response, 413, "too_large", "The body is too large");
        }
        if (auto it = request.headers.find("content-type");
            it != request.headers.end() && it->second.find("json") == std::string::npos) {
            return error(response, 415, "unsupported_media_type",
                         "Send the body as application/json");
        }
        rapidjson::Document body;
        body.Parse<rapidjson::kParseValidateEncodingFlag>(request.body.data(), request.body.size());
        if (body.HasParseError() || !body.IsObject()) {
            return error(response, 400, "invalid_json", "The body must be a JSON object");
        }
        auto text = [&](char const* name) -> std::optional<std::string> {
            auto it = body.FindMember(name);
            if (it == body.MemberEnd() || !it->value.IsString() ||
                it->value.GetStringLength() == 0) {
                return std::nullopt;
            }
            return std::string(it->value.GetString(), it->value.GetStringLength());
        };

        if (operation == "disconnect_user") {
            auto user = text("user_id");
            if (!user) return error(response, 400, "bad_request", "user_id is required");
            std::uint16_t code = 1008;
            if (auto it = body.FindMember("code"); it != body.MemberEnd()) {
                if (!it->value.IsUint() || !sendable_close_code(it->value.GetUint())) {
                    return error(response, 400, "bad_request",
                                 "code must be 1000, 1001, 1008, 1011, 1013 or 3000-4999");
                }
                code = static_cast<std::uint16_t>(it->value.GetUint());
            }
            std::string reason = text("reason").value_or("Disconnected by the server");
            if (reason.size() > 123 || !is_clean_utf8(reason)) {
                return error(response, 400, "bad_request",
                             "reason must be at most 123 bytes of UTF-8");
            }
            manager_.disconnect_user(*user, code, reason,
                                     report("disconnect_user " + *user, "closed"));
            return queued(response, operation);
        }

        auto const message_member = body.FindMember("message");
        if (message_member == body.MemberEnd() || !message_member->value.IsObject()) {
            return error(response, 400, "bad_request", "message must be a JSON object");
        }
        wsmanager::Message const message(message_member->value);
        if (operation == "broadcast") {
            manager_.broadcast_message(message, report("broadcast", "queued to"));
        } else if (operation == "send_to_user") {
            auto user = text("user_id");
            if (!user) return error(response, 400, "bad_request", "user_id is required");
            manager_.send_to_user(*user, message, report("send_to_user " + *user, "queued to"));
        } else {
            auto topic = text("topic");
            if (!topic) return error(response, 400, "bad_request", "topic is required");
            manager_.publish(*topic, message, report("publish " + *topic, "queued to"));
        }
        return queued(response, operation);
    }

private:
    static bool sendable_close_code(unsigned code) {
        return code == 1000 || code == 1001 || code == 1008 || code == 1011 || code == 1013 ||
               (code >= 3000 && code <= 4999);
    }

    /// The completion of a fan-out call: its outcome on stdout.
    static std::function<void(std::error_code, std::size_t)> report(std::string what,
                                                                     std::string verb) {
        return [what = std::move(what), verb = std::move(verb)](std::error_code ec,
                                                                 std::size_t local) {
            std::string line = "task_server: admin " + what + ": " + verb + " " +
                               std::to_string(local) + " connection(s) here";
            if (ec) line += " (other nodes: " + ec.message() + ")";
            std::cout << line + "\n" << std::flush;
        };
    }

    bool queued(wsmanager::HttpResponse& response, std::string const& operation) const {
        JsonOut out;
        out.begin_object().field("queued", operation).key("node_id");
        if (node_id_.empty()) {
            out.null();
        } else {
            out.value(node_id_);
        }
        out.end_object();
        response.status = 202;
        response.content_type = "application/json";
        response.body = out.str();
        response.headers.emplace_back("Cache-Control", "no-store");
        return true;
    }

    static bool error(wsmanager::HttpResponse& response, int status, std::string_view code,
                      std::string const& message) {
        JsonOut out;
        out.begin_object().field("error", code).field("message", message).end_object();
        response.status = status;
        response.content_type = "application/json";
        response.body = out.str();
        response.headers.emplace_back("Cache-Control", "no-store");
        return true;
    }

    Manager& manager_;
    std::string node_id_;
};

}  // namespace task_server
