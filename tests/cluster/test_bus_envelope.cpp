// SPDX-License-Identifier: BSL-1.0
// The nodes' envelopes (cluster/detail/bus_envelope.hpp): what one node writes another
// reads back, and what is not an envelope (another program on the channel, a damaged
// header) is refused rather than guessed at.

#include <string>

#include <catch2/catch.hpp>

#include <wsmanager/cluster/detail/bus_envelope.hpp>

using namespace wsmanager::cluster::detail;
using wsmanager::detail::delivery_target;

namespace {

std::string message_to(delivery_target const& target, std::string_view body) {
    return encode_envelope(
        "node-a", "inc1", 7, kind::message, 1234,
        [&](auto& w) { write_target(w, target); }, body);
}

}  // namespace

TEST_CASE("envelope: a message round-trips with its origin, sequence and target",
          "[cluster][envelope]") {
    delivery_target target;
    target.scope = delivery_target::kind::user_and_topic;
    target.user_id = "alice";
    target.topic = "task:42";
    auto const wire = message_to(target, R"({"type":"progress","n":1})");
    auto e = decode_envelope(wire);
    REQUIRE(e);
    CHECK(e->origin == "node-a");
    CHECK(e->incarnation == "inc1");
    CHECK(e->sequence == 7);
    CHECK(e->kind == kind::message);
    CHECK(e->sent_ms == 1234);
    CHECK(e->target.scope == delivery_target::kind::user_and_topic);
    CHECK(e->target.user_id == "alice");
    CHECK(e->target.topic == "task:42");
    CHECK(e->body == R"({"type":"progress","n":1})");
}

TEST_CASE("envelope: a body with newlines and quotes is kept byte for byte",
          "[cluster][envelope]") {
    delivery_target target;  // everyone
    std::string const body = "{\"text\":\"line one\\nline \\\"two\\\"\",\n\"raw\":\"\xc3\xa9\"}";
    auto e = decode_envelope(message_to(target, body));
    REQUIRE(e);
    CHECK(e->target.scope == delivery_target::kind::everyone);
    CHECK(e->body == body);
}

TEST_CASE("envelope: a decision written the way the Lua scripts write it is read",
          "[cluster][envelope]") {
    // decide_script: cjson.encode({v=1, o=.., s=0, k='d', ts=.., id=.., u=.., task=.., dec=..})
    std::string const wire =
        R"({"v":1,"o":"-","s":0,"k":"d","ts":5,"id":"cb1","u":"alice","task":"t1",)"
        R"("dec":"{\"proceed\":true,\"feedback\":\"ok\",\"reason\":\"user\"}"})"
        "\n";
    auto e = decode_envelope(wire);
    REQUIRE(e);
    CHECK(e->kind == kind::decided);
    CHECK(e->sequence == 0);
    CHECK(e->incarnation.empty());
    CHECK(e->id == "cb1");
    CHECK(e->user_id == "alice");
    CHECK(e->task_id == "t1");
    CHECK(e->decision.proceed);
    REQUIRE(e->decision.feedback);
    CHECK(*e->decision.feedback == "ok");
    CHECK(e->decision.reason == wsmanager::ConfirmationReason::user);
}

TEST_CASE("envelope: a decision round-trips through decision_json", "[cluster][envelope]") {
    wsmanager::UserConfirmation d;
    d.proceed = false;
    d.reason = wsmanager::ConfirmationReason::disconnected;
    auto back = parse_decision(decision_json(d));
    REQUIRE(back);
    CHECK_FALSE(back->proceed);
    CHECK_FALSE(back->feedback);
    CHECK(back->reason == wsmanager::ConfirmationReason::disconnected);
}

TEST_CASE("envelope: what is not an envelope is refused", "[cluster][envelope]") {
    CHECK_FALSE(decode_envelope(""));
    CHECK_FALSE(decode_envelope("hello from another program"));
    CHECK_FALSE(decode_envelope(R"({"v":1,"o":"a","s":1,"k":"m","t":"e"})"));  // no newline
    CHECK_FALSE(decode_envelope("{\"v\":2,\"o\":\"a\",\"s\":1,\"k\":\"m\",\"t\":\"e\"}\n{}"));
    CHECK_FALSE(decode_envelope("{\"v\":1,\"s\":1,\"k\":\"m\",\"t\":\"e\"}\n{}"));  // no origin
    CHECK_FALSE(decode_envelope("{\"v\":1,\"o\":\"a\",\"s\":1,\"t\":\"e\"}\n{}"));  // no kind
    CHECK_FALSE(decode_envelope("[1,2]\n{}"));
    CHECK_FALSE(decode_envelope("{\"v\":1,\"o\":\"a\"\n{}"));  // damaged header
}

TEST_CASE("envelope: a message or close without a known target is refused, never broadcast",
          "[cluster][envelope]") {
    CHECK_FALSE(decode_envelope("{\"v\":1,\"o\":\"a\",\"s\":1,\"k\":\"m\"}\n{}"));
    CHECK_FALSE(decode_envelope("{\"v\":1,\"o\":\"a\",\"s\":1,\"k\":\"m\",\"t\":\"?\"}\n{}"));
    CHECK_FALSE(decode_envelope("{\"v\":1,\"o\":\"a\",\"s\":1,\"k\":\"x\",\"t\":\"c\"}\n"));
    // Kinds without a target need none.
    CHECK(decode_envelope("{\"v\":1,\"o\":\"a\",\"s\":1,\"k\":\"ak\",\"u\":\"x\",\"id\":\"m1\"}\n"));
}

TEST_CASE("envelope: a decision whose stored decision is damaged is refused",
          "[cluster][envelope]") {
    CHECK_FALSE(decode_envelope(
        "{\"v\":1,\"o\":\"-\",\"s\":0,\"k\":\"d\",\"id\":\"cb\",\"dec\":\"{\\\"proceed\\\":1}\"}\n"));
    CHECK_FALSE(decode_envelope(
        "{\"v\":1,\"o\":\"-\",\"s\":0,\"k\":\"d\",\"id\":\"cb\",\"dec\":\"{\\\"proceed\\\":true,"
        "\\\"reason\\\":\\\"whim\\\"}\"}\n"));
}
