# SPDX-License-Identifier: BSL-1.0
#
# Install rules and the relocatable CMake package of wsmanager:
#
#   <prefix>/include/wsmanager/...                    the headers
#   <prefix>/lib/cmake/wsmanager/wsmanagerConfig.cmake  find_package(wsmanager CONFIG)
#   <prefix>/lib/cmake/wsmanager/wsmanagerTargets.cmake wsmanager::wsmanager
#   <prefix>/lib/cmake/wsmanager/WebsocketppCxx20Overlay.cmake
#
# The exported target carries only what does not depend on the consumer's machine (the
# headers, cxx_std_20, ASIO_STANDALONE, its imported link targets). The include folders of
# websocketpp, RapidJSON and Asio, and the websocketpp C++20 overlay, are build-tree only
# ($<BUILD_INTERFACE:...>): wsmanagerConfig.cmake finds them again on the consumer's side and
# rebuilds the overlay in the consumer's build tree.
#
# Needs GNUInstallDirs, which the top-level CMakeLists includes right after project() so that
# its $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}> is not empty.

include(CMakePackageConfigHelpers)

set(WSMANAGER_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/wsmanager"
    CACHE STRING "Where to install wsmanager's CMake package, relative to the prefix")
mark_as_advanced(WSMANAGER_INSTALL_CMAKEDIR)

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/wsmanager"
    DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
    COMPONENT wsmanager_development
    FILES_MATCHING
        PATTERN "*.hpp"
        PATTERN "*.ipp")

# The install-tree include folder comes from the target's $<INSTALL_INTERFACE:...>.
install(TARGETS wsmanager EXPORT wsmanagerTargets)

install(EXPORT wsmanagerTargets
    NAMESPACE wsmanager::
    DESTINATION "${WSMANAGER_INSTALL_CMAKEDIR}"
    COMPONENT wsmanager_development)

# The installed config must find every package whose targets wsmanager links to; derive the
# list from the target so the config cannot fall behind the top-level CMakeLists.
# Threads is always found; OpenSSL and ZLIB only when linked. Anything else stops here.
set(WSMANAGER_CONFIG_OPENSSL_COMPONENTS "")
set(WSMANAGER_CONFIG_FIND_ZLIB OFF)
get_target_property(_wsmanager_links wsmanager INTERFACE_LINK_LIBRARIES)
if(NOT _wsmanager_links)
    set(_wsmanager_links "")
endif()
foreach(_wsmanager_link IN LISTS _wsmanager_links)
    if(_wsmanager_link MATCHES "^\\$<BUILD_INTERFACE:" OR NOT _wsmanager_link MATCHES "::")
        continue()
    elseif(_wsmanager_link STREQUAL "Threads::Threads")
    elseif(_wsmanager_link MATCHES "^OpenSSL::(SSL|Crypto)$")
        list(APPEND WSMANAGER_CONFIG_OPENSSL_COMPONENTS "${CMAKE_MATCH_1}")
    elseif(_wsmanager_link STREQUAL "ZLIB::ZLIB")
        set(WSMANAGER_CONFIG_FIND_ZLIB ON)
    else()
        message(FATAL_ERROR "wsmanager links to ${_wsmanager_link}, which the installed "
            "package does not find: add it to cmake/wsmanagerConfig.cmake.in and "
            "cmake/WsmanagerInstall.cmake")
    endif()
endforeach()
unset(_wsmanager_link)
unset(_wsmanager_links)

configure_package_config_file(
    "${PROJECT_SOURCE_DIR}/cmake/wsmanagerConfig.cmake.in"
    "${PROJECT_BINARY_DIR}/wsmanagerConfig.cmake"
    INSTALL_DESTINATION "${WSMANAGER_INSTALL_CMAKEDIR}")

# A header-only library: the same package serves 32- and 64-bit consumers.
write_basic_package_version_file(
    "${PROJECT_BINARY_DIR}/wsmanagerConfigVersion.cmake"
    VERSION "${PROJECT_VERSION}"
    COMPATIBILITY SameMajorVersion
    ARCH_INDEPENDENT)

install(FILES
        "${PROJECT_BINARY_DIR}/wsmanagerConfig.cmake"
        "${PROJECT_BINARY_DIR}/wsmanagerConfigVersion.cmake"
        "${PROJECT_SOURCE_DIR}/cmake/WebsocketppCxx20Overlay.cmake"
    DESTINATION "${WSMANAGER_INSTALL_CMAKEDIR}"
    COMPONENT wsmanager_development)

if(EXISTS "${PROJECT_SOURCE_DIR}/LICENSE")
    install(FILES "${PROJECT_SOURCE_DIR}/LICENSE"
        DESTINATION "${CMAKE_INSTALL_DATADIR}/licenses/wsmanager"
        COMPONENT wsmanager_development)
endif()
