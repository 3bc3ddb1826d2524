// SPDX-License-Identifier: BSL-1.0
//
// Micro-benchmarks (Google Benchmark) of the per-message work around the socket, without
// sockets: what a host pays to make a Message, what the codec pays to write the manager's
// own frames, what a client frame costs from text to decoded action, the frame router's
// dispatch (a session and client actions that do nothing), a connection's send queue
// for one corked batch, and permessage-deflate: a message compressed (once per message,
// whatever the number of connections), a client frame inflated.
//
//   wsmanager_bench_micro [--benchmark_filter=REGEX] [--benchmark_min_time=SECONDS]

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <benchmark/benchmark.h>
#include <rapidjson/document.h>

#include <wsmanager/action.hpp>
#include <wsmanager/detail/client_request.hpp>
#include <wsmanager/detail/deflate.hpp>
#include <wsmanager/detail/frame_router.hpp>
#include <wsmanager/detail/host_hooks.hpp>
#include <wsmanager/detail/metrics.hpp>
#include <wsmanager/detail/protocol_codec.hpp>
#include <wsmanager/detail/random_id.hpp>
#include <wsmanager/detail/send_queue.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>

#include "bench_common.hpp"

namespace {

using wsmanager::Message;
namespace codec = wsmanager::detail::codec;

/// A 200-byte message, as the fan-out benchmark's host builds it.
std::string const bench_text = wsbench_local::bench_message(42, 200);

std::string const confirm_text =
    R"({"action":"confirm","callback_id":"3f2a9c1e5b7d4a60","proceed":true,"feedback":"looks good"})";
std::string const ping_text = R"({"action":"ping","timestamp":1733050000123,"request_id":7})";

// ---- making messages ----------------------------------------------------------------------

void message_from_json(benchmark::State& state) {
    for (auto _ : state) {
        auto message = Message::from_json(bench_text);
        benchmark::DoNotOptimize(message);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bench_text.size()));
}
BENCHMARK(message_from_json);

void message_from_trusted_json(benchmark::State& state) {
    for (auto _ : state) {
        auto message = Message::from_trusted_json(bench_text);
        benchmark::DoNotOptimize(message);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bench_text.size()));
}
BENCHMARK(message_from_trusted_json);

void message_from_value(benchmark::State& state) {
    rapidjson::Document document;
    document.Parse(bench_text.data(), bench_text.size());
    for (auto _ : state) {
        Message message(document);
        benchmark::DoNotOptimize(message);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bench_text.size()));
}
BENCHMARK(message_from_value);

// ---- the codec's server frames ------------------------------------------------------------

void frame_confirmation_resolved(benchmark::State& state) {
    wsmanager::UserConfirmation const decision{true, std::string("looks good"),
                                               wsmanager::ConfirmationReason::user};
    for (auto _ : state) {
        auto message = codec::confirmation_resolved_frame("3f2a9c1e5b7d4a60", "task-1234", decision);
        benchmark::DoNotOptimize(message);
    }
}
BENCHMARK(frame_confirmation_resolved);

void frame_task_step_result(benchmark::State& state) {
    wsmanager::TaskStepResult step;
    step.step = "review";
    step.result = R"({"rows":42,"warnings":[]})";
    step.completed = true;
    step.message = "Proceed with the import?";
    step.status = "completed";
    for (auto _ : state) {
        auto message = codec::task_step_result_frame("3f2a9c1e5b7d4a60", "alice", "task-1234", 3, step, 300.0);
        benchmark::DoNotOptimize(message);
    }
}
BENCHMARK(frame_task_step_result);

void frame_pong(benchmark::State& state) {
    rapidjson::Document document;
    document.Parse(ping_text.data(), ping_text.size());
    auto const& timestamp = document["timestamp"];
    auto const& request_id = document["request_id"];
    for (auto _ : state) {
        auto message = codec::pong_frame(&timestamp, &request_id);
        benchmark::DoNotOptimize(message);
    }
}
BENCHMARK(frame_pong);

// ---- client frames: text -> decoded action ------------------------------------------------

void decode_client_frame(benchmark::State& state, std::string const& text) {
    for (auto _ : state) {
        codec::ClientFrame frame(text.size());
        auto problem = codec::parse_client_frame(text, frame);
        benchmark::DoNotOptimize(problem);
        auto action = codec::decode_action(frame);
        benchmark::DoNotOptimize(action);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK_CAPTURE(decode_client_frame, confirm, confirm_text);
BENCHMARK_CAPTURE(decode_client_frame, ping, ping_text);

// ---- the frame router ---------------------------------------------------------------------

/// A session that records nothing.
class null_session final : public wsmanager::detail::session {
public:
    null_session() : session(1, "alice", "127.0.0.1:40000") {}
    wsmanager::detail::send_status send(Message const& message) override {
        benchmark::DoNotOptimize(message.size());
        return wsmanager::detail::send_status::queued;
    }
    void close(std::uint16_t, std::string) override {}
    void ping() override {}
    std::string subprotocol() const override { return "wsmanager.v1"; }
};

/// Client actions that do nothing.
class null_actions final : public wsmanager::detail::client_actions {
public:
    void subscribe(wsmanager::detail::client_request const&, codec::SubscriptionAsk) override {}
    void confirm(wsmanager::detail::client_request const&, codec::ConfirmAnswer answer) override {
        benchmark::DoNotOptimize(answer.proceed);
    }
    void cancel(wsmanager::detail::client_request const&, codec::CancelAsk const&) override {}
    void acknowledge(wsmanager::detail::client_request const&, std::string const&) override {}
};

void route(benchmark::State& state, std::string const& text) {
    null_actions actions;
    wsmanager::detail::manager_counters counters;
    wsmanager::detail::logger log{wsmanager::LogSink{}, wsmanager::LogLevel::warning};
    wsmanager::detail::host_hooks hooks;
    wsmanager::detail::frame_router router{actions, hooks, counters, log};
    wsmanager::detail::session_ptr const sender = std::make_shared<null_session>();
    for (auto _ : state) router.route(sender, text);
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK_CAPTURE(route, confirm, confirm_text);
BENCHMARK_CAPTURE(route, ping_answered_with_pong, ping_text);

// ---- ids of confirmations and acks --------------------------------------------------------

/// detail::random_id(): every notify_user and send_with_ack makes one (four 32-bit draws
/// from a default std::random_device).
void random_id(benchmark::State& state) {
    for (auto _ : state) {
        auto id = wsmanager::detail::random_id();
        benchmark::DoNotOptimize(id);
    }
}
BENCHMARK(random_id);

/// The same four draws from std::random_device with a named token, for comparison: the
/// default token's source depends on the CPU (libstdc++ prefers RDSEED, then RDRAND).
void random_device_draws(benchmark::State& state, char const* token) {
    std::random_device device(token);
    for (auto _ : state) {
        for (int i = 0; i < 4; ++i) benchmark::DoNotOptimize(device());
    }
}
BENCHMARK_CAPTURE(random_device_draws, default, "default");
BENCHMARK_CAPTURE(random_device_draws, rdrand, "rdrand");
BENCHMARK_CAPTURE(random_device_draws, getentropy, "getentropy");
BENCHMARK_CAPTURE(random_device_draws, dev_urandom, "/dev/urandom");

// ---- one connection's send queue: a corked batch ------------------------------------------

/// What a connection pays for a corked burst of `batch` frames: the pushes (one per message,
/// as delivery queues them), the cork's claim, the writer's take (which counts the batch) and
/// the release of its bytes once written.
void send_queue_batch(benchmark::State& state) {
    auto const batch = static_cast<std::size_t>(state.range(0));
    auto counters = std::make_shared<wsmanager::detail::manager_counters>();
    wsmanager::detail::send_queue queue;
    queue.configure(std::size_t{64} << 20, counters);
    auto const frame = wsmanager::detail::make_text_frame(bench_text);
    std::vector<wsmanager::detail::frame_ptr> taken;
    taken.reserve(256);
    for (auto _ : state) {
        for (std::size_t i = 0; i < batch; ++i) {
            auto result = queue.push(frame, false);
            benchmark::DoNotOptimize(result);
        }
        bool const post = queue.claim_owed();
        benchmark::DoNotOptimize(post);
        auto written = queue.take(taken, 256, 256 * 1024);
        queue.written(written);
        taken.clear();
        queue.take(taken, 256, 256 * 1024);  // nothing left: idle again
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(send_queue_batch)->Arg(1)->Arg(16)->Arg(64);

// ---- permessage-deflate -------------------------------------------------------------------

/// JSON of about `size` bytes, as a host's progress updates look: repetitive field names,
/// varying values.
std::string deflate_bench_json(std::size_t size) {
    std::string text = R"({"type":"task_progress","items":[)";
    for (std::size_t i = 0; text.size() + 2 < size; ++i) {
        if (i != 0) text += ',';
        text += R"({"task_id":"task-)" + std::to_string(1000 + i * 7) + R"(","step":)" +
                std::to_string(i % 13) + R"(,"progress":0.)" + std::to_string((i * 37) % 100) +
                R"(,"done":false})";
    }
    return text + "]}";
}

/// What a broadcast with compression on pays once, for all its deflate connections: one
/// message compressed on its own. The counter "ratio" is compressed / original.
void deflate_message(benchmark::State& state) {
    auto const text = deflate_bench_json(static_cast<std::size_t>(state.range(0)));
    std::size_t compressed = 0;
    for (auto _ : state) {
        auto out = wsmanager::detail::deflate_message(text);
        compressed = out ? out->size() : text.size();
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
    state.counters["ratio"] = static_cast<double>(compressed) / static_cast<double>(text.size());
}
BENCHMARK(deflate_message)->Arg(256)->Arg(4096)->Arg(65536);

/// The same through a Message: framed, compressed once, the compressed frame shared.
void message_deflated_once(benchmark::State& state) {
    auto const text = deflate_bench_json(4096);
    for (auto _ : state) {
        auto message = Message::from_trusted_json(text);
        auto const& frame = wsmanager::detail::frame_of(message)->deflated();
        benchmark::DoNotOptimize(frame);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(message_deflated_once);

/// A client's compressed frame of about 4 KiB, inflated (each connection inflates its own).
void inflate_client_frame(benchmark::State& state) {
    auto const text = deflate_bench_json(4096);
    auto compressed = *wsmanager::detail::deflate_message(text);
    compressed.append("\x00\x00\xff\xff", 4);
    wsmanager::detail::inflater inflater;
    std::string out;
    for (auto _ : state) {
        out.clear();
        bool const ok = inflater.inflate_into(
            reinterpret_cast<std::uint8_t const*>(compressed.data()), compressed.size(), out);
        benchmark::DoNotOptimize(ok);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(inflate_client_frame);

}  // namespace

BENCHMARK_MAIN();
