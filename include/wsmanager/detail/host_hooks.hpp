// SPDX-License-Identifier: BSL-1.0
#pragma once

// Every call into the host's code (on_action, on_cancel, on_subscribe, on_http, the
// Authenticator) passes through here, so that a WebSocketManager being destroyed can shut the
// door and wait for the calls already inside: once its destructor has returned, none of the
// host's code is called again, on any thread. (The log sink has the same guarantee through
// logger::close.)
//
// Thread-safe: calls come from the manager strand and from connection strands at once.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <utility>

namespace wsmanager::detail {

class host_hooks {
public:
    /// Runs `f()` unless closed; false when it did not run.
    template <class F>
    bool call(F&& f) {
        active_.fetch_add(1, std::memory_order_seq_cst);
        if (closed_.load(std::memory_order_seq_cst)) {
            leave();
            return false;
        }
        struct scope {
            host_hooks& hooks;
            host_hooks const* outer = std::exchange(current_, &hooks);
            ~scope() {
                current_ = outer;
                hooks.leave();
            }
        } inside{*this};
        std::forward<F>(f)();
        return true;
    }

    /// No call starts after this; returns once the calls in progress have returned (but
    /// for the one this thread is making, if it is inside a call: waiting for it would never
    /// end).
    void close_and_wait() {
        closed_.store(true, std::memory_order_seq_cst);
        int const own = current_ == this ? 1 : 0;
        std::unique_lock lock(mutex_);
        idle_.wait(lock, [&] { return active_.load(std::memory_order_seq_cst) <= own; });
    }

    bool closed() const noexcept { return closed_.load(std::memory_order_relaxed); }

private:
    void leave() {
        if (active_.fetch_sub(1, std::memory_order_seq_cst) <= 2 &&
            closed_.load(std::memory_order_seq_cst)) {
            std::lock_guard lock(mutex_);
            idle_.notify_all();
        }
    }

    std::atomic<int> active_{0};
    std::atomic<bool> closed_{false};
    std::mutex mutex_;
    std::condition_variable idle_;
    static inline thread_local host_hooks const* current_ = nullptr;
};

}  // namespace wsmanager::detail
