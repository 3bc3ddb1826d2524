// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace wsmanager::detail {

/// `text` with ASCII letters in lower case (HTTP header names compare case-insensitively).
inline std::string to_lower_ascii(std::string text) {
    for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
}

inline int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/// Decodes %XX escapes and '+' (form encoding); nullopt on a malformed escape.
inline std::optional<std::string> percent_decode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        char const c = text[i];
        if (c == '%') {
            if (i + 2 >= text.size()) return std::nullopt;
            int const high = hex_digit(text[i + 1]);
            int const low = hex_digit(text[i + 2]);
            if (high < 0 || low < 0) return std::nullopt;
            out.push_back(static_cast<char>(high * 16 + low));
            i += 2;
        } else if (c == '+') {
            out.push_back(' ');
        } else {
            out.push_back(c);
        }
    }
    return out;
}

/// Parses "a=1&b=x%20y"; the first occurrence of a name wins. nullopt on a bad escape.
inline std::optional<std::map<std::string, std::string>> parse_query(std::string_view query) {
    std::map<std::string, std::string> params;
    while (!query.empty()) {
        auto const amp = query.find('&');
        auto const pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (pair.empty()) continue;
        auto const eq = pair.find('=');
        auto name = percent_decode(pair.substr(0, eq));
        auto value = percent_decode(eq == std::string_view::npos ? std::string_view{}
                                                                 : pair.substr(eq + 1));
        if (!name || !value) return std::nullopt;
        params.emplace(std::move(*name), std::move(*value));
    }
    return params;
}

}  // namespace wsmanager::detail
