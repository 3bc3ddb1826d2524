// SPDX-License-Identifier: BSL-1.0
#pragma once

// Where confirmations are decided: the seam of the confirmation service
// (detail/confirmation_service.hpp) for a cluster. The node that asks (notify_user) keeps the
// awaiting operation and its timer; the directory knows every pending confirmation, decides
// each one exactly once (the first decision wins: an answer on any node, the timeout, a
// cancel, a shutdown), and finds a user's pending confirmations when that user connects. On
// one node all of that is the confirmation service's own memory, so the single-node
// directory decides at once; the Redis directory (<wsmanager/cluster.hpp>) decides with one
// atomic script and tells the other nodes.
//
// Manager strand: every call is made there, and every completion is invoked there (possibly
// before the call returns).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include <wsmanager/models.hpp>

namespace wsmanager::detail {

/// A confirmation as the directory keeps it: enough for any node to show it to its user.
struct confirmation_record {
    std::string callback_id;
    std::string user_id;
    std::string task_id;
    int step = 0;
    TaskStepResult result;
    std::chrono::system_clock::time_point expires_at;  ///< wall clock: nodes share no other
};

/// What a decision came to.
enum class decision_verdict : std::uint8_t {
    won,          ///< this decision is the one: `winner` is it
    lost,         ///< an earlier decision won: `winner` is that one
    unknown,      ///< no such pending confirmation (never was, or already ended and gone)
    forbidden,    ///< it belongs to another user
    unavailable,  ///< the directory cannot decide now (a cluster without its Redis)
};

struct decision {
    decision_verdict verdict = decision_verdict::unknown;
    UserConfirmation winner{};
    std::string task_id{};  ///< won or lost: the confirmation's task
};

class confirmation_directory {
public:
    using record_done = std::function<void(std::error_code)>;
    using decide_done = std::function<void(decision)>;
    using pending_done = std::function<void(std::vector<confirmation_record>)>;

    virtual ~confirmation_directory() = default;

    /// A confirmation this node asks, before its request goes out. An error fails it.
    virtual void record(confirmation_record const& confirmation, record_done done) = 0;

    /**
     * Proposes how a confirmation ends: `user_id`'s answer, or this node's timeout, cancel or
     * shutdown. The first proposal wins, once, whichever node makes it. `asked_here`: this
     * node holds the confirmation's operation.
     */
    virtual void decide(std::string const& callback_id, std::string const& user_id,
                        UserConfirmation const& proposal, bool asked_here,
                        decide_done done) = 0;

    /// Pending confirmations of `user_id` that other nodes asked (a user connecting here).
    virtual void pending_elsewhere(std::string const& user_id, pending_done done) = 0;
};

/// One node: the confirmation service's own entries are the whole directory, and its
/// pending_operations already lets only the first ending through.
class single_node_directory final : public confirmation_directory {
public:
    void record(confirmation_record const&, record_done done) override {
        done(std::error_code{});
    }

    void decide(std::string const&, std::string const&, UserConfirmation const& proposal,
                bool asked_here, decide_done done) override {
        done(asked_here ? decision{decision_verdict::won, proposal, {}} : decision{});
    }

    void pending_elsewhere(std::string const&, pending_done done) override { done({}); }
};

}  // namespace wsmanager::detail
