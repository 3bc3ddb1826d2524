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

    /// This node's connections only: the number of sessions the message was handed to.
    std::size_t deliver_local(delivery_target const& target, Message const& message) {
        using kind = delivery_target::kind;
        switch (target.scope) {
            case kind::everyone: return to_everyone(message);
            case kind::user: return to_each(connections_.of_user(target.user_id), message);
            case kind::topic: return to_subscribers(target.topic, message);
            case kind::user_and_topic: return to_user_and_topic(target, message);
            case kind::connection: {
                auto session = connections_.find(target.connection_id);
                if (!session) return 0;
                session->send(message);
                return 1;
            }
        }
        return 0;
    }

private:
    std::size_t to_everyone(Message const& message) {
        auto const started = std::chrono::steady_clock::now();
        auto const count = to_each(connections_.all(), message);
        counters_.broadcast_fanout_seconds.observe(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        return count;
    }

    static std::size_t to_each(std::vector<session_ptr> const& sessions, Message const& message) {
        for (auto const& session : sessions) session->send(message);
        return sessions.size();
    }

    std::size_t to_subscribers(std::string const& topic, Message const& message) {
        auto const& subscribers = topics_.subscribers(topic);
        for (auto const& [id, session] : subscribers) session->send(message);
        return subscribers.size();
    }

    std::size_t to_user_and_topic(delivery_target const& target, Message const& message) {
        auto const& of_user = connections_.of_user(target.user_id);
        std::size_t count = to_each(of_user, message);
        for (auto const& [id, session] : topics_.subscribers(target.topic)) {
            if (!target.user_id.empty() && session->user_id() == target.user_id) continue;
            session->send(message);
            ++count;
        }
        return count;
    }

    connection_registry const& connections_;
    topic_registry const& topics_;
    manager_counters& counters_;
    std::shared_ptr<backplane> backplane_;
};

}  // namespace wsmanager::detail
