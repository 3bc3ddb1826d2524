// SPDX-License-Identifier: BSL-1.0
// config::tls (wss://) over loopback: a certificate made for the run (openssl req: a
// self-signed P-256 certificate for 127.0.0.1) and websocketpp's TLS client verifying it.
// Compiled as its own translation unit (the TLS manager is a second instantiation).

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include <asio/ssl/context.hpp>
#include <asio/use_future.hpp>
#include <catch2/catch.hpp>
#include <unistd.h>
#include <websocketpp/config/asio_client.hpp>

#include <wsmanager/tls.hpp>

#include "harness.hpp"

using namespace wsmanager::test;

namespace {

using TlsManager = wsmanager::WebSocketManager<wsmanager::config::tls>;
using TlsClient = BasicWsClient<websocketpp::config::asio_tls_client>;

/// A self-signed certificate and its key in a folder of their own, removed at exit.
class TestCertificate {
public:
    TestCertificate()
        : dir_(std::filesystem::temp_directory_path() /
               ("wsmanager-tls-test-" + std::to_string(::getpid()))) {
        std::filesystem::create_directories(dir_);
        std::string const command =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
            "-days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '" +
            key().string() + "' -out '" + cert().string() + "' >/dev/null 2>&1";
        ok_ = std::system(command.c_str()) == 0 && std::filesystem::exists(cert()) &&
              std::filesystem::exists(key());
    }
    TestCertificate(TestCertificate const&) = delete;
    TestCertificate& operator=(TestCertificate const&) = delete;
    ~TestCertificate() {
        std::error_code ignored;
        std::filesystem::remove_all(dir_, ignored);
    }

    bool ok() const { return ok_; }
    std::filesystem::path cert() const { return dir_ / "cert.pem"; }
    std::filesystem::path key() const { return dir_ / "key.pem"; }

private:
    std::filesystem::path dir_;
    bool ok_ = false;
};

TestCertificate const& test_certificate() {
    static TestCertificate const certificate;
    return certificate;
}

wsmanager::Options tls_options() {
    auto options = test_options();
    options.tls_cert = test_certificate().cert().string();
    options.tls_key = test_certificate().key().string();
    return options;
}

/// A client that trusts only the test certificate, so the handshake proves the server
/// presented it.
void trust_test_certificate(TlsClient& client) {
    client.set_tls_init_handler([](websocketpp::connection_hdl) {
        auto context = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
        context->load_verify_file(test_certificate().cert().string());
        context->set_verify_mode(asio::ssl::verify_peer);
        return context;
    });
}

std::string wss_url(std::uint16_t port, std::string_view query) {
    return "wss://127.0.0.1:" + std::to_string(port) + "/?" + std::string(query);
}

}  // namespace

TEST_CASE("config::tls: a wss:// client is identified, served and closed with 1001", "[tls]") {
    REQUIRE(test_certificate().ok());
    TlsManager manager(tls_options());
    start(manager);

    TlsClient alice;
    trust_test_certificate(alice);
    auto const connected =
        alice.connect(wss_url(manager.local_port(), "user_id=alice"), {"wsmanager.v1"});
    INFO(connected.error);
    REQUIRE(connected.opened);
    CHECK(connected.subprotocol == "wsmanager.v1");
    auto hello = alice.next_json();
    REQUIRE(hello.has_value());
    CHECK(frame_type(*hello) == "connected");
    CHECK(string_member(*hello, "user_id") == "alice");

    CHECK(ping_pong(alice));
    auto const queued = get(manager.send_to_user(
        "alice", json_message(R"({"type":"task_progress","progress":50})"), asio::use_future));
    CHECK(queued == 1u);
    auto progress = alice.next_of_type("task_progress");
    REQUIRE(progress.has_value());
    CHECK((*progress)["progress"].GetInt() == 50);
    CHECK(manager.get_status().active_connections == 1u);

    stop(manager);
    auto const closed = alice.wait_closed();
    REQUIRE(closed.has_value());
    CHECK(closed->code == 1001);
}

TEST_CASE("config::tls: a ws:// client gets no WebSocket from a TLS listener", "[tls]") {
    REQUIRE(test_certificate().ok());
    TlsManager manager(tls_options());
    start(manager);

    WsClient plain;
    auto const refused = plain.connect(ws_url(manager.local_port(), "user_id=mallory"),
                                       {"wsmanager.v1"}, std::chrono::milliseconds(3000));
    CHECK_FALSE(refused.opened);
    CHECK(manager.get_status().active_connections == 0u);

    // The listener still serves TLS clients.
    TlsClient alice;
    trust_test_certificate(alice);
    auto const connected = alice.connect(wss_url(manager.local_port(), "user_id=alice"));
    INFO(connected.error);
    CHECK(connected.opened);
    stop(manager);
}

TEST_CASE("config::tls: start_server fails clearly without a usable certificate", "[tls]") {
    // The error start_server completed with, after which the manager must not be running.
    auto const start_error = [](wsmanager::Options const& options) {
        TlsManager manager(options);
        std::error_code ec;
        try {
            get(manager.start_server(asio::use_future));
        } catch (std::system_error const& e) {
            ec = e.code();
        }
        CHECK_FALSE(manager.get_status().running);
        return ec;
    };
    SECTION("no certificate configured") {
        CHECK(start_error(test_options()) == wsmanager::error::tls_not_configured);
    }
    SECTION("a certificate file that does not exist") {
        REQUIRE(test_certificate().ok());
        auto options = tls_options();
        options.tls_cert = "/nonexistent/wsmanager-cert.pem";
        CHECK(start_error(options));
    }
    SECTION("a key that does not belong to the certificate") {
        REQUIRE(test_certificate().ok());
        auto options = tls_options();
        options.tls_key = options.tls_cert;  // a certificate is no private key
        CHECK(start_error(options));
    }
}
