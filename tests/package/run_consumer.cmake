# SPDX-License-Identifier: BSL-1.0
#
# Builds and runs tests/package/consumer against a wsmanager source tree (CMake script mode):
#
#   cmake -DWSMANAGER_PKG_MODE=find_package|fetch_content|add_subdirectory
#         -DWSMANAGER_PKG_SOURCE_DIR=<wsmanager tree> -DWSMANAGER_PKG_CONSUMER_DIR=<consumer>
#         -DWSMANAGER_PKG_WORK_DIR=<scratch folder, emptied of what this script made>
#         [-DWSMANAGER_PKG_GENERATOR=...] [-DWSMANAGER_PKG_MAKE_PROGRAM=...]
#         [-DWSMANAGER_PKG_CXX_COMPILER=...] [-DWSMANAGER_PKG_BUILD_TYPE=...]
#         -P run_consumer.cmake
#
# find_package: configures wsmanager alone (no tests, no examples), installs it into
# <work>/prefix, then builds the consumer with CMAKE_PREFIX_PATH=<work>/prefix and checks that
# the package it found is that one. fetch_content / add_subdirectory: builds the consumer with
# wsmanager as a subproject and checks wsmanager registered no tests and built no
# tests/examples folder. In every mode the consumer must print "consumer ok" and exit 0.
cmake_minimum_required(VERSION 3.25)

foreach(_var IN ITEMS WSMANAGER_PKG_MODE WSMANAGER_PKG_SOURCE_DIR WSMANAGER_PKG_CONSUMER_DIR
                      WSMANAGER_PKG_WORK_DIR)
    if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
        message(FATAL_ERROR "run_consumer.cmake: -D${_var}=... is required")
    endif()
endforeach()
if(NOT WSMANAGER_PKG_MODE MATCHES "^(find_package|fetch_content|add_subdirectory)$")
    message(FATAL_ERROR "run_consumer.cmake: unknown mode '${WSMANAGER_PKG_MODE}'")
endif()
if(NOT IS_ABSOLUTE "${WSMANAGER_PKG_WORK_DIR}")
    message(FATAL_ERROR "run_consumer.cmake: WSMANAGER_PKG_WORK_DIR must be absolute")
endif()

set(_work "${WSMANAGER_PKG_WORK_DIR}")
set(_wsmanager_build "${_work}/wsmanager-build")
set(_prefix "${_work}/prefix")
set(_consumer_build "${_work}/consumer-build")

# Arguments every configure gets: the outer build's generator, compiler and build type.
set(_configure_args)
if(WSMANAGER_PKG_GENERATOR)
    list(APPEND _configure_args -G "${WSMANAGER_PKG_GENERATOR}")
endif()
if(WSMANAGER_PKG_MAKE_PROGRAM)
    list(APPEND _configure_args "-DCMAKE_MAKE_PROGRAM=${WSMANAGER_PKG_MAKE_PROGRAM}")
endif()
if(WSMANAGER_PKG_CXX_COMPILER)
    list(APPEND _configure_args "-DCMAKE_CXX_COMPILER=${WSMANAGER_PKG_CXX_COMPILER}")
endif()
set(_config_args)
if(WSMANAGER_PKG_BUILD_TYPE)
    list(APPEND _configure_args "-DCMAKE_BUILD_TYPE=${WSMANAGER_PKG_BUILD_TYPE}")
    set(_config_args --config "${WSMANAGER_PKG_BUILD_TYPE}")
endif()

# Runs a command, shows its output as it comes, fails the test if it fails.
function(_wsmanager_step name)
    message(STATUS "[${WSMANAGER_PKG_MODE}] ${name}")
    execute_process(COMMAND ${ARGN}
        RESULT_VARIABLE _result
        OUTPUT_VARIABLE _output
        ERROR_VARIABLE _output
        ECHO_OUTPUT_VARIABLE
        ECHO_ERROR_VARIABLE
        COMMAND_ECHO STDOUT)
    if(NOT _result EQUAL 0)
        message(FATAL_ERROR "[${WSMANAGER_PKG_MODE}] ${name} failed (${_result})")
    endif()
    set(_wsmanager_step_output "${_output}" PARENT_SCOPE)
endfunction()

# Start from nothing, so the test proves a fresh configure. Only our own folders are removed.
file(REMOVE_RECURSE "${_wsmanager_build}" "${_prefix}" "${_consumer_build}")
file(MAKE_DIRECTORY "${_work}")

set(_consumer_args "-DWSMANAGER_CONSUME=${WSMANAGER_PKG_MODE}")

if(WSMANAGER_PKG_MODE STREQUAL "find_package")
    _wsmanager_step("configure wsmanager"
        "${CMAKE_COMMAND}" -S "${WSMANAGER_PKG_SOURCE_DIR}" -B "${_wsmanager_build}"
        ${_configure_args}
        "-DCMAKE_INSTALL_PREFIX=${_prefix}"
        -DWSMANAGER_BUILD_TESTS=OFF
        -DWSMANAGER_BUILD_EXAMPLES=OFF)
    _wsmanager_step("build wsmanager"
        "${CMAKE_COMMAND}" --build "${_wsmanager_build}" ${_config_args})
    _wsmanager_step("install wsmanager"
        "${CMAKE_COMMAND}" --install "${_wsmanager_build}" ${_config_args})

    # What a consumer relies on being in the prefix.
    file(GLOB _libdirs LIST_DIRECTORIES true "${_prefix}/lib*/cmake/wsmanager")
    list(LENGTH _libdirs _count)
    if(NOT _count EQUAL 1)
        message(FATAL_ERROR "expected one <prefix>/lib*/cmake/wsmanager, found: '${_libdirs}'")
    endif()
    foreach(_file IN ITEMS wsmanagerConfig.cmake wsmanagerConfigVersion.cmake
                           wsmanagerTargets.cmake WebsocketppCxx20Overlay.cmake)
        if(NOT EXISTS "${_libdirs}/${_file}")
            message(FATAL_ERROR "not installed: ${_libdirs}/${_file}")
        endif()
    endforeach()
    if(NOT EXISTS "${_prefix}/include/wsmanager/wsmanager.hpp")
        message(FATAL_ERROR "not installed: ${_prefix}/include/wsmanager/wsmanager.hpp")
    endif()

    # Only our prefix: no package registry, no system-wide wsmanager.
    list(APPEND _consumer_args
        "-DCMAKE_PREFIX_PATH=${_prefix}"
        -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
        -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
else()
    list(APPEND _consumer_args "-DWSMANAGER_SOURCE_DIR=${WSMANAGER_PKG_SOURCE_DIR}")
endif()

_wsmanager_step("configure consumer"
    "${CMAKE_COMMAND}" -S "${WSMANAGER_PKG_CONSUMER_DIR}" -B "${_consumer_build}"
    ${_configure_args} ${_consumer_args})

if(WSMANAGER_PKG_MODE STREQUAL "find_package")
    # The package found must be the one just installed.
    file(STRINGS "${_consumer_build}/CMakeCache.txt" _found REGEX "^wsmanager_DIR:")
    string(REGEX REPLACE "^[^=]*=" "" _found "${_found}")
    file(REAL_PATH "${_found}" _found)
    file(REAL_PATH "${_prefix}" _real_prefix)
    string(FIND "${_found}/" "${_real_prefix}/" _at)
    if(NOT _at EQUAL 0)
        message(FATAL_ERROR "consumer found wsmanager in '${_found}', not under '${_real_prefix}'")
    endif()
else()
    # A subproject build of wsmanager registers no tests and builds no tests or examples.
    file(GLOB_RECURSE _ctest_files "${_consumer_build}/CTestTestfile.cmake")
    if(_ctest_files)
        message(FATAL_ERROR "wsmanager registered tests in a subproject build: ${_ctest_files}")
    endif()
    # FetchContent's build folder is _deps/wsmanager-build; add_subdirectory's wsmanager-build.
    foreach(_subproject_build IN ITEMS "${_consumer_build}/_deps/wsmanager-build"
                                       "${_consumer_build}/wsmanager-build")
        foreach(_folder IN ITEMS tests examples)
            if(IS_DIRECTORY "${_subproject_build}/${_folder}")
                message(FATAL_ERROR "wsmanager configured its ${_folder} in a subproject "
                    "build: ${_subproject_build}/${_folder}")
            endif()
        endforeach()
    endforeach()
endif()

_wsmanager_step("build consumer"
    "${CMAKE_COMMAND}" --build "${_consumer_build}" ${_config_args})

set(_consumer "${_consumer_build}/bin/wsmanager_consumer")
message(STATUS "[${WSMANAGER_PKG_MODE}] run consumer")
execute_process(COMMAND "${_consumer}"
    RESULT_VARIABLE _result
    OUTPUT_VARIABLE _output
    ERROR_VARIABLE _output
    TIMEOUT 120)
message("${_output}")
if(NOT _result EQUAL 0)
    message(FATAL_ERROR "[${WSMANAGER_PKG_MODE}] consumer exited with '${_result}'")
endif()
if(NOT _output MATCHES "consumer ok")
    message(FATAL_ERROR "[${WSMANAGER_PKG_MODE}] consumer did not print 'consumer ok'")
endif()
message(STATUS "[${WSMANAGER_PKG_MODE}] wsmanager package test passed")
