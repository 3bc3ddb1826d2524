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
# A few more edits, each of one exact text (a websocketpp of another version fails the
# configure instead of building something else):
# - a handshake of a version websocketpp has no processor for (14, say) is answered as
#   RFC 6455 section 4.4 asks and as wsmanager answers the drafts it refuses itself
#   (hixie-76, 7, 8): `426` with `Sec-WebSocket-Version: 13`, instead of `400` advertising
#   `0,7,8,13`;
# - an idle connection costs less memory (docs/performance.md, "What bounds the rest"): the two handler
#   buffers inside every transport connection shrink from 1 KiB to 512 bytes (the read and
#   write operations Asio allocates in them take about 300; a larger one is allocated as
#   usual), and websocketpp's own send queue, which carries only its control frames since
#   the manager owns the data path, is a list that allocates nothing while empty instead of
#   a deque that allocates 512 bytes at construction;
# - a compressed client message is bounded by max_message_size once inflated (1009), so a
#   compression bomb cannot grow a connection's buffer without limit.
#
#   wsmanager_websocketpp_overlay(<out_var> <websocketpp_include_dir> <overlay_root>)
#
# sets <out_var> to the folder to put before websocketpp's own include directory.

# Writes `text` to `target` only when it changes, so builds stay incremental.
function(_wsmanager_overlay_write target text)
    if(EXISTS "${target}")
        file(READ "${target}" _previous)
    else()
        set(_previous "")
    endif()
    if(NOT _previous STREQUAL text)
        file(WRITE "${target}" "${text}")
    endif()
endfunction()

# Copies one header with each `from` replaced by the `to` after it (pairs, in order); fails
# when a `from` is not there (another websocketpp version), rather than building something
# else silently.
function(_wsmanager_overlay_edit include_dir overlay_root header)
    file(READ "${include_dir}/websocketpp/${header}" _text)
    # ARGV<n>, not ARGN: the texts contain semicolons, which a list would split at.
    math(EXPR _last "${ARGC} - 1")
    foreach(_i RANGE 3 ${_last} 2)
        math(EXPR _j "${_i} + 1")
        set(_from "${ARGV${_i}}")
        set(_to "${ARGV${_j}}")
        string(FIND "${_text}" "${_from}" _at)
        if(_at EQUAL -1)
            message(FATAL_ERROR "wsmanager: websocketpp/${header} is not the expected 0.8.2 text")
        endif()
        string(REPLACE "${_from}" "${_to}" _text "${_text}")
    endforeach()
    _wsmanager_overlay_write("${overlay_root}/websocketpp/${header}" "${_text}")
endfunction()

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
        _wsmanager_overlay_write("${overlay_root}/websocketpp/${_header}" "${_fixed}")
    endforeach()

    # The versions advertised, and the status, of a refused version.
    _wsmanager_overlay_edit("${websocketpp_include_dir}" "${overlay_root}" connection.hpp
        "versions_supported = {0,7,8,13};" "versions_supported = {13};"
        "#include <queue>\n" "#include <list>\n#include <queue>\n"
        "std::queue<message_ptr> m_send_queue;"
        "std::queue<message_ptr, std::list<message_ptr>> m_send_queue;")
    _wsmanager_overlay_edit("${websocketpp_include_dir}" "${overlay_root}"
        transport/asio/base.hpp
        "static const size_t size = 1024;" "static const size_t size = 512;")
    _wsmanager_overlay_edit("${websocketpp_include_dir}" "${overlay_root}"
        impl/connection_impl.hpp
        "no processor for version\");\n    m_response.set_status(http::status_code::bad_request);"
        "no processor for version\");\n    m_response.set_status(http::status_code::upgrade_required);")
    # A compressed message is bounded by its size inflated, not only by its size on the wire:
    # past max_message_size it is message_too_big (1009), a compression bomb included. Each
    # read is at most connection_read_buffer_size bytes, so at most about a thousand times
    # that is inflated before the check.
    _wsmanager_overlay_edit("${websocketpp_include_dir}" "${overlay_root}"
        processors/hybi13.hpp
        "ec = m_permessage_deflate.decompress(buf,len,out);\n            if (ec) {\n                return 0;\n            }\n"
        "ec = m_permessage_deflate.decompress(buf,len,out);\n            if (ec) {\n                return 0;\n            }\n            if (out.size() > base::m_max_message_size) {\n                ec = make_error_code(error::message_too_big);\n                return 0;\n            }\n"
        "ec = m_permessage_deflate.decompress(trailer,4,out);\n            if (ec) {\n                return ec;\n            }\n"
        "ec = m_permessage_deflate.decompress(trailer,4,out);\n            if (ec) {\n                return ec;\n            }\n            if (out.size() > base::m_max_message_size) {\n                return make_error_code(error::message_too_big);\n            }\n")
    set(${out_var} "${overlay_root}" PARENT_SCOPE)
endfunction()
