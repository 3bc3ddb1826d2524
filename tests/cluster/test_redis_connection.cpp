// SPDX-License-Identifier: BSL-1.0
// redis_connection against a real redis-server: commands, binary safety, error replies,
// pipelining, scripts, misuse, and close()/destruction with commands outstanding.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <wsmanager/cluster/detail/redis_script.hpp>

#include "cluster_test_support.hpp"
#include "redis_server.hpp"

using namespace wsmanager_cluster_test;
using wsmanager::cluster::detail::redis_script;

TEST_CASE("redis_connection: SET, GET and INCR round trip", "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    auto connection = make_connection(io);
    REQUIRE_FALSE(connect(*connection, server.port()));
    CHECK(on_strand(connection->get_executor(), [&] { return connection->is_connected(); }));

    reply set = run(*connection, {"SET", "greeting", "hello"});
    REQUIRE_FALSE(set.first);
    CHECK(set.second.is_status());
    CHECK(set.second.as_string() == "OK");

    reply get = run(*connection, {"GET", "greeting"});
    REQUIRE_FALSE(get.first);
    CHECK(get.second.is_string());
    CHECK(get.second.as_string() == "hello");

    reply missing = run(*connection, {"GET", "no-such-key"});
    REQUIRE_FALSE(missing.first);
    CHECK(missing.second.is_nil());

    CHECK(run(*connection, {"INCR", "counter"}).second.as_integer() == 1);
    CHECK(run(*connection, {"INCRBY", "counter", "41"}).second.as_integer() == 42);

    reply list = run(*connection, {"MGET", "greeting", "no-such-key", "counter"});
    REQUIRE(list.second.is_array());
    REQUIRE(list.second.as_array().size() == 3);
    CHECK(list.second.elements[0].as_string() == "hello");
    CHECK(list.second.elements[1].is_nil());
    CHECK(list.second.elements[2].as_string() == "42");

    destroy(connection);
}

TEST_CASE("redis_connection: keys and values are binary-safe", "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    auto connection = make_connection(io);
    REQUIRE_FALSE(connect(*connection, server.port()));

    std::string const key("k\0ey\r\n", 6);
    std::string value;
    for (int i = 0; i < 256; ++i) {
        value.push_back(static_cast<char>(i));
    }
    value += std::string(100000, '\0');  // larger than hiredis' 16 KiB read chunk
    REQUIRE_FALSE(run(*connection, {"SET", key, value}).first);
    reply get = run(*connection, {"GET", key});
    REQUIRE_FALSE(get.first);
    CHECK(get.second.as_string().size() == value.size());
    CHECK(get.second.as_string() == value);
    CHECK(run(*connection, {"STRLEN", key}).second.as_integer() ==
          static_cast<long long>(value.size()));
    destroy(connection);
}

TEST_CASE(
    "redis_connection: an error reply is redis_error with its text, and the connection "
    "stays usable",
    "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    auto connection = make_connection(io);
    REQUIRE_FALSE(connect(*connection, server.port()));

    REQUIRE_FALSE(run(*connection, {"SET", "text", "not a number"}).first);
    reply incr = run(*connection, {"INCR", "text"});
    CHECK(incr.first == redis_errc::redis_error);
    REQUIRE(incr.second.is_error());
    CHECK(incr.second.is_error_with_prefix("ERR"));

    reply unknown = run(*connection, {"NO-SUCH-COMMAND"});
    CHECK(unknown.first == redis_errc::redis_error);
    CHECK(unknown.second.is_error());

    // A script's own error is visible too.
    reply script = run(*connection, {"EVAL", "return redis.error_reply('BOOM it failed')", "0"});
    CHECK(script.first == redis_errc::redis_error);
    CHECK(script.second.is_error_with_prefix("BOOM"));

    reply ping = run(*connection, {"PING"});
    REQUIRE_FALSE(ping.first);
    CHECK(ping.second.as_string() == "PONG");
    destroy(connection);
}

TEST_CASE("redis_connection: 10,000 pipelined commands complete in order", "[redis_connection]") {
    redis_server server;
    io_threads io(1);
    constexpr int count = 10000;
    inbox<long long> values;
    std::atomic<int> errors{0};
    auto connection = make_connection(io);
    REQUIRE_FALSE(connect(*connection, server.port()));
    // All sent from one strand handler: hiredis buffers them and writes them together.
    on_strand(connection->get_executor(), [&] {
        for (int i = 0; i < count; ++i) {
            connection->command({"INCR", "pipelined"}, command_patience,
                                [&](std::error_code ec, redis_value value) {
                                    if (ec || !value.is_integer()) {
                                        ++errors;
                                        values.push(-1);
                                        return;
                                    }
                                    values.push(value.integer);
                                });
        }
        CHECK(connection->outstanding() == static_cast<std::size_t>(count));
    });
    REQUIRE(values.wait_for(count));
    CHECK(errors == 0);
    std::vector<long long> const got = values.items();
    REQUIRE(got.size() == static_cast<std::size_t>(count));
    bool in_order = true;
    for (int i = 0; i < count; ++i) {
        in_order = in_order && got[static_cast<std::size_t>(i)] == i + 1;
    }
    CHECK(in_order);
    CHECK(on_strand(connection->get_executor(), [&] { return connection->outstanding(); }) == 0);
    destroy(connection);
}

TEST_CASE("redis_connection: four connections on their own strands, two threads",
          "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    constexpr int connections = 4;
    constexpr int per_connection = 500;
    inbox<std::error_code> done;
    std::vector<connection_ptr> pool;
    for (int i = 0; i < connections; ++i) {
        pool.push_back(make_connection(io));
        REQUIRE_FALSE(connect(*pool.back(), server.port()));
    }
    for (auto& c : pool) {
        asio::post(c->get_executor(), [&done, c = c.get()] {
            for (int i = 0; i < per_connection; ++i) {
                c->command({"INCR", "shared"}, command_patience,
                           [&done](std::error_code ec, redis_value) { done.push(ec); });
            }
        });
    }
    REQUIRE(done.wait_for(connections * per_connection));
    for (std::error_code const& ec : done.items()) {
        CHECK_FALSE(ec);
    }
    CHECK(run(*pool.front(), {"GET", "shared"}).second.as_string() ==
          std::to_string(connections * per_connection));
    for (auto& c : pool) {
        destroy(c);
    }
}

TEST_CASE("redis_script: EVALSHA, falling back to EVAL on NOSCRIPT",
          "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    auto connection = make_connection(io);
    REQUIRE_FALSE(connect(*connection, server.port()));

    redis_script const script(
        "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])");
    // Our SHA1 is the one Redis computes.
    reply load = run(*connection, {"SCRIPT", "LOAD", script.source()});
    REQUIRE_FALSE(load.first);
    CHECK(load.second.as_string() == script.sha1());
    CHECK(redis_script::sha1_hex("") == "da39a3ee5e6b4b0d3255bfef95601890afd80709");

    auto run_script = [&](std::vector<std::string> keys, std::vector<std::string> args) {
        auto result = std::make_shared<inbox<reply>>();
        asio::post(connection->get_executor(), [&, result, keys, args] {
            script.run(*connection, keys, args, command_patience,
                       [result](std::error_code ec, redis_value v) {
                           result->push({ec, std::move(v)});
                       });
        });
        REQUIRE(result->wait_for(1));
        return result->at(0);
    };

    REQUIRE_FALSE(run(*connection, {"SCRIPT", "FLUSH"}).first);
    CHECK(run(*connection, {"SCRIPT", "EXISTS", script.sha1()}).second.elements.at(0).integer == 0);
    reply first = run_script({"name", "runs"}, {"alice"});  // NOSCRIPT, then EVAL
    REQUIRE_FALSE(first.first);
    CHECK(first.second.as_integer() == 1);
    CHECK(run(*connection, {"SCRIPT", "EXISTS", script.sha1()}).second.elements.at(0).integer == 1);
    reply second = run_script({"name", "runs"}, {"bob"});  // EVALSHA hits
    REQUIRE_FALSE(second.first);
    CHECK(second.second.as_integer() == 2);
    CHECK(run(*connection, {"GET", "name"}).second.as_string() == "bob");

    // A failing script reports its error, once, after the fallback too.
    redis_script const failing("return redis.error_reply('SCRIPTFAIL ' .. ARGV[1])");
    auto result = std::make_shared<inbox<reply>>();
    asio::post(connection->get_executor(), [&, result] {
        failing.run(*connection, {}, {"x"}, command_patience,
                    [result](std::error_code ec, redis_value v) {
                        result->push({ec, std::move(v)});
                    });
    });
    REQUIRE(result->wait_for(1));
    CHECK(result->at(0).first == redis_errc::redis_error);
    CHECK(result->at(0).second.is_error_with_prefix("SCRIPTFAIL x"));
    drain(connection->get_executor());
    CHECK(result->size() == 1);
    destroy(connection);
}

TEST_CASE("redis_connection: misuse is reported, never inline", "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    bool inline_call = false;
    bool returned = false;
    std::error_code before;
    inbox<std::error_code> connects;
    auto connection = make_connection(io);
    auto strand = connection->get_executor();

    // Before any connect.
    on_strand(strand, [&] {
        connection->command({"PING"}, 1s, [&](std::error_code ec, redis_value) {
            inline_call = !returned;
            before = ec;
        });
        returned = true;
    });
    drain(strand);
    CHECK_FALSE(inline_call);
    CHECK(before == asio::error::not_connected);

    // A second connect while connecting, then while connected.
    on_strand(strand, [&] {
        connection->async_connect("127.0.0.1", server.port(), command_patience,
                                  [&](std::error_code ec) { connects.push(ec); });
        connection->async_connect("127.0.0.1", server.port(), command_patience,
                                  [&](std::error_code ec) { connects.push(ec); });
    });
    REQUIRE(connects.wait_for(2));
    CHECK(connects.at(0) == asio::error::already_started);  // posted first: at once
    CHECK_FALSE(connects.at(1));
    CHECK(connect(*connection, server.port()) == asio::error::already_connected);

    // Commands that would change hiredis' reply routing, empty argv, bad timeouts.
    CHECK(run(*connection, {"SUBSCRIBE", "c"}).first == asio::error::invalid_argument);
    CHECK(run(*connection, {"psubscribe", "c*"}).first == asio::error::invalid_argument);
    CHECK(run(*connection, {"Monitor"}).first == asio::error::invalid_argument);
    CHECK(run(*connection, {}).first == asio::error::invalid_argument);
    CHECK(run(*connection, {"PING"}, 0s).first == asio::error::invalid_argument);
    CHECK(run(*connection, {"PING"}).second.as_string() == "PONG");

    // After close(): not connected; and connecting again works.
    on_strand(strand, [&] { connection->close(); });
    CHECK(run(*connection, {"PING"}).first == asio::error::not_connected);
    REQUIRE_FALSE(connect(*connection, server.port()));
    CHECK(run(*connection, {"PING"}).second.as_string() == "PONG");
    destroy(connection);
}

namespace {

// Starts `count` commands on `connection` that will not be answered soon (BLPOP on a key
// nobody pushes to, pipelined behind each other) and records each completion by index.
struct outstanding_commands {
    std::vector<std::atomic<int>> calls;
    inbox<std::error_code> completions;

    explicit outstanding_commands(std::size_t count) : calls(count) {}

    void start(redis_connection& connection) {
        on_strand(connection.get_executor(), [&] {
            for (std::size_t i = 0; i < calls.size(); ++i) {
                connection.command({"BLPOP", "never-pushed", "0"}, 60s,
                                   [this, i](std::error_code ec, redis_value) {
                                       ++calls[i];
                                       completions.push(ec);
                                   });
            }
            CHECK(connection.outstanding() == calls.size());
        });
    }
    bool each_exactly_once() {
        for (auto const& c : calls) {
            if (c != 1) {
                return false;
            }
        }
        return true;
    }
};

}  // namespace

TEST_CASE(
    "redis_connection: close() completes every outstanding command once with "
    "operation_aborted",
    "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    inbox<std::error_code> disconnects;
    inbox<std::string> messages;
    outstanding_commands pending(50);
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
        connection->set_message_handler([&](std::string c, std::string) { messages.push(c); });
    });
    REQUIRE_FALSE(connect(*connection, server.port()));
    pending.start(*connection);

    on_strand(strand, [&] {
        connection->close();
        CHECK(connection->outstanding() == 0);
        CHECK_FALSE(connection->is_connected());
        CHECK(pending.completions.size() == 0);  // posted, not called inline
    });
    REQUIRE(pending.completions.wait_for(pending.calls.size()));
    drain(strand);
    CHECK(pending.each_exactly_once());
    for (std::error_code const& ec : pending.completions.items()) {
        CHECK(ec == asio::error::operation_aborted);
    }
    CHECK(disconnects.size() == 0);  // the owner closed it: not a lost connection

    // The object can be used again.
    REQUIRE_FALSE(connect(*connection, server.port()));
    CHECK(run(*connection, {"PING"}).second.as_string() == "PONG");
    destroy(connection);
    CHECK(pending.completions.size() == pending.calls.size());
    CHECK(disconnects.size() == 0);
}

TEST_CASE(
    "redis_connection: destruction completes every outstanding command once, and nothing "
    "runs after",
    "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    inbox<std::error_code> disconnects;
    outstanding_commands pending(200);
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
    });
    REQUIRE_FALSE(connect(*connection, server.port()));
    pending.start(*connection);
    // Some replies are on their way when the object goes: a few quick ones in between.
    on_strand(strand, [&] {
        for (int i = 0; i < 20; ++i) {
            connection->command({"PING"}, 60s, [&pending](std::error_code ec, redis_value) {
                pending.completions.push(ec);
            });
        }
    });
    destroy(connection);
    REQUIRE(pending.completions.wait_for(pending.calls.size() + 20));
    drain(strand);
    CHECK(pending.each_exactly_once());
    // The first BLPOP blocks the client in Redis, which executes nothing after it for this
    // client: no command can have been answered, every one was aborted.
    for (std::error_code const& ec : pending.completions.items()) {
        CHECK(ec == asio::error::operation_aborted);
    }
    CHECK(disconnects.size() == 0);
    // The server saw the connection go (its client count drops back to our probe alone).
    auto probe = make_connection(io);
    REQUIRE_FALSE(connect(*probe, server.port()));
    bool gone = false;
    for (int i = 0; i < 200 && !gone; ++i) {
        reply clients = run(*probe, {"CLIENT", "LIST"});
        gone = clients.second.as_string().find("cmd=blpop") == std::string::npos;
        if (!gone) {
            std::this_thread::sleep_for(50ms);
        }
    }
    CHECK(gone);
    destroy(probe);
}

TEST_CASE("redis_connection: connect, pipeline and close churn, every handler runs once",
          "[redis_connection][threaded]") {
    redis_server server;
    io_threads io(2);
    constexpr int rounds = 100;
    constexpr int per_round = 20;
    std::vector<std::atomic<int>> calls(rounds * per_round);
    inbox<std::error_code> completions;
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    for (int round = 0; round < rounds; ++round) {
        REQUIRE_FALSE(connect(*connection, server.port()));
        // Outlives the round: an aborted handler may run after the next round started.
        auto first_reply = std::make_shared<inbox<int>>();
        on_strand(strand, [&, round, first_reply] {
            for (int i = 0; i < per_round; ++i) {
                std::size_t const index = static_cast<std::size_t>(round * per_round + i);
                connection->command({"INCR", "churn"}, command_patience,
                                    [&, index, i, first_reply](std::error_code ec, redis_value) {
                                        ++calls[index];
                                        completions.push(ec);
                                        if (i == 0) {
                                            first_reply->push(0);
                                        }
                                    });
            }
            // Half the rounds close at once (all aborted); the others once replies flow,
            // so some are answered and the rest aborted with replies on the wire.
            if (round % 2 == 0) {
                connection->close();
            }
        });
        if (round % 2 == 1) {
            REQUIRE(first_reply->wait_for(1));
            on_strand(strand, [&] { connection->close(); });
        }
    }
    REQUIRE(completions.wait_for(rounds * per_round));
    drain(strand);
    CHECK(completions.size() == static_cast<std::size_t>(rounds * per_round));
    std::size_t answered = 0;
    for (std::error_code const& ec : completions.items()) {
        if (!ec) {
            ++answered;
        } else {
            CHECK(ec == asio::error::operation_aborted);
        }
    }
    for (auto const& c : calls) {
        CHECK(c == 1);
    }
    // Each odd round waited for its first reply; each even round had none answered.
    CHECK(answered >= static_cast<std::size_t>(rounds / 2));
    CHECK(answered <= static_cast<std::size_t>(rounds / 2 * per_round));
    // Redis counted exactly the increments we saw answered, or more (some executed but
    // their replies were aborted on the way), never fewer.
    REQUIRE_FALSE(connect(*connection, server.port()));
    reply total = run(*connection, {"GET", "churn"});
    CHECK(std::stoll(total.second.as_string()) >= static_cast<long long>(answered));
    destroy(connection);
}
