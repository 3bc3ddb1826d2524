// SPDX-License-Identifier: BSL-1.0
#pragma once

// A small WebSocket test client on websocketpp's asio client, with a synchronous feel:
// each WsClient runs its own io_context on its own thread, and every call that waits
// (connect, next_frame, wait_closed, ...) takes a timeout, so a server that hangs makes a
// test fail instead of stalling CI.
//
// Everything touching the websocketpp endpoint or connection runs on the client's own
// thread (posted there); the test thread only reads what the handlers recorded, under a
// mutex. A WsClient makes one connection; make another WsClient to reconnect.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <rapidjson/document.h>
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

namespace wsmanager::test {

/// Default bound of every wait in the test client.
inline constexpr std::chrono::milliseconds default_wait{5000};

/// Parses JSON text; nullopt when it is not valid JSON.
inline std::optional<rapidjson::Document> parse_json(std::string_view text) {
    rapidjson::Document document;
    document.Parse(text.data(), text.size());
    if (document.HasParseError()) return std::nullopt;
    return document;
}

/// A string member of a JSON object, or nullopt when absent or not a string.
inline std::optional<std::string> string_member(rapidjson::Value const& object,
                                                char const* name) {
    if (!object.IsObject()) return std::nullopt;
    auto it = object.FindMember(name);
    if (it == object.MemberEnd() || !it->value.IsString()) return std::nullopt;
    return std::string(it->value.GetString(), it->value.GetStringLength());
}

/// The "type" of a server frame, or "" when it has none.
inline std::string frame_type(rapidjson::Value const& frame) {
    return string_member(frame, "type").value_or("");
}

/// The client over a websocketpp client config: WsClient (ws://) below; a test of
/// config::tls uses BasicWsClient<websocketpp::config::asio_tls_client> (wss://) and gives it
/// its TLS context with set_tls_init_handler() before connecting.
template <class ClientConfig>
class BasicWsClient {
public:
    using endpoint_type = websocketpp::client<ClientConfig>;
    using connection_ptr = typename endpoint_type::connection_ptr;
    using opcode = websocketpp::frame::opcode::value;

    /// One frame as received.
    struct Frame {
        opcode op = websocketpp::frame::opcode::text;
        std::string payload;
    };

    /// How the connection ended, as seen by the client.
    struct CloseInfo {
        std::uint16_t code = 0;   ///< the server's close code; 1006 when none was received
        std::string reason;       ///< the server's close reason
    };

    /// The outcome of connect().
    struct ConnectResult {
        bool opened = false;       ///< the WebSocket handshake completed
        int http_status = 0;       ///< the HTTP status of the handshake response
        std::uint16_t close_code = 0;  ///< failure: close code, if any
        std::string error;         ///< failure: websocketpp's description
        std::string subprotocol;   ///< the subprotocol the server selected ("" for none)
        explicit operator bool() const noexcept { return opened; }
    };

    BasicWsClient() {
        endpoint_.clear_access_channels(websocketpp::log::alevel::all);
        endpoint_.clear_error_channels(websocketpp::log::elevel::all);
        endpoint_.init_asio(&io_);
        endpoint_.set_open_handshake_timeout(default_wait.count());
        endpoint_.set_close_handshake_timeout(1000);
        endpoint_.start_perpetual();
        thread_ = std::thread([this] {
            try {
                io_.run();
            } catch (...) {
                // A handler threw: the client is broken; waits will time out and fail.
            }
            std::lock_guard lock(mutex_);
            io_done_ = true;
            changed_.notify_all();
        });
    }

    BasicWsClient(BasicWsClient const&) = delete;
    BasicWsClient& operator=(BasicWsClient const&) = delete;

    ~BasicWsClient() {
        if (is_open()) {
            close(1000, "test done");
            wait_closed(std::chrono::milliseconds(1500));
        }
        asio::post(io_, [this] { endpoint_.stop_perpetual(); });
        {
            std::unique_lock lock(mutex_);
            changed_.wait_for(lock, std::chrono::seconds(2), [this] { return io_done_; });
        }
        io_.stop();
        thread_.join();
    }

    /**
     * Connects to `url` (ws://host:port/path?query), offering `subprotocols`, and waits
     * for the handshake to complete or fail.
     */
    ConnectResult connect(std::string url, std::vector<std::string> subprotocols = {},
                          std::chrono::milliseconds timeout = default_wait) {
        ConnectResult result;
        auto setup = run_on_io([this, url = std::move(url),
                                subprotocols = std::move(subprotocols)]() -> std::string {
            std::error_code ec;
            auto con = endpoint_.get_connection(url, ec);
            if (ec) return "get_connection: " + ec.message();
            for (auto const& protocol : subprotocols) {
                con->add_subprotocol(protocol, ec);
                if (ec) return "add_subprotocol: " + ec.message();
            }
            install_handlers(con);
            connection_ = con;
            {
                std::lock_guard lock(mutex_);
                state_ = state::connecting;
            }
            endpoint_.connect(con);
            return {};
        });
        if (!setup || !setup->empty()) {
            result.error = setup ? *setup : "the client thread did not answer";
            return result;
        }
        std::unique_lock lock(mutex_);
        if (!changed_.wait_for(lock, timeout, [this] { return state_ != state::connecting; })) {
            result.error = "timed out waiting for the handshake";
            return result;
        }
        result.opened = opened_;
        result.http_status = http_status_;
        result.subprotocol = subprotocol_;
        result.error = error_;
        if (!opened_) result.close_code = close_.code;
        return result;
    }

    /// TLS client configs: how each connection gets its TLS context. Call before connect().
    template <class Handler>
    void set_tls_init_handler(Handler handler) {
        run_on_io([this, handler = std::move(handler)] {
            endpoint_.set_tls_init_handler(handler);
            return 0;
        });
    }

    /// Sends a text frame; false when the connection is not open.
    bool send_text(std::string text) {
        return send(std::move(text), websocketpp::frame::opcode::text);
    }

    /// Sends a binary frame; false when the connection is not open.
    bool send_binary(std::string bytes) {
        return send(std::move(bytes), websocketpp::frame::opcode::binary);
    }

    /// Starts the closing handshake.
    void close(std::uint16_t code = 1000, std::string reason = {}) {
        run_on_io([this, code, reason = std::move(reason)] {
            if (!connection_) return 0;
            std::error_code ec;
            connection_->close(code, reason, ec);
            return 0;
        });
    }

    /// The next frame received, waiting up to `timeout`; nullopt on timeout or once the
    /// connection has closed and every frame received before was taken.
    std::optional<Frame> next_frame(std::chrono::milliseconds timeout = default_wait) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, timeout, [this] { return !frames_.empty() || ended(); });
        if (frames_.empty()) return std::nullopt;
        Frame frame = std::move(frames_.front());
        frames_.pop_front();
        return frame;
    }

    /// The payload of the next frame if it is a text frame.
    std::optional<std::string> next_text(std::chrono::milliseconds timeout = default_wait) {
        auto frame = next_frame(timeout);
        if (!frame || frame->op != websocketpp::frame::opcode::text) return std::nullopt;
        return std::move(frame->payload);
    }

    /// The next text frame, parsed; nullopt on timeout or when it is not JSON.
    std::optional<rapidjson::Document> next_json(
        std::chrono::milliseconds timeout = default_wait) {
        auto text = next_text(timeout);
        if (!text) return std::nullopt;
        return parse_json(*text);
    }

    /// Reads frames until one whose "type" is `type` (others are discarded), up to
    /// `timeout` in total.
    std::optional<rapidjson::Document> next_of_type(
        std::string_view type, std::chrono::milliseconds timeout = default_wait) {
        auto const deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            auto const left = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) return std::nullopt;
            auto frame = next_json(left);
            if (!frame) {
                if (ended_and_drained()) return std::nullopt;
                continue;
            }
            if (frame_type(*frame) == type) return frame;
        }
    }

    /// True when no frame arrives within `period` (the connection may close meanwhile).
    /// The unexpected frame, if one came, is kept for inspection in `unexpected`.
    bool expect_silence(std::chrono::milliseconds period, std::string* unexpected = nullptr) {
        std::unique_lock lock(mutex_);
        changed_.wait_for(lock, period, [this] { return !frames_.empty(); });
        if (frames_.empty()) return true;
        if (unexpected != nullptr) *unexpected = frames_.front().payload;
        return false;
    }

    /// Waits for the connection to end; the server's close code and reason, or nullopt
    /// when it is still open after `timeout`.
    std::optional<CloseInfo> wait_closed(std::chrono::milliseconds timeout = default_wait) {
        std::unique_lock lock(mutex_);
        if (!changed_.wait_for(lock, timeout, [this] { return ended(); })) return std::nullopt;
        return close_;
    }

    bool is_open() const {
        std::lock_guard lock(mutex_);
        return state_ == state::open;
    }

    /// The subprotocol the server selected ("" for none).
    std::string subprotocol() const {
        std::lock_guard lock(mutex_);
        return subprotocol_;
    }

    /// Frames received and not yet taken.
    std::size_t queued_frames() const {
        std::lock_guard lock(mutex_);
        return frames_.size();
    }

private:
    enum class state { idle, connecting, open, failed, closed };

    bool ended() const { return state_ == state::failed || state_ == state::closed; }

    bool ended_and_drained() const {
        std::lock_guard lock(mutex_);
        return ended() && frames_.empty();
    }

    /// Runs `f` on the client's thread and returns its result; nullopt when the thread
    /// does not answer in time (f may still run later: it must capture by value).
    template <class F>
    auto run_on_io(F f, std::chrono::milliseconds timeout = default_wait)
        -> std::optional<decltype(f())> {
        using result_type = decltype(f());
        auto promise = std::make_shared<std::promise<result_type>>();
        auto future = promise->get_future();
        asio::post(io_, [promise, f = std::move(f)]() mutable { promise->set_value(f()); });
        if (future.wait_for(timeout) != std::future_status::ready) return std::nullopt;
        return future.get();
    }

    bool send(std::string payload, opcode op) {
        auto sent = run_on_io([this, payload = std::move(payload), op] {
            if (!connection_) return false;
            return !connection_->send(payload, op);
        });
        return sent.value_or(false);
    }

    void install_handlers(connection_ptr const& con) {
        con->set_open_handler([this](websocketpp::connection_hdl hdl) {
            auto c = endpoint_.get_con_from_hdl(hdl);
            std::lock_guard lock(mutex_);
            opened_ = true;
            state_ = state::open;
            http_status_ = static_cast<int>(c->get_response_code());
            // websocketpp's client never records the negotiated subprotocol
            // (get_subprotocol() stays empty): read the response header instead.
            subprotocol_ = c->get_response_header("Sec-WebSocket-Protocol");
            changed_.notify_all();
        });
        con->set_fail_handler([this](websocketpp::connection_hdl hdl) {
            auto c = endpoint_.get_con_from_hdl(hdl);
            std::lock_guard lock(mutex_);
            state_ = state::failed;
            http_status_ = static_cast<int>(c->get_response_code());
            error_ = c->get_ec().message();
            close_.code = static_cast<std::uint16_t>(c->get_remote_close_code());
            close_.reason = c->get_remote_close_reason();
            changed_.notify_all();
        });
        con->set_close_handler([this](websocketpp::connection_hdl hdl) {
            auto c = endpoint_.get_con_from_hdl(hdl);
            std::lock_guard lock(mutex_);
            state_ = state::closed;
            close_.code = static_cast<std::uint16_t>(c->get_remote_close_code());
            close_.reason = c->get_remote_close_reason();
            changed_.notify_all();
        });
        con->set_message_handler(
            [this](websocketpp::connection_hdl, typename endpoint_type::message_ptr message) {
                std::lock_guard lock(mutex_);
                frames_.push_back(Frame{message->get_opcode(), message->get_payload()});
                changed_.notify_all();
            });
    }

    // Declared first, destroyed last: the endpoint and connections refer to it.
    asio::io_context io_;
    endpoint_type endpoint_;
    connection_ptr connection_;  // client thread only
    std::thread thread_;

    mutable std::mutex mutex_;
    std::condition_variable changed_;
    state state_ = state::idle;
    bool opened_ = false;
    bool io_done_ = false;
    int http_status_ = 0;
    std::string subprotocol_;
    std::string error_;
    CloseInfo close_;
    std::deque<Frame> frames_;
};

/// The ws:// client most tests use.
using WsClient = BasicWsClient<websocketpp::config::asio_client>;

}  // namespace wsmanager::test
