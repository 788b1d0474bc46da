#include "store/export_format.h"

#include "core/error.h"
#include "core/text.h"

namespace shepherd {

namespace {

nlohmann::json record_of(const ExportRow& r, bool transcripts) {
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

const char* const kFields[] = {"task",  "dims",       "state", "model", "content",   "attempts",
                               "turns", "error", "latency_ms", "usage", "stale", "transcript"};

}  // namespace

void write_export(Store& store, const std::string& suite, const std::string& format, bool transcripts,
                  std::ostream& out) {
  bool csv = format == "csv";
  const size_t fields = std::size(kFields) - (transcripts ? 0 : 1);  // transcript is last
  if (csv) {
    for (size_t i = 0; i < fields; ++i) out << (i ? "," : "") << kFields[i];
    out << "\r\n";
  }
  store.export_tasks(
      suite,
      [&](const ExportRow& row) {
        nlohmann::json rec = record_of(row, transcripts);
        if (!csv) {
          out << safe_dump(rec) << '\n';
          return;
        }
        for (size_t i = 0; i < fields; ++i) out << (i ? "," : "") << csv_value(rec[kFields[i]]);
        out << "\r\n";
      },
      transcripts);
  out.flush();
  if (!out) throw Error(codes::IO_ERROR, "writing the export failed", Stage::execution);
}

}  // namespace shepherd
