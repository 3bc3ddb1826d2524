// SPDX-License-Identifier: BSL-1.0
// detail/topic_registry.hpp: subscriptions, the per-connection limit, leaving topics.

#include <cstdint>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include <wsmanager/detail/topic_registry.hpp>

#include "fake_session.hpp"

namespace topics_test {

using wsmanager::detail::topic_registry;
using wsmanager_fake::make_fake;
using result = topic_registry::subscribe_result;

std::set<std::uint64_t> subscriber_ids(topic_registry const& topics, std::string const& topic) {
    std::set<std::uint64_t> ids;
    for (auto const& [id, session] : topics.subscribers(topic)) {
        REQUIRE(session != nullptr);
        REQUIRE(session->id() == id);
        ids.insert(id);
    }
    return ids;
}

TEST_CASE("topic_registry: subscribe, already subscribed, the limit", "[topic_registry]") {
    topic_registry topics;
    auto a = make_fake(1, "alice");
    auto b = make_fake(2);

    CHECK(topics.subscribe(a, "news", 2, 1000) == result::subscribed);
    CHECK(topics.subscribe(a, "news", 2, 1000) == result::already_subscribed);
    CHECK(topics.topic_count(1) == 1);
    CHECK(topics.subscribe(a, "sport", 2, 1000) == result::subscribed);
    CHECK(topics.topic_count(1) == 2);
    // At the limit: a new topic is refused, a known one is still "already".
    CHECK(topics.subscribe(a, "weather", 2, 1000) == result::connection_limit);
    CHECK(topics.subscribe(a, "sport", 2, 1000) == result::already_subscribed);
    CHECK(topics.topic_count(1) == 2);
    CHECK_FALSE(topics.is_subscribed(1, "weather"));
    CHECK(topics.subscribers("weather").empty());
    CHECK(topics.size() == 2);

    CHECK(topics.is_subscribed(1, "news"));
    CHECK(topics.is_subscribed(1, "sport"));
    CHECK_FALSE(topics.is_subscribed(2, "news"));

    SECTION("the limit is per connection") {
        CHECK(topics.subscribe(b, "weather", 2, 1000) == result::subscribed);
        CHECK(topics.subscribe(b, "news", 2, 1000) == result::subscribed);
        CHECK(topics.size() == 3);
        CHECK(subscriber_ids(topics, "news") == std::set<std::uint64_t>{1, 2});
        CHECK(subscriber_ids(topics, "weather") == std::set<std::uint64_t>{2});
    }
    SECTION("a limit of 0 refuses everything and leaves no trace") {
        auto c = make_fake(3, "carol");
        CHECK(topics.subscribe(c, "news", 0, 1000) == result::connection_limit);
        CHECK(topics.topic_count(3) == 0);
        CHECK_FALSE(topics.is_subscribed(3, "news"));
        CHECK(subscriber_ids(topics, "news") == std::set<std::uint64_t>{1});
        CHECK(topics.size() == 2);
    }
}

TEST_CASE("topic_registry: the limit on topics over all connections", "[topic_registry]") {
    topic_registry topics;
    auto a = make_fake(1, "alice");
    auto b = make_fake(2, "bob");
    REQUIRE(topics.subscribe(a, "x", 10, 2) == result::subscribed);
    REQUIRE(topics.subscribe(a, "y", 10, 2) == result::subscribed);
    CHECK(topics.size() == 2);

    // A new topic would make three.
    CHECK(topics.subscribe(a, "z", 10, 2) == result::topic_limit);
    CHECK(topics.subscribe(b, "z", 10, 2) == result::topic_limit);
    CHECK(topics.subscribers("z").empty());
    CHECK(topics.topic_count(2) == 0);
    CHECK_FALSE(topics.is_subscribed(2, "z"));
    // Joining a topic that exists adds none.
    CHECK(topics.subscribe(b, "x", 10, 2) == result::subscribed);
    CHECK(topics.size() == 2);
    CHECK(subscriber_ids(topics, "x") == std::set<std::uint64_t>{1, 2});

    // Both limits at once: the connection's is reported.
    CHECK(topics.subscribe(b, "z", 1, 2) == result::connection_limit);

    // Once a topic has no subscriber left, there is room again.
    REQUIRE(topics.unsubscribe(1, "y"));
    CHECK(topics.size() == 1);
    CHECK(topics.subscribe(b, "z", 10, 2) == result::subscribed);
    CHECK(topics.size() == 2);
}

TEST_CASE("topic_registry: subscribers() holds the sessions themselves", "[topic_registry]") {
    topic_registry topics;
    auto a = make_fake(1, "alice");
    auto b = make_fake(2, "bob");
    auto anon = make_fake(3);
    REQUIRE(topics.subscribe(a, "news", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(b, "news", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(anon, "news", 10, 1000) == result::subscribed);
    auto const& subscribers = topics.subscribers("news");
    REQUIRE(subscribers.size() == 3);
    CHECK(subscribers.at(1) == a);
    CHECK(subscribers.at(2) == b);
    CHECK(subscribers.at(3) == anon);
    CHECK(topics.subscribers("nothing").empty());
    CHECK(topics.size() == 1);
}

TEST_CASE("topic_registry: unsubscribe", "[topic_registry]") {
    topic_registry topics;
    auto a = make_fake(1, "alice");
    auto b = make_fake(2, "bob");
    REQUIRE(topics.subscribe(a, "news", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(a, "sport", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(b, "news", 10, 1000) == result::subscribed);
    CHECK(topics.size() == 2);

    CHECK(topics.unsubscribe(1, "news"));
    CHECK_FALSE(topics.unsubscribe(1, "news"));  // no longer
    CHECK_FALSE(topics.is_subscribed(1, "news"));
    CHECK(topics.topic_count(1) == 1);
    CHECK(subscriber_ids(topics, "news") == std::set<std::uint64_t>{2});
    CHECK(topics.size() == 2);

    CHECK_FALSE(topics.unsubscribe(1, "weather"));  // never was
    CHECK_FALSE(topics.unsubscribe(42, "news"));    // unknown connection
    CHECK(subscriber_ids(topics, "news") == std::set<std::uint64_t>{2});

    CHECK(topics.unsubscribe(1, "sport"));  // its last topic
    CHECK(topics.topic_count(1) == 0);
    CHECK(topics.subscribers("sport").empty());
    CHECK(topics.size() == 1);  // sport has no subscriber left

    CHECK(topics.unsubscribe(2, "news"));
    CHECK(topics.size() == 0);
    CHECK(topics.subscribers("news").empty());

    // After leaving, the connection can subscribe again (the limit counts current topics).
    CHECK(topics.subscribe(a, "news", 1, 1000) == result::subscribed);
    CHECK(topics.subscribe(a, "sport", 1, 1000) == result::connection_limit);
}

TEST_CASE("topic_registry: remove_connection leaves every topic", "[topic_registry]") {
    topic_registry topics;
    auto a = make_fake(1, "alice");
    auto b = make_fake(2, "bob");
    REQUIRE(topics.subscribe(a, "news", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(a, "sport", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(a, "task:t1", 10, 1000) == result::subscribed);
    REQUIRE(topics.subscribe(b, "news", 10, 1000) == result::subscribed);
    CHECK(topics.size() == 3);

    topics.remove_connection(1);
    CHECK(topics.topic_count(1) == 0);
    CHECK_FALSE(topics.is_subscribed(1, "news"));
    CHECK_FALSE(topics.is_subscribed(1, "sport"));
    CHECK_FALSE(topics.is_subscribed(1, "task:t1"));
    CHECK(topics.subscribers("sport").empty());
    CHECK(topics.subscribers("task:t1").empty());
    CHECK(subscriber_ids(topics, "news") == std::set<std::uint64_t>{2});
    CHECK(topics.size() == 1);  // only news still has a subscriber

    topics.remove_connection(1);   // again: nothing
    topics.remove_connection(77);  // unknown: nothing
    CHECK(topics.size() == 1);
    CHECK(topics.is_subscribed(2, "news"));

    topics.remove_connection(2);
    CHECK(topics.size() == 0);
    CHECK(topics.subscribers("news").empty());
}

}  // namespace topics_test
