// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <array>
#include <cstdint>
#include <random>
#include <string>

namespace wsmanager::detail {

/// 128 random bits as 32 hex digits, for callback and message ids a client cannot guess.
/// std::random_device is the operating system's CSPRNG on Linux (getrandom/urandom).
inline std::string random_id() {
    thread_local std::random_device device;
    static constexpr char digits[] = "0123456789abcdef";
    std::string id;
    id.reserve(32);
    for (int word = 0; word < 4; ++word) {
        std::uint32_t bits = device();
        for (int nibble = 0; nibble < 8; ++nibble, bits >>= 4) id.push_back(digits[bits & 0xF]);
    }
    return id;
}

}  // namespace wsmanager::detail
