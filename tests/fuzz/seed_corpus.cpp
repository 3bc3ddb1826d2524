// SPDX-License-Identifier: BSL-1.0
// Writes the hand-made seeds of the fuzz corpus (files named seed-*), among them real HS256
// tokens made by detail::sign_hs256_jwt with the fuzz gate's secret: valid, expired, not yet
// valid, the wrong algorithm, truncated, signed with another secret. The fuzzers' own finds
// sit beside them (files named by their SHA-1, from `scripts/fuzz.sh --merge`).
//
//   cmake --build <build dir> --target wsmanager_fuzz_seed_corpus
//   <build dir>/tests/fuzz/wsmanager_fuzz_seed_corpus tests/fuzz/corpus
//
// Rerunning it rewrites the seeds byte for byte (no clock, no randomness).

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <wsmanager/detail/jwt.hpp>

#include "fuzz_support.hpp"

namespace input = wsmanager_fuzz::handshake_input;
using wsmanager::detail::sign_hs256_jwt;

namespace {

std::filesystem::path root;

void write(std::string_view target, std::string_view name, std::string_view content) {
    auto const dir = root / std::string(target);
    std::filesystem::create_directories(dir);
    auto const path = dir / ("seed-" + std::string(name));
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) {
        std::fprintf(stderr, "cannot write %s\n", path.c_str());
        std::exit(1);
    }
}

std::string join(std::initializer_list<std::string_view> parts) {
    std::string out;
    for (auto const part : parts) {
        if (!out.empty()) out.push_back('\0');
        out.append(part);
    }
    return out;
}

/// A ping whose timestamp is `depth` nested arrays (`[[[...]]]`), as deep as 64 KiB allows.
std::string deep_ping(std::size_t limit) {
    std::string const head = R"({"action":"ping","timestamp":)";
    std::size_t const depth = (limit - head.size() - 1) / 2;
    return head + std::string(depth, '[') + std::string(depth, ']') + "}";
}

/// A host action whose frame holds `[[[...]]]` as deep as `limit` bytes allow.
std::string deep_arrays(std::string_view action, std::size_t limit) {
    std::string const head = R"({"action":")" + std::string(action) + R"(","x":)";
    std::size_t const depth = (limit - head.size() - 1) / 2;
    return head + std::string(depth, '[') + std::string(depth, ']') + "}";
}

/// `{"a":{"a":...}}` as deep as `limit` bytes allow, with the given action.
std::string deep_objects(std::string_view action, std::size_t limit) {
    std::string const head = R"({"action":")" + std::string(action) + R"(","x":)";
    std::size_t const depth = (limit - head.size() - 2) / 7;
    std::string out = head;
    for (std::size_t i = 0; i < depth; ++i) out += R"({"a":)";
    out += "0";
    out += std::string(depth, '}');
    out += "}";
    return out;
}

void client_frames(std::string_view target) {
    struct seed {
        char const* name;
        char const* text;
    };
    for (
        auto const& s : std::initializer_list<seed>{
            {"ping", R"({"action":"ping","timestamp":1700000000.25,"request_id":"r-1"})"},
            {"ping-bare", R"({"action":"ping"})"},
            {"ping-object",
             R"({"action":"ping","timestamp":{"t":[1,-2,3.5e10,"x",null,true,false,{}]},"request_id":42})"},
            {"ping-big-numbers",
             R"({"action":"ping","timestamp":[18446744073709551615,-9223372036854775808,1e308,-0.0]})"},
            {"ping-unicode", R"({"action":"ping","timestamp":"\ud83d\ude00 \u00e9 \u0000"})"},
            {"ping-lone-surrogate", R"({"action":"ping","timestamp":"\udc00"})"},
            {"subscribe", R"({"action":"subscribe","topic":"task:42","request_id":"s-1"})"},
            {"subscribe-empty", R"({"action":"subscribe","topic":""})"},
            {"subscribe-number", R"({"action":"subscribe","topic":7})"},
            {"unsubscribe", R"({"action":"unsubscribe","topic":"news"})"},
            {"confirm",
             R"({"action":"confirm","callback_id":"cb-1","proceed":true,"feedback":"ok"})"},
            {"confirm-bad", R"({"action":"confirm","callback_id":"cb-2","proceed":"yes"})"},
            {"confirm-feedback-null",
             R"({"action":"confirm","callback_id":"cb-1","proceed":false,"feedback":null})"},
            {"cancel", R"({"action":"cancel","task_id":"t-1","user_id":"alice"})"},
            {"cancel-other", R"({"action":"cancel","task_id":"t-1","user_id":"mallory"})"},
            {"cancel-bad", R"({"action":"cancel","task_id":"","user_id":3})"},
            {"ack", R"({"action":"ack","message_id":"m-1","request_id":0})"},
            {"ack-bad", R"({"action":"ack","message_id":["m-1"]})"},
            {"echo",
             R"({"action":"echo","type":"echoed","payload":[1,2,{"k":"v"}],"request_id":1.5})"},
            {"boom", R"({"action":"boom","request_id":"b"})"},
            {"later", R"({"action":"later","request_id":"l"})"},
            {"unknown", R"({"action":"no such action"})"},
            {"action-number", R"({"action":5})"},
            {"request-id-array", R"({"action":"ping","request_id":[1]})"},
            {"no-action", R"({"topic":"x"})"},
            {"array", R"([{"action":"ping"}])"},
            {"truncated", R"({"action":"ping",)"},
            {"trailing", R"({"action":"ping"} {})"},
            {"duplicate-action", R"({"action":"ping","action":"subscribe","topic":"t"})"},
        }) {
        write(target, s.name, s.text);
    }
    write(target, "ping-deep-arrays", deep_ping(wsmanager_fuzz::max_message_size));
    write(target, "echo-deep-objects", deep_objects("echo", wsmanager_fuzz::max_message_size));
    write(target, "echo-deep-arrays", deep_arrays("echo", wsmanager_fuzz::max_message_size));
}

void action_parsers() {
    constexpr std::string_view target = "action_parsers";
    struct seed {
        char const* name;
        char const* action;
        char const* body;
    };
    for (auto const& s : std::initializer_list<seed>{
             {"confirm", "confirm", R"({"callback_id":"cb-1","proceed":true,"feedback":"fine"})"},
             {"confirm-types", "confirm", R"({"callback_id":1,"proceed":null,"feedback":[]})"},
             {"cancel", "cancel", R"({"task_id":"t-1","user_id":"alice"})"},
             {"cancel-types", "cancel", R"({"task_id":{},"user_id":false})"},
             {"ack", "ack", R"({"message_id":"m-1"})"},
             {"subscribe", "subscribe", R"({"topic":"task:1"})"},
             {"subscribe-long", "subscribe", nullptr},
             {"unsubscribe", "unsubscribe", R"({"topic":true})"},
             {"ping", "ping", R"({"timestamp":[1,2,3]})"},
             {"host", "report", R"({"type":"report","rows":[{"a":1},{"b":2}]})"},
             {"send-with-ack", "", R"({"type":"note","message_id":"old","requires_ack":false})"},
             {"send-with-ack-duplicates", "",
              R"({"type":"note","message_id":"a","message_id":"b","x":1})"},
             {"send-with-ack-array", "", R"([{"type":"note"}])"},
             {"send-with-ack-escapes", "", R"({"type":"note","text":"\u00e9\ud83d\ude00\n"})"},
             {"send-with-ack-number", "", "3.25"},
             {"not-json", "", "{"},
         }) {
        std::string body =
            s.body != nullptr ? s.body : R"({"topic":")" + std::string(300, 't') + R"("})";
        write(target, s.name, std::string(s.action) + std::string(1, '\0') + body);
    }
    auto const deep = deep_ping(wsmanager_fuzz::max_message_size - 5);
    write(target, "ping-deep-arrays", "ping" + std::string(1, '\0') + deep);
}

void frame_router() {
    constexpr std::string_view target = "frame_router";
    client_frames(target);
    write(target, "sequence",
          join({R"({"action":"subscribe","topic":"a","request_id":1})",
                R"({"action":"subscribe","topic":"a"})", R"({"action":"unsubscribe","topic":"a"})",
                R"({"action":"unsubscribe","topic":"a"})",
                R"({"action":"confirm","callback_id":"cb-1","proceed":true})",
                R"({"action":"cancel","task_id":"t","user_id":"alice"})",
                R"({"action":"ack","message_id":"m-1"})", R"({"action":"later","request_id":"x"})",
                R"({"action":"echo","n":1})", R"({"action":"boom"})", "not json", ""}));
}

void handshake() {
    constexpr std::string_view target = "handshake";
    auto const flags = [](unsigned char bits) { return std::string(1, static_cast<char>(bits)); };
    std::string_view const secret = input::secret;
    auto const dev = flags(0);
    auto const jwt = flags(input::jwt_mode);
    auto const jwt_logged = flags(input::jwt_mode | input::log_everything);
    std::string const origin_ok = "origin: " + std::string(input::allowed_origin_a);
    std::string_view const v13 = "Sec-WebSocket-Version: 13";

    write(target, "dev", dev + join({"/ws?user_id=alice", origin_ok, v13}));
    write(target, "dev-anonymous", dev + join({"/ws", v13}));
    write(target, "version-missing", dev + join({"/ws?user_id=alice"}));
    write(target, "version-8", dev + join({"/ws?user_id=alice", "sec-websocket-version: 8"}));
    write(target, "dev-escapes", dev + join({"/ws?x=1&&user_id=al%C3%A9+b&user_id=second", v13}));
    write(target, "dev-bad-escape", dev + join({"/ws?user_id=%zz", v13}));
    write(target, "dev-truncated-escape", dev + join({"/ws?user_id=%4", v13}));
    write(target, "dev-not-utf8", flags(input::log_everything) + join({"/ws?user_id=%ff%fe", v13}));
    write(target, "origin-allowed",
          flags(input::origin_list) + join({"/ws?user_id=bob", origin_ok, v13}));
    write(target, "origin-refused",
          flags(input::origin_list | input::log_everything) +
              join({"/ws?user_id=bob", "Origin: https://evil.example", v13}));
    write(target, "origin-missing", flags(input::origin_list) + join({"/ws", v13}));
    write(target, "authenticator-throws",
          flags(input::authenticator | input::log_everything) + join({"/ws?fail=1", v13}));
    write(target, "authenticator-banned",
          flags(input::authenticator) + join({"/ws?user_id=eve", "X-Role: banned", v13}));

    std::string const valid = sign_hs256_jwt(R"({"sub":"alice","exp":4102444800})", secret);
    struct token_seed {
        char const* name;
        std::string token;
    };
    std::vector<token_seed> const tokens = {
        {"valid", valid},
        {"valid-iat-nbf",
         sign_hs256_jwt(R"({"sub":"bob","iat":1600000000,"nbf":1600000000})", secret)},
        {"expired", sign_hs256_jwt(R"({"sub":"alice","exp":1000000000})", secret)},
        {"not-yet-valid", sign_hs256_jwt(R"({"sub":"alice","nbf":4102444800})", secret)},
        {"exp-string", sign_hs256_jwt(R"({"sub":"alice","exp":"tomorrow"})", secret)},
        {"no-sub", sign_hs256_jwt(R"({"name":"alice"})", secret)},
        {"sub-empty", sign_hs256_jwt(R"({"sub":""})", secret)},
        {"sub-number", sign_hs256_jwt(R"({"sub":7})", secret)},
        {"sub-not-utf8", sign_hs256_jwt("{\"sub\":\"\xff\"}", secret)},
        {"duplicate-claim", sign_hs256_jwt(R"({"sub":"alice","sub":"root"})", secret)},
        {"payload-array", sign_hs256_jwt(R"(["alice"])", secret)},
        {"alg-hs512",
         sign_hs256_jwt(R"({"sub":"alice"})", secret, R"({"alg":"HS512","typ":"JWT"})")},
        {"alg-none", sign_hs256_jwt(R"({"sub":"alice"})", secret, R"({"alg":"none"})")},
        {"alg-rs256", sign_hs256_jwt(R"({"sub":"alice"})", secret, R"({"alg":"RS256"})")},
        {"crit", sign_hs256_jwt(R"({"sub":"alice"})", secret, R"({"alg":"HS256","crit":["exp"]})")},
        {"duplicate-alg",
         sign_hs256_jwt(R"({"sub":"alice"})", secret, R"({"alg":"HS256","alg":"none"})")},
        {"header-not-json", sign_hs256_jwt(R"({"sub":"alice"})", secret, "HS256")},
        {"other-secret", sign_hs256_jwt(R"({"sub":"alice"})", "another secret")},
        {"truncated", valid.substr(0, valid.size() - 10)},
        {"two-parts", valid.substr(0, valid.rfind('.'))},
        {"four-parts", valid + ".x"},
        {"padded", valid + "="},
    };
    for (auto const& t : tokens) {
        write(target, "jwt-query-" + std::string(t.name),
              jwt + join({"/ws?token=" + t.token, v13}));
    }
    write(target, "jwt-bearer", jwt_logged + join({"/ws", "Authorization: Bearer " + valid, v13}));
    write(target, "jwt-bearer-case-spaces",
          jwt + join({"/ws?user_id=root", "authorization:   bearer \t" + valid + " \t", v13}));
    write(target, "jwt-bearer-expired",
          jwt + join({"/ws", "Authorization: Bearer " + tokens[2].token, v13}));
    write(target, "jwt-basic", jwt + join({"/ws", "Authorization: Basic YWxpY2U6cHc=", v13}));
    write(target, "jwt-missing", jwt_logged + join({"/ws?user_id=alice", v13}));
    write(target, "jwt-query-and-header",
          jwt + join({"/ws?token=" + tokens[2].token, "Authorization: Bearer " + valid, v13}));
    write(target, "jwt-authenticator",
          flags(input::jwt_mode | input::authenticator) + join({"/ws?token=" + valid, v13}));

    // mint_token: the harness signs these claims and headers itself.
    auto const mint = flags(input::jwt_mode | input::mint_token);
    auto const mint_header = flags(input::jwt_mode | input::mint_token | input::token_in_header);
    std::string_view const hs256 = R"({"alg":"HS256","typ":"JWT"})";
    write(target, "mint", mint + join({"/ws", R"({"sub":"carol","exp":4102444800})", hs256, v13}));
    write(target, "mint-query",
          mint + join({"/ws?a=b", R"({"sub":"carol"})", R"({"alg":"HS256"})", v13}));
    write(target, "mint-header",
          mint_header +
              join({"/ws", R"({"sub":"dave","nbf":0,"exp":1e300})", hs256, origin_ok, v13}));
    write(target, "mint-duplicates",
          mint + join({"/ws", R"({"sub":"a","exp":1,"exp":4102444800})", hs256, v13}));
    write(target, "mint-lone-surrogate", mint + join({"/ws", R"({"sub":"\udc00"})", hs256, v13}));
    write(target, "mint-alg-none",
          mint + join({"/ws", R"({"sub":"carol"})", R"({"alg":"none"})", v13}));

    // claims_required: iss and aud must match.
    auto const claims = flags(input::jwt_mode | input::mint_token | input::claims_required);
    write(target, "claims",
          claims + join({"/ws",
                         R"({"sub":"erin","iss":"https://id.example.com","aud":["x","wsmanager"]})",
                         hs256, v13}));
    write(
        target, "claims-aud-string",
        claims + join({"/ws", R"({"sub":"erin","iss":"https://id.example.com","aud":"wsmanager"})",
                       hs256, v13}));
    write(target, "claims-wrong-issuer",
          claims + join({"/ws", R"({"sub":"erin","iss":"https://evil.example","aud":"wsmanager"})",
                         hs256, v13}));
    write(target, "claims-aud-not-strings",
          claims + join({"/ws", R"({"sub":"erin","iss":"https://id.example.com","aud":[1]})", hs256,
                         v13}));
    write(target, "claims-missing", claims + join({"/ws", R"({"sub":"erin"})", hs256, v13}));

    // public_key: ES256 tokens reach the key's check (the private key is gone: none passes).
    std::string_view const es256 = R"({"alg":"ES256","typ":"JWT"})";
    std::string const es256_input = wsmanager::detail::base64url_encode(es256) + "." +
                                    wsmanager::detail::base64url_encode(R"({"sub":"frank"})");
    auto const es256_token = [&](std::string const& signature) {
        return es256_input + "." + wsmanager::detail::base64url_encode(signature);
    };
    auto const key = flags(input::public_key);
    auto const key_and_secret = flags(input::public_key | input::jwt_mode);
    write(target, "es256-zero-signature",
          key + join({"/ws?token=" + es256_token(std::string(64, '\0')), v13}));
    write(target, "es256-ones-signature",
          key + join({"/ws?token=" + es256_token(std::string(64, '\xff')), v13}));
    write(target, "es256-short-signature",
          key + join({"/ws?token=" + es256_token(std::string(63, '\x01')), v13}));
    write(target, "es256-der-signature",
          key + join({"/ws?token=" + es256_token("\x30\x06\x02\x01\x01\x02\x01\x01"), v13}));
    write(target, "es256-hs256-token", key + join({"/ws?token=" + valid, v13}));
    write(target, "es256-and-hs256",
          key_and_secret + join({"/ws", "Authorization: Bearer " + valid, v13}));
    write(target, "es256-and-hs256-es-token",
          key_and_secret + join({"/ws?token=" + es256_token(std::string(64, '\x01')), v13}));
    write(target, "es256-mint-claims",
          flags(input::public_key | input::mint_token | input::claims_required) +
              join({"/ws", R"({"sub":"gina","iss":"https://id.example.com","aud":"wsmanager"})",
                    es256, v13}));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s <corpus root, e.g. tests/fuzz/corpus>\n", argv[0]);
        return 2;
    }
    root = argv[1];
    client_frames("client_frame");
    action_parsers();
    frame_router();
    handshake();
    return 0;
}
