// SPDX-License-Identifier: BSL-1.0
// redis_connection as a subscriber: SUBSCRIBE/PSUBSCRIBE on one connection, PUBLISH from
// another, and a subscriber killed by CLIENT KILL TYPE pubsub.

#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "cluster_test_support.hpp"
#include "redis_server.hpp"

using namespace wsmanager_cluster_test;

namespace {

using pubsub_message = std::pair<std::string, std::string>;

std::error_code subscribe_and_wait(redis_connection& subscriber, std::vector<std::string> names,
                                   bool patterns = false) {
    auto result = std::make_shared<inbox<std::error_code>>();
    asio::post(subscriber.get_executor(), [&subscriber, result, names, patterns] {
        auto done = [result](std::error_code ec) { result->push(ec); };
        if (patterns) {
            subscriber.psubscribe(names, command_patience, done);
        } else {
            subscriber.subscribe(names, command_patience, done);
        }
    });
    REQUIRE(result->wait_for(1));
    return result->at(0);
}

}  // namespace

TEST_CASE("redis_connection: a subscriber receives what another connection publishes",
          "[redis_connection][pubsub][threaded]") {
    redis_server server;
    io_threads io(2);
    inbox<pubsub_message> messages;
    auto subscriber = make_connection(io);
    auto publisher = make_connection(io);
    on_strand(subscriber->get_executor(), [&] {
        subscriber->set_message_handler([&](std::string channel, std::string payload) {
            messages.push({std::move(channel), std::move(payload)});
        });
    });
    REQUIRE_FALSE(connect(*subscriber, server.port()));
    REQUIRE_FALSE(connect(*publisher, server.port()));

    std::string const binary_channel("bin\0chan", 8);
    REQUIRE_FALSE(subscribe_and_wait(*subscriber, {"news", binary_channel}));
    REQUIRE_FALSE(subscribe_and_wait(*subscriber, {"task.*"}, true));
    CHECK(on_strand(subscriber->get_executor(), [&] { return subscriber->is_subscriber(); }));

    // Confirmed subscriptions are in place: PUBLISH counts the receiver.
    CHECK(run(*publisher, {"PUBLISH", "news", "first"}).second.as_integer() == 1);
    std::string const payload("pay\0load\r\n", 10);
    CHECK(run(*publisher, {"PUBLISH", binary_channel, payload}).second.as_integer() == 1);
    CHECK(run(*publisher, {"PUBLISH", "task.42", "done"}).second.as_integer() == 1);
    CHECK(run(*publisher, {"PUBLISH", "nobody-listens", "x"}).second.as_integer() == 0);

    REQUIRE(messages.wait_for(3));
    std::vector<pubsub_message> const got = messages.items();
    REQUIRE(got.size() == 3);
    CHECK(got[0] == pubsub_message{"news", "first"});
    CHECK(got[1] == pubsub_message{binary_channel, payload});
    CHECK(got[2] == pubsub_message{"task.42", "done"});  // the channel, not the pattern

    // Normal commands are refused on a subscriber.
    CHECK(run(*subscriber, {"GET", "x"}).first == asio::error::operation_not_supported);

    // Many messages, in order.
    constexpr int burst = 1000;
    on_strand(publisher->get_executor(), [&] {
        for (int i = 0; i < burst; ++i) {
            publisher->command({"PUBLISH", "news", std::to_string(i)}, command_patience,
                               [](std::error_code, redis_value) {});
        }
    });
    REQUIRE(messages.wait_for(3 + burst));
    bool in_order = true;
    for (int i = 0; i < burst; ++i) {
        in_order =
            in_order && messages.at(3 + static_cast<std::size_t>(i)).second == std::to_string(i);
    }
    CHECK(in_order);

    destroy(subscriber);
    destroy(publisher);
}

TEST_CASE("redis_connection: CLIENT KILL TYPE pubsub makes the subscriber report the loss once",
          "[redis_connection][pubsub][threaded]") {
    redis_server server;
    io_threads io(2);
    inbox<std::error_code> disconnects;
    inbox<pubsub_message> messages;
    auto subscriber = make_connection(io);
    auto admin = make_connection(io);
    on_strand(subscriber->get_executor(), [&] {
        subscriber->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
        subscriber->set_message_handler([&](std::string channel, std::string payload) {
            messages.push({channel, payload});
        });
    });
    REQUIRE_FALSE(connect(*subscriber, server.port()));
    REQUIRE_FALSE(connect(*admin, server.port()));
    REQUIRE_FALSE(subscribe_and_wait(*subscriber, {"events"}));

    reply killed = run(*admin, {"CLIENT", "KILL", "TYPE", "pubsub"});
    REQUIRE_FALSE(killed.first);
    CHECK(killed.second.as_integer() == 1);

    REQUIRE(disconnects.wait_for(1));
    CHECK(disconnects.at(0) == redis_errc::connection_lost);
    CHECK_FALSE(on_strand(subscriber->get_executor(), [&] { return subscriber->is_connected(); }));
    CHECK_FALSE(on_strand(subscriber->get_executor(), [&] {
                    return subscriber->last_error_message();
                }).empty());
    // The admin connection is no subscriber and lives on.
    CHECK(run(*admin, {"PING"}).second.as_string() == "PONG");
    std::this_thread::sleep_for(200ms);
    drain(subscriber->get_executor());
    CHECK(disconnects.size() == 1);

    // The owner reconnects and subscribes again (what the backplane's reconnect loop does).
    REQUIRE_FALSE(connect(*subscriber, server.port()));
    REQUIRE_FALSE(subscribe_and_wait(*subscriber, {"events"}));
    CHECK(run(*admin, {"PUBLISH", "events", "again"}).second.as_integer() == 1);
    REQUIRE(messages.wait_for(1));
    CHECK(messages.at(0) == pubsub_message{"events", "again"});

    destroy(subscriber);
    destroy(admin);
    CHECK(disconnects.size() == 1);
}
