// SPDX-License-Identifier: BSL-1.0
#pragma once

// The cluster's layout in Redis, and the Lua scripts that change it. Everything that must
// not be interleaved is one script, so Redis runs it atomically: recording a confirmation,
// deciding it (the first decision wins, once, cluster-wide, and the `decided` news is
// published by the same script), listing a user's pending confirmations, a node's heartbeat
// (with the cluster's figures and the nodes whose heartbeat expired), and reaping a dead node
// (its confirmations dismissed, reason shutdown, its keys gone). docs/cluster.md draws the
// layout. Keys a script derives from the prefix are not declared in KEYS: this is for one
// Redis (or a primary with replicas), not Redis Cluster.
//
// Values only: any thread.

#include <string>

namespace wsmanager::cluster::detail {

/// Key and channel names under one prefix.
struct redis_layout {
    std::string prefix;

    std::string nodes() const { return prefix + ":nodes"; }  ///< zset: node -> expiry (ms)
    std::string node(std::string const& id) const { return prefix + ":node:" + id; }
    std::string node_users(std::string const& id) const { return node(id) + ":users"; }
    std::string node_confirmations(std::string const& id) const { return node(id) + ":conf"; }
    std::string confirmation(std::string const& id) const { return prefix + ":conf:" + id; }
    std::string user_confirmations(std::string const& user) const {
        return prefix + ":user:" + user + ":conf";
    }
    std::string bus() const { return prefix + ":bus"; }  ///< every node
    std::string inbox(std::string const& id) const { return prefix + ":to:" + id; }
};

/// KEYS: confirmation, user's set, node's set. ARGV: id, user, task, step, owner, expires
/// (wall-clock ms), result (TaskStepResult JSON), ttl (ms).
inline constexpr char const* record_script = R"lua(
redis.call('HSET', KEYS[1], 'state', 'pending', 'user', ARGV[2], 'task', ARGV[3],
           'step', ARGV[4], 'owner', ARGV[5], 'expires', ARGV[6], 'result', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
for i = 2, 3 do
  redis.call('SADD', KEYS[i], ARGV[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[8]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[8])
  end
end
return 1
)lua";

/// As record_script, unless the confirmation is there already: {'pending'},
/// {'resolved', decision}, or {'recreated'} (a Redis that lost it).
inline constexpr char const* reconcile_script = R"lua(
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'resolved' then return {'resolved', redis.call('HGET', KEYS[1], 'decision')} end
if state == 'pending' then return {'pending'} end
redis.call('HSET', KEYS[1], 'state', 'pending', 'user', ARGV[2], 'task', ARGV[3],
           'step', ARGV[4], 'owner', ARGV[5], 'expires', ARGV[6], 'result', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
for i = 2, 3 do
  redis.call('SADD', KEYS[i], ARGV[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[8]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[8])
  end
end
return {'recreated'}
)lua";

/// The first decision wins. KEYS: confirmation. ARGV: id, the answering user ('' for the
/// asking node's own endings), decision JSON, origin node, prefix, bus channel, how long a
/// decided confirmation is kept (ms), the sender's clock (ms). Returns {'won', decision,
/// task}, {'lost', the winner, task}, {'forbidden'} or {'unknown'}.
inline constexpr char const* decide_script = R"lua(
local h = redis.call('HMGET', KEYS[1], 'state', 'user', 'task', 'owner', 'decision')
if not h[1] then return {'unknown'} end
if h[1] == 'resolved' then return {'lost', h[5], h[3]} end
if ARGV[2] ~= '' and ARGV[2] ~= h[2] then return {'forbidden'} end
redis.call('HSET', KEYS[1], 'state', 'resolved', 'decision', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('SREM', ARGV[5] .. ':user:' .. h[2] .. ':conf', ARGV[1])
redis.call('SREM', ARGV[5] .. ':node:' .. h[4] .. ':conf', ARGV[1])
redis.call('PUBLISH', ARGV[6], cjson.encode({v = 1, o = ARGV[4], s = 0, k = 'd',
  ts = tonumber(ARGV[8]), id = ARGV[1], u = h[2], task = h[3], dec = ARGV[3]}) .. '\n')
return {'won', ARGV[3], h[3]}
)lua";

/// A user's pending confirmations that other nodes asked. KEYS: the user's set. ARGV:
/// prefix, this node. Returns id, user, task, step, owner, expires, result for each.
inline constexpr char const* pending_of_user_script = R"lua(
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HMGET', ARGV[1] .. ':conf:' .. id,
                       'state', 'user', 'task', 'step', 'owner', 'expires', 'result')
  if not h[1] then
    redis.call('SREM', KEYS[1], id)
  elseif h[1] == 'pending' and h[5] ~= ARGV[2] then
    table.insert(out, id)
    for i = 2, 7 do table.insert(out, h[i]) end
  end
end
return out
)lua";

/// A node's heartbeat. KEYS: nodes, the node's hash, its users' set. ARGV: node, ttl (ms),
/// its connections, prefix. Returns {live nodes, their connections, their distinct users,
/// {nodes whose heartbeat expired}}, by Redis' own clock.
inline constexpr char const* heartbeat_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], 'connections', ARGV[3], 'seen', now)
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local connections = 0
local sets = {}
for _, id in ipairs(live) do
  local c = redis.call('HGET', ARGV[4] .. ':node:' .. id, 'connections')
  if c then connections = connections + tonumber(c) end
  table.insert(sets, ARGV[4] .. ':node:' .. id .. ':users')
end
local users = 0
if #sets > 0 then users = #redis.call('SUNION', unpack(sets)) end
return {#live, connections, users, dead}
)lua";

/// A node's departure: its pending confirmations are dismissed (the decision in ARGV, reason
/// shutdown: every node's tabs close their dialogs) and its keys go. KEYS: nodes. ARGV:
/// node, prefix, bus channel, decision JSON, how long a decided confirmation is kept (ms),
/// the sender's clock (ms), '1' to reap a node that is still alive (its own stop). Returns
/// how many were dismissed, or -1 for a node whose heartbeat came back.
inline constexpr char const* reap_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[7] ~= '1' and score and tonumber(score) >= now then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
local node = ARGV[2] .. ':node:' .. ARGV[1]
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', node .. ':conf')) do
  local key = ARGV[2] .. ':conf:' .. id
  local h = redis.call('HMGET', key, 'state', 'user', 'task')
  if h[1] == 'pending' then
    redis.call('HSET', key, 'state', 'resolved', 'decision', ARGV[4])
    redis.call('PEXPIRE', key, ARGV[5])
    redis.call('SREM', ARGV[2] .. ':user:' .. h[2] .. ':conf', id)
    redis.call('PUBLISH', ARGV[3], cjson.encode({v = 1, o = '-', s = 0, k = 'd',
      ts = tonumber(ARGV[6]), id = id, u = h[2], task = h[3], dec = ARGV[4]}) .. '\n')
    n = n + 1
  end
end
redis.call('DEL', node, node .. ':conf', node .. ':users')
return n
)lua";

}  // namespace wsmanager::cluster::detail
