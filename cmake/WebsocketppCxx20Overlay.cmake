# SPDX-License-Identifier: BSL-1.0
#
# websocketpp 0.8.2 declares constructors and destructors with template-ids
# (`~endpoint<connection,config>()`, `server<config>(...)`), which C++20 forbids
# ([class.ctor]/[class.dtor], DR 2237) and g++ 12 rejects. This module copies the
# four affected headers of the websocketpp that was found into a build-tree folder
# with the template arguments removed from those declarators. The folder goes
# first on the include path, so every other websocketpp header is still the
# system one. Nothing of websocketpp is kept in the repository.
#
#   wsmanager_websocketpp_overlay(<out_var> <websocketpp_include_dir> <overlay_root>)
#
# sets <out_var> to the folder to put before websocketpp's own include directory.

function(wsmanager_websocketpp_overlay out_var websocketpp_include_dir overlay_root)
    set(_headers
        endpoint.hpp
        roles/server_endpoint.hpp
        logger/basic.hpp
        logger/syslog.hpp)
    foreach(_header IN LISTS _headers)
        set(_source "${websocketpp_include_dir}/websocketpp/${_header}")
        if(NOT EXISTS "${_source}")
            message(FATAL_ERROR "wsmanager: websocketpp header not found: ${_source}")
        endif()
        file(READ "${_source}" _text)
        # A declarator at the start of a line: `name<args>(` or `~name<args>(`.
        # Mem-initializers (`: basic<...>(h)`) do not start a line and stay as they are.
        string(REGEX REPLACE
            "\n([ \t]*~?)(endpoint|server|basic|syslog)<[^>\n]*>\\("
            "\n\\1\\2("
            _fixed "${_text}")
        set(_target "${overlay_root}/websocketpp/${_header}")
        # Rewrite only when the content changes, so builds stay incremental.
        if(EXISTS "${_target}")
            file(READ "${_target}" _previous)
        else()
            set(_previous "")
        endif()
        if(NOT _previous STREQUAL _fixed)
            file(WRITE "${_target}" "${_fixed}")
        endif()
    endforeach()
    set(${out_var} "${overlay_root}" PARENT_SCOPE)
endfunction()
