// SPDX-License-Identifier: BSL-1.0
#pragma once

// The one place fan-out happens: a message and a target (everyone, a user, a topic, a user
// and a topic, one connection) become sends to this node's sessions, and, through the
// backplane, to the other nodes' (detail/backplane.hpp). Host calls (broadcast_message,
// send_to_user, publish) and the services' frames (requests, heartbeats, task_cancelled)
// all come through here.
//
// Manager strand only. Sends themselves are queued to each session, which writes on its own
// strand.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <system_error>
#include <string>
#include <utility>
#include <vector>

#include <wsmanager/detail/backplane.hpp>
#include <wsmanager/detail/connection_registry.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/topic_registry.hpp>
#include <wsmanager/message.hpp>

namespace wsmanager::detail {

class delivery {
public:
    delivery(connection_registry const& connections, topic_registry const& topics,
             manager_counters& counters)
        : connections_(connections),
          topics_(topics),
          counters_(counters),
          backplane_(std::make_shared<single_node_backplane>()) {}

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
        backplane_->publish_close(target, code, reason,
                                  [done = std::move(done), local](std::error_code ec) mutable {
                                      done(ec, local);
                                  });
    }

    /// This node's part of close(): the number of sessions closed.
    std::size_t close_local(delivery_target const& target, std::uint16_t code,
                            std::string const& reason) {
        std::size_t count = 0;
        for_each_local(target, [&](session& s) {
            s.close(code, reason);
            ++count;
        });
        return count;
    }

    /// This node's connections only: the number of sessions the message was handed to.
    std::size_t deliver_local(delivery_target const& target, Message const& message) {
        auto const started = std::chrono::steady_clock::now();
        std::size_t count = 0;
        for_each_local(target, [&](session& s) {
            s.send(message);
            ++count;
        });
        if (target.scope == delivery_target::kind::everyone) {
            counters_.broadcast_fanout_seconds.observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
                    .count());
        }
        return count;
    }

private:
    /// Calls `f(session&)` once for each of this node's connections in `target`.
    template <class F>
    void for_each_local(delivery_target const& target, F&& f) {
        using kind = delivery_target::kind;
        switch (target.scope) {
            case kind::everyone:
                for (auto const& s : connections_.all()) f(*s);
                return;
            case kind::user:
                for (auto const& s : connections_.of_user(target.user_id)) f(*s);
                return;
            case kind::topic:
                for (auto const& [id, s] : topics_.subscribers(target.topic)) f(*s);
                return;
            case kind::user_and_topic:
                for (auto const& s : connections_.of_user(target.user_id)) f(*s);
                // The user's own tabs are all in of_user already: each connection once.
                for (auto const& [id, s] : topics_.subscribers(target.topic)) {
                    if (target.user_id.empty() || s->user_id() != target.user_id) f(*s);
                }
                return;
            case kind::connection:
                if (auto s = connections_.find(target.connection_id)) f(*s);
                return;
        }
    }

    connection_registry const& connections_;
    topic_registry const& topics_;
    manager_counters& counters_;
    std::shared_ptr<backplane> backplane_;
};

}  // namespace wsmanager::detail
