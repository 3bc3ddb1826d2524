// SPDX-License-Identifier: BSL-1.0
//
// wsmanager_soak_server: the host side of the soak test (tests/soak/test_soak.cpp), in a
// process of its own so that its memory (VmRSS) is the manager's and the host's alone.
//
// A WebSocketManager on 127.0.0.1 (a free port; `PORT <n>` on stdout) with the soak's
// options, and a host io_context thread that, on command, calls the manager the way a busy
// host would. Commands, one per line on stdin; each answer is one line on stdout:
//
//   ROUND <ms> <seed> <users>   for <ms> milliseconds, every 10 ms: one notify_user to a
//                               random user (its fate is in its task id, see below), one
//                               send_to_user; every 100 ms a broadcast_message. Then waits
//                               (bounded) until every call has completed, and a little more
//                               for a late second completion, and answers
//                               `ROUND key=value ...`: what ended how, and what did not add
//                               up (missing, duplicates, bad: each must be 0).
//   STATUS                      `STATUS key=value ...`: get_status(), close codes and
//                               accept failures from metrics_text(), VmRSS.
//   MEMORY                      `MEMORY key=value ...`: VmRSS and VmHWM, VmRSS and RssAnon
//                               after malloc_trim(0), the heap bytes in use (mallinfo2).
//   QUIT, or stdin EOF          stop_server (bounded), `STOPPED ...`, exit 0 (1 on failure).
//
// A notify_user's task id is "<fate>-<round>-<n>"; the clients read the fate from it:
//   a  answered by the user's clients; timeout 2.5 s   -> user (feedback = task id, proceed
//                                                         = n even), or timeout if the user
//                                                         happened to be away throughout
//   t  never answered; timeout 300-800 ms                -> timeout, proceed = true
//   w  never answered; withdrawn (per-operation           -> operation_aborted
//      cancellation) after 20-300 ms; timeout 2.5 s
//   r  answered AND withdrawn after 0-30 ms: a race       -> user or operation_aborted
// Every call must complete exactly once.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>

#include <asio/bind_cancellation_slot.hpp>
#include <asio/bind_executor.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/error.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/use_future.hpp>

#include <wsmanager/wsmanager.hpp>

namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using Manager = wsmanager::WebSocketManager<>;

constexpr auto answered_timeout = 2500ms;

/// One notify_user call and how it ended. Held by its completion handler (and its withdraw
/// timer), so a late or second completion never touches freed memory.
struct Call {
    char fate = 'a';
    int n = 0;
    std::string task;
    std::atomic<int> completions{0};
    std::error_code ec;
    wsmanager::UserConfirmation result;
    asio::cancellation_signal signal;
    std::unique_ptr<asio::steady_timer> withdraw_timer;
};

/// One send_to_user or broadcast_message.
struct Send {
    bool broadcast = false;
    std::atomic<int> completions{0};
    std::error_code ec;
    std::size_t queued = 0;
};

/// Everything one round issued; handlers hold it through their Call / Send.
struct Round {
    std::vector<std::shared_ptr<Call>> calls;
    std::vector<std::shared_ptr<Send>> sends;
    std::atomic<std::size_t> calls_done{0};
    std::atomic<std::size_t> sends_done{0};
    std::atomic<std::size_t> duplicates{0};  ///< second (or later) completions, any call
};

wsmanager::TaskStepResult step_result(char fate, int n) {
    return wsmanager::TaskStepResult{
        .step = "soak_step",
        .result = R"({"fate":")" + std::string(1, fate) + R"(","n":)" + std::to_string(n) + "}",
        .completed = true,
        .message = "soak step, proceed?",
        .status = "completed"};
}

/// WSMANAGER_SOAK_WORKLOAD (by hand, to find what a leak comes with): "notify", "sends",
/// "none"; unset: both.
bool workload_has(std::string_view part) {
    char const* value = std::getenv("WSMANAGER_SOAK_WORKLOAD");
    return value == nullptr || std::string_view(value) == part;
}

/// One notify_user, its fate drawn from `pick`.
void ask(Manager& manager, asio::io_context& host, std::shared_ptr<Round> const& round,
         int round_no, int i, std::string const& user, std::function<int(int, int)> const& pick) {
    auto call = std::make_shared<Call>();
    int const roll = pick(0, 99);
    call->fate = roll < 40 ? 'a' : roll < 60 ? 't' : roll < 80 ? 'w' : 'r';
    call->n = i;
    call->task = std::string(1, call->fate) + "-" + std::to_string(round_no) + "-" +
                 std::to_string(i);
    round->calls.push_back(call);
    auto on_end = asio::bind_executor(
        host.get_executor(), [call, round](std::error_code ec, wsmanager::UserConfirmation c) {
            if (call->completions.fetch_add(1) != 0) {
                round->duplicates.fetch_add(1);
                return;
            }
            call->ec = ec;
            call->result = std::move(c);
            round->calls_done.fetch_add(1);
        });
    if (call->fate == 'a' || call->fate == 't') {
        milliseconds const timeout =
            call->fate == 'a' ? answered_timeout : milliseconds(pick(300, 800));
        manager.notify_user(step_result(call->fate, i), user, call->task, i, timeout,
                            std::move(on_end));
        return;
    }
    manager.notify_user(step_result(call->fate, i), user, call->task, i, answered_timeout,
                        asio::bind_cancellation_slot(call->signal.slot(), std::move(on_end)));
    milliseconds const delay(call->fate == 'w' ? pick(20, 300) : pick(0, 30));
    call->withdraw_timer = std::make_unique<asio::steady_timer>(host, delay);
    // Emitted on the handler's executor (the host's), where the slot is also cleared just
    // before the handler runs: after the completion this does nothing.
    call->withdraw_timer->async_wait([call](std::error_code ec) {
        if (!ec && call->completions.load() == 0) {
            call->signal.emit(asio::cancellation_type::terminal);
        }
    });
}

/// One send_to_user (`to` not empty) or broadcast_message.
void send(Manager& manager, asio::io_context& host, std::shared_ptr<Round> const& round,
          int round_no, int i, std::string const& to) {
    auto sent = std::make_shared<Send>();
    sent->broadcast = to.empty();
    round->sends.push_back(sent);
    auto on_sent = asio::bind_executor(
        host.get_executor(), [sent, round](std::error_code ec, std::size_t queued) {
            if (sent->completions.fetch_add(1) != 0) {
                round->duplicates.fetch_add(1);
                return;
            }
            sent->ec = ec;
            sent->queued = queued;
            round->sends_done.fetch_add(1);
        });
    if (sent->broadcast) {
        manager.broadcast_message(
            wsmanager::Message::from_json(R"({"type":"soak_broadcast","round":)" +
                                          std::to_string(round_no) + R"(,"n":)" +
                                          std::to_string(i) + "}"),
            std::move(on_sent));
    } else {
        manager.send_to_user(to,
                             wsmanager::Message::from_json(R"({"type":"soak_user","user":")" +
                                                           to + R"(","n":)" +
                                                           std::to_string(i) + "}"),
                             std::move(on_sent));
    }
}

/// The host's work for one round, on the host io_context: every 10 ms a notify_user and a
/// send_to_user, every 100 ms a broadcast_message.
asio::awaitable<void> workload(Manager& manager, asio::io_context& host,
                               std::shared_ptr<Round> round, int round_no, milliseconds duration,
                               unsigned seed, int users) {
    std::mt19937 random(seed);
    std::function<int(int, int)> const pick = [&random](int low, int high) {
        return std::uniform_int_distribution<int>(low, high)(random);
    };
    bool const notify = workload_has("notify");
    bool const sends = workload_has("sends");
    asio::steady_timer tick(host);
    auto const end = steady_clock::now() + duration;
    for (int i = 0; steady_clock::now() < end; ++i) {
        tick.expires_after(10ms);
        co_await tick.async_wait(asio::use_awaitable);
        if (notify) ask(manager, host, round, round_no, i, "u" + std::to_string(pick(0, users - 1)), pick);
        if (sends) {
            send(manager, host, round, round_no, i, "u" + std::to_string(pick(0, users - 1)));
            if (i % 10 == 0) send(manager, host, round, round_no, i, "");
        }
    }
}

/// The manager's log records, counted. Peers that vanish make websocketpp report errors
/// (a reset read, a write to a reset socket) that the library passes on at level error:
/// those are expected here and only counted; any other record of level warning or above is
/// printed (the first 20) and counted as unexpected.
class LogCounter {
public:
    void record(wsmanager::LogRecord const& r) {
        std::lock_guard lock(mutex_);
        if (r.level < wsmanager::LogLevel::warning) return;
        if (r.event == "websocketpp_error" && is_vanished_peer(r.message)) {
            ++vanished_peer_;
            return;
        }
        if (r.level == wsmanager::LogLevel::error) ++errors_; else ++warnings_;
        if (++printed_ <= 20) {
            std::cerr << "wsmanager_soak_server: log " << wsmanager::to_string(r.level) << " "
                      << r.event << ": " << r.message << "\n";
        }
    }
    std::string summary() const {
        std::lock_guard lock(mutex_);
        return " log_errors=" + std::to_string(errors_) + " log_warnings=" +
               std::to_string(warnings_) + " log_vanished_peer=" + std::to_string(vanished_peer_);
    }

private:
    static bool is_vanished_peer(std::string_view text) {
        return text.find("Connection reset by peer") != std::string_view::npos ||
               text.find("Broken pipe") != std::string_view::npos ||
               (text.find("handle_write_frame error") != std::string_view::npos &&
                text.find("Underlying Transport Error") != std::string_view::npos);
    }
    mutable std::mutex mutex_;
    std::uint64_t errors_ = 0;
    std::uint64_t warnings_ = 0;
    std::uint64_t vanished_peer_ = 0;
    std::uint64_t printed_ = 0;
};

/// "VmRSS:   12345 kB" -> 12345, from /proc/self/status.
std::map<std::string, long> proc_status_kb() {
    std::map<std::string, long> values;
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
        auto const colon = line.find(':');
        if (colon == std::string::npos) continue;
        auto const key = line.substr(0, colon);
        if (key == "VmRSS" || key == "VmHWM" || key == "RssAnon" || key == "Threads") {
            values[key] = std::atol(line.c_str() + colon + 1);
        }
    }
    return values;
}

/// A sample of metrics_text(): `name{labels} value` -> value, 0 when absent.
std::uint64_t metric(std::string const& text, std::string const& series) {
    auto const at = text.find("\n" + series + " ");
    if (at == std::string::npos) return 0;
    return std::strtoull(text.c_str() + at + series.size() + 2, nullptr, 10);
}

std::string status_line(Manager& manager, LogCounter const& logs) {
    auto const s = manager.get_status();
    auto const metrics = manager.metrics_text();
    std::ostringstream out;
    out << "STATUS running=" << s.running << " active=" << s.active_connections
        << " pending=" << s.pending_callbacks << " users=" << s.users_online
        << " opened=" << s.connections_opened << " rejected=" << s.connections_rejected
        << " sent=" << s.messages_sent << " failed=" << s.messages_failed
        << " received=" << s.messages_received << " frames_rejected=" << s.frames_rejected;
    for (char const* code : {"1000", "1001", "1005", "1006", "1008", "1011", "1013", "other"}) {
        out << " closed_" << code << "="
            << metric(metrics, std::string("wsmanager_connections_closed_total{code=\"") + code +
                                   "\"}");
    }
    out << " accept_failures=" << metric(metrics, "wsmanager_accept_failures_total")
        << " send_drops=" << metric(metrics, "wsmanager_send_drops_total");
    out << " rss_kb=" << proc_status_kb()["VmRSS"] << logs.summary();
    return out.str();
}

/// VmRSS before and after malloc_trim(0) (glibc hands back the free pages it caches), the
/// peak, and the heap bytes in use (mallinfo2: every arena, and mmapped chunks).
std::string memory_line() {
    auto before = proc_status_kb();
    ::malloc_trim(0);
    auto after = proc_status_kb();
    auto const heap = ::mallinfo2();
    std::ostringstream out;
    out << "MEMORY rss_kb=" << before["VmRSS"] << " hwm_kb=" << before["VmHWM"]
        << " rss_trimmed_kb=" << after["VmRSS"] << " anon_trimmed_kb=" << after["RssAnon"]
        << " heap_inuse_kb=" << (heap.uordblks + heap.hblkhd) / 1024
        << " threads=" << after["Threads"];
    return out.str();
}

std::string run_round(Manager& manager, asio::io_context& host, int round_no, milliseconds duration,
                      unsigned seed, int users) {
    auto round = std::make_shared<Round>();
    auto started = asio::co_spawn(host, workload(manager, host, round, round_no, duration, seed, users),
                                  asio::use_future);
    std::ostringstream out;
    out << "ROUND round=" << round_no;
    if (started.wait_for(duration + 30s) != std::future_status::ready) {
        out << " error=workload_hung";
        return out.str();
    }
    started.get();
    // Every call has a timeout of at most 2.5 s; on a busy machine give it far longer.
    std::size_t calls = 0;
    std::size_t sends = 0;
    {
        // The vectors are only grown by the workload, which has finished: read on the host
        // thread anyway, so this thread sees them whole.
        std::promise<std::pair<std::size_t, std::size_t>> sizes;
        asio::post(host, [&] { sizes.set_value({round->calls.size(), round->sends.size()}); });
        std::tie(calls, sends) = sizes.get_future().get();
    }
    auto const deadline = steady_clock::now() + 30s;
    while ((round->calls_done.load() < calls || round->sends_done.load() < sends) &&
           steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    std::this_thread::sleep_for(300ms);  // room for a (wrong) second completion

    std::promise<std::string> summary;
    asio::post(host, [&] {
        std::map<std::string, int> ends;  // "<fate>_<ending>" -> count
        std::size_t missing = 0;
        std::size_t bad = 0;
        std::string first_bad;
        auto const note_bad = [&](std::string what) {
            ++bad;
            if (first_bad.empty()) first_bad = std::move(what);
        };
        for (auto const& call : round->calls) {
            if (call->completions.load() == 0) {
                ++missing;
                continue;
            }
            std::string ending;
            if (call->ec == asio::error::operation_aborted) {
                ending = "aborted";
            } else if (call->ec) {
                ending = "error";
            } else {
                ending = std::string(wsmanager::to_string(call->result.reason));
            }
            ends[std::string(1, call->fate) + "_" + ending]++;
            bool const aborted = ending == "aborted";
            bool const by_user = ending == "user";
            bool const timed_out = ending == "timeout";
            bool sane = false;
            switch (call->fate) {
                case 'a': sane = by_user || timed_out; break;
                case 't': sane = timed_out; break;
                // A withdrawal can only lose to the 2.5 s deadline, which it never should;
                // count it as sane but visible (w_timeout).
                case 'w': sane = aborted || timed_out; break;
                case 'r': sane = aborted || by_user || timed_out; break;
                default: break;
            }
            if (by_user && (call->result.feedback != call->task ||
                            call->result.proceed != (call->n % 2 == 0))) {
                sane = false;
            }
            if (timed_out && !call->result.proceed) sane = false;  // proceed_on_timeout
            if (aborted && call->result.proceed) sane = false;
            if (!sane) {
                note_bad(call->task + ":" + ending + ":" + call->ec.message() + ":proceed=" +
                         std::to_string(call->result.proceed) +
                         ":feedback=" + call->result.feedback.value_or("<none>"));
            }
        }
        std::size_t sends_missing = 0;
        std::size_t broadcasts = 0;
        std::size_t broadcast_queued_max = 0;
        std::size_t user_queued_max = 0;
        for (auto const& send : round->sends) {
            if (send->completions.load() == 0) {
                ++sends_missing;
                continue;
            }
            if (send->ec) note_bad(std::string(send->broadcast ? "broadcast" : "send_to_user") +
                                   ":" + send->ec.message());
            if (send->broadcast) {
                ++broadcasts;
                broadcast_queued_max = std::max(broadcast_queued_max, send->queued);
            } else {
                user_queued_max = std::max(user_queued_max, send->queued);
            }
        }
        std::ostringstream s;
        s << " calls=" << round->calls.size() << " missing=" << missing
          << " duplicates=" << round->duplicates.load() << " bad=" << bad
          << " sends=" << round->sends.size() << " broadcasts=" << broadcasts
          << " sends_missing=" << sends_missing << " broadcast_queued_max=" << broadcast_queued_max
          << " user_queued_max=" << user_queued_max;
        for (char const fate : {'a', 't', 'w', 'r'}) {
            for (char const* ending : {"user", "timeout", "aborted", "cancelled", "shutdown",
                                       "disconnected", "error"}) {
                auto const key = std::string(1, fate) + "_" + ending;
                if (auto it = ends.find(key); it != ends.end()) s << " " << key << "=" << it->second;
            }
        }
        s << " first_bad=" << (first_bad.empty() ? "-" : first_bad);
        summary.set_value(s.str());
    });
    out << summary.get_future().get();
    return out.str();
}

}  // namespace

int main() {
    std::signal(SIGPIPE, SIG_IGN);
    // 2,000 connections and more: raise the soft descriptor limit to the hard one.
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        (void)::setrlimit(RLIMIT_NOFILE, &limit);
    }
    try {
        wsmanager::Options options;
        options.host = "127.0.0.1";
        options.port = 0;
        options.max_connections = 4000;        // 2,000 clients plus the ones still closing
        options.max_connections_per_user = 64;  // 8 clients a user, plus the ones closing
        options.max_frames_per_second = 0;      // the clients answer in bursts
        options.ping_interval = 500ms;          // keepalive runs against vanished clients
        options.ping_timeout = 4s;              // generous: a busy machine answers late
        options.close_timeout = 1s;             // silent clients never answer the close
        options.handshake_timeout = 10s;        // generous, as above
        options.callback_timeout = answered_timeout;
        options.proceed_on_timeout = true;
        options.threads = 2;
        options.log_level = wsmanager::LogLevel::warning;
        auto logs = std::make_shared<LogCounter>();
        options.log_sink = [logs](wsmanager::LogRecord const& r) { logs->record(r); };
        if (char const* level = std::getenv("WSMANAGER_TEST_LOG")) {  // everything, as is
            for (auto l : {wsmanager::LogLevel::trace, wsmanager::LogLevel::debug,
                           wsmanager::LogLevel::info, wsmanager::LogLevel::warning,
                           wsmanager::LogLevel::error, wsmanager::LogLevel::off}) {
                if (wsmanager::to_string(l) == level) {
                    options.log_level = l;
                    options.log_sink = wsmanager::stderr_log_sink();
                }
            }
        }

        asio::io_context host(1);
        auto work = asio::make_work_guard(host);
        std::thread host_thread([&host] { host.run(); });
        int status = 0;
        {
            Manager manager(options);
            auto started = manager.start_server(asio::use_future);
            if (started.wait_for(10s) != std::future_status::ready) {
                std::cerr << "wsmanager_soak_server: start timed out\n";
                std::_Exit(1);
            }
            started.get();
            std::cout << "PORT " << manager.local_port() << std::endl;

            std::string line;
            while (std::getline(std::cin, line)) {
                std::istringstream command(line);
                std::string verb;
                command >> verb;
                if (verb == "ROUND") {
                    int round_no = 0;
                    long ms = 0;
                    unsigned seed = 0;
                    int users = 0;
                    command >> round_no >> ms >> seed >> users;
                    if (!command || ms <= 0 || users <= 0) {
                        std::cout << "ERROR bad ROUND command" << std::endl;
                        continue;
                    }
                    std::cout << run_round(manager, host, round_no, milliseconds(ms), seed, users)
                              << std::endl;
                } else if (verb == "STATUS") {
                    std::cout << status_line(manager, *logs) << std::endl;
                } else if (verb == "MEMORY") {
                    std::cout << memory_line() << std::endl;
                } else if (verb == "QUIT") {
                    break;
                } else {
                    std::cout << "ERROR unknown command" << std::endl;
                }
            }
            auto stopped = manager.stop_server(asio::use_future);
            if (stopped.wait_for(15s) != std::future_status::ready) {
                std::cerr << "wsmanager_soak_server: stop timed out\n";
                std::_Exit(1);
            }
            stopped.get();
            auto const s = manager.get_status();
            std::cout << "STOPPED active=" << s.active_connections << " pending="
                      << s.pending_callbacks << std::endl;
            if (s.active_connections != 0 || s.pending_callbacks != 0) status = 1;
        }
        work.reset();
        host_thread.join();
        return status;
    } catch (std::exception const& e) {
        std::cerr << "wsmanager_soak_server: " << e.what() << "\n";
        std::_Exit(1);
    }
}
