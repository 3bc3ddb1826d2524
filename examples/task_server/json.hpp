// SPDX-License-Identifier: BSL-1.0
#pragma once

// Small JSON helpers for the task server: a writer with one call per field, and the checks
// that keep text from users (names, user ids) valid in every frame and response we write.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace task_server {

/// Seconds since the Unix epoch, as the protocol's timestamps.
inline double unix_time() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

/// Builds one JSON document: `JsonOut j; j.begin_object().field("a", 1).end_object();`.
class JsonOut {
public:
    JsonOut() : writer_(buffer_) {}

    JsonOut& begin_object() { return done(writer_.StartObject()); }
    JsonOut& end_object() { return done(writer_.EndObject()); }
    JsonOut& begin_array() { return done(writer_.StartArray()); }
    JsonOut& end_array() { return done(writer_.EndArray()); }
    JsonOut& key(std::string_view name) {
        return done(writer_.Key(name.data(), static_cast<rapidjson::SizeType>(name.size())));
    }

    JsonOut& value(std::string_view text) {
        return done(writer_.String(text.data(), static_cast<rapidjson::SizeType>(text.size())));
    }
    JsonOut& value(char const* text) { return value(std::string_view(text)); }
    JsonOut& value(bool flag) { return done(writer_.Bool(flag)); }
    JsonOut& value(int number) { return done(writer_.Int(number)); }
    JsonOut& value(std::int64_t number) { return done(writer_.Int64(number)); }
    JsonOut& value(std::uint64_t number) { return done(writer_.Uint64(number)); }
    JsonOut& value(double number) { return done(writer_.Double(number)); }
    JsonOut& null() { return done(writer_.Null()); }

    template <class T>
    JsonOut& field(std::string_view name, T const& v) {
        key(name);
        return value(v);
    }
    template <class T>
    JsonOut& optional_field(std::string_view name, std::optional<T> const& v) {
        key(name);
        return v ? value(*v) : null();
    }

    /// The document's text. Valid JSON as long as every string written was valid UTF-8.
    std::string str() const { return std::string(buffer_.GetString(), buffer_.GetSize()); }

private:
    JsonOut& done(bool) { return *this; }
    rapidjson::StringBuffer buffer_;
    rapidjson::Writer<rapidjson::StringBuffer> writer_;
};

/// True when `text` is well-formed UTF-8 without control characters (U+0000..U+001F, U+007F).
inline bool is_clean_utf8(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        auto const c = static_cast<unsigned char>(text[i]);
        if (c < 0x20 || c == 0x7f) return false;
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        std::uint32_t code = 0;
        if ((c & 0xe0) == 0xc0) {
            length = 2;
            code = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            length = 3;
            code = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            length = 4;
            code = c & 0x07;
        } else {
            return false;
        }
        if (i + length > text.size()) return false;
        for (std::size_t k = 1; k < length; ++k) {
            auto const next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xc0) != 0x80) return false;
            code = (code << 6) | (next & 0x3f);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
        std::uint32_t const smallest[] = {0, 0, 0x80, 0x800, 0x10000};
        if (code < smallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) {
            return false;
        }
        i += length;
    }
    return true;
}

/// Decodes one application/x-www-form-urlencoded component (`%41` and `+`); nullopt when a
/// percent escape is malformed.
inline std::optional<std::string> url_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '+') {
            out.push_back(' ');
        } else if (text[i] == '%') {
            if (i + 2 >= text.size()) return std::nullopt;
            int const high = hex(text[i + 1]);
            int const low = hex(text[i + 2]);
            if (high < 0 || low < 0) return std::nullopt;
            out.push_back(static_cast<char>(high * 16 + low));
            i += 2;
        } else {
            out.push_back(text[i]);
        }
    }
    return out;
}

/// The decoded value of `name` in a query string (`a=1&b=2`), or nullopt when absent or
/// malformed.
inline std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        auto const amp = query.find('&');
        auto const pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        auto const eq = pair.find('=');
        auto const key = url_decode(pair.substr(0, eq));
        if (!key || *key != name) continue;
        if (eq == std::string_view::npos) return std::string{};
        return url_decode(pair.substr(eq + 1));
    }
    return std::nullopt;
}

}  // namespace task_server
