// SPDX-License-Identifier: BSL-1.0
#pragma once

// A WebSocket client written by hand on a plain TCP socket, for what a well-behaved
// client library will not do: send a text frame that is not UTF-8, never answer pings,
// never read. Single-threaded: each call runs the client's own io_context for at most its
// timeout (run_for), so nothing here can hang a test.

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <asio/buffer.hpp>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/write.hpp>

namespace wsmanager::test {

class RawClient {
public:
    /// A frame as read from the wire (server frames are not masked).
    struct Frame {
        std::uint8_t opcode = 0;  ///< 1 text, 2 binary, 8 close, 9 ping, 10 pong
        bool fin = true;
        bool rsv1 = false;  ///< permessage-deflate: the payload is compressed
        std::string payload;

        /// For a close frame: the status code (0 when the frame carries none).
        std::uint16_t close_code() const {
            if (opcode != 8 || payload.size() < 2) return 0;
            return static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                              static_cast<unsigned char>(payload[1]));
        }
        std::string close_reason() const {
            return opcode == 8 && payload.size() > 2 ? payload.substr(2) : std::string{};
        }
    };

    /**
     * Opens a TCP connection to 127.0.0.1:port. `receive_buffer` > 0 shrinks the socket's
     * receive buffer first, so that a client that does not read fills up quickly.
     */
    explicit RawClient(std::uint16_t port, int receive_buffer = 0,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5))
        : socket_(io_) {
        socket_.open(asio::ip::tcp::v4());
        if (receive_buffer > 0) {
            socket_.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
        }
        asio::ip::tcp::endpoint const endpoint(asio::ip::make_address("127.0.0.1"), port);
        connect_error_ = run([&](auto done) { socket_.async_connect(endpoint, std::move(done)); },
                             timeout);
    }

    RawClient(RawClient const&) = delete;
    RawClient& operator=(RawClient const&) = delete;

    bool connected() const noexcept { return !connect_error_; }

    /**
     * Performs the opening handshake by hand for `target` (e.g. "/?user_id=raw").
     * @returns the HTTP status of the response (101 on success), 0 on a transport error.
     */
    int handshake(std::string const& target = "/",
                  std::chrono::milliseconds timeout = std::chrono::seconds(5),
                  std::string const& extra_headers = {}) {
        if (connect_error_) return 0;
        std::string const request = "GET " + target +
                                    " HTTP/1.1\r\n"
                                    "Host: 127.0.0.1\r\n"
                                    "Upgrade: websocket\r\n"
                                    "Connection: Upgrade\r\n"
                                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                    "Sec-WebSocket-Version: 13\r\n" +
                                    extra_headers + "\r\n";
        if (write(request, timeout)) return 0;
        std::size_t header_end = 0;
        auto const ec = run(
            [&](auto done) {
                asio::async_read_until(socket_, asio::dynamic_buffer(received_), "\r\n\r\n",
                                       [&header_end, done = std::move(done)](
                                           std::error_code e, std::size_t n) mutable {
                                           header_end = n;
                                           done(e, n);
                                       });
            },
            timeout);
        if (ec) return 0;
        response_head_ = received_.substr(0, header_end);
        received_.erase(0, header_end);
        // "HTTP/1.1 101 Switching Protocols"
        auto const space = response_head_.find(' ');
        if (space == std::string::npos) return 0;
        return std::atoi(response_head_.c_str() + space + 1);
    }

    /// A plain HTTP GET (no upgrade) on this connection: the response status and body.
    /// The server closes the connection after it (`Connection: close`).
    std::pair<int, std::string> http_get(std::string const& target,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        if (connect_error_) return {0, {}};
        std::string const request = "GET " + target +
                                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if (write(request, timeout)) return {0, {}};
        received_.clear();
        auto const ec = run(
            [&](auto done) {
                asio::async_read(socket_, asio::dynamic_buffer(received_), std::move(done));
            },
            timeout);
        if (ec != asio::error::eof) return {0, {}};
        auto const space = received_.find(' ');
        auto const body = received_.find("\r\n\r\n");
        if (space == std::string::npos || body == std::string::npos) return {0, {}};
        return {std::atoi(received_.c_str() + space + 1), received_.substr(body + 4)};
    }

    /// The status line and headers of the handshake response.
    std::string const& response_head() const noexcept { return response_head_; }

    /// Sends one masked frame with any opcode and payload, valid or not.
    /// `rsv1`: marked compressed (permessage-deflate).
    std::error_code send_frame(std::uint8_t opcode, std::string_view payload,
                               std::chrono::milliseconds timeout = std::chrono::seconds(5),
                               bool rsv1 = false) {
        std::string frame;
        frame.push_back(static_cast<char>(0x80 | (rsv1 ? 0x40 : 0) | (opcode & 0x0f)));
        auto const size = payload.size();
        if (size < 126) {
            frame.push_back(static_cast<char>(0x80 | size));
        } else if (size <= 0xffff) {
            frame.push_back(static_cast<char>(0x80 | 126));
            frame.push_back(static_cast<char>((size >> 8) & 0xff));
            frame.push_back(static_cast<char>(size & 0xff));
        } else {
            frame.push_back(static_cast<char>(0x80 | 127));
            for (int shift = 56; shift >= 0; shift -= 8) {
                frame.push_back(static_cast<char>((static_cast<std::uint64_t>(size) >> shift) & 0xff));
            }
        }
        std::array<unsigned char, 4> mask{};
        for (auto& byte : mask) byte = static_cast<unsigned char>(random_() & 0xff);
        for (auto byte : mask) frame.push_back(static_cast<char>(byte));
        for (std::size_t i = 0; i < size; ++i) {
            frame.push_back(static_cast<char>(static_cast<unsigned char>(payload[i]) ^ mask[i % 4]));
        }
        return write(frame, timeout);
    }

    std::error_code send_text(std::string_view payload) { return send_frame(0x1, payload); }

    /// Reads the next frame; nullopt on timeout, end of stream or a transport error.
    std::optional<Frame> read_frame(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        if (!fill(2, deadline)) return std::nullopt;
        auto const b0 = static_cast<unsigned char>(received_[0]);
        auto const b1 = static_cast<unsigned char>(received_[1]);
        std::size_t header = 2;
        std::uint64_t size = b1 & 0x7f;
        bool const masked = (b1 & 0x80) != 0;
        if (size == 126) {
            header += 2;
            if (!fill(header, deadline)) return std::nullopt;
            size = (static_cast<std::uint64_t>(static_cast<unsigned char>(received_[2])) << 8) |
                   static_cast<unsigned char>(received_[3]);
        } else if (size == 127) {
            header += 8;
            if (!fill(header, deadline)) return std::nullopt;
            size = 0;
            for (std::size_t i = 2; i < 10; ++i) {
                size = (size << 8) | static_cast<unsigned char>(received_[i]);
            }
        }
        std::array<unsigned char, 4> mask{};
        if (masked) {
            if (!fill(header + 4, deadline)) return std::nullopt;
            for (std::size_t i = 0; i < 4; ++i) {
                mask[i] = static_cast<unsigned char>(received_[header + i]);
            }
            header += 4;
        }
        if (!fill(header + size, deadline)) return std::nullopt;
        Frame frame;
        frame.fin = (b0 & 0x80) != 0;
        frame.rsv1 = (b0 & 0x40) != 0;
        frame.opcode = b0 & 0x0f;
        frame.payload = received_.substr(header, size);
        if (masked) {
            for (std::size_t i = 0; i < frame.payload.size(); ++i) {
                frame.payload[i] = static_cast<char>(
                    static_cast<unsigned char>(frame.payload[i]) ^ mask[i % 4]);
            }
        }
        received_.erase(0, header + size);
        return frame;
    }

    /// Reads frames until a close frame (returned) or until the stream ends / times out.
    std::optional<Frame> read_until_close(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto frame = read_frame(left);
            if (!frame) return std::nullopt;
            if (frame->opcode == 8) return frame;
        }
    }

    /// Reads and discards everything until the peer closes the TCP connection; true if it
    /// did within `timeout`.
    bool wait_eof(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            received_.clear();
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            auto const ec = run(
                [&](auto done) {
                    asio::async_read(socket_, asio::dynamic_buffer(received_),
                                     asio::transfer_at_least(1), std::move(done));
                },
                left);
            if (ec == asio::error::timed_out) return false;
            if (ec) return true;  // eof, reset: the server dropped us
        }
    }

private:
    /// Starts an operation with a completion `done(error_code, size_t)` and runs the
    /// io_context until it completes or `timeout` passes (then it is cancelled and
    /// asio::error::timed_out returned).
    template <class Start>
    std::error_code run(Start start, std::chrono::milliseconds timeout) {
        std::optional<std::error_code> result;
        start([&result](std::error_code ec, auto&&...) { result = ec; });
        io_.restart();
        io_.run_for(timeout);
        if (!result) {
            std::error_code ignored;
            socket_.cancel(ignored);
            io_.restart();
            io_.run();
            return asio::error::timed_out;
        }
        return *result;
    }

    std::error_code write(std::string const& bytes, std::chrono::milliseconds timeout) {
        return run([&](auto done) { asio::async_write(socket_, asio::buffer(bytes), std::move(done)); },
                   timeout);
    }

    /// Reads until `received_` holds at least `size` bytes or the deadline passes.
    bool fill(std::size_t size, std::chrono::steady_clock::time_point deadline) {
        while (received_.size() < size) {
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            auto const ec = run(
                [&](auto done) {
                    asio::async_read(socket_, asio::dynamic_buffer(received_),
                                     asio::transfer_at_least(size - received_.size()),
                                     std::move(done));
                },
                left);
            if (ec) return false;
        }
        return true;
    }

    asio::io_context io_;
    asio::ip::tcp::socket socket_;
    std::error_code connect_error_;
    std::string received_;
    std::string response_head_;
    std::minstd_rand random_{std::random_device{}()};
};

}  // namespace wsmanager::test
