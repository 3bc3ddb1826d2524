// SPDX-License-Identifier: BSL-1.0
// Catch2's main for wsmanager_cluster_tests. SIGPIPE keeps its default action on purpose:
// a write to a vanished Redis must not kill the process (redis_connection's sigpipe_guard).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
