// SPDX-License-Identifier: BSL-1.0
#pragma once

// sigpipe_guard: keeps hiredis' write(2) to a closed socket from raising a SIGPIPE that would
// end the process, for the duration of one write and in the calling thread only.

#include <cerrno>
#include <csignal>
#include <ctime>

#include <pthread.h>
#include <signal.h>

namespace wsmanager::cluster::detail {

/**
 * Keeps a write to a closed socket from killing the process.
 *
 * hiredis 0.14 writes with write(2), not send(2) with MSG_NOSIGNAL, so a write to a socket
 * whose peer has gone raises SIGPIPE, whose default action ends the process. A library must
 * not change the process' signal disposition, so for the duration of one write this blocks
 * SIGPIPE in the calling thread and consumes the one the write raised (SIGPIPE is sent to the
 * thread that wrote); write(2) then fails with EPIPE and hiredis reports the connection lost.
 *
 * @par Thread Safety
 * Affects the calling thread only; construct and destroy on the same thread.
 */
class sigpipe_guard {
public:
    sigpipe_guard() noexcept {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        // A SIGPIPE already pending is someone else's (and blocked, or it would have been
        // delivered): leave everything as it is.
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            return;
        }
        blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &previous_) == 0;
    }
    ~sigpipe_guard() {
        if (!blocked_) {
            return;
        }
        int const saved_errno = errno;
        sigset_t pending;
        sigemptyset(&pending);
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            timespec const no_wait{0, 0};
            while (sigtimedwait(&pipe_, nullptr, &no_wait) == -1 && errno == EINTR) {
            }
        }
        pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
        errno = saved_errno;
    }
    sigpipe_guard(sigpipe_guard const&) = delete;
    sigpipe_guard& operator=(sigpipe_guard const&) = delete;

private:
    sigset_t pipe_{};
    sigset_t previous_{};
    bool blocked_ = false;
};

}  // namespace wsmanager::cluster::detail
