// SPDX-License-Identifier: BSL-1.0
#pragma once

// One websocketpp connection as a session (detail/session.hpp): its send path, its close,
// its keepalive ping, the checks that belong to the connection (binary frames, the frame
// rate limit) and its close when the identity it was admitted with expires (one timer,
// armed at open only for an identity that expires, cancelled by the close handler).
//
// Threads: everything written to the connection is written on the connection's own strand,
// by its writer (detail/websocketpp_socket_writer.hpp: websocketpp reads its state without
// a lock, and its permessage-deflate compressor is not thread-safe, zaphoyd/websocketpp#615).
// send() may be called from any thread: frames wait in the connection's send queue and one
// writer run per burst carries them to the socket, so a broadcast of M messages to K
// connections posts K handlers, not M x K. The members named "connection strand" run only
// there.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <websocketpp/server.hpp>

#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/rate_limiter.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/protocol.hpp>

namespace wsmanager::detail {

/// What every session of one manager shares.
struct session_environment {
    std::size_t max_send_buffer = 0;
    std::size_t max_frames_per_second = 0;
    std::size_t max_inbound_bytes = 0;  ///< client bytes waiting for the manager strand
    bool close_on_token_expiry = true;  ///< Options::close_on_token_expiry
    std::size_t compression_min_size = 0;  ///< Options::compression_min_size
    std::shared_ptr<logger const> log;
    std::shared_ptr<manager_counters> counters;
};

template <class Config>
class websocketpp_session final
    : public session,
      public std::enable_shared_from_this<websocketpp_session<Config>> {
public:
    using connection_type = typename websocketpp::server<Config>::connection_type;
    using connection_ptr = typename websocketpp::server<Config>::connection_ptr;
    using message_ptr = typename websocketpp::server<Config>::message_ptr;

    /// Connection strand, during the handshake.
    websocketpp_session(connection_ptr const& connection, std::uint64_t id, std::string user_id,
                        std::shared_ptr<session_environment const> environment)
        : session(id, std::move(user_id), connection->get_remote_endpoint()),
          connection_(connection),
          strand_(connection->get_strand()),
          environment_(std::move(environment)),
          rate_(environment_->max_frames_per_second) {}

    send_status send(Message const& message) override { return push(message, true); }

    bool queue(Message const& message) override {
        bool owed = false;
        push(message, false, &owed);
        return owed;
    }

    void flush() override {
        auto connection = connection_.lock();
        if (connection && connection->frames().claim_owed()) connection->post_writer();
    }

    void close(std::uint16_t code, std::string reason) override {
        auto connection = connection_.lock();
        if (!connection) return;
        strand_->post([self = this->shared_from_this(), connection, code,
                       reason = std::move(reason)] {
            self->resume_reading(*connection);  // the close handshake needs the peer's reply
            std::error_code ec;
            connection->close(code, reason, ec);
        });
    }

    void ping() override {
        auto connection = connection_.lock();
        if (!connection) return;
        strand_->post([self = this->shared_from_this(), connection] {
            // One ping in flight at a time, so the pong timer of the first one is never reset
            // by the next (websocketpp keeps one timer per connection).
            if (self->awaiting_pong_ ||
                connection->get_state() != websocketpp::session::state::open) {
                return;
            }
            std::error_code ec;
            connection->ping("", ec);
            if (!ec) self->awaiting_pong_ = true;
        });
    }

    std::string subprotocol() const override { return subprotocol_; }

    /// Connection strand, during the handshake: the subprotocol selected.
    void set_subprotocol(std::string subprotocol) { subprotocol_ = std::move(subprotocol); }

    /// Connection strand, during the handshake: permessage-deflate was negotiated.
    void set_deflate(bool deflate) { deflate_ = deflate; }

    /// Connection strand, during the handshake: when the identity expires (admission).
    void set_expiry(std::optional<std::chrono::system_clock::time_point> expires_at) {
        expires_at_ = expires_at;
    }

    /// Connection strand, from the open handler: with Options::close_on_token_expiry and an
    /// identity that expires, one timer for the moment it does (at once if it already has).
    /// Nothing at all otherwise. The close handler cancels it (connection_closed).
    void arm_expiry(connection_type& connection) {
        if (!expires_at_ || !environment_->close_on_token_expiry) return;
        auto const left = std::chrono::ceil<std::chrono::milliseconds>(
            *expires_at_ - std::chrono::system_clock::now());
        // Further than any steady_timer needs to count: never, in practice.
        if (left > std::chrono::hours(24 * 365 * 50)) return;
        std::weak_ptr<websocketpp_session> weak = this->shared_from_this();
        expiry_timer_ = connection.set_timer(
            static_cast<long>(std::max<std::int64_t>(left.count(), 0)),
            [weak](std::error_code const& ec) {
                if (ec) return;  // cancelled: the connection closed first
                if (auto self = weak.lock()) self->close_expired();
            });
    }

    /// Connection strand: counts a client frame and applies the connection's own rules.
    /// Returns the text to route, or nullopt when the frame was dealt with here.
    std::optional<std::string> accept_frame(connection_type& connection,
                                            message_ptr const& message) {
        counters().add(counters().messages_received);
        counters().add(counters().bytes_received, std::uint64_t{message->get_payload().size()});
        if (message->get_compressed() && !deflate_) {
            // RSV1 on a connection that did not agree to permessage-deflate (RFC 7692 6.1).
            std::error_code ec;
            connection.close(websocketpp::close::status::protocol_error,
                             "Compressed frame without permessage-deflate", ec);
            return std::nullopt;
        }
        if (message->get_opcode() != websocketpp::frame::opcode::text) {
            std::error_code ec;
            connection.close(protocol::close_code::unsupported_data,
                             "Binary frames are not supported", ec);
            return std::nullopt;
        }
        if (!rate_.try_take()) {
            reject_frame(*this, counters(), *environment_->log, protocol::ErrorCode::rate_limited,
                         "Too many frames; at most " +
                             std::to_string(environment_->max_frames_per_second) +
                             " per second",
                         nullptr);
            return std::nullopt;
        }
        // Frames wait for the manager strand; past a bound the connection stops reading, so
        // TCP pushes back on the client instead of the queue growing.
        auto const size = message->get_payload().size();
        auto const frames = inbound_frames_.fetch_add(1) + 1;
        auto const bytes = inbound_bytes_.fetch_add(size) + size;
        if (!reading_paused_.load() &&
            (frames >= max_inbound_frames || bytes >= max_inbound_bytes())) {
            reading_paused_.store(true);
            // frame_done may have drained the queue before it could see the pause: then
            // nobody would resume, so look again (sequentially consistent, both sides).
            if (!drained_below_half() || !reading_paused_.exchange(false)) {
                counters().add(counters().read_pauses);
                // handle_pause_reading, not pause_reading: this runs inside websocketpp's read
                // handler, so the flag is down before it starts the next read. pause_reading
                // posts it, the next read starts first, and the resume then starts a second
                // read beside it, which splits the stream.
                connection.handle_pause_reading();
                // With no read pending nothing of websocketpp's holds the connection: this
                // does, until reading resumes (or the connection closes).
                held_while_paused_ = connection_.lock();
            }
        }
        return std::move(message->get_raw_payload());
    }

    void frame_done(std::size_t bytes) override {
        inbound_frames_.fetch_sub(1);
        inbound_bytes_.fetch_sub(bytes);
        if (!reading_paused_.load() || !drained_below_half()) return;
        auto connection = connection_.lock();
        if (!connection) return;
        strand_->post([self = this->shared_from_this(), connection] {
            self->resume_reading(*connection);
        });
    }

    /// Connection strand, from the close handler: lets go of a paused connection and cancels
    /// the expiry timer (its handler then runs with operation_aborted, and does nothing).
    void connection_closed() {
        held_while_paused_.reset();
        if (expiry_timer_) {
            expiry_timer_->cancel();
            expiry_timer_.reset();
        }
    }

    /// Connection strand: the keepalive ping was answered.
    void on_pong() { awaiting_pong_ = false; }

    /// Connection strand: the keepalive ping was not answered in time.
    void on_pong_timeout(connection_type& connection) {
        environment_->log->write(LogLevel::info, "keepalive_timeout", "no pong in time; closing",
                                 id(), user_id());
        std::error_code ec;
        connection.close(protocol::close_code::internal_error, "keepalive ping timeout", ec);
    }

    /// Connection strand, once closed: the close code that describes how it ended: the
    /// peer's, unless the peer sent none (1005) or vanished (1006) after we had chosen one.
    static std::uint16_t close_code_of(connection_type& connection) {
        auto const remote = connection.get_remote_close_code();
        auto const local = connection.get_local_close_code();
        bool const remote_silent = remote == websocketpp::close::status::no_status ||
                                   remote == websocketpp::close::status::abnormal_close;
        if (remote_silent && local != websocketpp::close::status::no_status &&
            local != websocketpp::close::status::blank) {
            return local;
        }
        return remote;
    }

private:
    manager_counters& counters() const noexcept { return *environment_->counters; }

    /// Connection strand: resumes once, and only what was paused. No read is outstanding
    /// then, and handle_resume_reading starts exactly one (resume_reading would post it).
    void resume_reading(connection_type& connection) {
        if (!reading_paused_.exchange(false)) return;
        connection.handle_resume_reading();
        held_while_paused_.reset();
    }

    /// Hands a frame to the connection's send queue (detail/send_queue.hpp); `start` runs
    /// the writer soon, otherwise `owed` tells the cork it must flush().
    send_status push(Message const& message, bool start, bool* owed = nullptr) {
        auto connection = connection_.lock();
        if (!connection) {
            counters().add(counters().messages_failed);
            return send_status::closed;
        }
        auto const result = connection->frames().push(frame_for(message), start);
        if (result.next == send_queue::next_step::post_writer) connection->post_writer();
        if (owed != nullptr) *owed = result.next == send_queue::next_step::owed;
        if (result.queued) return send_status::queued;
        // Not reading: closed with 1008 rather than silently missing frames (a
        // confirmation, say). Once.
        if (!slow_consumer_.exchange(true)) {
            strand_->post([self = this->shared_from_this(), connection] {
                self->close_slow_consumer(*connection);
            });
        }
        return send_status::dropped;
    }

    /// The message as this connection gets it: compressed (built once for every connection
    /// that negotiated permessage-deflate) unless it is small or does not shrink.
    frame_ptr const& frame_for(Message const& message) const {
        auto const& plain = frame_of(message);
        if (!deflate_ || plain->payload().size() < environment_->compression_min_size) return plain;
        bool built = false;
        auto const& compressed = plain->deflated(&built);
        if (built) counters().add(counters().messages_compressed);
        return compressed ? compressed : plain;
    }

    /// Connection strand: a client whose queue overflowed is not reading; it gets 1008
    /// rather than silently missing frames (a confirmation, say).
    void close_slow_consumer(connection_type& connection) {
        if (connection.get_state() != websocketpp::session::state::open) return;
        environment_->log->write(LogLevel::warning, "send_buffer_overflow",
                                 "client is not reading; closing", id(), user_id());
        std::error_code ec;
        connection.close(protocol::close_code::policy_violation, "Send buffer overflow", ec);
    }

    /// Connection strand, when the identity expired: 1008, counted and logged.
    void close_expired() {
        expiry_timer_.reset();
        auto connection = connection_.lock();
        if (!connection || connection->get_state() != websocketpp::session::state::open) return;
        counters().add(counters().token_expiry_closes);
        environment_->log->write(LogLevel::info, "token_expired",
                                 "the connection's token expired; closing", id(), user_id());
        resume_reading(*connection);  // the close handshake needs the peer's reply
        std::error_code ec;
        connection->close(protocol::close_code::policy_violation, "Token expired", ec);
    }

    std::weak_ptr<connection_type> connection_;
    decltype(std::declval<connection_type&>().get_strand()) strand_;
    std::shared_ptr<session_environment const> environment_;
    std::string subprotocol_;  ///< written during the handshake, read after
    bool deflate_ = false;     ///< written during the handshake, read after

    /// Client frames one connection may have waiting for the manager strand.
    static constexpr std::size_t max_inbound_frames = 64;
    std::size_t max_inbound_bytes() const noexcept { return environment_->max_inbound_bytes; }
    bool drained_below_half() const noexcept {
        return inbound_frames_.load() <= max_inbound_frames / 2 &&
               inbound_bytes_.load() <= max_inbound_bytes() / 2;
    }

    // Connection strand only.
    rate_limiter rate_;
    bool awaiting_pong_ = false;
    std::optional<std::chrono::system_clock::time_point> expires_at_;  ///< set at handshake
    typename connection_type::timer_ptr expiry_timer_;  ///< armed at open, if it expires

    // Client frames handed to the engine and not yet done with (frame_done, manager strand).
    std::atomic<std::size_t> inbound_frames_{0};
    std::atomic<std::size_t> inbound_bytes_{0};
    std::atomic<bool> reading_paused_{false};  ///< set and cleared on the connection strand
    connection_ptr held_while_paused_;         ///< connection strand

    std::atomic<bool> slow_consumer_{false};  ///< its send queue overflowed: closing (1008)
};

}  // namespace wsmanager::detail
