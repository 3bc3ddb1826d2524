// SPDX-License-Identifier: BSL-1.0
#pragma once

// parse_exact_json: RapidJSON's iterative parser, with every number read by std::from_chars,
// so a number echoed back (a ping's timestamp) is the number sent, to the last bit.
// RapidJSON's own reading is off by one unit in the last place for some numbers of 16 or 17
// digits (457 of 2,000 random timestamps), and its full-precision mode computes
// __builtin_clzll(0) on some inputs (undefined; found by the frame router's fuzzer). The
// reader hands each number over as text (kParseNumbersAsStringsFlag); a filter turns it into
// the value RapidJSON would have made, of the same kind: Int, Uint, Int64, Uint64 or Double.

#include <charconv>
#include <cstdint>
#include <limits>
#include <string_view>
#include <system_error>

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

namespace wsmanager::detail {

/// A number's text, `-?digits(.digits)?([eE][+-]?digits)?` (the reader checked the grammar),
/// as a double: correctly rounded; past the double's range, ±infinity or ±0 as it overflows
/// or underflows (the caller refuses infinities).
inline double exact_json_double(std::string_view text) {
    double value = 0;
    auto const [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc::result_out_of_range) return value;
    // Out of range: the order of magnitude's sign says which way (it is beyond ±300 here).
    bool const negative = text.front() == '-';
    if (negative) text.remove_prefix(1);
    auto const exponent_at = text.find_first_of("eE");
    std::string_view const mantissa = text.substr(0, exponent_at);
    long long exponent = 0;
    if (exponent_at != std::string_view::npos) {
        std::string_view digits = text.substr(exponent_at + 1);
        bool const down = !digits.empty() && digits.front() == '-';
        if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) {
            digits.remove_prefix(1);
        }
        auto const parsed =
            std::from_chars(digits.data(), digits.data() + digits.size(), exponent).ec;
        if (parsed == std::errc::result_out_of_range) exponent = std::numeric_limits<int>::max();
        if (down) exponent = -exponent;
    }
    auto const point = mantissa.find('.');
    std::string_view const whole = mantissa.substr(0, point);
    auto const first_digit = whole.find_first_not_of('0');
    long long order = 0;  // the mantissa's decimal order of magnitude
    if (first_digit != std::string_view::npos) {
        order = static_cast<long long>(whole.size() - first_digit) - 1;
    } else if (point != std::string_view::npos) {
        auto const zeros = mantissa.substr(point + 1).find_first_not_of('0');
        order = -static_cast<long long>(zeros == std::string_view::npos ? 0 : zeros) - 1;
    }
    bool const overflow = exponent + order > 0;
    double const magnitude = overflow ? std::numeric_limits<double>::infinity() : 0.0;
    return negative ? -magnitude : magnitude;
}

/// Forwards every SAX event to a Document, numbers read by from_chars (see above).
class exact_number_filter {
public:
    using Ch = char;

    explicit exact_number_filter(rapidjson::Document& target) noexcept : target_(target) {}

    bool RawNumber(Ch const* text, rapidjson::SizeType length, bool) {
        std::string_view const number(text, length);
        char const* const first = number.data();
        char const* const last = first + number.size();
        if (number.find_first_of(".eE") == std::string_view::npos) {
            // An integer: the narrowest of RapidJSON's kinds that holds it; past 64 bits, a
            // double, as RapidJSON makes it.
            if (number.front() == '-') {
                std::int64_t value = 0;
                auto const [end, ec] = std::from_chars(first, last, value);
                if (ec == std::errc{} && end == last) {
                    return value >= std::numeric_limits<int>::min()
                               ? target_.Int(static_cast<int>(value))
                               : target_.Int64(value);
                }
            } else {
                std::uint64_t value = 0;
                auto const [end, ec] = std::from_chars(first, last, value);
                if (ec == std::errc{} && end == last) {
                    return value <= std::numeric_limits<unsigned>::max()
                               ? target_.Uint(static_cast<unsigned>(value))
                               : target_.Uint64(value);
                }
            }
        }
        return target_.Double(exact_json_double(number));
    }

    bool Null() { return target_.Null(); }
    bool Bool(bool b) { return target_.Bool(b); }
    bool Int(int i) { return target_.Int(i); }
    bool Uint(unsigned u) { return target_.Uint(u); }
    bool Int64(std::int64_t i) { return target_.Int64(i); }
    bool Uint64(std::uint64_t u) { return target_.Uint64(u); }
    bool Double(double d) { return target_.Double(d); }
    bool String(Ch const* s, rapidjson::SizeType n, bool copy) { return target_.String(s, n, copy); }
    bool StartObject() { return target_.StartObject(); }
    bool Key(Ch const* s, rapidjson::SizeType n, bool copy) { return target_.Key(s, n, copy); }
    bool EndObject(rapidjson::SizeType members) { return target_.EndObject(members); }
    bool StartArray() { return target_.StartArray(); }
    bool EndArray(rapidjson::SizeType elements) { return target_.EndArray(elements); }

private:
    rapidjson::Document& target_;
};

/// Parses `text` into `document` (iteratively: a deeply nested text cannot exhaust the
/// stack), numbers exact. False, and `document` null, when the text is not one JSON value.
inline bool parse_exact_json(rapidjson::Document& document, std::string_view text) {
    bool parsed = false;
    auto generate = [&](rapidjson::Document& handler) {
        rapidjson::MemoryStream memory(text.data(), text.size());
        rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> input(memory);
        exact_number_filter filter(handler);
        rapidjson::Reader reader;
        parsed = !reader
                      .Parse<rapidjson::kParseIterativeFlag |
                             rapidjson::kParseNumbersAsStringsFlag>(input, filter)
                      .IsError();
        return parsed;
    };
    document.SetNull();
    document.Populate(generate);
    return parsed;
}

}  // namespace wsmanager::detail
