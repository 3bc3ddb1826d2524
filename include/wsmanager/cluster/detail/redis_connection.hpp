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
// Also here: redis_errc (its error codes), redis_script (a Lua script run with EVALSHA, falling
// back to EVAL) and sigpipe_guard (hiredis writes with write(2), which raises SIGPIPE).

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <set>
#include <stdexcept>
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
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>

#include <wsmanager/cluster/detail/redis_value.hpp>

namespace wsmanager::cluster::detail {

// ---- error codes -----------------------------------------------------------------------------

/// Errors of redis_connection's operations, beside Asio's and the system's own
/// (`asio::error::operation_aborted` after close(), `not_connected`, `connection_refused`...).
enum class redis_errc {
    connect_timeout = 1,  ///< the TCP connection was not established within the timeout
    command_timeout,      ///< a reply did not arrive within its timeout; connection torn down
    connection_lost,      ///< the connection closed or failed while the operation was pending
    redis_error,          ///< Redis answered with an error reply (the value holds its text)
    protocol_error,       ///< the server sent bytes that are not RESP; connection torn down
    connect_failed,       ///< the connection could not be started (e.g. unknown host)
};

class redis_error_category_impl : public std::error_category {
public:
    char const* name() const noexcept override { return "wsmanager.redis"; }
    std::string message(int value) const override {
        switch (static_cast<redis_errc>(value)) {
            case redis_errc::connect_timeout:
                return "Redis connect timed out";
            case redis_errc::command_timeout:
                return "Redis command timed out";
            case redis_errc::connection_lost:
                return "Redis connection lost";
            case redis_errc::redis_error:
                return "Redis error reply";
            case redis_errc::protocol_error:
                return "Redis protocol error";
            case redis_errc::connect_failed:
                return "Redis connect failed";
        }
        return "unknown Redis error";
    }
};

/// The category of redis_errc codes.
inline std::error_category const& redis_category() noexcept {
    static redis_error_category_impl const category;
    return category;
}

inline std::error_code make_error_code(redis_errc e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

}  // namespace wsmanager::cluster::detail

template <>
struct std::is_error_code_enum<wsmanager::cluster::detail::redis_errc> : std::true_type {};

namespace wsmanager::cluster::detail {

// ---- SIGPIPE -----------------------------------------------------------------------------------

/**
 * Keeps a write to a closed socket from killing the process.
 *
 * hiredis 0.14 writes with write(2), not send(2) with MSG_NOSIGNAL, so a write to a socket
 * whose peer has gone raises SIGPIPE, whose default action ends the process. A library must
 * not change the process' signal disposition, so for the duration of one write this blocks
 * SIGPIPE in the calling thread and consumes the one the write raised (SIGPIPE is sent to the
 * thread that wrote); write(2) then fails with EPIPE and hiredis reports the connection lost.
 *
 * @par Thread Safety
 * Affects the calling thread only; construct and destroy on the same thread.
 */
class sigpipe_guard {
public:
    sigpipe_guard() noexcept {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        // A SIGPIPE already pending is someone else's (and blocked, or it would have been
        // delivered): leave everything as it is.
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            return;
        }
        blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &previous_) == 0;
    }
    ~sigpipe_guard() {
        if (!blocked_) {
            return;
        }
        int const saved_errno = errno;
        sigset_t pending;
        sigemptyset(&pending);
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            timespec const no_wait{0, 0};
            while (sigtimedwait(&pipe_, nullptr, &no_wait) == -1 && errno == EINTR) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
        errno = saved_errno;
    }
    sigpipe_guard(sigpipe_guard const&) = delete;
    sigpipe_guard& operator=(sigpipe_guard const&) = delete;

private:
    sigset_t pipe_{};
    sigset_t previous_{};
    bool blocked_ = false;
};

// ---- the connection ----------------------------------------------------------------------------

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
                       connect_handler handler) {
        if (session_) {
            post_error(std::move(handler), session_->connected_ ? asio::error::already_connected
                                                                : asio::error::already_started);
            return;
        }
        if (timeout <= duration::zero() || port <= 0 || port > 65535) {
            post_error(std::move(handler), asio::error::invalid_argument);
            return;
        }
        errno = 0;
        redisAsyncContext* ac = redisAsyncConnect(host.c_str(), port);
        int const connect_errno = errno;
        if (ac == nullptr) {
            post_error(std::move(handler), std::make_error_code(std::errc::not_enough_memory));
            return;
        }
        if (ac->err != 0) {
            // Failed before any event (e.g. refused at once on loopback, unknown host).
            last_error_ = ac->errstr != nullptr ? ac->errstr : "";
            std::error_code const ec = ac->err == REDIS_ERR_IO && connect_errno != 0
                                           ? std::error_code(connect_errno, std::system_category())
                                           : make_error_code(redis_errc::connect_failed);
            redisAsyncFree(ac);  // no hooks attached yet: frees and closes, nothing else
            post_error(std::move(handler), ec);
            return;
        }
        // Keep-alive finds a silent peer (e.g. a partition) even on an idle subscriber.
        if (redisEnableKeepAlive(&ac->c) != REDIS_OK) {
            // hiredis recorded the failure in the context, which would fail its first read.
            last_error_ = ac->c.errstr;
            redisAsyncFree(ac);
            post_error(std::move(handler), redis_errc::connect_failed);
            return;
        }
        auto s = std::make_shared<session>(strand_, this);
        std::error_code ec;
        s->descriptor_.assign(ac->c.fd, ec);
        if (ec) {
            redisAsyncFree(ac);  // the descriptor is not open: nothing for Asio to forget
            post_error(std::move(handler), ec);
            return;
        }
        s->ac_ = ac;
        s->on_connect_ = std::move(handler);
        ac->data = s.get();
        ac->ev.data = s.get();
        ac->ev.addRead = &session::hook_add_read;
        ac->ev.delRead = &session::hook_del_read;
        ac->ev.addWrite = &session::hook_add_write;
        ac->ev.delWrite = &session::hook_del_write;
        ac->ev.cleanup = &session::hook_cleanup;
        session_ = s;
        // Setting the connect callback also asks for the first write event (hooks first).
        redisAsyncSetConnectCallback(ac, &session::on_connect_result);
        s->connect_timer_.expires_after(timeout);
        s->connect_timer_.async_wait([s](std::error_code const& wait_ec) {
            if (!wait_ec) {
                s->on_connect_timeout();
            }
        });
    }

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
    void command(std::vector<std::string> argv, duration timeout, command_handler handler) {
        if (!is_connected()) {
            post_error(std::move(handler), asio::error::not_connected);
            return;
        }
        if (session_->subscribed_) {
            post_error(std::move(handler), asio::error::operation_not_supported);
            return;
        }
        if (argv.empty() || argv.size() > static_cast<std::size_t>(INT_MAX) ||
            timeout <= duration::zero() || changes_reply_routing(argv.front())) {
            post_error(std::move(handler), asio::error::invalid_argument);
            return;
        }
        session_->send_command(argv, timeout, std::move(handler));
    }

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
        void arm_read() {
            if (read_waiting_ || ac_ == nullptr) {
                return;
            }
            read_waiting_ = true;
            descriptor_.async_wait(
                asio::posix::stream_descriptor::wait_read,
                [self = shared_from_this()](std::error_code const& ec) { self->on_readable(ec); });
        }
        void arm_write() {
            if (write_waiting_ || ac_ == nullptr) {
                return;
            }
            write_waiting_ = true;
            descriptor_.async_wait(
                asio::posix::stream_descriptor::wait_write,
                [self = shared_from_this()](std::error_code const& ec) { self->on_writable(ec); });
        }
        // Any other error than an abort is left to hiredis: its read or write finds it.
        void on_readable(std::error_code const& ec) {
            read_waiting_ = false;
            if (ac_ == nullptr || ec == asio::error::operation_aborted || !want_read_) {
                return;
            }
            redisAsyncHandleRead(ac_);  // may free the context (ac_ becomes null)
            if (ac_ != nullptr && want_read_) {
                arm_read();
            }
        }
        void on_writable(std::error_code const& ec) {
            write_waiting_ = false;
            if (ac_ == nullptr || ec == asio::error::operation_aborted || !want_write_) {
                return;
            }
            {
                sigpipe_guard const no_sigpipe;
                redisAsyncHandleWrite(ac_);  // may free the context
            }
            if (ac_ != nullptr && want_write_) {
                arm_write();
            }
        }

        // ---- hiredis' callbacks -----------------------------------------------------------

        // On failure hiredis frees the context right after this returns (and the cleanup
        // hook reports), so nothing here may free it.
        static void on_connect_result(redisAsyncContext const* ac, int status) {
            int const connect_errno = errno;  // hiredis left connect(2)'s error in errno
            session* s = from(ac);
            if (status != REDIS_OK) {
                s->connect_error_ = connect_errno != 0
                                        ? std::error_code(connect_errno, std::system_category())
                                        : make_error_code(redis_errc::connect_failed);
                return;
            }
            s->connected_ = true;
            s->connect_timer_.cancel();
            post_handler(s->strand_, std::exchange(s->on_connect_, nullptr), std::error_code());
        }

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
                          command_handler handler) {
            std::vector<char const*> args;
            std::vector<std::size_t> lengths;
            args.reserve(argv.size());
            lengths.reserve(argv.size());
            for (std::string const& arg : argv) {
                args.push_back(arg.data());
                lengths.push_back(arg.size());
            }
            pending_command& pending = commands_.emplace_back();
            pending.self = std::prev(commands_.end());
            pending.handler = std::move(handler);
            int const rc =
                redisAsyncCommandArgv(ac_, &session::on_command_reply, &pending,
                                      static_cast<int>(args.size()), args.data(), lengths.data());
            if (rc != REDIS_OK) {
                command_handler failed = std::move(pending.handler);
                commands_.erase(pending.self);
                post_handler(strand_, std::move(failed),
                             make_error_code(redis_errc::connection_lost), redis_value());
                return;
            }
            pending.deadline = add_deadline(clock::now() + timeout);
        }

        void send_subscribe(char const* verb, std::vector<std::string> const& names,
                            duration timeout, subscribe_handler handler) {
            std::vector<char const*> args;
            std::vector<std::size_t> lengths;
            args.reserve(names.size() + 1);
            lengths.reserve(names.size() + 1);
            args.push_back(verb);
            lengths.push_back(std::char_traits<char>::length(verb));
            for (std::string const& name : names) {
                args.push_back(name.data());
                lengths.push_back(name.size());
            }
            int const rc =
                redisAsyncCommandArgv(ac_, &session::on_subscription_reply, this,
                                      static_cast<int>(args.size()), args.data(), lengths.data());
            if (rc != REDIS_OK) {
                post_handler(strand_, std::move(handler),
                             make_error_code(redis_errc::connection_lost));
                return;
            }
            subscribed_ = true;
            // Redis confirms each name given, duplicates included, in order.
            subscribes_.push_back(pending_subscribe{std::move(handler), names.size(),
                                                    add_deadline(clock::now() + timeout)});
        }

        void complete_command(pending_command& pending, redisReply const* reply) {
            std::error_code ec;
            redis_value value;
            if (reply == nullptr) {
                ec = loss_reason();
            } else {
                value = redis_value::from_reply(reply);
                if (value.is_error()) {
                    ec = redis_errc::redis_error;
                }
            }
            deadlines_.erase(pending.deadline);
            command_handler handler = std::move(pending.handler);
            commands_.erase(pending.self);
            post_handler(strand_, std::move(handler), ec, std::move(value));
        }

        void on_pubsub(redisReply const& reply) {
            if (reply.type != REDIS_REPLY_ARRAY || reply.elements < 3 ||
                reply.element[0]->type != REDIS_REPLY_STRING) {
                return;
            }
            std::string_view const kind(reply.element[0]->str, reply.element[0]->len);
            auto text = [&reply](std::size_t i) {
                redisReply const* e = reply.element[i];
                return std::string(e->str != nullptr ? e->str : "", e->len);
            };
            if (kind == "message") {
                deliver(text(1), text(2));
            } else if (kind == "pmessage" && reply.elements >= 4) {
                deliver(text(2), text(3));
            } else if (kind == "subscribe" || kind == "psubscribe") {
                if (subscribes_.empty()) {
                    return;
                }
                pending_subscribe& head = subscribes_.front();
                if (--head.unconfirmed == 0) {
                    deadlines_.erase(head.deadline);
                    post_handler(strand_, std::move(head.handler), std::error_code());
                    subscribes_.pop_front();
                }
            }
        }

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
        void arm_watchdog(clock::time_point expiry) {
            watchdog_expiry_ = expiry;
            std::uint64_t const generation = ++watchdog_generation_;
            watchdog_.expires_at(expiry);
            watchdog_.async_wait([self = shared_from_this(), generation](std::error_code const&) {
                self->on_watchdog(generation);
            });
        }
        void on_watchdog(std::uint64_t generation) {
            // A superseded wait (re-armed, or cancelled by the cleanup) does nothing.
            if (generation != watchdog_generation_ || ac_ == nullptr) {
                return;
            }
            watchdog_expiry_ = clock::time_point::max();
            if (deadlines_.empty()) {
                return;
            }
            if (*deadlines_.begin() <= clock::now()) {
                teardown(redis_errc::command_timeout);
                return;
            }
            arm_watchdog(*deadlines_.begin());
        }

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

        void on_context_freed() {
            std::shared_ptr<session> const keep = shared_from_this();
            std::error_code const reason = loss_reason();
            std::string message = ac_->errstr != nullptr ? ac_->errstr : "";
            ac_ = nullptr;
            want_read_ = false;
            want_write_ = false;
            // hiredis closes the fd after this returns; Asio must forget it, not close it.
            // release() also completes the pending waits with operation_aborted.
            descriptor_.release();
            connect_timer_.cancel();
            ++watchdog_generation_;
            watchdog_.cancel();
            // hiredis has completed every command callback by now; whatever is left
            // (subscriptions awaiting confirmation) fails here.
            while (!commands_.empty()) {
                complete_command(commands_.front(), nullptr);
            }
            for (pending_subscribe& pending : subscribes_) {
                post_handler(strand_, std::move(pending.handler), reason);
            }
            subscribes_.clear();
            deadlines_.clear();
            bool const was_connected = connected_;
            connected_ = false;
            if (on_connect_) {
                std::error_code const ec = teardown_reason_
                                               ? teardown_reason_
                                               : (connect_error_ ? connect_error_ : reason);
                if (message.empty()) {
                    message = ec.message();
                }
                post_handler(strand_, std::exchange(on_connect_, nullptr), ec);
            } else if (message.empty()) {
                message = reason.message();
            }
            if (owner_ != nullptr) {
                owner_->on_session_ended(*this, reason, std::move(message), was_connected);
            }
        }
    };

    static bool changes_reply_routing(std::string_view name) {
        auto equals = [name](std::string_view other) {
            return name.size() == other.size() &&
                   std::equal(name.begin(), name.end(), other.begin(), [](char a, char b) {
                       return (a >= 'A' && a <= 'Z' ? a - 'A' + 'a' : a) == b;
                   });
        };
        return equals("subscribe") || equals("psubscribe") || equals("unsubscribe") ||
               equals("punsubscribe") || equals("monitor");
    }

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
                         subscribe_handler handler) {
        if (!is_connected()) {
            post_error(std::move(handler), asio::error::not_connected);
            return;
        }
        if (names.empty() || names.size() >= static_cast<std::size_t>(INT_MAX) ||
            timeout <= duration::zero()) {
            post_error(std::move(handler), asio::error::invalid_argument);
            return;
        }
        session_->send_subscribe(verb, names, timeout, std::move(handler));
    }

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
                          bool was_connected) {
        if (session_.get() != &s) {
            return;
        }
        session_.reset();  // the hook's caller holds the session alive
        last_error_ = std::move(message);
        if (was_connected) {
            post_guarded([this, reason] {
                if (on_disconnected_) {
                    on_disconnected_(reason);
                }
            });
        }
    }

    strand_type strand_;
    std::shared_ptr<session> session_;
    message_handler on_message_;
    disconnect_handler on_disconnected_;
    std::string last_error_;
    // Posted lambdas that need the object check these: destroyed, or closed since posting.
    std::shared_ptr<char> alive_ = std::make_shared<char>();
    std::uint64_t close_epoch_ = 0;
};

// ---- Lua scripts -------------------------------------------------------------------------------

/**
 * A Lua script and its SHA1, run with EVALSHA and, when Redis does not know it yet
 * (`NOSCRIPT`, e.g. after a restart or SCRIPT FLUSH), with EVAL, which also caches it.
 *
 * @par Thread Safety
 * Immutable after construction: copies are cheap (shared text) and may be used anywhere;
 * run() follows redis_connection's rules.
 */
class redis_script {
public:
    /// Keeps `source` and computes its SHA1 (OpenSSL), as Redis does for EVALSHA.
    explicit redis_script(std::string source)
        : data_(std::make_shared<data const>(data{sha1_hex(source), std::move(source)})) {}

    /// The script's text.
    std::string const& source() const noexcept { return data_->source; }
    /// The SHA1 of the text, 40 lowercase hexadecimal digits.
    std::string const& sha1() const noexcept { return data_->sha1; }

    /**
     * Runs the script with `keys` and `args` on `connection`: EVALSHA, then EVAL if Redis
     * answered NOSCRIPT. Each of the two may take `timeout`.
     *
     * @par Completion Signature
     * As redis_connection::command(); a script's own error is `redis_errc::redis_error` with
     * the error reply. If the connection is closed or destroyed between the two, the
     * handler gets `asio::error::operation_aborted`.
     *
     * @par Thread Safety
     * On the connection's strand.
     */
    void run(redis_connection& connection, std::vector<std::string> const& keys,
             std::vector<std::string> const& args, redis_connection::duration timeout,
             redis_connection::command_handler handler) const {
        std::vector<std::string> argv;
        argv.reserve(3 + keys.size() + args.size());
        argv.push_back("EVALSHA");
        argv.push_back(data_->sha1);
        argv.push_back(std::to_string(keys.size()));
        argv.insert(argv.end(), keys.begin(), keys.end());
        argv.insert(argv.end(), args.begin(), args.end());
        auto alive = connection.lifetime();
        connection.command(
            argv, timeout,
            [data = data_, argv, timeout, alive, &connection, handler = std::move(handler)](
                std::error_code ec, redis_value value) mutable {
                if (ec != redis_errc::redis_error || !value.is_error_with_prefix("NOSCRIPT")) {
                    handler(ec, std::move(value));
                    return;
                }
                if (!alive.lock()) {
                    handler(asio::error::operation_aborted, redis_value());
                    return;
                }
                argv[0] = "EVAL";
                argv[1] = data->source;
                connection.command(std::move(argv), timeout, std::move(handler));
            });
    }

    /// The SHA1 of `text` in lowercase hexadecimal.
    static std::string sha1_hex(std::string_view text) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
            throw std::runtime_error("redis_script: OpenSSL SHA1 failed");
        }
        static char const hex[] = "0123456789abcdef";
        std::string out;
        out.reserve(2 * length);
        for (unsigned int i = 0; i < length; ++i) {
            out.push_back(hex[digest[i] >> 4]);
            out.push_back(hex[digest[i] & 0x0f]);
        }
        return out;
    }

private:
    struct data {
        std::string sha1;
        std::string source;
    };
    std::shared_ptr<data const> data_;
};

}  // namespace wsmanager::cluster::detail
