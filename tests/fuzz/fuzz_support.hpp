// SPDX-License-Identifier: BSL-1.0
#pragma once

// What the fuzz harnesses share: the input budget, a tiny splitter (the same in the libFuzzer
// and the g++ replay builds, so a corpus file means the same thing to both), a failure that
// every build reports as a crash, a sink the optimizer cannot drop, and the oracle every
// server frame must pass.
//
// Only the rooms' own headers are included, never <wsmanager/wsmanager.hpp> or manager.hpp:
// those pull in asio::awaitable, which clang 14 cannot compile against g++ 12's libstdc++.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <rapidjson/document.h>

#include <wsmanager/detail/utf8.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/message.hpp>

namespace wsmanager_fuzz {

/// Options::max_message_size's default: the server never hands a longer frame to the codec.
inline constexpr std::size_t max_message_size = 64 * 1024;

/// The input as text, cut at `limit` bytes (what lies beyond can never reach the code).
inline std::string_view as_text(std::uint8_t const* data, std::size_t size,
                                std::size_t limit = max_message_size) {
    if (size > limit) size = limit;
    return {reinterpret_cast<char const*>(data), size};
}

/// A harness-detected failure: printed, then abort(), which libFuzzer and the replay driver
/// both report as a crash (with the input that caused it).
[[noreturn]] inline void fail(char const* what, std::string_view detail = {}) {
    std::fprintf(stderr, "wsmanager fuzz: %s", what);
    if (!detail.empty()) {
        std::fprintf(stderr, ": %.*s", static_cast<int>(detail.size() > 300 ? 300 : detail.size()),
                     detail.data());
    }
    std::fprintf(stderr, "\n");
    std::abort();
}

inline void require(bool condition, char const* what, std::string_view detail = {}) {
    if (!condition) fail(what, detail);
}

/// Values the harnesses read go here, so that reading them cannot be optimized away.
inline void touch(std::size_t value) {
    static std::size_t volatile sink = 0;
    sink = sink + value;
}
inline void touch(std::string_view text) {
    touch(text.size());
    if (!text.empty()) touch(static_cast<unsigned char>(text.front()));
}

/// Cuts an input into parts at a separator byte.
class splitter {
public:
    explicit splitter(std::string_view text) : rest_(text) {}

    bool empty() const noexcept { return rest_.empty(); }
    std::string_view rest() const noexcept { return rest_; }

    /// The first byte (0 when there is none), consumed.
    unsigned char byte() noexcept {
        if (rest_.empty()) return 0;
        auto const b = static_cast<unsigned char>(rest_.front());
        rest_.remove_prefix(1);
        return b;
    }

    /// Everything up to the next `separator` (consumed with it), or all that is left.
    std::string_view next(char separator = '\0') noexcept {
        auto const at = rest_.find(separator);
        auto const part = rest_.substr(0, at);
        rest_ = at == std::string_view::npos ? std::string_view{} : rest_.substr(at + 1);
        return part;
    }

private:
    std::string_view rest_;
};

/// The server's logger with a sink that reads each record and writes nothing (no I/O in a
/// harness); `threshold` off disables it, trace formats every record.
inline wsmanager::detail::logger quiet_logger(wsmanager::LogLevel threshold) {
    return wsmanager::detail::logger(
        [](wsmanager::LogRecord const& record) {
            touch(record.event);
            touch(record.message);
            touch(record.user_id);
            touch(static_cast<std::size_t>(record.connection_id));
        },
        threshold);
}

/// The member `name` of an object, or nullptr.
inline rapidjson::Value const* member(rapidjson::Value const& object, char const* name) {
    auto const it = object.FindMember(name);
    return it == object.MemberEnd() ? nullptr : &it->value;
}

/// Checks what every frame the server sends must be: its websocketpp frame header (FIN +
/// text, then the RFC 6455 length) matches the payload, and the payload is UTF-8 JSON, an
/// object. Returns the parsed frame. The parse is iterative, so the oracle never recurses.
inline rapidjson::Document check_json_frame(wsmanager::Message const& message) {
    auto const text = message.text();
    require(text.size() == message.size(), "Message::size() differs from text()");
    auto const& frame = wsmanager::detail::frame_of(message);
    require(frame != nullptr, "a Message without a frame");
    std::string const header(frame->header());
    require(header.size() >= 2 && static_cast<unsigned char>(header[0]) == 0x81,
            "frame header: not FIN + text");
    std::uint64_t length = static_cast<unsigned char>(header[1]);
    std::size_t length_bytes = 0;
    if (length == 126) length_bytes = 2;
    if (length == 127) length_bytes = 8;
    require(header.size() == 2 + length_bytes, "frame header: wrong size");
    if (length_bytes != 0) {
        length = 0;
        for (std::size_t i = 0; i < length_bytes; ++i) {
            length = (length << 8) | static_cast<unsigned char>(header[2 + i]);
        }
        require(length >= (length_bytes == 2 ? 126u : 65536u), "frame header: not minimal");
    }
    require(length == text.size(), "frame header: length differs from the payload");

    require(wsmanager::detail::is_valid_utf8(text), "server frame is not UTF-8", text);
    rapidjson::Document document;
    document.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(
        text.data(), text.size());
    require(!document.HasParseError(), "server frame is not JSON", text);
    require(document.IsObject(), "server frame is not an object", text);
    return document;
}

/// check_json_frame, and the frame is one of the server's own: its "type" is a string
/// (`type`, when given).
inline rapidjson::Document check_server_frame(wsmanager::Message const& message,
                                              std::string_view type = {}) {
    auto document = check_json_frame(message);
    auto const text = message.text();
    auto const* found = member(document, "type");
    require(found != nullptr && found->IsString(), "server frame has no type", text);
    if (!type.empty()) {
        require(std::string_view(found->GetString(), found->GetStringLength()) == type,
                "server frame of the wrong type", text);
    }
    return document;
}

/// True when `copy` (parsed back from a server frame) is the value `original` that was
/// echoed: same type; scalars equal (doubles only by type: RapidJSON's default parse is not
/// exact to the last bit); arrays and objects of the same size. Never recurses.
inline bool echoes(rapidjson::Value const& original, rapidjson::Value const& copy) {
    if (original.GetType() != copy.GetType()) return false;
    if (original.IsString()) {
        return std::string_view(original.GetString(), original.GetStringLength()) ==
               std::string_view(copy.GetString(), copy.GetStringLength());
    }
    if (original.IsInt64()) return copy.IsInt64() && original.GetInt64() == copy.GetInt64();
    if (original.IsUint64()) return copy.IsUint64() && original.GetUint64() == copy.GetUint64();
    if (original.IsArray()) return original.Size() == copy.Size();
    if (original.IsObject()) return original.MemberCount() == copy.MemberCount();
    return true;  // null, bool (same type is the same value), double
}

/// The input format of fuzz_handshake (shared with the seed generator):
/// `flags, resource NUL [claims NUL jose-header NUL] header-line NUL header-line ...`,
/// a header line being `name: value`.
namespace handshake_input {
inline constexpr unsigned char jwt_mode = 0x01;         ///< Options::auth_secret is set
inline constexpr unsigned char origin_list = 0x02;      ///< Options::allowed_origins is set
inline constexpr unsigned char authenticator = 0x04;    ///< a host Authenticator wraps the default
inline constexpr unsigned char mint_token = 0x08;       ///< sign claims + header with the secret
inline constexpr unsigned char token_in_header = 0x10;  ///< minted: Authorization, not ?token=
inline constexpr unsigned char log_everything = 0x20;   ///< logger at trace (else off)
inline constexpr unsigned char claims_required = 0x40;  ///< auth_issuer and auth_audience set
inline constexpr unsigned char public_key = 0x80;       ///< auth_public_key: an EC P-256 key

/// Options::auth_secret in JWT mode.
inline constexpr std::string_view secret = "wsmanager-fuzz-secret";
/// Options::auth_issuer and auth_audience with claims_required.
inline constexpr std::string_view issuer = "https://id.example.com";
inline constexpr std::string_view audience = "wsmanager";
/// Options::auth_public_key with public_key: a P-256 key (ES256) whose private half was
/// thrown away, so ES256 tokens reach the signature check but never pass it.
inline constexpr std::string_view ec_public_key_pem =
    "-----BEGIN PUBLIC KEY-----\n"
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1IIikAjmpoH/Hus9Qiidz7vDNYna\n"
    "QW+qeza6vI/67jjUkueUXWGa6cFcr+QBVImBz5vmVaOFuYwq2tU3kw0/QA==\n"
    "-----END PUBLIC KEY-----\n";
/// Options::allowed_origins when origin_list is set.
inline constexpr std::string_view allowed_origin_a = "https://app.example.com";
inline constexpr std::string_view allowed_origin_b = "http://localhost:8080";
/// The most header lines the harness reads.
inline constexpr std::size_t max_headers = 16;
}  // namespace handshake_input

}  // namespace wsmanager_fuzz
