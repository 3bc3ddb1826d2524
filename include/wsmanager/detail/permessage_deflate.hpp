// SPDX-License-Identifier: BSL-1.0
#pragma once

// permessage-deflate (RFC 7692) as websocketpp's processor sees it (the `permessage_deflate_type`
// of a config): it negotiates an offer and inflates the client's compressed frames. It never
// compresses: websocketpp's own compression of data frames is not thread-safe
// (zaphoyd/websocketpp#615), and the manager compresses each message once for every
// connection instead (message.hpp), so the answer always carries server_no_context_takeover.
//
// Whether the manager compresses at all (Options::compression) is decided after this, in the
// handshake: with compression off the transport takes the answer back out of the response,
// and a compressed frame from that client is a protocol error (the session closes it, 1002).
// The inflated size is bounded by max_message_size in websocketpp's processor (the overlay,
// cmake/WebsocketppCxx20Overlay.cmake): a compression bomb is closed with 1009.

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <utility>

#include <websocketpp/extensions/extension.hpp>
#include <websocketpp/http/constants.hpp>
#include <websocketpp/processors/base.hpp>

#include <wsmanager/detail/deflate.hpp>

namespace wsmanager::detail {

class permessage_deflate {
public:
    using error_and_answer = std::pair<std::error_code, std::string>;

    bool is_implemented() const noexcept { return true; }
    bool is_enabled() const noexcept { return enabled_; }

    /// One offer's parameters (RFC 7692 section 7.1). An offer this server cannot honour is
    /// declined, and websocketpp goes on to the client's next one.
    error_and_answer negotiate(websocketpp::http::attribute_list const& offer) {
        std::string answer = "permessage-deflate; server_no_context_takeover";
        for (auto const& [name, value] : offer) {
            if (name == "server_no_context_takeover" || name == "client_no_context_takeover") {
                if (!value.empty()) return declined();
            } else if (name == "server_max_window_bits") {
                // One compressed frame serves every connection, compressed with a 32 KiB
                // window: a client asking for a smaller one is declined.
                if (window_bits(value) != 15) return declined();
                answer += "; server_max_window_bits=15";
            } else if (name == "client_max_window_bits") {
                // The client may use any window: inflating with 32 KiB reads them all.
                if (!value.empty() && window_bits(value) == 0) return declined();
            } else {
                return declined();
            }
        }
        enabled_ = true;
        return {std::error_code{}, std::move(answer)};
    }

    std::error_code init(bool) { return {}; }

    /// A server offers nothing (this is never a client).
    std::string generate_offer() const { return {}; }

    /// Never used: the manager writes data frames itself.
    std::error_code compress(std::string const&, std::string&) {
        return websocketpp::extensions::error::make_error_code(
            websocketpp::extensions::error::disabled);
    }

    /// Appends what a compressed frame's payload inflates to (the processor adds the
    /// 00 00 ff ff trailer at the message's end).
    std::error_code decompress(std::uint8_t const* data, std::size_t size, std::string& out) {
        if (inflater_.inflate_into(data, size, out)) return {};
        // Not DEFLATE: closed with 1007, as an invalid payload.
        return websocketpp::processor::error::make_error_code(
            websocketpp::processor::error::invalid_payload);
    }

private:
    static error_and_answer declined() {
        return {websocketpp::extensions::error::make_error_code(
                    websocketpp::extensions::error::disabled),
                std::string()};
    }

    /// 8 to 15, else 0.
    static int window_bits(std::string const& text) {
        int bits = 0;
        auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), bits);
        if (ec != std::errc{} || end != text.data() + text.size() || bits < 8 || bits > 15)
            return 0;
        return bits;
    }

    bool enabled_ = false;
    inflater inflater_;
};

}  // namespace wsmanager::detail
