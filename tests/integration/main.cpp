// SPDX-License-Identifier: BSL-1.0
// Catch2's main for wsmanager_integration_tests, with a watchdog: a test case that runs
// longer than WSMANAGER_TEST_WATCHDOG_S seconds (default 60) aborts the process with its
// name, so a hang fails fast and says where, instead of waiting for ctest's TIMEOUT.

#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

namespace {

class Watchdog {
public:
    static Watchdog& instance() {
        // Never destroyed: its thread waits on the condition variable until the process
        // ends, and destroying a condition variable that has a waiter blocks (glibc).
        static Watchdog* const watchdog = new Watchdog;
        return *watchdog;
    }

    void arm(std::string name) {
        std::lock_guard lock(mutex_);
        name_ = std::move(name);
        deadline_ = std::chrono::steady_clock::now() + limit_;
        armed_ = true;
        changed_.notify_all();
    }

    void disarm() {
        std::lock_guard lock(mutex_);
        armed_ = false;
        changed_.notify_all();
    }

private:
    Watchdog() {
        if (char const* seconds = std::getenv("WSMANAGER_TEST_WATCHDOG_S")) {
            limit_ = std::chrono::seconds(std::atoi(seconds));
        }
        std::thread([this] { watch(); }).detach();
    }

    [[noreturn]] void watch() {
        std::unique_lock lock(mutex_);
        for (;;) {
            if (!armed_) {
                changed_.wait(lock);
                continue;
            }
            if (changed_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ &&
                std::chrono::steady_clock::now() >= deadline_) {
                std::fprintf(stderr, "\nwatchdog: test case \"%s\" still running after %llds\n",
                             name_.c_str(), static_cast<long long>(limit_.count()));
                std::fflush(stderr);
                std::_Exit(3);
            }
        }
    }

    std::mutex mutex_;
    std::condition_variable changed_;
    std::string name_;
    std::chrono::steady_clock::time_point deadline_{};
    std::chrono::seconds limit_{60};
    bool armed_ = false;
};

struct WatchdogListener : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;

    void testRunStarting(Catch::TestRunInfo const&) override {
        // A peer that goes away while we write must be an error code, not a signal.
        std::signal(SIGPIPE, SIG_IGN);
    }
    void testCaseStarting(Catch::TestCaseInfo const& info) override {
        Watchdog::instance().arm(info.name);
    }
    void testCaseEnded(Catch::TestCaseStats const&) override { Watchdog::instance().disarm(); }
};

}  // namespace

CATCH_REGISTER_LISTENER(WatchdogListener)
