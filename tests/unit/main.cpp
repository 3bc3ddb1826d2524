// SPDX-License-Identifier: BSL-1.0
// Catch2's main for wsmanager_unit_tests (fast tests, no sockets).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
