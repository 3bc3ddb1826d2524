// SPDX-License-Identifier: BSL-1.0
#pragma once

// Bodies of redis_connection (included at the end of detail/redis_connection.hpp): connecting,
// sending commands and subscriptions, and its session's Asio adapter of the hiredis context,
// hiredis' callbacks, the reply timeouts and the end of a context.

namespace wsmanager::cluster::detail {

// ---- redis_connection ---------------------------------------------------------------------------

inline void redis_connection::async_connect(std::string const& host, int port, duration timeout,
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

inline void redis_connection::command(std::vector<std::string> argv, duration timeout,
                                      command_handler handler) {
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

inline bool redis_connection::changes_reply_routing(std::string_view name) {
    auto equals = [name](std::string_view other) {
        return name.size() == other.size() &&
               std::equal(name.begin(), name.end(), other.begin(), [](char a, char b) {
                   return (a >= 'A' && a <= 'Z' ? a - 'A' + 'a' : a) == b;
               });
    };
    return equals("subscribe") || equals("psubscribe") || equals("unsubscribe") ||
           equals("punsubscribe") || equals("monitor");
}

inline void redis_connection::start_subscribe(char const* verb, std::vector<std::string> names,
                                              duration timeout, subscribe_handler handler) {
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

inline void redis_connection::on_session_ended(session& s, std::error_code reason,
                                               std::string message, bool was_connected) {
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

// ---- redis_connection::session: one hiredis context ---------------------------------------------

inline void redis_connection::session::arm_read() {
    if (read_waiting_ || ac_ == nullptr) {
        return;
    }
    read_waiting_ = true;
    descriptor_.async_wait(
        asio::posix::stream_descriptor::wait_read,
        [self = shared_from_this()](std::error_code const& ec) { self->on_readable(ec); });
}

inline void redis_connection::session::arm_write() {
    if (write_waiting_ || ac_ == nullptr) {
        return;
    }
    write_waiting_ = true;
    descriptor_.async_wait(
        asio::posix::stream_descriptor::wait_write,
        [self = shared_from_this()](std::error_code const& ec) { self->on_writable(ec); });
}

inline void redis_connection::session::on_readable(std::error_code const& ec) {
    read_waiting_ = false;
    if (ac_ == nullptr || ec == asio::error::operation_aborted || !want_read_) {
        return;
    }
    redisAsyncHandleRead(ac_);  // may free the context (ac_ becomes null)
    if (ac_ != nullptr && want_read_) {
        arm_read();
    }
}

inline void redis_connection::session::on_writable(std::error_code const& ec) {
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

inline void redis_connection::session::on_connect_result(redisAsyncContext const* ac, int status) {
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

inline void redis_connection::session::send_command(std::vector<std::string> const& argv,
                                                    duration timeout, command_handler handler) {
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
        post_handler(strand_, std::move(failed), make_error_code(redis_errc::connection_lost),
                     redis_value());
        return;
    }
    pending.deadline = add_deadline(clock::now() + timeout);
}

inline void redis_connection::session::send_subscribe(char const* verb,
                                                      std::vector<std::string> const& names,
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
        post_handler(strand_, std::move(handler), make_error_code(redis_errc::connection_lost));
        return;
    }
    subscribed_ = true;
    // Redis confirms each name given, duplicates included, in order.
    subscribes_.push_back(
        pending_subscribe{std::move(handler), names.size(), add_deadline(clock::now() + timeout)});
}

inline void redis_connection::session::complete_command(pending_command& pending,
                                                        redisReply const* reply) {
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

inline void redis_connection::session::on_pubsub(redisReply const& reply) {
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

inline void redis_connection::session::arm_watchdog(clock::time_point expiry) {
    watchdog_expiry_ = expiry;
    std::uint64_t const generation = ++watchdog_generation_;
    watchdog_.expires_at(expiry);
    watchdog_.async_wait([self = shared_from_this(), generation](std::error_code const&) {
        self->on_watchdog(generation);
    });
}

inline void redis_connection::session::on_watchdog(std::uint64_t generation) {
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

inline void redis_connection::session::on_context_freed() {
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
        std::error_code const ec =
            teardown_reason_ ? teardown_reason_ : (connect_error_ ? connect_error_ : reason);
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

}  // namespace wsmanager::cluster::detail
