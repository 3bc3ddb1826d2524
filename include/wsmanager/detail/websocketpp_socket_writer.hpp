// SPDX-License-Identifier: BSL-1.0
#pragma once

// websocketpp's asio transport with one write path per connection. websocketpp writes what
// it writes itself (the handshake response, pongs, pings, close frames) through its
// transport's async_write; this transport connection hides that function, so those writes
// and the manager's data frames (a send_queue, detail/send_queue.hpp) share one ordered
// path to the socket, and a single gather write carries up to max_batch_frames frames, one
// buffer each, instead of websocketpp's per-message queue, two mutexes and two buffers per
// frame. A write websocketpp asks for goes after the frames queued before it (a close frame
// never overtakes data), and data queued after a close is dropped.
//
// Threads: everything but frames().push and post_writer() runs on the connection's strand,
// where websocketpp calls async_write too.

#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/buffer.hpp>
#include <asio/write.hpp>
#include <websocketpp/transport/asio/connection.hpp>
#include <websocketpp/transport/asio/endpoint.hpp>

#include <wsmanager/detail/send_queue.hpp>

namespace wsmanager::detail {

template <class config>
class owned_write_connection : public websocketpp::transport::asio::connection<config> {
    using base = websocketpp::transport::asio::connection<config>;

public:
    using write_handler = websocketpp::transport::write_handler;

    static_assert(config::enable_multithreading,
                  "the write path relies on each connection's strand");

    /// Frames per gather write, and about how many bytes.
    static constexpr std::size_t max_batch_frames = 256;
    static constexpr std::size_t max_batch_bytes = 256 * 1024;

    using base::base;

    /// The connection's data frames on their way to the socket.
    send_queue& frames() noexcept { return frames_; }

    /// How the writer asks whether the WebSocket is closing or closed (set once, by the
    /// transport).
    void set_closing_check(std::function<bool()> closing) {
        websocket_closing_ = std::move(closing);
    }

    /// Any thread: runs the writer on the connection's strand.
    void post_writer() {
        this->get_strand()->post([self = shared()] { self->write_some(); });
    }

    /// websocketpp's own writes (hides the transport's): after the frames queued so far.
    void async_write(char const* buffer, std::size_t length, write_handler handler) {
        foreign_buffers_.assign(1, asio::const_buffer(buffer, length));
        queue_foreign(std::move(handler));
    }
    void async_write(std::vector<websocketpp::transport::buffer> const& buffers,
                     write_handler handler) {
        foreign_buffers_.clear();
        for (auto const& b : buffers) foreign_buffers_.emplace_back(b.buf, b.len);
        queue_foreign(std::move(handler));
    }

private:
    std::shared_ptr<owned_write_connection> shared() {
        return std::static_pointer_cast<owned_write_connection>(this->get_shared());
    }

    void queue_foreign(write_handler handler) {
        foreign_handler_ = std::move(handler);
        foreign_pending_ = true;
        frames_before_foreign_ = frames_.waiting();
        frames_.start_now();
        write_some();
    }

    /// Strand: starts the next gather write unless one is in flight.
    void write_some() {
        if (writing_) return;
        auto const limit = foreign_pending_ ? frames_before_foreign_ : max_batch_frames;
        auto taken = frames_.take(batch_, limit, max_batch_bytes);
        if (taken.overflowed) frames_before_foreign_ = 0;  // dropped
        if (foreign_pending_) frames_before_foreign_ -= taken.frames;
        bool const with_foreign = foreign_pending_ && frames_before_foreign_ == 0;
        // After the close frame (or a failed write) nothing more may be sent. Frames queued
        // while websocketpp is about to write its close frame still go: they precede it.
        if (taken.frames != 0 && !with_foreign && (broken_ || sealed_)) {
            frames_.written(taken);
            frames_.count_unsent(taken.frames);
            batch_.clear();
            frames_.drop_waiting();
            frames_.take(batch_, 0, 0);  // goes idle
            return;
        }
        buffers_.clear();
        for (auto const& frame : batch_) buffers_.emplace_back(frame->wire().data(), frame->wire().size());
        if (with_foreign) buffers_.insert(buffers_.end(), foreign_buffers_.begin(), foreign_buffers_.end());
        if (buffers_.empty()) return;
        writing_ = true;
        asio::async_write(
            this->get_socket(), buffers_,
            this->get_strand()->wrap(
                [self = shared(), taken, with_foreign](std::error_code const& ec, std::size_t) {
                    self->on_written(ec, taken, with_foreign);
                }));
    }

    void on_written(std::error_code const& ec, send_queue::take_result const& taken,
                    bool with_foreign) {
        writing_ = false;
        batch_.clear();
        frames_.written(taken);
        if (ec) broken_ = true;  // websocketpp learns it from its own read or write
        if (with_foreign) {
            // A write of websocketpp's once the WebSocket is closing carried the close frame,
            // or came after it.
            if (closing()) sealed_ = true;
            foreign_pending_ = false;
            foreign_buffers_.clear();
            auto handler = std::move(foreign_handler_);
            foreign_handler_ = nullptr;
            // As the transport's own handle_async_write reports it.
            if (handler) {
                handler(ec ? websocketpp::transport::error::make_error_code(
                                 websocketpp::transport::error::pass_through)
                           : std::error_code{});
            }
        }
        write_some();
    }

    bool closing() const { return websocket_closing_ && websocket_closing_(); }

    send_queue frames_;
    std::function<bool()> websocket_closing_;

    // Strand only.
    std::vector<frame_ptr> batch_;                  ///< the frames of the write in flight
    std::vector<asio::const_buffer> buffers_;       ///< its buffers
    std::vector<asio::const_buffer> foreign_buffers_;  ///< websocketpp's write, waiting
    write_handler foreign_handler_;
    std::size_t frames_before_foreign_ = 0;  ///< queued frames that go before it
    bool foreign_pending_ = false;
    bool writing_ = false;
    bool broken_ = false;  ///< a write failed: the socket takes nothing more
    bool sealed_ = false;  ///< the close frame has been written: no data after it
};

/// websocketpp's asio transport endpoint whose connections are owned_write_connection.
template <class config>
class owned_write_endpoint : public websocketpp::transport::asio::endpoint<config> {
public:
    using type = owned_write_endpoint;
    using transport_con_type = owned_write_connection<config>;
    using transport_con_ptr = typename transport_con_type::ptr;

    using websocketpp::transport::asio::endpoint<config>::endpoint;
};

}  // namespace wsmanager::detail
