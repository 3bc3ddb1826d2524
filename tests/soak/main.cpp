// SPDX-License-Identifier: BSL-1.0
// Catch2's main for wsmanager_soak_tests. A write to a peer that has gone away must be an
// error code, not a signal: SIGPIPE is ignored before any test runs.

#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <csignal>

namespace {

struct IgnoreSigpipe : Catch::TestEventListenerBase {
    using TestEventListenerBase::TestEventListenerBase;
    void testRunStarting(Catch::TestRunInfo const&) override { std::signal(SIGPIPE, SIG_IGN); }
};

}  // namespace

CATCH_REGISTER_LISTENER(IgnoreSigpipe)
