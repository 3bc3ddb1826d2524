// SPDX-License-Identifier: BSL-1.0
#pragma once

// redis_connection: one connection to one Redis server, a hiredis async context
// (redisAsyncContext) driven by the host's own Asio event loop: no thread of its own. It owns
// the hiredis context (a new one for every connect), the Asio adapter that waits for the
// context's socket, the connect and command timeouts hiredis 0.14 lacks, and the handlers of
// the commands that wait for a reply. Everything runs on the one strand given at construction:
// every member function must be called on it, and every handler is posted to it, never called
// inline. Reconnecting and backoff belong to the layer above, which learns of a lost connection
// through the disconnect handler.
//
// Its long bodies are out of line in detail/impl/redis_connection.hpp, included at the end.
// Beside it: its error codes (detail/redis_error.hpp), the SIGPIPE guard of its writes
// (detail/sigpipe_guard.hpp) and redis_script, EVALSHA then EVAL (detail/redis_script.hpp).

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <list>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <asio/error.hpp>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/strand.hpp>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <wsmanager/cluster/detail/redis_error.hpp>
#include <wsmanager/cluster/detail/redis_value.hpp>
#include <wsmanager/cluster/detail/sigpipe_guard.hpp>

namespace wsmanager::cluster::detail {

/**
 * One connection to a Redis server over hiredis' async API, on an Asio strand.
 *
 * A connection is either for commands (command(), pipelined: any number may wait for their
 * replies, which arrive in order) or, once subscribe() or psubscribe() was called, a
 * subscriber: Redis then allows no other command on it, so command() fails with
 * `asio::error::operation_not_supported` (hiredis 0.14 also misroutes a PING's reply in that
 * mode). A subscriber gets every `message` and `pmessage` through the message handler.
 *
 * The connection is lost when Redis closes it, a read or write fails, the server sends
 * something that is not RESP, or a reply does not arrive within its command's timeout (a
 * server that stopped answering leaves the pipeline in an unknown state, so the connection is
 * torn down rather than the command alone failed). Then every operation still waiting
 * completes with the error, in order, and the disconnect handler is called once. The object
 * can be connected again with async_connect (a new hiredis context); reconnect policy and
 * backoff are the owner's. close() and the destructor end the connection the same way, with
 * `asio::error::operation_aborted`, but do not call the disconnect handler (the owner knows).
 *
 * Every handler is posted to the strand and called exactly once (the message and disconnect
 * handlers: once per event), never inline from the initiating function, and never after the
 * object was destroyed except for the completions of the operations it aborted, which touch
 * nothing of it. TCP keep-alive is enabled (hiredis' 15 s interval), so a silent peer is found
 * even on an idle subscriber.
 *
 * @par Thread Safety
 * Every member function, the destructor included, must be called on the strand given at
 * construction (the constructor may run anywhere, before any other use). The object must be
 * destroyed before its io_context.
 */
class redis_connection {
public:
    using strand_type = asio::strand<asio::io_context::executor_type>;
    using clock = std::chrono::steady_clock;
    using duration = clock::duration;
    using connect_handler = std::function<void(std::error_code)>;
    using command_handler = std::function<void(std::error_code, redis_value)>;
    using subscribe_handler = std::function<void(std::error_code)>;
    using message_handler = std::function<void(std::string channel, std::string payload)>;
    using disconnect_handler = std::function<void(std::error_code)>;

    /**
     * Creates an unconnected object whose work all runs on `strand`.
     *
     * @par Thread Safety
     * Any thread, before the object is shared.
     */
    explicit redis_connection(strand_type strand) : strand_(std::move(strand)) {}

    /**
     * Ends the connection: as close().
     *
     * @par Thread Safety
     * On the strand.
     */
    ~redis_connection() {
        close();
        alive_.reset();
    }

    redis_connection(redis_connection const&) = delete;
    redis_connection& operator=(redis_connection const&) = delete;

    /// The strand every member runs on and every handler is posted to.
    strand_type const& get_executor() const noexcept { return strand_; }

    /**
     * Sets the handler of pub/sub messages: `(channel, payload)`, both binary-safe; for a
     * `pmessage` the channel is the one published to, not the pattern. Messages received
     * before close() but not yet delivered are dropped.
     *
     * @par Thread Safety
     * On the strand.
     */
    void set_message_handler(message_handler handler) { on_message_ = std::move(handler); }

    /**
     * Sets the handler told once of each lost connection, with the cause:
     * `redis_errc::connection_lost`, `command_timeout` or `protocol_error`. It runs after the
     * completions of the operations the loss failed, and not at all when close() or the
     * destructor ran first. It may call async_connect.
     *
     * @par Thread Safety
     * On the strand.
     */
    void set_disconnect_handler(disconnect_handler handler) {
        on_disconnected_ = std::move(handler);
    }

    /**
     * Connects to `host:port` with a new hiredis context.
     *
     * `host` is an IP address or a name; hiredis resolves names with getaddrinfo, which
     * blocks the strand while it runs, so a name should resolve locally (/etc/hosts).
     *
     * @param timeout How long the TCP connect may take (positive).
     *
     * @par Completion Signature
     * `void(std::error_code)`: success; `redis_errc::connect_timeout`; the system's error of
     * connect(2) (e.g. `connection_refused`); `redis_errc::connect_failed`;
     * `asio::error::operation_aborted` after close(); `asio::error::already_connected` or
     * `already_started` when connected or connecting; `asio::error::invalid_argument`.
     *
     * @par Thread Safety
     * On the strand.
     */
    void async_connect(std::string const& host, int port, duration timeout,
                       connect_handler handler);

    /**
     * Sends one command, `argv` being its name and arguments (binary-safe: any bytes, NUL
     * included). Commands are pipelined: several may wait; replies complete them in order.
     *
     * (P)SUBSCRIBE, (P)UNSUBSCRIBE and MONITOR are refused (`asio::error::invalid_argument`):
     * they change how hiredis routes replies; use subscribe().
     *
     * @param timeout How long the reply may take (positive). When it passes, the connection
     *        is torn down: this and every other waiting operation fail with
     *        `redis_errc::command_timeout` and the disconnect handler is told.
     *
     * @par Completion Signature
     * `void(std::error_code, redis_value)`: success and the reply; `redis_errc::redis_error`
     * and the error reply (e.g. a script's error, "NOSCRIPT ..."); `command_timeout`,
     * `connection_lost`, `protocol_error` with nil; `asio::error::operation_aborted` after
     * close(); `asio::error::not_connected`; `operation_not_supported` on a subscriber.
     *
     * @par Thread Safety
     * On the strand.
     */
    void command(std::vector<std::string> argv, duration timeout, command_handler handler);

    /**
     * Subscribes to `channels`, which makes this connection a subscriber (see the class).
     *
     * @param timeout How long Redis may take to confirm every channel (as for command()).
     *
     * @par Completion Signature
     * `void(std::error_code)`: success once Redis confirmed every channel; the errors of
     * command().
     *
     * @par Thread Safety
     * On the strand.
     */
    void subscribe(std::vector<std::string> channels, duration timeout, subscribe_handler handler) {
        start_subscribe("SUBSCRIBE", std::move(channels), timeout, std::move(handler));
    }

    /**
     * Subscribes to the glob-style `patterns` (PSUBSCRIBE); otherwise as subscribe().
     *
     * @par Thread Safety
     * On the strand.
     */
    void psubscribe(std::vector<std::string> patterns, duration timeout,
                    subscribe_handler handler) {
        start_subscribe("PSUBSCRIBE", std::move(patterns), timeout, std::move(handler));
    }

    /**
     * Ends the connection, or the connect in progress. Every waiting operation completes with
     * `asio::error::operation_aborted`; messages not yet delivered and a loss not yet
     * reported are dropped. Does nothing when not connected. The object may be connected
     * again afterwards.
     *
     * @par Thread Safety
     * On the strand.
     */
    void close() {
        ++close_epoch_;
        if (!session_) {
            return;
        }
        std::shared_ptr<session> s = std::move(session_);
        s->owner_ = nullptr;
        s->teardown(asio::error::operation_aborted);
    }

    /// True between a successful connect and the loss or close of that connection.
    bool is_connected() const noexcept { return session_ && session_->connected_; }

    /// True once subscribe() or psubscribe() was called on the current connection.
    bool is_subscriber() const noexcept { return session_ && session_->subscribed_; }

    /// The number of commands and subscriptions waiting for their replies.
    std::size_t outstanding() const noexcept {
        return session_ ? session_->commands_.size() + session_->subscribes_.size() : 0;
    }

    /// hiredis' description of the last failed connect or lost connection, for logs.
    std::string const& last_error_message() const noexcept { return last_error_; }

    /// A token that expires when the object is destroyed, for handlers that call it later.
    std::weak_ptr<void const> lifetime() const noexcept { return alive_; }

private:
    struct session;
    friend struct session;

    // What hiredis 0.14's async API does that this code is shaped around:
    // - It frees the context inside redisAsyncHandleRead/Write (EOF, error, failed connect):
    //   first every reply callback with a null reply, then subscription callbacks with null,
    //   then ev.cleanup, then onDisconnect (only if it had connected), then close(fd). So the
    //   adapter re-checks ac_ after every call into hiredis, and the cleanup hook is where the
    //   end of a context is handled (no onDisconnect is set).
    // - redisAsyncFree from the connect callback is a double free (that callback is not run
    //   under REDIS_IN_CALLBACK); we never free from any hiredis callback, only from strand
    //   handlers of ours, where it frees synchronously.
    // - redisAsyncSetConnectCallback asks for a write event at once: hooks must be set first.
    //   The connect callback gets only a status; connect(2)'s error is left in errno.
    // - A reply with no callback waiting on a connection that is not subscribed trips an
    //   assert() (compiled in Debian's build): only a server that is not Redis sends one.
    // - In subscribed mode a reply is routed by its channel name, so PING's ["pong", ""] goes
    //   to whichever callback ran last; hence no commands on a subscriber.
    // - Names are resolved with a blocking getaddrinfo, and writes use write(2) (SIGPIPE).
    //
    // One hiredis context: its Asio adapter (ev.data points here) and what waits on it. Held
    // by the owner while it is current and by each pending wait, so a wait that completes
    // after hiredis freed the context finds ac_ null and does nothing.
    struct session : std::enable_shared_from_this<session> {
        struct pending_command {
            command_handler handler;
            std::multiset<clock::time_point>::iterator deadline;
            std::list<pending_command>::iterator self;
        };
        struct pending_subscribe {
            subscribe_handler handler;
            std::size_t unconfirmed = 0;
            std::multiset<clock::time_point>::iterator deadline;
        };

        session(strand_type const& strand, redis_connection* owner)
            : strand_(strand),
              owner_(owner),
              descriptor_(strand),
              connect_timer_(strand),
              watchdog_(strand) {}

        // The cleanup hook has released the descriptor (or it was never assigned): hiredis'
        // fd is never closed by Asio.
        ~session() = default;

        strand_type strand_;
        redis_connection* owner_;          // null once the owner closed this session
        redisAsyncContext* ac_ = nullptr;  // null once hiredis is freeing the context
        asio::posix::stream_descriptor descriptor_;
        bool want_read_ = false;
        bool want_write_ = false;
        bool read_waiting_ = false;
        bool write_waiting_ = false;

        connect_handler on_connect_;  // set while the connect is in progress
        asio::steady_timer connect_timer_;
        std::error_code connect_error_;  // errno seen by hiredis' failed connect
        bool connected_ = false;
        bool subscribed_ = false;
        std::error_code teardown_reason_;  // set when we free the context ourselves

        std::list<pending_command> commands_;  // stable addresses: hiredis' privdata
        std::deque<pending_subscribe> subscribes_;
        std::multiset<clock::time_point> deadlines_;  // of everything waiting for a reply
        asio::steady_timer watchdog_;                 // expires at the earliest deadline
        clock::time_point watchdog_expiry_ = clock::time_point::max();
        std::uint64_t watchdog_generation_ = 0;

        static session* from(void* data) { return static_cast<session*>(data); }
        static session* from(redisAsyncContext const* ac) { return from(ac->data); }

        // ---- hiredis' event hooks: idempotent, as hiredis requires ------------------------

        static void hook_add_read(void* data) {
            session* s = from(data);
            s->want_read_ = true;
            s->arm_read();
        }
        static void hook_del_read(void* data) { from(data)->want_read_ = false; }
        static void hook_add_write(void* data) {
            session* s = from(data);
            s->want_write_ = true;
            s->arm_write();
        }
        static void hook_del_write(void* data) { from(data)->want_write_ = false; }
        // hiredis is freeing the context: this runs after the reply callbacks got their
        // null replies and before it closes the fd.
        static void hook_cleanup(void* data) { from(data)->on_context_freed(); }

        // A del hook leaves the wait in place (cancelling the descriptor would cancel the
        // other direction too); the wait then completes and finds itself unwanted.
        void arm_read();
        void arm_write();
        // Any other error than an abort is left to hiredis: its read or write finds it.
        void on_readable(std::error_code const& ec);
        void on_writable(std::error_code const& ec);

        // ---- hiredis' callbacks -----------------------------------------------------------

        // On failure hiredis frees the context right after this returns (and the cleanup
        // hook reports), so nothing here may free it.
        static void on_connect_result(redisAsyncContext const* ac, int status);

        static void on_command_reply(redisAsyncContext* ac, void* reply, void* privdata) {
            from(ac)->complete_command(*static_cast<pending_command*>(privdata),
                                       static_cast<redisReply const*>(reply));
        }

        // Every subscription shares this callback with privdata = the session; hiredis calls
        // it for confirmations and messages, and with a null reply while freeing (ignored:
        // the cleanup hook fails what waits).
        static void on_subscription_reply(redisAsyncContext* ac, void* reply, void*) {
            if (reply != nullptr) {
                from(ac)->on_pubsub(*static_cast<redisReply const*>(reply));
            }
        }

        // ---- operations -------------------------------------------------------------------

        void send_command(std::vector<std::string> const& argv, duration timeout,
                          command_handler handler);

        void send_subscribe(char const* verb, std::vector<std::string> const& names,
                            duration timeout, subscribe_handler handler);

        void complete_command(pending_command& pending, redisReply const* reply);

        void on_pubsub(redisReply const& reply);

        void deliver(std::string channel, std::string payload) {
            if (owner_ != nullptr) {
                owner_->post_message(std::move(channel), std::move(payload));
            }
        }

        // ---- timeouts ---------------------------------------------------------------------

        // One timer for everything waiting: it expires at the earliest deadline; a reply
        // does not re-arm it, the expiry finds the next deadline.
        std::multiset<clock::time_point>::iterator add_deadline(clock::time_point deadline) {
            auto it = deadlines_.insert(deadline);
            if (deadline < watchdog_expiry_) {
                arm_watchdog(deadline);
            }
            return it;
        }
        void arm_watchdog(clock::time_point expiry);
        void on_watchdog(std::uint64_t generation);

        void on_connect_timeout() {
            if (ac_ != nullptr && !connected_) {
                teardown(redis_errc::connect_timeout);
            }
        }

        // ---- the end of the context -------------------------------------------------------

        // Frees the context from our side (never from inside a hiredis callback: only from
        // a strand handler of ours or a member the owner called). hiredis then completes the
        // waiting replies with null and calls the cleanup hook, synchronously.
        void teardown(std::error_code reason) {
            if (ac_ == nullptr) {
                return;
            }
            std::shared_ptr<session> const keep = shared_from_this();
            teardown_reason_ = reason;
            redisAsyncFree(ac_);
        }

        std::error_code loss_reason() const {
            if (teardown_reason_) {
                return teardown_reason_;
            }
            if (ac_ != nullptr && ac_->err == REDIS_ERR_PROTOCOL) {
                return redis_errc::protocol_error;
            }
            return redis_errc::connection_lost;
        }

        void on_context_freed();
    };

    static bool changes_reply_routing(std::string_view name);

    template <typename Handler, typename... Args>
    static void post_handler(strand_type const& strand, Handler handler, Args... args) {
        asio::post(strand, [handler = std::move(handler), ... args = std::move(args)]() mutable {
            handler(std::move(args)...);
        });
    }

    template <typename Handler>
    void post_error(Handler handler, std::error_code ec) {
        if constexpr (std::is_invocable_v<Handler&, std::error_code, redis_value>) {
            post_handler(strand_, std::move(handler), ec, redis_value());
        } else {
            post_handler(strand_, std::move(handler), ec);
        }
    }

    void start_subscribe(char const* verb, std::vector<std::string> names, duration timeout,
                         subscribe_handler handler);

    // Runs `f` on the strand later unless the object is destroyed or closed before.
    template <typename F>
    void post_guarded(F f) {
        asio::post(strand_, [alive = std::weak_ptr<char>(alive_), epoch = close_epoch_, this,
                             f = std::move(f)]() mutable {
            if (alive.lock() && close_epoch_ == epoch) {
                f();
            }
        });
    }

    void post_message(std::string channel, std::string payload) {
        post_guarded([this, channel = std::move(channel), payload = std::move(payload)]() mutable {
            if (on_message_) {
                on_message_(std::move(channel), std::move(payload));
            }
        });
    }

    // Called from the cleanup hook of the current session (never one the owner closed).
    void on_session_ended(session& s, std::error_code reason, std::string message,
                          bool was_connected);

    strand_type strand_;
    std::shared_ptr<session> session_;
    message_handler on_message_;
    disconnect_handler on_disconnected_;
    std::string last_error_;
    // Posted lambdas that need the object check these: destroyed, or closed since posting.
    std::shared_ptr<char> alive_ = std::make_shared<char>();
    std::uint64_t close_epoch_ = 0;
};

}  // namespace wsmanager::cluster::detail

#include <wsmanager/cluster/detail/impl/redis_connection.hpp>
