// SPDX-License-Identifier: BSL-1.0
// redis_connection when things go wrong: nothing listening, a connect that never completes,
// a server that never answers, a server that sends garbage, redis-server killed with SIGKILL
// while commands wait (and restarted), and a write to a vanished peer (SIGPIPE).

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wsmanager/cluster/detail/sigpipe_guard.hpp>

#include "cluster_test_support.hpp"
#include "redis_server.hpp"

using namespace wsmanager_cluster_test;
using wsmanager::cluster::detail::sigpipe_guard;

namespace {

// A listening socket on 127.0.0.1 that never accepts. The kernel completes TCP handshakes
// into its accept queue by itself, so clients connect but nobody ever reads or answers.
// With a backlog of 0 and one connection already queued, the queue is full and the kernel
// drops further SYNs: a connect to it then never completes.
class silent_listener {
public:
    explicit silent_listener(int backlog) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(addr);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        REQUIRE(::listen(fd_, backlog) == 0);
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
    }
    ~silent_listener() {
        for (int fd : fillers_) {
            ::close(fd);
        }
        ::close(fd_);
    }
    silent_listener(silent_listener const&) = delete;
    silent_listener& operator=(silent_listener const&) = delete;

    int port() const noexcept { return port_; }
    int fd() const noexcept { return fd_; }

    /// Connects one plain client (blocking, bounded) so the accept queue fills.
    void fill_queue() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd >= 0);
        timeval tv{5, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<std::uint16_t>(port_));
        REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
        fillers_.push_back(fd);
    }

private:
    int fd_ = -1;
    int port_ = 0;
    std::vector<int> fillers_;
};

// Accepts one connection, reads what the client sends, answers with `bytes` and keeps the
// connection open until destroyed. Bounded: gives up after 20 s without a client.
class scripted_server {
public:
    explicit scripted_server(std::string bytes)
        : listener_(16), thread_([this, bytes = std::move(bytes)] { serve(bytes); }) {}
    ~scripted_server() {
        stop_ = true;
        thread_.join();
    }
    int port() const noexcept { return listener_.port(); }

private:
    void serve(std::string const& bytes) {
        pollfd listening{listener_.fd(), POLLIN, 0};
        if (::poll(&listening, 1, 20000) != 1) {
            return;
        }
        int const client = ::accept(listener_.fd(), nullptr, nullptr);
        if (client < 0) {
            return;
        }
        pollfd readable{client, POLLIN, 0};
        if (::poll(&readable, 1, 20000) == 1) {
            char buffer[4096];
            if (::recv(client, buffer, sizeof(buffer), 0) > 0) {
                ::send(client, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            }
        }
        while (!stop_) {
            std::this_thread::sleep_for(10ms);
        }
        ::close(client);
    }

    silent_listener listener_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace

TEST_CASE("redis_connection: connecting where nothing listens fails with connection_refused",
          "[redis_connection][failure][threaded]") {
    io_threads io(2);
    auto connection = make_connection(io);
    // A long timeout: the refusal must come from the kernel, not from the timer.
    std::error_code const ec = connect(*connection, free_loopback_port(), 60s);
    CHECK(ec == std::errc::connection_refused);
    CHECK_FALSE(on_strand(connection->get_executor(), [&] { return connection->is_connected(); }));
    CHECK_FALSE(on_strand(connection->get_executor(), [&] {
                    return connection->last_error_message();
                }).empty());
    destroy(connection);
}

TEST_CASE("redis_connection: a connect that never completes times out, and close() aborts one",
          "[redis_connection][failure][threaded]") {
    redis_server server;
    io_threads io(2);
    silent_listener full(0);
    full.fill_queue();
    inbox<std::error_code> disconnects;
    inbox<std::error_code> aborted;
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
    });

    CHECK(connect(*connection, full.port(), 300ms) == redis_errc::connect_timeout);
    CHECK_FALSE(on_strand(strand, [&] { return connection->is_connected(); }));

    // close() during a connect: the handler gets operation_aborted, once.
    on_strand(strand, [&] {
        connection->async_connect("127.0.0.1", full.port(), 60s,
                                  [&](std::error_code ec) { aborted.push(ec); });
        connection->close();
    });
    REQUIRE(aborted.wait_for(1));
    drain(strand);
    CHECK(aborted.size() == 1);
    CHECK(aborted.at(0) == asio::error::operation_aborted);

    // The same object connects to a real server afterwards.
    REQUIRE_FALSE(connect(*connection, server.port()));
    CHECK(run(*connection, {"PING"}).second.as_string() == "PONG");
    destroy(connection);
    CHECK(disconnects.size() == 0);  // never lost a connection it had
}

TEST_CASE(
    "redis_connection: a server that never answers gives command_timeout and a torn-down "
    "connection",
    "[redis_connection][failure][threaded]") {
    io_threads io(2);
    silent_listener mute(16);
    inbox<std::error_code> disconnects;
    inbox<std::error_code> replies;
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
    });
    REQUIRE_FALSE(connect(*connection, mute.port()));

    on_strand(strand, [&] {
        connection->command({"PING"}, 300ms,
                            [&](std::error_code ec, redis_value) { replies.push(ec); });
        // Pipelined behind it with a long timeout: fails with the teardown all the same.
        connection->command({"GET", "k"}, 60s,
                            [&](std::error_code ec, redis_value) { replies.push(ec); });
    });
    REQUIRE(replies.wait_for(2));
    CHECK(replies.at(0) == redis_errc::command_timeout);
    CHECK(replies.at(1) == redis_errc::command_timeout);
    REQUIRE(disconnects.wait_for(1));
    CHECK(disconnects.at(0) == redis_errc::command_timeout);
    CHECK_FALSE(on_strand(strand, [&] { return connection->is_connected(); }));
    CHECK(run(*connection, {"PING"}).first == asio::error::not_connected);
    drain(strand);
    CHECK(replies.size() == 2);
    CHECK(disconnects.size() == 1);
    destroy(connection);
}

TEST_CASE(
    "redis_connection: a short timeout behind a long one still fires, against a real "
    "server",
    "[redis_connection][failure][threaded]") {
    redis_server server;
    io_threads io(2);
    inbox<std::error_code> disconnects;
    inbox<std::error_code> replies;
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
    });
    REQUIRE_FALSE(connect(*connection, server.port()));
    on_strand(strand, [&] {
        // BLPOP blocks this client in Redis, so the PING behind it gets no reply; its
        // deadline is earlier than the one the timer was armed for.
        connection->command({"BLPOP", "never-pushed", "0"}, 60s,
                            [&](std::error_code ec, redis_value) { replies.push(ec); });
        connection->command({"PING"}, 300ms,
                            [&](std::error_code ec, redis_value) { replies.push(ec); });
    });
    REQUIRE(replies.wait_for(2));
    CHECK(replies.at(0) == redis_errc::command_timeout);
    CHECK(replies.at(1) == redis_errc::command_timeout);
    REQUIRE(disconnects.wait_for(1));
    CHECK(disconnects.at(0) == redis_errc::command_timeout);

    // The server is fine: a new connection works.
    REQUIRE_FALSE(connect(*connection, server.port()));
    CHECK(run(*connection, {"PING"}).second.as_string() == "PONG");
    destroy(connection);
    CHECK(replies.size() == 2);
    CHECK(disconnects.size() == 1);
}

TEST_CASE("redis_connection: bytes that are not RESP give protocol_error",
          "[redis_connection][failure][threaded]") {
    io_threads io(2);
    scripted_server liar("!this is not RESP\r\n");
    inbox<std::error_code> disconnects;
    auto connection = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
    });
    REQUIRE_FALSE(connect(*connection, liar.port()));
    reply r = run(*connection, {"PING"});
    CHECK(r.first == redis_errc::protocol_error);
    CHECK(r.second.is_nil());
    REQUIRE(disconnects.wait_for(1));
    CHECK(disconnects.at(0) == redis_errc::protocol_error);
    drain(strand);
    CHECK(disconnects.size() == 1);
    destroy(connection);
}

TEST_CASE(
    "redis_connection: redis-server killed mid-use: every command completes once, the loss "
    "is reported once, and a restarted server takes a new connect",
    "[redis_connection][failure][threaded]") {
    redis_server server;
    io_threads io(2);
    constexpr std::size_t count = 101;
    std::vector<std::atomic<int>> calls(count);
    inbox<std::error_code> completions;
    inbox<std::error_code> disconnects;
    inbox<std::error_code> subscriber_disconnects;
    inbox<std::error_code> subscribed;
    auto connection = make_connection(io);
    auto subscriber = make_connection(io);
    auto strand = connection->get_executor();
    on_strand(strand, [&] {
        connection->set_disconnect_handler([&](std::error_code ec) { disconnects.push(ec); });
    });
    on_strand(subscriber->get_executor(), [&] {
        subscriber->set_disconnect_handler(
            [&](std::error_code ec) { subscriber_disconnects.push(ec); });
    });
    REQUIRE_FALSE(connect(*connection, server.port()));
    REQUIRE_FALSE(connect(*subscriber, server.port()));
    on_strand(subscriber->get_executor(), [&] {
        subscriber->subscribe({"c"}, command_patience,
                              [&](std::error_code ec) { subscribed.push(ec); });
    });
    REQUIRE(subscribed.wait_for(1));
    REQUIRE_FALSE(subscribed.at(0));

    // A blocked BLPOP first, so nothing behind it is answered; then large SETs, so that
    // writes are still going when the server dies (a write to the dead socket: EPIPE, and
    // the SIGPIPE that must not kill us).
    std::string const big(128 * 1024, 'x');
    on_strand(strand, [&] {
        connection->command({"BLPOP", "never-pushed", "0"}, 60s,
                            [&](std::error_code ec, redis_value) {
                                ++calls[0];
                                completions.push(ec);
                            });
        for (std::size_t i = 1; i < count; ++i) {
            connection->command({"SET", "big" + std::to_string(i), big}, 60s,
                                [&, i](std::error_code ec, redis_value) {
                                    ++calls[i];
                                    completions.push(ec);
                                });
        }
    });
    server.kill();

    REQUIRE(completions.wait_for(count));
    REQUIRE(disconnects.wait_for(1));
    REQUIRE(subscriber_disconnects.wait_for(1));
    std::this_thread::sleep_for(200ms);
    drain(strand);
    drain(subscriber->get_executor());
    CHECK(completions.size() == count);
    for (auto const& c : calls) {
        CHECK(c == 1);
    }
    for (std::error_code const& ec : completions.items()) {
        CHECK(ec == redis_errc::connection_lost);
    }
    CHECK(disconnects.size() == 1);
    CHECK(disconnects.at(0) == redis_errc::connection_lost);
    CHECK(subscriber_disconnects.size() == 1);
    CHECK(subscriber_disconnects.at(0) == redis_errc::connection_lost);
    CHECK(run(*connection, {"PING"}).first == asio::error::not_connected);

    // Nothing listens now: refused. After the restart on the same port: connected again.
    CHECK(connect(*connection, server.port()) == std::errc::connection_refused);
    server.restart();
    REQUIRE_FALSE(connect(*connection, server.port()));
    CHECK(run(*connection, {"PING"}).second.as_string() == "PONG");
    REQUIRE_FALSE(connect(*subscriber, server.port()));
    destroy(connection);
    destroy(subscriber);
    CHECK(disconnects.size() == 1);
    CHECK(subscriber_disconnects.size() == 1);
}

TEST_CASE("sigpipe_guard: a write to a closed socket fails with EPIPE instead of killing us",
          "[sigpipe]") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    ::close(fds[1]);
    sigset_t before;
    REQUIRE(pthread_sigmask(SIG_SETMASK, nullptr, &before) == 0);
    ssize_t written = 0;
    int write_errno = 0;
    {
        sigpipe_guard const guard;
        written = ::write(fds[0], "x", 1);  // as hiredis writes: write(2), no MSG_NOSIGNAL
        write_errno = errno;
    }
    CHECK(written == -1);
    CHECK(write_errno == EPIPE);
    // The thread's signal mask is as it was, and no SIGPIPE is left pending.
    sigset_t after;
    REQUIRE(pthread_sigmask(SIG_SETMASK, nullptr, &after) == 0);
    CHECK(sigismember(&after, SIGPIPE) == sigismember(&before, SIGPIPE));
    sigset_t pending;
    REQUIRE(sigpending(&pending) == 0);
    CHECK(sigismember(&pending, SIGPIPE) == 0);
    ::close(fds[0]);
}
