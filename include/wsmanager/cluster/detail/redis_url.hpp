// SPDX-License-Identifier: BSL-1.0
#pragma once

// redis_url: the parts of a `redis://` URL (Options::redis_url, WEBSOCKET_REDIS_URL), parsed
// once when the backplane starts. Plain values and a pure function: no strand.

#include <charconv>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace wsmanager::cluster::detail {

/**
 * Where a Redis server is: `redis://[[username]:password@]host[:port][/db]`.
 *
 * `host` is a name, an IPv4 address or a bracketed IPv6 address (stored without the
 * brackets); the port defaults to 6379 and the database to 0. The user information is kept
 * for AUTH, percent-decoded.
 *
 * @par Thread Safety
 * A value type.
 */
struct redis_url {
    std::string host;
    int port = 6379;
    int db = 0;
    std::string username;
    std::string password;

    /**
     * Parses `text`; throws std::invalid_argument naming `setting` and saying what is wrong
     * (another scheme, a missing host, a port outside 1..65535, a database that is not a
     * non-negative number, a query or fragment).
     */
    static redis_url parse(std::string_view text, std::string_view setting = "redis_url") {
        auto fail = [&](char const* why) {
            throw std::invalid_argument(std::string(setting) + ": " + why + " in \"" +
                                        std::string(text) + "\" (expected " +
                                        "redis://host[:port][/db])");
        };
        constexpr std::string_view scheme = "redis://";
        if (text.substr(0, scheme.size()) != scheme) {
            fail("not a redis:// URL");
        }
        std::string_view rest = text.substr(scheme.size());
        if (rest.find_first_of("?#") != std::string_view::npos) {
            fail("a query or fragment is not supported");
        }
        std::string_view const authority = rest.substr(0, rest.find('/'));
        std::string_view const path =
            authority.size() < rest.size() ? rest.substr(authority.size() + 1) : "";

        redis_url url;
        std::string_view host_port = authority;
        if (auto const at = authority.rfind('@'); at != std::string_view::npos) {
            std::string_view const userinfo = authority.substr(0, at);
            host_port = authority.substr(at + 1);
            auto const colon = userinfo.find(':');
            if (colon == std::string_view::npos) {
                url.password = decode(userinfo, fail);  // redis://secret@host, as redis-cli
            } else {
                url.username = decode(userinfo.substr(0, colon), fail);
                url.password = decode(userinfo.substr(colon + 1), fail);
            }
        }

        std::string_view port_text;
        if (!host_port.empty() && host_port.front() == '[') {
            auto const close = host_port.find(']');
            if (close == std::string_view::npos) {
                fail("an unclosed '[' in the host");
            }
            url.host = std::string(host_port.substr(1, close - 1));
            std::string_view const after = host_port.substr(close + 1);
            if (!after.empty()) {
                if (after.front() != ':') {
                    fail("unexpected text after the IPv6 address");
                }
                port_text = after.substr(1);
                if (port_text.empty()) {
                    fail("an empty port");
                }
            }
        } else {
            auto const colon = host_port.find(':');
            url.host = std::string(host_port.substr(0, colon));
            if (colon != std::string_view::npos) {
                port_text = host_port.substr(colon + 1);
                if (port_text.empty()) {
                    fail("an empty port");
                }
            }
        }
        if (url.host.empty()) {
            fail("no host");
        }
        if (!port_text.empty()) {
            url.port = number(port_text, fail);
            if (url.port < 1 || url.port > 65535) {
                fail("a port outside 1..65535");
            }
        }
        if (!path.empty()) {
            url.db = number(path, fail);
        }
        return url;
    }

private:
    template <typename Fail>
    static int number(std::string_view digits, Fail const& fail) {
        int value = 0;
        auto const [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
        if (ec != std::errc() || end != digits.data() + digits.size() || digits.front() == '-' ||
            digits.front() == '+') {
            fail("not a number where a port or database was expected");
        }
        return value;
    }

    template <typename Fail>
    static std::string decode(std::string_view text, Fail const& fail) {
        auto hex = [&](char c) {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            fail("a bad percent escape");
            return 0;
        };
        std::string out;
        out.reserve(text.size());
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (text[i] != '%') {
                out.push_back(text[i]);
                continue;
            }
            if (i + 2 >= text.size()) {
                fail("a bad percent escape");
            }
            out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
            i += 2;
        }
        return out;
    }
};

}  // namespace wsmanager::cluster::detail
