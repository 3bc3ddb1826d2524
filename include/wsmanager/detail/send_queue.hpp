// SPDX-License-Identifier: BSL-1.0
#pragma once

// One connection's frames on their way to its socket: the only queue between a send and the
// write system call. Any thread appends (push); the connection's writer (on its strand)
// takes batches and reports what it wrote. The bound counts every byte the connection holds,
// headers included: waiting and in flight. A frame that does not fit is dropped and the
// queue is marked overflowed: the client is not reading, the connection is closed, and the
// frames still waiting are dropped too.
//
// Who starts the writer is part of the queue's state: nobody needs to (idle), the caller
// of a push(…, start = false) that got `owed` (delivery's cork, which calls claim_owed()
// later), or the writer is already posted or writing (active). The writer takes frames only
// for a start: a push(…, true) or a claim_owed(). Frames the cork queues while a write is in
// flight wait for the cork too, so a host's burst leaves in one write, not behind each
// write's completion one frame at a time.
//
// Thread-safe: one short mutex.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/message.hpp>

namespace wsmanager::detail {

class send_queue {
public:
    send_queue() = default;
    send_queue(send_queue const&) = delete;
    send_queue& operator=(send_queue const&) = delete;
    /// Frames still waiting when the connection goes count as failed.
    ~send_queue() { count_failed(waiting_.size()); }

    /// What the caller of push() must do next.
    enum class next_step : std::uint8_t {
        nothing,      ///< the writer runs already, or the frame was dropped while it does
        post_writer,  ///< post the writer to the connection's strand
        owed,         ///< call claim_owed() later (and post the writer if it says so)
    };

    struct push_result {
        bool queued = false;  ///< false: dropped (overflow, or overflowed before)
        next_step next = next_step::nothing;
    };

    /// Before the first push: the bound and where drops and writes are counted.
    void configure(std::size_t max_bytes, std::shared_ptr<manager_counters> counters) {
        std::lock_guard lock(mutex_);
        max_bytes_ = max_bytes;
        counters_ = std::move(counters);
    }

    /// Any thread. `start`: the writer should run soon (a send); otherwise a cork will
    /// claim the flush it owes.
    push_result push(frame_ptr const& frame, bool start) {
        auto const size = frame->wire().size();
        std::lock_guard lock(mutex_);
        push_result result;
        if (overflowed_ || waiting_bytes_ + in_flight_bytes_ + size > max_bytes_) {
            count_dropped(1);
            bool const first = !overflowed_;
            overflowed_ = true;
            // The writer drops what waits (and the session closes the connection).
            if (first) {
                start_pending_ = true;
                if (state_ != state::active) {
                    state_ = state::active;
                    result.next = next_step::post_writer;
                }
            }
            return result;
        }
        waiting_.push_back(frame);
        waiting_bytes_ += size;
        result.queued = true;
        switch (state_) {
            case state::idle:
                if (start) {
                    state_ = state::active;
                    start_pending_ = true;
                    result.next = next_step::post_writer;
                } else {
                    state_ = state::owed;
                    result.next = next_step::owed;
                }
                break;
            case state::owed:
                if (start) {
                    state_ = state::active;
                    start_pending_ = true;
                    result.next = next_step::post_writer;
                }
                break;
            case state::active:
                if (start) {
                    start_pending_ = true;
                } else if (!start_pending_ && !cork_owed_) {
                    cork_owed_ = true;  // the writer will stop for it: the cork claims it
                    result.next = next_step::owed;
                }
                break;
        }
        return result;
    }

    /// Any thread: the cork releases what push(…, false) left. True when the caller must
    /// post the writer (false: a push with start = true has done it already).
    bool claim_owed() {
        std::lock_guard lock(mutex_);
        cork_owed_ = false;
        if (state_ == state::active) {
            start_pending_ = true;  // the writer goes on when its write completes
            return false;
        }
        if (state_ != state::owed) return false;
        state_ = state::active;
        start_pending_ = true;
        return true;
    }

    /// Writer: a write of websocketpp's (a pong, a close) waits behind the frames queued so
    /// far, and must not wait for a cork: they are asked for now.
    void start_now() {
        std::lock_guard lock(mutex_);
        start_pending_ = true;
        cork_owed_ = false;
        state_ = state::active;
    }

    /// Writer: moves up to `max_frames` frames (and about `max_bytes`) into `batch`, in
    /// order. With nothing left to take the writer goes idle, and the next push starts it.
    /// After an overflow it drops everything waiting instead and reports it.
    struct take_result {
        std::size_t frames = 0;
        std::size_t bytes = 0;          ///< on the wire: headers and payloads
        std::size_t payload_bytes = 0;  ///< what the counters count
        bool overflowed = false;
    };
    take_result take(std::vector<frame_ptr>& batch, std::size_t max_frames,
                     std::size_t max_bytes) {
        std::lock_guard lock(mutex_);
        take_result result;
        result.overflowed = overflowed_;
        if (overflowed_) {
            count_dropped(waiting_.size());
            waiting_.clear();
            waiting_bytes_ = 0;
        }
        if (!start_pending_) {
            // Nothing asked for these frames yet: the cork that queued them will.
            state_ = waiting_.empty() ? state::idle : state::owed;
            return result;
        }
        while (result.frames < waiting_.size() && result.frames < max_frames &&
               result.bytes < max_bytes) {
            auto& frame = waiting_[result.frames++];
            result.bytes += frame->wire().size();
            result.payload_bytes += frame->payload().size();
            batch.push_back(std::move(frame));
        }
        waiting_.erase(waiting_.begin(), waiting_.begin() + static_cast<std::ptrdiff_t>(result.frames));
        waiting_bytes_ -= result.bytes;
        in_flight_bytes_ += result.bytes;
        // Counted as sent when handed to the socket, as a send queue counts what it accepts.
        if (counters_ && result.frames != 0) {
            counters_->add(counters_->messages_sent, std::uint64_t{result.frames});
            counters_->add(counters_->bytes_sent, std::uint64_t{result.payload_bytes});
        }
        // What waited when the start came was asked for: frames left by a limit still are.
        start_pending_ = !waiting_.empty() && (result.frames == max_frames || result.bytes >= max_bytes);
        cork_owed_ = false;
        if (result.frames == 0 && waiting_.empty()) state_ = state::idle;
        return result;
    }

    /// Writer: a batch taken by take() has left the queue's bound (written, or its write
    /// failed: the socket is broken, and the connection ends).
    void written(take_result const& batch) {
        std::lock_guard lock(mutex_);
        in_flight_bytes_ -= batch.bytes;
    }

    /// Writer: frames taken but not written after all (the connection closed first): they
    /// count as failed instead of sent.
    void count_unsent(std::size_t frames) {
        std::lock_guard lock(mutex_);
        if (counters_ == nullptr || frames == 0) return;
        counters_->messages_sent.fetch_sub(frames, std::memory_order_relaxed);
        count_failed(frames);
    }

    /// Writer: the connection cannot take data frames any more; drops what waits.
    void drop_waiting() {
        std::lock_guard lock(mutex_);
        count_failed(waiting_.size());
        waiting_.clear();
        waiting_bytes_ = 0;
    }

    /// Frames waiting (not yet taken by the writer).
    std::size_t waiting() const {
        std::lock_guard lock(mutex_);
        return waiting_.size();
    }
    /// Bytes the connection holds: waiting and in flight.
    std::size_t bytes() const {
        std::lock_guard lock(mutex_);
        return waiting_bytes_ + in_flight_bytes_;
    }

private:
    enum class state : std::uint8_t { idle, owed, active };

    void count_dropped(std::size_t frames) {
        if (counters_ == nullptr || frames == 0) return;
        counters_->add(counters_->messages_failed, std::uint64_t{frames});
        counters_->add(counters_->messages_dropped, std::uint64_t{frames});
    }
    void count_failed(std::size_t frames) {
        if (counters_ == nullptr || frames == 0) return;
        counters_->add(counters_->messages_failed, std::uint64_t{frames});
    }

    mutable std::mutex mutex_;
    std::vector<frame_ptr> waiting_;  ///< a vector: an idle connection allocates nothing
    std::size_t waiting_bytes_ = 0;
    std::size_t in_flight_bytes_ = 0;
    std::size_t max_bytes_ = 0;
    bool overflowed_ = false;
    state state_ = state::idle;
    bool start_pending_ = false;  ///< a send or a claim asked the writer to take what waits
    bool cork_owed_ = false;      ///< a cork was told it owes a claim while the writer ran
    std::shared_ptr<manager_counters> counters_;  ///< shared: a connection may outlive its manager
};

}  // namespace wsmanager::detail
