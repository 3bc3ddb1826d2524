// SPDX-License-Identifier: BSL-1.0
#pragma once

// Several nodes behind a load balancer, acting as one, with Redis between them
// (docs/cluster.md). Link wsmanager::cluster (it adds hiredis) and give each node's manager
// the Redis backplane:
//
//   #include <wsmanager/cluster.hpp>
//   auto options = wsmanager::Options::from_env();   // WEBSOCKET_REDIS_URL, _NODE_ID, ...
//   wsmanager::WebSocketManager<> manager(options, wsmanager::cluster::redis(options));

#include <memory>
#include <stdexcept>

#include <wsmanager/backplane.hpp>
#include <wsmanager/cluster/detail/redis_backplane.hpp>
#include <wsmanager/options.hpp>

namespace wsmanager::cluster {

/**
 * The Redis backplane for one manager: Options::redis_url (`redis://[user:password@]host:
 * port[/db]`), Options::node_id and Options::cluster_prefix; `settings` for its timings.
 * Nothing connects until start_server.
 *
 * @throws std::invalid_argument when Options::redis_url is empty or not a redis:// URL.
 */
inline std::shared_ptr<Backplane> redis(Options const& options, RedisOptions settings = {}) {
    if (options.redis_url.empty()) {
        throw std::invalid_argument("wsmanager::cluster::redis: Options::redis_url is empty");
    }
    options.validate();
    return std::make_shared<detail::redis_backplane>(options, settings);
}

}  // namespace wsmanager::cluster
