# SPDX-License-Identifier: BSL-1.0
#
# Observability checks (label: metrics). Included by tests/CMakeLists.txt after
# wsmanager_integration_tests and its catch_discover_tests call:
#
#   wsmanager_promtool_installed       fails when promtool is missing: CI installs it
#                                      (scripts/install-observability-deps.sh), and without
#                                      it the "[metrics]" tests skip their promtool check
#   wsmanager_prometheus_rules         promtool check rules docs/prometheus/alerts.yml
#   wsmanager_prometheus_rules_test    promtool test rules docs/prometheus/alerts_test.yml
#                                      (each alert fires on the series it is written for)
#   wsmanager_prometheus_config        promtool check config docs/prometheus/prometheus.yml
#                                      (which checks the rule files it names, too)
#
# The integration tests named "observability: ..." (tests/integration/test_observability.cpp)
# get the label metrics beside integration;threaded, so `ctest -L metrics` runs them all.

find_program(WSMANAGER_PROMTOOL promtool
    DOC "Prometheus' promtool, from Debian's prometheus package")

set(_wsmanager_prometheus_dir "${PROJECT_SOURCE_DIR}/docs/prometheus")
set(_wsmanager_promtool_checks
    wsmanager_prometheus_rules wsmanager_prometheus_rules_test wsmanager_prometheus_config)

if(WSMANAGER_PROMTOOL)
    add_test(NAME wsmanager_promtool_installed COMMAND "${WSMANAGER_PROMTOOL}" --version)
    add_test(NAME wsmanager_prometheus_rules
        COMMAND "${WSMANAGER_PROMTOOL}" check rules alerts.yml
        WORKING_DIRECTORY "${_wsmanager_prometheus_dir}")
    add_test(NAME wsmanager_prometheus_rules_test
        COMMAND "${WSMANAGER_PROMTOOL}" test rules alerts_test.yml
        WORKING_DIRECTORY "${_wsmanager_prometheus_dir}")
    add_test(NAME wsmanager_prometheus_config
        COMMAND "${WSMANAGER_PROMTOOL}" check config prometheus.yml
        WORKING_DIRECTORY "${_wsmanager_prometheus_dir}")
else()
    message(STATUS "wsmanager: promtool not found; the test wsmanager_promtool_installed "
                   "will fail (run scripts/install-observability-deps.sh)")
    add_test(NAME wsmanager_promtool_installed
        COMMAND sh -c "echo 'promtool not found at configure time: install the prometheus package (scripts/install-observability-deps.sh) and reconfigure' >&2; exit 1")
    foreach(_check IN LISTS _wsmanager_promtool_checks)
        # Reported as skipped, not passed: there was nothing to check them with.
        add_test(NAME ${_check} COMMAND sh -c "echo 'promtool not found: skipped'; exit 77")
        set_tests_properties(${_check} PROPERTIES SKIP_RETURN_CODE 77)
    endforeach()
endif()
set_tests_properties(wsmanager_promtool_installed ${_wsmanager_promtool_checks} PROPERTIES
    LABELS metrics
    TIMEOUT ${WSMANAGER_TEST_TIMEOUT})

# The discovered test list exists only when ctest runs, so the label goes through a file
# ctest includes after the discovered tests (and after the integration;threaded labels).
set(_wsmanager_metrics_labels_file
    "${CMAKE_CURRENT_BINARY_DIR}/wsmanager_observability_labels.cmake")
file(WRITE "${_wsmanager_metrics_labels_file}"
    "foreach(_test IN LISTS wsmanager_integration_test_list)\n"
    "  if(_test MATCHES \"^integration[.]observability: \")\n"
    "    set_tests_properties(\"\${_test}\" PROPERTIES LABELS \"integration;threaded;metrics\")\n"
    "  endif()\n"
    "endforeach()\n")
set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_wsmanager_metrics_labels_file}")
