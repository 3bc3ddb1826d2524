// SPDX-License-Identifier: BSL-1.0
#pragma once

// A detail::session without a socket, for the rooms' unit tests: it records the text of
// every frame sent to it, every close and every ping. A mutex guards the records, which is
// more than the single-threaded tests need. Also a few helpers to read recorded frames back,
// and run_until for the tests whose rooms have timers on an io_context the test runs itself.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <wsmanager/detail/session.hpp>
#include <wsmanager/message.hpp>

namespace wsmanager_fake {

/// One close() call.
struct close_record {
    std::uint16_t code = 0;
    std::string reason;
};

class fake_session final : public wsmanager::detail::session {
public:
    fake_session(std::uint64_t id, std::string user_id,
                 std::string remote_endpoint = "127.0.0.1:40000",
                 std::string subprotocol = "wsmanager.v1")
        : session(id, std::move(user_id), std::move(remote_endpoint)),
          subprotocol_(std::move(subprotocol)) {}

    wsmanager::detail::send_status send(wsmanager::Message const& message) override {
        std::lock_guard lock(mutex_);
        frames_.emplace_back(message.text());
        return send_result_;
    }

    void close(std::uint16_t code, std::string reason) override {
        std::lock_guard lock(mutex_);
        closes_.push_back(close_record{code, std::move(reason)});
    }

    void ping() override {
        std::lock_guard lock(mutex_);
        ++pings_;
    }

    std::string subprotocol() const override { return subprotocol_; }

    /// What send() answers from now on (queued by default).
    void set_send_result(wsmanager::detail::send_status result) {
        std::lock_guard lock(mutex_);
        send_result_ = result;
    }

    /// The text of every frame sent so far, in order.
    std::vector<std::string> frames() const {
        std::lock_guard lock(mutex_);
        return frames_;
    }
    std::size_t frame_count() const {
        std::lock_guard lock(mutex_);
        return frames_.size();
    }
    /// The last frame's text; "" when none was sent.
    std::string last_frame() const {
        std::lock_guard lock(mutex_);
        return frames_.empty() ? std::string{} : frames_.back();
    }
    /// The frames whose "type" is `type`.
    std::vector<std::string> frames_of_type(std::string_view type) const;
    std::size_t count_of_type(std::string_view type) const { return frames_of_type(type).size(); }

    std::vector<close_record> closes() const {
        std::lock_guard lock(mutex_);
        return closes_;
    }
    std::size_t ping_count() const {
        std::lock_guard lock(mutex_);
        return pings_;
    }
    void clear() {
        std::lock_guard lock(mutex_);
        frames_.clear();
        closes_.clear();
        pings_ = 0;
    }

private:
    mutable std::mutex mutex_;
    std::string subprotocol_;
    wsmanager::detail::send_status send_result_ = wsmanager::detail::send_status::queued;
    std::vector<std::string> frames_;
    std::vector<close_record> closes_;
    std::size_t pings_ = 0;
};

using fake_ptr = std::shared_ptr<fake_session>;

inline fake_ptr make_fake(std::uint64_t id, std::string user_id = {}) {
    return std::make_shared<fake_session>(id, std::move(user_id));
}

/// The frame's JSON (an object), or a failed test.
inline rapidjson::Document parse_json(std::string_view text) {
    rapidjson::Document document;
    document.Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
    INFO("frame: " << text);
    REQUIRE_FALSE(document.HasParseError());
    REQUIRE(document.IsObject());
    return document;
}

/// The "type" of a frame; "" when it is not an object with a string type.
inline std::string type_of(std::string_view text) {
    rapidjson::Document document;
    document.Parse(text.data(), text.size());
    if (document.HasParseError() || !document.IsObject()) return {};
    auto it = document.FindMember("type");
    if (it == document.MemberEnd() || !it->value.IsString()) return {};
    return {it->value.GetString(), it->value.GetStringLength()};
}

/// A string member of a parsed frame (a failed test when absent or not a string).
inline std::string string_member(rapidjson::Value const& object, char const* name) {
    INFO("member: " << name);
    REQUIRE(object.IsObject());
    REQUIRE(object.HasMember(name));
    REQUIRE(object[name].IsString());
    return {object[name].GetString(), object[name].GetStringLength()};
}

inline std::vector<std::string> fake_session::frames_of_type(std::string_view type) const {
    std::vector<std::string> matching;
    for (auto const& frame : frames()) {
        if (type_of(frame) == type) matching.push_back(frame);
    }
    return matching;
}

/// Runs `io` until `done()` or `limit` has passed (a bound, not an expectation); the
/// verdict of done() at the end.
template <class Done>
bool run_until(asio::io_context& io, Done done,
               std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto const give_up = std::chrono::steady_clock::now() + limit;
    while (!done() && std::chrono::steady_clock::now() < give_up) {
        io.restart();
        if (io.run_one_for(std::chrono::milliseconds(10)) == 0 && io.stopped()) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));  // no work: nothing comes
        }
    }
    return done();
}

/// Runs `io` for `duration` (less when it runs out of work).
inline void run_for(asio::io_context& io, std::chrono::milliseconds duration) {
    io.restart();
    io.run_for(duration);
}

}  // namespace wsmanager_fake
