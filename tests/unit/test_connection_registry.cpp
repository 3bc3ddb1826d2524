// SPDX-License-Identifier: BSL-1.0
// detail/connection_registry.hpp: the open connections and the users they belong to, with
// fake sessions (no socket).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <wsmanager/detail/connection_registry.hpp>

#include "fake_session.hpp"

namespace registry_test {

using wsmanager::detail::connection_registry;
using wsmanager::detail::session_ptr;
using wsmanager_fake::make_fake;

std::vector<std::uint64_t> ids_of(std::vector<session_ptr> const& sessions) {
    std::vector<std::uint64_t> ids;
    for (auto const& session : sessions) ids.push_back(session->id());
    return ids;
}

TEST_CASE("connection_registry: add, find, contains, remove", "[connection_registry]") {
    connection_registry registry;
    CHECK(registry.size() == 0);
    CHECK(registry.find(1) == nullptr);
    CHECK_FALSE(registry.contains(1));

    auto alice = make_fake(1, "alice");
    auto bob = make_fake(2, "bob");
    REQUIRE(registry.add(alice));
    REQUIRE(registry.add(bob));
    CHECK(registry.size() == 2);
    CHECK(registry.users_online() == 2);
    CHECK(registry.contains(1));
    CHECK(registry.contains(2));
    CHECK_FALSE(registry.contains(3));
    CHECK(registry.find(1) == alice);
    CHECK(registry.find(2) == bob);
    CHECK(registry.find(3) == nullptr);
    CHECK(registry.user_online("alice"));
    CHECK(registry.user_online("bob"));
    CHECK_FALSE(registry.user_online("carol"));

    auto removed = registry.remove(1);
    CHECK(removed.session == alice);
    CHECK(removed.user_went_offline);
    CHECK_FALSE(registry.contains(1));
    CHECK(registry.find(1) == nullptr);
    CHECK(registry.find(2) == bob);
    CHECK(registry.size() == 1);
    CHECK(registry.users_online() == 1);
    CHECK_FALSE(registry.user_online("alice"));
    CHECK(registry.of_user("alice").empty());

    SECTION("removing an unknown or already removed id changes nothing") {
        auto again = registry.remove(1);
        CHECK(again.session == nullptr);
        CHECK_FALSE(again.user_went_offline);
        auto unknown = registry.remove(99);
        CHECK(unknown.session == nullptr);
        CHECK_FALSE(unknown.user_went_offline);
        CHECK(registry.size() == 1);
        CHECK(registry.find(2) == bob);
    }
}

TEST_CASE("connection_registry: of_user keeps the order of the tabs", "[connection_registry]") {
    connection_registry registry;
    auto a1 = make_fake(10, "alice");
    auto b1 = make_fake(11, "bob");
    auto a2 = make_fake(12, "alice");
    auto a3 = make_fake(13, "alice");
    for (auto const& s : {a1, b1, a2, a3}) REQUIRE(registry.add(s));

    CHECK(ids_of(registry.of_user("alice")) == std::vector<std::uint64_t>{10, 12, 13});
    CHECK(ids_of(registry.of_user("bob")) == std::vector<std::uint64_t>{11});
    CHECK(registry.of_user("nobody").empty());
    CHECK(registry.users_online() == 2);

    auto removed = registry.remove(12);
    CHECK(removed.session == a2);
    CHECK_FALSE(removed.user_went_offline);  // two tabs left
    CHECK(ids_of(registry.of_user("alice")) == std::vector<std::uint64_t>{10, 13});

    auto a4 = make_fake(14, "alice");
    REQUIRE(registry.add(a4));
    CHECK(ids_of(registry.of_user("alice")) == std::vector<std::uint64_t>{10, 13, 14});

    CHECK_FALSE(registry.remove(10).user_went_offline);
    CHECK_FALSE(registry.remove(14).user_went_offline);
    CHECK(registry.user_online("alice"));
    auto last = registry.remove(13);
    CHECK(last.session == a3);
    CHECK(last.user_went_offline);  // only the last one
    CHECK_FALSE(registry.user_online("alice"));
    CHECK(registry.users_online() == 1);
    CHECK(registry.of_user("alice").empty());
}

TEST_CASE("connection_registry: anonymous sessions are connections, not users",
          "[connection_registry]") {
    connection_registry registry;
    auto anon1 = make_fake(1);
    auto anon2 = make_fake(2);
    auto alice = make_fake(3, "alice");
    REQUIRE(registry.add(anon1));
    REQUIRE(registry.add(anon2));
    REQUIRE(registry.add(alice));

    CHECK(registry.size() == 3);
    CHECK(registry.users_online() == 1);
    CHECK(registry.of_user("").empty());
    CHECK_FALSE(registry.user_online(""));
    CHECK(registry.find(1) == anon1);
    CHECK(registry.all().size() == 3);

    auto removed = registry.remove(1);
    CHECK(removed.session == anon1);
    CHECK_FALSE(removed.user_went_offline);
    removed = registry.remove(2);
    CHECK(removed.session == anon2);
    CHECK_FALSE(removed.user_went_offline);
    CHECK(registry.users_online() == 1);
    CHECK(registry.size() == 1);
}

TEST_CASE("connection_registry: a duplicate id is refused and changes nothing",
          "[connection_registry]") {
    connection_registry registry;
    auto first = make_fake(7, "alice");
    REQUIRE(registry.add(first));
    auto impostor = make_fake(7, "bob");
    CHECK_FALSE(registry.add(impostor));
    CHECK_FALSE(registry.add(first));  // the same object again
    CHECK(registry.size() == 1);
    CHECK(registry.find(7) == first);
    CHECK(registry.of_user("alice").size() == 1);
    CHECK(registry.of_user("bob").empty());
    CHECK_FALSE(registry.user_online("bob"));
    CHECK(registry.users_online() == 1);
    CHECK(registry.all().size() == 1);

    auto removed = registry.remove(7);
    CHECK(removed.session == first);
    CHECK(removed.user_went_offline);
    CHECK(registry.size() == 0);
}

TEST_CASE("connection_registry: swap-remove keeps all() and find() consistent (model test)",
          "[connection_registry][model]") {
    connection_registry registry;
    std::map<std::uint64_t, session_ptr> model;
    std::map<std::string, std::vector<std::uint64_t>> model_users;  // in add order
    std::vector<std::string> const users{"", "alice", "bob", "carol", "dave"};
    std::mt19937 random(20240611);
    std::uniform_int_distribution<std::uint64_t> pick_id(1, 120);
    std::uniform_int_distribution<std::size_t> pick_user(0, users.size() - 1);
    std::uniform_int_distribution<int> coin(0, 99);

    for (int step = 0; step < 4000; ++step) {
        auto const id = pick_id(random);
        if (coin(random) < 55) {
            auto const& user = users[pick_user(random)];
            auto session = make_fake(id, user);
            bool const fresh = !model.contains(id);
            REQUIRE(registry.add(session) == fresh);
            if (fresh) {
                model.emplace(id, session);
                if (!user.empty()) model_users[user].push_back(id);
            }
        } else {
            auto removed = registry.remove(id);
            auto known = model.find(id);
            if (known == model.end()) {
                REQUIRE(removed.session == nullptr);
                REQUIRE_FALSE(removed.user_went_offline);
            } else {
                REQUIRE(removed.session == known->second);
                auto const user = known->second->user_id();
                bool offline = false;
                if (!user.empty()) {
                    auto& tabs = model_users[user];
                    tabs.erase(std::find(tabs.begin(), tabs.end(), id));
                    if (tabs.empty()) {
                        model_users.erase(user);
                        offline = true;
                    }
                }
                REQUIRE(removed.user_went_offline == offline);
                model.erase(known);
            }
        }

        // The whole state against the model, every step.
        REQUIRE(registry.size() == model.size());
        std::map<std::uint64_t, session_ptr> in_all;
        bool all_found = true;
        for (auto const& session : registry.all()) {
            all_found = all_found && session != nullptr && registry.find(session->id()) == session;
            if (session) in_all.emplace(session->id(), session);
        }
        REQUIRE(registry.all().size() == in_all.size());  // no duplicates
        REQUIRE(in_all == model);
        REQUIRE(all_found);
        bool lookups_agree = true;
        for (std::uint64_t known = 1; known <= 120; ++known) {
            auto it = model.find(known);
            lookups_agree = lookups_agree && registry.contains(known) == (it != model.end()) &&
                            registry.find(known) == (it == model.end() ? nullptr : it->second);
        }
        REQUIRE(lookups_agree);
        REQUIRE(registry.users_online() == model_users.size());
        for (auto const& user : users) {
            auto it = model_users.find(user);
            auto const want = it == model_users.end() ? std::vector<std::uint64_t>{} : it->second;
            REQUIRE(ids_of(registry.of_user(user)) == want);
            REQUIRE(registry.user_online(user) == (it != model_users.end()));
        }
    }

    // Empty it completely.
    auto const remaining = model;
    for (auto const& [known_id, session] : remaining) {
        REQUIRE(registry.remove(known_id).session == session);
    }
    CHECK(registry.size() == 0);
    CHECK(registry.all().empty());
    CHECK(registry.users_online() == 0);
}

}  // namespace registry_test
