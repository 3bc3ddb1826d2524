// SPDX-License-Identifier: BSL-1.0
#pragma once

// Operations that wait for something (a confirmation for its answer, an ack for the client,
// a heartbeat for its cancellation), by id, by user and by task. The one rule that keeps
// "every operation ends exactly once": an entry leaves only through take(), and only the
// caller that took it completes it. complete_once() and complete_each() are that rule
// written once; the services (confirmations, heartbeats, acks) never end an entry any other
// way. Lookups by user and by task are indexed, so a connect, a disconnect or a client's
// `cancel` touches that user's or that task's entries only.
//
// Entry: a movable type with `std::string id, user_id, task_id` (an empty user or task is not
// indexed). Manager strand only: not thread-safe.

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace wsmanager::detail {

template <class Entry>
class pending_operations {
public:
    /// Adds an entry; its id must be new (ids are random or unique by construction).
    Entry& insert(Entry entry) {
        auto id = entry.id;
        index(by_user_, entry.user_id, id);
        index(by_task_, entry.task_id, id);
        return entries_.insert_or_assign(std::move(id), std::move(entry)).first->second;
    }

    /// The pending entry, or nullptr when it has ended (or never was).
    Entry* find(std::string const& id) {
        auto it = entries_.find(id);
        return it == entries_.end() ? nullptr : &it->second;
    }
    Entry const* find(std::string const& id) const {
        auto it = entries_.find(id);
        return it == entries_.end() ? nullptr : &it->second;
    }

    /// Removes and returns an entry; nullopt when it already ended. The only way out.
    std::optional<Entry> take(std::string const& id) {
        auto node = entries_.extract(id);
        if (node.empty()) return std::nullopt;
        unindex(by_user_, node.mapped().user_id, id);
        unindex(by_task_, node.mapped().task_id, id);
        return std::move(node.mapped());
    }

    /// Takes the entry and hands it to `end`; false (and `end` is not called) when it had
    /// ended already.
    template <class End>
    bool complete_once(std::string const& id, End&& end) {
        auto entry = take(id);
        if (!entry) return false;
        std::forward<End>(end)(std::move(*entry));
        return true;
    }

    /// complete_once for each id; ids that ended meanwhile (also by an earlier `end`) are
    /// skipped. Returns how many ended here.
    template <class End>
    std::size_t complete_each(std::vector<std::string> const& ids, End end) {
        std::size_t ended = 0;
        for (auto const& id : ids) ended += complete_once(id, end) ? 1 : 0;
        return ended;
    }

    /// Snapshots of ids, for complete_each (which may change the indexes as it goes).
    std::vector<std::string> ids_of_user(std::string const& user_id) const {
        return snapshot(by_user_, user_id);
    }
    std::vector<std::string> ids_of_task(std::string const& task_id) const {
        return snapshot(by_task_, task_id);
    }
    std::vector<std::string> ids() const {
        std::vector<std::string> all;
        all.reserve(entries_.size());
        for (auto const& [id, entry] : entries_) all.push_back(id);
        return all;
    }

    /// Calls `f(Entry&)` for each pending entry of a user; `f` must not insert or take.
    template <class F>
    void for_each_of_user(std::string const& user_id, F f) {
        auto it = by_user_.find(user_id);
        if (it == by_user_.end()) return;
        for (auto const& id : it->second) f(entries_.at(id));
    }

    /// True when an entry of `task_id` belongs to a user other than `user_id`.
    bool task_has_other_user(std::string const& task_id, std::string const& user_id) const {
        auto it = by_task_.find(task_id);
        if (it == by_task_.end()) return false;
        for (auto const& id : it->second) {
            if (entries_.at(id).user_id != user_id) return true;
        }
        return false;
    }

    /// Pending entries of one user.
    std::size_t count_of_user(std::string const& user_id) const {
        auto it = by_user_.find(user_id);
        return it == by_user_.end() ? 0 : it->second.size();
    }

    /// False when one more entry for `user_id` would pass a limit (per user, in total).
    bool has_room_for(std::string const& user_id, std::size_t per_user,
                      std::size_t total) const {
        return entries_.size() < total && count_of_user(user_id) < per_user;
    }

    /// True when an entry of `task_id` belongs to `user_id`.
    bool task_has_user(std::string const& task_id, std::string const& user_id) const {
        auto it = by_task_.find(task_id);
        if (it == by_task_.end()) return false;
        for (auto const& id : it->second) {
            if (entries_.at(id).user_id == user_id) return true;
        }
        return false;
    }

    std::size_t size() const noexcept { return entries_.size(); }
    bool empty() const noexcept { return entries_.empty(); }
    /// Users and tasks with at least one entry (for tests: the indexes never outgrow it).
    std::size_t indexed_users() const noexcept { return by_user_.size(); }
    std::size_t indexed_tasks() const noexcept { return by_task_.size(); }

private:
    using index_type = std::unordered_map<std::string, std::unordered_set<std::string>>;

    static void index(index_type& index, std::string const& key, std::string const& id) {
        if (!key.empty()) index[key].insert(id);
    }
    static void unindex(index_type& index, std::string const& key, std::string const& id) {
        if (key.empty()) return;
        auto it = index.find(key);
        if (it == index.end()) return;
        it->second.erase(id);
        if (it->second.empty()) index.erase(it);
    }
    static std::vector<std::string> snapshot(index_type const& index, std::string const& key) {
        auto it = index.find(key);
        if (it == index.end()) return {};
        return {it->second.begin(), it->second.end()};
    }

    std::unordered_map<std::string, Entry> entries_;
    index_type by_user_;
    index_type by_task_;
};

}  // namespace wsmanager::detail
