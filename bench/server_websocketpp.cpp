// SPDX-License-Identifier: BSL-1.0
//
// The bench protocol on websocketpp 0.8.2 (standalone Asio, websocketpp::config::asio,
// logging off, TCP_NODELAY), one thread, as a websocketpp application is usually written:
// one asio::post per message, and for each connection
//   plain     server.send(hdl, text, opcode::text): websocketpp allocates a message, copies
//             the payload, validates its UTF-8 and frames it, per connection;
//   prepared  one message framed once (frame::prepare_header, set_prepared) and the same
//             message_ptr sent to every connection.
// Compiled as C++20 with the project's websocketpp overlay (cmake/WebsocketppCxx20Overlay).

#include "bench_common.hpp"
#include "bench_servers.hpp"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <websocketpp/config/asio_no_tls.hpp>
#include <websocketpp/server.hpp>

namespace wsbench_local {
namespace {

using server_type = websocketpp::server<websocketpp::config::asio>;
using websocketpp::connection_hdl;

class websocketpp_bench {
public:
    websocketpp_bench(server_settings const& settings, bool prepared)
        : prepared_(prepared) {
        server_.clear_access_channels(websocketpp::log::alevel::all);
        server_.clear_error_channels(websocketpp::log::elevel::all);
        server_.init_asio();
        server_.set_reuse_addr(true);
        server_.set_listen_backlog(asio::socket_base::max_listen_connections);
        server_.set_socket_init_handler([](connection_hdl, asio::ip::tcp::socket& socket) {
            std::error_code ignored;
            socket.set_option(asio::ip::tcp::no_delay(true), ignored);
        });
        server_.set_open_handler([this](connection_hdl hdl) {
            connections_.insert(hdl);
            std::error_code ec;
            auto connection = server_.get_con_from_hdl(hdl, ec);
            if (!ec) {
                auto const user = user_index_of(connection->get_resource());
                if (user >= 0) users_[user] = hdl;
            }
        });
        server_.set_close_handler([this](connection_hdl hdl) { forget(hdl); });
        server_.set_fail_handler([this](connection_hdl hdl) { forget(hdl); });
        server_.set_message_handler([this](connection_hdl hdl, server_type::message_ptr message) {
            on_message(hdl, message);
        });
        server_.listen(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
        server_.start_accept();

        auto& io = server_.get_io_service();
        signals_ = std::make_unique<asio::signal_set>(io, SIGINT, SIGTERM);
        signals_->async_wait([](std::error_code ec, int) {
            if (!ec) std::_Exit(0);
        });
        lifetime_ = std::make_unique<asio::steady_timer>(io);
        lifetime_->expires_after(std::chrono::milliseconds(static_cast<long>(settings.max_lifetime_s * 1000)));
        lifetime_->async_wait([](std::error_code ec) {
            if (!ec) std::_Exit(3);
        });
        timer_ = std::make_unique<asio::steady_timer>(io);
    }

    void run() {
        std::error_code ec;
        announce_port(server_.get_local_endpoint(ec).port());
        server_.run();
    }

private:
    struct job {
        std::string action;
        std::int64_t count = 0;
        std::size_t size = 200;
        std::size_t expect = 0;
        std::int64_t users = 1;
        std::chrono::microseconds interval{10'000};
        std::int64_t i = 0;
        bool waited = false;
        std::chrono::steady_clock::time_point give_up, next;
        std::mt19937_64 random{12345};
    };

    void forget(connection_hdl hdl) {
        connections_.erase(hdl);
        for (auto it = users_.begin(); it != users_.end(); ++it) {
            if (!it->second.owner_before(hdl) && !hdl.owner_before(it->second)) {
                users_.erase(it);
                break;
            }
        }
    }

    void on_message(connection_hdl hdl, server_type::message_ptr const& message) {
        std::string const& text = message->get_payload();
        auto const action = json_string(text, "action");
        if (action == "ping") {
            std::string pong = "{\"type\":\"pong\",\"timestamp\":";
            pong += std::to_string(json_int(text, "timestamp", 0));
            pong += '}';
            std::error_code ec;
            server_.send(hdl, pong, websocketpp::frame::opcode::text, ec);
        } else if (action == "bench" || action == "bench_fanout" || action == "bench_unicast" ||
                   action == "bench_lone") {
            auto j = std::make_shared<job>();
            j->action = action == "bench" ? std::string("bench_fanout") : std::string(action);  // bench: wsload
            j->count = std::clamp<std::int64_t>(json_int(text, "count", 0), 0, max_count);
            j->size = static_cast<std::size_t>(std::clamp<std::int64_t>(json_int(text, "size", 200), 0, max_size));
            j->expect = static_cast<std::size_t>(std::clamp<std::int64_t>(json_int(text, "expect", 0), 0, 1 << 20));
            j->users = std::clamp<std::int64_t>(json_int(text, "users", 1), 1, 1 << 20);
            j->interval = std::chrono::microseconds(std::clamp<std::int64_t>(json_int(text, "interval_us", 10'000), 0, 10'000'000));
            j->give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
            asio::post(server_.get_io_service(), [this, j] { step(j); });
        }
    }

    void broadcast(std::string const& text) {
        std::error_code ec;
        if (!prepared_) {
            for (auto const& hdl : connections_) server_.send(hdl, text, websocketpp::frame::opcode::text, ec);
            return;
        }
        if (connections_.empty()) return;
        auto connection = server_.get_con_from_hdl(*connections_.begin(), ec);
        if (ec) return;
        auto message = connection->get_message(websocketpp::frame::opcode::text, text.size());
        message->set_payload(text);
        websocketpp::frame::basic_header const basic(websocketpp::frame::opcode::text, text.size(), true, false);
        websocketpp::frame::extended_header const extended(text.size());
        message->set_header(websocketpp::frame::prepare_header(basic, extended));
        message->set_prepared(true);
        for (auto const& hdl : connections_) server_.send(hdl, message, ec);
    }

    /// One message per loop turn (the lone job: one per interval).
    void step(std::shared_ptr<job> const& j) {
        if (!j->waited) {
            if (connections_.size() < j->expect && std::chrono::steady_clock::now() < j->give_up) {
                timer_->expires_after(std::chrono::milliseconds(1));
                timer_->async_wait([this, j](std::error_code) { step(j); });
                return;
            }
            j->waited = true;
            j->next = std::chrono::steady_clock::now() + j->interval;
            if (j->action == "bench_lone") {
                timer_->expires_at(j->next);
                timer_->async_wait([this, j](std::error_code) { step(j); });
                return;
            }
        }
        if (j->i >= j->count) {
            broadcast(bench_done_message(j->count));
            return;
        }
        auto const text = bench_message(j->i++, j->size);
        if (j->action == "bench_unicast") {
            auto const user = static_cast<long>(j->random() % static_cast<std::uint64_t>(j->users));
            auto it = users_.find(user);
            std::error_code ec;
            if (it != users_.end()) server_.send(it->second, text, websocketpp::frame::opcode::text, ec);
        } else {
            broadcast(text);
        }
        if (j->action == "bench_lone" && j->interval.count() > 0) {
            j->next += j->interval;
            timer_->expires_at(j->next);
            timer_->async_wait([this, j](std::error_code) { step(j); });
        } else {
            asio::post(server_.get_io_service(), [this, j] { step(j); });
        }
    }

    bool prepared_;
    server_type server_;
    std::set<connection_hdl, std::owner_less<connection_hdl>> connections_;
    std::map<long, connection_hdl> users_;
    std::unique_ptr<asio::signal_set> signals_;
    std::unique_ptr<asio::steady_timer> lifetime_;
    std::unique_ptr<asio::steady_timer> timer_;
};

}  // namespace

int serve_websocketpp(server_settings const& settings, bool prepared) {
    prepare_server_process();
    websocketpp_bench server(settings, prepared);
    server.run();
    return 0;
}

}  // namespace wsbench_local
