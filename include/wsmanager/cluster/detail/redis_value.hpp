// SPDX-License-Identifier: BSL-1.0
#pragma once

// redis_value: an owned, deep copy of one hiredis reply (RESP2: nil, integer, status, error,
// bulk string, array). hiredis frees its redisReply as soon as the reply callback returns, and
// our handlers run later (posted), so every reply is copied into one of these first. It is a
// plain value: no strand, no connection, safe to move between threads like any std::string.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <hiredis/hiredis.h>

namespace wsmanager::cluster::detail {

/// The RESP2 type of a redis_value.
enum class redis_type {
    nil,      ///< a null bulk string or null array (`$-1`, `*-1`), e.g. GET of a missing key
    integer,  ///< `:123`
    status,   ///< a simple string, `+OK`
    error,    ///< an error reply, `-ERR ...` (the text without the `-`)
    string,   ///< a bulk string, binary-safe
    array,    ///< `*N`, elements of any type
};

/**
 * One Redis reply, owned.
 *
 * `text` holds the bytes of a status, an error or a bulk string (binary-safe: it may contain
 * NUL bytes); `integer` the value of an integer reply; `elements` the items of an array.
 * The fields that do not belong to `type` are empty or zero.
 *
 * @par Thread Safety
 * A value type: distinct objects are independent, one object is as safe as a std::string.
 */
struct redis_value {
    redis_type type = redis_type::nil;
    long long integer = 0;
    std::string text;
    std::vector<redis_value> elements;

    /// A nil reply.
    static redis_value nil() { return {}; }
    /// An integer reply.
    static redis_value from_integer(long long value) {
        redis_value v;
        v.type = redis_type::integer;
        v.integer = value;
        return v;
    }
    /// A status, error or bulk string reply (`type` must be one of those three).
    static redis_value from_text(redis_type type, std::string text) {
        redis_value v;
        v.type = type;
        v.text = std::move(text);
        return v;
    }
    /// An array reply.
    static redis_value from_elements(std::vector<redis_value> elements) {
        redis_value v;
        v.type = redis_type::array;
        v.elements = std::move(elements);
        return v;
    }

    /**
     * Copies a hiredis reply (and, for an array, its elements). A null pointer (hiredis'
     * "no reply": the context is going away) gives nil.
     */
    static redis_value from_reply(redisReply const* reply) {
        redis_value v;
        if (reply == nullptr) {
            return v;
        }
        switch (reply->type) {
            case REDIS_REPLY_INTEGER:
                v.type = redis_type::integer;
                v.integer = reply->integer;
                break;
            case REDIS_REPLY_STATUS:
                v.type = redis_type::status;
                v.text.assign(reply->str, reply->len);
                break;
            case REDIS_REPLY_ERROR:
                v.type = redis_type::error;
                v.text.assign(reply->str, reply->len);
                break;
            case REDIS_REPLY_STRING:
                v.type = redis_type::string;
                v.text.assign(reply->str, reply->len);
                break;
            case REDIS_REPLY_ARRAY:
                v.type = redis_type::array;
                v.elements.reserve(reply->elements);
                // hiredis' reader nests at most 7 levels, so the recursion is bounded.
                for (std::size_t i = 0; i < reply->elements; ++i) {
                    v.elements.push_back(from_reply(reply->element[i]));
                }
                break;
            case REDIS_REPLY_NIL:
            default:
                break;
        }
        return v;
    }

    bool is_nil() const noexcept { return type == redis_type::nil; }
    bool is_integer() const noexcept { return type == redis_type::integer; }
    bool is_status() const noexcept { return type == redis_type::status; }
    bool is_error() const noexcept { return type == redis_type::error; }
    bool is_string() const noexcept { return type == redis_type::string; }
    bool is_array() const noexcept { return type == redis_type::array; }

    /// The bytes of a bulk string, a status or an error; throws std::logic_error otherwise.
    std::string const& as_string() const {
        if (type != redis_type::string && type != redis_type::status && type != redis_type::error) {
            throw std::logic_error("redis_value: not a string, status or error reply");
        }
        return text;
    }

    /// The value of an integer reply; throws std::logic_error otherwise.
    long long as_integer() const {
        if (type != redis_type::integer) {
            throw std::logic_error("redis_value: not an integer reply");
        }
        return integer;
    }

    /// The elements of an array reply; throws std::logic_error otherwise.
    std::vector<redis_value> const& as_array() const {
        if (type != redis_type::array) {
            throw std::logic_error("redis_value: not an array reply");
        }
        return elements;
    }

    /// True for an error reply whose text starts with `prefix` (e.g. "NOSCRIPT", "WRONGTYPE").
    bool is_error_with_prefix(std::string_view prefix) const noexcept {
        return type == redis_type::error &&
               std::string_view(text).substr(0, prefix.size()) == prefix;
    }

    friend bool operator==(redis_value const&, redis_value const&) = default;
};

}  // namespace wsmanager::cluster::detail
