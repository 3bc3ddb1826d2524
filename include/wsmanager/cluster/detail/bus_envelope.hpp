// SPDX-License-Identifier: BSL-1.0
#pragma once

// What the nodes of a cluster say to each other on Redis pub/sub: one envelope per PUBLISH,
// a one-line JSON header (who sent it, its sequence number, what kind of news, and that
// kind's fields) and, for a message, the message's JSON text after the newline, as the host
// built it. The header names the origin node, so a node ignores its own, and a sequence
// number per origin and incarnation (a process: a node restarted under the same node id
// counts from 1 again), so a duplicate is dropped. The Lua scripts write the `decided` header
// themselves (scripts.hpp), with the same field names. docs/cluster.md lists them.
//
// Plain functions: any thread.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <wsmanager/detail/backplane.hpp>
#include <wsmanager/models.hpp>

namespace wsmanager::cluster::detail {

using wsmanager::detail::delivery_target;

/// The kinds of news, as the header's `k` spells them.
namespace kind {
inline constexpr std::string_view message = "m";         ///< deliver to a target
inline constexpr std::string_view close = "x";           ///< close a target's connections
inline constexpr std::string_view decided = "d";         ///< a confirmation was decided
inline constexpr std::string_view cancel_ask = "ca";     ///< what does each node say?
inline constexpr std::string_view cancel_reply = "cr";   ///< one node's verdict
inline constexpr std::string_view cancel_apply = "cp";   ///< accepted: every node applies it
inline constexpr std::string_view ack = "ak";            ///< a client's ack, for its sender
inline constexpr std::string_view probe = "pr";          ///< a node checks its subscription
}  // namespace kind

/// One envelope, decoded. Fields a kind does not use stay empty.
struct envelope {
    std::string origin;
    std::string incarnation;     ///< the origin's process; empty when written by a script
    std::uint64_t sequence = 0;  ///< 0: written by a script (not deduplicated)
    std::string kind;
    std::int64_t sent_ms = 0;    ///< the sender's wall clock, for the cross-node latency
    delivery_target target{};
    std::uint16_t close_code = 0;
    std::string reason;          ///< close reason
    std::string id;              ///< callback id, request id, message id
    std::string user_id;
    std::string task_id;
    std::uint64_t connection_id = 0;
    int verdict = 0;             ///< a cancel reply's cancel_verdict
    UserConfirmation decision{};
    std::string body;            ///< after the header: a message's JSON text
};

/// Writes the header; `fill(writer)` adds the kind's fields.
template <class Fill>
std::string encode_envelope(std::string_view origin, std::string_view incarnation,
                            std::uint64_t sequence, std::string_view news,
                            std::int64_t sent_ms, Fill fill, std::string_view body = {}) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
    auto key = [&](char const* name) { w.Key(name); };
    auto text = [&](std::string_view value) {
        w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
    };
    w.StartObject();
    key("v"); w.Int(1);
    key("o"); text(origin);
    key("i"); text(incarnation);
    key("s"); w.Uint64(sequence);
    key("k"); text(news);
    key("ts"); w.Int64(sent_ms);
    fill(w);
    w.EndObject();
    std::string out(buffer.GetString(), buffer.GetSize());
    out.push_back('\n');
    out.append(body);
    return out;
}

/// The target's fields: `t` (e everyone, u user, p topic, b both), `u`, `p`.
template <class Writer>
void write_target(Writer& w, delivery_target const& target) {
    using scope = delivery_target::kind;
    char const* t = "e";
    switch (target.scope) {
        case scope::everyone: t = "e"; break;
        case scope::user: t = "u"; break;
        case scope::topic: t = "p"; break;
        case scope::user_and_topic: t = "b"; break;
        case scope::connection: t = "c"; break;  // never published: node-local
    }
    w.Key("t"); w.String(t);
    w.Key("u");
    w.String(target.user_id.data(), static_cast<rapidjson::SizeType>(target.user_id.size()));
    w.Key("p");
    w.String(target.topic.data(), static_cast<rapidjson::SizeType>(target.topic.size()));
}

/// A decision as JSON, the way the scripts store it: {"proceed":..,"feedback":..,"reason":..}.
inline std::string decision_json(UserConfirmation const& decision) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
    w.StartObject();
    w.Key("proceed"); w.Bool(decision.proceed);
    w.Key("feedback");
    if (decision.feedback) {
        w.String(decision.feedback->data(),
                 static_cast<rapidjson::SizeType>(decision.feedback->size()));
    } else {
        w.Null();
    }
    w.Key("reason");
    auto const reason = to_string(decision.reason);
    w.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
    w.EndObject();
    return {buffer.GetString(), buffer.GetSize()};
}

/// Reads a decision written by decision_json (or by a script); nullopt when malformed.
inline std::optional<UserConfirmation> parse_decision(rapidjson::Value const& value) {
    if (!value.IsObject()) return std::nullopt;
    auto proceed = value.FindMember("proceed");
    auto reason = value.FindMember("reason");
    if (proceed == value.MemberEnd() || !proceed->value.IsBool() ||
        reason == value.MemberEnd() || !reason->value.IsString()) {
        return std::nullopt;
    }
    UserConfirmation decision;
    decision.proceed = proceed->value.GetBool();
    if (auto feedback = value.FindMember("feedback");
        feedback != value.MemberEnd() && feedback->value.IsString()) {
        decision.feedback = std::string(feedback->value.GetString(),
                                        feedback->value.GetStringLength());
    }
    std::string_view const name(reason->value.GetString(), reason->value.GetStringLength());
    for (auto candidate : {ConfirmationReason::user, ConfirmationReason::timeout,
                           ConfirmationReason::cancelled, ConfirmationReason::shutdown,
                           ConfirmationReason::disconnected}) {
        if (to_string(candidate) == name) {
            decision.reason = candidate;
            return decision;
        }
    }
    return std::nullopt;
}

inline std::optional<UserConfirmation> parse_decision(std::string_view json) {
    rapidjson::Document document;
    document.Parse(json.data(), json.size());
    if (document.HasParseError()) return std::nullopt;
    return parse_decision(document);
}

/// Decodes one envelope; nullopt when it is not one (another program on the channel).
inline std::optional<envelope> decode_envelope(std::string_view payload) {
    auto const newline = payload.find('\n');
    if (newline == std::string_view::npos) return std::nullopt;
    rapidjson::Document header;
    header.Parse(payload.data(), newline);
    if (header.HasParseError() || !header.IsObject()) return std::nullopt;
    auto text = [&](char const* name) -> std::string {
        auto it = header.FindMember(name);
        if (it == header.MemberEnd() || !it->value.IsString()) return {};
        return {it->value.GetString(), it->value.GetStringLength()};
    };
    auto number = [&](char const* name) -> std::int64_t {
        auto it = header.FindMember(name);
        if (it == header.MemberEnd() || !it->value.IsNumber()) return 0;
        return it->value.IsInt64() ? it->value.GetInt64()
                                   : static_cast<std::int64_t>(it->value.GetDouble());
    };
    if (number("v") != 1) return std::nullopt;
    envelope e;
    e.origin = text("o");
    e.incarnation = text("i");
    e.sequence = static_cast<std::uint64_t>(number("s"));
    e.kind = text("k");
    e.sent_ms = number("ts");
    if (e.origin.empty() || e.kind.empty()) return std::nullopt;
    auto const t = text("t");
    using scope = delivery_target::kind;
    if (t == "e") {
        e.target.scope = scope::everyone;
    } else if (t == "u") {
        e.target.scope = scope::user;
    } else if (t == "p") {
        e.target.scope = scope::topic;
    } else if (t == "b") {
        e.target.scope = scope::user_and_topic;
    } else if (e.kind == kind::message || e.kind == kind::close) {
        return std::nullopt;  // never guess a target: a wrong guess reaches everyone
    }
    e.target.user_id = text("u");
    e.target.topic = text("p");
    e.close_code = static_cast<std::uint16_t>(number("c"));
    e.reason = text("r");
    e.id = text("id");
    e.user_id = e.target.user_id;
    e.task_id = text("task");
    e.connection_id = static_cast<std::uint64_t>(number("cid"));
    e.verdict = static_cast<int>(number("verdict"));
    if (e.kind == kind::decided) {
        // The scripts store the decision as JSON text and put it in the header as a string.
        auto const stored = text("dec");
        auto decision = parse_decision(stored);
        if (!decision) return std::nullopt;
        e.decision = std::move(*decision);
    }
    e.body = std::string(payload.substr(newline + 1));
    return e;
}

}  // namespace wsmanager::cluster::detail
