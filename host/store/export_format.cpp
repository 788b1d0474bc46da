#include "store/export_format.h"

#include <algorithm>

#include "core/error.h"
#include "core/hash.h"
#include "core/text.h"

namespace shepherd {

nlohmann::json export_record(const ExportRow& r, bool transcripts) {
  auto or_null = [](const std::string& s) { return s.empty() ? nlohmann::json() : nlohmann::json(s); };
  nlohmann::json error;
  if (!r.error_code.empty()) error = {{"code", r.error_code}, {"message", r.error_message}};
  nlohmann::json usage;
  if (!r.usage_json.empty()) usage = nlohmann::json::parse(r.usage_json, nullptr, false);
  if (usage.is_discarded()) usage = nullptr;
  nlohmann::json out = {{"task", r.task},
                        {"dims", nlohmann::json::parse(r.dims_json)},
                        {"state", std::string(to_string(r.state))},
                        {"model", or_null(r.model)},
                        {"content", r.state == TaskState::done ? nlohmann::json(r.content) : nlohmann::json()},
                        {"attempts", r.attempts},
                        {"turns", r.turns},
                        {"error", error},
                        {"latency_ms", r.latency_ms >= 0 ? nlohmann::json(r.latency_ms) : nlohmann::json()},
                        {"usage", usage},
                        {"stale", r.stale}};
  if (transcripts) {
    nlohmann::json messages;
    if (!r.transcript.empty()) messages = nlohmann::json::parse(r.transcript, nullptr, false);
    out["transcript"] = messages.is_discarded() ? nlohmann::json() : std::move(messages);
  }
  return out;
}

nlohmann::json openai_batch_record(const ExportRow& r, const Store::LastAttempt& last, bool task_suite) {
  using nlohmann::json;
  const std::string hash = stable_hash_hex(r.task + "#" + std::to_string(last.n));
  json body = json::parse(last.response, nullptr, false);
  const bool raw = !task_suite && !last.response.empty() && !body.is_discarded() && body.is_object();
  json response;
  if (r.state == TaskState::done) {
    if (!raw) {
      // A conversation's result is no one completion: it is given as one.
      json usage = r.usage_json.empty() ? json() : json::parse(r.usage_json, nullptr, false);
      body = {{"id", "chatcmpl-" + hash.substr(0, 24)},
              {"object", "chat.completion"},
              {"model", r.model},
              {"choices", json::array({{{"index", 0},
                                        {"message", {{"role", "assistant"}, {"content", r.content}}},
                                        {"finish_reason", "stop"}}})},
              {"usage", usage.is_discarded() ? json() : usage}};
    }
    response = {{"status_code", 200}, {"request_id", "req_" + hash.substr(0, 32)}, {"body", std::move(body)}};
  } else if (last.http_status > 0 && !task_suite) {
    response = {{"status_code", last.http_status},
                {"request_id", "req_" + hash.substr(0, 32)},
                {"body", raw ? std::move(body) : json(last.response)}};
  }
  json error;
  if (r.state != TaskState::done) {
    error = {{"code", r.error_code.empty() ? std::string(to_string(r.state)) : r.error_code},
             {"message", r.error_message}};
  }
  return {{"id", "batch_req_" + stable_hash_hex(r.task).substr(0, 32)},
          {"custom_id", r.task},
          {"response", std::move(response)},
          {"error", std::move(error)}};
}

namespace {

// RFC 4180: quote every field that needs it, double the quotes inside.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_value(const nlohmann::json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) return csv_field(v.get<std::string>());
  return csv_field(safe_dump(v));
}

// After "task" come the dimensions, one column each.
const char* const kFields[] = {"task",  "state",      "model", "content", "attempts",  "turns",
                               "error", "latency_ms", "usage", "stale",   "transcript"};

}  // namespace

void write_export(Store& store, const std::string& suite, const std::string& format, bool transcripts,
                  std::ostream& out, const std::vector<std::string>& dims, bool task_suite) {
  if (format == "openai-batch") {
    // Pending tasks have no output yet: the Batch API writes a line per
    // finished request only.
    store.export_tasks(suite, [&](const ExportRow& row) {
      if (row.state == TaskState::pending) return;
      out << safe_dump(openai_batch_record(row, store.last_attempt(row.task), task_suite)) << '\n';
    });
    out.flush();
    if (!out) throw Error(codes::IO_ERROR, "writing the export failed", Stage::execution);
    return;
  }
  bool csv = format == "csv";
  const size_t fields = std::size(kFields) - (transcripts ? 0 : 1);  // transcript is last
  // A dimension keeps its own name; a fixed field it would shadow (a "model"
  // dimension and the answering model) is written as result_<field>.
  std::vector<std::string> names;
  for (size_t i = 0; i < fields; ++i) {
    std::string name = kFields[i];
    if (i > 0 && std::find(dims.begin(), dims.end(), name) != dims.end()) name = "result_" + name;
    names.push_back(std::move(name));
  }
  if (csv) {
    out << names[0];
    for (const auto& d : dims) out << ',' << csv_field(d);
    for (size_t i = 1; i < fields; ++i) out << ',' << names[i];
    out << "\r\n";
  }
  store.export_tasks(
      suite,
      [&](const ExportRow& row) {
        nlohmann::json rec = export_record(row, transcripts);
        if (!csv) {
          out << safe_dump(rec) << '\n';
          return;
        }
        out << csv_value(rec["task"]);
        const nlohmann::json& cell = rec["dims"];
        for (const auto& d : dims) {
          auto it = cell.find(d);
          out << ',' << (it == cell.end() ? std::string() : csv_value(*it));
        }
        for (size_t i = 1; i < fields; ++i) out << ',' << csv_value(rec[kFields[i]]);
        out << "\r\n";
      },
      transcripts);
  out.flush();
  if (!out) throw Error(codes::IO_ERROR, "writing the export failed", Stage::execution);
}

}  // namespace shepherd
