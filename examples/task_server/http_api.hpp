// SPDX-License-Identifier: BSL-1.0
#pragma once

// The task server's HTTP routes, served on the WebSocket port through manager.on_http():
//
//   GET  /                         the dashboard (web/index.html), also /index.html
//   GET  /app.js, /style.css       its script and style sheet
//   GET  /api/tasks                tasks, newest first: [{id, user_id, name, state, progress,
//                                  current_step, ...}]; ?user_id=alice filters, ?log=1 adds
//                                  each task's last 50 log lines
//   GET  /api/tasks/<id>           one task with its definition and whole log
//   POST /api/tasks                {"user_id":"alice","task":{...}} or
//                                  {"user_id":"alice","sample":true} -> 201 {"task_id", "task"}
//
// Errors are JSON: {"error": "<code>", "message": "..."} with 400 (invalid JSON, bad
// definition), 404, 405, 413, 415 or 503. The library's own routes (/healthz, /metrics,
// /status) come first.
//
// The handler runs on the manager's connection strands, possibly on several threads at once:
// it only reads files and calls TaskService's thread-safe members, which never wait for the
// host's thread.

#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <wsmanager/http.hpp>

#include "json.hpp"
#include "task.hpp"
#include "task_definition.hpp"
#include "task_service.hpp"

namespace task_server {

class HttpApi {
public:
    static constexpr std::size_t max_body_bytes = 64 * 1024;
    static constexpr std::size_t max_user_id_bytes = 64;

    HttpApi(TaskService& service, std::filesystem::path web_root)
        : service_(service), web_root_(std::move(web_root)) {}

    /// The manager's HttpHandler: false for paths it does not know (answered 404).
    bool operator()(wsmanager::HttpRequest const& request,
                    wsmanager::HttpResponse& response) const {
        auto const& path = request.path;
        if (path == "/" || path == "/index.html") {
            return serve_file(request, response, "index.html", "text/html; charset=utf-8");
        }
        if (path == "/app.js") {
            return serve_file(request, response, "app.js", "text/javascript; charset=utf-8");
        }
        if (path == "/style.css") {
            return serve_file(request, response, "style.css", "text/css; charset=utf-8");
        }
        if (path == "/api/tasks") {
            if (request.method == "GET" || request.method == "HEAD") {
                return list_tasks(request, response);
            }
            if (request.method == "POST") return create_task(request, response);
            return method_not_allowed(response, "GET, HEAD, POST");
        }
        constexpr std::string_view prefix = "/api/tasks/";
        if (path.size() > prefix.size() && path.compare(0, prefix.size(), prefix) == 0) {
            if (request.method != "GET" && request.method != "HEAD") {
                return method_not_allowed(response, "GET, HEAD");
            }
            return show_task(path.substr(prefix.size()), response);
        }
        return false;
    }

private:
    bool serve_file(wsmanager::HttpRequest const& request, wsmanager::HttpResponse& response,
                    char const* name, char const* content_type) const {
        if (request.method != "GET" && request.method != "HEAD") {
            return method_not_allowed(response, "GET, HEAD");
        }
        // Read on every request (a few kilobytes), so edits to web/ show on reload.
        std::ifstream file(web_root_ / name, std::ios::binary);
        if (!file) {
            return json_error(response, 500, "missing_file",
                              "cannot read " + (web_root_ / name).string());
        }
        response.status = 200;
        response.content_type = content_type;
        response.body.assign(std::istreambuf_iterator<char>(file),
                             std::istreambuf_iterator<char>());
        response.headers.emplace_back("Cache-Control", "no-cache");
        response.headers.emplace_back("X-Content-Type-Options", "nosniff");
        if (std::string_view(name) == "index.html") {
            // Everything comes from this server; nothing from the internet.
            response.headers.emplace_back(
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'");
        }
        return true;
    }

    bool list_tasks(wsmanager::HttpRequest const& request,
                    wsmanager::HttpResponse& response) const {
        std::optional<std::string> user_id;
        if (auto value = query_param(request.query, "user_id")) user_id = std::move(*value);
        auto const log_param = query_param(request.query, "log");
        bool const with_log = log_param && (*log_param == "1" || *log_param == "true");
        JsonOut out;
        out.begin_array();
        for (auto const& task : service_.list(user_id)) {
            if (!with_log) {
                write_snapshot(out, task->snapshot());
                continue;
            }
            write_with_log(out, *task, 50, false);
        }
        out.end_array();
        return json(response, 200, out.str());
    }

    bool show_task(std::string const& id, wsmanager::HttpResponse& response) const {
        auto task = service_.find(id);
        if (!task) return json_error(response, 404, "not_found", "No task " + quoted(id));
        JsonOut out;
        write_with_log(out, *task, Task::max_log_lines, true);
        return json(response, 200, out.str());
    }

    /// The snapshot's fields plus "log" (and "definition").
    static void write_with_log(JsonOut& out, Task const& task, std::size_t lines,
                               bool with_definition) {
        out.begin_object();
        write_snapshot_fields(out, task.snapshot());
        if (with_definition) {
            out.key("definition");
            write_definition(out, task.definition());
        }
        out.key("log").begin_array();
        for (auto const& line : task.log(lines)) write_log_line(out, line);
        out.end_array().end_object();
    }

    bool create_task(wsmanager::HttpRequest const& request,
                     wsmanager::HttpResponse& response) const {
        if (request.body.size() > max_body_bytes) {
            return json_error(
                response, 413, "too_large",
                "The body must be at most " + std::to_string(max_body_bytes) + " bytes");
        }
        if (auto it = request.headers.find("content-type");
            it != request.headers.end() && it->second.find("json") == std::string::npos) {
            return json_error(response, 415, "unsupported_media_type",
                              "Send the body as application/json");
        }
        rapidjson::Document body;
        body.Parse<rapidjson::kParseValidateEncodingFlag>(request.body.data(), request.body.size());
        if (body.HasParseError()) {
            return json_error(response, 400, "invalid_json",
                              std::string("Invalid JSON at offset ") +
                                  std::to_string(body.GetErrorOffset()) + ": " +
                                  rapidjson::GetParseError_En(body.GetParseError()));
        }
        if (!body.IsObject()) {
            return json_error(response, 400, "bad_request", "The body must be a JSON object");
        }
        for (auto const& member : body.GetObject()) {
            std::string_view const name(member.name.GetString(), member.name.GetStringLength());
            if (name != "user_id" && name != "task" && name != "sample") {
                return json_error(response, 400, "bad_request",
                                  "Unknown field " + quoted(std::string(name)));
            }
        }
        auto const user = body.FindMember("user_id");
        if (user == body.MemberEnd() || !user->value.IsString() ||
            user->value.GetStringLength() == 0 ||
            user->value.GetStringLength() > max_user_id_bytes ||
            !is_clean_utf8({user->value.GetString(), user->value.GetStringLength()})) {
            return json_error(response, 400, "bad_request",
                              "user_id must be a non-empty string of at most " +
                                  std::to_string(max_user_id_bytes) + " bytes");
        }
        auto const task = body.FindMember("task");
        auto const sample = body.FindMember("sample");
        bool const use_sample =
            sample != body.MemberEnd() && sample->value.IsBool() && sample->value.GetBool();
        if (sample != body.MemberEnd() && !sample->value.IsBool()) {
            return json_error(response, 400, "bad_request", "sample must be a boolean");
        }
        if (use_sample == (task != body.MemberEnd())) {
            return json_error(response, 400, "bad_request",
                              "Give either \"task\" (a task definition) or \"sample\": true");
        }
        TaskDefinition definition;
        if (use_sample) {
            definition = sample_task_definition();
        } else {
            auto parsed = parse_task_definition(task->value);
            if (auto* problem = std::get_if<DefinitionError>(&parsed)) {
                return json_error(response, 400, "invalid_task", problem->message);
            }
            definition = std::move(std::get<TaskDefinition>(parsed));
        }
        auto created =
            service_.create(std::string(user->value.GetString(), user->value.GetStringLength()),
                            std::move(definition));
        if (auto* refusal = std::get_if<TaskService::Refusal>(&created)) {
            return json_error(response, refusal->status, refusal->code, refusal->message);
        }
        auto const& snapshot = std::get<TaskSnapshot>(created);
        JsonOut out;
        out.begin_object().field("task_id", snapshot.id).key("task");
        write_snapshot(out, snapshot);
        out.end_object();
        response.headers.emplace_back("Location", "/api/tasks/" + snapshot.id);
        return json(response, 201, out.str());
    }

    static bool json(wsmanager::HttpResponse& response, int status, std::string body) {
        response.status = status;
        response.content_type = "application/json";
        response.body = std::move(body);
        response.headers.emplace_back("Cache-Control", "no-store");
        return true;
    }

    static bool json_error(wsmanager::HttpResponse& response, int status, std::string_view code,
                           std::string_view message) {
        JsonOut out;
        out.begin_object().field("error", code).field("message", message).end_object();
        return json(response, status, out.str());
    }

    static bool method_not_allowed(wsmanager::HttpResponse& response, char const* allow) {
        json_error(response, 405, "method_not_allowed", std::string("Allowed: ") + allow);
        response.headers.emplace_back("Allow", allow);
        return true;
    }

    /// `"text"` for messages; bytes that are not clean UTF-8 are replaced, so the JSON
    /// error stays valid whatever the client sent.
    static std::string quoted(std::string const& text) {
        if (is_clean_utf8(text)) return "\"" + text + "\"";
        std::string safe;
        for (char c : text) {
            auto const u = static_cast<unsigned char>(c);
            safe.push_back(u >= 0x20 && u < 0x7f ? c : '?');
        }
        return "\"" + safe + "\"";
    }

    TaskService& service_;
    std::filesystem::path const web_root_;
};

}  // namespace task_server
