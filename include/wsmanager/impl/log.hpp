// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

namespace wsmanager {

namespace detail {
/// Now as ISO 8601 UTC with milliseconds: 2026-11-25T21:40:39.919Z.
inline std::string utc_timestamp() {
    auto const now = std::chrono::system_clock::now();
    auto const seconds = std::chrono::system_clock::to_time_t(now);
    auto const millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() %
        1000;
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char stamp[40];
    auto const length = std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(stamp + length, sizeof stamp - length, ".%03dZ", static_cast<int>(millis));
    return stamp;
}

/// Appends `text` as a JSON string (quotes included), escaping what JSON requires.
inline void append_json_string(std::string& out, std::string_view text) {
    out.push_back('"');
    for (char const c : text) {
        switch (c) {
            case '"': out.append("\\\""); break;
            case '\\': out.append("\\\\"); break;
            case '\n': out.append("\\n"); break;
            case '\r': out.append("\\r"); break;
            case '\t': out.append("\\t"); break;
            default:
                if (static_cast<unsigned char>(c) < 0x20) {
                    char escaped[8];
                    std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
                    out.append(escaped);
                } else {
                    out.push_back(c);
                }
        }
    }
    out.push_back('"');
}
}  // namespace detail

inline LogSink json_lines_log_sink(std::FILE* out) {
    return [out](LogRecord const& record) {
        std::string line;
        line.reserve(160 + record.message.size());
        line.append("{\"ts\":\"").append(detail::utc_timestamp()).append("\",\"level\":\"");
        line.append(to_string(record.level)).append("\",\"event\":");
        detail::append_json_string(line, record.event);
        line.append(",\"message\":");
        detail::append_json_string(line, record.message);
        if (record.connection_id != 0) {
            line.append(",\"connection\":").append(std::to_string(record.connection_id));
        }
        if (!record.user_id.empty()) {
            line.append(",\"user\":");
            detail::append_json_string(line, record.user_id);
        }
        line.append("}\n");
        std::fwrite(line.data(), 1, line.size(), out);
    };
}

inline LogSink stderr_log_sink() {
    return [](LogRecord const& record) {
        std::string line;
        line.reserve(128 + record.message.size());
        line.append(detail::utc_timestamp()).append(" wsmanager ").append(to_string(record.level));
        line.append(" ").append(record.event);
        if (record.connection_id != 0) {
            line.append(" conn=").append(std::to_string(record.connection_id));
        }
        if (!record.user_id.empty()) line.append(" user=").append(record.user_id);
        if (!record.message.empty()) line.append(": ").append(record.message);
        line.push_back('\n');
        std::fwrite(line.data(), 1, line.size(), stderr);
    };
}

}  // namespace wsmanager
