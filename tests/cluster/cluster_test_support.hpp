// SPDX-License-Identifier: BSL-1.0
#pragma once

// Helpers of the Redis client tests: an io_context run by N threads, running a function on a
// strand and waiting for it, and a thread-safe inbox that tests wait on with a bound. Every
// wait is generous (seconds) and fails the test instead of hanging; nothing asserts on speed.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/strand.hpp>
#include <catch2/catch.hpp>

#include <wsmanager/cluster/detail/redis_connection.hpp>
#include <wsmanager/cluster/detail/redis_error.hpp>
#include <wsmanager/cluster/detail/redis_value.hpp>

namespace wsmanager_cluster_test {

using wsmanager::cluster::detail::redis_connection;
using wsmanager::cluster::detail::redis_errc;
using wsmanager::cluster::detail::redis_value;
using namespace std::chrono_literals;

/// How long a test waits for anything that should happen "soon".
inline constexpr std::chrono::seconds patience{20};
/// The command timeout of tests that do not test timeouts: long enough for a busy machine.
inline constexpr std::chrono::seconds command_patience{15};

/// An io_context run by `threads` threads until destroyed.
class io_threads {
public:
    explicit io_threads(int threads = 2) : work_(asio::make_work_guard(context_)) {
        for (int i = 0; i < threads; ++i) {
            threads_.emplace_back([this] { context_.run(); });
        }
    }
    ~io_threads() {
        work_.reset();
        context_.stop();
        for (std::thread& t : threads_) {
            t.join();
        }
    }
    io_threads(io_threads const&) = delete;
    io_threads& operator=(io_threads const&) = delete;

    asio::io_context& context() noexcept { return context_; }
    redis_connection::strand_type make_strand() { return asio::make_strand(context_); }

private:
    asio::io_context context_;
    asio::executor_work_guard<asio::io_context::executor_type> work_;
    std::vector<std::thread> threads_;
};

/// Runs `f` on `strand` and waits (bounded) for it to return; its result is returned.
template <typename F>
auto on_strand(redis_connection::strand_type const& strand, F f) {
    using result = decltype(f());
    std::promise<result> done;
    auto future = done.get_future();
    asio::post(strand, [&done, &f] {
        if constexpr (std::is_void_v<result>) {
            f();
            done.set_value();
        } else {
            done.set_value(f());
        }
    });
    REQUIRE(future.wait_for(patience) == std::future_status::ready);
    return future.get();
}

/// Items pushed from handlers on any thread; the test waits until enough have arrived.
template <typename T>
class inbox {
public:
    void push(T item) {
        std::lock_guard<std::mutex> lock(mutex_);
        items_.push_back(std::move(item));
        changed_.notify_all();
    }
    /// True if `count` items arrived within `limit`.
    bool wait_for(std::size_t count, std::chrono::milliseconds limit = patience) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_for(lock, limit, [&] { return items_.size() >= count; });
    }
    std::size_t size() {
        std::lock_guard<std::mutex> lock(mutex_);
        return items_.size();
    }
    std::vector<T> items() {
        std::lock_guard<std::mutex> lock(mutex_);
        return items_;
    }
    T at(std::size_t i) {
        std::lock_guard<std::mutex> lock(mutex_);
        return items_.at(i);
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<T> items_;
};

using reply = std::pair<std::error_code, redis_value>;

/// async_connect on the strand; waits for and returns its result.
inline std::error_code connect(redis_connection& connection, int port,
                               redis_connection::duration timeout = command_patience,
                               std::string const& host = "127.0.0.1") {
    auto result = std::make_shared<inbox<std::error_code>>();
    asio::post(connection.get_executor(), [&connection, result, port, timeout, host] {
        connection.async_connect(host, port, timeout,
                                 [result](std::error_code ec) { result->push(ec); });
    });
    REQUIRE(result->wait_for(1));
    return result->at(0);
}

/// One command on the strand; waits for and returns its reply.
inline reply run(redis_connection& connection, std::vector<std::string> argv,
                 redis_connection::duration timeout = command_patience) {
    auto result = std::make_shared<inbox<reply>>();
    asio::post(connection.get_executor(), [&connection, result, argv = std::move(argv), timeout] {
        connection.command(argv, timeout, [result](std::error_code ec, redis_value value) {
            result->push({ec, std::move(value)});
        });
    });
    REQUIRE(result->wait_for(1));
    return result->at(0);
}

/// Deletes a connection on its strand (the destructor's rule), waiting for it (bounded).
struct strand_deleter {
    void operator()(redis_connection* connection) const {
        auto const strand = connection->get_executor();
        if (strand.running_in_this_thread()) {
            delete connection;
            return;
        }
        auto done = std::make_shared<std::promise<void>>();
        auto future = done->get_future();
        asio::post(strand, [connection, done] {
            delete connection;
            done->set_value();
        });
        if (future.wait_for(patience) != std::future_status::ready) {
            FAIL_CHECK("a redis_connection could not be destroyed on its strand");
        }
    }
};

/// A connection that is destroyed on its strand. Declare it after the io_threads that run
/// the strand, and after whatever its handlers capture.
using connection_ptr = std::unique_ptr<redis_connection, strand_deleter>;

inline connection_ptr make_connection(io_threads& io) {
    return connection_ptr(new redis_connection(io.make_strand()));
}

/// Destroys `connection` on its strand.
inline void destroy(connection_ptr& connection) { connection.reset(); }

/// Waits until everything posted to `strand` so far has run (twice: a handler may post).
inline void drain(redis_connection::strand_type const& strand) {
    on_strand(strand, [] {});
    on_strand(strand, [] {});
}

}  // namespace wsmanager_cluster_test
