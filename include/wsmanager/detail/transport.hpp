// SPDX-License-Identifier: BSL-1.0
#pragma once

// The seam between the engine and the sockets. A transport listens, accepts, runs the
// opening handshake and the HTTP requests, and makes a session of each upgraded connection;
// it tells the engine what happens through transport_events. The websocketpp transport
// (detail/websocketpp_transport.hpp) is the one that knows Config; the engine
// (detail/manager_core.hpp) knows only these two interfaces.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>

#include <wsmanager/detail/handshake_gate.hpp>
#include <wsmanager/detail/http_routes.hpp>
#include <wsmanager/detail/session.hpp>
#include <wsmanager/http.hpp>

namespace wsmanager::detail {

/// What a transport tells the engine. Each call is made on the connection's own strand
/// (possibly on several threads at once for different connections), never on the manager
/// strand: the engine hops there itself.
class transport_events {
public:
    virtual ~transport_events() = default;

    /// May this handshake upgrade, and as which user?
    virtual admission admit(handshake_attempt const& attempt) = 0;
    /// A session completed its opening handshake.
    virtual void on_session_open(session_ptr const& session) = 0;
    /// A session ended; `close_code` describes how (the peer's, or ours when it sent none).
    virtual void on_session_closed(session_ptr const& session, std::uint16_t close_code) = 0;
    /// A text frame that passed the session's own checks (opcode, size, rate).
    virtual void on_session_frame(session_ptr const& session, std::string payload) = 0;
    /// A plain HTTP request; the answer now, or nullopt and later through `later`.
    virtual std::optional<HttpResponse> on_http_request(HttpRequest const& request,
                                                        http_routes::listener on,
                                                        http_routes::responder later) = 0;
};

/// What the engine asks of a transport. Manager strand only.
class transport {
public:
    virtual ~transport() = default;

    /// Starts listening (Options::host and port; the metrics listener too, when there is
    /// one) and accepting. On failure nothing listens.
    virtual std::error_code listen() = 0;
    /// Stops accepting; open connections stay until the engine closes them.
    virtual void stop_listening() = 0;
    /// The bound port of the WebSocket listener.
    virtual std::uint16_t local_port() const = 0;
};

}  // namespace wsmanager::detail
