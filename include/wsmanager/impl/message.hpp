// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <stdexcept>

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace wsmanager {

inline Message::Message(rapidjson::Value const& value) {
    rapidjson::StringBuffer buffer;
    // A text frame must be UTF-8, or every client fails the connection (1007).
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>
        writer(buffer);
    if (!value.Accept(writer)) {
        throw std::invalid_argument("wsmanager::Message: the value holds a string that is not UTF-8");
    }
    frame_ = detail::make_text_frame(std::string(buffer.GetString(), buffer.GetSize()));
}

inline Message Message::from_json(std::string_view json_text) {
    // Without kParseStopWhenDoneFlag, trailing content after the value is an error
    // (kParseErrorDocumentRootNotSingular): one frame carries one value.
    // RapidJSON stops at a NUL byte, but the whole text would be sent: refuse it here.
    if (json_text.find('\0') != std::string_view::npos) {
        throw std::invalid_argument("wsmanager::Message: NUL byte in JSON text");
    }
    rapidjson::Document document;
    document.Parse<rapidjson::kParseValidateEncodingFlag>(json_text.data(), json_text.size());
    if (document.HasParseError()) {
        throw std::invalid_argument(
            std::string("wsmanager::Message: invalid JSON at offset ") +
            std::to_string(document.GetErrorOffset()) + ": " +
            rapidjson::GetParseError_En(document.GetParseError()));
    }
    return Message(detail::make_text_frame(std::string(json_text)));
}

}  // namespace wsmanager
