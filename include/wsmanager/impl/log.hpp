// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>

namespace wsmanager {

inline LogSink stderr_log_sink() {
    return [](LogRecord const& record) {
        auto const now = std::chrono::system_clock::now();
        auto const seconds = std::chrono::system_clock::to_time_t(now);
        auto const millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                                now.time_since_epoch()).count() % 1000;
        std::tm utc{};
        gmtime_r(&seconds, &utc);
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
        std::string line;
        line.reserve(128 + record.message.size());
        line.append(stamp).append(".");
        char ms[8];
        std::snprintf(ms, sizeof ms, "%03d", static_cast<int>(millis));
        line.append(ms).append("Z wsmanager ").append(to_string(record.level));
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
