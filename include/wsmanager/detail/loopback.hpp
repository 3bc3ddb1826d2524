// SPDX-License-Identifier: BSL-1.0
#pragma once

// is_loopback_endpoint: whether a peer's "address:port" (as websocketpp gives it) is on this
// host, IPv4-mapped IPv6 included. Used for /metrics and /status (loopback peers only unless
// Options::metrics_public) and offered to hosts as HttpRequest::from_loopback().

#include <string>
#include <string_view>
#include <system_error>

#include <asio/ip/address.hpp>

namespace wsmanager::detail {

/// True for "127.x.x.x:port", "[::1]:port" and "[::ffff:127.x.x.x]:port".
inline bool is_loopback_endpoint(std::string_view endpoint) {
    auto const colon = endpoint.rfind(':');
    if (colon == std::string_view::npos) return false;
    auto host = endpoint.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    std::error_code ec;
    auto const address = asio::ip::make_address(std::string(host), ec);
    if (ec) return false;
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
        return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).is_loopback();
    }
    return address.is_loopback();
}

}  // namespace wsmanager::detail
