// SPDX-License-Identifier: BSL-1.0
// Models (Status::to_json, ConfirmationReason), error codes and the logger.

#include <cstdio>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/error.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>

using wsmanager::Status;

namespace {

rapidjson::Document parse(std::string const& text) {
    rapidjson::Document document;
    document.Parse(text.c_str(), text.size());
    REQUIRE_FALSE(document.HasParseError());
    REQUIRE(document.IsObject());
    return document;
}

}  // namespace

TEST_CASE("Status::to_json writes every field under its name", "[models][status]") {
    Status status;
    status.running = true;
    status.active_connections = 3;
    status.pending_callbacks = 4;
    status.users_online = 2;
    status.topics = 5;
    status.uptime_s = 12.5;
    status.port = 8765;
    status.connections_opened = 10;
    status.connections_rejected = 1;
    status.messages_sent = 100;
    status.messages_failed = 6;
    status.messages_received = 42;
    status.frames_rejected = 7;
    status.connection_success_rate = 10.0 / 11.0;
    status.avg_confirmation_wait_s = 1.25;

    auto const json = parse(status.to_json());
    CHECK(json["running"].GetBool());
    CHECK(json["active_connections"].GetUint64() == 3);
    CHECK(json["pending_callbacks"].GetUint64() == 4);
    CHECK(json["users_online"].GetUint64() == 2);
    CHECK(json["topics"].GetUint64() == 5);
    CHECK(json["uptime_s"].GetDouble() == 12.5);
    CHECK(json["port"].GetUint() == 8765);
    CHECK(json["connections_opened"].GetUint64() == 10);
    CHECK(json["connections_rejected"].GetUint64() == 1);
    CHECK(json["messages_sent"].GetUint64() == 100);
    CHECK(json["messages_failed"].GetUint64() == 6);
    CHECK(json["messages_received"].GetUint64() == 42);
    CHECK(json["frames_rejected"].GetUint64() == 7);
    CHECK(json["connection_success_rate"].GetDouble() == Approx(10.0 / 11.0));
    CHECK(json["avg_confirmation_wait_s"].GetDouble() == 1.25);
    CHECK(json.MemberCount() == 15);
}

TEST_CASE("Status defaults", "[models][status]") {
    auto const json = parse(Status{}.to_json());
    CHECK_FALSE(json["running"].GetBool());
    CHECK(json["active_connections"].GetUint64() == 0);
    CHECK(json["port"].GetUint() == 0);
    CHECK(json["connection_success_rate"].GetDouble() == 1.0);
}

TEST_CASE("ConfirmationReason names", "[models]") {
    using wsmanager::ConfirmationReason;
    CHECK(wsmanager::to_string(ConfirmationReason::user) == "user");
    CHECK(wsmanager::to_string(ConfirmationReason::timeout) == "timeout");
    CHECK(wsmanager::to_string(ConfirmationReason::cancelled) == "cancelled");
    CHECK(wsmanager::to_string(ConfirmationReason::shutdown) == "shutdown");
    CHECK(wsmanager::to_string(ConfirmationReason::disconnected) == "disconnected");
}

TEST_CASE("wsmanager::error is a std::error_code enum with its own category", "[error]") {
    std::error_code const ec = wsmanager::error::already_running;
    CHECK(ec == wsmanager::error::already_running);
    CHECK(ec != wsmanager::error::not_running);
    CHECK(std::string(ec.category().name()) == "wsmanager");
    CHECK(&ec.category() == &wsmanager::error_category());
    CHECK(ec.message() == "server is already running");
    for (auto e : {wsmanager::error::already_running, wsmanager::error::not_running,
                   wsmanager::error::invalid_message, wsmanager::error::shutting_down,
                   wsmanager::error::task_cancelled}) {
        auto const code = make_error_code(e);
        CHECK(code);
        CHECK_FALSE(code.message().empty());
        CHECK(code.message() != "unknown wsmanager error");
    }
    CHECK(ec != std::make_error_code(std::errc::address_in_use));
}

TEST_CASE("logger honours its threshold and sink", "[log]") {
    using wsmanager::LogLevel;
    CHECK(wsmanager::to_string(LogLevel::warning) == "warning");
    CHECK(wsmanager::to_string(LogLevel::off) == "off");

    std::vector<std::string> lines;
    wsmanager::detail::logger log(
        [&lines](wsmanager::LogRecord const& r) {
            lines.push_back(std::string(wsmanager::to_string(r.level)) + " " + std::string(r.event) +
                            " " + std::string(r.message) + " " + std::to_string(r.connection_id) +
                            " " + std::string(r.user_id));
        },
        LogLevel::warning);
    CHECK_FALSE(log.enabled(LogLevel::info));
    CHECK(log.enabled(LogLevel::warning));
    CHECK(log.enabled(LogLevel::error));
    CHECK_FALSE(log.enabled(LogLevel::off));
    log.write(LogLevel::info, "dropped", "below the threshold");
    log.write(LogLevel::error, "kept", "text", 9, "alice");
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "error kept text 9 alice");

    wsmanager::detail::logger silent({}, LogLevel::trace);
    CHECK_FALSE(silent.enabled(LogLevel::error));
    silent.write(LogLevel::error, "nowhere", "no sink");  // must not throw

    wsmanager::detail::logger off([](wsmanager::LogRecord const&) { FAIL("logged"); },
                                  LogLevel::off);
    off.write(LogLevel::error, "nothing", "threshold off");
}

TEST_CASE("json_lines_log_sink writes one JSON object per line", "[log]") {
    using wsmanager::LogLevel;
    using wsmanager::LogRecord;
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    auto const sink = wsmanager::json_lines_log_sink(file);
    sink(LogRecord{LogLevel::warning, "ev\"ent", "line1\nline2\t\x01 \\ done", 12, "al\"ice"});
    sink(LogRecord{LogLevel::info, "plain", "", 0, ""});
    std::fflush(file);
    std::rewind(file);
    std::string text;
    char buffer[512];
    while (auto n = std::fread(buffer, 1, sizeof buffer, file)) text.append(buffer, n);
    std::fclose(file);

    std::istringstream lines(text);
    std::string line;
    std::vector<std::string> all;
    while (std::getline(lines, line)) all.push_back(line);
    REQUIRE(all.size() == 2);

    auto const first = parse(all[0]);
    CHECK(std::string(first["level"].GetString()) == "warning");
    CHECK(std::string(first["event"].GetString()) == "ev\"ent");
    CHECK(std::string(first["message"].GetString()) == "line1\nline2\t\x01 \\ done");
    CHECK(first["connection"].GetUint64() == 12);
    CHECK(std::string(first["user"].GetString()) == "al\"ice");
    REQUIRE(first["ts"].IsString());
    CHECK(std::string(first["ts"].GetString()).size() >= 20);  // 2026-01-01T00:00:00.000Z

    auto const second = parse(all[1]);
    CHECK(std::string(second["level"].GetString()) == "info");
    CHECK_FALSE(second.HasMember("connection"));  // only when known
    CHECK_FALSE(second.HasMember("user"));
}
