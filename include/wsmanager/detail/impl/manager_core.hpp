// SPDX-License-Identifier: BSL-1.0
#pragma once

// Bodies of manager_core's state machine, connection lifecycle and subscriptions.

namespace wsmanager::detail {

inline Status manager_core::status() const {
    auto const relaxed = std::memory_order_relaxed;
    auto const& c = *counters_;
    Status s;
    s.running = c.running.load(relaxed);
    s.active_connections = c.active_connections.load(relaxed);
    s.pending_callbacks = c.pending_callbacks.load(relaxed);
    s.users_online = c.users_online.load(relaxed);
    s.topics = c.topics.load(relaxed);
    s.port = s.running ? c.port.load(relaxed) : 0;
    if (s.running) {
        s.uptime_s =
            static_cast<double>(manager_counters::steady_ms() - c.started_at_ms.load(relaxed)) /
            1000.0;
    }
    s.connections_opened = c.connections_opened.load(relaxed);
    s.connections_rejected = c.connections_rejected.load(relaxed);
    s.messages_sent = c.messages_sent.load(relaxed);
    s.messages_failed = c.messages_failed.load(relaxed);
    s.messages_received = c.messages_received.load(relaxed);
    s.frames_rejected = c.frames_rejected.load(relaxed);
    auto const attempts = s.connections_opened + s.connections_rejected;
    s.connection_success_rate =
        attempts == 0 ? 1.0
                      : static_cast<double>(s.connections_opened) / static_cast<double>(attempts);
    auto const ended = c.confirmations_ended.load(relaxed);
    s.avg_confirmation_wait_s =
        ended == 0 ? 0.0
                   : static_cast<double>(c.confirmation_wait_total_us.load(relaxed)) / 1e6 /
                         static_cast<double>(ended);
    if (cluster_) {
        auto const figures = cluster_->figures();
        s.node_id = figures.node_id;
        s.cluster = Status::Cluster{true, figures.connected, figures.nodes, figures.connections,
                                    figures.users_online};
    }
    return s;
}

// ---- server state machine ---------------------------------------------------------------

inline std::error_code manager_core::can_start() {
    if (phase_ != phase::stopped) return error::already_running;
    if (!options_.redis_url.empty() && !cluster_) {
        // A node that thinks it is alone in a cluster would answer for all of it.
        logger_->write(LogLevel::error, "start_failed",
                       "redis_url is set but no backplane was given "
                       "(WebSocketManager::set_backplane(wsmanager::cluster::redis(options)))");
        return error::no_backplane;
    }
    return {};
}

inline std::error_code manager_core::start_listening() {
    if (auto ec = transport_->listen()) return ec;
    counters_->port.store(transport_->local_port(), std::memory_order_relaxed);
    counters_->started_at_ms.store(manager_counters::steady_ms(), std::memory_order_relaxed);
    counters_->running.store(true, std::memory_order_relaxed);
    phase_ = phase::running;
    if (options_.auth_secret.empty() && options_.auth_public_key.empty() &&
        !gate_.has_authenticator()) {
        logger_->write(LogLevel::warning, "development_mode",
                       "no auth secret or public key: ?user_id= is trusted as the user's "
                       "identity");
    }
    logger_->write(LogLevel::info, "server_started",
                   "listening on " + options_.host + ":" + std::to_string(local_port()));
    schedule_keepalive();
    return {};
}

inline void manager_core::begin_stop() {
    if (phase_ != phase::running) return;
    phase_ = phase::stopping;
    closing_sessions_ = false;
    leaving_cluster_ = false;
    counters_->running.store(false, std::memory_order_relaxed);
    transport_->stop_listening();
    keepalive_timer_.cancel();
    heartbeats_.end_all(error::shutting_down);
    acks_.end_all(error::shutting_down);
    // Pending confirmations end before the close frames are queued, so clients still see
    // confirmation_resolved (reason shutdown) on their way out. In a cluster they are
    // decided in Redis first: the sessions close once they all have.
    confirmations_.end_all(ConfirmationReason::shutdown, [weak = weak_from_this()] {
        if (auto self = weak.lock()) self->close_sessions();
    });
}

inline void manager_core::close_sessions() {
    if (phase_ != phase::stopping || closing_sessions_) return;
    closing_sessions_ = true;
    delivery_.release_corked();  // the last frames leave before the close frames
    for (auto const& session : connections_.all()) {
        session->close(protocol::close_code::going_away, "Server shutting down");
    }
    logger_->write(LogLevel::info, "server_stopping",
                   std::to_string(connections_.size()) + " connections to close");
    finish_stop_if_idle();
}

inline void manager_core::finish_stop_if_idle() {
    if (phase_ != phase::stopping || !closing_sessions_ || connections_.size() != 0) return;
    if (!cluster_) return finish_stop();
    if (leaving_cluster_) return;
    leaving_cluster_ = true;
    cluster_->stop([weak = weak_from_this()] {
        if (auto self = weak.lock()) self->finish_stop();
    });
}

inline void manager_core::finish_stop() {
    phase_ = phase::stopped;
    logger_->write(LogLevel::info, "server_stopped", "");
    auto waiters = std::move(stop_waiters_);
    stop_waiters_.clear();
    for (auto& waiter : waiters) waiter(std::error_code{});
}

inline void manager_core::schedule_keepalive() {
    if (options_.ping_interval.count() == 0) return;
    keepalive_timer_.expires_after(options_.ping_interval);
    keepalive_timer_.async_wait([weak = weak_from_this()](std::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || self->phase_ != phase::running) return;
        for (auto const& session : self->connections_.all()) session->ping();
        self->schedule_keepalive();
    });
}

// ---- connections ------------------------------------------------------------------------

inline void manager_core::register_session(session_ptr const& session) {
    if (phase_ != phase::running) {
        session->close(protocol::close_code::going_away, "Server shutting down");
        return;
    }
    if (connections_.size() >= options_.max_connections) {
        counters_->count_rejected(reject_reason::limit);
        logger_->write(LogLevel::warning, "connection_limit",
                       "closing connection over max_connections (" +
                           std::to_string(options_.max_connections) + ")",
                       session->id(), session->user_id());
        session->close(protocol::close_code::try_again_later, "Server connection limit reached");
        return;
    }
    if (options_.max_connections_per_user != 0 && !session->anonymous() &&
        connections_.of_user(session->user_id()).size() >= options_.max_connections_per_user) {
        counters_->count_rejected(reject_reason::limit);
        logger_->write(LogLevel::warning, "user_connection_limit",
                       "closing connection over max_connections_per_user (" +
                           std::to_string(options_.max_connections_per_user) + ")",
                       session->id(), session->user_id());
        session->close(protocol::close_code::policy_violation,
                       "Connection limit per user reached");
        return;
    }
    bool const first_of_user =
        !session->anonymous() && !connections_.user_online(session->user_id());
    connections_.add(session);
    update_connection_gauges();
    if (cluster_ && first_of_user) cluster_->user_online(session->user_id());
    manager_counters::add(counters_->connections_opened);
    logger_->write(LogLevel::debug, "connection_opened", session->remote_endpoint(),
                   session->id(), session->user_id());
    session->send(codec::connected_frame(session->id(), session->user_id(), session->subprotocol()));
    if (!session->anonymous()) confirmations_.user_online(session);
}

inline void manager_core::unregister_session(session_ptr const& session,
                                             std::uint16_t close_code) {
    // Never registered (refused at the limit, or opened while stopping): not counted.
    if (!connections_.contains(session->id())) return;
    topics_.remove_connection(session->id());
    auto const removed = connections_.remove(session->id());
    if (removed.user_went_offline) {
        if (phase_ == phase::running) confirmations_.user_offline(session->user_id());
        if (cluster_) cluster_->user_offline(session->user_id());
    }
    update_connection_gauges();
    counters_->count_closed(close_code);
    logger_->write(LogLevel::debug, "connection_closed", "code " + std::to_string(close_code),
                   session->id(), session->user_id());
    finish_stop_if_idle();
}

inline void manager_core::update_connection_gauges() {
    counters_->active_connections.store(connections_.size(), std::memory_order_relaxed);
    counters_->users_online.store(connections_.users_online(), std::memory_order_relaxed);
    counters_->topics.store(topics_.size(), std::memory_order_relaxed);
}

// ---- subscriptions ----------------------------------------------------------------------

inline void manager_core::subscribe(client_request const& request, codec::SubscriptionAsk ask) {
    auto const& sender = request.sender;
    if (ask.subscribe) {
        if (!topics_.is_subscribed(sender->id(), ask.topic)) {
            if (subscribe_authorizer_ && !host_allows(*sender, [&] {
                    return subscribe_authorizer_(sender->user_id(), ask.topic);
                })) {
                request.reject(protocol::ErrorCode::forbidden,
                               "Not allowed to subscribe to " + ask.topic);
                return;
            }
            switch (topics_.subscribe(sender, ask.topic, options_.max_topics_per_connection,
                                      options_.max_topics)) {
                case topic_registry::subscribe_result::connection_limit:
                    request.reject(protocol::ErrorCode::forbidden,
                                   "Subscription limit reached (" +
                                       std::to_string(options_.max_topics_per_connection) + ")");
                    return;
                case topic_registry::subscribe_result::topic_limit:
                    logger_->write(LogLevel::warning, "topic_limit",
                                   "max_topics (" + std::to_string(options_.max_topics) +
                                       ") reached",
                                   sender->id(), sender->user_id());
                    request.reject(protocol::ErrorCode::forbidden, "Topic limit reached");
                    return;
                case topic_registry::subscribe_result::subscribed:
                case topic_registry::subscribe_result::already_subscribed: break;
            }
        }
    } else {
        topics_.unsubscribe(sender->id(), ask.topic);
    }
    counters_->topics.store(topics_.size(), std::memory_order_relaxed);
    sender->send(codec::subscription_frame(ask.subscribe, ask.topic, request.request_id()));
}

}  // namespace wsmanager::detail
