// SPDX-License-Identifier: BSL-1.0
#pragma once

// The seam between this node and the other nodes of a cluster. delivery (detail/delivery.hpp)
// fans a message out to this node's connections and hands it to the backplane for the rest;
// a backplane delivers what other nodes publish through delivery::deliver_local. The
// single-node backplane has no other nodes. The Redis backplane (<wsmanager/cluster.hpp>)
// implements this interface; nothing else in the engine knows it is clustered.
//
// Manager strand: every call is made there, and every completion is invoked there (possibly
// before the call returns).

#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <utility>

#include <wsmanager/message.hpp>

namespace wsmanager::detail {

/// Who a message is for. One connection is a node-local address; the others span the cluster.
struct delivery_target {
    enum class kind : std::uint8_t { everyone, user, topic, user_and_topic, connection };

    kind scope = kind::everyone;
    std::string user_id{};  ///< user, user_and_topic
    std::string topic{};    ///< topic, user_and_topic
    std::uint64_t connection_id = 0;  ///< connection

    static delivery_target everyone() { return {}; }
    static delivery_target user(std::string user_id) {
        return {kind::user, std::move(user_id), {}, 0};
    }
    static delivery_target to_topic(std::string topic) {
        return {kind::topic, {}, std::move(topic), 0};
    }
    /// The user's connections and the topic's subscribers, each connection once.
    static delivery_target user_and_topic(std::string user_id, std::string topic) {
        return {kind::user_and_topic, std::move(user_id), std::move(topic), 0};
    }
    static delivery_target connection(std::uint64_t id) { return {kind::connection, {}, {}, id}; }
};

class backplane {
public:
    using completion = std::function<void(std::error_code)>;

    virtual ~backplane() = default;

    /**
     * `message` has been delivered to this node's part of `target`; delivers it to the other
     * nodes' part, each connection once. `done` gets success once the other nodes will get
     * it, or an error (error::cluster_unavailable) when they cannot.
     */
    virtual void publish(delivery_target const& target, Message const& message,
                         completion done) = 0;

    /// This node has closed its part of `target` (disconnect_user); closes the other
    /// nodes' part with the same code and reason.
    virtual void publish_close(delivery_target const& target, std::uint16_t code,
                               std::string const& reason, completion done) = 0;
};

/// One node, no others: publishing reaches nobody else and always succeeds.
class single_node_backplane final : public backplane {
public:
    void publish(delivery_target const&, Message const&, completion done) override {
        done(std::error_code{});
    }
    void publish_close(delivery_target const&, std::uint16_t, std::string const&,
                       completion done) override {
        done(std::error_code{});
    }
};

}  // namespace wsmanager::detail
