// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstddef>
#include <string_view>

namespace wsmanager::detail {

/// True when `text` is well-formed UTF-8 (no overlongs, surrogates or code points past
/// U+10FFFF). Text frames must be, so every string the manager puts in a frame is checked.
inline bool is_valid_utf8(std::string_view text) noexcept {
    auto const* p = reinterpret_cast<unsigned char const*>(text.data());
    std::size_t const n = text.size();
    std::size_t i = 0;
    while (i < n) {
        unsigned char const c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t length = 0;
        unsigned char low = 0x80, high = 0xBF;  // bounds of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            length = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            length = 3;
            if (c == 0xE0) low = 0xA0;   // no overlongs
            if (c == 0xED) high = 0x9F;  // no surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            length = 4;
            if (c == 0xF0) low = 0x90;
            if (c == 0xF4) high = 0x8F;  // at most U+10FFFF
        } else {
            return false;
        }
        if (i + length > n) return false;
        if (p[i + 1] < low || p[i + 1] > high) return false;
        for (std::size_t k = 2; k < length; ++k) {
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) return false;
        }
        i += length;
    }
    return true;
}

}  // namespace wsmanager::detail
