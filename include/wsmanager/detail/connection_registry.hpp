// SPDX-License-Identifier: BSL-1.0
#pragma once

// The open connections of this node and the users they belong to: who is connected, and
// every connection of one user (all their tabs and devices). Add, remove and lookup are O(1)
// (a user's own connections are a short list); all() is a dense vector, so a broadcast walks
// contiguous memory.
//
// Manager strand only: not thread-safe.

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <wsmanager/detail/session.hpp>

namespace wsmanager::detail {

class connection_registry {
public:
    /// What remove() took out.
    struct removal {
        session_ptr session;       ///< null when the id was not registered
        bool user_went_offline = false;  ///< it was the user's last connection
    };

    /// Registers a session; false (and nothing changes) when its id is already there.
    bool add(session_ptr session) {
        auto const id = session->id();
        if (index_.contains(id)) return false;
        index_.emplace(id, all_.size());
        if (!session->anonymous()) users_[session->user_id()].push_back(session);
        all_.push_back(std::move(session));
        return true;
    }

    removal remove(std::uint64_t id) {
        auto it = index_.find(id);
        if (it == index_.end()) return {};
        auto const position = it->second;
        index_.erase(it);
        removal removed{std::move(all_[position]), false};
        // Swap-remove: the last session takes the freed slot.
        if (position + 1 != all_.size()) {
            all_[position] = std::move(all_.back());
            index_[all_[position]->id()] = position;
        }
        all_.pop_back();
        if (!removed.session->anonymous()) {
            auto user = users_.find(removed.session->user_id());
            if (user != users_.end()) {
                std::erase(user->second, removed.session);
                if (user->second.empty()) {
                    users_.erase(user);
                    removed.user_went_offline = true;
                }
            }
        }
        return removed;
    }

    bool contains(std::uint64_t id) const { return index_.contains(id); }

    session_ptr find(std::uint64_t id) const {
        auto it = index_.find(id);
        return it == index_.end() ? nullptr : all_[it->second];
    }

    /// Every connection of `user_id`, in the order they were added; empty when offline.
    std::vector<session_ptr> const& of_user(std::string const& user_id) const {
        static std::vector<session_ptr> const none;
        auto it = users_.find(user_id);
        return it == users_.end() ? none : it->second;
    }

    bool user_online(std::string const& user_id) const { return users_.contains(user_id); }

    /// The users with at least one connection.
    std::vector<std::string> users() const {
        std::vector<std::string> ids;
        ids.reserve(users_.size());
        for (auto const& [id, sessions] : users_) ids.push_back(id);
        return ids;
    }

    /// Every connection, in no particular order.
    std::vector<session_ptr> const& all() const noexcept { return all_; }

    std::size_t size() const noexcept { return all_.size(); }
    std::size_t users_online() const noexcept { return users_.size(); }

private:
    std::vector<session_ptr> all_;
    std::unordered_map<std::uint64_t, std::size_t> index_;  ///< id -> position in all_
    std::unordered_map<std::string, std::vector<session_ptr>> users_;
};

}  // namespace wsmanager::detail
