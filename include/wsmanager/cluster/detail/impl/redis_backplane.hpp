// SPDX-License-Identifier: BSL-1.0
#pragma once

// Bodies of redis_backplane: the directory's scripts, the cancel round, what arrives on the
// bus, the heartbeat, reaping and reconciling.

namespace wsmanager::cluster::detail {

inline std::string encode_step(TaskStepResult const& r) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
    auto text = [&](std::string const& value) {
        w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
    };
    auto optional = [&](std::optional<std::string> const& value) {
        if (value) {
            text(*value);
        } else {
            w.Null();
        }
    };
    w.StartObject();
    w.Key("step"); text(r.step);
    w.Key("result"); w.RawValue(r.result.data(), r.result.size(), rapidjson::kObjectType);
    w.Key("completed"); w.Bool(r.completed);
    w.Key("message"); text(r.message);
    w.Key("status"); text(r.status);
    w.Key("error_code"); optional(r.error_code);
    w.Key("error_message"); optional(r.error_message);
    w.EndObject();
    return {buffer.GetString(), buffer.GetSize()};
}

inline std::optional<TaskStepResult> decode_step(std::string const& json) {
    rapidjson::Document d;
    d.Parse(json.data(), json.size());
    if (d.HasParseError() || !d.IsObject()) return std::nullopt;
    auto text = [&](char const* name) -> std::optional<std::string> {
        auto it = d.FindMember(name);
        if (it == d.MemberEnd() || !it->value.IsString()) return std::nullopt;
        return std::string(it->value.GetString(), it->value.GetStringLength());
    };
    TaskStepResult r;
    r.step = text("step").value_or("");
    r.message = text("message").value_or("");
    r.status = text("status").value_or("");
    r.error_code = text("error_code");
    r.error_message = text("error_message");
    if (auto it = d.FindMember("completed"); it != d.MemberEnd() && it->value.IsBool()) {
        r.completed = it->value.GetBool();
    }
    if (auto it = d.FindMember("result"); it != d.MemberEnd()) {
        rapidjson::StringBuffer buffer;
        rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
        it->value.Accept(w);
        r.result.assign(buffer.GetString(), buffer.GetSize());
    }
    return r;
}

// ---- the directory -----------------------------------------------------------------------

inline void redis_backplane::decide(std::string const& callback_id, std::string const& user_id,
                                    UserConfirmation const& proposal, bool,
                                    decide_done done) {
    if (!link_->up()) return done(decision{decision_verdict::unavailable, {}, {}});
    link_->run(decide_, {layout_.confirmation(callback_id)},
               {callback_id, user_id, decision_json(proposal), node_id_, layout_.prefix,
                layout_.bus(), ms(settings_.decided_kept), std::to_string(wall_ms())},
               guarded([this, done](std::error_code ec, redis_value const& reply) {
                   // Not knowing whether the script ran is "unavailable": the asking node
                   // tries again (and then loses, against itself, if it had won).
                   if (ec || !reply.is_array() || reply.as_array().empty() ||
                       !reply.as_array()[0].is_string()) {
                       return done(decision{decision_verdict::unavailable, {}, {}});
                   }
                   auto const& parts = reply.as_array();
                   auto const& verdict = parts[0].as_string();
                   auto winner = [&]() -> std::optional<UserConfirmation> {
                       if (parts.size() < 2 || !parts[1].is_string()) return std::nullopt;
                       return parse_decision(parts[1].as_string());
                   };
                   std::string task = parts.size() > 2 && parts[2].is_string()
                                          ? parts[2].as_string()
                                          : std::string{};
                   if (verdict == "won" || verdict == "lost") {
                       auto decided = winner();
                       if (!decided) return done(decision{decision_verdict::unavailable, {}, {}});
                       return done(decision{verdict == "won" ? decision_verdict::won
                                                             : decision_verdict::lost,
                                            std::move(*decided), std::move(task)});
                   }
                   if (verdict == "forbidden") return done(decision{decision_verdict::forbidden, {}, {}});
                   // Soon after a reconnect, a confirmation Redis has no record of may be one
                   // its node has not recorded again yet (a Redis that restarted empty): the
                   // client may answer again, rather than drop its answer.
                   done(decision{settling() ? decision_verdict::unavailable
                                            : decision_verdict::unknown,
                                 {}, {}});
               }));
}

inline void redis_backplane::pending_elsewhere(std::string const& user_id, pending_done done) {
    if (!link_->up()) return done({});
    link_->run(pending_, {layout_.user_confirmations(user_id)}, {layout_.prefix, node_id_},
               guarded([done](std::error_code ec, redis_value const& reply) {
                   std::vector<confirmation_record> records;
                   if (ec || !reply.is_array()) return done(std::move(records));
                   auto const& v = reply.as_array();
                   for (std::size_t i = 0; i + 7 <= v.size(); i += 7) {
                       auto text = [&](std::size_t k) {
                           return v[i + k].is_string() ? v[i + k].as_string() : std::string{};
                       };
                       auto step_result = decode_step(text(6));
                       if (!step_result) continue;
                       confirmation_record r;
                       r.callback_id = text(0);
                       r.user_id = text(1);
                       r.task_id = text(2);
                       r.step = std::atoi(text(3).c_str());
                       r.result = std::move(*step_result);
                       r.expires_at = std::chrono::system_clock::time_point(
                           std::chrono::milliseconds(std::atoll(text(5).c_str())));
                       records.push_back(std::move(r));
                   }
                   done(std::move(records));
               }));
}

// ---- cancels -----------------------------------------------------------------------------

inline void redis_backplane::request_cancel(CancelRequest const& request,
                                            std::function<void(cancel_verdict)> done) {
    auto const here = host_->evaluate_cancel(request);
    if (here == cancel_verdict::forbidden) return done(here);
    if (!link_->up()) return done(cancel_verdict::unavailable);
    auto const others = nodes_.load() > 0 ? nodes_.load() - 1 : 0;
    auto const id = random_id();
    auto& round = cancels_[id];
    round.done = std::move(done);
    round.verdicts.push_back(here);
    round.expected = others;
    if (others == 0) return finish_cancel(id);
    round.timer = std::make_unique<asio::steady_timer>(heartbeat_timer_->get_executor());
    round.timer->expires_after(settings_.cancel_timeout);
    round.timer->async_wait([weak = weak_from_this(), id](std::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || !self->engine_alive()) return;
        self->finish_cancel(id);  // a node that did not answer in time has no say
    });
    publish_envelope(
        kind::cancel_ask,
        [&](auto& w) {
            w.Key("id");
            string(w, id);
            w.Key("u");
            string(w, request.user_id);
            w.Key("task");
            string(w, request.task_id);
            w.Key("cid");
            w.Uint64(request.connection_id);
        },
        [weak = weak_from_this(), id](std::error_code ec) {
            auto self = weak.lock();
            if (!ec || !self) return;
            auto it = self->cancels_.find(id);
            if (it == self->cancels_.end()) return;
            auto finish = std::move(it->second.done);
            self->cancels_.erase(it);
            finish(cancel_verdict::unavailable);
        });
}

inline void redis_backplane::finish_cancel(std::string const& request_id) {
    auto it = cancels_.find(request_id);
    if (it == cancels_.end()) return;
    auto round = std::move(it->second);
    cancels_.erase(it);
    if (round.timer) round.timer->cancel();
    auto has = [&](cancel_verdict v) {
        return std::find(round.verdicts.begin(), round.verdicts.end(), v) != round.verdicts.end();
    };
    // Another user's work anywhere forbids it; then any node's yes; then any node's no.
    auto const verdict = has(cancel_verdict::forbidden)  ? cancel_verdict::forbidden
                         : has(cancel_verdict::accepted) ? cancel_verdict::accepted
                         : has(cancel_verdict::refused)  ? cancel_verdict::refused
                                                         : cancel_verdict::no_opinion;
    round.done(verdict);
}

// ---- the bus -----------------------------------------------------------------------------

inline void redis_backplane::received(std::string const& channel, std::string const& payload) {
    auto news = decode_envelope(payload);
    if (!news) {
        log_->write(LogLevel::debug, "cluster_noise", "not an envelope on " + channel);
        return;
    }
    manager_counters::add(received_);
    bool mine = news->origin == node_id_;
    if (mine && !news->incarnation.empty() && news->incarnation != incarnation_) {
        // Two processes under one node id share an inbox and take each other's news for
        // their own: a deployment error, said once, and this news treated as a peer's.
        if (!std::exchange(warned_same_id_, true)) {
            log_->write(LogLevel::error, "cluster_node_id_taken",
                        "another process runs as node " + node_id_ +
                            ": give each node its own node_id (WEBSOCKET_NODE_ID)");
        }
        mine = false;
    }
    if (news->sequence != 0 && !mine) {
        auto& peer = peers_[news->origin];
        if (peer.incarnation != news->incarnation) {
            peer = peer_sequence{news->incarnation, 0, {}};  // restarted: counts from 1 again
        }
        if (news->sequence <= peer.last) return;  // a duplicate
        peer.last = news->sequence;
        peer.heard = std::chrono::steady_clock::now();
    }
    if (news->sent_ms > 0) {
        auto const delay = static_cast<double>(wall_ms() - news->sent_ms) / 1000.0;
        if (!mine && delay >= 0) latency_seconds_.observe(delay);
    }
    auto const& k = news->kind;
    if (k == kind::decided) {
        // This node's own decisions come back too: they end what is still pending here
        // (a decision whose reply was lost), and tell nobody again.
        host_->confirmation_decided(news->id, news->user_id, news->task_id, news->decision,
                                    mine);
        return;
    }
    if (mine) return;
    if (k == kind::message) {
        host_->deliver_from_peer(news->target, Message::from_trusted_json(news->body));
    } else if (k == kind::close) {
        host_->close_from_peer(news->target, news->close_code, news->reason);
    } else if (k == kind::cancel_ask) {
        auto const verdict =
            host_->evaluate_cancel(CancelRequest{news->user_id, news->task_id, news->connection_id});
        publish_envelope(
            kind::cancel_reply,
            [&](auto& w) {
                w.Key("id");
                string(w, news->id);
                w.Key("verdict");
                w.Int(static_cast<int>(verdict));
            },
            {}, {}, layout_.inbox(news->origin));
    } else if (k == kind::cancel_reply) {
        auto it = cancels_.find(news->id);
        if (it == cancels_.end()) return;
        it->second.verdicts.push_back(static_cast<cancel_verdict>(news->verdict));
        if (it->second.verdicts.size() > it->second.expected) finish_cancel(news->id);
    } else if (k == kind::cancel_apply) {
        host_->apply_cancel(news->user_id, news->task_id);
    } else if (k == kind::ack) {
        host_->acknowledge_from_peer(news->user_id, news->id);
    }
}

// ---- liveness ----------------------------------------------------------------------------

inline void redis_backplane::state(bool up) {
    if (up && std::exchange(reconnecting_, true)) {
        // A reconnect: the settle window opens (settle_window), before connected_ is set.
        auto const window = settle_window();
        settle_until_.store(
            (std::chrono::steady_clock::now() + window).time_since_epoch().count(),
            std::memory_order_relaxed);
        log_->write(LogLevel::info, "cluster_connected",
                    "node " + node_id_ + " reaches Redis again; for " +
                        std::to_string(window.count()) +
                        " ms, answers to confirmations Redis has no record of are "
                        "'unavailable' while the nodes record theirs again");
    } else if (up) {
        log_->write(LogLevel::info, "cluster_connected", "node " + node_id_ + " reaches Redis");
    }
    connected_.store(up);
    if (!up) return;
    // Back: this node's presence again, then its pending confirmations reconciled (a Redis
    // that restarted empty has lost them).
    auto users = host_->local_users();
    if (!users.empty()) {
        std::vector<std::string> argv{"SADD", layout_.node_users(node_id_)};
        argv.insert(argv.end(), users.begin(), users.end());
        link_->command(std::move(argv), ignore);
    }
    reconcile_due_ = true;
    heartbeat();
}

inline void redis_backplane::schedule_heartbeat() {
    if (stopping_) return;
    heartbeat_timer_->expires_after(settings_.heartbeat_interval);
    heartbeat_timer_->async_wait([weak = weak_from_this()](std::error_code ec) {
        auto self = weak.lock();
        if (ec || !self || !self->engine_alive()) return;
        self->heartbeat();
        self->schedule_heartbeat();
    });
}

inline void redis_backplane::heartbeat() {
    if (!link_->up() || stopping_) return;
    link_->run(
        heartbeat_, {layout_.nodes(), layout_.node(node_id_), layout_.node_users(node_id_)},
        {node_id_, ms(settings_.node_ttl), std::to_string(host_->local_connections()),
         layout_.prefix},
        guarded([this](std::error_code ec, redis_value const& reply) {
            if (ec || !reply.is_array() || reply.as_array().size() < 4) return;
            auto const& v = reply.as_array();
            auto number = [](redis_value const& x) {
                return x.is_integer() ? static_cast<std::size_t>(std::max(0LL, x.as_integer())) : 0;
            };
            forget_quiet_peers();
            nodes_.store(number(v[0]));
            connections_.store(number(v[1]));
            users_.store(number(v[2]));
            if (v[3].is_array()) {
                for (auto const& dead : v[3].as_array()) {
                    if (!dead.is_string() || dead.as_string() == node_id_) continue;
                    auto const id = dead.as_string();
                    link_->run(reap_, {layout_.nodes()},
                               {id, layout_.prefix, layout_.bus(),
                                decision_json({false, std::nullopt, ConfirmationReason::shutdown}),
                                ms(settings_.decided_kept), std::to_string(wall_ms()), "0"},
                               guarded([this, id](std::error_code reap_ec, redis_value const& n) {
                                   if (reap_ec || !n.is_integer() || n.as_integer() < 0) return;
                                   manager_counters::add(reaped_);
                                   peers_.erase(id);
                                   log_->write(LogLevel::warning, "cluster_node_dead",
                                               "node " + id + " stopped heartbeating; " +
                                                   std::to_string(n.as_integer()) +
                                                   " of its confirmations dismissed");
                               }));
                }
            }
            if (reconcile_due_) {
                reconcile_due_ = false;
                reconcile();
            }
        }));
}

inline void redis_backplane::forget_quiet_peers() {
    // Nodes that stopped cleanly reap themselves and are never heard of again; their
    // entries go after a while. A quiet peer that speaks later starts a new entry, which
    // only gives up deduplicating its first envelope.
    auto const now = std::chrono::steady_clock::now();
    auto const quiet = std::max(std::chrono::milliseconds(std::chrono::minutes(10)),
                                settings_.node_ttl * 10);
    std::erase_if(peers_, [&](auto const& entry) { return now - entry.second.heard > quiet; });
}

inline void redis_backplane::reconcile() {
    for (auto const& record : host_->confirmations_held()) {
        auto const expires = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 record.expires_at.time_since_epoch())
                                 .count();
        link_->run(reconcile_, record_keys(record), record_args(record, expires),
                   guarded([this, record](std::error_code ec, redis_value const& reply) {
                       if (ec || !reply.is_array() || reply.as_array().empty()) return;
                       auto const& v = reply.as_array();
                       if (v[0].is_string() && v[0].as_string() == "recreated") {
                           log_->write(LogLevel::warning, "cluster_reconciled",
                                       "confirmation " + record.callback_id +
                                           " recorded again (Redis had lost it)");
                       } else if (v[0].is_string() && v[0].as_string() == "resolved" &&
                                  v.size() > 1 && v[1].is_string()) {
                           // Decided while this node could not hear of it.
                           if (auto decided = parse_decision(v[1].as_string())) {
                               host_->confirmation_decided(record.callback_id, record.user_id,
                                                           record.task_id, *decided, false);
                           }
                       }
                   }));
    }
}

inline void redis_backplane::render_metrics(std::string& out) const {
    using namespace wsmanager::detail::metrics_text;
    single(out, "wsmanager_cluster_connected", "gauge", "1 while the backplane reaches Redis.",
           connected_.load() ? 1 : 0);
    single(out, "wsmanager_cluster_nodes", "gauge", "Live nodes of the cluster, this one included.",
           nodes_.load());
    single(out, "wsmanager_cluster_connections", "gauge", "Open connections on every live node.",
           connections_.load());
    single(out, "wsmanager_cluster_users_online", "gauge", "Distinct users on every live node.",
           users_.load());
    single(out, "wsmanager_cluster_reconnects_total", "counter",
           "Times the backplane lost Redis and connected again.",
           link_ ? link_->reconnects() : std::uint64_t{0});
    single(out, "wsmanager_cluster_publish_errors_total", "counter",
           "Cross-node messages that could not be published (error::cluster_unavailable).",
           publish_errors_.load());
    single(out, "wsmanager_cluster_messages_received_total", "counter",
           "Envelopes received from the bus.", received_.load());
    single(out, "wsmanager_cluster_nodes_reaped_total", "counter",
           "Dead nodes this node reaped (their confirmations dismissed).", reaped_.load());
    header(out, "wsmanager_cluster_latency_seconds", "histogram",
           "From a peer's publish to its arrival here (wall clocks).");
    latency_seconds_.render(out, "wsmanager_cluster_latency_seconds");
}

}  // namespace wsmanager::cluster::detail
