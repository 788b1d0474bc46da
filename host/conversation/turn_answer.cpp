#include "conversation/turn_answer.h"

namespace shepherd {

namespace {

const nlohmann::json* field(const nlohmann::json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

// Text content, or a list of parts whose text is joined (some providers).
bool text_of(const nlohmann::json& content, std::string& out) {
  if (content.is_string()) {
    out = content.get<std::string>();
    return true;
  }
  if (!content.is_array()) return false;
  bool any = false;
  for (const auto& part : content) {
    if (const auto* text = field(part, "text"); text && text->is_string()) {
      out += text->get<std::string>();
      any = true;
    }
  }
  return any;
}

nlohmann::json clean_call(const nlohmann::json& call) {
  nlohmann::json out = nlohmann::json::object();
  if (const auto* id = field(call, "id")) out["id"] = *id;
  const auto* type = field(call, "type");
  out["type"] = type && type->is_string() ? *type : nlohmann::json("function");
  nlohmann::json fn = nlohmann::json::object();
  if (const auto* f = field(call, "function")) {
    if (const auto* name = field(*f, "name")) fn["name"] = *name;
    const auto* args = field(*f, "arguments");
    // Arguments travel as JSON text; a provider that sends an object gets it as text too.
    fn["arguments"] = !args ? nlohmann::json("") : args->is_string() ? *args : nlohmann::json(args->dump());
  }
  out["function"] = std::move(fn);
  return out;
}

}  // namespace

nlohmann::json turn_answer(const nlohmann::json& completion) {
  nlohmann::json answer = nlohmann::json::object();
  nlohmann::json message = {{"role", "assistant"}};
  const nlohmann::json* choice = nullptr;
  if (const auto* choices = field(completion, "choices"); choices && choices->is_array() && !choices->empty()) {
    choice = &(*choices)[0];
  }
  const nlohmann::json* msg = choice ? field(*choice, "message") : nullptr;
  nlohmann::json calls = nlohmann::json::array();
  if (const auto* given = msg ? field(*msg, "tool_calls") : nullptr; given && given->is_array()) {
    for (const auto& call : *given) calls.push_back(clean_call(call));
  }
  std::string text;
  bool has_text = msg && field(*msg, "content") && text_of(*field(*msg, "content"), text);
  if (has_text && !(text.empty() && !calls.empty())) {
    answer["content"] = text;
    message["content"] = text;
  } else if (calls.empty()) {
    message["content"] = "";  // never an assistant message with neither
  }
  if (!calls.empty()) {
    message["tool_calls"] = calls;
    answer["tool_calls"] = std::move(calls);
  }
  answer["message"] = std::move(message);
  if (const auto* reason = choice ? field(*choice, "finish_reason") : nullptr; reason && reason->is_string()) {
    answer["finish_reason"] = *reason;
  }
  if (const auto* usage = field(completion, "usage"); usage && usage->is_object()) answer["usage"] = *usage;
  if (const auto* model = field(completion, "model"); model && model->is_string()) answer["model"] = *model;
  return answer;
}

}  // namespace shepherd
