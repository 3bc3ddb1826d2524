// SPDX-License-Identifier: BSL-1.0
#pragma once

// What a parsed JSON value must satisfy before the manager writes it into a frame: every
// string UTF-8 (an escape can spell a lone surrogate, "\udc00", which RapidJSON decodes to
// bytes that are not UTF-8, and a client fails the connection on them) and every number
// finite (RapidJSON reads 0.5e309 as infinity, which no JSON writer can write). Iterative:
// a deeply nested value must not exhaust the stack.
//
// Plain functions: any thread.

#include <cmath>
#include <vector>

#include <rapidjson/document.h>

#include <wsmanager/detail/utf8.hpp>

namespace wsmanager::detail {

/// What is wrong with a value, if anything.
enum class json_flaw { none, invalid_string, infinite_number };

inline json_flaw find_json_flaw(rapidjson::Value const& root) {
    std::vector<rapidjson::Value const*> pending{&root};
    while (!pending.empty()) {
        auto const* value = pending.back();
        pending.pop_back();
        if (value->IsString()) {
            if (!is_valid_utf8({value->GetString(), value->GetStringLength()})) {
                return json_flaw::invalid_string;
            }
        } else if (value->IsDouble()) {
            if (!std::isfinite(value->GetDouble())) return json_flaw::infinite_number;
        } else if (value->IsArray()) {
            for (auto const& item : value->GetArray()) pending.push_back(&item);
        } else if (value->IsObject()) {
            for (auto const& member : value->GetObject()) {
                pending.push_back(&member.name);
                pending.push_back(&member.value);
            }
        }
    }
    return json_flaw::none;
}

/// True when the value can be written back as JSON text that every client accepts.
inline bool json_is_writable(rapidjson::Value const& root) {
    return find_json_flaw(root) == json_flaw::none;
}

}  // namespace wsmanager::detail
