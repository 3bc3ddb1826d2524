// SPDX-License-Identifier: BSL-1.0
#pragma once

// `wss://`: WebSocketManager<config::tls>. Kept out of <wsmanager/wsmanager.hpp> so that
// programs serving plain ws:// (often behind a proxy that terminates TLS) do not compile
// Asio's SSL layer or initialize OpenSSL.
//
//   #include <wsmanager/tls.hpp>
//   wsmanager::Options options = wsmanager::Options::from_env();  // WEBSOCKET_TLS_CERT/_KEY
//   wsmanager::WebSocketManager<wsmanager::config::tls> manager(options);

#include <memory>
#include <string>
#include <system_error>

#include <asio/ssl/context.hpp>
#include <websocketpp/config/asio.hpp>

#include <wsmanager/config.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/manager.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::config {

/**
 * `wss://`: TLS over TCP (websocketpp's asio transport with its TLS socket), otherwise as
 * config::plain. The metrics listener (Options::metrics_address), when there is one, serves
 * HTTPS with the same certificate.
 *
 * The certificate chain and private key are PEM files named by Options::tls_cert and
 * Options::tls_key, loaded once by start_server, which fails when they cannot be loaded
 * (error::tls_not_configured when either is unset; OpenSSL's error otherwise). TLS 1.2 and
 * newer only.
 *
 * For more (client certificates, cipher lists, a key in memory) derive a config and hide
 * make_tls_context:
 * @code
 * struct my_tls : wsmanager::config::tls {
 *     static std::shared_ptr<asio::ssl::context> make_tls_context(
 *             wsmanager::Options const& options, std::error_code& ec) {
 *         auto context = tls::make_tls_context(options, ec);
 *         if (context) SSL_CTX_set_ciphersuites(context->native_handle(), "...");
 *         return context;
 *     }
 * };
 * @endcode
 */
struct tls : websocketpp::config::asio_tls {
    using type = tls;
    using base = websocketpp::config::asio_tls;

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

    /// As config::plain (the TLS stream reads records into a buffer of its own).
    static const size_t connection_read_buffer_size = plain::connection_read_buffer_size;

    struct transport_config : base::transport_config {
        using concurrency_type = type::concurrency_type;
        using alog_type = type::alog_type;
        using elog_type = type::elog_type;
        using request_type = type::request_type;
        using response_type = type::response_type;
        using socket_type = websocketpp::transport::asio::tls_socket::endpoint;
        /// How long a closing connection waits for the peer's TLS close_notify after
        /// sending its own (websocketpp's default is 5 s). Waiting is optional (RFC 8446
        /// section 6.1) and some clients, websocketpp's own among them, never answer, so
        /// stop_server would take this long.
        static long const timeout_socket_shutdown = 1000;
    };
    /// websocketpp's asio transport, but every write of a connection goes through one
    /// ordered path (detail/websocketpp_socket_writer.hpp).
    using transport_type = detail::owned_write_endpoint<transport_config>;

    /// The server's TLS context, shared by every connection; called once per start_server.
    /// On failure sets `ec` and returns null.
    static std::shared_ptr<asio::ssl::context> make_tls_context(Options const& options,
                                                                std::error_code& ec) {
        if (options.tls_cert.empty() || options.tls_key.empty()) {
            ec = error::tls_not_configured;
            return nullptr;
        }
        auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
        context->set_options(asio::ssl::context::default_workarounds |
                                 asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                                 asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                                 asio::ssl::context::single_dh_use,
                             ec);
        if (!ec) context->use_certificate_chain_file(options.tls_cert, ec);
        if (!ec) context->use_private_key_file(options.tls_key, asio::ssl::context::pem, ec);
        if (ec) return nullptr;
        return context;
    }
};

}  // namespace wsmanager::config
