// SPDX-License-Identifier: BSL-1.0
#pragma once

// wsmanager: real-time task notifications over WebSocket for C++ hosts.
// The umbrella header: every public header but <wsmanager/tls.hpp> (config::tls, which
// brings in Asio's SSL layer; include it where wss:// is served).

#include <wsmanager/action.hpp>
#include <wsmanager/backplane.hpp>
#include <wsmanager/config.hpp>
#include <wsmanager/error.hpp>
#include <wsmanager/handshake.hpp>
#include <wsmanager/http.hpp>
#include <wsmanager/log.hpp>
#include <wsmanager/manager.hpp>
#include <wsmanager/message.hpp>
#include <wsmanager/models.hpp>
#include <wsmanager/options.hpp>
#include <wsmanager/protocol.hpp>
