# SPDX-License-Identifier: BSL-1.0
# The optional Redis backplane: target wsmanager_cluster (alias wsmanager::cluster), the
# library plus hiredis. Only <wsmanager/cluster/...> includes hiredis, so a host that does not
# cluster links wsmanager::wsmanager and needs neither hiredis nor Redis.
#
#   WSMANAGER_CLUSTER   default ON when wsmanager is the top-level project and hiredis is
#                       found (Debian: libhiredis-dev, scripts/install-cluster-deps.sh);
#                       ON without hiredis is an error.
#
# Install and export rules for the target live with the other install rules.

# hiredis 0.14 ships a pkg-config file; find_path/find_library cover an installation without.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
    pkg_check_modules(HIREDIS QUIET IMPORTED_TARGET hiredis)
endif()
set(_wsmanager_hiredis_target "")
if(HIREDIS_FOUND)
    set(_wsmanager_hiredis_target PkgConfig::HIREDIS)
else()
    find_path(WSMANAGER_HIREDIS_INCLUDE_DIR hiredis/async.h
        DOC "The folder holding hiredis/async.h")
    find_library(WSMANAGER_HIREDIS_LIBRARY hiredis DOC "hiredis' library")
    if(WSMANAGER_HIREDIS_INCLUDE_DIR AND WSMANAGER_HIREDIS_LIBRARY)
        add_library(wsmanager_hiredis INTERFACE IMPORTED)
        target_include_directories(wsmanager_hiredis SYSTEM INTERFACE
            "${WSMANAGER_HIREDIS_INCLUDE_DIR}")
        target_link_libraries(wsmanager_hiredis INTERFACE "${WSMANAGER_HIREDIS_LIBRARY}")
        set(_wsmanager_hiredis_target wsmanager_hiredis)
    endif()
endif()

set(_wsmanager_cluster_default OFF)
if(_wsmanager_hiredis_target AND PROJECT_IS_TOP_LEVEL)
    set(_wsmanager_cluster_default ON)
endif()
option(WSMANAGER_CLUSTER "Build the Redis backplane target wsmanager::cluster (needs hiredis)"
       ${_wsmanager_cluster_default})

if(WSMANAGER_CLUSTER)
    if(NOT _wsmanager_hiredis_target)
        message(FATAL_ERROR
            "WSMANAGER_CLUSTER is ON but hiredis was not found (neither by pkg-config nor "
            "as hiredis/async.h and libhiredis). Install it (Debian: libhiredis-dev; "
            "scripts/install-cluster-deps.sh installs it with redis-server for the tests), "
            "or configure with -DWSMANAGER_CLUSTER=OFF.")
    endif()
    add_library(wsmanager_cluster INTERFACE)
    add_library(wsmanager::cluster ALIAS wsmanager_cluster)
    target_link_libraries(wsmanager_cluster INTERFACE
        wsmanager::wsmanager ${_wsmanager_hiredis_target})
    if(HIREDIS_FOUND)
        message(STATUS "wsmanager: Redis backplane on (hiredis ${HIREDIS_VERSION})")
    else()
        message(STATUS "wsmanager: Redis backplane on (hiredis ${WSMANAGER_HIREDIS_LIBRARY})")
    endif()
else()
    message(STATUS "wsmanager: Redis backplane off (WSMANAGER_CLUSTER=OFF)")
endif()
