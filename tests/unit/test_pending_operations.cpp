// SPDX-License-Identifier: BSL-1.0
// detail/pending_operations.hpp: entries by id, user and task; every entry leaves once.

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <wsmanager/detail/pending_operations.hpp>

namespace pending_test {

/// Move-only, as the services' entries (they own a timer).
struct entry {
    std::string id;
    std::string user_id;
    std::string task_id;
    std::unique_ptr<int> payload;
};

using operations = wsmanager::detail::pending_operations<entry>;

entry make(std::string id, std::string user, std::string task, int value = 0) {
    return entry{std::move(id), std::move(user), std::move(task), std::make_unique<int>(value)};
}

std::vector<std::string> sorted(std::vector<std::string> ids) {
    std::sort(ids.begin(), ids.end());
    return ids;
}

using ids = std::vector<std::string>;

TEST_CASE("pending_operations: insert, find, take", "[pending_operations]") {
    operations pending;
    CHECK(pending.empty());
    auto& inserted = pending.insert(make("c1", "alice", "t1", 41));
    CHECK(inserted.id == "c1");
    CHECK(*inserted.payload == 41);
    pending.insert(make("c2", "bob", "t2", 42));
    CHECK(pending.size() == 2);
    CHECK_FALSE(pending.empty());

    auto* found = pending.find("c1");
    REQUIRE(found != nullptr);
    CHECK(found->user_id == "alice");
    *found->payload = 7;  // find gives the entry itself
    operations const& view = pending;
    auto const* const_found = view.find("c1");
    REQUIRE(const_found != nullptr);
    CHECK(*const_found->payload == 7);
    CHECK(pending.find("nope") == nullptr);
    CHECK(view.find("nope") == nullptr);

    auto taken = pending.take("c1");
    REQUIRE(taken.has_value());
    CHECK(taken->id == "c1");
    CHECK(taken->task_id == "t1");
    CHECK(*taken->payload == 7);
    CHECK(pending.find("c1") == nullptr);
    CHECK(pending.size() == 1);

    CHECK_FALSE(pending.take("c1").has_value());  // twice: nothing
    CHECK_FALSE(pending.take("never").has_value());
    CHECK(pending.size() == 1);
    CHECK(pending.ids() == ids{"c2"});
}

TEST_CASE("pending_operations: complete_once calls end exactly once", "[pending_operations]") {
    operations pending;
    pending.insert(make("c1", "alice", "t1", 5));
    int calls = 0;
    int seen = 0;
    auto end = [&](entry e) {
        ++calls;
        seen = *e.payload;
    };
    CHECK(pending.complete_once("c1", end));
    CHECK(calls == 1);
    CHECK(seen == 5);
    CHECK_FALSE(pending.complete_once("c1", end));
    CHECK_FALSE(pending.complete_once("unknown", end));
    CHECK(calls == 1);
    CHECK(pending.empty());
    CHECK(pending.indexed_users() == 0);
    CHECK(pending.indexed_tasks() == 0);
}

TEST_CASE("pending_operations: complete_each skips ids that ended", "[pending_operations]") {
    operations pending;
    for (auto const* id : {"a", "b", "c", "d"}) pending.insert(make(id, "alice", "t1"));
    REQUIRE(pending.take("b").has_value());  // ended before

    std::vector<std::string> ended;
    // Ending "a" also ends "c" (as a completion that cancels another operation would).
    auto const count = pending.complete_each(ids{"a", "b", "c", "d", "zzz"}, [&](entry e) {
        ended.push_back(e.id);
        if (e.id == "a") CHECK(pending.take("c").has_value());
    });
    CHECK(count == 2);
    CHECK(ended == ids{"a", "d"});
    CHECK(pending.empty());
    CHECK(pending.complete_each(ids{"a", "d"}, [&](entry) { FAIL("ended twice"); }) == 0);
}

TEST_CASE("pending_operations: indexes by user and by task", "[pending_operations]") {
    operations pending;
    pending.insert(make("c1", "alice", "t1"));
    pending.insert(make("c2", "alice", "t2"));
    pending.insert(make("c3", "bob", "t1"));
    pending.insert(make("c4", "", "t3"));     // no user: not indexed by user
    pending.insert(make("c5", "carol", ""));  // no task: not indexed by task

    CHECK(sorted(pending.ids_of_user("alice")) == ids{"c1", "c2"});
    CHECK(sorted(pending.ids_of_user("bob")) == ids{"c3"});
    CHECK(sorted(pending.ids_of_user("carol")) == ids{"c5"});
    CHECK(pending.ids_of_user("").empty());
    CHECK(pending.ids_of_user("zed").empty());
    CHECK(sorted(pending.ids_of_task("t1")) == ids{"c1", "c3"});
    CHECK(sorted(pending.ids_of_task("t2")) == ids{"c2"});
    CHECK(sorted(pending.ids_of_task("t3")) == ids{"c4"});
    CHECK(pending.ids_of_task("").empty());
    CHECK(pending.indexed_users() == 3);
    CHECK(pending.indexed_tasks() == 3);
    CHECK(sorted(pending.ids()) == ids{"c1", "c2", "c3", "c4", "c5"});

    SECTION("task_has_other_user") {
        CHECK(pending.task_has_other_user("t1", "alice"));  // bob's c3
        CHECK(pending.task_has_other_user("t1", "bob"));    // alice's c1
        CHECK_FALSE(pending.task_has_other_user("t2", "alice"));
        CHECK(pending.task_has_other_user("t2", "bob"));
        CHECK_FALSE(pending.task_has_other_user("unknown", "alice"));
        REQUIRE(pending.take("c3").has_value());
        CHECK_FALSE(pending.task_has_other_user("t1", "alice"));
        CHECK(pending.task_has_other_user("t1", "bob"));
    }
    SECTION("for_each_of_user visits that user's entries only") {
        std::set<std::string> visited;
        pending.for_each_of_user("alice", [&](entry& e) {
            visited.insert(e.id);
            *e.payload = 99;
        });
        CHECK(visited == std::set<std::string>{"c1", "c2"});
        CHECK(*pending.find("c1")->payload == 99);
        CHECK(*pending.find("c3")->payload == 0);
        int visits = 0;
        pending.for_each_of_user("zed", [&](entry&) { ++visits; });
        pending.for_each_of_user("", [&](entry&) { ++visits; });
        CHECK(visits == 0);
    }
    SECTION("the indexes empty as entries end") {
        REQUIRE(pending.complete_each(pending.ids_of_user("alice"), [](entry) {}) == 2);
        CHECK(pending.ids_of_user("alice").empty());
        CHECK(pending.ids_of_task("t2").empty());
        CHECK(sorted(pending.ids_of_task("t1")) == ids{"c3"});
        CHECK(pending.indexed_users() == 2);
        CHECK(pending.indexed_tasks() == 2);
        REQUIRE(pending.complete_each(pending.ids(), [](entry) {}) == 3);
        CHECK(pending.empty());
        CHECK(pending.indexed_users() == 0);
        CHECK(pending.indexed_tasks() == 0);
        CHECK(pending.ids().empty());
    }
}

TEST_CASE("pending_operations: counts and limits by user, a task's users", "[pending_operations]") {
    operations pending;
    pending.insert(make("c1", "alice", "t1"));
    pending.insert(make("c2", "alice", "t2"));
    pending.insert(make("c3", "bob", "t1"));
    CHECK(pending.count_of_user("alice") == 2);
    CHECK(pending.count_of_user("bob") == 1);
    CHECK(pending.count_of_user("zed") == 0);

    CHECK(pending.has_room_for("alice", 3, 10));
    CHECK_FALSE(pending.has_room_for("alice", 2, 10));  // alice has two
    CHECK(pending.has_room_for("bob", 2, 10));
    CHECK_FALSE(pending.has_room_for("zed", 5, 3));  // three in all
    CHECK(pending.has_room_for("zed", 5, 4));
    CHECK_FALSE(pending.has_room_for("zed", 0, 10));

    CHECK(pending.task_has_user("t1", "alice"));
    CHECK(pending.task_has_user("t1", "bob"));
    CHECK_FALSE(pending.task_has_user("t2", "bob"));
    CHECK_FALSE(pending.task_has_user("t9", "alice"));

    REQUIRE(pending.take("c1").has_value());
    CHECK(pending.count_of_user("alice") == 1);
    CHECK(pending.has_room_for("alice", 2, 10));
    CHECK_FALSE(pending.task_has_user("t1", "alice"));
}

TEST_CASE("pending_operations: random inserts and endings against a model",
          "[pending_operations][model]") {
    operations pending;
    std::map<std::string, std::pair<std::string, std::string>> model;  // id -> (user, task)
    std::vector<std::string> const users{"", "u1", "u2", "u3"};
    std::vector<std::string> const tasks{"", "t1", "t2", "t3", "t4"};
    std::mt19937 random(7);
    std::uniform_int_distribution<int> coin(0, 99);
    std::uniform_int_distribution<std::size_t> pick_user(0, users.size() - 1);
    std::uniform_int_distribution<std::size_t> pick_task(0, tasks.size() - 1);
    std::map<std::string, int> ends;  // id -> times its end ran
    int next_id = 0;

    auto any_id = [&]() -> std::string {
        // Mostly known ids (maybe ended), sometimes never-seen ones.
        if (next_id == 0 || coin(random) < 10) return "ghost" + std::to_string(coin(random));
        return "op" + std::to_string(std::uniform_int_distribution<int>(0, next_id - 1)(random));
    };
    auto end_counter = [&](entry e) {
        ++ends[e.id];
        REQUIRE(model.contains(e.id));
        REQUIRE(model.at(e.id).first == e.user_id);
        REQUIRE(model.at(e.id).second == e.task_id);
        model.erase(e.id);
    };

    for (int step = 0; step < 3000; ++step) {
        int const action = coin(random);
        if (action < 40) {
            auto id = "op" + std::to_string(next_id++);
            auto const& user = users[pick_user(random)];
            auto const& task = tasks[pick_task(random)];
            pending.insert(make(id, user, task));
            model[id] = {user, task};
        } else if (action < 55) {
            auto id = any_id();
            auto taken = pending.take(id);
            REQUIRE(taken.has_value() == model.contains(id));
            if (taken) end_counter(std::move(*taken));
        } else if (action < 70) {
            auto id = any_id();
            bool const known = model.contains(id);
            REQUIRE(pending.complete_once(id, end_counter) == known);
        } else if (action < 85) {
            auto const& user = users[pick_user(random)];
            std::size_t expected = 0;
            for (auto const& [id, owner] : model) expected += !user.empty() && owner.first == user;
            REQUIRE(pending.complete_each(pending.ids_of_user(user), end_counter) == expected);
        } else {
            auto const& task = tasks[pick_task(random)];
            std::size_t expected = 0;
            for (auto const& [id, owner] : model) expected += !task.empty() && owner.second == task;
            REQUIRE(pending.complete_each(pending.ids_of_task(task), end_counter) == expected);
        }

        REQUIRE(pending.size() == model.size());
        std::set<std::string> model_users, model_tasks;
        bool all_found = true;
        for (auto const& [id, owner] : model) {
            all_found = all_found && pending.find(id) != nullptr;
            if (!owner.first.empty()) model_users.insert(owner.first);
            if (!owner.second.empty()) model_tasks.insert(owner.second);
        }
        REQUIRE(all_found);
        REQUIRE(pending.indexed_users() == model_users.size());
        REQUIRE(pending.indexed_tasks() == model_tasks.size());
        for (auto const& user : users) {
            ids want;
            for (auto const& [id, owner] : model) {
                if (!user.empty() && owner.first == user) want.push_back(id);
            }
            REQUIRE(sorted(pending.ids_of_user(user)) == want);
        }
        for (auto const& task : tasks) {
            ids want;
            std::set<std::string> owners;
            for (auto const& [id, owner] : model) {
                if (!task.empty() && owner.second == task) {
                    want.push_back(id);
                    owners.insert(owner.first);
                }
            }
            REQUIRE(sorted(pending.ids_of_task(task)) == want);
            bool others_agree = true;
            for (auto const& user : users) {
                bool const other = std::any_of(owners.begin(), owners.end(),
                                               [&](auto const& o) { return o != user; });
                others_agree = others_agree && pending.task_has_other_user(task, user) == other;
            }
            REQUIRE(others_agree);
        }
    }

    pending.complete_each(pending.ids(), end_counter);
    CHECK(model.empty());
    CHECK(pending.empty());
    CHECK(pending.indexed_users() == 0);
    CHECK(pending.indexed_tasks() == 0);
    // Every operation ever inserted ended exactly once.
    CHECK(ends.size() == static_cast<std::size_t>(next_id));
    for (auto const& [id, times] : ends) {
        INFO(id);
        CHECK(times == 1);
    }
}

}  // namespace pending_test
