// SPDX-License-Identifier: BSL-1.0
// Handshake authentication over real sockets: JWT mode (HS256 with a secret, RS256 with an
// identity provider's public key made by the openssl command line for the run),
// development mode, a custom Authenticator and the Origin allow-list. Most cases use a raw TCP
// client below that sends an HTTP upgrade request with any headers (Authorization, Origin) and
// reads the status, the refusal's body or, after a 101, the first frame; one uses the shared
// websocketpp WsClient. The "token_expiry" cases keep connections open past their token's
// expiry (a few seconds each).

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/read_until.hpp>
#include <asio/use_future.hpp>  // start_server/stop_server
#include <asio/write.hpp>
#include <catch2/catch.hpp>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <rapidjson/document.h>
#include <unistd.h>

#include <wsmanager/detail/jwt.hpp>
#include <wsmanager/wsmanager.hpp>

#include "harness.hpp"

using namespace std::chrono_literals;

namespace {

constexpr char const* secret = "s3cret";

std::int64_t unix_seconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string token_for(std::string const& sub, std::int64_t exp_from_now = 3600,
                      std::string const& key = secret) {
    return wsmanager::detail::sign_hs256_jwt(
        R"({"sub":")" + sub + R"(","exp":)" + std::to_string(unix_seconds() + exp_from_now) + "}",
        key);
}

/// What the server answered to an upgrade request.
struct upgrade_reply {
    int status = 0;
    std::string head;         ///< the status line and the headers
    std::string body;         ///< the body of a refusal (its reason)
    std::string first_frame;  ///< after a 101: the payload of the first text frame
};

/// One upgrade request with extra headers on a fresh TCP connection, every step bounded in
/// time (tests/support's RawClient sends no custom headers and reads no refusal body).
class upgrade_client {
public:
    explicit upgrade_client(std::uint16_t port) : port_(port) {}

    upgrade_reply upgrade(std::string const& target, std::vector<std::string> const& headers = {}) {
        asio::ip::tcp::endpoint const endpoint(asio::ip::make_address("127.0.0.1"), port_);
        wait([&](auto handler) { socket_.async_connect(endpoint, handler); });
        std::string request = "GET " + target +
                              " HTTP/1.1\r\n"
                              "Host: 127.0.0.1:" +
                              std::to_string(port_) +
                              "\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n";
        for (auto const& header : headers) request += header + "\r\n";
        request += "\r\n";
        wait([&](auto handler) { asio::async_write(socket_, asio::buffer(request), handler); });

        auto const end = wait([&](auto handler) {
            asio::async_read_until(socket_, asio::dynamic_buffer(buffer_), "\r\n\r\n", handler);
        });
        std::string const head = buffer_.substr(0, end);
        buffer_.erase(0, end);
        INFO(head);
        upgrade_reply reply;
        reply.head = head;
        REQUIRE(head.rfind("HTTP/1.1 ", 0) == 0);
        reply.status = std::stoi(head.substr(9, 3));
        if (reply.status == 101) {
            reply.first_frame = read_text_frame();
        } else {
            reply.body = read_body(head);
        }
        return reply;
    }

private:
    /// Starts an operation with a completion handler and runs it, for at most 5 s; fails the
    /// test on an error or a timeout. Returns the bytes transferred.
    template <class Start>
    std::size_t wait(Start start) {
        std::optional<std::error_code> error;
        std::size_t transferred = 0;
        start([&](std::error_code ec, std::size_t n = 0) {
            error = ec;
            transferred = n;
        });
        context_.restart();
        context_.run_for(5s);
        REQUIRE(error.has_value());
        INFO(error->message());
        REQUIRE_FALSE(*error);
        return transferred;
    }

    void fill(std::size_t size) {
        if (buffer_.size() >= size) return;
        wait([&](auto handler) {
            asio::async_read(socket_, asio::dynamic_buffer(buffer_),
                             asio::transfer_at_least(size - buffer_.size()), handler);
        });
    }

    std::string read_body(std::string const& head) {
        std::size_t length = 0;
        auto const at = head.find("Content-Length: ");
        if (at != std::string::npos) length = std::stoul(head.substr(at + 16));
        fill(length);
        return buffer_.substr(0, length);
    }

    /// One unmasked, unfragmented server text frame.
    std::string read_text_frame() {
        fill(2);
        auto const byte = [this](std::size_t i) { return static_cast<unsigned char>(buffer_[i]); };
        REQUIRE(byte(0) == 0x81);  // FIN + text
        std::size_t length = byte(1) & 0x7F;
        std::size_t header = 2;
        if (length == 126) {
            fill(4);
            length = (std::size_t{byte(2)} << 8) | byte(3);
            header = 4;
        }
        REQUIRE(length < 65536);
        fill(header + length);
        auto payload = buffer_.substr(header, length);
        buffer_.erase(0, header + length);
        return payload;
    }

    std::uint16_t port_;
    asio::io_context context_;
    asio::ip::tcp::socket socket_{context_};
    std::string buffer_;
};

/// A started manager on 127.0.0.1 and a free port; stopped at the end of the scope.
struct running_manager {
    explicit running_manager(wsmanager::Options options,
                             wsmanager::Authenticator authenticator = {})
        : manager(std::move(options)) {
        if (authenticator) manager.set_authenticator(std::move(authenticator));
        manager.start_server(asio::use_future).get();
    }
    ~running_manager() { manager.stop_server(asio::use_future).get(); }

    upgrade_reply upgrade(std::string const& target, std::vector<std::string> const& headers = {}) {
        return upgrade_client(manager.local_port()).upgrade(target, headers);
    }

    wsmanager::WebSocketManager<> manager;
};

wsmanager::Options options(std::string auth_secret) {
    auto options = wsmanager::test::test_options();  // 127.0.0.1, port 0, quiet
    options.auth_secret = std::move(auth_secret);
    return options;
}

/// An identity provider's RSA key pair, made with the openssl command line in a folder of
/// its own (removed at exit), as an operator would: genpkey, then pkey -pubout.
class idp_rsa_key_files {
public:
    explicit idp_rsa_key_files(std::string const& name)
        : dir_(std::filesystem::temp_directory_path() /
               ("wsmanager-auth-test-" + std::to_string(::getpid()) + "-" + name)) {
        std::filesystem::create_directories(dir_);
        std::string const command =
            "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out '" +
            private_key().string() + "' >/dev/null 2>&1 && openssl pkey -in '" +
            private_key().string() + "' -pubout -out '" + public_key().string() +
            "' >/dev/null 2>&1";
        ok_ = std::system(command.c_str()) == 0 && std::filesystem::exists(public_key());
    }
    idp_rsa_key_files(idp_rsa_key_files const&) = delete;
    idp_rsa_key_files& operator=(idp_rsa_key_files const&) = delete;
    ~idp_rsa_key_files() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    bool ok() const { return ok_; }
    std::filesystem::path private_key() const { return dir_ / "private.pem"; }
    std::filesystem::path public_key() const { return dir_ / "public.pem"; }
    std::string public_key_text() const {
        std::ifstream file(public_key());
        std::ostringstream text;
        text << file.rdbuf();
        return text.str();
    }

private:
    std::filesystem::path dir_;
    bool ok_ = false;
};

/// The identity provider's key pair, and another one (an impostor's), made once for the run.
idp_rsa_key_files const& idp_key() {
    static idp_rsa_key_files const files("idp");
    return files;
}
idp_rsa_key_files const& impostor_key() {
    static idp_rsa_key_files const files("impostor");
    return files;
}

constexpr char const* idp_issuer = "https://idp.test/realms/app";
constexpr char const* idp_audience = "wsmanager";

/// An RS256 token for `claims_json`, signed as the identity provider does: EVP_DigestSign,
/// SHA-256, PKCS#1 v1.5, with the private key read from `keys`' PEM file.
std::string rs256_token(std::string const& claims_json, idp_rsa_key_files const& keys = idp_key()) {
    using wsmanager::detail::base64url_encode;
    std::unique_ptr<BIO, decltype(&BIO_free)> file(
        BIO_new_file(keys.private_key().string().c_str(), "r"), &BIO_free);
    REQUIRE(file);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        PEM_read_bio_PrivateKey(file.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
    REQUIRE(key);
    std::string const input = base64url_encode(R"({"alg":"RS256","typ":"JWT","kid":"test"})") +
                              "." + base64url_encode(claims_json);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                    &EVP_MD_CTX_free);
    REQUIRE(context);
    REQUIRE(EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1);
    auto const* data = reinterpret_cast<unsigned char const*>(input.data());
    std::size_t length = 0;
    REQUIRE(EVP_DigestSign(context.get(), nullptr, &length, data, input.size()) == 1);
    std::string signature(length, '\0');
    REQUIRE(EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()),
                           &length, data, input.size()) == 1);
    signature.resize(length);
    return input + "." + base64url_encode(signature);
}

/// The claims an identity provider would put in a token for `sub`; `aud` is JSON (Keycloak
/// sends an array).
std::string idp_claims(std::string const& sub, std::int64_t exp_from_now = 3600,
                       std::string const& iss = idp_issuer,
                       std::string const& aud = R"(["account","wsmanager"])") {
    return R"({"sub":")" + sub + R"(","iss":")" + iss + R"(","aud":)" + aud + R"(,"exp":)" +
           std::to_string(unix_seconds() + exp_from_now) + "}";
}

/// Options of a server that trusts the identity provider's key (given as a file path).
wsmanager::Options idp_options() {
    auto options = wsmanager::test::test_options();
    options.auth_public_key = idp_key().public_key().string();
    options.auth_issuer = idp_issuer;
    options.auth_audience = idp_audience;
    return options;
}

/// The user_id of a `connected` frame ("<null>" for an anonymous connection).
std::string connected_user(std::string const& frame) {
    INFO(frame);
    rapidjson::Document document;
    document.Parse(frame.c_str());
    REQUIRE(document.IsObject());
    REQUIRE(document["type"] == "connected");
    auto const& user = document["user_id"];
    return user.IsNull() ? "<null>" : user.GetString();
}

}  // namespace

TEST_CASE("JWT mode: a valid token in ?token= identifies the user", "[integration][auth]") {
    running_manager server(options(secret));
    auto const reply = server.upgrade("/ws?token=" + token_for("alice"));
    REQUIRE(reply.status == 101);
    CHECK(connected_user(reply.first_frame) == "alice");

    // The same with a real client library, offering the subprotocol.
    auto client = wsmanager::test::connect_client(server.manager.local_port(),
                                                  "token=" + token_for("dave"));
    REQUIRE(client.result);
    REQUIRE(client.hello);
    CHECK(wsmanager::test::string_member(*client.hello, "user_id") == "dave");
    auto refused = wsmanager::test::connect_client(server.manager.local_port(),
                                                   "token=" + token_for("dave", -3600));
    CHECK_FALSE(refused.result);
    CHECK(refused.result.http_status == 401);
}

TEST_CASE("JWT mode: a valid token in Authorization: Bearer", "[integration][auth]") {
    running_manager server(options(secret));
    auto const reply = server.upgrade("/", {"Authorization: Bearer " + token_for("bob")});
    REQUIRE(reply.status == 101);
    CHECK(connected_user(reply.first_frame) == "bob");

    // The scheme is case-insensitive; spaces around the token are tolerated.
    auto const lower = server.upgrade("/", {"authorization: bearer   " + token_for("carol")});
    REQUIRE(lower.status == 101);
    CHECK(connected_user(lower.first_frame) == "carol");
}

TEST_CASE("JWT mode: missing or invalid tokens get 401 and no upgrade", "[integration][auth]") {
    running_manager server(options(secret));

    SECTION("no token") {
        auto const reply = server.upgrade("/ws");
        CHECK(reply.status == 401);
        CHECK(reply.body == "Missing token");
    }
    SECTION("empty token, or an Authorization header of another scheme") {
        CHECK(server.upgrade("/ws?token=").status == 401);
        CHECK(server.upgrade("/ws", {"Authorization: Basic YWxpY2U6cHc="}).body ==
              "Missing token");
        CHECK(server.upgrade("/ws", {"Authorization: Bearer "}).status == 401);
    }
    SECTION("bad signature") {
        auto const reply = server.upgrade("/ws?token=" + token_for("alice", 3600, "wrong"));
        CHECK(reply.status == 401);
        CHECK(reply.body == "Invalid token signature");
        CHECK(server.upgrade("/", {"Authorization: Bearer " + token_for("alice", 3600, "wrong")})
                  .status == 401);
    }
    SECTION("expired") {
        auto const reply = server.upgrade("/ws?token=" + token_for("alice", -3600));
        CHECK(reply.status == 401);
        CHECK(reply.body == "Token expired");
    }
    SECTION("garbage") {
        CHECK(server.upgrade("/ws?token=not-a-jwt").status == 401);
    }
    SECTION("?user_id= is not trusted when a secret is set") {
        auto const reply = server.upgrade("/ws?user_id=mallory");
        CHECK(reply.status == 401);
        CHECK(reply.body == "Missing token");
        // Nor does it override the token's subject.
        auto const both = server.upgrade("/ws?user_id=mallory&token=" + token_for("alice"));
        REQUIRE(both.status == 101);
        CHECK(connected_user(both.first_frame) == "alice");
    }
}

TEST_CASE("development mode trusts ?user_id=", "[integration][auth]") {
    running_manager server(options(""));
    auto const alice = server.upgrade("/ws?user_id=alice");
    REQUIRE(alice.status == 101);
    CHECK(connected_user(alice.first_frame) == "alice");

    auto const anonymous = server.upgrade("/ws");
    REQUIRE(anonymous.status == 101);
    CHECK(connected_user(anonymous.first_frame) == "<null>");
}

TEST_CASE("a custom Authenticator decides, with its own status", "[integration][auth]") {
    running_manager server(options(secret), [](wsmanager::HandshakeRequest const& request) {
        if (request.header("X-Api-Key") == "letmein") {
            return wsmanager::AuthResult::accept("service:" + request.query_param("name"));
        }
        return wsmanager::AuthResult::reject("Forbidden by policy", 403);
    });

    auto const refused = server.upgrade("/ws?token=" + token_for("alice"));
    CHECK(refused.status == 403);
    CHECK(refused.body == "Forbidden by policy");

    auto const accepted = server.upgrade("/ws?name=indexer", {"X-API-Key: letmein"});
    REQUIRE(accepted.status == 101);
    CHECK(connected_user(accepted.first_frame) == "service:indexer");
}

TEST_CASE("the Origin allow-list refuses other origins with 403", "[integration][auth]") {
    auto opts = options("");
    opts.allowed_origins = {"https://app.example"};
    running_manager server(std::move(opts));

    CHECK(server.upgrade("/ws?user_id=alice", {"Origin: https://evil.example"}).status == 403);
    CHECK(server.upgrade("/ws?user_id=alice").status == 403);  // no Origin at all
    auto const ok = server.upgrade("/ws?user_id=alice", {"Origin: https://app.example"});
    REQUIRE(ok.status == 101);
    CHECK(connected_user(ok.first_frame) == "alice");
}

TEST_CASE("JWT mode with a public key: RS256 in ?token= and Authorization: Bearer",
          "[integration][auth][jwt_key]") {
    REQUIRE(idp_key().ok());
    running_manager server(idp_options());

    auto const query = server.upgrade("/ws?token=" + rs256_token(idp_claims("alice")));
    INFO(query.body);
    REQUIRE(query.status == 101);
    CHECK(connected_user(query.first_frame) == "alice");

    auto const bearer =
        server.upgrade("/ws", {"Authorization: Bearer " + rs256_token(idp_claims("bob"))});
    INFO(bearer.body);
    REQUIRE(bearer.status == 101);
    CHECK(connected_user(bearer.first_frame) == "bob");

    // A plain string aud works as well as an array.
    auto const single = server.upgrade(
        "/ws?token=" + rs256_token(idp_claims("carol", 3600, idp_issuer, R"("wsmanager")")));
    REQUIRE(single.status == 101);
    CHECK(connected_user(single.first_frame) == "carol");

    // The same with a real client library.
    auto client = wsmanager::test::connect_client(server.manager.local_port(),
                                                  "token=" + rs256_token(idp_claims("dave")));
    REQUIRE(client.result);
    REQUIRE(client.hello);
    CHECK(wsmanager::test::string_member(*client.hello, "user_id") == "dave");
}

TEST_CASE("JWT mode with a public key: bad tokens get 401 with WWW-Authenticate: Bearer",
          "[integration][auth][jwt_key]") {
    REQUIRE(idp_key().ok());
    REQUIRE(impostor_key().ok());
    running_manager server(idp_options());
    auto const refused = [&](std::string const& token, std::string const& reason) {
        INFO(reason);
        for (auto const& reply : {server.upgrade("/ws?token=" + token),
                                  server.upgrade("/ws", {"Authorization: Bearer " + token})}) {
            CHECK(reply.status == 401);
            CHECK(reply.body == reason);
            CHECK_THAT(reply.head,
                       Catch::Contains("WWW-Authenticate: Bearer", Catch::CaseSensitive::No));
        }
    };
    refused(rs256_token(idp_claims("alice"), impostor_key()), "Invalid token signature");
    refused(rs256_token(idp_claims("alice", -3600)), "Token expired");
    refused(rs256_token(idp_claims("alice", 3600, "https://evil.test")),
            "Token issuer not accepted");
    refused(rs256_token(idp_claims("alice", 3600, idp_issuer, R"(["account"])")),
            "Token audience not accepted");
    // HS256 signed with the public key as the secret: the server holds no secret, so HS256
    // is not an algorithm it accepts.
    refused(wsmanager::detail::sign_hs256_jwt(idp_claims("mallory"), idp_key().public_key_text()),
            "Unsupported token algorithm: only RS256 is accepted");
    refused("not-a-jwt", "Malformed token: expected three dot-separated parts");
    CHECK(server.upgrade("/ws?user_id=mallory").body == "Missing token");
}

TEST_CASE("JWT mode with a secret and a public key accepts HS256 and RS256",
          "[integration][auth][jwt_key]") {
    REQUIRE(idp_key().ok());
    auto opts = options(secret);
    opts.auth_public_key = idp_key().public_key_text();  // PEM text this time, not a path
    running_manager server(std::move(opts));

    auto const hs256 = server.upgrade("/ws?token=" + token_for("alice"));
    REQUIRE(hs256.status == 101);
    CHECK(connected_user(hs256.first_frame) == "alice");
    auto const rs256 = server.upgrade("/ws?token=" + rs256_token(idp_claims("bob")));
    REQUIRE(rs256.status == 101);
    CHECK(connected_user(rs256.first_frame) == "bob");
    CHECK(server.upgrade("/ws?token=" + token_for("alice", 3600, "wrong")).status == 401);
    CHECK(server.upgrade("/ws?token=" + rs256_token(idp_claims("bob"), impostor_key())).status ==
          401);
}

TEST_CASE("default_authenticate in a host's Authenticator uses the public key too",
          "[integration][auth][jwt_key]") {
    REQUIRE(idp_key().ok());
    auto const opts = idp_options();
    running_manager server(opts, [opts](wsmanager::HandshakeRequest const& request) {
        auto verdict = wsmanager::default_authenticate(request, opts);
        if (verdict.accepted && verdict.user_id == "mallory") {
            return wsmanager::AuthResult::reject("User not allowed", 403);
        }
        return verdict;
    });
    auto const alice = server.upgrade("/ws?token=" + rs256_token(idp_claims("alice")));
    REQUIRE(alice.status == 101);
    CHECK(connected_user(alice.first_frame) == "alice");
    CHECK(server.upgrade("/ws?token=" + rs256_token(idp_claims("mallory"))).status == 403);
    CHECK(server.upgrade("/ws?token=" + rs256_token(idp_claims("alice"), impostor_key())).body ==
          "Invalid token signature");
}

namespace {

/// A token whose `exp` is so far in the past that, with the 30 s leeway the handshake
/// allows, it is still accepted now and stops being accepted 2 to 3 s from now; `deadline`
/// is that moment.
struct expiring_token {
    std::string token;
    std::chrono::system_clock::time_point deadline;
};

expiring_token token_expiring_soon(std::string const& sub) {
    auto const exp = unix_seconds() + 3 - wsmanager::detail::jwt_clock_skew_seconds;
    return {wsmanager::detail::sign_hs256_jwt(
                R"({"sub":")" + sub + R"(","exp":)" + std::to_string(exp) + "}", secret),
            std::chrono::system_clock::time_point(
                std::chrono::seconds(exp + wsmanager::detail::jwt_clock_skew_seconds))};
}

/// The value of one series in the manager's /metrics text, or -1 without it.
double token_expiry_metric(wsmanager::WebSocketManager<>& manager, std::string const& series) {
    std::istringstream lines(manager.metrics_text());
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1.0;
}

constexpr char const* token_expired_series = "wsmanager_connections_token_expired_total";

}  // namespace

TEST_CASE("JWT mode: a connection is closed with 1008 when its token expires",
          "[integration][auth][token_expiry]") {
    std::mutex mutex;
    std::vector<std::string> expiry_records;  // "user connection_id level" of token_expired
    auto opts = options(secret);
    opts.log_level = wsmanager::LogLevel::info;
    opts.log_sink = [&](wsmanager::LogRecord const& record) {
        if (record.event != "token_expired") return;
        std::lock_guard lock(mutex);
        expiry_records.push_back(std::string(record.user_id) + " " +
                                 std::to_string(record.connection_id) + " " +
                                 std::string(wsmanager::to_string(record.level)));
    };
    running_manager server(std::move(opts));
    auto const port = server.manager.local_port();

    auto const soon = token_expiring_soon("alice");
    auto expiring = wsmanager::test::connect_client(port, "token=" + soon.token);
    REQUIRE(expiring.result);
    REQUIRE(expiring.hello);
    // A token without exp, and one that expires in an hour: never closed for it.
    auto forever = wsmanager::test::connect_client(
        port, "token=" + wsmanager::detail::sign_hs256_jwt(R"({"sub":"bob"})", secret));
    REQUIRE(forever.hello);
    auto later = wsmanager::test::connect_client(port, "token=" + token_for("carol"));
    REQUIRE(later.hello);
    // Open and served until then.
    CHECK(wsmanager::test::ping_pong(*expiring));
    CHECK(token_expiry_metric(server.manager, token_expired_series) == 0.0);

    auto const closed = expiring->wait_closed(20s);
    auto const closed_at = std::chrono::system_clock::now();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1008);
    CHECK(closed->reason == "Token expired");
    CHECK(closed_at >= soon.deadline - 1s);  // not before the token stopped being accepted

    CHECK(wsmanager::test::ping_pong(*forever));
    CHECK(wsmanager::test::ping_pong(*later));
    CHECK(forever->is_open());
    CHECK(later->is_open());
    CHECK(wsmanager::test::wait_until(
        [&] { return token_expiry_metric(server.manager, token_expired_series) == 1.0; }));
    CHECK(token_expiry_metric(server.manager,
                              R"(wsmanager_connections_closed_total{code="1008"})") == 1.0);
    std::lock_guard lock(mutex);
    REQUIRE(expiry_records.size() == 1);
    CHECK(expiry_records.front() ==
          "alice " + wsmanager::test::string_member(*expiring.hello, "connection_id")
                         .value_or("?") +
              " info");
}

TEST_CASE("a custom Authenticator's expires_at closes the connection too",
          "[integration][auth][token_expiry]") {
    auto const until = std::chrono::system_clock::now() + 1500ms;
    running_manager server(options(""), [until](wsmanager::HandshakeRequest const& request) {
        return wsmanager::AuthResult::accept(request.query_param("user_id"), until);
    });
    auto client = wsmanager::test::connect_client(server.manager.local_port(), "user_id=svc");
    REQUIRE(client.hello);
    CHECK(wsmanager::test::ping_pong(*client));
    auto const closed = client->wait_closed(20s);
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1008);
    CHECK(closed->reason == "Token expired");
}

TEST_CASE("JWT mode: with close_on_token_expiry off, a connection outlives its token",
          "[integration][auth][token_expiry]") {
    auto opts = options(secret);
    opts.close_on_token_expiry = false;
    running_manager server(std::move(opts));
    auto const soon = token_expiring_soon("alice");
    auto client = wsmanager::test::connect_client(server.manager.local_port(),
                                                  "token=" + soon.token);
    REQUIRE(client.hello);
    // Past the moment the token stopped being accepted, and then some.
    std::this_thread::sleep_until(soon.deadline + 1500ms);
    CHECK(wsmanager::test::ping_pong(*client));
    CHECK(client->is_open());
    CHECK(token_expiry_metric(server.manager, token_expired_series) == 0.0);
    // A new handshake with it is refused as ever.
    CHECK(server.upgrade("/ws?token=" + soon.token).body == "Token expired");
}
