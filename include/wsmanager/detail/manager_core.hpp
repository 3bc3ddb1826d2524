// SPDX-License-Identifier: BSL-1.0
#pragma once

// The composition root of the engine: it builds the rooms, wires their events, runs the
// server's state machine (stopped, running, stopping) and the keepalive tick, and turns the
// host's calls into work on the manager strand. It knows no websocketpp and no Config: the
// transport (detail/transport.hpp) is attached by WebSocketManager<Config>.
// docs/architecture.md draws the rooms and the paths through them.
//
// Threads: the registries and services live on `strand_` (the manager strand). Transport
// events arrive on connection strands and hop onto it; host calls post to it.

#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>

#include <wsmanager/action.hpp>
#include <wsmanager/detail/ack_service.hpp>
#include <wsmanager/detail/cluster_link.hpp>
#include <wsmanager/detail/completion.hpp>
#include <wsmanager/detail/confirmation_service.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/frame_router.hpp>
#include <wsmanager/detail/handshake_gate.hpp>
#include <wsmanager/detail/heartbeat_service.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/http_routes.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/random_id.hpp>
#include <wsmanager/detail/task_cancellation.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/detail/transport.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::detail {

class manager_core final : public transport_events,
                           public client_actions,
                           public cluster_host,
                           public std::enable_shared_from_this<manager_core> {
public:
    using strand_type = asio::strand<asio::io_context::executor_type>;
    using subscribe_authorizer = std::function<bool(std::string const&, std::string const&)>;

    /// The core, shared: its handlers hold it while they run.
    static std::shared_ptr<manager_core> create(asio::io_context& context, Options options) {
        auto core = std::shared_ptr<manager_core>(new manager_core(context, std::move(options)));
        core->lifetime_ = core;
        return core;
    }

    manager_core(manager_core const&) = delete;
    manager_core& operator=(manager_core const&) = delete;

    /// The transport that listens for this core (before start_server).
    void attach(std::shared_ptr<transport> sockets) { transport_ = std::move(sockets); }

    /// Joins a cluster: the link becomes delivery's backplane and the confirmations'
    /// directory, and carries cancels and acks (before start_server).
    void set_cluster(std::shared_ptr<cluster_link> link) {
        link->attach(*this, strand_, logger_, lifetime_);
        delivery_.set_backplane(std::shared_ptr<backplane>(link, &link->other_nodes()));
        confirmations_.set_directory(
            std::shared_ptr<confirmation_directory>(link, &link->directory()));
        cancellation_.set_cluster(link.get());
        acks_.set_cluster(link.get());
        cluster_ = std::move(link);
    }

    // ---- host operations: any thread; each completes through a pending_completion ----------

    template <class Handler>
    void start(Handler handler) {
        on_strand(std::move(handler), [](manager_core& self, auto done) {
            if (auto ec = self.can_start()) return std::move(done).complete(ec);
            if (!self.cluster_) return std::move(done).complete(self.start_listening());
            // The cluster first: a node that listens is one the others can reach.
            self.phase_ = phase::starting;
            self.cluster_->start(
                [weak = self.weak_from_this(),
                 done = share_completion<void(std::error_code)>(std::move(done))](
                    std::error_code ec) {
                    auto core = weak.lock();
                    if (!core) return done(error::shutting_down);
                    if (!ec) ec = core->start_listening();
                    if (ec) core->phase_ = phase::stopped;
                    done(ec);
                    // A stop_server that came while starting.
                    if (!core->stop_waiters_.empty()) {
                        if (core->phase_ == phase::stopped) return core->finish_stop();
                        core->begin_stop();
                    }
                });
        });
    }

    template <class Handler>
    void stop(Handler handler) {
        on_strand(std::move(handler), [](manager_core& self, auto done) {
            self.begin_stop();
            if (self.phase_ == phase::stopped) return std::move(done).complete(std::error_code{});
            self.stop_waiters_.push_back(share_completion<void(std::error_code)>(std::move(done)));
        });
    }

    /// broadcast_message, send_to_user, publish: the number of this node's connections.
    template <class Handler>
    void deliver(delivery_target target, Message message, Handler handler) {
        on_strand(std::move(handler), [target = std::move(target),
                                       message = std::move(message)](manager_core& self,
                                                                     auto done) mutable {
            self.delivery_.deliver(
                target, message,
                share_completion<void(std::error_code, std::size_t)>(std::move(done)));
        });
    }

    /// disconnect_user: closes every connection of the user, on every node.
    template <class Handler>
    void disconnect(std::string user_id, std::uint16_t code, std::string reason,
                    Handler handler) {
        on_strand(std::move(handler), [user_id = std::move(user_id), code,
                                       reason = std::move(reason)](manager_core& self,
                                                                   auto done) mutable {
            if (user_id.empty() || !codec::is_sendable_close(code, reason)) {
                return std::move(done).complete(std::error_code(asio::error::invalid_argument),
                                                std::size_t{0});
            }
            self.logger_->write(LogLevel::info, "user_disconnected",
                                "code " + std::to_string(code) + " " + reason, 0, user_id);
            self.delivery_.close(
                delivery_target::user(std::move(user_id)), code, reason,
                share_completion<void(std::error_code, std::size_t)>(std::move(done)));
        });
    }

    template <class Handler>
    void notify(TaskStepResult result, std::string user_id, std::string task_id, int step,
                std::chrono::milliseconds timeout, Handler handler) {
        pending_confirmation entry;
        entry.id = random_id();
        entry.user_id = std::move(user_id);
        entry.task_id = std::move(task_id);
        entry.step = step;
        entry.result = std::move(result);
        entry.created = pending_confirmation::clock::now();
        entry.deadline = entry.created + timeout;  // checked_duration: never overflows
        install_canceller(
            handler,
            strand_call(weak_from_this(),
                        [id = entry.id](manager_core& self) { self.confirmations_.withdraw(id); }),
            cancellation_with_side_effects);
        on_strand(std::move(handler), [entry = std::move(entry), timeout](manager_core& self,
                                                                          auto done) mutable {
            if (self.phase_ != phase::running) {
                return std::move(done).complete(
                    std::error_code(error::not_running),
                    UserConfirmation{false, std::nullopt, ConfirmationReason::shutdown});
            }
            if (timeout.count() <= 0) {
                return std::move(done).complete(
                    std::error_code(asio::error::invalid_argument),
                    UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled});
            }
            entry.complete =
                share_completion<void(std::error_code, UserConfirmation)>(std::move(done));
            self.confirmations_.begin(std::move(entry));
        });
    }

    template <class Handler>
    void heartbeat(std::string user_id, std::string task_id, std::chrono::milliseconds interval,
                   Handler handler) {
        auto id = std::to_string(next_operation_id_.fetch_add(1, std::memory_order_relaxed));
        install_canceller(handler, strand_call(weak_from_this(), [id](manager_core& self) {
            self.heartbeats_.stop(id, asio::error::operation_aborted);
        }));
        on_strand(std::move(handler), [id, user_id = std::move(user_id),
                                       task_id = std::move(task_id),
                                       interval](manager_core& self, auto done) mutable {
            if (self.phase_ != phase::running) {
                return std::move(done).complete(std::error_code(error::not_running));
            }
            self.heartbeats_.start(pending_heartbeat{
                std::move(id), std::move(user_id), std::move(task_id), interval, nullptr,
                share_completion<void(std::error_code)>(std::move(done))});
        });
    }

    template <class Handler>
    void send_with_ack(std::string user_id, Message message, std::chrono::milliseconds timeout,
                       Handler handler) {
        auto message_id = random_id();
        install_canceller(handler,
                          strand_call(weak_from_this(),
                                      [message_id](manager_core& self) {
                                          self.acks_.stop(message_id, false,
                                                          asio::error::operation_aborted);
                                      }),
                          cancellation_with_side_effects);
        on_strand(std::move(handler), [user_id = std::move(user_id), message = std::move(message),
                                       message_id = std::move(message_id),
                                       timeout](manager_core& self, auto done) mutable {
            if (self.phase_ != phase::running) {
                return std::move(done).complete(std::error_code(error::not_running), false);
            }
            if (timeout.count() <= 0) {
                return std::move(done).complete(std::error_code(asio::error::invalid_argument),
                                                false);
            }
            self.acks_.start(std::move(message_id), std::move(user_id), message, timeout,
                             share_completion<void(std::error_code, bool)>(std::move(done)));
        });
    }

    // ---- the host's hooks ------------------------------------------------------------------

    void set_action_handler(std::string name, ActionHandler handler) {
        with_strand([name = std::move(name), handler = std::move(handler)](
                        manager_core& self) mutable {
            self.router_.set_host_action(std::move(name), std::move(handler));
        });
    }

    void set_cancel_handler(task_cancellation::handler_type handler) {
        with_strand([handler = std::move(handler)](manager_core& self) mutable {
            self.cancellation_.set_handler(std::move(handler));
        });
    }

    void set_subscribe_authorizer(subscribe_authorizer authorizer) {
        with_strand([authorizer = std::move(authorizer)](manager_core& self) mutable {
            self.subscribe_authorizer_ = std::move(authorizer);
        });
    }

    /// Any thread; the next handshake uses it.
    void set_authenticator(Authenticator authenticator) {
        gate_.set_authenticator(std::move(authenticator));
    }

    /// Any thread; the next request uses it.
    void set_http_handler(HttpHandler handler) { routes_.set_host_handler(std::move(handler)); }

    /// The host's code is not called after this returns (handlers, authenticator, routes,
    /// log sink), but for a call this thread is inside of. Any thread; the manager's
    /// destructor calls it.
    void close_host_hooks() {
        hooks_.close_and_wait();
        logger_->close();
    }

    // ---- state, from any thread ------------------------------------------------------------

    std::string metrics_text() const {
        auto text = counters_->render_prometheus();
        if (cluster_) cluster_->render_metrics(text);
        return text;
    }
    std::size_t connection_count() const noexcept {
        return counters_->active_connections.load(std::memory_order_relaxed);
    }
    std::uint16_t local_port() const noexcept {
        return counters_->port.load(std::memory_order_relaxed);
    }
    Status status() const;

    Options const& options() const noexcept { return options_; }
    asio::io_context& context() noexcept { return context_; }
    strand_type const& strand() const noexcept { return strand_; }
    std::shared_ptr<logger const> log() const noexcept { return logger_; }
    std::shared_ptr<manager_counters> counters() const noexcept { return counters_; }

    // ---- transport_events: connection strands ----------------------------------------------

    admission admit(handshake_attempt const& attempt) override { return gate_.admit(attempt); }

    void on_session_open(session_ptr const& session) override {
        with_strand([session](manager_core& self) { self.register_session(session); });
    }

    void on_session_closed(session_ptr const& session, std::uint16_t close_code) override {
        with_strand([session, close_code](manager_core& self) {
            self.unregister_session(session, close_code);
        });
    }

    void on_session_frame(session_ptr const& session, std::string payload) override {
        with_strand([session, payload = std::move(payload)](manager_core& self) {
            // A frame racing the close, or from a connection refused at the limit.
            if (self.connections_.contains(session->id())) self.router_.route(session, payload);
            session->frame_done(payload.size());
        });
    }

    std::optional<HttpResponse> on_http_request(HttpRequest const& request,
                                                http_routes::listener on,
                                                http_routes::responder later) override {
        return routes_.route(request, on, std::move(later));
    }

    // ---- cluster_host: manager strand ------------------------------------------------------

    void deliver_from_peer(delivery_target const& target, Message const& message) override {
        delivery_.deliver_local(target, message);
    }
    void close_from_peer(delivery_target const& target, std::uint16_t code,
                         std::string const& reason) override {
        delivery_.close_local(target, code, reason);
    }
    void confirmation_decided(std::string const& callback_id, std::string const& user_id,
                              std::string const& task_id, UserConfirmation const& decision,
                              bool here) override {
        confirmations_.decided_elsewhere(callback_id, user_id, task_id, decision, here);
    }
    std::vector<confirmation_record> confirmations_held() const override {
        return confirmations_.records();
    }
    cancel_verdict evaluate_cancel(CancelRequest const& request) override {
        return cancellation_.evaluate(request);
    }
    void apply_cancel(std::string const& user_id, std::string const& task_id) override {
        cancellation_.apply(user_id, task_id);
    }
    void acknowledge_from_peer(std::string const& user_id,
                               std::string const& message_id) override {
        acks_.acknowledge_from_peer(user_id, message_id);
    }
    std::size_t local_connections() const override { return connections_.size(); }
    std::vector<std::string> local_users() const override { return connections_.users(); }

    // ---- client_actions: manager strand ----------------------------------------------------

    void subscribe(client_request const& request, codec::SubscriptionAsk ask) override;
    void confirm(client_request const& request, codec::ConfirmAnswer answer) override {
        confirmations_.answer(request, std::move(answer));
    }
    void cancel(client_request const& request, codec::CancelAsk const& ask) override {
        cancellation_.request(request, ask);
    }
    void acknowledge(client_request const& request, std::string const& message_id) override {
        acks_.acknowledge(request, message_id);
    }

private:
    enum class phase { stopped, starting, running, stopping };

    manager_core(asio::io_context& context, Options options)
        : options_((options.validate(), std::move(options))),
          logger_(std::make_shared<logger>(options_.log_sink, options_.log_level)),
          counters_(std::make_shared<manager_counters>()),
          context_(context),
          strand_(asio::make_strand(context.get_executor())),
          keepalive_timer_(strand_),
          delivery_(strand_, connections_, topics_, *counters_, lifetime_),
          gate_(options_, hooks_, *counters_, *logger_),
          routes_(
              options_, hooks_, *counters_, *logger_, [this] { return status(); },
              [this] { return metrics_text(); },
              [this](std::function<void(bool)> answer) {
                  with_strand([answer = std::move(answer)](manager_core& self) {
                      answer(self.phase_ == phase::running);
                  });
              }),
          confirmations_(strand_, options_, connections_, delivery_, *counters_, *logger_,
                         lifetime_),
          heartbeats_(strand_, options_, delivery_, *counters_, lifetime_),
          acks_(strand_, options_, delivery_, *counters_, lifetime_),
          cancellation_(confirmations_, heartbeats_, delivery_, hooks_, *logger_),
          router_(*this, hooks_, *counters_, *logger_) {
        counters_->max_connections = options_.max_connections;
    }

    /// Runs `work(core, pending_completion)` on the manager strand; the handler completes on
    /// its own executor, never inline.
    template <class Handler, class Work>
    void on_strand(Handler handler, Work work) {
        asio::post(strand_, [self = shared_from_this(), work = std::move(work),
                             done = pending_completion<Handler>(std::move(handler),
                                                                context_.get_executor())]() mutable {
            work(*self, std::move(done));
        });
    }

    /// Runs `work(core)` on the manager strand while the core lives.
    template <class Work>
    void with_strand(Work work) {
        asio::post(strand_, [weak = weak_from_this(), work = std::move(work)]() mutable {
            if (auto self = weak.lock()) work(*self);
        });
    }

    /// A callable for later (a cancellation slot's): with_strand(work), if the core lives.
    template <class Work>
    static auto strand_call(std::weak_ptr<manager_core> weak, Work work) {
        return [weak = std::move(weak), work = std::move(work)] {
            if (auto self = weak.lock()) self->with_strand(work);
        };
    }

    // ---- server state machine (manager strand) ---------------------------------------------

    std::error_code can_start();
    std::error_code start_listening();
    void begin_stop();
    void close_sessions();
    void finish_stop_if_idle();
    void finish_stop();
    void schedule_keepalive();

    // ---- connections (manager strand) ------------------------------------------------------

    void register_session(session_ptr const& session);
    void unregister_session(session_ptr const& session, std::uint16_t close_code);
    void update_connection_gauges();

    /// Runs a host predicate; an exception counts as "no" and is logged.
    template <class Predicate>
    bool host_allows(session const& sender, Predicate predicate) {
        try {
            bool yes = false;
            hooks_.call([&] { yes = predicate(); });
            return yes;
        } catch (std::exception const& e) {
            logger_->write(LogLevel::error, "authorizer_failed", e.what(), sender.id(),
                           sender.user_id());
            return false;
        } catch (...) {
            logger_->write(LogLevel::error, "authorizer_failed", "unknown exception",
                           sender.id(), sender.user_id());
            return false;
        }
    }

    Options const options_;
    std::shared_ptr<logger> logger_;
    std::shared_ptr<manager_counters> counters_;
    asio::io_context& context_;
    strand_type strand_;
    asio::steady_timer keepalive_timer_;
    std::weak_ptr<void const> lifetime_;  ///< this core, for the services' timers
    std::shared_ptr<transport> transport_;
    std::shared_ptr<cluster_link> cluster_;  ///< set before start_server, or none
    std::atomic<std::uint64_t> next_operation_id_{1};

    // The rooms; all but the hooks, the gate and the routes live on the manager strand.
    host_hooks hooks_;
    connection_registry connections_;
    topic_registry topics_;
    delivery delivery_;
    handshake_gate gate_;
    http_routes routes_;
    confirmation_service confirmations_;
    heartbeat_service heartbeats_;
    ack_service acks_;
    task_cancellation cancellation_;
    frame_router router_;

    // Manager strand only.
    phase phase_ = phase::stopped;
    bool closing_sessions_ = false;  ///< stopping: the close frames have been queued
    bool leaving_cluster_ = false;   ///< stopping: the cluster link is stopping
    subscribe_authorizer subscribe_authorizer_;
    std::vector<std::function<void(std::error_code)>> stop_waiters_;
};

}  // namespace wsmanager::detail

#include <wsmanager/detail/impl/manager_core.hpp>
