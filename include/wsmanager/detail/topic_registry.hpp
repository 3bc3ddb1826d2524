// SPDX-License-Identifier: BSL-1.0
#pragma once

// Topic subscriptions of this node's connections: the subscribers of a topic (publish,
// task_cancelled) and the topics of a connection (left when it closes), with the
// per-connection limit. Whether a user may join a topic is the host's call, asked before
// subscribe() (manager_core).
//
// Manager strand only: not thread-safe.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <wsmanager/detail/session.hpp>

namespace wsmanager::detail {

class topic_registry {
public:
    using subscribers_type = std::unordered_map<std::uint64_t, session_ptr>;

    enum class subscribe_result { subscribed, already_subscribed, connection_limit, topic_limit };

    /// Adds `session` to `topic`, unless it already is there, has `max_per_connection`
    /// topics, or the topic is new and there are `max_topics` already.
    subscribe_result subscribe(session_ptr const& session, std::string const& topic,
                               std::size_t max_per_connection, std::size_t max_topics) {
        auto& topics = topics_of_[session->id()];
        if (std::find(topics.begin(), topics.end(), topic) != topics.end()) {
            return subscribe_result::already_subscribed;
        }
        bool const new_topic = !subscribers_.contains(topic);
        if (topics.size() >= max_per_connection || (new_topic && subscribers_.size() >= max_topics)) {
            auto const refused = topics.size() >= max_per_connection
                                     ? subscribe_result::connection_limit
                                     : subscribe_result::topic_limit;
            if (topics.empty()) topics_of_.erase(session->id());
            return refused;
        }
        topics.push_back(topic);
        subscribers_[topic].emplace(session->id(), session);
        return subscribe_result::subscribed;
    }

    /// False when the connection was not subscribed.
    bool unsubscribe(std::uint64_t connection_id, std::string const& topic) {
        auto it = topics_of_.find(connection_id);
        if (it == topics_of_.end()) return false;
        auto& topics = it->second;
        auto known = std::find(topics.begin(), topics.end(), topic);
        if (known == topics.end()) return false;
        topics.erase(known);
        if (topics.empty()) topics_of_.erase(it);
        leave(connection_id, topic);
        return true;
    }

    /// Leaves every topic of a connection (it closed).
    void remove_connection(std::uint64_t connection_id) {
        auto node = topics_of_.extract(connection_id);
        if (node.empty()) return;
        for (auto const& topic : node.mapped()) leave(connection_id, topic);
    }

    bool is_subscribed(std::uint64_t connection_id, std::string const& topic) const {
        auto it = topics_of_.find(connection_id);
        return it != topics_of_.end() &&
               std::find(it->second.begin(), it->second.end(), topic) != it->second.end();
    }

    /// The subscribers of `topic`; empty when it has none.
    subscribers_type const& subscribers(std::string const& topic) const {
        static subscribers_type const none;
        auto it = subscribers_.find(topic);
        return it == subscribers_.end() ? none : it->second;
    }

    /// The topics one connection is subscribed to.
    std::size_t topic_count(std::uint64_t connection_id) const {
        auto it = topics_of_.find(connection_id);
        return it == topics_of_.end() ? 0 : it->second.size();
    }

    /// Topics with at least one subscriber.
    std::size_t size() const noexcept { return subscribers_.size(); }

private:
    void leave(std::uint64_t connection_id, std::string const& topic) {
        auto it = subscribers_.find(topic);
        if (it == subscribers_.end()) return;
        it->second.erase(connection_id);
        if (it->second.empty()) subscribers_.erase(it);
    }

    std::unordered_map<std::string, subscribers_type> subscribers_;
    std::unordered_map<std::uint64_t, std::vector<std::string>> topics_of_;
};

}  // namespace wsmanager::detail
