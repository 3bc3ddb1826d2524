// SPDX-License-Identifier: BSL-1.0
#pragma once

// The transport (detail/transport.hpp) on websocketpp: the endpoint and its settings, the
// routing of websocketpp's logs into the manager's logger, listening and the accept loop,
// the TLS context, and the optional second listener for the built-in HTTP routes
// (Options::metrics_address). It turns websocketpp's handlers into transport_events and each
// admitted connection into a websocketpp_session. With websocketpp_session, the only code
// that knows Config.
//
// Threads: websocketpp's handlers run on each connection's strand. The acceptor is touched
// only on the manager strand (listen, stop_listening, and the accept loop, which re-arms
// there): websocketpp's own loop re-arms from the accepted connection's strand, which races
// stop_listening and listen when the io_context has several threads.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <websocketpp/server.hpp>

#include <wsmanager/config.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/transport.hpp>
#include <wsmanager/detail/uri.hpp>
#include <wsmanager/detail/websocketpp_session.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/options.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager::detail {

/// A config whose connections speak TLS (config::tls, or one derived from it): it makes the
/// server's TLS context.
template <class Config>
concept tls_config = requires(Options const& options, std::error_code& ec) {
    Config::make_tls_context(options, ec);
};

/// A request's headers keyed by lower-case name (what HandshakeRequest and HttpRequest hold).
template <class Request>
std::map<std::string, std::string> lowercase_headers(Request const& request) {
    std::map<std::string, std::string> headers;
    for (auto const& [name, value] : request.get_headers()) {
        headers.emplace(to_lower_ascii(name), value);
    }
    return headers;
}

template <class Config>
class websocketpp_transport final
    : public transport,
      public std::enable_shared_from_this<websocketpp_transport<Config>> {
public:
    using server_type = websocketpp::server<Config>;
    using connection_ptr = typename server_type::connection_ptr;
    using session_type = websocketpp_session<Config>;
    using strand_type = asio::strand<asio::io_context::executor_type>;

    static_assert(std::is_base_of_v<connection_data, typename Config::connection_base>,
                  "wsmanager configs must use wsmanager::detail::connection_data");

    websocketpp_transport(asio::io_context& context, strand_type manager_strand, Options options,
                          std::shared_ptr<logger const> log,
                          std::shared_ptr<manager_counters> counters)
        : context_(context),
          manager_strand_(std::move(manager_strand)),
          options_(std::move(options)),
          log_(std::move(log)),
          counters_(std::move(counters)),
          environment_(std::make_shared<session_environment>(session_environment{
              options_.max_send_buffer, options_.max_frames_per_second,
              2 * options_.max_message_size, options_.close_on_token_expiry,
              options_.compression_min_size, log_, counters_})),
          accept_retry_(manager_strand_) {
        attach_logs(server_);
        server_.set_access_channels(websocketpp::log::alevel::connect |
                                    websocketpp::log::alevel::disconnect |
                                    websocketpp::log::alevel::fail);
        server_.set_error_channels(websocketpp::log::elevel::info | websocketpp::log::elevel::warn |
                                   websocketpp::log::elevel::rerror |
                                   websocketpp::log::elevel::fatal);
        server_.init_asio(&context_);
        server_.set_reuse_addr(true);
        server_.set_listen_backlog(asio::socket_base::max_listen_connections);
        server_.set_max_message_size(options_.max_message_size);
        server_.set_open_handshake_timeout(options_.handshake_timeout.count());
        server_.set_close_handshake_timeout(options_.close_timeout.count());
        server_.set_pong_timeout(options_.ping_timeout.count());
        server_.set_max_http_body_size(options_.max_http_body_size);
        server_.set_user_agent(options_.server_name);
        // No Nagle: a lone frame leaves at once (the cork gathers bursts itself), and no
        // 40 ms wait for a delayed ACK behind a small write. Set in the TCP pre-init handler,
        // which runs once the socket is accepted: websocketpp calls its socket init handler
        // before the accept, where the option cannot be set on a socket not yet open.
        server_.set_tcp_pre_init_handler([this](websocketpp::connection_hdl hdl) {
            std::error_code ec;
            auto con = server_.get_con_from_hdl(std::move(hdl), ec);
            if (ec) return;
            lowest_layer(con->get_socket()).set_option(asio::ip::tcp::no_delay(true), ec);
        });
    }

    websocketpp_transport(websocketpp_transport const&) = delete;
    websocketpp_transport& operator=(websocketpp_transport const&) = delete;

    /// websocketpp keeps the upgrade's request and response in the connection for the
    /// connection's life. Nothing reads their headers after the open (the gate read what it
    /// needs), so they are dropped: an idle connection is cheaper by their map and strings.
    template <class Connection>
    static void release_handshake_headers(Connection& con) {
        using request_type = typename Connection::request_type;
        using response_type = typename Connection::response_type;
        // get_request() and get_response() are const views of members of a non-const object.
        release_headers(const_cast<request_type&>(con.get_request()));
        release_headers(const_cast<response_type&>(con.get_response()));
    }

    static void release_headers(websocketpp::http::parser::parser& message) {
        std::vector<std::string> names;
        names.reserve(message.get_headers().size());
        for (auto const& header : message.get_headers()) names.push_back(header.first);
        for (auto const& name : names) message.remove_header(name);
    }

    /// Installs websocketpp's handlers, which hold weak references to this transport and
    /// report to `events`.
    void attach(std::weak_ptr<transport_events> events) {
        events_ = std::move(events);
        std::weak_ptr<websocketpp_transport> weak = this->shared_from_this();
        server_.set_validate_handler([weak](websocketpp::connection_hdl hdl) {
            auto self = weak.lock();
            return self && self->on_validate(hdl);
        });
        server_.set_open_handler(on_session(weak, [](auto& self, auto& session, auto& con) {
            con.wsmanager_handshake.reset();  // upgraded: no longer a handshake in progress
            release_handshake_headers(con);
            session->arm_expiry(con);
            if (auto events = self.events_.lock()) events->on_session_open(session);
        }));
        server_.set_close_handler(on_session(weak, [](auto& self, auto& session, auto& con) {
            session->connection_closed();
            if (auto events = self.events_.lock()) {
                events->on_session_closed(session, session_type::close_code_of(con));
            }
        }));
        server_.set_pong_handler(
            [weak](websocketpp::connection_hdl hdl, std::string) {
                with_session(weak, hdl, [](auto&, auto& session, auto&) { session->on_pong(); });
            });
        server_.set_pong_timeout_handler([weak](websocketpp::connection_hdl hdl, std::string) {
            with_session(weak, hdl,
                         [](auto&, auto& session, auto& con) { session->on_pong_timeout(con); });
        });
        server_.set_message_handler(
            [weak](websocketpp::connection_hdl hdl, typename server_type::message_ptr message) {
                with_session(weak, hdl, [&](auto& self, auto& session, auto& con) {
                    auto payload = session->accept_frame(con, message);
                    if (!payload) return;
                    if (auto events = self.events_.lock()) {
                        events->on_session_frame(session, std::move(*payload));
                    }
                });
            });
        server_.set_http_handler([weak](websocketpp::connection_hdl hdl) {
            if (auto self = weak.lock()) {
                self->on_http(self->server_, hdl, http_routes::listener::websocket_port);
            }
        });
        server_.set_fail_handler([weak](websocketpp::connection_hdl hdl) {
            auto self = weak.lock();
            if (!self) return;
            // Refusals were counted with their reason; anything else failed the handshake.
            // A pending accept aborted by stop_listening fails too, and is no client.
            auto con = self->connection_from(self->server_, hdl);
            if (!con) return;
            con->wsmanager_handshake.reset();
            if (!con->wsmanager_refused && con->get_ec() != asio::error::operation_aborted) {
                self->counters_->count_rejected(reject_reason::handshake);
            }
        });
        init_metrics_server(weak);
    }

    std::error_code listen() override {
        ++listen_generation_;  // accept loops of an earlier start must not re-arm
        if constexpr (tls_config<Config>) {
            if (auto ec = load_tls_context()) return ec;
        }
        if (auto ec = listen_on(server_, options_.host, options_.port)) {
            log_->write(LogLevel::error, "start_failed",
                        "cannot listen on " + options_.host + ":" +
                            std::to_string(options_.port) + ": " + ec.message());
            return ec;
        }
        if (metrics_server_) {
            auto const address = split_host_port(options_.metrics_address);
            if (auto ec = listen_on(*metrics_server_, address->first, address->second)) {
                log_->write(LogLevel::error, "start_failed",
                            "cannot listen on metrics address " + options_.metrics_address +
                                ": " + ec.message());
                std::error_code ignored;
                server_.stop_listening(ignored);
                return ec;
            }
        }
        asio::error_code ec;
        auto const local = server_.get_local_endpoint(ec);
        bound_port_ = ec ? options_.port : local.port();
        return {};
    }

    void stop_listening() override {
        ++listen_generation_;
        accept_retry_.cancel();
        std::error_code ignored;
        if (server_.is_listening()) server_.stop_listening(ignored);
        if (metrics_server_ && metrics_server_->is_listening()) {
            metrics_server_->stop_listening(ignored);
        }
    }

    std::uint16_t local_port() const override { return bound_port_; }

private:
    /// The TCP socket under a plain or a TLS stream.
    template <class Socket>
    static auto& lowest_layer(Socket& socket) {
        if constexpr (requires { socket.lowest_layer(); }) {
            return socket.lowest_layer();
        } else {
            return socket;
        }
    }

    /// A websocketpp handler that looks up the connection's session and calls
    /// `f(transport&, session_ptr&, connection&)`.
    template <class F>
    static auto on_session(std::weak_ptr<websocketpp_transport> weak, F f) {
        return [weak, f](websocketpp::connection_hdl hdl) { with_session(weak, hdl, f); };
    }

    template <class F>
    static void with_session(std::weak_ptr<websocketpp_transport> const& weak,
                             websocketpp::connection_hdl hdl, F&& f) {
        auto self = weak.lock();
        if (!self) return;
        auto con = self->connection_from(self->server_, std::move(hdl));
        if (!con || !con->wsmanager_session) return;
        auto session = std::static_pointer_cast<session_type>(con->wsmanager_session);
        f(*self, session, *con);
    }

    static connection_ptr connection_from(server_type& server, websocketpp::connection_hdl hdl) {
        std::error_code ec;
        auto con = server.get_con_from_hdl(std::move(hdl), ec);
        return ec ? nullptr : con;
    }

    void attach_logs(server_type& server) {
        server.get_alog().attach(log_);
        server.get_elog().attach(log_);
        server.clear_access_channels(websocketpp::log::alevel::all);
        server.clear_error_channels(websocketpp::log::elevel::all);
    }

    /// Connection strand: the opening handshake, admitted or refused by the engine.
    bool on_validate(websocketpp::connection_hdl hdl) {
        auto con = connection_from(server_, hdl);
        auto events = events_.lock();
        if (!con || !events) return false;
        auto verdict = events->admit(handshake_attempt{
            con->get_resource(), lowercase_headers(con->get_request()),
            con->get_remote_endpoint()});
        if (!verdict.admitted) {
            con->wsmanager_refused = true;
            con->set_status(static_cast<websocketpp::http::status_code::value>(verdict.http_status));
            con->set_body(verdict.reason);
            for (auto const& [name, value] : verdict.headers) con->append_header(name, value);
            return false;
        }
        for (auto const& offered : con->get_requested_subprotocols()) {
            if (offered == protocol::subprotocol) {
                std::error_code ec;
                con->select_subprotocol(offered, ec);
                break;
            }
        }
        auto session = std::make_shared<session_type>(
            con, next_connection_id_.fetch_add(1, std::memory_order_relaxed),
            std::move(verdict.user_id), environment_);
        session->set_subprotocol(con->get_subprotocol());
        // The processor has negotiated permessage-deflate already (detail/permessage_deflate.hpp);
        // with Options::compression off its answer is taken back before the response goes.
        if (!con->get_response_header("Sec-WebSocket-Extensions").empty()) {
            if (options_.compression) {
                session->set_deflate(true);
            } else {
                con->remove_header("Sec-WebSocket-Extensions");
            }
        }
        session->set_expiry(verdict.expires_at);
        con->wsmanager_session = std::move(session);
        con->frames().configure(options_.max_send_buffer, counters_);
        con->set_closing_check([raw = con.get()] {
            auto const state = raw->get_state();
            return state == websocketpp::session::state::closing ||
                   state == websocketpp::session::state::closed;
        });
        return true;
    }

    /// Connection strand: a plain HTTP request on either listener.
    void on_http(server_type& server, websocketpp::connection_hdl hdl,
                 http_routes::listener on) {
        auto con = connection_from(server, hdl);
        auto events = events_.lock();
        if (!con) return;
        if (!events) return write_http(*con, http_routes::not_found());
        auto const& resource = con->get_resource();
        auto const question = resource.find('?');
        HttpRequest request;
        request.method = con->get_request().get_method();
        request.path = resource.substr(0, question);
        if (question != std::string::npos) request.query = resource.substr(question + 1);
        request.headers = lowercase_headers(con->get_request());
        request.body = con->get_request_body();
        request.remote_endpoint = con->get_remote_endpoint();
        // A late answer is posted to this connection's strand, so it runs after this
        // handler, which defers the response first.
        auto answer = events->on_http_request(request, on, [con](HttpResponse response) {
            con->get_strand()->post([con, response = std::move(response)] {
                write_http(*con, response);
                std::error_code ec;
                con->send_http_response(ec);
            });
        });
        if (answer) return write_http(*con, *answer);
        if (con->defer_http_response()) {
            write_http(*con, HttpResponse{503, "text/plain; charset=utf-8", "unavailable\n", {}});
        }
    }

    template <class Connection>
    static void write_http(Connection& con, HttpResponse const& response) {
        con.set_status(static_cast<websocketpp::http::status_code::value>(response.status));
        con.replace_header("Content-Type", response.content_type);
        for (auto const& [name, value] : response.headers) con.append_header(name, value);
        con.set_body(response.body);
    }

    /// A second listener for the built-in endpoints when Options::metrics_address is set.
    void init_metrics_server(std::weak_ptr<websocketpp_transport> const& weak) {
        if (options_.metrics_address.empty() || !options_.http_endpoints) return;
        metrics_server_ = std::make_unique<server_type>();
        attach_logs(*metrics_server_);
        metrics_server_->set_error_channels(websocketpp::log::elevel::rerror |
                                            websocketpp::log::elevel::fatal);
        metrics_server_->init_asio(&context_);
        metrics_server_->set_reuse_addr(true);
        metrics_server_->set_user_agent(options_.server_name);
        metrics_server_->set_validate_handler([](websocketpp::connection_hdl) { return false; });
        metrics_server_->set_http_handler([weak](websocketpp::connection_hdl hdl) {
            if (auto self = weak.lock()) {
                self->on_http(*self->metrics_server_, hdl, http_routes::listener::metrics_port);
            }
        });
    }

    /// TLS configs: loads the certificate and key once per start; every connection of both
    /// listeners shares the context. A file that cannot be loaded fails start_server.
    std::error_code load_tls_context() {
        std::error_code ec;
        auto context = Config::make_tls_context(options_, ec);
        if (!ec && !context) ec = error::tls_not_configured;
        if (ec) {
            log_->write(LogLevel::error, "start_failed",
                        "cannot set up TLS (certificate '" + options_.tls_cert + "', key '" +
                            options_.tls_key + "'): " + ec.message());
            return ec;
        }
        auto handler = [context](websocketpp::connection_hdl) { return context; };
        server_.set_tls_init_handler(handler);
        if (metrics_server_) metrics_server_->set_tls_init_handler(handler);
        return {};
    }

    std::error_code listen_on(server_type& server, std::string const& host, std::uint16_t port) {
        std::error_code ec;
        asio::ip::tcp::endpoint endpoint;
        auto const address = asio::ip::make_address(host, ec);
        if (!ec) {
            endpoint = asio::ip::tcp::endpoint(address, port);
        } else {
            asio::ip::tcp::resolver resolver(context_);
            auto results = resolver.resolve(host, std::to_string(port),
                                            asio::ip::tcp::resolver::passive, ec);
            if (ec) return ec;
            endpoint = results.begin()->endpoint();
        }
        server.listen(endpoint, ec);
        if (!ec) accept_next(server, listen_generation_);
        if (ec && server.is_listening()) {
            std::error_code ignored;
            server.stop_listening(ignored);
        }
        return ec;
    }

    /// Manager strand: arms one accept; its completion re-arms from the manager strand. The
    /// WebSocket listener pauses while Options::max_handshakes_in_flight handshakes are in
    /// progress (the next one to end resumes it), and waits a little longer after each
    /// failed accept (EMFILE: no descriptor left; re-arming at once would spin).
    void accept_next(server_type& server, std::uint64_t generation) {
        bool const websocket_port = &server == &server_;
        if (websocket_port && handshakes_in_flight_.load(std::memory_order_relaxed) >=
                                  options_.max_handshakes_in_flight) {
            paused_generation_.store(generation, std::memory_order_seq_cst);
            // A handshake that ended while we looked would not have seen the pause.
            if (handshakes_in_flight_.load(std::memory_order_seq_cst) >=
                    options_.max_handshakes_in_flight ||
                paused_generation_.exchange(0, std::memory_order_seq_cst) != generation) {
                return;
            }
        }
        auto con = server.get_connection();
        if (!con) return;
        std::error_code ec;
        server.async_accept(
            std::static_pointer_cast<typename server_type::transport_con_type>(con),
            [weak = this->weak_from_this(), &server, con, generation,
             websocket_port](std::error_code const& accepted) {
                // On the new connection's strand, as websocketpp's own handle_accept.
                auto self = weak.lock();
                if (accepted) {
                    con->terminate(accepted);
                } else {
                    if (self && websocket_port) con->wsmanager_handshake = self->handshake_slot();
                    con->start();
                }
                if (!self) return;
                asio::post(self->manager_strand_, [self, &server, generation, accepted] {
                    if (self->listen_generation_ != generation || !server.is_listening()) return;
                    if (accepted && accepted != asio::error::operation_aborted) {
                        self->accept_later(server, generation, accepted);
                    } else {
                        self->accept_backoff_ = {};
                        self->accept_next(server, generation);
                    }
                });
            },
            ec);
        if (ec) con->terminate(std::error_code{});
    }

    /// Manager strand: re-arms after a failed accept, 10 ms doubling to 1 s.
    void accept_later(server_type& server, std::uint64_t generation, std::error_code failure) {
        using std::chrono::milliseconds;
        accept_backoff_ = std::clamp(accept_backoff_ * 2, milliseconds(10), milliseconds(1000));
        manager_counters::add(counters_->accept_failures);
        log_->write(LogLevel::warning, "accept_failed",
                    failure.message() + "; accepting again in " +
                        std::to_string(accept_backoff_.count()) + " ms");
        accept_retry_.expires_after(accept_backoff_);
        accept_retry_.async_wait([weak = this->weak_from_this(), &server,
                                  generation](std::error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->listen_generation_ != generation || !server.is_listening()) {
                return;
            }
            self->accept_next(server, generation);
        });
    }

    /// One handshake in progress: released when the connection opens, fails or goes.
    std::shared_ptr<void> handshake_slot() {
        handshakes_in_flight_.fetch_add(1, std::memory_order_relaxed);
        return std::shared_ptr<void>(nullptr, [weak = this->weak_from_this()](void*) {
            auto self = weak.lock();
            if (!self) return;
            self->handshakes_in_flight_.fetch_sub(1, std::memory_order_seq_cst);
            auto const generation = self->paused_generation_.exchange(0, std::memory_order_seq_cst);
            if (generation == 0) return;
            asio::post(self->manager_strand_, [self, generation] {
                if (self->listen_generation_ == generation && self->server_.is_listening()) {
                    self->accept_next(self->server_, generation);
                }
            });
        });
    }

    asio::io_context& context_;
    strand_type manager_strand_;
    Options const options_;
    std::shared_ptr<logger const> log_;
    std::shared_ptr<manager_counters> counters_;
    std::shared_ptr<session_environment const> environment_;
    std::weak_ptr<transport_events> events_;
    server_type server_;
    std::unique_ptr<server_type> metrics_server_;
    std::atomic<std::uint64_t> next_connection_id_{1};
    std::atomic<std::size_t> handshakes_in_flight_{0};  ///< on the WebSocket listener
    std::atomic<std::uint64_t> paused_generation_{0};   ///< its accept loop waits for a slot

    // Manager strand only.
    std::uint64_t listen_generation_ = 0;  ///< bumped by every listen and stop
    std::uint16_t bound_port_ = 0;
    asio::steady_timer accept_retry_;
    std::chrono::milliseconds accept_backoff_{0};
};

}  // namespace wsmanager::detail
