// SPDX-License-Identifier: BSL-1.0
#pragma once

// redis_script: a Lua script and its SHA1, run on a redis_connection with EVALSHA, falling
// back to EVAL when Redis does not know the script (NOSCRIPT).

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/error.hpp>
#include <openssl/evp.h>

#include <wsmanager/cluster/detail/redis_connection.hpp>
#include <wsmanager/cluster/detail/redis_error.hpp>
#include <wsmanager/cluster/detail/redis_value.hpp>

namespace wsmanager::cluster::detail {

/**
 * A Lua script and its SHA1, run with EVALSHA and, when Redis does not know it yet
 * (`NOSCRIPT`, e.g. after a restart or SCRIPT FLUSH), with EVAL, which also caches it.
 *
 * @par Thread Safety
 * Immutable after construction: copies are cheap (shared text) and may be used anywhere;
 * run() follows redis_connection's rules.
 */
class redis_script {
public:
    /// Keeps `source` and computes its SHA1 (OpenSSL), as Redis does for EVALSHA.
    explicit redis_script(std::string source)
        : data_(std::make_shared<data const>(data{sha1_hex(source), std::move(source)})) {}

    /// The script's text.
    std::string const& source() const noexcept { return data_->source; }
    /// The SHA1 of the text, 40 lowercase hexadecimal digits.
    std::string const& sha1() const noexcept { return data_->sha1; }

    /**
     * Runs the script with `keys` and `args` on `connection`: EVALSHA, then EVAL if Redis
     * answered NOSCRIPT. Each of the two may take `timeout`.
     *
     * @par Completion Signature
     * As redis_connection::command(); a script's own error is `redis_errc::redis_error` with
     * the error reply. If the connection is closed or destroyed between the two, the
     * handler gets `asio::error::operation_aborted`.
     *
     * @par Thread Safety
     * On the connection's strand.
     */
    void run(redis_connection& connection, std::vector<std::string> const& keys,
             std::vector<std::string> const& args, redis_connection::duration timeout,
             redis_connection::command_handler handler) const {
        std::vector<std::string> argv;
        argv.reserve(3 + keys.size() + args.size());
        argv.push_back("EVALSHA");
        argv.push_back(data_->sha1);
        argv.push_back(std::to_string(keys.size()));
        argv.insert(argv.end(), keys.begin(), keys.end());
        argv.insert(argv.end(), args.begin(), args.end());
        auto alive = connection.lifetime();
        connection.command(
            argv, timeout,
            [data = data_, argv, timeout, alive, &connection, handler = std::move(handler)](
                std::error_code ec, redis_value value) mutable {
                if (ec != redis_errc::redis_error || !value.is_error_with_prefix("NOSCRIPT")) {
                    handler(ec, std::move(value));
                    return;
                }
                if (!alive.lock()) {
                    handler(asio::error::operation_aborted, redis_value());
                    return;
                }
                argv[0] = "EVAL";
                argv[1] = data->source;
                connection.command(std::move(argv), timeout, std::move(handler));
            });
    }

    /// The SHA1 of `text` in lowercase hexadecimal.
    static std::string sha1_hex(std::string_view text) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        if (EVP_Digest(text.data(), text.size(), digest, &length, EVP_sha1(), nullptr) != 1) {
            throw std::runtime_error("redis_script: OpenSSL SHA1 failed");
        }
        static char const hex[] = "0123456789abcdef";
        std::string out;
        out.reserve(2 * length);
        for (unsigned int i = 0; i < length; ++i) {
            out.push_back(hex[digest[i] >> 4]);
            out.push_back(hex[digest[i] & 0x0f]);
        }
        return out;
    }

private:
    struct data {
        std::string sha1;
        std::string source;
    };
    std::shared_ptr<data const> data_;
};

}  // namespace wsmanager::cluster::detail
