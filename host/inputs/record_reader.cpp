#include "inputs/record_reader.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <unordered_map>

#include "core/error.h"
#include "core/hash.h"
#include "core/json_limits.h"

namespace shepherd {

namespace {

[[noreturn]] void malformed(const std::string& path, size_t line, const std::string& why) {
  throw Error(codes::SUITE_INVALID, path + ":" + std::to_string(line) + ": " + why, Stage::config,
              {{"file", path}, {"line", line}});
}

std::string read_all(const std::string& path) {
  std::unique_ptr<FILE, decltype(&fclose)> f(fopen(path.c_str(), "rb"), fclose);
  if (!f) throw Error(codes::SUITE_INVALID, "cannot read input file " + path, Stage::config, {{"file", path}});
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f.get())) > 0) out.append(buf, n);
  return out;
}

// Collects records and refuses a second record with the same identity,
// naming both lines. Identities are kept as 64-bit hashes; a hash seen twice
// is compared in full before it is called a duplicate.
class Collector {
 public:
  Collector(const std::string& path, const std::string& id_field) : path_(path), id_field_(id_field) {}

  void add(nlohmann::json value, size_t line) {
    nlohmann::json identity;
    if (!id_field_.empty()) {
      if (!value.is_object()) malformed(path_, line, "expected an object with field '" + id_field_ + "'");
      auto it = value.find(id_field_);
      if (it == value.end() || it->is_null()) malformed(path_, line, "the id field '" + id_field_ + "' is missing");
      if (!it->is_string() && !it->is_number()) malformed(path_, line, "the id field '" + id_field_ + "' must be a string or a number");
      if (it->is_string() && it->get_ref<const std::string&>().empty()) malformed(path_, line, "the id field '" + id_field_ + "' is empty");
      identity = *it;
    } else if (value.is_null()) {
      malformed(path_, line, "a record must not be null");
    }
    const nlohmann::json& key = id_field_.empty() ? value : identity;
    const std::string text = key.dump();
    const uint64_t h = stable_hash64(text);
    auto [it, fresh] = first_line_.emplace(h, Seen{line, out_.values.size()});
    if (!fresh) {
      const auto& earlier = id_field_.empty() ? out_.values[it->second.index] : out_.identities[it->second.index];
      if (earlier.dump() == text) {
        throw Error(codes::SUITE_INVALID,
                    path_ + ":" + std::to_string(line) + ": duplicate " +
                        (id_field_.empty() ? "record" : "id " + text) + " (first at line " +
                        std::to_string(it->second.line) + ")" + (id_field_.empty() ? " (name an id field to tell them apart)" : ""),
                    Stage::config, {{"file", path_}, {"line", line}, {"lines", {it->second.line, line}}});
      }
    }
    out_.values.push_back(std::move(value));
    if (!id_field_.empty()) out_.identities.push_back(std::move(identity));
  }

  InputRecords take() {
    if (out_.values.empty()) throw Error(codes::SUITE_INVALID, path_ + ": no records", Stage::config, {{"file", path_}});
    return std::move(out_);
  }

 private:
  struct Seen {
    size_t line;
    size_t index;
  };
  const std::string& path_;
  const std::string& id_field_;
  InputRecords out_;
  std::unordered_map<uint64_t, Seen> first_line_;
};

bool blank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r') return false;
  return true;
}

}  // namespace

InputRecords read_jsonl(const std::string& path, const std::string& id_field) {
  const std::string text = read_all(path);
  Collector records(path, id_field);
  size_t line = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    std::string_view row(text.data() + start, end - start);
    start = end + 1;
    if (blank(row)) continue;
    std::string why;
    nlohmann::json value = parse_json_bounded(row, &why, kMaxJsonDepth - 1);  // a cell nests it one level deeper
    if (value.is_discarded()) malformed(path, line, why.empty() ? "not a JSON value" : why);
    records.add(std::move(value), line);
  }
  return records.take();
}

InputRecords read_csv(const std::string& path, const std::string& id_field) {
  const std::string text = read_all(path);
  size_t at = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;  // a BOM, as spreadsheets write it
  size_t line = 1;
  // One row: fields, and the line it starts on. False at the end of the text.
  auto next_row = [&](std::vector<std::string>& fields, size_t& row_line) {
    fields.clear();
    if (at >= text.size()) return false;
    row_line = line;
    std::string field;
    bool quoted = false;
    while (true) {
      if (at >= text.size()) {
        if (quoted) malformed(path, row_line, "a quoted field is not closed");
        fields.push_back(std::move(field));
        return true;
      }
      char c = text[at++];
      if (quoted) {
        if (c == '"') {
          if (at < text.size() && text[at] == '"') {
            field += '"';
            ++at;
          } else {
            quoted = false;
          }
        } else {
          if (c == '\n') ++line;
          field += c;
        }
      } else if (c == '"') {
        if (!field.empty()) malformed(path, line, "a quote inside an unquoted field (quote the whole field and double the quote)");
        quoted = true;
      } else if (c == ',') {
        fields.push_back(std::move(field));
        field.clear();
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && at < text.size() && text[at] == '\n') ++at;
        ++line;
        fields.push_back(std::move(field));
        return true;
      } else {
        field += c;
      }
    }
  };
  std::vector<std::string> header;
  size_t header_line = 0;
  while (next_row(header, header_line) && header.size() == 1 && header[0].empty()) {}
  if (header.empty()) throw Error(codes::SUITE_INVALID, path + ": no header row", Stage::config, {{"file", path}});
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i].empty()) malformed(path, header_line, "column " + std::to_string(i + 1) + " of the header has no name");
    for (size_t j = 0; j < i; ++j)
      if (header[j] == header[i]) malformed(path, header_line, "the header names '" + header[i] + "' twice");
  }
  if (!id_field.empty() && std::find(header.begin(), header.end(), id_field) == header.end()) {
    malformed(path, header_line, "the header has no column '" + id_field + "'");
  }
  Collector records(path, id_field);
  std::vector<std::string> fields;
  size_t row_line = 0;
  while (next_row(fields, row_line)) {
    if (fields.size() == 1 && fields[0].empty()) continue;  // a blank line
    if (fields.size() != header.size()) {
      malformed(path, row_line, std::to_string(fields.size()) + " fields, the header has " + std::to_string(header.size()));
    }
    nlohmann::json record = nlohmann::json::object();
    for (size_t i = 0; i < fields.size(); ++i) record[header[i]] = std::move(fields[i]);
    records.add(std::move(record), row_line);
  }
  return records.take();
}

InputRecords read_batch_file(const std::string& path, const std::string& format) {
  const bool openai = format == "openai";
  InputRecords records = read_jsonl(path, openai ? "custom_id" : "");
  // read_jsonl keeps no line numbers: blank lines are rare in these files, so
  // a record's line is found again only to report it.
  auto line_of = [&](size_t index) {
    const std::string text = read_all(path);
    size_t line = 0, seen = 0, start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      ++line;
      if (!blank(std::string_view(text.data() + start, end - start)) && seen++ == index) return line;
      start = end + 1;
    }
    return line;
  };
  for (size_t i = 0; i < records.values.size(); ++i) {
    const auto& r = records.values[i];
    if (!r.is_object()) malformed(path, line_of(i), "expected an object");
    if (openai) {
      if (!records.identities[i].is_string()) malformed(path, line_of(i), "custom_id must be a string");
      for (const auto& [key, value] : r.items()) {
        if (key != "custom_id" && key != "method" && key != "url" && key != "body") {
          malformed(path, line_of(i), "unknown field '" + key + "' (known: custom_id, method, url, body)");
        }
      }
      if (r.contains("method") && r["method"] != "POST") malformed(path, line_of(i), "method must be \"POST\"");
      if (r.contains("url") && (!r["url"].is_string() || r["url"].get<std::string>().find("chat/completions") == std::string::npos)) {
        malformed(path, line_of(i), "url must be a chat completions path (\"/v1/chat/completions\")");
      }
    }
    const nlohmann::json body = batch_request_body(r, format);
    if (!body.is_object()) malformed(path, line_of(i), "body must be an object (the request)");
    auto model = body.find("model");
    if (model == body.end() || !model->is_string() || model->get_ref<const std::string&>().empty()) {
      malformed(path, line_of(i), "the request names no model (body.model)");
    }
  }
  return records;
}

nlohmann::json batch_request_body(const nlohmann::json& record, const std::string& format) {
  if (format == "openai") return record.is_object() && record.contains("body") ? record["body"] : nlohmann::json();
  nlohmann::json body = record;
  if (body.is_object()) body.erase("metadata");
  return body;
}

}  // namespace shepherd
