// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <concepts>
#include <type_traits>
#include <typeinfo>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <chrono>
#include <ratio>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/strand.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/action.hpp>
#include <wsmanager/backplane.hpp>
#include <wsmanager/config.hpp>
#include <wsmanager/detail/manager_core.hpp>
#include <wsmanager/detail/websocketpp_transport.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/handshake.hpp>
#include <wsmanager/http.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager {

/**
 * A WebSocket server that pushes task progress to users and asks them to confirm steps.
 *
 * Embedded by a host application. Every asynchronous member is an Asio asynchronous
 * operation: it takes a completion token, `asio::use_awaitable` by default, so
 * `co_await manager.send_to_user(...)` works in a coroutine, `asio::use_future` from a plain
 * thread, and a callback anywhere. Handlers are never called from inside the initiating
 * function; they run on the executor associated with the handler (for a coroutine, its own).
 *
 * @par Thread Safety
 * Every member may be called from any thread at the same time, including from inside
 * the manager's own handlers. State lives on one strand; see docs/architecture.md.
 *
 * @tparam Config a websocketpp config from wsmanager::config (default: config::plain).
 */
template <class Config = config::plain>
class WebSocketManager {
public:
    using executor_type = asio::io_context::executor_type;

    /**
     * A manager that owns its io_context and runs it on `options.threads` threads, from
     * construction until destruction.
     * @throws std::invalid_argument when a setting makes no sense.
     */
    explicit WebSocketManager(Options options = Options{})
        : owned_context_(std::make_shared<asio::io_context>(static_cast<int>(options.threads))),
          core_(make_core(*owned_context_, std::move(options))),
          owned_work_(asio::make_work_guard(*owned_context_)) {
        auto const count = core_->options().threads;
        threads_.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
            threads_.emplace_back([context = owned_context_] { context->run(); });
        }
    }

    /**
     * A manager that runs on the host's io_context, through `executor`; the host runs it.
     * @throws std::invalid_argument when `executor` does not belong to an asio::io_context
     * (websocketpp's transport needs one) or a setting makes no sense.
     */
    WebSocketManager(asio::any_io_executor const& executor, Options options = Options{})
        : core_(make_core(context_of(executor), std::move(options))) {}

    /**
     * A manager that owns its io_context, and is one node of a cluster through `backplane`
     * (wsmanager::cluster::redis(options), <wsmanager/cluster.hpp>).
     */
    WebSocketManager(Options options, std::shared_ptr<Backplane> backplane)
        : WebSocketManager(std::move(options)) {
        set_backplane(std::move(backplane));
    }

    /// As above, on the host's executor.
    WebSocketManager(asio::any_io_executor const& executor, Options options,
                     std::shared_ptr<Backplane> backplane)
        : WebSocketManager(executor, std::move(options)) {
        set_backplane(std::move(backplane));
    }

    /// The original component's constructor: `WebSocketManager(host, port)`, other settings
    /// default, own io_context with one thread.
    WebSocketManager(std::string host, std::uint16_t port)
        : WebSocketManager(Options{.host = std::move(host), .port = port}) {}

    WebSocketManager(WebSocketManager const&) = delete;
    WebSocketManager& operator=(WebSocketManager const&) = delete;

    /**
     * Stops the server if it is running, and returns once none of the host's code
     * (handlers, Authenticator, HTTP routes, log sink) can be called any more.
     *
     * With an owned io_context this waits for the stop (connections closed with 1001) and
     * joins the threads. Called on one of those threads (from a handler, say) it cannot wait:
     * it starts the stop and returns, and the threads, detached, run the stop to its end
     * (pending operations end with reason `shutdown`, clients get 1001) before the
     * io_context, which they hold, goes with the last of them. On a host executor it starts
     * the stop and returns; the host keeps running its io_context until the stop has
     * finished.
     */
    ~WebSocketManager() {
        if (!owned_context_) {
            core_->stop([](std::error_code) {});
            core_->close_host_hooks();
            return;
        }
        bool const on_own_thread = std::any_of(threads_.begin(), threads_.end(), [](auto& t) {
            return t.get_id() == std::this_thread::get_id();
        });
        if (on_own_thread) {
            // The work guard goes when the stop has finished; then run() returns everywhere.
            auto work = std::make_shared<asio::executor_work_guard<executor_type>>(
                std::move(*owned_work_));
            owned_work_.reset();
            core_->stop([work](std::error_code) { work->reset(); });
            core_->close_host_hooks();
            for (auto& thread : threads_) thread.detach();
            return;
        }
        std::promise<void> stopped;
        core_->stop([&stopped](std::error_code) { stopped.set_value(); });
        stopped.get_future().wait();
        core_->close_host_hooks();
        owned_work_.reset();
        owned_context_->stop();
        for (auto& thread : threads_) thread.join();
    }

    /// The io_context executor the manager runs on.
    executor_type get_executor() const noexcept { return core_->context().get_executor(); }

    /**
     * Starts listening on Options::host and Options::port (port 0 picks a free port, see
     * local_port()).
     *
     * @par Completion Signature
     * `void(std::error_code)`: the bind error (e.g. `asio::error::address_in_use`) or
     * `error::already_running`; with use_awaitable it is thrown as std::system_error.
     * @par Per-Operation Cancellation
     * Not cancellable; it completes promptly.
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto start_server(CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code)>(
            [core = core_](auto handler) { core->start(std::move(handler)); }, token);
    }

    /**
     * Stops accepting, closes every connection with 1001 "Server shutting down", resolves
     * pending confirmations with reason `shutdown`, and completes once every connection has
     * closed (at most Options::close_timeout for clients that do not answer the close).
     * Stopping a stopped server completes at once. The server may be started again.
     *
     * @par Completion Signature
     * `void(std::error_code)`, always success.
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto stop_server(CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code)>(
            [core = core_](auto handler) { core->stop(std::move(handler)); }, token);
    }

    /**
     * Sends a message to every open connection. The message is framed once; each
     * connection gets the same frame.
     *
     * @par Completion Signature
     * `void(std::error_code, std::size_t)`: the number of connections it was queued to.
     * Queued is not delivered: a connection that closes meanwhile, or whose send buffer is
     * full (Options::max_send_buffer), counts in Status::messages_failed.
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto broadcast_message(Message message,
                           CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code, std::size_t)>(
            [core = core_](auto handler, Message message) {
                core->deliver(detail::delivery_target::everyone(), std::move(message),
                              std::move(handler));
            },
            token, std::move(message));
    }

    /**
     * Sends a message to every connection of one user (all their tabs and devices), and to
     * nobody else.
     *
     * @par Completion Signature
     * `void(std::error_code, std::size_t)`: connections it was queued to; 0 when the user
     * is not connected (nothing is kept for later).
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto send_to_user(std::string user_id, Message message,
                      CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code, std::size_t)>(
            [core = core_](auto handler, std::string user_id, Message message) {
                core->deliver(detail::delivery_target::user(std::move(user_id)),
                              std::move(message), std::move(handler));
            },
            token, std::move(user_id), std::move(message));
    }

    /**
     * Sends a message to the connections subscribed to a topic.
     *
     * @par Completion Signature
     * `void(std::error_code, std::size_t)`: subscribers it was queued to.
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto publish(std::string topic, Message message,
                 CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code, std::size_t)>(
            [core = core_](auto handler, std::string topic, Message message) {
                core->deliver(detail::delivery_target::to_topic(std::move(topic)),
                              std::move(message), std::move(handler));
            },
            token, std::move(topic), std::move(message));
    }

    /**
     * Sends a step result to one user and waits for their decision (`confirm`), as the
     * original's notify_user, with Options::callback_timeout.
     *
     * The `task_step_result` frame goes to every connection of `user_id` and to nobody
     * else; a user who is offline gets it on connecting, until it ends. The first valid
     * answer from that user wins; then every connection of the user gets
     * `confirmation_resolved`, however the confirmation ended.
     *
     * @par Completion Signature
     * `void(std::error_code, UserConfirmation)`. Success with reason `user` (the answer),
     * `timeout` (`proceed` = Options::proceed_on_timeout), `cancelled` (the user or host
     * cancelled the task), `shutdown` (stop_server) or `disconnected`
     * (Options::resolve_on_disconnect). Errors: error::not_running, error::invalid_message
     * (TaskStepResult::result is not JSON, or `user_id` is empty), error::too_many_pending
     * (Options::max_pending_confirmations_per_user or max_pending_confirmations),
     * `asio::error::invalid_argument` (a timeout that is zero, negative or too large for the
     * clock), operation_aborted. None of the errors is a decision: `proceed` is false.
     * @par Per-Operation Cancellation
     * terminal and partial: the request is withdrawn at once (its user's dialogs get
     * `confirmation_resolved` with reason `cancelled`) and the operation completes with
     * `asio::error::operation_aborted`. Not total: the request has been shown already.
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
        requires asio::completion_token_for<CompletionToken, void(std::error_code, UserConfirmation)>
    auto notify_user(TaskStepResult step_result, std::string user_id, std::string task_id,
                     int step, CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return notify_user(std::move(step_result), std::move(user_id), std::move(task_id), step,
                           core_->options().callback_timeout,
                           std::forward<CompletionToken>(token));
    }

    /// notify_user with its own timeout instead of Options::callback_timeout.
    template <class Rep, class Period, class CompletionToken = asio::use_awaitable_t<>>
    auto notify_user(TaskStepResult step_result, std::string user_id, std::string task_id,
                     int step, std::chrono::duration<Rep, Period> timeout,
                     CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code, UserConfirmation)>(
            [core = core_](auto handler, TaskStepResult step_result, std::string user_id,
                           std::string task_id, int step, std::chrono::milliseconds timeout) {
                core->notify(std::move(step_result), std::move(user_id), std::move(task_id),
                             step, timeout, std::move(handler));
            },
            token, std::move(step_result), std::move(user_id), std::move(task_id), step,
            detail::checked_duration(timeout));
    }

    /**
     * Sends `heartbeat` frames to a user's connections for a task: one at once, then one
     * every `interval`, until the operation is cancelled, the user cancels the task, or the
     * server stops. Typically run beside a long step:
     * `co_await (long_step() || manager.send_heartbeat(user, task, 10s))`.
     *
     * @par Completion Signature
     * `void(std::error_code)`: `asio::error::operation_aborted` (cancelled by the host),
     * error::task_cancelled (cancelled by the user), error::shutting_down,
     * error::not_running, error::too_many_pending, or `asio::error::invalid_argument` (empty
     * ids, an interval that is zero, negative or too large for the clock).
     * It never completes successfully: it runs until one of these.
     * @par Per-Operation Cancellation
     * terminal, partial and total: stops at once.
     */
    template <class Rep = std::int64_t, class Period = std::ratio<1>,
              class CompletionToken = asio::use_awaitable_t<>>
    auto send_heartbeat(std::string user_id, std::string task_id,
                        std::chrono::duration<Rep, Period> interval = std::chrono::seconds(30),
                        CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code)>(
            [core = core_](auto handler, std::string user_id, std::string task_id,
                           std::chrono::milliseconds interval) {
                core->heartbeat(std::move(user_id), std::move(task_id), interval,
                                std::move(handler));
            },
            token, std::move(user_id), std::move(task_id),
            detail::checked_duration(interval));
    }

    /**
     * Sends a message to a user's connections with `message_id` and `requires_ack: true`
     * added, and waits for a client's `ack` of that id.
     *
     * @par Completion Signature
     * `void(std::error_code, bool)`: true once one of the user's clients acks; false on
     * timeout, when the user has no connection (nothing is kept for later), or on
     * stop_server (with error::shutting_down). error::invalid_message when the message is
     * not a JSON object; error::too_many_pending; `asio::error::invalid_argument` for a
     * timeout that is zero, negative or too large for the clock.
     * @par Per-Operation Cancellation
     * terminal and partial: completes with `asio::error::operation_aborted`, false. Not
     * total: the message has been sent.
     */
    template <class Rep, class Period, class CompletionToken = asio::use_awaitable_t<>>
    auto send_with_ack(std::string user_id, Message message,
                       std::chrono::duration<Rep, Period> timeout,
                       CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code, bool)>(
            [core = core_](auto handler, std::string user_id, Message message,
                           std::chrono::milliseconds timeout) {
                core->send_with_ack(std::move(user_id), std::move(message), timeout,
                                    std::move(handler));
            },
            token, std::move(user_id), std::move(message),
            detail::checked_duration(timeout));
    }

    /**
     * Closes every connection of a user, on every node (log-out, a revoked token), as
     * Socket.IO's `disconnectSockets` or Centrifugo's `disconnect`. The clients get a close
     * frame with `code` and `reason`.
     *
     * @param code 1000, 1001, 1008, 1011, 1013, or an application code 3000-4999.
     * @param reason at most 123 bytes of UTF-8.
     *
     * @par Completion Signature
     * `void(std::error_code, std::size_t)`: this node's connections the close was started
     * on. `asio::error::invalid_argument` for an empty user id, a code a server may not
     * send, or a reason too long or not UTF-8.
     */
    template <class CompletionToken = asio::use_awaitable_t<>>
    auto disconnect_user(std::string user_id, std::uint16_t code = 1008,
                         std::string reason = "Disconnected by the server",
                         CompletionToken&& token = asio::use_awaitable_t<>{}) {
        return asio::async_initiate<CompletionToken, void(std::error_code, std::size_t)>(
            [core = core_](auto handler, std::string user_id, std::uint16_t code,
                           std::string reason) {
                core->disconnect(std::move(user_id), code, std::move(reason),
                                 std::move(handler));
            },
            token, std::move(user_id), code, std::move(reason));
    }

    /// Open connections right now. Any thread, never blocks.
    std::size_t get_connection_count() const noexcept { return core_->connection_count(); }

    /// A snapshot of state and counters. Any thread, never blocks.
    Status get_status() const { return core_->status(); }

    /// The port the server listens on (useful with port 0); 0 before the first start.
    std::uint16_t local_port() const noexcept { return core_->local_port(); }

    /**
     * Registers the handler for a user's `cancel` action: `bool(CancelRequest const&)`,
     * true to accept, false (or an exception) to refuse with `forbidden`, nothing cancelled
     * and nothing sent to anyone else. Runs on the manager strand with the requesting user;
     * keep it short (signal your task, do not wait for it). After it agrees, the task's
     * pending confirmations end with reason `cancelled`, its heartbeats stop, and
     * `task_cancelled` goes to the user and to subscribers of `task:<task_id>`.
     *
     * A task with another user's pending confirmations or heartbeats is refused before the
     * handler is asked. Without a handler, only a task with the user's own pending
     * confirmations or heartbeats can be cancelled.
     */
    template <class Handler>
        requires std::invocable<Handler&, CancelRequest const&>
    void on_cancel(Handler handler) {
        using result = std::invoke_result_t<Handler&, CancelRequest const&>;
        static_assert(std::is_convertible_v<result, bool>,
                      "on_cancel: the handler must return bool: true accepts the cancel, "
                      "false refuses it");
        core_->set_cancel_handler(std::move(handler));
    }

    /**
     * Registers a host-defined client action: frames with `"action": name` go to `handler`.
     * The built-in actions (ping, subscribe, unsubscribe, confirm, cancel, ack) cannot be
     * replaced. An empty handler removes the action.
     */
    void on_action(std::string name, ActionHandler handler) {
        core_->set_action_handler(std::move(name), std::move(handler));
    }

    /**
     * Decides who may subscribe to which topic: `authorizer(user_id, topic)` returning false
     * answers the client's `subscribe` with `forbidden`. Runs on the manager strand; keep it
     * quick. Without one, any connection may join any topic (including `task:<id>`).
     */
    void on_subscribe(std::function<bool(std::string const& user_id, std::string const& topic)>
                          authorizer) {
        core_->set_subscribe_authorizer(std::move(authorizer));
    }

    /**
     * Replaces the default identity check of the opening handshake (see Authenticator;
     * default_authenticate is the default, to call from yours). Any time: the next handshake
     * uses it.
     */
    void set_authenticator(Authenticator authenticator) {
        core_->set_authenticator(std::move(authenticator));
    }

    /**
     * Serves the host's own HTTP routes on the WebSocket port (see HttpHandler), e.g. a
     * page at `/` and a REST API. Any time: the next request uses it.
     */
    void on_http(HttpHandler handler) { core_->set_http_handler(std::move(handler)); }

    /**
     * Makes this manager one node of a cluster (docs/cluster.md): broadcasts, user messages,
     * topics, heartbeats, disconnects, confirmations and cancels reach every node. Once,
     * before the first start_server.
     * @throws std::logic_error when the server has been started, or a backplane was set.
     */
    void set_backplane(std::shared_ptr<Backplane> backplane) {
        if (!backplane) throw std::invalid_argument("WebSocketManager::set_backplane: null");
        if (has_backplane_ || core_->local_port() != 0 || core_->status().running) {
            throw std::logic_error(
                "WebSocketManager::set_backplane: once, before the first start_server");
        }
        has_backplane_ = true;
        core_->set_cluster(std::move(backplane));
    }

    /// The Prometheus text exposition of every metric, as GET /metrics serves it.
    std::string metrics_text() const { return core_->metrics_text(); }

private:
    using core_type = detail::manager_core;
    using transport_type = detail::websocketpp_transport<Config>;

    /// The engine, and the websocketpp transport that feeds it.
    static std::shared_ptr<core_type> make_core(asio::io_context& context, Options options) {
        auto core = core_type::create(context, std::move(options));
        auto transport = std::make_shared<transport_type>(context, core->strand(), core->options(),
                                                          core->log(), core->counters());
        transport->attach(core);
        core->attach(std::move(transport));
        return core;
    }

    /// The io_context behind an executor: websocketpp's transport needs the context itself.
    static asio::io_context& context_of(asio::any_io_executor const& executor) {
        using context_executor = asio::io_context::executor_type;
        // Asio 1.22's any_executor::target<T>() does not check T, so the type is compared
        // first.
        if (executor.target_type() == typeid(context_executor)) {
            return executor.target<context_executor>()->context();
        }
        if (executor.target_type() == typeid(asio::strand<context_executor>)) {
            return executor.target<asio::strand<context_executor>>()->get_inner_executor().context();
        }
        throw std::invalid_argument(
            "wsmanager::WebSocketManager: the executor must be an asio::io_context's executor "
            "(or a strand of one)");
    }

    std::shared_ptr<asio::io_context> owned_context_;
    std::shared_ptr<core_type> core_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> owned_work_;
    std::vector<std::thread> threads_;
    bool has_backplane_ = false;
};

}  // namespace wsmanager
