// SPDX-License-Identifier: BSL-1.0
#pragma once

// The one place fan-out happens: a message and a target (everyone, a user, a topic, a user
// and a topic, one connection) become sends to this node's sessions, and, through the
// backplane, to the other nodes' (detail/backplane.hpp). Host calls (broadcast_message,
// send_to_user, publish) and the services' frames (requests, heartbeats, task_cancelled)
// all come through here.
//
// Manager strand only. Sends themselves are queued to each session, which writes on its own
// strand; the cork (release_corked) decides when those writes start.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <string>
#include <utility>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/post.hpp>

#include <wsmanager/detail/backplane.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/message.hpp>

namespace wsmanager::detail {

class delivery {
public:
    using executor_type = asio::any_io_executor;

    /// Without an executor every send starts its write at once (no cork).
    delivery(connection_registry const& connections, topic_registry const& topics,
             manager_counters& counters)
        : connections_(connections),
          topics_(topics),
          counters_(counters),
          backplane_(std::make_shared<single_node_backplane>()) {}

    /// With the manager strand: sends are corked (see release_corked). `lifetime` is the
    /// owner's: a cork turn does nothing once it has expired.
    delivery(executor_type strand, connection_registry const& connections,
             topic_registry const& topics, manager_counters& counters,
             std::weak_ptr<void const> const& lifetime)
        : delivery(connections, topics, counters) {
        strand_ = std::move(strand);
        lifetime_ = &lifetime;
    }

    /// Replaces the single-node backplane (before start_server).
    void set_backplane(std::shared_ptr<backplane> other_nodes) {
        backplane_ = std::move(other_nodes);
    }
    backplane& other_nodes() noexcept { return *backplane_; }

    /**
     * Delivers to the target's connections on every node: this node's at once, the others'
     * through the backplane. `done(ec, local)` gets the backplane's verdict and the number of
     * this node's connections the message was queued to.
     */
    template <class Done>
    void deliver(delivery_target const& target, Message const& message, Done done) {
        auto const local = deliver_local(target, message);
        if (target.scope == delivery_target::kind::connection) {
            done(std::error_code{}, local);
            return;
        }
        backplane_->publish(target, message, [done = std::move(done), local](std::error_code ec) mutable {
            done(ec, local);
        });
    }

    /// Delivers to the target's connections on every node, not waiting for the backplane.
    void deliver(delivery_target const& target, Message const& message) {
        deliver(target, message, [](std::error_code, std::size_t) {});
    }

    /// Closes the target's connections on every node (disconnect_user); `done(ec, local)`
    /// as deliver.
    template <class Done>
    void close(delivery_target const& target, std::uint16_t code, std::string const& reason,
               Done done) {
        auto const local = close_local(target, code, reason);
        if (target.scope == delivery_target::kind::connection) {  // an id is node-local
            done(std::error_code{}, local);
            return;
        }
        backplane_->publish_close(target, code, reason,
                                  [done = std::move(done), local](std::error_code ec) mutable {
                                      done(ec, local);
                                  });
    }

    /// This node's part of close(): the number of sessions closed.
    std::size_t close_local(delivery_target const& target, std::uint16_t code,
                            std::string const& reason) {
        release_corked();  // what was sent before the close leaves before it
        std::size_t count = 0;
        for_each_local(target, [&](session_ptr const& s) {
            s->close(code, reason);
            ++count;
        });
        return count;
    }

    /// This node's connections only: the number of sessions the message was handed to.
    std::size_t deliver_local(delivery_target const& target, Message const& message) {
        auto const started = std::chrono::steady_clock::now();
        std::size_t count = 0;
        if (strand_) {
            for_each_local(target, [&](session_ptr const& s) {
                if (s->queue(message)) corked_.push_back(s);
                ++count;
            });
            if (count != 0) cork();
        } else {
            for_each_local(target, [&](session_ptr const& s) {
                s->send(message);
                ++count;
            });
        }
        if (target.scope == delivery_target::kind::everyone) {
            counters_.broadcast_fanout_seconds.observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
                    .count());
        }
        return count;
    }

    /**
     * Starts the writes of every corked session now. The cork: a delivery queues its frames
     * without starting the writes, and a cork turn posted to the manager strand starts them
     * once the strand has gone round twice with no new delivery. A host that awaits each
     * broadcast before building the next delivers once every other turn, so its messages
     * gather and leave in one write per connection (uWebSockets' cork: everything sent
     * during one loop turn leaves in one write); a lone message leaves two idle turns later.
     * At most `max_corked_deliveries` deliveries wait.
     */
    void release_corked() {
        cork_scheduled_ = false;
        auto sessions = std::move(corked_);
        corked_.clear();
        for (auto const& s : sessions) s->flush();
        corked_.swap(sessions);  // keep the capacity
        corked_.clear();
    }

    static constexpr std::size_t max_corked_deliveries = 64;

private:
    void cork() {
        ++deliveries_;
        if (cork_scheduled_) return;
        cork_scheduled_ = true;
        seen_deliveries_ = deliveries_;
        first_delivery_ = deliveries_;
        quiet_turns_ = 0;
        post_cork_turn();
    }

    void post_cork_turn() {
        asio::post(strand_, [this, lifetime = *lifetime_] {
            auto const alive = lifetime.lock();
            if (alive && cork_scheduled_) cork_turn();
        });
    }

    void cork_turn() {
        if (deliveries_ != seen_deliveries_) {
            seen_deliveries_ = deliveries_;
            quiet_turns_ = 0;
        } else {
            ++quiet_turns_;
        }
        if (quiet_turns_ < 2 && deliveries_ - first_delivery_ < max_corked_deliveries) {
            post_cork_turn();
            return;
        }
        release_corked();
    }

    /// Calls `f(session_ptr const&)` once for each of this node's connections in `target`.
    template <class F>
    void for_each_local(delivery_target const& target, F&& f) {
        using kind = delivery_target::kind;
        switch (target.scope) {
            case kind::everyone:
                for (auto const& s : connections_.all()) f(s);
                return;
            case kind::user:
                for (auto const& s : connections_.of_user(target.user_id)) f(s);
                return;
            case kind::topic:
                for (auto const& [id, s] : topics_.subscribers(target.topic)) f(s);
                return;
            case kind::user_and_topic:
                for (auto const& s : connections_.of_user(target.user_id)) f(s);
                // The user's own tabs are all in of_user already: each connection once.
                for (auto const& [id, s] : topics_.subscribers(target.topic)) {
                    if (target.user_id.empty() || s->user_id() != target.user_id) f(s);
                }
                return;
            case kind::connection:
                if (auto s = connections_.find(target.connection_id)) f(s);
                return;
        }
    }

    connection_registry const& connections_;
    topic_registry const& topics_;
    manager_counters& counters_;
    std::shared_ptr<backplane> backplane_;

    // The cork (manager strand), when there is a strand.
    executor_type strand_;
    std::weak_ptr<void const> const* lifetime_ = nullptr;
    std::vector<session_ptr> corked_;  ///< sessions whose flush() the cork owes
    bool cork_scheduled_ = false;
    std::uint64_t deliveries_ = 0;        ///< deliveries that queued frames, ever
    std::uint64_t seen_deliveries_ = 0;   ///< deliveries_ at the last cork turn
    std::uint64_t first_delivery_ = 0;    ///< deliveries_ when the cork closed
    int quiet_turns_ = 0;                 ///< cork turns in a row without a delivery
};

}  // namespace wsmanager::detail
