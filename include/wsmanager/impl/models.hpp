// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace wsmanager {

inline std::string Status::to_json() const {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
    w.StartObject();
    w.Key("running"); w.Bool(running);
    w.Key("active_connections"); w.Uint64(active_connections);
    w.Key("pending_callbacks"); w.Uint64(pending_callbacks);
    w.Key("users_online"); w.Uint64(users_online);
    w.Key("topics"); w.Uint64(topics);
    w.Key("uptime_s"); w.Double(uptime_s);
    w.Key("port"); w.Uint(port);
    w.Key("connections_opened"); w.Uint64(connections_opened);
    w.Key("connections_rejected"); w.Uint64(connections_rejected);
    w.Key("messages_sent"); w.Uint64(messages_sent);
    w.Key("messages_failed"); w.Uint64(messages_failed);
    w.Key("messages_received"); w.Uint64(messages_received);
    w.Key("frames_rejected"); w.Uint64(frames_rejected);
    w.Key("connection_success_rate"); w.Double(connection_success_rate);
    w.Key("avg_confirmation_wait_s"); w.Double(avg_confirmation_wait_s);
    if (cluster.enabled) {
        w.Key("node_id"); w.String(node_id.data(), static_cast<rapidjson::SizeType>(node_id.size()));
        w.Key("cluster");
        w.StartObject();
        w.Key("connected"); w.Bool(cluster.connected);
        w.Key("nodes"); w.Uint64(cluster.nodes);
        w.Key("connections"); w.Uint64(cluster.connections);
        w.Key("users_online"); w.Uint64(cluster.users_online);
        w.EndObject();
    }
    w.EndObject();
    return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace wsmanager
