# SPDX-License-Identifier: BSL-1.0
# Warnings and sanitizers for wsmanager's own executables (tests, examples, benchmarks).
# Never applied to the library's interface, so consumers' flags stay their own.

add_library(wsmanager_build_flags INTERFACE)
target_compile_options(wsmanager_build_flags INTERFACE -Wall -Wextra -Wpedantic)
if(WSMANAGER_WARNINGS_AS_ERRORS)
    target_compile_options(wsmanager_build_flags INTERFACE -Werror)
endif()
if(WSMANAGER_SANITIZE)
    target_compile_options(wsmanager_build_flags INTERFACE
        -fsanitize=${WSMANAGER_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    target_link_options(wsmanager_build_flags INTERFACE -fsanitize=${WSMANAGER_SANITIZE})
    if(WSMANAGER_SANITIZE MATCHES "thread")
        # g++ 12 warns that TSan does not model Asio's atomic_thread_fence; that is Asio's code.
        target_compile_options(wsmanager_build_flags INTERFACE -Wno-tsan)
    endif()
endif()
