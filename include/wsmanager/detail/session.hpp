// SPDX-License-Identifier: BSL-1.0
#pragma once

// One client connection as the rooms see it: who it is and how to send to it or close it.
// The websocketpp implementation is detail/websocketpp_session.hpp (the only one that knows
// Config); the registries, delivery and services hold `session_ptr`s and never see
// websocketpp. Tests implement it without a socket.
//
// The identity is fixed at construction (the handshake). send(), close() and ping() may be
// called from any thread; the implementation moves the work onto the connection's own strand.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include <wsmanager/message.hpp>

namespace wsmanager::detail {

/// What became of a frame handed to a session.
enum class send_status : std::uint8_t {
    queued,   ///< on its way to the socket
    dropped,  ///< the send buffer was full: the client is not reading (it is closed, 1008)
    closed,   ///< the connection is closing or gone
};

class session {
public:
    session(std::uint64_t id, std::string user_id, std::string remote_endpoint)
        : id_(id), user_id_(std::move(user_id)), remote_endpoint_(std::move(remote_endpoint)) {}
    session(session const&) = delete;
    session& operator=(session const&) = delete;
    virtual ~session() = default;

    /// Unique among the manager's connections; never reused while the manager lives.
    std::uint64_t id() const noexcept { return id_; }
    /// The authenticated user; empty for an anonymous connection.
    std::string const& user_id() const noexcept { return user_id_; }
    bool anonymous() const noexcept { return user_id_.empty(); }
    /// "address:port" of the peer.
    std::string const& remote_endpoint() const noexcept { return remote_endpoint_; }

    /// Queues one prepared frame and starts its way to the socket; frames leave in the order
    /// they were queued.
    virtual send_status send(Message const& message) = 0;
    /// Queues without starting the write: true when the caller must call flush() later.
    /// delivery's cork uses it to let several messages leave in one write.
    virtual bool queue(Message const& message) {
        send(message);
        return false;
    }
    /// Starts writing what queue() left (nothing when a send() has already done it).
    virtual void flush() {}
    /// Starts the closing handshake with `code` and `reason`.
    virtual void close(std::uint16_t code, std::string reason) = 0;
    /// Sends a keepalive ping unless one is in flight; an unanswered one closes (1011).
    virtual void ping() = 0;
    /// The subprotocol the handshake selected ("" when the client offered none we speak).
    virtual std::string subprotocol() const = 0;
    /// The engine is done with one client frame of `bytes` this session handed it: a session
    /// that stopped reading because too many were waiting may read again.
    virtual void frame_done(std::size_t bytes) { static_cast<void>(bytes); }

private:
    std::uint64_t id_;
    std::string user_id_;
    std::string remote_endpoint_;
};

using session_ptr = std::shared_ptr<session>;

}  // namespace wsmanager::detail
