// SPDX-License-Identifier: BSL-1.0
#pragma once

// The seam between the engine and a cluster of nodes. A cluster link (the Redis backplane of
// <wsmanager/cluster.hpp>) is the engine's backplane (delivery's other nodes) and its
// confirmation directory, carries cancels and acks between nodes, and reports the cluster's
// figures. It talks back to the engine through cluster_host, which manager_core implements.
// Without a link the engine is one node, and none of this is used.
//
// Manager strand: every call either way is made there and completes there, except
// figures() and render_metrics(), which any thread may call.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/strand.hpp>

#include <wsmanager/detail/backplane.hpp>
#include <wsmanager/detail/confirmation_directory.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>

namespace wsmanager::detail {

/// What one node says of a user's cancel of a task.
enum class cancel_verdict : std::uint8_t {
    no_opinion,   ///< no handler, and nothing of the task here
    accepted,     ///< the host's handler (or the user's own pending work here) says yes
    refused,      ///< the host's handler says no
    forbidden,    ///< the task's pending work here is another user's
    unavailable,  ///< the cluster could not be asked
};

/// What the engine offers a cluster link. Manager strand.
class cluster_host {
public:
    virtual ~cluster_host() = default;

    /// What another node published, for this node's connections.
    virtual void deliver_from_peer(delivery_target const& target, Message const& message) = 0;
    virtual void close_from_peer(delivery_target const& target, std::uint16_t code,
                                 std::string const& reason) = 0;
    /// A confirmation was decided on another node (or dismissed for a node that died).
    /// `here`: this node made the decision (its own news, back from Redis): only a
    /// confirmation still pending here ends; the tabs were told when it was decided.
    virtual void confirmation_decided(std::string const& callback_id,
                                      std::string const& user_id, std::string const& task_id,
                                      UserConfirmation const& decision, bool here) = 0;
    /// The confirmations this node asked that are still pending (to reconcile with a Redis
    /// that lost them).
    virtual std::vector<confirmation_record> confirmations_held() const = 0;
    /// This node's verdict on a user's cancel of a task.
    virtual cancel_verdict evaluate_cancel(CancelRequest const& request) = 0;
    /// An accepted cancel, done here: the task's confirmations and heartbeats end, and
    /// `task_cancelled` reaches this node's connections of the user and of `task:<id>`.
    virtual void apply_cancel(std::string const& user_id, std::string const& task_id) = 0;
    /// A client's ack that arrived at another node.
    virtual void acknowledge_from_peer(std::string const& user_id,
                                       std::string const& message_id) = 0;
    /// This node's open connections and the users they belong to.
    virtual std::size_t local_connections() const = 0;
    virtual std::vector<std::string> local_users() const = 0;
};

/// The cluster, as figures for get_status() and /metrics.
struct cluster_figures {
    bool enabled = false;
    bool connected = false;
    std::string node_id;
    std::size_t nodes = 0;        ///< live nodes, this one included
    std::size_t connections = 0;  ///< over every live node
    std::size_t users_online = 0;  ///< distinct users over every live node
};

/// What a cluster adds to the engine.
class cluster_link {
public:
    virtual ~cluster_link() = default;

    /// Once, before start_server.
    virtual void attach(cluster_host& host, asio::strand<asio::io_context::executor_type> strand,
                        std::shared_ptr<logger const> log,
                        std::weak_ptr<void const> const& lifetime) = 0;

    /// start_server: joins the cluster. An error fails start_server; a Redis that cannot be
    /// reached is not one (the node starts on its own and keeps trying, see docs/cluster.md).
    virtual void start(std::function<void(std::error_code)> done) = 0;
    /// stop_server, after this node's work has ended: leaves the cluster.
    virtual void stop(std::function<void()> done) = 0;

    virtual backplane& other_nodes() = 0;
    virtual confirmation_directory& directory() = 0;

    /// A user's cancel that this node received: every node's verdict, combined.
    virtual void request_cancel(CancelRequest const& request,
                                std::function<void(cancel_verdict)> done) = 0;
    /// The cancel was accepted: every node applies it.
    virtual void publish_cancel(std::string const& user_id, std::string const& task_id) = 0;
    /// A client's ack of a message this node did not send: for the node that did.
    virtual void forward_ack(std::string const& user_id, std::string const& message_id) = 0;
    /// A user's first connection on this node opened, or its last closed.
    virtual void user_online(std::string const& user_id) = 0;
    virtual void user_offline(std::string const& user_id) = 0;

    /// Any thread.
    virtual cluster_figures figures() const = 0;
    /// Any thread: the backplane's Prometheus samples, appended to /metrics.
    virtual void render_metrics(std::string& out) const = 0;
};

}  // namespace wsmanager::detail
