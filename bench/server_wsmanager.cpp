// SPDX-License-Identifier: BSL-1.0
//
// The bench protocol served by wsmanager, as a host application uses it: WebSocketManager<>
// on the host's io_context (run by --threads threads), host actions registered with
// on_action, and host coroutines that co_await each broadcast_message / send_to_user /
// notify_user before building the next message. Framing, queuing, the cork and the writes
// are the library's.
//
// Settings: host 127.0.0.1, port 0, max_connections 65536, no per-user connection limit,
// no inbound frame rate limit (the default 100 frames/s per connection would refuse a
// client answering confirmations as fast as they come), logging at warnings; the rest are
// the library defaults, but for Options::ping_interval with --ping-interval-ms.
//
// With --redis-url the manager is one node of a cluster (the Redis backplane, built when the
// wsmanager::cluster target exists: WSMANAGER_BENCH_CLUSTER). Its actions then count the
// whole cluster's connections (get_status().cluster, refreshed by each 1 s heartbeat), and
// its broadcasts and confirmations reach the users on every node.

#include "bench_common.hpp"
#include "bench_servers.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <wsmanager/wsmanager.hpp>
#if WSMANAGER_BENCH_CLUSTER
#include <wsmanager/cluster.hpp>
#endif

namespace wsbench_local {
namespace {

using manager_type = wsmanager::WebSocketManager<>;
using wsmanager::Message;

std::int64_t int_member(rapidjson::Value const& frame, char const* key, std::int64_t fallback) {
    auto it = frame.FindMember(key);
    if (it == frame.MemberEnd() || !it->value.IsInt64()) return fallback;
    return it->value.GetInt64();
}

void report_failure(char const* what, std::exception_ptr error) {
    if (!error) return;
    try {
        std::rethrow_exception(error);
    } catch (std::exception const& e) {
        std::fprintf(stderr, "wsmanager_bench server: %s: %s\n", what, e.what());
    } catch (...) {
        std::fprintf(stderr, "wsmanager_bench server: %s failed\n", what);
    }
}

/// One bench_confirm job, shared by its workers (which may run on several threads).
struct confirm_job {
    confirm_job(std::int64_t total, int workers, int user_count, wsmanager::ActionContext to)
        : count(total), users(user_count), workers_left(workers), samples(workers),
          tallies(workers), reply_to(std::move(to)) {}

    struct tally {
        std::uint64_t by_reason[wsmanager::confirmation_reason_count] = {};
        std::uint64_t errors = 0;
        std::uint64_t not_proceed = 0;
    };

    std::int64_t const count;
    int const users;
    std::atomic<std::int64_t> next{0};
    std::atomic<int> workers_left;
    std::int64_t started_ns = mono_ns();
    std::vector<std::vector<std::int64_t>> samples;  ///< one per worker: notify -> resolve
    std::vector<tally> tallies;                       ///< one per worker
    wsmanager::ActionContext reply_to;                ///< the control connection
};

class bench_host {
public:
    bench_host(asio::io_context& io, manager_type& manager, bool clustered)
        : io_(io), manager_(manager), clustered_(clustered) {}

    void install() {
        auto const on_fanout = [this](wsmanager::ActionContext const&, rapidjson::Value const& frame) {
            auto const [count, size, expect] = common_fields(frame);
            spawn("bench_fanout", fanout(count, size, expect));
        };
        manager_.on_action("bench_fanout", on_fanout);
        manager_.on_action("bench", on_fanout);  // wsbench's wsload speaks this name
        manager_.on_action("bench_unicast", [this](wsmanager::ActionContext const&,
                                                   rapidjson::Value const& frame) {
            auto const [count, size, expect] = common_fields(frame);
            auto const users = std::clamp<std::int64_t>(int_member(frame, "users", 1), 1, 1 << 20);
            spawn("bench_unicast", unicast(count, size, expect, users));
        });
        manager_.on_action("bench_lone", [this](wsmanager::ActionContext const&,
                                                rapidjson::Value const& frame) {
            auto const [count, size, expect] = common_fields(frame);
            auto const interval = std::clamp<std::int64_t>(int_member(frame, "interval_us", 10'000), 0, 10'000'000);
            spawn("bench_lone", lone(count, size, expect, std::chrono::microseconds(interval)));
        });
        manager_.on_action("bench_confirm", [this](wsmanager::ActionContext const& context,
                                                   rapidjson::Value const& frame) {
            auto const [count, size, expect] = common_fields(frame);
            static_cast<void>(size);
            auto const inflight = std::clamp<std::int64_t>(int_member(frame, "inflight", 1), 1, 100'000);
            auto const users = std::clamp<std::int64_t>(int_member(frame, "users", 1), 1, 1 << 20);
            auto job = std::make_shared<confirm_job>(count, static_cast<int>(inflight),
                                                     static_cast<int>(users), context);
            spawn("bench_confirm", confirm(job, expect));
        });
        manager_.on_action("bench_ready", [this](wsmanager::ActionContext const& context,
                                                 rapidjson::Value const& frame) {
            auto const [count, size, expect] = common_fields(frame);
            static_cast<void>(count);
            static_cast<void>(size);
            spawn("bench_ready", ready(context, expect));
        });
    }

private:
    struct fields {
        std::int64_t count;
        std::size_t size;
        std::size_t expect;
    };
    static fields common_fields(rapidjson::Value const& frame) {
        return {std::clamp<std::int64_t>(int_member(frame, "count", 0), 0, max_count),
                static_cast<std::size_t>(std::clamp<std::int64_t>(int_member(frame, "size", 200), 0, max_size)),
                static_cast<std::size_t>(std::clamp<std::int64_t>(int_member(frame, "expect", 0), 0, 1 << 20))};
    }

    template <class Awaitable>
    void spawn(char const* what, Awaitable work) {
        asio::co_spawn(io_, std::move(work), [what](std::exception_ptr e) { report_failure(what, e); });
    }

    /// The connections the host can reach: this node's, or in a cluster every live node's as
    /// of the last heartbeat (0 while Redis is out of reach).
    std::size_t connections_seen() const {
        if (!clustered_) return manager_.get_connection_count();
        auto const status = manager_.get_status();
        return status.cluster.connected ? status.cluster.connections : 0;
    }

    /// Waits (at most `limit`) until `expect` connections are registered: a client that has
    /// its 101 may not be in the registry yet, and would miss the first messages.
    asio::awaitable<bool> wait_for_connections(std::size_t expect,
                                               std::chrono::seconds limit = std::chrono::seconds(10)) {
        asio::steady_timer timer(co_await asio::this_coro::executor);
        auto const give_up = std::chrono::steady_clock::now() + limit;
        while (connections_seen() < expect) {
            if (std::chrono::steady_clock::now() >= give_up) co_return false;
            timer.expires_after(std::chrono::milliseconds(1));
            co_await timer.async_wait(asio::use_awaitable);
        }
        co_return true;
    }

    /// bench_ready: answers once every connection is seen (in a cluster, after the other
    /// nodes' heartbeats have counted theirs), so the load generator starts its clock then.
    asio::awaitable<void> ready(wsmanager::ActionContext context, std::size_t expect) {
        bool const ok = co_await wait_for_connections(expect, std::chrono::seconds(15));
        json_line answer;
        answer.add("type", "bench_ready").add("ready", ok ? 1 : 0);
        answer.add("connections", static_cast<std::uint64_t>(connections_seen()));
        context.reply(Message::from_json(answer.str()));
    }

    asio::awaitable<void> fanout(std::int64_t count, std::size_t size, std::size_t expect) {
        co_await wait_for_connections(expect);
        for (std::int64_t i = 0; i < count; ++i) {
            co_await manager_.broadcast_message(Message::from_json(bench_message(i, size)));
        }
        co_await manager_.broadcast_message(Message::from_json(bench_done_message(count)));
    }

    asio::awaitable<void> unicast(std::int64_t count, std::size_t size, std::size_t expect,
                                  std::int64_t users) {
        co_await wait_for_connections(expect);
        std::mt19937_64 random(12345);
        for (std::int64_t i = 0; i < count; ++i) {
            auto user = "u" + std::to_string(random() % static_cast<std::uint64_t>(users));
            co_await manager_.send_to_user(std::move(user), Message::from_json(bench_message(i, size)));
        }
        co_await manager_.broadcast_message(Message::from_json(bench_done_message(count)));
    }

    asio::awaitable<void> lone(std::int64_t count, std::size_t size, std::size_t expect,
                               std::chrono::microseconds interval) {
        co_await wait_for_connections(expect);
        asio::steady_timer timer(co_await asio::this_coro::executor);
        auto next = std::chrono::steady_clock::now();
        for (std::int64_t i = 0; i < count; ++i) {
            if (interval.count() > 0) {  // 0: back to back, each awaited
                next += interval;
                timer.expires_at(next);
                co_await timer.async_wait(asio::use_awaitable);
            }
            co_await manager_.broadcast_message(Message::from_json(bench_message(i, size)));
        }
        co_await manager_.broadcast_message(Message::from_json(bench_done_message(count)));
    }

    asio::awaitable<void> confirm(std::shared_ptr<confirm_job> job, std::size_t expect) {
        co_await wait_for_connections(expect);
        job->started_ns = mono_ns();
        auto const workers = static_cast<int>(job->samples.size());
        for (int w = 0; w < workers; ++w) spawn("bench_confirm worker", confirm_worker(job, w));
    }

    /// One notify_user in flight: the next starts when the previous has resolved.
    asio::awaitable<void> confirm_worker(std::shared_ptr<confirm_job> job, int worker) {
        auto const user = "u" + std::to_string(worker % job->users);
        auto& samples = job->samples[static_cast<std::size_t>(worker)];
        auto& tally = job->tallies[static_cast<std::size_t>(worker)];
        for (;;) {
            auto const k = job->next.fetch_add(1, std::memory_order_relaxed);
            if (k >= job->count) break;
            wsmanager::TaskStepResult step;
            step.step = "review";
            step.result = "{\"rows\":42}";
            step.completed = true;
            step.message = "Proceed with the import?";
            step.status = "completed";
            std::error_code ec;
            auto const started = mono_ns();
            auto const decision = co_await manager_.notify_user(
                std::move(step), user, "task-" + std::to_string(k), static_cast<int>(k % 1000),
                asio::redirect_error(asio::use_awaitable, ec));
            samples.push_back(mono_ns() - started);
            if (ec) {
                ++tally.errors;
            } else {
                ++tally.by_reason[static_cast<std::size_t>(decision.reason)];
                if (!decision.proceed) ++tally.not_proceed;
            }
        }
        if (job->workers_left.fetch_sub(1, std::memory_order_acq_rel) == 1) finish(*job);
    }

    static void finish(confirm_job& job) {
        auto const elapsed_ns = mono_ns() - job.started_ns;
        std::vector<std::int64_t> all;
        confirm_job::tally total;
        for (std::size_t w = 0; w < job.samples.size(); ++w) {
            all.insert(all.end(), job.samples[w].begin(), job.samples[w].end());
            for (std::size_t r = 0; r < wsmanager::confirmation_reason_count; ++r) {
                total.by_reason[r] += job.tallies[w].by_reason[r];
            }
            total.errors += job.tallies[w].errors;
            total.not_proceed += job.tallies[w].not_proceed;
        }
        std::sort(all.begin(), all.end());
        auto quantile_us = [&](double q) -> std::int64_t {
            if (all.empty()) return 0;
            auto index = static_cast<std::size_t>(q * static_cast<double>(all.size()));
            index = std::min(index, all.size() - 1);
            return all[index] / 1000;
        };
        double sum = 0;
        for (auto v : all) sum += static_cast<double>(v);
        json_line result;
        result.add("type", "bench_confirm_result")
            .add("resolved", static_cast<std::uint64_t>(all.size()))
            .add("by_user", total.by_reason[static_cast<std::size_t>(wsmanager::ConfirmationReason::user)])
            .add("by_timeout", total.by_reason[static_cast<std::size_t>(wsmanager::ConfirmationReason::timeout)])
            .add("errors", total.errors)
            .add("not_proceed", total.not_proceed)
            .add("elapsed_us", elapsed_ns / 1000)
            .add("p50_us", quantile_us(0.50))
            .add("p90_us", quantile_us(0.90))
            .add("p99_us", quantile_us(0.99))
            .add("max_us", all.empty() ? std::int64_t{0} : all.back() / 1000)
            .add("mean_us", static_cast<std::int64_t>(all.empty() ? 0.0 : sum / static_cast<double>(all.size()) / 1000.0));
        job.reply_to.reply(Message::from_json(result.str()));
    }

    asio::io_context& io_;
    manager_type& manager_;
    bool const clustered_;
};

/// The manager, a node of a cluster when --redis-url is given; nullptr (and why) when that
/// cannot be.
std::unique_ptr<manager_type> make_manager(asio::io_context& io, wsmanager::Options options,
                                           server_settings const& settings) {
    if (settings.redis_url.empty()) return std::make_unique<manager_type>(io.get_executor(), options);
#if WSMANAGER_BENCH_CLUSTER
    options.redis_url = settings.redis_url;
    options.node_id = settings.node_id;
    options.cluster_prefix = settings.cluster_prefix;
    wsmanager::cluster::RedisOptions redis;
    if (settings.heartbeat_ms > 0) redis.heartbeat_interval = std::chrono::milliseconds(settings.heartbeat_ms);
    auto backplane = wsmanager::cluster::redis(options, redis);
    return std::make_unique<manager_type>(io.get_executor(), options, std::move(backplane));
#else
    std::fprintf(stderr, "wsmanager_bench server: --redis-url, but built without wsmanager::cluster\n");
    return nullptr;
#endif
}

}  // namespace

int serve_wsmanager(server_settings const& settings) {
    prepare_server_process();
    auto const threads = std::max(1u, settings.threads);
    asio::io_context io(static_cast<int>(threads));

    wsmanager::Options options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.max_connections = 65536;
    options.max_connections_per_user = 0;
    options.max_frames_per_second = 0;
    options.callback_timeout = std::chrono::seconds(60);
    options.log_level = wsmanager::LogLevel::warning;
    if (settings.ping_interval_ms > 0) options.ping_interval = std::chrono::milliseconds(settings.ping_interval_ms);

    auto const managed = make_manager(io, options, settings);
    if (!managed) return 2;
    auto& manager = *managed;
    bench_host host(io, manager, !settings.redis_url.empty());
    host.install();

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([](std::error_code ec, int) {
        if (ec) return;
        std::fflush(stderr);
        std::_Exit(0);
    });
    asio::steady_timer lifetime(io);
    lifetime.expires_after(std::chrono::milliseconds(static_cast<long>(settings.max_lifetime_s * 1000)));
    lifetime.async_wait([](std::error_code ec) {
        if (ec) return;
        std::fprintf(stderr, "wsmanager_bench server: lifetime over, leaving\n");
        std::_Exit(3);
    });
    asio::co_spawn(
        io,
        [&manager]() -> asio::awaitable<void> {
            co_await manager.start_server();
            announce_port(manager.local_port());
        },
        [](std::exception_ptr e) {
            if (!e) return;
            report_failure("start_server", e);
            std::_Exit(2);
        });

    std::vector<std::thread> pool;
    for (unsigned i = 1; i < threads; ++i) pool.emplace_back([&io] { io.run(); });
    io.run();
    for (auto& t : pool) t.join();
    std::fflush(stderr);
    std::_Exit(0);
}

}  // namespace wsbench_local
