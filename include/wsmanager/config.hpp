// SPDX-License-Identifier: BSL-1.0
#pragma once

// websocketpp configurations for WebSocketManager<Config>. They differ from websocketpp's
// own asio configs in two ways: websocketpp's access and error logs go to the manager's log
// sink, and every connection carries the manager's per-connection data.

#include <algorithm>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

#include <websocketpp/common/network.hpp>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/logger/levels.hpp>

#include <wsmanager/detail/permessage_deflate.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/detail/uri.hpp>
#include <wsmanager/detail/websocketpp_socket_writer.hpp>
#include <wsmanager/log.hpp>

namespace wsmanager {
namespace detail {

/// websocketpp's `_htonll` detects the byte order on first use by writing a function-local
/// static without synchronization, and websocketpp calls it for every frame it prepares or
/// parses, from every io thread. Running it once during static initialization, before any
/// thread exists, leaves only reads (ThreadSanitizer reported the first-use write as a race).
inline bool const websocketpp_byte_order_detected = (websocketpp::lib::net::_htonll(0), true);

/// What the manager keeps inside each websocketpp connection (websocketpp's
/// `connection_base` hook): the session the handshake made of it. The names are prefixed
/// because they are visible in websocketpp's own connection code.
struct connection_data {
    std::shared_ptr<session> wsmanager_session;  ///< set once admitted, on the connection strand
    bool wsmanager_refused = false;  ///< connection strand: the handshake was refused (counted)
    /// Held from the accept until the connection opens, fails or goes: a handshake in
    /// progress (Options::max_handshakes_in_flight).
    std::shared_ptr<void> wsmanager_handshake;
};

/// A websocketpp logger (the `alog_type`/`elog_type` concept) that forwards to the
/// manager's logger. websocketpp constructs it itself, so the manager attaches its logger
/// after constructing the endpoint; until then records are dropped.
template <class Concurrency, class Names>
class websocketpp_log {
public:
    using level = websocketpp::log::level;
    using channel_type_hint = websocketpp::log::channel_type_hint;

    explicit websocketpp_log(channel_type_hint::value hint = channel_type_hint::access)
        : error_channel_(hint == channel_type_hint::error) {}
    websocketpp_log(level channels, channel_type_hint::value hint = channel_type_hint::access)
        : channels_(channels), error_channel_(hint == channel_type_hint::error) {}

    void attach(std::shared_ptr<logger const> target) { target_ = std::move(target); }

    void set_channels(level channels) { channels_ |= channels; }
    void clear_channels(level channels) { channels_ &= ~channels; }

    void write(level channel, std::string const& text) { write(channel, text.c_str()); }
    void write(level channel, char const* text) {
        if (!dynamic_test(channel) || !target_) return;
        // websocketpp reports what clients do as errors: a refused handshake, a connection
        // closed before upgrading (a load balancer's TCP check), a failed TLS handshake (a
        // ws:// client on a wss:// port), the accept cancelled by stop_listening(). The
        // manager logs and counts those itself; here they are debug.
        if (error_channel_ && is_client_noise(text)) channel = websocketpp::log::elevel::devel;
        target_->write(level_of(channel), error_channel_ ? "websocketpp_error" : "websocketpp",
                       redact_tokens(text));
    }

    /// websocketpp's access log prints the request's resource: a `?token=` JWT in it is a
    /// credential, and does not belong in logs. The parameter is found as the handshake
    /// finds it, by its percent-decoded name (`?%74oken=` is a token too).
    static std::string redact_tokens(std::string_view text) {
        auto query = text.find('?');
        if (query == std::string_view::npos) return std::string(text);
        std::string out(text.substr(0, query + 1));
        auto at = query + 1;
        while (at <= text.size()) {
            auto const end = std::min(text.find_first_of(" &\"#", at), text.size());
            auto const parameter = text.substr(at, end - at);
            auto const equals = parameter.find('=');
            auto const name = percent_decode(parameter.substr(0, equals));
            if (equals != std::string_view::npos && name && *name == "token") {
                out.append(parameter.substr(0, equals + 1)).append("[redacted]");
            } else {
                out.append(parameter);
            }
            if (end == text.size()) break;
            out.push_back(text[end]);
            at = end + 1;
            if (text[end] != '&') {  // the query ended: the rest as it is
                out.append(text.substr(at));
                break;
            }
        }
        return out;
    }

    /// The channels compiled in at all. websocketpp builds its devel and frame dumps (a
    /// std::stringstream per write, a hex dump per read) whenever this says yes, even with the
    /// channel off at run time: only what the manager turns on is compiled in.
    constexpr bool static_test(level channel) const { return (channel & compiled_in) != 0; }
    bool dynamic_test(level channel) const {
        return (channels_ & channel) != 0 && target_ && target_->enabled(level_of(channel));
    }

private:
    static constexpr level compiled_in =
        std::is_same_v<Names, websocketpp::log::alevel>
            ? level{websocketpp::log::alevel::connect | websocketpp::log::alevel::disconnect |
                    websocketpp::log::alevel::fail}
            : level{websocketpp::log::elevel::library | websocketpp::log::elevel::info |
                    websocketpp::log::elevel::warn | websocketpp::log::elevel::rerror |
                    websocketpp::log::elevel::fatal};

    static bool is_client_noise(std::string_view text) {
        for (std::string_view pattern :
             {"Operation aborted", "Handshake ended with HTTP error", "handle_read_handshake error",
              "End of File", "TLS handshake failed"}) {
            if (text.find(pattern) != std::string_view::npos) return true;
        }
        return false;
    }

    LogLevel level_of(level channel) const {
        if (!error_channel_) return LogLevel::debug;
        namespace el = websocketpp::log;
        if (channel & (el::elevel::rerror | el::elevel::fatal)) return LogLevel::error;
        if (channel & el::elevel::warn) return LogLevel::warning;
        if (channel & el::elevel::info) return LogLevel::info;
        return LogLevel::debug;
    }

    level channels_ = 0;
    bool error_channel_;
    std::shared_ptr<logger const> target_;
};

}  // namespace detail

namespace config {

/// Plain `ws://` over TCP, websocketpp's asio transport, multi-threaded (a strand per
/// connection). The default Config of WebSocketManager.
struct plain : websocketpp::config::asio {
    using type = plain;
    using base = websocketpp::config::asio;

    using concurrency_type = base::concurrency_type;
    using request_type = base::request_type;
    using response_type = base::response_type;
    using message_type = base::message_type;
    using con_msg_manager_type = base::con_msg_manager_type;
    using endpoint_msg_manager_type = base::endpoint_msg_manager_type;
    using rng_type = base::rng_type;

    using alog_type = detail::websocketpp_log<concurrency_type, websocketpp::log::alevel>;
    using elog_type = detail::websocketpp_log<concurrency_type, websocketpp::log::elevel>;
    using connection_base = detail::connection_data;
    /// permessage-deflate negotiated and client frames inflated; the manager compresses
    /// what it sends itself (detail/permessage_deflate.hpp), when Options::compression is on.
    using permessage_deflate_type = detail::permessage_deflate;

    /// websocketpp reads into a buffer inside each connection object (16 KiB by default).
    /// Clients send small JSON actions, and an idle connection should cost little; a larger
    /// frame takes several reads (docs/performance.md, "What bounds the rest").
    static const size_t connection_read_buffer_size = 512;

    struct transport_config : base::transport_config {
        using concurrency_type = type::concurrency_type;
        using alog_type = type::alog_type;
        using elog_type = type::elog_type;
        using request_type = type::request_type;
        using response_type = type::response_type;
        using socket_type = websocketpp::transport::asio::basic_socket::endpoint;
    };
    /// websocketpp's asio transport, but every write of a connection goes through one
    /// ordered path (detail/websocketpp_socket_writer.hpp).
    using transport_type = detail::owned_write_endpoint<transport_config>;
};

}  // namespace config
}  // namespace wsmanager
