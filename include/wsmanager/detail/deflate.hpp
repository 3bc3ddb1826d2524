// SPDX-License-Identifier: BSL-1.0
#pragma once

// Raw DEFLATE as permessage-deflate uses it (RFC 7692 section 7.2): a message compressed on
// its own (no context takeover), flushed to a byte boundary, with the 0x00 0x00 0xff 0xff
// that ends the flush left off; and its inverse for client frames, which may keep their
// context from one message to the next.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <zlib.h>

namespace wsmanager::detail {

/// One message compressed on its own. nullopt when compressing would not make it smaller
/// (or zlib fails): the message then goes uncompressed, which RFC 7692 allows per message.
/// Thread-safe: each thread keeps one compressor and resets it between messages, since
/// setting one up costs more than compressing a few KiB.
inline std::optional<std::string> deflate_message(std::string_view payload) {
    struct compressor {
        z_stream stream{};
        bool ready = false;
        compressor() {
            // windowBits -15: raw DEFLATE, the 32 KiB window any client inflates with.
            ready = deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
                                 Z_DEFAULT_STRATEGY) == Z_OK;
        }
        ~compressor() {
            if (ready) deflateEnd(&stream);
        }
        compressor(compressor const&) = delete;
        compressor& operator=(compressor const&) = delete;
    };
    thread_local compressor local;
    if (!local.ready || payload.size() > 0xFFFFFFFFu) return std::nullopt;
    auto& stream = local.stream;
    if (deflateReset(&stream) != Z_OK) return std::nullopt;
    // Nothing larger is worth sending: a message that does not shrink goes as it is.
    std::string out(payload.size() + 16, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(payload.data()));
    stream.avail_in = static_cast<uInt>(payload.size());
    stream.next_out = reinterpret_cast<Bytef*>(out.data());
    stream.avail_out = static_cast<uInt>(out.size());
    auto const status = deflate(&stream, Z_SYNC_FLUSH);
    if ((status != Z_OK && status != Z_BUF_ERROR) || stream.avail_in != 0 ||
        stream.avail_out == 0) {
        return std::nullopt;  // did not fit: no smaller than the message
    }
    out.resize(out.size() - stream.avail_out);
    // A sync flush ends with an empty stored block, 00 00 ff ff: the receiver adds it back.
    if (out.size() < 4 || out.compare(out.size() - 4, 4, "\x00\x00\xff\xff", 4) != 0) {
        return std::nullopt;
    }
    out.resize(out.size() - 4);
    if (out.size() >= payload.size()) return std::nullopt;
    return out;
}

/// A client's compressed frames, inflated in order. Set up on the first compressed frame,
/// so a connection that never sends one holds no zlib state. Not thread-safe: one
/// connection's reads, on its strand.
class inflater {
public:
    inflater() = default;
    inflater(inflater const&) = delete;
    inflater& operator=(inflater const&) = delete;
    ~inflater() {
        if (stream_) inflateEnd(stream_.get());
    }

    /// Appends what `data` inflates to to `out`. False when the data is not DEFLATE.
    bool inflate_into(std::uint8_t const* data, std::size_t size, std::string& out) {
        if (!stream_) {
            auto stream = std::make_unique<z_stream>();
            *stream = z_stream{};
            if (inflateInit2(stream.get(), -15) != Z_OK) return false;
            stream_ = std::move(stream);
        }
        auto& stream = *stream_;
        stream.next_in = const_cast<Bytef*>(data);
        stream.avail_in = static_cast<uInt>(size);
        unsigned char chunk[16 * 1024];
        do {
            stream.next_out = chunk;
            stream.avail_out = sizeof chunk;
            auto const status = ::inflate(&stream, Z_SYNC_FLUSH);
            if (status == Z_BUF_ERROR && stream.avail_in == 0) break;  // all consumed
            // Z_STREAM_END: a final block; a client with context takeover does not send one,
            // and the next message then starts a new stream.
            if (status == Z_STREAM_END) {
                out.append(reinterpret_cast<char const*>(chunk), sizeof chunk - stream.avail_out);
                if (inflateReset(&stream) != Z_OK) return false;
                continue;
            }
            if (status != Z_OK) return false;
            out.append(reinterpret_cast<char const*>(chunk), sizeof chunk - stream.avail_out);
        } while (stream.avail_in != 0 || stream.avail_out == 0);
        return true;
    }

private:
    std::unique_ptr<z_stream> stream_;
};

}  // namespace wsmanager::detail
