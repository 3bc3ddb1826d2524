// SPDX-License-Identifier: BSL-1.0
#pragma once

// What connects a WebSocketManager to the other nodes of a cluster. The library's one
// implementation is the Redis backplane, wsmanager::cluster::redis() in
// <wsmanager/cluster.hpp> (target wsmanager::cluster); its interface is internal.

#include <memory>

#include <wsmanager/detail/cluster_link.hpp>

namespace wsmanager {

/// A backplane: hand it to WebSocketManager::set_backplane (or its constructor).
using Backplane = detail::cluster_link;

}  // namespace wsmanager
