// SPDX-License-Identifier: BSL-1.0
#pragma once

// The manager's engine: the websocketpp endpoint, the registries of connections, users and
// topics, and the state machine of the server. See docs/architecture.md.
//
// Threads: every registry below lives on `strand_` (the manager strand); websocketpp's
// handlers run on each connection's own strand and hop onto the manager strand with a post.
// Everything written to a connection is written from that connection's strand.

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <asio/associated_cancellation_slot.hpp>
#include <asio/cancellation_type.hpp>
#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <websocketpp/server.hpp>

#include <wsmanager/action.hpp>
#include <wsmanager/detail/completion.hpp>
#include <wsmanager/detail/confirmation_registry.hpp>
#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/random_id.hpp>
#include <wsmanager/detail/uri.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/handshake.hpp>
#include <wsmanager/http.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager::detail {

/// Close codes the manager sends (RFC 6455 section 7.4.1).
namespace close_code {
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t internal_error = 1011;
inline constexpr std::uint16_t try_again_later = 1013;
}  // namespace close_code

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
class manager_core : public std::enable_shared_from_this<manager_core<Config>> {
public:
    using server_type = websocketpp::server<Config>;
    using connection_type = typename server_type::connection_type;
    using connection_ptr = typename server_type::connection_ptr;
    using strand_type = asio::strand<asio::io_context::executor_type>;

    static_assert(std::is_same_v<typename Config::message_type, frame_message>,
                  "wsmanager configs must use websocketpp's default message type");
    static_assert(std::is_base_of_v<connection_data, typename Config::connection_base>,
                  "wsmanager configs must use wsmanager::detail::connection_data");

    manager_core(asio::io_context& context, Options options)
        : options_(std::move(options)),
          logger_(std::make_shared<logger>(options_.log_sink, options_.log_level)),
          context_(context),
          strand_(asio::make_strand(context.get_executor())),
          keepalive_timer_(strand_) {
        options_.validate();
        counters_.max_connections = options_.max_connections;
        server_.get_alog().attach(logger_);
        server_.get_elog().attach(logger_);
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.set_access_channels(websocketpp::log::alevel::connect |
                                    websocketpp::log::alevel::disconnect |
                                    websocketpp::log::alevel::fail);
        server_.clear_error_channels(websocketpp::log::elevel::all);
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
    }

    manager_core(manager_core const&) = delete;
    manager_core& operator=(manager_core const&) = delete;

    /// Installs websocketpp's handlers; they hold weak references to this core.
    void install_handlers() {
        std::weak_ptr<manager_core> weak = this->shared_from_this();
        server_.set_validate_handler([weak](websocketpp::connection_hdl hdl) {
            auto self = weak.lock();
            return self && self->on_validate(hdl);
        });
        server_.set_open_handler([weak](websocketpp::connection_hdl hdl) {
            if (auto self = weak.lock()) self->on_open(hdl);
        });
        server_.set_close_handler([weak](websocketpp::connection_hdl hdl) {
            if (auto self = weak.lock()) self->on_close(hdl);
        });
        server_.set_message_handler(
            [weak](websocketpp::connection_hdl hdl, typename server_type::message_ptr message) {
                if (auto self = weak.lock()) self->on_frame(hdl, message);
            });
        server_.set_http_handler([weak](websocketpp::connection_hdl hdl) {
            if (auto self = weak.lock()) self->on_http(hdl);
        });
        server_.set_pong_handler([weak](websocketpp::connection_hdl hdl, std::string) {
            if (auto self = weak.lock()) {
                if (auto con = self->connection_from(hdl)) con->awaiting_pong = false;
            }
        });
        server_.set_pong_timeout_handler([weak](websocketpp::connection_hdl hdl, std::string) {
            if (auto self = weak.lock()) self->on_pong_timeout(hdl);
        });
        server_.set_fail_handler([weak](websocketpp::connection_hdl hdl) {
            auto self = weak.lock();
            if (!self) return;
            // Refusals were counted with their reason; anything else failed the handshake.
            // A pending accept aborted by stop_listening fails too, and is no client.
            if (auto con = self->connection_from(hdl);
                con && !con->refused && con->get_ec() != asio::error::operation_aborted) {
                self->counters_.count_rejected(reject_reason::handshake);
            }
        });
        init_metrics_server();
    }

    // ---- host-facing operations (called from any thread) -------------------------------

    template <class Handler>
    void start(Handler handler) {
        post_to_strand([self = this->shared_from_this(),
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            std::move(done).complete(self->start_listening());
        });
    }

    template <class Handler>
    void stop(Handler handler) {
        post_to_strand([self = this->shared_from_this(),
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            self->begin_stop();
            if (self->phase_ == phase::stopped) {
                std::move(done).complete(std::error_code{});
            } else {
                self->stop_waiters_.push_back(
                    share_completion<void(std::error_code)>(std::move(done)));
            }
        });
    }

    template <class Handler>
    void broadcast(Message message, Handler handler) {
        post_to_strand([self = this->shared_from_this(), message = std::move(message),
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            auto const started = std::chrono::steady_clock::now();
            for (auto& [id, entry] : self->connections_) {
                self->send_frame(entry.connection, message.frame());
            }
            auto const queued = self->connections_.size();
            self->counters_.broadcast_fanout_seconds.observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
                    .count());
            std::move(done).complete(std::error_code{}, queued);
        });
    }

    template <class Handler>
    void send_to_user(std::string user_id, Message message, Handler handler) {
        post_to_strand([self = this->shared_from_this(), user_id = std::move(user_id),
                        message = std::move(message),
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            std::move(done).complete(std::error_code{}, self->send_to_user_now(user_id, message));
        });
    }

    template <class Handler>
    void publish(std::string topic, Message message, Handler handler) {
        post_to_strand([self = this->shared_from_this(), topic = std::move(topic),
                        message = std::move(message),
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            std::move(done).complete(std::error_code{}, self->publish_now(topic, message));
        });
    }

    template <class Handler>
    void notify(TaskStepResult result, std::string user_id, std::string task_id, int step,
                std::chrono::milliseconds timeout, Handler handler) {
        pending_confirmation entry;
        entry.callback_id = random_id();
        entry.user_id = std::move(user_id);
        entry.task_id = std::move(task_id);
        entry.step = step;
        entry.result = std::move(result);
        entry.created = pending_confirmation::clock::now();
        entry.deadline = entry.created + timeout;
        install_canceller(handler, [weak = this->weak_from_this(), id = entry.callback_id] {
            if (auto self = weak.lock()) {
                self->post_to_strand([self, id] {
                    self->end_confirmation(
                        id, UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled},
                        asio::error::operation_aborted);
                });
            }
        });
        post_to_strand([self = this->shared_from_this(), entry = std::move(entry),
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            entry.complete =
                share_completion<void(std::error_code, UserConfirmation)>(std::move(done));
            self->begin_confirmation(std::move(entry));
        });
    }

    template <class Handler>
    void heartbeat(std::string user_id, std::string task_id, std::chrono::milliseconds interval,
                   Handler handler) {
        auto const id = next_operation_id_.fetch_add(1, std::memory_order_relaxed);
        install_canceller(handler, [weak = this->weak_from_this(), id] {
            if (auto self = weak.lock()) {
                self->post_to_strand(
                    [self, id] { self->end_heartbeat(id, asio::error::operation_aborted); });
            }
        });
        post_to_strand([self = this->shared_from_this(), id, user_id = std::move(user_id),
                        task_id = std::move(task_id), interval,
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            if (self->phase_ != phase::running) {
                std::move(done).complete(std::error_code(error::not_running));
                return;
            }
            if (interval.count() <= 0 || user_id.empty() || task_id.empty() ||
                !is_valid_utf8(user_id) || !is_valid_utf8(task_id)) {
                std::move(done).complete(std::error_code(asio::error::invalid_argument));
                return;
            }
            auto& entry = self->heartbeats_[id];
            entry.user_id = std::move(user_id);
            entry.task_id = std::move(task_id);
            entry.interval = interval;
            entry.timer = std::make_unique<asio::steady_timer>(self->strand_);
            entry.complete = share_completion<void(std::error_code)>(std::move(done));
            self->update_pending_count();
            self->heartbeat_tick(id);
        });
    }

    template <class Handler>
    void send_with_ack(std::string user_id, Message message, std::chrono::milliseconds timeout,
                       Handler handler) {
        auto message_id = random_id();
        install_canceller(handler, [weak = this->weak_from_this(), message_id] {
            if (auto self = weak.lock()) {
                self->post_to_strand([self, message_id] {
                    self->end_ack(message_id, false, asio::error::operation_aborted);
                });
            }
        });
        post_to_strand([self = this->shared_from_this(), user_id = std::move(user_id),
                        message = std::move(message), message_id = std::move(message_id),
                        timeout,
                        done = pending_completion<Handler>(std::move(handler),
                                                           context_.get_executor())]() mutable {
            if (self->phase_ != phase::running) {
                std::move(done).complete(std::error_code(error::not_running), false);
                return;
            }
            auto framed = protocol::with_ack_request(message, message_id);
            if (!framed) {
                std::move(done).complete(std::error_code(error::invalid_message), false);
                return;
            }
            if (self->send_to_user_now(user_id, *framed) == 0) {
                std::move(done).complete(std::error_code{}, false);  // nobody to ack it
                return;
            }
            auto& entry = self->acks_[message_id];
            entry.user_id = std::move(user_id);
            entry.timer = std::make_unique<asio::steady_timer>(self->strand_, timeout);
            entry.complete = share_completion<void(std::error_code, bool)>(std::move(done));
            self->update_pending_count();
            entry.timer->async_wait([weak = self->weak_from_this(), message_id](std::error_code ec) {
                if (ec) return;
                if (auto self = weak.lock()) self->end_ack(message_id, false, {});
            });
        });
    }

    void set_action_handler(std::string name, ActionHandler handler) {
        post_to_strand([self = this->shared_from_this(), name = std::move(name),
                        handler = std::move(handler)]() mutable {
            if (handler) {
                self->action_handlers_[name] = std::move(handler);
            } else {
                self->action_handlers_.erase(name);
            }
        });
    }

    void set_cancel_handler(std::function<bool(CancelRequest const&)> handler) {
        post_to_strand([self = this->shared_from_this(), handler = std::move(handler)]() mutable {
            self->cancel_handler_ = std::move(handler);
        });
    }

    /// Must be called before start_server; the handshake reads it without the strand.
    void set_authenticator(Authenticator authenticator) {
        authenticator_ = std::move(authenticator);
    }

    void set_subscribe_authorizer(
        std::function<bool(std::string const&, std::string const&)> authorizer) {
        post_to_strand([self = this->shared_from_this(), authorizer = std::move(authorizer)]() mutable {
            self->subscribe_authorizer_ = std::move(authorizer);
        });
    }

    /// Must be called before start_server; HTTP requests read it without the strand.
    void set_http_handler(HttpHandler handler) { http_handler_ = std::move(handler); }

    /// The Prometheus text of every metric (what GET /metrics serves).
    std::string metrics_text() const { return counters_.render_prometheus(); }

    std::size_t connection_count() const noexcept {
        return counters_.active_connections.load(std::memory_order_relaxed);
    }

    std::uint16_t local_port() const noexcept {
        return counters_.port.load(std::memory_order_relaxed);
    }

    Status status() const {
        auto const relaxed = std::memory_order_relaxed;
        Status s;
        s.running = counters_.running.load(relaxed);
        s.active_connections = counters_.active_connections.load(relaxed);
        s.pending_callbacks = counters_.pending_callbacks.load(relaxed);
        s.users_online = counters_.users_online.load(relaxed);
        s.topics = counters_.topics.load(relaxed);
        s.port = s.running ? counters_.port.load(relaxed) : 0;
        if (s.running) {
            s.uptime_s = static_cast<double>(steady_ms() - counters_.started_at_ms.load(relaxed)) /
                         1000.0;
        }
        s.connections_opened = counters_.connections_opened.load(relaxed);
        s.connections_rejected = counters_.connections_rejected.load(relaxed);
        s.messages_sent = counters_.messages_sent.load(relaxed);
        s.messages_failed = counters_.messages_failed.load(relaxed);
        s.messages_received = counters_.messages_received.load(relaxed);
        s.frames_rejected = counters_.frames_rejected.load(relaxed);
        auto const attempts = s.connections_opened + s.connections_rejected;
        s.connection_success_rate =
            attempts == 0 ? 1.0
                          : static_cast<double>(s.connections_opened) / static_cast<double>(attempts);
        auto const ended = counters_.confirmations_ended.load(relaxed);
        s.avg_confirmation_wait_s =
            ended == 0 ? 0.0
                       : static_cast<double>(counters_.confirmation_wait_total_us.load(relaxed)) /
                             1e6 / static_cast<double>(ended);
        return s;
    }

    Options const& options() const noexcept { return options_; }
    asio::io_context& context() noexcept { return context_; }
    logger const& log() const noexcept { return *logger_; }

private:
    enum class phase { stopped, running, stopping };

    struct connection_entry {
        connection_ptr connection;
        std::vector<std::string> topics;
    };

    struct heartbeat_entry {
        std::string user_id;
        std::string task_id;
        std::chrono::milliseconds interval{};
        std::unique_ptr<asio::steady_timer> timer;
        std::function<void(std::error_code)> complete;
    };

    struct ack_entry {
        std::string user_id;
        std::unique_ptr<asio::steady_timer> timer;
        std::function<void(std::error_code, bool)> complete;
    };

    /// Connects a handler's cancellation slot (if any) to `cancel`, for terminal, partial
    /// and total cancellation alike: each ends the operation at once.
    template <class Handler, class Cancel>
    static void install_canceller(Handler& handler, Cancel cancel) {
        auto slot = asio::get_associated_cancellation_slot(handler);
        if (!slot.is_connected()) return;
        slot.assign([cancel = std::move(cancel)](asio::cancellation_type type) {
            if ((type & (asio::cancellation_type::terminal | asio::cancellation_type::partial |
                         asio::cancellation_type::total)) != asio::cancellation_type::none) {
                cancel();
            }
        });
    }

    static std::int64_t steady_ms() { return manager_counters::steady_ms(); }

    template <class F>
    void post_to_strand(F&& f) {
        asio::post(strand_, std::forward<F>(f));
    }

    connection_ptr connection_from(websocketpp::connection_hdl hdl) {
        std::error_code ec;
        auto con = server_.get_con_from_hdl(std::move(hdl), ec);
        return ec ? nullptr : con;
    }

    // ---- server state machine (manager strand) ----------------------------------------

    std::error_code start_listening() {
        if (phase_ != phase::stopped) return error::already_running;
        ++listen_generation_;  // accept loops of an earlier start must not re-arm
        if constexpr (tls_config<Config>) {
            if (auto ec = load_tls_context()) return ec;
        }
        if (auto ec = listen_on(server_, options_.host, options_.port)) {
            logger_->write(LogLevel::error, "start_failed",
                           "cannot listen on " + options_.host + ":" +
                               std::to_string(options_.port) + ": " + ec.message());
            return ec;
        }
        if (metrics_server_) {
            auto const address = split_host_port(options_.metrics_address);
            if (auto ec = listen_on(*metrics_server_, address->first, address->second)) {
                logger_->write(LogLevel::error, "start_failed",
                               "cannot listen on metrics address " + options_.metrics_address +
                                   ": " + ec.message());
                std::error_code ignored;
                server_.stop_listening(ignored);
                return ec;
            }
        }
        asio::error_code local_ec;
        auto const local = server_.get_local_endpoint(local_ec);
        counters_.port.store(local_ec ? options_.port : local.port(), std::memory_order_relaxed);
        counters_.started_at_ms.store(steady_ms(), std::memory_order_relaxed);
        counters_.running.store(true, std::memory_order_relaxed);
        phase_ = phase::running;
        if (options_.auth_secret.empty() && !authenticator_) {
            logger_->write(LogLevel::warning, "development_mode",
                           "no auth secret: ?user_id= is trusted as the user's identity");
        }
        if (!options_.redis_url.empty()) {
            logger_->write(LogLevel::warning, "redis_url_unused",
                           "redis_url is set, but this version has no multi-node fan-out: "
                           "messages reach only this node's connections");
        }
        logger_->write(LogLevel::info, "server_started",
                       "listening on " + options_.host + ":" + std::to_string(local_port()));
        schedule_keepalive();
        return {};
    }

    /// TLS configs: loads the certificate and key once per start; every connection of both
    /// listeners shares the context. A file that cannot be loaded fails start_server.
    std::error_code load_tls_context() {
        std::error_code ec;
        auto context = Config::make_tls_context(options_, ec);
        if (!ec && !context) ec = error::tls_not_configured;
        if (ec) {
            logger_->write(LogLevel::error, "start_failed",
                           "cannot set up TLS (certificate '" + options_.tls_cert + "', key '" +
                               options_.tls_key + "'): " + ec.message());
            return ec;
        }
        auto handler = [context](websocketpp::connection_hdl) { return context; };
        server_.set_tls_init_handler(handler);
        if (metrics_server_) metrics_server_->set_tls_init_handler(handler);
        return {};
    }

    void start_disconnect_grace(std::string const& user_id) {
        if (!options_.resolve_on_disconnect || phase_ != phase::running) return;
        auto const deadline = pending_confirmation::clock::now() + options_.disconnect_grace;
        confirmations_.for_each([&](pending_confirmation& entry) {
            if (entry.user_id != user_id) return;
            entry.disconnect_deadline = deadline;
            arm_confirmation_timer(entry);
        });
    }

    void begin_stop() {
        if (phase_ != phase::running) return;
        phase_ = phase::stopping;
        counters_.running.store(false, std::memory_order_relaxed);
        // Pending work ends before the close frames are queued, so clients still see
        // confirmation_resolved (reason shutdown) on their way out.
        end_all_confirmations(ConfirmationReason::shutdown);
        std::vector<std::uint64_t> beats;
        for (auto const& [id, entry] : heartbeats_) beats.push_back(id);
        for (auto id : beats) end_heartbeat(id, error::shutting_down);
        std::vector<std::string> acks;
        for (auto const& [id, entry] : acks_) acks.push_back(id);
        for (auto const& id : acks) end_ack(id, false, error::shutting_down);
        std::error_code ignored;
        ++listen_generation_;
        server_.stop_listening(ignored);
        if (metrics_server_ && metrics_server_->is_listening()) {
            metrics_server_->stop_listening(ignored);
        }
        keepalive_timer_.cancel();
        for (auto& [id, entry] : connections_) {
            close_connection(entry.connection, close_code::going_away, "Server shutting down");
        }
        logger_->write(LogLevel::info, "server_stopping",
                       std::to_string(connections_.size()) + " connections to close");
        finish_stop_if_idle();
    }

    void finish_stop_if_idle() {
        if (phase_ != phase::stopping || !connections_.empty()) return;
        phase_ = phase::stopped;
        logger_->write(LogLevel::info, "server_stopped", "");
        auto waiters = std::move(stop_waiters_);
        stop_waiters_.clear();
        for (auto& waiter : waiters) waiter(std::error_code{});
    }

    // ---- keepalive ---------------------------------------------------------------------

    void schedule_keepalive() {
        if (options_.ping_interval.count() == 0) return;
        keepalive_timer_.expires_after(options_.ping_interval);
        keepalive_timer_.async_wait([weak = this->weak_from_this()](std::error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->phase_ != phase::running) return;
            for (auto& [id, entry] : self->connections_) self->ping(entry.connection);
            self->schedule_keepalive();
        });
    }

    void ping(connection_ptr const& con) {
        con->get_strand()->post([con] {
            // One ping in flight at a time, so the pong timer of the first one is never reset
            // by the next (websocketpp keeps one timer per connection).
            if (con->awaiting_pong || con->get_state() != websocketpp::session::state::open) {
                return;
            }
            std::error_code ec;
            con->ping("", ec);
            if (!ec) con->awaiting_pong = true;
        });
    }

    void on_pong_timeout(websocketpp::connection_hdl hdl) {
        auto con = connection_from(hdl);
        if (!con) return;
        logger_->write(LogLevel::info, "keepalive_timeout", "no pong in time; closing",
                       con->connection_id, con->user_id);
        std::error_code ec;
        con->close(close_code::internal_error, "keepalive ping timeout", ec);
    }

    // ---- handshake and lifecycle (connection strands, then the manager strand) ----------

    bool on_validate(websocketpp::connection_hdl hdl) {
        auto con = connection_from(hdl);
        if (!con) return false;
        if (!options_.allowed_origins.empty()) {
            auto const origin = con->get_request_header("Origin");
            bool allowed = false;
            for (auto const& candidate : options_.allowed_origins) allowed |= candidate == origin;
            if (!allowed) {
                return refuse(con, AuthResult::reject("Origin not allowed", 403),
                              reject_reason::origin);
            }
        }
        for (auto const& offered : con->get_requested_subprotocols()) {
            if (offered == protocol::subprotocol) {
                std::error_code ec;
                con->select_subprotocol(offered, ec);
                break;
            }
        }
        HandshakeRequest request;
        auto const& resource = con->get_resource();
        auto const question = resource.find('?');
        request.path = resource.substr(0, question);
        if (question != std::string::npos) {
            auto query = parse_query(std::string_view(resource).substr(question + 1));
            if (!query) {
                return refuse(con, AuthResult::reject("Malformed query string", 400),
                              reject_reason::handshake);
            }
            request.query = std::move(*query);
        }
        request.headers = lowercase_headers(con->get_request());
        request.remote_endpoint = con->get_remote_endpoint();
        con->remote_endpoint = request.remote_endpoint;
        AuthResult verdict;
        try {
            verdict = authenticator_ ? authenticator_(request) : default_authenticate(request);
        } catch (std::exception const& e) {
            logger_->write(LogLevel::error, "authenticator_failed", e.what());
            verdict = AuthResult::reject("Authentication failed", 500);
        }
        if (!verdict.accepted) return refuse(con, verdict, reject_reason::auth);
        if (!is_valid_utf8(verdict.user_id)) {
            return refuse(con, AuthResult::reject("The user id must be valid UTF-8", 400),
                          reject_reason::handshake);
        }
        con->user_id = std::move(verdict.user_id);
        con->connection_id = next_connection_id_.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    AuthResult default_authenticate(HandshakeRequest const& request) const {
        if (options_.auth_secret.empty()) {  // development mode: trust ?user_id=
            return AuthResult::accept(request.query_param("user_id"));
        }
        // JWT mode: ?token= first, else "Authorization: Bearer <token>". ?user_id= is ignored.
        std::string_view token = request.query_param("token");
        if (token.empty()) {
            std::string_view authorization = request.header("authorization");
            constexpr std::string_view scheme = "bearer ";
            bool const bearer =
                authorization.size() > scheme.size() &&
                std::equal(scheme.begin(), scheme.end(), authorization.begin(), [](char a, char b) {
                    return a == std::tolower(static_cast<unsigned char>(b));
                });
            if (bearer) {
                token = authorization.substr(scheme.size());
                auto const first = token.find_first_not_of(" \t");
                auto const last = token.find_last_not_of(" \t");
                token = first == std::string_view::npos ? std::string_view{}
                                                        : token.substr(first, last - first + 1);
            }
        }
        if (token.empty()) return AuthResult::reject("Missing token");
        auto const now = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
        auto verdict = verify_hs256_jwt(token, options_.auth_secret, now);
        if (!verdict) return AuthResult::reject(std::move(verdict.error));
        return AuthResult::accept(std::move(verdict.subject));
    }

    bool refuse(connection_ptr const& con, AuthResult const& verdict, reject_reason reason) {
        counters_.count_rejected(reason);
        con->refused = true;
        con->set_status(static_cast<websocketpp::http::status_code::value>(verdict.http_status));
        con->set_body(verdict.reason);
        if (verdict.http_status == 401) con->append_header("WWW-Authenticate", "Bearer");  // RFC 6750
        logger_->write(LogLevel::info, "handshake_refused",
                       std::to_string(verdict.http_status) + " " + verdict.reason + " from " +
                           con->get_remote_endpoint());
        return false;
    }

    void on_open(websocketpp::connection_hdl hdl) {
        auto con = connection_from(hdl);
        if (!con) return;
        post_to_strand([self = this->shared_from_this(), con] { self->register_connection(con); });
    }

    void register_connection(connection_ptr const& con) {
        if (phase_ != phase::running) {
            close_connection(con, close_code::going_away, "Server shutting down");
            return;
        }
        if (connections_.size() >= options_.max_connections) {
            counters_.count_rejected(reject_reason::limit);
            logger_->write(LogLevel::warning, "connection_limit",
                           "closing connection over max_connections (" +
                               std::to_string(options_.max_connections) + ")",
                           con->connection_id, con->user_id);
            close_connection(con, close_code::try_again_later, "Server connection limit reached");
            return;
        }
        con->registered = true;
        connections_.emplace(con->connection_id, connection_entry{con, {}});
        if (!con->user_id.empty()) {
            auto& user_connections = users_[con->user_id];
            user_connections.push_back(con->connection_id);
        }
        counters_.active_connections.store(connections_.size(), std::memory_order_relaxed);
        counters_.users_online.store(users_.size(), std::memory_order_relaxed);
        counters_.add(counters_.connections_opened);
        logger_->write(LogLevel::debug, "connection_opened", con->remote_endpoint,
                       con->connection_id, con->user_id);
        send_frame(con, protocol::connected_frame(con->connection_id, con->user_id,
                                                  con->get_subprotocol())
                            .frame());
        if (con->user_id.empty()) return;
        // Still-pending confirmations reach every new connection of their user (first
        // connection, reload, reconnect), with the time they have left.
        confirmations_.for_each([&](pending_confirmation& entry) {
            if (entry.user_id != con->user_id) return;
            send_frame(con, confirmation_request_frame(entry).frame());
            if (entry.disconnect_deadline) {
                entry.disconnect_deadline.reset();
                arm_confirmation_timer(entry);
            }
        });
    }

    void on_close(websocketpp::connection_hdl hdl) {
        auto con = connection_from(hdl);
        if (!con) return;
        post_to_strand([self = this->shared_from_this(), con] { self->unregister_connection(con); });
    }

    /// The close code that describes how a connection ended: the peer's, unless the peer
    /// sent none (1005) or vanished (1006) after we had chosen a code ourselves.
    static std::uint16_t close_code_of(connection_type& con) {
        auto const remote = con.get_remote_close_code();
        auto const local = con.get_local_close_code();
        bool const remote_silent = remote == websocketpp::close::status::no_status ||
                                   remote == websocketpp::close::status::abnormal_close;
        if (remote_silent && local != websocketpp::close::status::no_status &&
            local != websocketpp::close::status::blank) {
            return local;
        }
        return remote;
    }

    void unregister_connection(connection_ptr const& con) {
        if (!con->registered) return;
        con->registered = false;
        auto const id = con->connection_id;
        auto it = connections_.find(id);
        if (it == connections_.end()) return;
        for (auto const& topic : it->second.topics) leave_topic(topic, id);
        connections_.erase(it);
        if (!con->user_id.empty()) {
            auto user = users_.find(con->user_id);
            if (user != users_.end()) {
                std::erase(user->second, id);
                if (user->second.empty()) {
                    users_.erase(user);
                    start_disconnect_grace(con->user_id);
                }
            }
        }
        counters_.active_connections.store(connections_.size(), std::memory_order_relaxed);
        counters_.users_online.store(users_.size(), std::memory_order_relaxed);
        auto const code = close_code_of(*con);
        counters_.count_closed(code);
        logger_->write(LogLevel::debug, "connection_closed", "code " + std::to_string(code), id,
                       con->user_id);
        finish_stop_if_idle();
    }

    // ---- sending ---------------------------------------------------------------------

    /// Queues one prepared frame to a connection, from any thread; the write happens on the
    /// connection's strand. Frames wait in the connection's outbox, and one flush per burst
    /// (not one handler per frame) carries them to the strand: a broadcast of M messages to
    /// K connections posts K handlers, not M x K.
    void send_frame(connection_ptr const& con, frame_ptr const& frame) {
        auto const size = frame->get_payload().size();
        bool post_flush = false;
        {
            std::lock_guard lock(con->outbox_mutex);
            // Bounded like the send queue behind it: a host outrunning one connection's
            // strand loses frames for that connection only.
            if (con->outbox_bytes + size > options_.max_send_buffer) {
                counters_.add(counters_.messages_failed);
                counters_.add(counters_.messages_dropped);
                con->outbox_overflowed = true;  // the flush closes it, on its strand
            } else {
                con->outbox.push_back(frame);
                con->outbox_bytes += size;
            }
            post_flush = !std::exchange(con->flush_posted, true);
        }
        if (post_flush) {
            con->get_strand()->post([self = this->shared_from_this(), con] { self->flush(*con); });
        }
    }

    /// On the connection's strand: moves the outbox into websocketpp's send queue.
    void flush(connection_type& con) {
        std::vector<frame_ptr> frames;
        bool overflowed = false;
        {
            std::lock_guard lock(con.outbox_mutex);
            frames.swap(con.outbox);
            con.outbox_bytes = 0;
            con.flush_posted = false;
            overflowed = std::exchange(con.outbox_overflowed, false);
        }
        if (overflowed) close_slow_consumer(con);
        bool started = false;
        for (auto const& frame : frames) {
            if (!write_on_strand(con, frame) || started) continue;
            // websocketpp's send() posts a write_frame() for every frame until a write is in
            // flight; starting the write here (we are on the connection's strand, where
            // write_frame runs anyway) lets the following sends only queue, and the write
            // gathers them.
            con.write_frame();
            started = true;
        }
        // Give the vector's capacity back to the outbox, so steady traffic allocates nothing.
        frames.clear();
        std::lock_guard lock(con.outbox_mutex);
        if (con.outbox.empty() && con.outbox.capacity() < frames.capacity()) {
            con.outbox.swap(frames);
        }
    }

    /// On the connection's strand: a client whose queue overflowed is not reading; it gets
    /// 1008 rather than silently missing frames (a confirmation, say).
    void close_slow_consumer(connection_type& con) {
        if (con.get_state() != websocketpp::session::state::open) return;
        logger_->write(LogLevel::warning, "send_buffer_overflow", "client is not reading; closing",
                       con.connection_id, con.user_id);
        std::error_code ec;
        con.close(close_code::policy_violation, "Send buffer overflow", ec);
    }

    /// On the connection's strand: hands the frame to websocketpp, unless the connection
    /// is gone or its send queue is full (then the frame is dropped and the client, which
    /// is not reading, is closed). True when queued.
    bool write_on_strand(connection_type& con, frame_ptr const& frame) {
        if (con.get_state() != websocketpp::session::state::open) {
            counters_.add(counters_.messages_failed);
            return false;
        }
        if (con.get_buffered_amount() + frame->get_payload().size() > options_.max_send_buffer) {
            counters_.add(counters_.messages_failed);
            counters_.add(counters_.messages_dropped);
            close_slow_consumer(con);
            return false;
        }
        auto const ec = con.send(frame);
        if (ec) {
            counters_.add(counters_.messages_failed);
            return false;
        }
        counters_.add(counters_.messages_sent);
        counters_.add(counters_.bytes_sent, std::uint64_t{frame->get_payload().size()});
        return true;
    }

    void close_connection(connection_ptr const& con, std::uint16_t code, std::string reason) {
        con->get_strand()->post([con, code, reason = std::move(reason)] {
            std::error_code ec;
            con->close(code, reason, ec);
        });
    }

    std::size_t send_to_user_now(std::string const& user_id, Message const& message) {
        auto it = users_.find(user_id);
        if (user_id.empty() || it == users_.end()) return 0;
        for (auto id : it->second) send_frame(connections_.at(id).connection, message.frame());
        return it->second.size();
    }

    std::size_t publish_now(std::string const& topic, Message const& message) {
        auto it = topics_.find(topic);
        if (it == topics_.end()) return 0;
        for (auto id : it->second) send_frame(connections_.at(id).connection, message.frame());
        return it->second.size();
    }

    // ---- topics (manager strand) -------------------------------------------------------

    void leave_topic(std::string const& topic, std::uint64_t id) {
        auto it = topics_.find(topic);
        if (it == topics_.end()) return;
        it->second.erase(id);
        if (it->second.empty()) topics_.erase(it);
        counters_.topics.store(topics_.size(), std::memory_order_relaxed);
    }

    void on_subscribe(connection_ptr const& con, std::string topic, bool subscribe,
                      std::shared_ptr<protocol::ClientFrame> const& frame) {
        auto it = connections_.find(con->connection_id);
        if (it == connections_.end()) return;  // closed meanwhile
        auto& topics = it->second.topics;
        auto const known = std::find(topics.begin(), topics.end(), topic);
        if (subscribe) {
            if (known == topics.end()) {
                if (subscribe_authorizer_ &&
                    !authorized(con, [&] { return subscribe_authorizer_(con->user_id, topic); })) {
                    reject_frame(con, protocol::ErrorCode::forbidden,
                                 "Not allowed to subscribe to " + topic, frame->request_id);
                    return;
                }
                if (topics.size() >= options_.max_topics_per_connection) {
                    reject_frame(con, protocol::ErrorCode::forbidden,
                                 "Subscription limit reached (" +
                                     std::to_string(options_.max_topics_per_connection) + ")",
                                 frame->request_id);
                    return;
                }
                topics.push_back(topic);
                topics_[topic].insert(con->connection_id);
                counters_.topics.store(topics_.size(), std::memory_order_relaxed);
            }
        } else if (known != topics.end()) {
            topics.erase(known);
            leave_topic(topic, con->connection_id);
        }
        send_frame(con, protocol::subscription_frame(subscribe, topic, frame->request_id).frame());
    }

    // ---- confirmations (manager strand) ------------------------------------------------

    void update_pending_count() {
        counters_.pending_callbacks.store(confirmations_.size() + acks_.size(),
                                          std::memory_order_relaxed);
        counters_.pending_confirmations.store(confirmations_.size(), std::memory_order_relaxed);
        counters_.running_heartbeats.store(heartbeats_.size(), std::memory_order_relaxed);
    }

    bool user_online(std::string const& user_id) const { return users_.count(user_id) != 0; }

    Message confirmation_request_frame(pending_confirmation const& entry) const {
        auto const remaining = std::chrono::duration<double>(
            entry.deadline - pending_confirmation::clock::now());
        return protocol::task_step_result_frame(entry.callback_id, entry.user_id, entry.task_id,
                                                entry.step, entry.result,
                                                std::max(0.0, remaining.count()));
    }

    void begin_confirmation(pending_confirmation entry) {
        if (phase_ != phase::running) {
            entry.complete(error::not_running,
                           UserConfirmation{false, std::nullopt, ConfirmationReason::shutdown});
            return;
        }
        rapidjson::Document result;
        result.Parse<rapidjson::kParseValidateEncodingFlag>(entry.result.result.data(),
                                                            entry.result.result.size());
        auto const& r = entry.result;
        bool const text_ok = is_valid_utf8(entry.user_id) && is_valid_utf8(entry.task_id) &&
                             is_valid_utf8(r.step) && is_valid_utf8(r.message) &&
                             is_valid_utf8(r.status) &&
                             is_valid_utf8(r.error_code.value_or("")) &&
                             is_valid_utf8(r.error_message.value_or(""));
        if (result.HasParseError() || entry.user_id.empty() || !text_ok) {
            entry.complete(error::invalid_message,
                           UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled});
            return;
        }
        entry.timer = std::make_unique<asio::steady_timer>(strand_);
        if (options_.resolve_on_disconnect && !user_online(entry.user_id)) {
            entry.disconnect_deadline = entry.created + options_.disconnect_grace;
        }
        auto& pending = confirmations_.insert(std::move(entry));
        update_pending_count();
        logger_->write(LogLevel::debug, "confirmation_requested",
                       "task " + pending.task_id + " step " + std::to_string(pending.step), 0,
                       pending.user_id);
        arm_confirmation_timer(pending);
        // An offline user gets it on connecting (register_connection), until it ends.
        send_to_user_now(pending.user_id, confirmation_request_frame(pending));
    }

    void arm_confirmation_timer(pending_confirmation& entry) {
        auto when = entry.deadline;
        if (entry.disconnect_deadline && *entry.disconnect_deadline < when) {
            when = *entry.disconnect_deadline;
        }
        entry.timer->expires_at(when);
        entry.timer->async_wait(
            [weak = this->weak_from_this(), id = entry.callback_id](std::error_code ec) {
                if (ec) return;  // re-armed or ended
                if (auto self = weak.lock()) self->on_confirmation_timer(id);
            });
    }

    void on_confirmation_timer(std::string const& callback_id) {
        auto* entry = confirmations_.find(callback_id);
        if (entry == nullptr) return;
        auto const now = pending_confirmation::clock::now();
        if (now >= entry->deadline) {
            end_confirmation(callback_id, UserConfirmation{options_.proceed_on_timeout, std::nullopt,
                                                           ConfirmationReason::timeout});
        } else if (entry->disconnect_deadline && now >= *entry->disconnect_deadline) {
            end_confirmation(callback_id,
                             UserConfirmation{false, std::nullopt, ConfirmationReason::disconnected});
        } else {
            arm_confirmation_timer(*entry);
        }
    }

    /// Ends a confirmation exactly once: the first caller wins, later ones find nothing.
    bool end_confirmation(std::string const& callback_id, UserConfirmation const& confirmation,
                          std::error_code ec = {}) {
        auto entry = confirmations_.take(callback_id);
        if (!entry) return false;
        entry->timer->cancel();
        update_pending_count();
        auto const waited = std::chrono::duration_cast<std::chrono::microseconds>(
            pending_confirmation::clock::now() - entry->created);
        counters_.count_confirmation(confirmation.reason, waited);
        logger_->write(LogLevel::debug, "confirmation_ended",
                       "task " + entry->task_id + ": " + std::string(to_string(confirmation.reason)),
                       0, entry->user_id);
        // Every tab of the user closes its dialog, whoever answered and however it ended.
        send_to_user_now(entry->user_id, protocol::confirmation_resolved_frame(
                                             callback_id, entry->task_id, confirmation));
        entry->complete(ec, confirmation);
        return true;
    }

    void end_all_confirmations(ConfirmationReason reason) {
        for (auto const& id : confirmations_.ids_where([](auto const&) { return true; })) {
            end_confirmation(id, UserConfirmation{false, std::nullopt, reason});
        }
    }

    void on_confirm(connection_ptr const& con, protocol::ClientFrame const& frame) {
        auto parsed = protocol::parse_confirm(frame);
        if (auto* problem = std::get_if<protocol::FrameProblem>(&parsed)) {
            reject_frame(con, problem->code, problem->message, frame.request_id);
            return;
        }
        auto& answer = std::get<protocol::ConfirmAnswer>(parsed);
        if (con->user_id.empty()) {
            reject_frame(con, protocol::ErrorCode::forbidden,
                         "Anonymous connections cannot answer confirmations", frame.request_id);
            return;
        }
        auto* entry = confirmations_.find(answer.callback_id);
        if (entry == nullptr) {
            reject_frame(con, protocol::ErrorCode::unknown_callback,
                         "Unknown or already resolved callback_id", frame.request_id);
            return;
        }
        if (entry->user_id != con->user_id) {
            logger_->write(LogLevel::warning, "confirmation_forbidden",
                           "answer for another user's confirmation", con->connection_id,
                           con->user_id);
            reject_frame(con, protocol::ErrorCode::forbidden,
                         "This confirmation belongs to another user", frame.request_id);
            return;
        }
        end_confirmation(answer.callback_id, UserConfirmation{answer.proceed,
                                                              std::move(answer.feedback),
                                                              ConfirmationReason::user});
    }

    // ---- cancellation and heartbeats (manager strand) ----------------------------------

    /// Another user's confirmations or heartbeats for the task, if any.
    bool task_owned_by_other(std::string const& task_id, std::string const& user_id) {
        bool other = !confirmations_
                          .ids_where([&](pending_confirmation const& entry) {
                              return entry.task_id == task_id && entry.user_id != user_id;
                          })
                          .empty();
        for (auto const& [id, entry] : heartbeats_) {
            other |= entry.task_id == task_id && entry.user_id != user_id;
        }
        return other;
    }

    void on_cancel_request(connection_ptr const& con, protocol::ClientFrame const& frame) {
        auto parsed = protocol::parse_cancel(frame);
        if (auto* problem = std::get_if<protocol::FrameProblem>(&parsed)) {
            reject_frame(con, problem->code, problem->message, frame.request_id);
            return;
        }
        auto& ask = std::get<protocol::CancelAsk>(parsed);
        if (con->user_id.empty() || (ask.user_id && *ask.user_id != con->user_id) ||
            task_owned_by_other(ask.task_id, con->user_id)) {
            reject_frame(con, protocol::ErrorCode::forbidden,
                         con->user_id.empty() ? "Anonymous connections cannot cancel tasks"
                                              : "Cannot cancel another user's task",
                         frame.request_id);
            return;
        }
        logger_->write(LogLevel::info, "task_cancel_requested", "task " + ask.task_id,
                       con->connection_id, con->user_id);
        if (cancel_handler_ &&
            !authorized(con, [&] {
                return cancel_handler_(CancelRequest{con->user_id, ask.task_id, con->connection_id});
            })) {
            // The host knows tasks the manager does not: its "no" stops everything here.
            reject_frame(con, protocol::ErrorCode::forbidden, "Cancel refused by the server",
                         frame.request_id);
            return;
        }
        cancel_task_now(con->user_id, ask.task_id);
    }

    void cancel_task_now(std::string const& user_id, std::string const& task_id) {
        for (auto const& id : confirmations_.ids_where([&](pending_confirmation const& entry) {
                 return entry.task_id == task_id;
             })) {
            end_confirmation(id,
                             UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled});
        }
        std::vector<std::uint64_t> beats;
        for (auto const& [id, entry] : heartbeats_) {
            if (entry.task_id == task_id) beats.push_back(id);
        }
        for (auto id : beats) end_heartbeat(id, error::task_cancelled);
        // The user's connections and the task's subscribers, each connection once.
        auto const frame = protocol::task_cancelled_frame(user_id, task_id);
        std::unordered_set<std::uint64_t> recipients;
        if (auto user = users_.find(user_id); user != users_.end()) {
            recipients.insert(user->second.begin(), user->second.end());
        }
        if (auto topic = topics_.find(protocol::task_topic(task_id)); topic != topics_.end()) {
            recipients.insert(topic->second.begin(), topic->second.end());
        }
        for (auto id : recipients) send_frame(connections_.at(id).connection, frame.frame());
    }

    void heartbeat_tick(std::uint64_t id) {
        auto it = heartbeats_.find(id);
        if (it == heartbeats_.end()) return;
        auto& entry = it->second;
        send_to_user_now(entry.user_id, protocol::heartbeat_frame(entry.user_id, entry.task_id));
        counters_.add(counters_.heartbeats_sent);
        entry.timer->expires_after(entry.interval);
        entry.timer->async_wait([weak = this->weak_from_this(), id](std::error_code ec) {
            if (ec) return;
            if (auto self = weak.lock()) self->heartbeat_tick(id);
        });
    }

    void end_heartbeat(std::uint64_t id, std::error_code ec) {
        auto node = heartbeats_.extract(id);
        if (node.empty()) return;
        node.mapped().timer->cancel();
        update_pending_count();
        node.mapped().complete(ec);
    }

    // ---- acknowledged delivery (manager strand) ------------------------------------------

    void end_ack(std::string const& message_id, bool acked, std::error_code ec) {
        auto node = acks_.extract(message_id);
        if (node.empty()) return;
        node.mapped().timer->cancel();
        update_pending_count();
        node.mapped().complete(ec, acked);
    }

    void on_ack(connection_ptr const& con, protocol::ClientFrame const& frame) {
        auto parsed = protocol::parse_ack(frame);
        if (auto* problem = std::get_if<protocol::FrameProblem>(&parsed)) {
            reject_frame(con, problem->code, problem->message, frame.request_id);
            return;
        }
        auto const& message_id = std::get<std::string>(parsed);
        auto it = acks_.find(message_id);
        if (it == acks_.end()) {
            reject_frame(con, protocol::ErrorCode::unknown_callback,
                         "Unknown or already acknowledged message_id", frame.request_id);
            return;
        }
        if (it->second.user_id != con->user_id) {
            reject_frame(con, protocol::ErrorCode::forbidden,
                         "This message was sent to another user", frame.request_id);
            return;
        }
        counters_.add(counters_.acks_received);
        end_ack(message_id, true, {});
    }

    /// Runs a host predicate; an exception counts as "no" and is logged.
    template <class Predicate>
    bool authorized(connection_ptr const& con, Predicate predicate) {
        try {
            return predicate();
        } catch (std::exception const& e) {
            logger_->write(LogLevel::error, "authorizer_failed", e.what(), con->connection_id,
                           con->user_id);
            return false;
        }
    }

    /// Connection strand: a token bucket of Options::max_frames_per_second, with a burst of
    /// twice that. True when the frame may be processed.
    bool take_rate_token(connection_type& con) {
        auto const rate = static_cast<double>(options_.max_frames_per_second);
        if (rate <= 0) return true;
        auto const now = std::chrono::steady_clock::now();
        if (con.rate_tokens < 0) {
            con.rate_tokens = 2 * rate;  // first frame: a full bucket
        } else {
            con.rate_tokens = std::min(
                2 * rate,
                con.rate_tokens + rate * std::chrono::duration<double>(now - con.rate_refilled).count());
        }
        con.rate_refilled = now;
        if (con.rate_tokens < 1) return false;
        con.rate_tokens -= 1;
        return true;
    }

    // ---- client frames -----------------------------------------------------------------

    void reject_frame(connection_ptr const& con, protocol::ErrorCode code,
                      std::string_view message, rapidjson::Value const* request_id) {
        counters_.count_frame_rejected(code);
        logger_->write(LogLevel::debug, "frame_rejected",
                       std::string(protocol::to_string(code)) + ": " + std::string(message),
                       con->connection_id, con->user_id);
        send_frame(con, protocol::error_frame(code, message, request_id).frame());
    }

    /// On the connection's strand. Parsing happens here, in parallel across connections;
    /// only actions that touch the registries hop onto the manager strand.
    void on_frame(websocketpp::connection_hdl hdl, typename server_type::message_ptr const& msg) {
        auto con = connection_from(hdl);
        if (!con) return;
        counters_.add(counters_.messages_received);
        counters_.add(counters_.bytes_received, std::uint64_t{msg->get_payload().size()});
        if (msg->get_opcode() != websocketpp::frame::opcode::text) {
            std::error_code ec;
            con->close(close_code::unsupported_data, "Binary frames are not supported", ec);
            return;
        }
        if (!take_rate_token(*con)) {
            reject_frame(con, protocol::ErrorCode::rate_limited,
                         "Too many frames; at most " +
                             std::to_string(options_.max_frames_per_second) + " per second",
                         nullptr);
            return;
        }
        auto frame = std::make_shared<protocol::ClientFrame>();
        if (auto problem = protocol::parse_client_frame(msg->get_payload(), *frame)) {
            reject_frame(con, problem->code, problem->message, frame->request_id);
            return;
        }
        auto const action = frame->action;
        if (action == "ping") {
            send_frame(con, protocol::pong_frame(frame->find("timestamp"), frame->request_id).frame());
        } else if (action == "subscribe" || action == "unsubscribe") {
            auto topic = frame->string_field("topic");
            if (!topic || topic->empty() || topic->size() > max_topic_length) {
                reject_frame(con, protocol::ErrorCode::bad_request,
                             "Field topic must be a non-empty string of at most " +
                                 std::to_string(max_topic_length) + " bytes",
                             frame->request_id);
                return;
            }
            post_to_strand([self = this->shared_from_this(), con, topic = std::string(*topic),
                            subscribe = action == "subscribe", frame]() mutable {
                self->on_subscribe(con, std::move(topic), subscribe, frame);
            });
        } else {
            post_to_strand([self = this->shared_from_this(), con, frame] {
                self->dispatch_action(con, frame);
            });
        }
    }

    /// Manager strand: host-defined actions (and, in later steps, confirm/cancel/ack).
    void dispatch_action(connection_ptr const& con,
                         std::shared_ptr<protocol::ClientFrame> const& frame) {
        if (!con->registered) return;
        if (frame->action == "confirm") return on_confirm(con, *frame);
        if (frame->action == "cancel") return on_cancel_request(con, *frame);
        if (frame->action == "ack") return on_ack(con, *frame);
        auto it = action_handlers_.find(std::string(frame->action));
        if (it == action_handlers_.end()) {
            reject_frame(con, protocol::ErrorCode::unknown_action,
                         "Unknown action: " + std::string(frame->action), frame->request_id);
            return;
        }
        ActionContext context(con->connection_id, con->user_id, frame->action, frame->request_id,
                              [self = this->shared_from_this(), con](Message const& reply) {
                                  self->send_frame(con, reply.frame());
                              });
        try {
            it->second(context, frame->document);
        } catch (std::exception const& e) {
            logger_->write(LogLevel::error, "action_handler_failed",
                           std::string(frame->action) + ": " + e.what(), con->connection_id,
                           con->user_id);
            reject_frame(con, protocol::ErrorCode::internal, "Internal error", frame->request_id);
        }
    }

    // ---- HTTP (connection strands) -------------------------------------------------------

    void on_http(websocketpp::connection_hdl hdl) {
        auto con = connection_from(hdl);
        if (!con) return;
        auto const& resource = con->get_resource();
        auto const question = resource.find('?');
        auto const path = resource.substr(0, question);
        if (options_.http_endpoints && options_.metrics_address.empty() &&
            serve_builtin_http(con, path)) {
            return;
        }
        if (http_handler_) {
            HttpRequest request;
            request.method = con->get_request().get_method();
            request.path = path;
            if (question != std::string::npos) request.query = resource.substr(question + 1);
            request.headers = lowercase_headers(con->get_request());
            request.body = con->get_request_body();
            request.remote_endpoint = con->get_remote_endpoint();
            HttpResponse response;
            bool handled = false;
            try {
                handled = http_handler_(request, response);
            } catch (std::exception const& e) {
                logger_->write(LogLevel::error, "http_handler_failed",
                               request.method + " " + request.path + ": " + e.what());
                response = HttpResponse{500, "text/plain; charset=utf-8", "internal error\n", {}};
                handled = true;
            }
            if (handled) return write_http(*con, response);
        }
        write_http(*con, HttpResponse{404, "text/plain; charset=utf-8", "not found\n", {}});
    }

    static void write_http(connection_type& con, HttpResponse const& response) {
        con.set_status(static_cast<websocketpp::http::status_code::value>(response.status));
        con.replace_header("Content-Type", response.content_type);
        for (auto const& [name, value] : response.headers) con.append_header(name, value);
        con.set_body(response.body);
    }

    /// GET /healthz, /readyz, /metrics, /status; false for any other request.
    bool serve_builtin_http(connection_ptr const& con, std::string const& path) {
        auto const& method = con->get_request().get_method();
        if (method != "GET") return false;
        bool const running = counters_.running.load(std::memory_order_relaxed);
        if (path == "/healthz") {
            // Liveness is the event loop answering: the reply comes from the manager strand.
            if (con->defer_http_response()) return false;
            post_to_strand([self = this->shared_from_this(), con] {
                bool const alive = self->phase_ == phase::running;
                con->get_strand()->post([con, alive] {
                    write_http(*con, HttpResponse{alive ? 200 : 503, "text/plain; charset=utf-8",
                                                  alive ? "ok\n" : "stopped\n", {}});
                    std::error_code ec;
                    con->send_http_response(ec);
                });
            });
            return true;
        }
        if (path == "/readyz") {
            bool const ready =
                running && connection_count() < options_.max_connections;
            write_http(*con, HttpResponse{ready ? 200 : 503, "text/plain; charset=utf-8",
                                          ready ? "ready\n"
                                                : (running ? "connection limit reached\n"
                                                           : "not listening\n"),
                                          {}});
            return true;
        }
        if (path == "/metrics") {
            write_http(*con, HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                                          counters_.render_prometheus(), {}});
            return true;
        }
        if (path == "/status") {
            write_http(*con, HttpResponse{200, "application/json", status().to_json(), {}});
            return true;
        }
        return false;
    }

    /// A second listener for the built-in endpoints when Options::metrics_address is set.
    void init_metrics_server() {
        if (options_.metrics_address.empty() || !options_.http_endpoints) return;
        metrics_server_ = std::make_unique<server_type>();
        metrics_server_->get_alog().attach(logger_);
        metrics_server_->get_elog().attach(logger_);
        metrics_server_->clear_access_channels(websocketpp::log::alevel::all);
        metrics_server_->clear_error_channels(websocketpp::log::elevel::all);
        metrics_server_->set_error_channels(websocketpp::log::elevel::rerror |
                                            websocketpp::log::elevel::fatal);
        metrics_server_->init_asio(&context_);
        metrics_server_->set_reuse_addr(true);
        std::weak_ptr<manager_core> weak = this->shared_from_this();
        metrics_server_->set_validate_handler([](websocketpp::connection_hdl) { return false; });
        metrics_server_->set_http_handler([weak](websocketpp::connection_hdl hdl) {
            auto self = weak.lock();
            if (!self) return;
            std::error_code ec;
            auto con = self->metrics_server_->get_con_from_hdl(hdl, ec);
            if (ec) return;
            auto const& resource = con->get_resource();
            if (!self->serve_builtin_http(con, resource.substr(0, resource.find('?')))) {
                write_http(*con, HttpResponse{404, "text/plain; charset=utf-8", "not found\n", {}});
            }
        });
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

    /// The accept loop, re-armed from the manager strand so that websocketpp's acceptor is
    /// only touched there (listen, async_accept, stop_listening). websocketpp's own loop
    /// (server::start_accept) re-arms from the accepted connection's strand, which races
    /// stop_listening and listen when the io_context has several threads.
    void accept_next(server_type& server, std::uint64_t generation) {
        auto con = server.get_connection();
        if (!con) return;
        std::error_code ec;
        server.async_accept(
            std::static_pointer_cast<typename server_type::transport_con_type>(con),
            [weak = this->weak_from_this(), &server, con, generation](std::error_code const& accepted) {
                // On the new connection's strand, as websocketpp's own handle_accept.
                if (accepted) {
                    con->terminate(accepted);
                } else {
                    con->start();
                }
                if (auto self = weak.lock()) {
                    self->post_to_strand([self, &server, generation] {
                        if (self->listen_generation_ == generation && server.is_listening()) {
                            self->accept_next(server, generation);
                        }
                    });
                }
            },
            ec);
        if (ec) con->terminate(std::error_code{});
    }

    static constexpr std::size_t max_topic_length = 256;
    std::uint64_t listen_generation_ = 0;  ///< manager strand: bumped by every start and stop

    Options options_;
    std::shared_ptr<logger> logger_;
    asio::io_context& context_;
    strand_type strand_;
    server_type server_;
    asio::steady_timer keepalive_timer_;
    std::unique_ptr<server_type> metrics_server_;
    Authenticator authenticator_;
    HttpHandler http_handler_;
    manager_counters counters_;
    std::atomic<std::uint64_t> next_connection_id_{1};

    // Manager strand only.
    phase phase_ = phase::stopped;
    std::unordered_map<std::uint64_t, connection_entry> connections_;
    std::unordered_map<std::string, std::vector<std::uint64_t>> users_;
    std::unordered_map<std::string, std::unordered_set<std::uint64_t>> topics_;
    std::unordered_map<std::string, ActionHandler> action_handlers_;
    std::function<bool(CancelRequest const&)> cancel_handler_;
    std::function<bool(std::string const&, std::string const&)> subscribe_authorizer_;
    std::vector<std::function<void(std::error_code)>> stop_waiters_;
    confirmation_registry confirmations_;
    std::unordered_map<std::uint64_t, heartbeat_entry> heartbeats_;
    std::unordered_map<std::string, ack_entry> acks_;
    std::atomic<std::uint64_t> next_operation_id_{1};
};

}  // namespace wsmanager::detail
