// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/any_io_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/action.hpp>
#include <wsmanager/config.hpp>
#include <wsmanager/detail/manager_core.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/handshake.hpp>
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
        : owned_context_(std::make_unique<asio::io_context>(static_cast<int>(options.threads))),
          core_(make_core(*owned_context_, std::move(options))),
          owned_work_(asio::make_work_guard(*owned_context_)) {
        auto const count = core_->options().threads;
        threads_.reserve(count);
        for (std::size_t i = 0; i < count; ++i) {
            threads_.emplace_back([context = owned_context_.get()] { context->run(); });
        }
    }

    /**
     * A manager that runs on the host's io_context, through `executor`; the host runs it.
     * @throws std::invalid_argument when `executor` does not belong to an asio::io_context
     * (websocketpp's transport needs one) or a setting makes no sense.
     */
    WebSocketManager(asio::any_io_executor const& executor, Options options = Options{})
        : core_(make_core(context_of(executor), std::move(options))) {}

    /// The original component's constructor: `WebSocketManager(host, port)`, other settings
    /// default, own io_context with one thread.
    WebSocketManager(std::string host, std::uint16_t port)
        : WebSocketManager(Options{.host = std::move(host), .port = port}) {}

    WebSocketManager(WebSocketManager const&) = delete;
    WebSocketManager& operator=(WebSocketManager const&) = delete;

    /**
     * Stops the server if it is running. With an owned io_context this waits for the stop
     * (connections closed with 1001) and joins the threads, so it must not run on one of
     * them. On a host executor it starts the stop and returns; the host keeps running its
     * io_context until the stop has finished.
     */
    ~WebSocketManager() {
        if (!owned_context_) {
            core_->stop([](std::error_code) {});
            return;
        }
        bool const on_own_thread = std::any_of(threads_.begin(), threads_.end(), [](auto& t) {
            return t.get_id() == std::this_thread::get_id();
        });
        if (!on_own_thread) {
            std::promise<void> stopped;
            core_->stop([&stopped](std::error_code) { stopped.set_value(); });
            stopped.get_future().wait();
        }
        owned_work_.reset();
        owned_context_->stop();
        for (auto& thread : threads_) {
            if (thread.get_id() == std::this_thread::get_id()) {
                thread.detach();
            } else {
                thread.join();
            }
        }
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
                core->broadcast(std::move(message), std::move(handler));
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
                core->send_to_user(std::move(user_id), std::move(message), std::move(handler));
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
                core->publish(std::move(topic), std::move(message), std::move(handler));
            },
            token, std::move(topic), std::move(message));
    }

    /// Open connections right now. Any thread, never blocks.
    std::size_t get_connection_count() const noexcept { return core_->connection_count(); }

    /// A snapshot of state and counters. Any thread, never blocks.
    Status get_status() const { return core_->status(); }

    /// The port the server listens on (useful with port 0); 0 before the first start.
    std::uint16_t local_port() const noexcept { return core_->local_port(); }

    /**
     * Registers the handler for a user's `cancel` action. Runs on the manager strand with
     * the requesting user; keep it short (signal your task, do not wait for it).
     */
    void on_cancel(std::function<void(CancelRequest const&)> handler) {
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
     * Replaces the default identity check of the opening handshake (see Authenticator).
     * Call before start_server.
     */
    void set_authenticator(Authenticator authenticator) {
        core_->set_authenticator(std::move(authenticator));
    }

private:
    using core_type = detail::manager_core<Config>;

    static std::shared_ptr<core_type> make_core(asio::io_context& context, Options options) {
        auto core = std::make_shared<core_type>(context, std::move(options));
        core->install_handlers();
        return core;
    }

    static asio::io_context& context_of(asio::any_io_executor const& executor) {
        auto* context = dynamic_cast<asio::io_context*>(
            &asio::query(executor, asio::execution::context));
        if (context == nullptr) {
            throw std::invalid_argument(
                "wsmanager::WebSocketManager: the executor must belong to an asio::io_context");
        }
        return *context;
    }

    std::unique_ptr<asio::io_context> owned_context_;
    std::shared_ptr<core_type> core_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> owned_work_;
    std::vector<std::thread> threads_;
};

}  // namespace wsmanager
