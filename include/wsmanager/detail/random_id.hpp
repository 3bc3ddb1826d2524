// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

#include <sys/random.h>

namespace wsmanager::detail {

/// 128 random bits as 32 hex digits, for callback and message ids a client cannot guess.
/// From the kernel's CSPRNG (getrandom(2)). Not std::random_device's default: libstdc++ 12
/// uses the RDSEED instruction where the CPU has it, and RDSEED fails and is retried under
/// load (measured: 94 us per id in a VM, against 0.5 us with getrandom).
inline std::string random_id() {
    std::array<std::uint8_t, 16> bytes{};
    std::size_t filled = 0;
    while (filled < bytes.size()) {
        auto const got = ::getrandom(bytes.data() + filled, bytes.size() - filled, 0);
        if (got <= 0) break;  // never for 16 bytes once the pool is ready; else the fallback
        filled += static_cast<std::size_t>(got);
    }
    if (filled < bytes.size()) {
        thread_local std::random_device device("/dev/urandom");
        for (auto& b : bytes) b = static_cast<std::uint8_t>(device());
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string id;
    id.reserve(32);
    for (auto b : bytes) {
        id.push_back(digits[b >> 4]);
        id.push_back(digits[b & 0xF]);
    }
    return id;
}

}  // namespace wsmanager::detail
