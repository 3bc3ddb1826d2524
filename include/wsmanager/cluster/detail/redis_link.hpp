// SPDX-License-Identifier: BSL-1.0
#pragma once

// A node's two connections to Redis: one for commands and scripts, one subscribed to the bus
// and to the node's inbox. It connects, authenticates and selects the database, subscribes,
// and reports up and down; after any loss (Redis restarted, `CLIENT KILL TYPE pubsub`, a
// command that timed out on a slow Redis) it drops both connections and connects again with
// jittered exponential backoff, then resubscribes. A probe published to the node's own inbox
// every probe interval catches a subscription that died silently (hiredis cannot PING on a
// subscribed connection).
//
// Manager strand only: every member, every handler.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/error.hpp>
#include <asio/steady_timer.hpp>

#include <wsmanager/cluster/detail/redis_connection.hpp>
#include <wsmanager/cluster/detail/redis_script.hpp>
#include <wsmanager/cluster/detail/redis_url.hpp>
#include <wsmanager/cluster/detail/redis_value.hpp>
#include <wsmanager/log.hpp>

namespace wsmanager::cluster::detail {

struct redis_link_settings {
    using duration = std::chrono::steady_clock::duration;

    redis_url url;
    duration connect_timeout = std::chrono::seconds(2);
    duration command_timeout = std::chrono::seconds(2);
    duration backoff_initial = std::chrono::milliseconds(100);
    duration backoff_max = std::chrono::seconds(5);
    duration probe_interval = std::chrono::seconds(1);
    int probe_misses = 3;  ///< probes lost in a row that mean the subscription is dead
};

class redis_link : public std::enable_shared_from_this<redis_link> {
public:
    using strand_type = redis_connection::strand_type;
    using message_handler = std::function<void(std::string const& channel, std::string payload)>;
    using state_handler = std::function<void(bool up)>;

    redis_link(strand_type strand, redis_link_settings settings, std::vector<std::string> channels,
               std::string probe_channel, std::shared_ptr<wsmanager::detail::logger const> log)
        : strand_(std::move(strand)),
          settings_(std::move(settings)),
          channels_(std::move(channels)),
          probe_channel_(std::move(probe_channel)),
          log_(std::move(log)),
          retry_(strand_),
          probe_timer_(strand_),
          random_(std::random_device{}()) {}

    redis_link(redis_link const&) = delete;
    redis_link& operator=(redis_link const&) = delete;

    /// What arrives on the subscribed channels, and every change of up or down.
    void set_handlers(message_handler on_message, state_handler on_state) {
        on_message_ = std::move(on_message);
        on_state_ = std::move(on_state);
    }

    /// Connects, and keeps connecting until stop(). `first` gets the first attempt's result.
    void start(std::function<void(std::error_code)> first) {
        stopped_ = false;
        first_attempt_ = std::move(first);
        connect();
    }

    void stop() {
        stopped_ = true;
        retry_.cancel();
        probe_timer_.cancel();
        teardown();
    }

    bool up() const noexcept { return up_; }
    std::uint64_t reconnects() const noexcept { return reconnects_; }

    /// A command on the command connection; `asio::error::not_connected` while down.
    void command(std::vector<std::string> argv, redis_connection::command_handler handler) {
        if (!up_ || !commands_) {
            asio::post(strand_, [handler = std::move(handler)] {
                handler(asio::error::not_connected, redis_value());
            });
            return;
        }
        commands_->command(std::move(argv), settings_.command_timeout, std::move(handler));
    }

    /// A Lua script (EVALSHA, EVAL when Redis does not know it yet).
    void run(redis_script const& script, std::vector<std::string> const& keys,
             std::vector<std::string> const& args, redis_connection::command_handler handler) {
        if (!up_ || !commands_) {
            asio::post(strand_, [handler = std::move(handler)] {
                handler(asio::error::not_connected, redis_value());
            });
            return;
        }
        script.run(*commands_, keys, args, settings_.command_timeout, std::move(handler));
    }

    void publish(std::string const& channel, std::string payload,
                 std::function<void(std::error_code)> done) {
        command({"PUBLISH", channel, std::move(payload)},
                [done = std::move(done)](std::error_code ec, redis_value const&) { done(ec); });
    }

private:
    void connect() {
        if (stopped_) return;
        teardown();
        auto const generation = ++generation_;
        commands_ = std::make_unique<redis_connection>(strand_);
        subscriber_ = std::make_unique<redis_connection>(strand_);
        auto weak = weak_from_this();
        auto lost = [weak, generation](std::error_code ec) {
            if (auto self = weak.lock(); self && self->generation_ == generation) self->lose(ec);
        };
        commands_->set_disconnect_handler(lost);
        subscriber_->set_disconnect_handler(lost);
        subscriber_->set_message_handler(
            [weak, generation](std::string channel, std::string payload) {
                auto self = weak.lock();
                if (!self || self->generation_ != generation) return;
                self->received(channel, std::move(payload));
            });
        connect_step_ = 0;
        commands_->async_connect(settings_.url.host, settings_.url.port, settings_.connect_timeout,
                                 [next = next_step(generation)](std::error_code ec) {
                                     next(ec, redis_value());
                                 });
    }

    /// The connect sequence goes one step at a time; any failure loses the attempt.
    std::function<void(std::error_code, redis_value const&)> next_step(std::uint64_t generation) {
        return [weak = weak_from_this(), generation](std::error_code ec, redis_value const&) {
            auto self = weak.lock();
            if (!self || self->generation_ != generation) return;
            if (ec) return self->lose(ec);
            self->advance(generation);
        };
    }

    void advance(std::uint64_t generation) {
        ++connect_step_;
        auto const& url = settings_.url;
        auto next = next_step(generation);
        switch (connect_step_) {
            case 1:  // AUTH, when the URL has a password
                if (url.password.empty()) return advance(generation);
                commands_->command(auth_argv(), settings_.command_timeout, next);
                return;
            case 2:
                if (url.db == 0) return advance(generation);
                commands_->command({"SELECT", std::to_string(url.db)}, settings_.command_timeout,
                                   next);
                return;
            case 3:
                subscriber_->async_connect(url.host, url.port, settings_.connect_timeout,
                                           [next](std::error_code ec) { next(ec, redis_value()); });
                return;
            case 4:
                if (url.password.empty()) return advance(generation);
                subscriber_->command(auth_argv(), settings_.command_timeout, next);
                return;
            case 5:
                subscriber_->subscribe(channels_, settings_.command_timeout,
                                       [next](std::error_code ec) { next(ec, redis_value()); });
                return;
            default:
                up_ = true;
                backoff_ = {};
                last_probe_ = std::chrono::steady_clock::now();
                schedule_probe();
                finish_first_attempt({});
                if (on_state_) on_state_(true);
                return;
        }
    }

    std::vector<std::string> auth_argv() const {
        if (settings_.url.username.empty()) return {"AUTH", settings_.url.password};
        return {"AUTH", settings_.url.username, settings_.url.password};
    }

    void lose(std::error_code ec) {
        bool const was_up = up_;
        teardown();
        if (was_up) {
            ++reconnects_;
            log_->write(LogLevel::warning, "cluster_disconnected",
                        "Redis connection lost (" + ec.message() + "); reconnecting");
            if (on_state_) on_state_(false);
        } else {
            log_->write(LogLevel::debug, "cluster_connect_failed", ec.message());
        }
        finish_first_attempt(ec);
        if (stopped_) return;
        // Jittered exponential backoff: 100 ms doubling to 5 s, each wait 50-150 % of it.
        backoff_ = std::clamp(backoff_ * 2, settings_.backoff_initial, settings_.backoff_max);
        std::uniform_real_distribution<double> jitter(0.5, 1.5);
        retry_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            backoff_ * jitter(random_)));
        retry_.async_wait([weak = weak_from_this()](std::error_code wait_ec) {
            auto self = weak.lock();
            if (wait_ec || !self) return;
            self->connect();
        });
    }

    void teardown() {
        up_ = false;
        connect_step_ = 0;
        ++generation_;  // the handlers of the connections being dropped do nothing
        probe_timer_.cancel();
        if (commands_) commands_->close();
        if (subscriber_) subscriber_->close();
        commands_.reset();
        subscriber_.reset();
    }

    void finish_first_attempt(std::error_code ec) {
        if (!first_attempt_) return;
        auto first = std::move(first_attempt_);
        first_attempt_ = nullptr;
        first(ec);
    }

    void received(std::string const& channel, std::string payload) {
        if (channel == probe_channel_ && payload == probe_text) {
            last_probe_ = std::chrono::steady_clock::now();
            return;
        }
        if (on_message_) on_message_(channel, std::move(payload));
    }

    void schedule_probe() {
        probe_timer_.expires_after(settings_.probe_interval);
        probe_timer_.async_wait([weak = weak_from_this(), generation = generation_](
                                    std::error_code ec) {
            auto self = weak.lock();
            if (ec || !self || self->generation_ != generation || !self->up_) return;
            auto const silent = std::chrono::steady_clock::now() - self->last_probe_;
            if (silent > self->settings_.probe_interval * self->settings_.probe_misses) {
                return self->lose(asio::error::timed_out);  // the subscription died silently
            }
            self->publish(self->probe_channel_, probe_text, [](std::error_code) {});
            self->schedule_probe();
        });
    }

    static constexpr char const* probe_text = "probe";

    strand_type strand_;
    redis_link_settings settings_;
    std::vector<std::string> channels_;
    std::string probe_channel_;
    std::shared_ptr<wsmanager::detail::logger const> log_;
    message_handler on_message_;
    state_handler on_state_;
    std::function<void(std::error_code)> first_attempt_;

    std::unique_ptr<redis_connection> commands_;
    std::unique_ptr<redis_connection> subscriber_;
    asio::steady_timer retry_;
    asio::steady_timer probe_timer_;
    std::mt19937 random_;
    redis_link_settings::duration backoff_{};
    std::chrono::steady_clock::time_point last_probe_{};
    std::uint64_t generation_ = 0;
    std::uint64_t reconnects_ = 0;
    int connect_step_ = 0;
    bool up_ = false;
    bool stopped_ = true;
};

}  // namespace wsmanager::cluster::detail
