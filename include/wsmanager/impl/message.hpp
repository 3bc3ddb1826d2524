// SPDX-License-Identifier: BSL-1.0
#pragma once

#include <stdexcept>

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace wsmanager {

inline Message::Message(rapidjson::Value const& value) {
    rapidjson::StringBuffer buffer;
    rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
    value.Accept(writer);
    frame_ = detail::make_text_frame(std::string(buffer.GetString(), buffer.GetSize()));
}

inline Message Message::from_json(std::string_view json_text) {
    // Without kParseStopWhenDoneFlag, trailing content after the value is an error
    // (kParseErrorDocumentRootNotSingular): one frame carries one value.
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
