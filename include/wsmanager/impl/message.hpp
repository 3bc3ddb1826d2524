// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <stdexcept>

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <wsmanager/detail/deflate.hpp>
#include <wsmanager/detail/json_checks.hpp>
#include <wsmanager/detail/utf8.hpp>

namespace wsmanager {

inline detail::frame_ptr const& detail::text_frame::deflated(bool* built) const {
    std::call_once(deflate_once_, [&] {
        if (auto compressed = deflate_message(payload())) {
            deflated_ = std::make_shared<text_frame const>(*compressed, true);
        }
        if (built != nullptr) *built = true;
    });
    return deflated_;
}

inline Message::Message(rapidjson::Value const& value) {
    rapidjson::StringBuffer buffer;
    // A text frame must be UTF-8, or every client fails the connection (1007).
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
        writer(buffer);
    if (!value.Accept(writer)) {
        throw std::invalid_argument(
            "wsmanager::Message: the value holds a string that is not UTF-8 or a number that "
            "is not finite");
    }
    frame_ = detail::make_text_frame(std::string_view(buffer.GetString(), buffer.GetSize()));
}

inline Message Message::from_json(std::string_view json_text) {
    // Without kParseStopWhenDoneFlag, trailing content after the value is an error
    // (kParseErrorDocumentRootNotSingular): one frame carries one value.
    // RapidJSON stops at a NUL byte, but the whole text would be sent: refuse it here.
    if (json_text.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("wsmanager::Message: NUL byte in JSON text");
    }
    // RapidJSON's UTF-8 stream swallows a leading 0xEF as if it began a byte-order mark,
    // and a byte-order mark itself is not JSON a browser parses: the text is checked first.
    if (!detail::is_valid_utf8(json_text) || json_text.starts_with("\xEF\xBB\xBF")) {
        throw std::invalid_argument("wsmanager::Message: JSON text must be UTF-8 without a BOM");
    }
    rapidjson::Document document;
    document.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(
        json_text.data(), json_text.size());
    if (document.HasParseError()) {
        throw std::invalid_argument(
            std::string("wsmanager::Message: invalid JSON at offset ") +
            std::to_string(document.GetErrorOffset()) + ": " +
            rapidjson::GetParseError_En(document.GetParseError()));
    }
    switch (detail::find_json_flaw(document)) {
        case detail::json_flaw::invalid_string:
            throw std::invalid_argument(
                "wsmanager::Message: an escape spells a lone surrogate, which is not UTF-8");
        case detail::json_flaw::infinite_number:
            throw std::invalid_argument("wsmanager::Message: a number is out of range");
        case detail::json_flaw::none: break;
    }
    return Message(detail::make_text_frame(json_text));
}

}  // namespace wsmanager
