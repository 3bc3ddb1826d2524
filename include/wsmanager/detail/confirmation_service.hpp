// SPDX-License-Identifier: BSL-1.0
#pragma once

// The confirmation rules of DESIGN.md: notify_user asks one user (only their connections get
// the request; a user offline gets it on connecting, with the time it has left), the first
// valid answer of that user wins, and every ending (answer, timeout, cancel, per-operation
// cancellation, the user gone with resolve_on_disconnect, shutdown) completes the operation
// once and tells every connection of the user (`confirmation_resolved`). Entries live in
// pending_operations (by callback id, user and task); how an ending is decided is the
// directory's (detail/confirmation_directory.hpp), which a cluster replaces.
//
// Manager strand only: every member, every timer.

#include <algorithm>
#include <deque>
#include <unordered_set>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

#include <asio/error.hpp>
#include <asio/steady_timer.hpp>
#include <rapidjson/document.h>

#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/confirmation_directory.hpp>
#include <wsmanager/detail/delivery.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/pending_operations.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::detail {

/// One notify_user waiting for its user's answer.
struct pending_confirmation {
    using clock = std::chrono::steady_clock;

    std::string id;  ///< the callback id
    std::string user_id;
    std::string task_id;
    int step = 0;
    TaskStepResult result;
    clock::time_point created;
    clock::time_point deadline;                            ///< callback timeout
    std::optional<clock::time_point> disconnect_deadline;  ///< resolve_on_disconnect
    /// When this node first could not have its timeout decided (a cluster without Redis).
    std::optional<clock::time_point> undecided_since;
    std::unique_ptr<asio::steady_timer> timer;             ///< fires at the earlier deadline
    std::function<void(std::error_code, UserConfirmation)> complete;
};

class confirmation_service {
public:
    using executor_type = asio::steady_timer::executor_type;

    /// `lifetime` is the owner's: timer handlers do nothing once it has expired.
    confirmation_service(executor_type strand, Options const& options,
                         connection_registry const& connections, delivery& delivery,
                         manager_counters& counters, logger const& log,
                         std::weak_ptr<void const> const& lifetime)
        : strand_(std::move(strand)),
          options_(options),
          connections_(connections),
          delivery_(delivery),
          counters_(counters),
          log_(log),
          lifetime_(lifetime),
          directory_(std::make_shared<single_node_directory>()) {}

    /// Replaces the single-node directory (before start_server).
    void set_directory(std::shared_ptr<confirmation_directory> directory) {
        directory_ = std::move(directory);
    }

    /// notify_user: validates, registers and sends the request (or completes at once with
    /// error::invalid_message).
    void begin(pending_confirmation entry) {
        if (auto problem = invalid(entry)) {
            entry.complete(problem, UserConfirmation{false, std::nullopt,
                                                     ConfirmationReason::cancelled});
            return;
        }
        if (!pending_.has_room_for(entry.user_id, options_.max_pending_confirmations_per_user,
                                   options_.max_pending_confirmations)) {
            log_.write(LogLevel::warning, "too_many_pending",
                       "notify_user refused: pending confirmations limit reached", 0,
                       entry.user_id);
            entry.complete(error::too_many_pending,
                           UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled});
            return;
        }
        entry.timer = std::make_unique<asio::steady_timer>(strand_);
        if (options_.resolve_on_disconnect && !connections_.user_online(entry.user_id)) {
            entry.disconnect_deadline = entry.created + options_.disconnect_grace;
        }
        auto& pending = pending_.insert(std::move(entry));
        update_gauges();
        log_.write(LogLevel::debug, "confirmation_requested",
                   "task " + pending.task_id + " step " + std::to_string(pending.step), 0,
                   pending.user_id);
        arm_timer(pending);
        directory_->record(record_of(pending), [this, id = pending.id](std::error_code ec) {
            auto* entry = pending_.find(id);
            if (entry == nullptr) return;  // ended while being recorded
            if (ec) {
                end(id, UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled}, ec);
                return;
            }
            // An offline user gets it on connecting (user_online), until it ends.
            delivery_.deliver(delivery_target::user(entry->user_id), request_frame(*entry));
        });
    }

    /// A client's `confirm`: the sender must be the confirmation's user; the first answer
    /// wins, later ones get `unknown_callback`.
    void answer(client_request const& request, codec::ConfirmAnswer answer) {
        auto const& sender = *request.sender;
        if (sender.anonymous()) {
            request.reject(protocol::ErrorCode::forbidden,
                           "Anonymous connections cannot answer confirmations");
            return;
        }
        auto const* entry = pending_.find(answer.callback_id);
        if (entry != nullptr && entry->user_id != sender.user_id()) {
            log_.write(LogLevel::warning, "confirmation_forbidden",
                       "answer for another user's confirmation", sender.id(), sender.user_id());
            request.reject(protocol::ErrorCode::forbidden,
                           "This confirmation belongs to another user");
            return;
        }
        UserConfirmation proposal{answer.proceed, std::move(answer.feedback),
                                  ConfirmationReason::user};
        directory_->decide(
            answer.callback_id, sender.user_id(), proposal, entry != nullptr,
            [this, request, id = answer.callback_id,
             user_id = sender.user_id()](decision outcome) {
                switch (outcome.verdict) {
                    case decision_verdict::won: settle(id, user_id, outcome); return;
                    case decision_verdict::lost: settle(id, user_id, outcome); break;
                    case decision_verdict::forbidden:
                        request.reject(protocol::ErrorCode::forbidden,
                                       "This confirmation belongs to another user");
                        return;
                    case decision_verdict::unavailable:
                        // Deciding without the cluster could decide twice: the client may
                        // answer again.
                        request.reject(protocol::ErrorCode::unavailable,
                                       "Confirmation cannot be decided now; try again");
                        return;
                    case decision_verdict::unknown: break;
                }
                request.reject(protocol::ErrorCode::unknown_callback,
                               "Unknown or already resolved callback_id");
            });
    }

    /// Per-operation cancellation of notify_user: withdrawn, `operation_aborted`.
    void withdraw(std::string const& callback_id) {
        propose(callback_id,
                UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled},
                asio::error::operation_aborted);
    }

    /// The task was cancelled: its confirmations end `proceed = false`, reason `cancelled`.
    void cancel_task(std::string const& task_id) {
        for (auto const& id : pending_.ids_of_task(task_id)) {
            propose(id, UserConfirmation{false, std::nullopt, ConfirmationReason::cancelled});
        }
    }

    /// stop_server: every confirmation ends with reason `shutdown`; `done` once they all
    /// have (at once on one node; a cluster decides them in Redis first).
    void end_all(ConfirmationReason reason, std::function<void()> done = {}) {
        auto ids = pending_.ids();
        auto left = std::make_shared<std::size_t>(ids.size() + 1);
        auto one_more = [left, done = std::move(done)] {
            if (--*left == 0 && done) done();
        };
        for (auto const& id : ids) {
            propose(id, UserConfirmation{false, std::nullopt, reason}, {}, one_more);
        }
        one_more();
    }

    /// A confirmation decided on another node: ends it here if this node asked it, and
    /// closes the dialog on this node's tabs of the user either way.
    void decided_elsewhere(std::string const& callback_id, std::string const& user_id,
                           std::string const& task_id, UserConfirmation const& confirmation,
                           bool decided_here = false) {
        if (!end(callback_id, confirmation) && !decided_here) {
            tell_tabs(callback_id, user_id, task_id, confirmation);
        }
    }

    /// The confirmations this node asked that are still pending, as the directory keeps them.
    std::vector<confirmation_record> records() const {
        std::vector<confirmation_record> all;
        for (auto const& id : pending_.ids()) all.push_back(record_of(*pending_.find(id)));
        return all;
    }

    /// A new connection of a user: it gets every request still pending for that user (a
    /// first connection, a reload, a reconnect), with the time it has left.
    void user_online(session_ptr const& session) {
        pending_.for_each_of_user(session->user_id(), [&](pending_confirmation& entry) {
            session->send(request_frame(entry));
            if (entry.disconnect_deadline) {
                entry.disconnect_deadline.reset();
                arm_timer(entry);
            }
        });
        directory_->pending_elsewhere(
            session->user_id(), [session](std::vector<confirmation_record> records) {
                for (auto const& record : records) session->send(request_frame(record));
            });
    }

    /// The user's last connection closed: with resolve_on_disconnect, their confirmations
    /// end after disconnect_grace unless they come back.
    void user_offline(std::string const& user_id) {
        if (!options_.resolve_on_disconnect) return;
        auto const deadline = pending_confirmation::clock::now() + options_.disconnect_grace;
        pending_.for_each_of_user(user_id, [&](pending_confirmation& entry) {
            entry.disconnect_deadline = deadline;
            arm_timer(entry);
        });
    }

    /// A confirmation of the task is pending for another user: the task is not theirs.
    bool task_has_other_user(std::string const& task_id, std::string const& user_id) const {
        return pending_.task_has_other_user(task_id, user_id);
    }

    /// A pending entry of the task is `user_id`'s: the manager knows the task as theirs.
    bool task_has_user(std::string const& task_id, std::string const& user_id) const {
        return pending_.task_has_user(task_id, user_id);
    }

    std::size_t size() const noexcept { return pending_.size(); }
    pending_operations<pending_confirmation> const& entries() const noexcept { return pending_; }

private:
    /// The request, with the time it has left.
    static Message request_frame(pending_confirmation const& entry) {
        auto const remaining = std::chrono::duration<double>(
            entry.deadline - pending_confirmation::clock::now());
        return codec::task_step_result_frame(entry.id, entry.user_id, entry.task_id, entry.step,
                                             entry.result, std::max(0.0, remaining.count()));
    }
    static Message request_frame(confirmation_record const& record) {
        auto const remaining = std::chrono::duration<double>(
            record.expires_at - std::chrono::system_clock::now());
        return codec::task_step_result_frame(record.callback_id, record.user_id,
                                             record.task_id, record.step, record.result,
                                             std::max(0.0, remaining.count()));
    }

    static confirmation_record record_of(pending_confirmation const& entry) {
        auto const left = entry.deadline - pending_confirmation::clock::now();
        return {entry.id, entry.user_id, entry.task_id, entry.step, entry.result,
                std::chrono::system_clock::now() +
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(left)};
    }

    /// error::invalid_message when the request cannot be written as a text frame.
    static std::error_code invalid(pending_confirmation const& entry) {
        rapidjson::Document result;
        result.Parse<rapidjson::kParseValidateEncodingFlag>(entry.result.result.data(),
                                                            entry.result.result.size());
        auto const& r = entry.result;
        bool const text_ok = is_valid_utf8(entry.user_id) && is_valid_utf8(entry.task_id) &&
                             is_valid_utf8(r.step) && is_valid_utf8(r.message) &&
                             is_valid_utf8(r.status) &&
                             is_valid_utf8(r.error_code.value_or("")) &&
                             is_valid_utf8(r.error_message.value_or(""));
        // RapidJSON stops at a NUL byte, but the whole text would be written into the frame.
        bool const has_nul = r.result.find('\0') != std::string::npos;
        if (result.HasParseError() || has_nul || entry.user_id.empty() || !text_ok) {
            return error::invalid_message;
        }
        return {};
    }

    void arm_timer(pending_confirmation& entry) {
        auto when = entry.deadline;
        if (entry.disconnect_deadline && *entry.disconnect_deadline < when) {
            when = *entry.disconnect_deadline;
        }
        entry.timer->expires_at(when);
        entry.timer->async_wait([this, lifetime = lifetime_, id = entry.id](std::error_code ec) {
            auto const alive = lifetime.lock();
            if (ec || !alive) return;  // re-armed, ended, or the manager is gone
            on_timer(id);
        });
    }

    void on_timer(std::string const& id) {
        auto* entry = pending_.find(id);
        if (entry == nullptr) return;
        auto const now = pending_confirmation::clock::now();
        if (now >= entry->deadline) {
            propose(id, UserConfirmation{options_.proceed_on_timeout, std::nullopt,
                                         ConfirmationReason::timeout});
        } else if (entry->disconnect_deadline && now >= *entry->disconnect_deadline) {
            propose(id, UserConfirmation{false, std::nullopt, ConfirmationReason::disconnected});
        } else {
            arm_timer(*entry);
        }
    }

    /// This node proposes an ending for one of its confirmations; the directory decides.
    /// When it cannot (a cluster without its Redis), a timeout waits and tries again, since
    /// another node may have decided meanwhile; the host's own endings (per-operation
    /// cancellation, a cancel, shutdown) end here anyway, see docs/cluster.md.
    void propose(std::string const& id, UserConfirmation proposal, std::error_code ec = {},
                 std::function<void()> then = {}) {
        auto const* entry = pending_.find(id);
        if (entry == nullptr) {
            if (then) then();
            return;
        }
        directory_->decide(
            id, entry->user_id, proposal, true,
            [this, id, ec, proposal, then = std::move(then)](decision outcome) {
                switch (outcome.verdict) {
                    case decision_verdict::won: end(id, outcome.winner, ec); break;
                    case decision_verdict::lost: end(id, outcome.winner); break;
                    case decision_verdict::unavailable:
                        if ((proposal.reason == ConfirmationReason::timeout ||
                             proposal.reason == ConfirmationReason::disconnected) &&
                            !waited_long_enough(id)) {
                            retry_later(id);
                        } else {
                            end(id, proposal, ec);
                        }
                        break;
                    case decision_verdict::unknown:
                    case decision_verdict::forbidden:
                        // The directory lost it (a Redis that restarted empty and was not
                        // reconciled yet): this node still holds it, and decides.
                        end(id, proposal, ec);
                        break;
                }
                if (then) then();
            });
    }

    /// An answer decided (won or lost): ends the entry if this node asked it; otherwise this
    /// node's tabs of the user still close their dialog (the other nodes hear from Redis).
    void settle(std::string const& id, std::string const& user_id, decision const& outcome) {
        if (end(id, outcome.winner)) return;
        tell_tabs(id, user_id, outcome.task_id, outcome.winner);
    }

    /// `confirmation_resolved` to this node's tabs of the user, once per confirmation: a
    /// decision can reach a node twice (its own answer's verdict, then the winner's news).
    void tell_tabs(std::string const& id, std::string const& user_id, std::string const& task_id,
                   UserConfirmation const& confirmation) {
        if (!told_.insert(id).second) return;
        told_order_.push_back(id);
        if (told_order_.size() > max_told) {
            told_.erase(told_order_.front());
            told_order_.pop_front();
        }
        delivery_.deliver_local(delivery_target::user(user_id),
                                codec::confirmation_resolved_frame(id, task_id, confirmation));
    }

    /// A timeout that could not be decided for cluster_decision_grace: this node decides it
    /// alone (the one case where a partitioned node may disagree with Redis; it logs so).
    bool waited_long_enough(std::string const& id) {
        auto* entry = pending_.find(id);
        if (entry == nullptr) return true;
        auto const now = pending_confirmation::clock::now();
        if (!entry->undecided_since) entry->undecided_since = now;
        if (now - *entry->undecided_since < options_.cluster_decision_grace) return false;
        log_.write(LogLevel::warning, "confirmation_decided_alone",
                   "task " + entry->task_id + ": Redis unreachable for " +
                       std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                          options_.cluster_decision_grace)
                                          .count()) +
                       " s after its timeout; decided on this node",
                   0, entry->user_id);
        return true;
    }

    /// A decision that could not be made: the timer tries again in a second.
    void retry_later(std::string const& id) {
        auto* entry = pending_.find(id);
        if (entry == nullptr) return;
        entry->timer->expires_after(std::chrono::seconds(1));
        entry->timer->async_wait([this, lifetime = lifetime_, id](std::error_code ec) {
            auto const alive = lifetime.lock();
            if (ec || !alive) return;
            on_timer(id);
        });
    }

    /// Ends a confirmation exactly once: the first caller wins, later ones find nothing.
    /// False when it had ended already (or was never this node's).
    bool end(std::string const& id, UserConfirmation const& confirmation,
             std::error_code ec = {}) {
        return pending_.complete_once(id, [&](pending_confirmation entry) {
            entry.timer->cancel();
            update_gauges();
            auto const waited = std::chrono::duration_cast<std::chrono::microseconds>(
                pending_confirmation::clock::now() - entry.created);
            counters_.count_confirmation(confirmation.reason, waited);
            log_.write(LogLevel::debug, "confirmation_ended",
                       "task " + entry.task_id + ": " + std::string(to_string(confirmation.reason)),
                       0, entry.user_id);
            // Every tab of the user closes its dialog, whoever answered and however it ended.
            tell_tabs(id, entry.user_id, entry.task_id, confirmation);
            entry.complete(ec, confirmation);
        });
    }

    void update_gauges() {
        counters_.pending_confirmations.store(pending_.size(), std::memory_order_relaxed);
        counters_.refresh_pending_callbacks();
    }

    executor_type strand_;
    Options const& options_;
    connection_registry const& connections_;
    delivery& delivery_;
    manager_counters& counters_;
    logger const& log_;
    std::weak_ptr<void const> const& lifetime_;  ///< the owner's, set once it is shared
    std::shared_ptr<confirmation_directory> directory_;
    pending_operations<pending_confirmation> pending_;
    // The confirmations whose end this node's tabs were told of, the latest max_told.
    static constexpr std::size_t max_told = 4096;
    std::unordered_set<std::string> told_;
    std::deque<std::string> told_order_;
};

}  // namespace wsmanager::detail
