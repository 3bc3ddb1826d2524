// SPDX-License-Identifier: BSL-1.0
#pragma once

// The task language: a task is a JSON object with a name and a list of steps, e.g.
//
//   {"name": "Import data",
//    "steps": [{"name": "download", "work_ms": 1500},
//              {"name": "validate", "work_ms": 800, "fail_first_attempt": true},
//              {"name": "publish",  "work_ms": 600, "confirm": "Publish the results?"}]}
//
// Task fields:  name (string, required), steps (array of 1..20, required),
//               heartbeat_ms (200..60000, default 1000): heartbeat interval during steps of
//                 at least that length,
//               confirm_timeout_ms (1000..3600000): how long a question waits for an answer
//                 (default: the server's WEBSOCKET_CALLBACK_TIMEOUT, 300 s).
// Step fields:  name (string, required), work_ms (0..600000, required): simulated work,
//               confirm (string): a question the user must answer before the step runs
//                 (proceed: run it; refuse: cancel the task),
//               fail_first_attempt (bool) or fail_attempts (0..10): the first N attempts
//                 fail at 60% of the work; the user is asked whether to retry
//                 (proceed: retry; refuse: cancel the task),
//               max_attempts (1..10, default 3): after that many failed attempts the task
//                 fails without asking,
//               error_code, error_message (strings): what the simulated failure reports.
// Unknown fields are errors (they are usually typos), and so are values out of range.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <rapidjson/document.h>

#include "json.hpp"

namespace task_server {

struct StepDefinition {
    std::string name;
    std::chrono::milliseconds work{0};
    std::optional<std::string> confirm;  ///< asked before the step runs
    int fail_attempts = 0;               ///< the first N attempts fail
    int max_attempts = 3;
    std::string error_code;
    std::string error_message;
};

struct TaskDefinition {
    std::string name;
    std::vector<StepDefinition> steps;
    std::chrono::milliseconds heartbeat_interval{1000};
    std::optional<std::chrono::milliseconds> confirm_timeout;  ///< none: the server's default
};

/// Why a definition was refused, for the 400 response.
struct DefinitionError {
    std::string message;
};

inline constexpr std::size_t max_steps = 20;
inline constexpr std::size_t max_name_bytes = 100;
inline constexpr std::size_t max_text_bytes = 500;

namespace definition_detail {

using Object = rapidjson::Value::ConstObject;

inline std::optional<DefinitionError> check_fields(Object const& object, std::string const& where,
                                                   std::initializer_list<std::string_view> known) {
    for (auto const& member : object) {
        std::string_view const name(member.name.GetString(), member.name.GetStringLength());
        bool found = false;
        for (auto k : known) found |= k == name;
        if (!found) return DefinitionError{where + ": unknown field \"" + std::string(name) + "\""};
    }
    return std::nullopt;
}

inline rapidjson::Value const* find(Object const& object, char const* name) {
    auto it = object.FindMember(name);
    return it == object.MemberEnd() ? nullptr : &it->value;
}

/// A string field of 1..max_bytes bytes of clean UTF-8; absent -> nullopt (when optional).
inline std::variant<std::optional<std::string>, DefinitionError> text(Object const& object,
                                                                      char const* name,
                                                                      std::string const& where,
                                                                      bool required,
                                                                      std::size_t max_bytes) {
    auto const* value = find(object, name);
    if (value == nullptr) {
        if (required) return DefinitionError{where + "." + name + " is required"};
        return std::optional<std::string>{};
    }
    if (!value->IsString() || value->GetStringLength() == 0 ||
        value->GetStringLength() > max_bytes ||
        !is_clean_utf8({value->GetString(), value->GetStringLength()})) {
        return DefinitionError{where + "." + name + " must be a non-empty string of at most " +
                               std::to_string(max_bytes) + " bytes"};
    }
    return std::optional<std::string>(std::string(value->GetString(), value->GetStringLength()));
}

/// An integer field within [low, high]; absent -> `fallback` (nullopt when required).
inline std::variant<std::optional<std::int64_t>, DefinitionError> integer(
    Object const& object, char const* name, std::string const& where, bool required,
    std::int64_t low, std::int64_t high) {
    auto const* value = find(object, name);
    if (value == nullptr) {
        if (required) return DefinitionError{where + "." + name + " is required"};
        return std::optional<std::int64_t>{};
    }
    if (!value->IsInt64() || value->GetInt64() < low || value->GetInt64() > high) {
        return DefinitionError{where + "." + name + " must be an integer from " +
                               std::to_string(low) + " to " + std::to_string(high)};
    }
    return std::optional<std::int64_t>(value->GetInt64());
}

}  // namespace definition_detail

/// Checks and converts a task definition (the `task` member of POST /api/tasks).
inline std::variant<TaskDefinition, DefinitionError> parse_task_definition(
    rapidjson::Value const& json) {
    namespace d = definition_detail;
    if (!json.IsObject()) return DefinitionError{"task must be a JSON object"};
    auto const task = json.GetObject();
    if (auto e = d::check_fields(task, "task",
                                 {"name", "steps", "heartbeat_ms", "confirm_timeout_ms"})) {
        return *e;
    }
    TaskDefinition definition;

    auto name = d::text(task, "name", "task", true, max_name_bytes);
    if (auto* e = std::get_if<DefinitionError>(&name)) return *e;
    definition.name = *std::get<0>(name);

    auto heartbeat = d::integer(task, "heartbeat_ms", "task", false, 200, 60000);
    if (auto* e = std::get_if<DefinitionError>(&heartbeat)) return *e;
    if (auto v = std::get<0>(heartbeat)) {
        definition.heartbeat_interval = std::chrono::milliseconds(*v);
    }

    auto timeout = d::integer(task, "confirm_timeout_ms", "task", false, 1000, 3600000);
    if (auto* e = std::get_if<DefinitionError>(&timeout)) return *e;
    if (auto v = std::get<0>(timeout)) definition.confirm_timeout = std::chrono::milliseconds(*v);

    auto const* steps = d::find(task, "steps");
    if (steps == nullptr || !steps->IsArray() || steps->Empty() || steps->Size() > max_steps) {
        return DefinitionError{"task.steps must be an array of 1 to " + std::to_string(max_steps) +
                               " steps"};
    }
    for (rapidjson::SizeType i = 0; i < steps->Size(); ++i) {
        auto const where = "task.steps[" + std::to_string(i) + "]";
        auto const& json_step = (*steps)[i];
        if (!json_step.IsObject()) return DefinitionError{where + " must be a JSON object"};
        auto const object = json_step.GetObject();
        if (auto e =
                d::check_fields(object, where,
                                {"name", "work_ms", "confirm", "fail_first_attempt",
                                 "fail_attempts", "max_attempts", "error_code", "error_message"})) {
            return *e;
        }
        StepDefinition step;
        auto step_name = d::text(object, "name", where, true, max_name_bytes);
        if (auto* e = std::get_if<DefinitionError>(&step_name)) return *e;
        step.name = *std::get<0>(step_name);

        auto work = d::integer(object, "work_ms", where, true, 0, 600000);
        if (auto* e = std::get_if<DefinitionError>(&work)) return *e;
        step.work = std::chrono::milliseconds(*std::get<0>(work));

        auto confirm = d::text(object, "confirm", where, false, max_text_bytes);
        if (auto* e = std::get_if<DefinitionError>(&confirm)) return *e;
        step.confirm = std::get<0>(confirm);

        if (auto const* first = d::find(object, "fail_first_attempt")) {
            if (!first->IsBool()) {
                return DefinitionError{where + ".fail_first_attempt must be a boolean"};
            }
            step.fail_attempts = first->GetBool() ? 1 : 0;
        }
        auto fails = d::integer(object, "fail_attempts", where, false, 0, 10);
        if (auto* e = std::get_if<DefinitionError>(&fails)) return *e;
        if (auto v = std::get<0>(fails)) {
            if (d::find(object, "fail_first_attempt") != nullptr) {
                return DefinitionError{where +
                                       ": give fail_first_attempt or fail_attempts, not both"};
            }
            step.fail_attempts = static_cast<int>(*v);
        }
        auto attempts = d::integer(object, "max_attempts", where, false, 1, 10);
        if (auto* e = std::get_if<DefinitionError>(&attempts)) return *e;
        if (auto v = std::get<0>(attempts)) step.max_attempts = static_cast<int>(*v);

        auto code = d::text(object, "error_code", where, false, max_name_bytes);
        if (auto* e = std::get_if<DefinitionError>(&code)) return *e;
        step.error_code = std::get<0>(code).value_or("E_STEP_FAILED");

        auto message = d::text(object, "error_message", where, false, max_text_bytes);
        if (auto* e = std::get_if<DefinitionError>(&message)) return *e;
        step.error_message =
            std::get<0>(message).value_or("Step \"" + step.name + "\" failed (simulated)");

        definition.steps.push_back(std::move(step));
    }
    return definition;
}

/// The built-in sample: one plain step, one that fails once (retry?) and one that asks first.
inline constexpr std::string_view sample_task_json = R"({
  "name": "Import data",
  "steps": [
    {"name": "download", "work_ms": 1500},
    {"name": "validate", "work_ms": 800, "fail_first_attempt": true,
     "error_code": "E_VALIDATION", "error_message": "3 rows have an invalid date"},
    {"name": "publish", "work_ms": 600, "confirm": "Publish the results?"}
  ]
})";

inline TaskDefinition sample_task_definition() {
    rapidjson::Document document;
    document.Parse(sample_task_json.data(), sample_task_json.size());
    return std::get<TaskDefinition>(parse_task_definition(document));
}

/// Writes a definition back as the task language (GET /api/tasks/<id> shows it).
inline void write_definition(JsonOut& out, TaskDefinition const& definition) {
    out.begin_object().field("name", definition.name);
    out.field("heartbeat_ms", static_cast<std::int64_t>(definition.heartbeat_interval.count()));
    if (definition.confirm_timeout) {
        out.field("confirm_timeout_ms",
                  static_cast<std::int64_t>(definition.confirm_timeout->count()));
    }
    out.key("steps").begin_array();
    for (auto const& step : definition.steps) {
        out.begin_object()
            .field("name", step.name)
            .field("work_ms", static_cast<std::int64_t>(step.work.count()));
        if (step.confirm) out.field("confirm", *step.confirm);
        if (step.fail_attempts > 0) out.field("fail_attempts", step.fail_attempts);
        out.field("max_attempts", step.max_attempts)
            .field("error_code", step.error_code)
            .field("error_message", step.error_message)
            .end_object();
    }
    out.end_array().end_object();
}

}  // namespace task_server
