// SPDX-License-Identifier: BSL-1.0
#pragma once

// The Redis backplane: what makes several nodes one. It is the engine's cluster link
// (detail/cluster_link.hpp): the backplane of delivery (messages and closes published on
// the bus, delivered by every other node to its own connections), the confirmation
// directory (confirmations recorded in Redis and decided by one Lua script, so the first
// decision on any node wins, once), the cancel round (every node's verdict), acks between
// nodes, node liveness (heartbeats with a TTL; a live node reaps a dead one, dismissing its
// confirmations) and the cluster's figures. Redis faults degrade it, never the node: local
// delivery goes on, cross-node calls report error::cluster_unavailable, and after a
// reconnect the node re-registers and reconciles its pending confirmations. docs/cluster.md.
//
// Manager strand: every member but figures() and render_metrics(), every handler.

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/steady_timer.hpp>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <wsmanager/cluster/detail/bus_envelope.hpp>
#include <wsmanager/cluster/detail/redis_connection.hpp>
#include <wsmanager/cluster/detail/redis_link.hpp>
#include <wsmanager/cluster/detail/redis_script.hpp>
#include <wsmanager/cluster/detail/scripts.hpp>
#include <wsmanager/detail/cluster_link.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/random_id.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::cluster {

/// The Redis backplane's timings (the addresses and names come from Options).
struct RedisOptions {
    /// How often a node refreshes its heartbeat and reads the cluster's figures.
    std::chrono::milliseconds heartbeat_interval = std::chrono::seconds(1);
    /// A node whose heartbeat is this old is dead: another node reaps it.
    std::chrono::milliseconds node_ttl = std::chrono::seconds(4);
    /// How long a cancel waits for the other nodes' verdicts.
    std::chrono::milliseconds cancel_timeout = std::chrono::seconds(2);
    /// How long a decided confirmation stays in Redis (a late answer loses against it).
    std::chrono::milliseconds decided_kept = std::chrono::seconds(60);
    std::chrono::milliseconds connect_timeout = std::chrono::seconds(2);
    /// A Redis that takes longer to answer is given up on, and reconnected.
    std::chrono::milliseconds command_timeout = std::chrono::seconds(2);
    std::chrono::milliseconds reconnect_initial = std::chrono::milliseconds(100);
    std::chrono::milliseconds reconnect_max = std::chrono::seconds(5);
};

namespace detail {

using namespace wsmanager::detail;

/// TaskStepResult as the directory stores it (the `result` field kept as JSON).
inline std::string encode_step(TaskStepResult const& r);
inline std::optional<TaskStepResult> decode_step(std::string const& json);

class redis_backplane final : public cluster_link,
                              public backplane,
                              public confirmation_directory,
                              public std::enable_shared_from_this<redis_backplane> {
public:
    /// @throws std::invalid_argument when Options::redis_url is not a redis:// URL.
    redis_backplane(Options const& options, RedisOptions settings)
        : settings_(settings),
          url_(redis_url::parse(options.redis_url, "redis_url")),
          node_id_(options.node_id.empty() ? default_node_id() : options.node_id),
          incarnation_(random_id().substr(0, 12)),
          layout_{options.cluster_prefix} {}

    // ---- cluster_link ----------------------------------------------------------------------

    void attach(cluster_host& host, asio::strand<asio::io_context::executor_type> strand,
                std::shared_ptr<logger const> log,
                std::weak_ptr<void const> const& lifetime) override {
        host_ = &host;
        log_ = std::move(log);
        lifetime_ = &lifetime;
        heartbeat_timer_.emplace(strand);
        redis_link_settings link_settings;
        link_settings.url = url_;
        link_settings.connect_timeout = settings_.connect_timeout;
        link_settings.command_timeout = settings_.command_timeout;
        link_settings.backoff_initial = settings_.reconnect_initial;
        link_settings.backoff_max = settings_.reconnect_max;
        link_settings.probe_interval = settings_.heartbeat_interval;
        link_ = std::make_shared<redis_link>(strand, link_settings,
                                             std::vector<std::string>{layout_.bus(),
                                                                      layout_.inbox(node_id_)},
                                             layout_.inbox(node_id_), log_);
        std::weak_ptr<redis_backplane> weak = shared_from_this();
        link_->set_handlers(
            [weak](std::string const& channel, std::string payload) {
                if (auto self = weak.lock(); self && self->engine_alive()) {
                    self->received(channel, payload);
                }
            },
            [weak](bool up) {
                if (auto self = weak.lock(); self && self->engine_alive()) self->state(up);
            });
    }

    void start(std::function<void(std::error_code)> done) override {
        log_->write(LogLevel::info, "cluster_joining",
                    "node " + node_id_ + " via " + url_.host + ":" + std::to_string(url_.port));
        // A Redis that cannot be reached at start is not fatal: the node serves its own
        // connections and keeps trying (docs/cluster.md).
        link_->start([this, weak = weak_from_this(), done = std::move(done)](std::error_code ec) {
            auto self = weak.lock();
            if (!self) return;
            if (ec) {
                log_->write(LogLevel::error, "cluster_unavailable",
                            "cannot reach Redis at start (" + ec.message() +
                                "): running on this node alone until it can");
                // Its first connection will come after the others', as a reconnect does.
                reconnecting_ = true;
            }
            schedule_heartbeat();
            done({});
        });
    }

    void stop(std::function<void()> done) override {
        heartbeat_timer_->cancel();
        stopping_ = true;
        auto finish = [this, weak = weak_from_this(), done = std::move(done)] {
            auto self = weak.lock();
            if (!self) return;
            link_->stop();
            connected_.store(false);
            done();
        };
        if (!link_->up()) return finish();
        // Leaving: whatever this node still has pending in Redis is dismissed on every tab.
        link_->run(reap_, {layout_.nodes()},
                   {node_id_, layout_.prefix, layout_.bus(),
                    decision_json({false, std::nullopt, ConfirmationReason::shutdown}),
                    ms(settings_.decided_kept), std::to_string(wall_ms()), "1"},
                   [finish](std::error_code, redis_value const&) { finish(); });
    }

    backplane& other_nodes() override { return *this; }
    confirmation_directory& directory() override { return *this; }

    void request_cancel(CancelRequest const& request,
                        std::function<void(cancel_verdict)> done) override;
    void publish_cancel(std::string const& user_id, std::string const& task_id) override {
        publish_envelope(kind::cancel_apply, [&](auto& w) {
            w.Key("u");
            string(w, user_id);
            w.Key("task");
            string(w, task_id);
        });
    }
    void forward_ack(std::string const& user_id, std::string const& message_id) override {
        publish_envelope(kind::ack, [&](auto& w) {
            w.Key("u");
            string(w, user_id);
            w.Key("id");
            string(w, message_id);
        });
    }
    void user_online(std::string const& user_id) override {
        if (link_->up()) link_->command({"SADD", layout_.node_users(node_id_), user_id}, ignore);
    }
    void user_offline(std::string const& user_id) override {
        if (link_->up()) link_->command({"SREM", layout_.node_users(node_id_), user_id}, ignore);
    }

    cluster_figures figures() const override {
        return {true, connected_.load(), node_id_, nodes_.load(), connections_.load(),
                users_.load()};
    }
    void render_metrics(std::string& out) const override;

    // ---- backplane -------------------------------------------------------------------------

    void publish(delivery_target const& target, Message const& message,
                 completion done) override {
        publish_envelope(
            kind::message, [&](auto& w) { write_target(w, target); }, std::move(done),
            message.text());
    }

    void publish_close(delivery_target const& target, std::uint16_t code,
                       std::string const& reason, completion done) override {
        publish_envelope(
            kind::close,
            [&](auto& w) {
                write_target(w, target);
                w.Key("c");
                w.Uint(code);
                w.Key("r");
                string(w, reason);
            },
            std::move(done));
    }

    // ---- confirmation_directory ------------------------------------------------------------

    void record(confirmation_record const& c, record_done done) override {
        if (!link_->up()) return done(error::cluster_unavailable);
        auto const expires = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 c.expires_at.time_since_epoch())
                                 .count();
        link_->run(record_, record_keys(c), record_args(c, expires),
                   guarded([done](std::error_code ec, redis_value const&) {
                       done(ec ? std::error_code(error::cluster_unavailable) : ec);
                   }));
    }

    void decide(std::string const& callback_id, std::string const& user_id,
                UserConfirmation const& proposal, bool, decide_done done) override;

    void pending_elsewhere(std::string const& user_id, pending_done done) override;

private:
    static constexpr auto ignore = [](std::error_code, redis_value const&) {};

    bool engine_alive() const { return lifetime_ != nullptr && !lifetime_->expired(); }

    /// A Redis reply handler that does nothing once the engine is gone.
    template <class Handler>
    redis_connection::command_handler guarded(Handler handler) {
        return [weak = weak_from_this(), handler = std::move(handler)](std::error_code ec,
                                                                        redis_value value) {
            auto self = weak.lock();
            if (!self || !self->engine_alive()) return;
            handler(ec, value);
        };
    }

    template <class Writer>
    static void string(Writer& w, std::string const& text) {
        w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
    }

    static std::string ms(std::chrono::milliseconds d) { return std::to_string(d.count()); }
    static std::int64_t wall_ms() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
    static std::string default_node_id() {
        char host[256] = {};
        if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
            std::snprintf(host, sizeof host, "node");
        }
        std::string id;
        for (char const* c = host; *c != '\0'; ++c) {
            bool const plain = std::isalnum(static_cast<unsigned char>(*c)) || *c == '-' ||
                               *c == '_' || *c == '.';
            id.push_back(plain ? *c : '-');
        }
        return id + "-" + std::to_string(getpid()) + "-" + random_id().substr(0, 6);
    }

    /// Publishes one envelope on the bus; `done` (if any) gets cluster_unavailable when it
    /// could not be.
    template <class Fill>
    void publish_envelope(std::string_view news, Fill fill, completion done = {},
                          std::string_view body = {}, std::string channel = {}) {
        if (!link_->up()) {
            manager_counters::add(publish_errors_);
            if (done) done(error::cluster_unavailable);
            return;
        }
        auto payload =
            encode_envelope(node_id_, incarnation_, ++sequence_, news, wall_ms(), fill, body);
        link_->publish(channel.empty() ? layout_.bus() : channel, std::move(payload),
                       [this, weak = weak_from_this(), done = std::move(done)](std::error_code ec) {
                           auto self = weak.lock();
                           if (!self) return;
                           if (ec) manager_counters::add(publish_errors_);
                           if (done) done(ec ? std::error_code(error::cluster_unavailable) : ec);
                       });
    }

    std::vector<std::string> record_keys(confirmation_record const& c) const {
        return {layout_.confirmation(c.callback_id), layout_.user_confirmations(c.user_id),
                layout_.node_confirmations(node_id_)};
    }
    std::vector<std::string> record_args(confirmation_record const& c,
                                         std::int64_t expires_ms) const {
        auto const ttl = std::max<std::int64_t>(expires_ms - wall_ms(), 1000) +
                         settings_.decided_kept.count();
        return {c.callback_id, c.user_id,   c.task_id, std::to_string(c.step), node_id_,
                std::to_string(expires_ms), encode_step(c.result), std::to_string(ttl)};
    }

    /// After a reconnect, how long a decide that finds no record says `unavailable`, not
    /// `unknown`: a Redis that restarted empty has lost the confirmations, and their nodes
    /// record them again only once they have reconnected too (reconcile). That is within a
    /// backoff wait (at most 1.5 reconnect_max, its jitter), a connect and a heartbeat's
    /// reply after Redis is back, every node having the same timings; node_ttl at least,
    /// the age at which a silent node counts as dead (docs/cluster.md).
    std::chrono::milliseconds settle_window() const {
        return std::max(settings_.node_ttl, settings_.reconnect_max * 3 / 2 +
                                                settings_.connect_timeout +
                                                settings_.command_timeout);
    }
    /// True within the settle window of this node's last reconnect.
    bool settling() const {
        return std::chrono::steady_clock::now().time_since_epoch().count() <
               settle_until_.load(std::memory_order_relaxed);
    }

    void received(std::string const& channel, std::string const& payload);
    void state(bool up);
    void schedule_heartbeat();
    void heartbeat();
    void reconcile();
    void forget_quiet_peers();
    void finish_cancel(std::string const& request_id);

    /// A cancel this node asked the others about.
    struct cancel_round {
        std::function<void(cancel_verdict)> done;
        std::vector<cancel_verdict> verdicts;
        std::size_t expected = 0;
        std::unique_ptr<asio::steady_timer> timer;
    };

    RedisOptions settings_;
    redis_url url_;
    std::string node_id_;
    std::string incarnation_;  ///< this process, among the node id's restarts
    redis_layout layout_;
    cluster_host* host_ = nullptr;
    std::shared_ptr<logger const> log_;
    std::weak_ptr<void const> const* lifetime_ = nullptr;
    std::shared_ptr<redis_link> link_;
    std::optional<asio::steady_timer> heartbeat_timer_;
    redis_script record_{record_script};
    redis_script reconcile_{reconcile_script};
    redis_script decide_{decide_script};
    redis_script pending_{pending_of_user_script};
    redis_script heartbeat_{heartbeat_script};
    redis_script reap_{reap_script};

    // Manager strand.
    std::uint64_t sequence_ = 0;
    /// The last sequence number heard from a peer's process, to drop duplicates.
    struct peer_sequence {
        std::string incarnation;
        std::uint64_t last = 0;
        std::chrono::steady_clock::time_point heard;
    };
    std::unordered_map<std::string, peer_sequence> peers_;  ///< by node id
    bool warned_same_id_ = false;
    std::map<std::string, cancel_round> cancels_;
    bool reconcile_due_ = false;
    bool stopping_ = false;
    /// The next connection is a reconnect (or a first one that came late): it opens a
    /// settle window.
    bool reconnecting_ = false;

    // Any thread reads these.
    std::atomic<bool> connected_{false};
    /// The settle window's end, steady_clock ticks (0: none). Written by state(), read by
    /// decide's completion.
    std::atomic<std::chrono::steady_clock::rep> settle_until_{0};
    std::atomic<std::size_t> nodes_{0};
    std::atomic<std::size_t> connections_{0};
    std::atomic<std::size_t> users_{0};
    std::atomic<std::uint64_t> publish_errors_{0};
    std::atomic<std::uint64_t> received_{0};
    std::atomic<std::uint64_t> reaped_{0};
    histogram<8> latency_seconds_{{1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 1}};
};

}  // namespace detail
}  // namespace wsmanager::cluster

#include <wsmanager/cluster/detail/impl/redis_backplane.hpp>
