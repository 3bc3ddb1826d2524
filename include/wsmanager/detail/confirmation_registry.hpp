// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include <asio/steady_timer.hpp>

#include <wsmanager/models.hpp>

namespace wsmanager::detail {

/// One notify_user waiting for its user's answer. Lives on the manager strand.
struct pending_confirmation {
    using clock = std::chrono::steady_clock;

    std::string callback_id;
    std::string user_id;
    std::string task_id;
    int step = 0;
    TaskStepResult result;
    clock::time_point created;
    clock::time_point deadline;                       ///< callback timeout
    std::optional<clock::time_point> disconnect_deadline;  ///< resolve_on_disconnect
    std::unique_ptr<asio::steady_timer> timer;        ///< fires at the earlier deadline
    std::function<void(std::error_code, UserConfirmation)> complete;
};

/**
 * The pending confirmations, by callback id. Every entry leaves through take() exactly once
 * (answer, timeout, cancel, disconnect, shutdown), and the caller then completes it: that
 * is how "ends exactly once" is kept.
 */
class confirmation_registry {
public:
    pending_confirmation* find(std::string const& callback_id) {
        auto it = pending_.find(callback_id);
        return it == pending_.end() ? nullptr : &it->second;
    }

    pending_confirmation& insert(pending_confirmation entry) {
        auto id = entry.callback_id;
        return pending_.emplace(std::move(id), std::move(entry)).first->second;
    }

    /// Removes and returns an entry; nullopt when it already ended.
    std::optional<pending_confirmation> take(std::string const& callback_id) {
        auto node = pending_.extract(callback_id);
        if (node.empty()) return std::nullopt;
        return std::move(node.mapped());
    }

    template <class Predicate>
    std::vector<std::string> ids_where(Predicate predicate) const {
        std::vector<std::string> ids;
        for (auto const& [id, entry] : pending_) {
            if (predicate(entry)) ids.push_back(id);
        }
        return ids;
    }

    template <class F>
    void for_each(F f) {
        for (auto& [id, entry] : pending_) f(entry);
    }

    std::size_t size() const noexcept { return pending_.size(); }

private:
    std::unordered_map<std::string, pending_confirmation> pending_;
};

}  // namespace wsmanager::detail
