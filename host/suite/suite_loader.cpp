// Loads a suite file once and validates every field, so that a mistake is
// reported before anything runs, with the file, the line and the field.
#include <unistd.h>

#include <curl/curl.h>

#include <cmath>
#include <filesystem>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/hash.h"
#include "core/resources.h"
#include "core/text.h"
#include "inputs/record_reader.h"
#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/sandbox.h"
#include "lua/lua_json.h"
#include "suite/field_lines.h"
#include "suite/suite.h"

extern "C" {
#include <luajit.h>
}

namespace fs = std::filesystem;

namespace shepherd {

nlohmann::json RetryConfig::to_json() const {
  return {{"max_retries", max_retries},
          {"base_delay_ms", base_delay_ms},
          {"backoff_multiplier", backoff_multiplier},
          {"max_delay_ms", max_delay_ms},
          {"jitter", jitter},
          {"retry_on_timeout", retry_on_timeout},
          {"retry_on_api_error", retry_on_api_error},
          {"retry_on_format_error", retry_on_format_error},
          {"poison_after", poison_after}};
}

bool AlertRule::matches(const std::string& attempt_class, const std::string& attempt_code) const {
  return (cls.empty() || cls == attempt_class) && (code.empty() || code == attempt_code);
}

nlohmann::json AlertRule::to_json() const {
  nlohmann::json out = {{"name", name}, {"window_s", window_s}, {"count", count}};
  if (!cls.empty()) out["class"] = cls;
  if (!code.empty()) out["code"] = code;
  return out;
}

nlohmann::json MaintainConfig::to_json() const {
  return {{"minimum_completion_rate", minimum_completion_rate},
          {"maximum_failure_rate", maximum_failure_rate},
          {"priority_models", priority_models},
          {"skip_models", skip_models},
          {"cooldown_hours", cooldown_hours},
          {"batch_size", batch_size},
          {"group_by", group_by}};
}

Limits ProviderSpec::limits_for(const KeySpec& key, const std::string& model) const {
  Limits out = limits;
  auto apply = [&](const LimitsOverride& o) {
    if (o.concurrency) out.concurrency = *o.concurrency;
    if (o.rpm) out.rpm = *o.rpm;
    if (o.tpm) out.tpm = *o.tpm;
  };
  if (auto it = model_limits.find(model); it != model_limits.end()) apply(it->second);
  apply(key.limits);
  return out;
}

std::string ProviderSpec::url_for(const std::string& model) const {
  if (kind == "azure") {
    return base_url + "/openai/deployments/" + deployments.at(model) + "/chat/completions?api-version=" + api_version;
  }
  return base_url + "/chat/completions";
}

std::string ProviderSpec::auth_header(const KeySpec& key) const {
  return kind == "azure" ? "api-key: " + key.value : "Authorization: Bearer " + key.value;
}

namespace {

using Path = std::vector<std::string>;

// t[name] without metamethods: a suite table whose __index raises must get a
// clear error, not reach the host outside a protected call.
void raw_field(lua_State* L, int idx, const char* name) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  lua_pushstring(L, name);
  lua_rawget(L, idx);
}

std::string join(const Path& path) {
  std::string out;
  for (const auto& p : path) {
    if (!p.empty() && std::isdigit(static_cast<unsigned char>(p[0]))) {
      out += "[" + p + "]";
    } else {
      out += (out.empty() ? "" : ".") + p;
    }
  }
  return out;
}

// Reads the suite table on the Lua stack, field by field.
class SuiteReader {
 public:
  SuiteReader(lua_State* L, const Suite& suite) : L_(L), suite_(suite) {}

  [[noreturn]] void invalid(const Path& field, const std::string& why) const {
    int line = find_field_line(suite_.source, field);
    std::string where = suite_.path + (line > 0 ? ":" + std::to_string(line) : "");
    throw Error(codes::SUITE_INVALID, where + ": " + join(field) + ": " + why, Stage::config,
                {{"file", suite_.path}, {"line", line}, {"field", join(field)}});
  }

  std::string type_at(int idx) const { return luaL_typename(L_, idx); }

  void expect(int idx, int type, const Path& field, const char* what) const {
    if (lua_type(L_, idx) != type) invalid(field, std::string("expected ") + what + ", got " + type_at(idx));
  }

  // Every key of the table at idx must be a string in `allowed`.
  void check_fields(int idx, const std::set<std::string>& allowed, const Path& field) const {
    lua_pushnil(L_);
    while (lua_next(L_, idx) != 0) {
      lua_pop(L_, 1);
      if (lua_type(L_, -1) != LUA_TSTRING) invalid(field, "unexpected non-name key");
      std::string key = lua_tostring(L_, -1);
      if (!allowed.count(key)) {
        std::string known;
        for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + a;
        Path f = field;
        f.push_back(key);
        invalid(f, "unknown field (known: " + known + ")");
      }
    }
  }

  // Pushes t[name] (t at idx); the caller pops.
  int get(int idx, const char* name) const {
    raw_field(L_, idx, name);
    return lua_gettop(L_);
  }

  std::string string_field(int idx, const char* name, const Path& parent, bool required,
                           const std::string& fallback = "", size_t max_bytes = kMaxFieldBytes) const {
    Path f = parent;
    f.push_back(name);
    int v = get(idx, name);
    std::string out = fallback;
    if (lua_isnil(L_, v)) {
      if (required) invalid(f, "required field is missing");
    } else {
      expect(v, LUA_TSTRING, f, "a string");
      size_t len = 0;
      const char* text = lua_tolstring(L_, v, &len);
      if (len > max_bytes) invalid(f, "too long: at most " + std::to_string(max_bytes) + " bytes");
      out.assign(text, len);
      if (out.empty()) invalid(f, "must not be empty");
      if (!is_valid_utf8(out)) invalid(f, "must be valid UTF-8");
    }
    lua_pop(L_, 1);
    return out;
  }

  double number_field(int idx, const char* name, const Path& parent, double fallback, double min,
                      double max, bool integer) const {
    Path f = parent;
    f.push_back(name);
    int v = get(idx, name);
    double out = fallback;
    if (!lua_isnil(L_, v)) {
      expect(v, LUA_TNUMBER, f, integer ? "an integer" : "a number");
      out = lua_tonumber(L_, v);
      // floor, not a cast to an integer type: casting inf, NaN or 1e300 is undefined behaviour.
      if (integer && std::isfinite(out) && out != std::floor(out)) invalid(f, "expected an integer");
      if (!std::isfinite(out) || out < min || out > max) {
        invalid(f, "must be between " + nlohmann::json(min).dump() + " and " + nlohmann::json(max).dump());
      }
    }
    lua_pop(L_, 1);
    return out;
  }

  bool bool_field(int idx, const char* name, const Path& parent, bool fallback) const {
    Path f = parent;
    f.push_back(name);
    int v = get(idx, name);
    bool out = fallback;
    if (!lua_isnil(L_, v)) {
      expect(v, LUA_TBOOLEAN, f, "a boolean");
      out = lua_toboolean(L_, v);
    }
    lua_pop(L_, 1);
    return out;
  }

  // A list of non-empty strings at t[name]; empty only if allow_empty.
  std::vector<std::string> string_list(int idx, const char* name, const Path& parent, bool required,
                                       bool allow_empty = false) const {
    Path f = parent;
    f.push_back(name);
    int v = get(idx, name);
    std::vector<std::string> out;
    if (lua_isnil(L_, v)) {
      if (required) invalid(f, "required field is missing");
      lua_pop(L_, 1);
      return out;
    }
    expect(v, LUA_TTABLE, f, "a list of strings");
    size_t n = lua_objlen(L_, v);
    if (n == 0 && !allow_empty) invalid(f, "must not be empty");
    for (size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L_, v, static_cast<int>(i));
      Path fi = f;
      fi.push_back(std::to_string(i));
      if (lua_type(L_, -1) != LUA_TSTRING || lua_objlen(L_, -1) == 0) {
        invalid(fi, "expected a non-empty string, got " + type_at(-1));
      }
      if (lua_objlen(L_, -1) > kMaxFieldBytes) invalid(fi, "too long: at most " + std::to_string(kMaxFieldBytes) + " bytes");
      out.emplace_back(lua_tostring(L_, -1));
      if (!is_valid_utf8(out.back())) invalid(fi, "must be valid UTF-8");
      lua_pop(L_, 1);
    }
    lua_pop(L_, 1);
    return out;
  }

 private:
  lua_State* L_;
  const Suite& suite_;
};

LimitsOverride read_limits(const SuiteReader& r, lua_State* L, int idx, const Path& path, bool allow_per_model) {
  r.expect(idx, LUA_TTABLE, path, "a table { concurrency, rpm, tpm }");
  std::set<std::string> fields{"concurrency", "rpm", "tpm"};
  if (allow_per_model) fields.insert("per_model");
  r.check_fields(idx, fields, path);
  LimitsOverride o;
  auto field = [&](const char* name, double max, bool integer) -> std::optional<double> {
    raw_field(L, idx, name);
    bool present = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (!present) return std::nullopt;
    return r.number_field(idx, name, path, 0, 1, max, integer);
  };
  if (auto v = field("concurrency", 100000, true)) o.concurrency = static_cast<int>(*v);
  o.rpm = field("rpm", 1e9, false);
  o.tpm = field("tpm", 1e12, false);
  return o;
}

// Empty when `url` is an http(s) URL with a host, as libcurl parses it;
// otherwise why not ("http://" alone would fail only at send time, per task).
std::string url_problem(const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) return "must start with http:// or https://";
  // libcurl reads "http:///v1" as the host "v1": the host must be written.
  if (size_t authority = url.find("://") + 3; authority >= url.size() || url[authority] == '/') return "has no host";
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> handle(curl_url(), curl_url_cleanup);
  if (!handle) return "cannot be checked (out of memory)";
  CURLUcode rc = curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), 0);
  if (rc != CURLUE_OK) return std::string("is not a valid URL: ") + curl_url_strerror(rc);
  char* host = nullptr;
  rc = curl_url_get(handle.get(), CURLUPART_HOST, &host, 0);
  bool has_host = rc == CURLUE_OK && host != nullptr && host[0] != '\0';
  curl_free(host);
  if (!has_host) return "has no host";
  char* query = nullptr;
  bool has_query = curl_url_get(handle.get(), CURLUPART_QUERY, &query, 0) == CURLUE_OK && query != nullptr;
  curl_free(query);
  if (has_query) return "must not carry a query (the path of the API, e.g. https://api.openai.com/v1)";
  return "";
}

// "HH:MM" or "HH:MMZ" (UTC): minutes after midnight.
int parse_time_of_day(const SuiteReader& r, const std::string& text, const Path& path) {
  static const std::regex re("([01][0-9]|2[0-3]):([0-5][0-9])Z?");
  std::smatch m;
  if (!std::regex_match(text, m, re)) r.invalid(path, "expected a UTC time of day like \"00:00Z\"");
  return std::stoi(m[1]) * 60 + std::stoi(m[2]);
}

ProviderSpec read_provider(const SuiteReader& r, lua_State* L, int idx, const std::string& name,
                           const SuiteLoadOptions& options) {
  Path p{"providers", name};
  r.expect(idx, LUA_TTABLE, p, "a table");
  r.check_fields(idx, {"kind", "base_url", "keys", "models", "limits", "timeouts", "headers",
                       "max_response_bytes", "deployments", "api_version", "quota_resets", "stream", "stream_usage",
                       "breaker"}, p);
  ProviderSpec spec;
  spec.name = name;
  spec.kind = r.string_field(idx, "kind", p, false, "openai");
  if (spec.kind != "openai" && spec.kind != "azure") {
    r.invalid({"providers", name, "kind"}, "unknown provider kind '" + spec.kind + "' (known: openai, azure)");
  }
  spec.base_url = r.string_field(idx, "base_url", p, true);
  if (std::string why = url_problem(spec.base_url); !why.empty()) r.invalid({"providers", name, "base_url"}, why);
  while (!spec.base_url.empty() && spec.base_url.back() == '/') spec.base_url.pop_back();
  if (spec.kind == "azure") {
    // Azure: a deployment per model, an api-version, the key in `api-key`.
    spec.api_version = r.string_field(idx, "api_version", p, true);
    int deployments = r.get(idx, "deployments");
    Path dp{"providers", name, "deployments"};
    if (lua_isnil(L, deployments)) r.invalid(dp, "required for kind azure: { model = \"deployment name\" }");
    r.expect(deployments, LUA_TTABLE, dp, "a table of model = \"deployment name\"");
    lua_pushnil(L);
    while (lua_next(L, deployments) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        r.invalid(dp, "expected model = \"deployment name\" pairs of strings");
      }
      spec.deployments[lua_tostring(L, -2)] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    if (spec.deployments.empty()) r.invalid(dp, "must not be empty");
    raw_field(L, idx, "models");
    bool has_models = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_models) r.invalid({"providers", name, "models"}, "not used with kind azure: the deployments name the models");
    for (const auto& [model, deployment] : spec.deployments) spec.models.push_back(model);
  } else {
    for (const char* azure_only : {"deployments", "api_version"}) {
      raw_field(L, idx, azure_only);
      bool present = !lua_isnil(L, -1);
      lua_pop(L, 1);
      if (present) r.invalid({"providers", name, azure_only}, "only for kind azure");
    }
    spec.models = r.string_list(idx, "models", p, true);
  }
  std::string resets = r.string_field(idx, "quota_resets", p, false);
  if (!resets.empty()) spec.quota_reset_minute_utc = parse_time_of_day(r, resets, {"providers", name, "quota_resets"});

  int keys = r.get(idx, "keys");
  Path kp{"providers", name, "keys"};
  if (lua_isnil(L, keys)) r.invalid(kp, "required field is missing");
  r.expect(keys, LUA_TTABLE, kp, "a list of {id = …, env = …}");
  size_t n = lua_objlen(L, keys);
  if (n == 0) r.invalid(kp, "must not be empty");
  std::set<std::string> ids;
  for (size_t i = 1; i <= n; ++i) {
    lua_rawgeti(L, keys, static_cast<int>(i));
    int k = lua_gettop(L);
    Path ki = kp;
    ki.push_back(std::to_string(i));
    r.expect(k, LUA_TTABLE, ki, "a table {id = …, env = …}");
    r.check_fields(k, {"id", "env", "limits"}, ki);
    KeySpec key;
    key.id = r.string_field(k, "id", ki, true);
    key.env = r.string_field(k, "env", ki, true);
    int key_limits = r.get(k, "limits");
    if (!lua_isnil(L, key_limits)) {
      Path lp = ki;
      lp.push_back("limits");
      key.limits = read_limits(r, L, key_limits, lp, false);
    }
    lua_pop(L, 1);
    if (!ids.insert(key.id).second) r.invalid(ki, "duplicate key id '" + key.id + "'");
    if (options.resolve_keys) {
      const char* value = std::getenv(key.env.c_str());
      if (value == nullptr || *value == '\0') {
        throw Error(codes::KEY_ENV_MISSING,
                    "environment variable " + key.env + " (key '" + key.id + "' of provider '" + name +
                        "') is not set",
                    Stage::config, {{"env", key.env}, {"key", key.id}, {"provider", name}});
      }
      key.value = value;
    }
    spec.keys.push_back(std::move(key));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  int limits = r.get(idx, "limits");
  if (!lua_isnil(L, limits)) {
    Path lp{"providers", name, "limits"};
    LimitsOverride o = read_limits(r, L, limits, lp, true);
    spec.limits.concurrency = o.concurrency.value_or(spec.limits.concurrency);
    spec.limits.rpm = o.rpm.value_or(0);
    spec.limits.tpm = o.tpm.value_or(0);
    int per_model = r.get(limits, "per_model");
    if (!lua_isnil(L, per_model)) {
      Path mp = lp;
      mp.push_back("per_model");
      r.expect(per_model, LUA_TTABLE, mp, "a table of model = { concurrency, rpm, tpm }");
      lua_pushnil(L);
      while (lua_next(L, per_model) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) r.invalid(mp, "keys must be model names");
        std::string model = lua_tostring(L, -2);
        Path entry = mp;
        entry.push_back(model);
        spec.model_limits[model] = read_limits(r, L, lua_gettop(L), entry, false);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  int timeouts = r.get(idx, "timeouts");
  if (!lua_isnil(L, timeouts)) {
    Path tp{"providers", name, "timeouts"};
    r.expect(timeouts, LUA_TTABLE, tp, "a table");
    r.check_fields(timeouts, {"connect_ms", "first_byte_ms", "stall_ms", "total_ms"}, tp);
    const double day = 86'400'000;
    Timeouts& t = spec.timeouts;
    t.connect_ms = static_cast<long>(r.number_field(timeouts, "connect_ms", tp, t.connect_ms, 1, day, true));
    t.first_byte_ms = static_cast<long>(r.number_field(timeouts, "first_byte_ms", tp, t.first_byte_ms, 0, day, true));
    t.stall_ms = static_cast<long>(r.number_field(timeouts, "stall_ms", tp, t.stall_ms, 0, day, true));
    t.total_ms = static_cast<long>(r.number_field(timeouts, "total_ms", tp, t.total_ms, 1, day, true));
  }
  lua_pop(L, 1);
  int breaker = r.get(idx, "breaker");
  if (!lua_isnil(L, breaker)) {
    Path bp{"providers", name, "breaker"};
    r.expect(breaker, LUA_TTABLE, bp, "a table");
    r.check_fields(breaker, {"failure_rate", "min_calls", "window", "window_ms", "open_ms", "max_open_ms", "probes"}, bp);
    const double day = 86'400'000;
    BreakerSpec& b = spec.breaker;
    b.failure_rate = r.number_field(breaker, "failure_rate", bp, b.failure_rate, 0.01, 1, false);
    b.window = static_cast<int>(r.number_field(breaker, "window", bp, b.window, 1, 100'000, true));
    b.min_calls = static_cast<int>(r.number_field(breaker, "min_calls", bp, std::min(b.min_calls, b.window), 1, b.window, true));
    b.window_ms = static_cast<long>(r.number_field(breaker, "window_ms", bp, b.window_ms, 1, day, true));
    b.open_ms = static_cast<long>(r.number_field(breaker, "open_ms", bp, b.open_ms, 1, day, true));
    b.max_open_ms = static_cast<long>(r.number_field(breaker, "max_open_ms", bp, std::max(b.max_open_ms, b.open_ms), b.open_ms, day, true));
    b.probes = static_cast<int>(r.number_field(breaker, "probes", bp, b.probes, 1, 1000, true));
  }
  lua_pop(L, 1);
  spec.stream = r.bool_field(idx, "stream", p, spec.stream);
  spec.stream_usage = r.bool_field(idx, "stream_usage", p, spec.stream_usage);

  int headers = r.get(idx, "headers");
  if (!lua_isnil(L, headers)) {
    Path hp{"providers", name, "headers"};
    r.expect(headers, LUA_TTABLE, hp, "a table of name = value");
    lua_pushnil(L);
    while (lua_next(L, headers) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
        r.invalid(hp, "expected string names and string values");
      }
      spec.headers.push_back(std::string(lua_tostring(L, -2)) + ": " + lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  spec.max_response_bytes = static_cast<size_t>(
      r.number_field(idx, "max_response_bytes", p, 8u << 20, 1024, 1u << 30, true));
  for (const auto& [model, limits] : spec.model_limits) {
    if (std::find(spec.models.begin(), spec.models.end(), model) == spec.models.end()) {
      r.invalid({"providers", name, "limits", "per_model", model}, "model '" + model + "' is not one this provider serves");
    }
  }
  return spec;
}

// A dimension from shepherd.jsonl/csv: its descriptor (the list's metatable
// field __shepherd_input) is expanded here, once; the records never enter Lua
// while the suite loads. False when the list is a plain one.
bool read_input_dimension(const SuiteReader& r, lua_State* L, int list, const Path& dp, Dimension& d) {
  nlohmann::json descriptor;
  if (!input_descriptor(L, list, descriptor)) return false;
  const std::string kind = descriptor.value("kind", "");
  const std::string file = descriptor.value("path", "");
  const std::string id = descriptor.value("id", "");
  InputRecords records;
  try {
    records = kind == "csv" ? read_csv(file, id) : read_jsonl(file, id);
  } catch (const Error& e) {
    r.invalid(dp, e.what());
  }
  d.values = std::move(records.values);
  d.identities = std::move(records.identities);
  d.input = descriptor.dump();
  return true;
}

// batch_file = "requests.jsonl": the tasks are the file's lines, one
// dimension `request`, each line's id its custom_id (or, cookbook format,
// the line's canonical JSON). False when the suite has no batch_file.
bool read_batch_suite(const SuiteReader& r, lua_State* L, int t, int matrix, Suite& suite) {
  suite.batch_file = r.string_field(t, "batch_file", {}, false);
  std::string format = r.string_field(t, "batch_file_format", {}, false, "openai");
  if (suite.batch_file.empty()) {
    raw_field(L, t, "batch_file_format");
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given) r.invalid({"batch_file_format"}, "only with batch_file");
    return false;
  }
  if (format != "openai" && format != "cookbook") r.invalid({"batch_file_format"}, "\"openai\" or \"cookbook\"");
  if (!lua_isnil(L, matrix)) r.invalid({"matrix"}, "not with batch_file: each line of the file is a task");
  for (const char* field : {"request", "task", "models"}) {
    raw_field(L, t, field);
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given) r.invalid({field}, "not with batch_file: each line is its own request and names its model");
  }
  fs::path file = fs::path(suite.batch_file).is_absolute() ? fs::path(suite.batch_file) : fs::path(suite.dir) / suite.batch_file;
  suite.batch_file = file.lexically_normal().string();
  suite.batch_file_format = format;
  std::error_code ec;
  if (!fs::is_regular_file(suite.batch_file, ec)) r.invalid({"batch_file"}, "no such file: " + suite.batch_file);
  Dimension d;
  d.name = "request";
  try {
    InputRecords records = read_batch_file(suite.batch_file, format);
    d.values = std::move(records.values);
    d.identities = std::move(records.identities);
  } catch (const Error& e) {
    r.invalid({"batch_file"}, e.what());
  }
  d.input = nlohmann::json{{"kind", "batch_file"}, {"path", suite.batch_file}, {"format", format}}.dump();
  d.source_line = find_field_line(suite.source, {"batch_file"});
  // Each body's model is its task's: the models, in first-seen order.
  for (const auto& v : d.values) {
    std::string model = batch_request_body(v, format)["model"].get<std::string>();
    auto at = std::find(suite.models.begin(), suite.models.end(), model);
    if (at == suite.models.end()) at = suite.models.insert(at, model);
    suite.batch_models.push_back(static_cast<int32_t>(at - suite.models.begin()));
  }
  suite.dims.push_back(std::move(d));
  return true;
}

// A list from shepherd.files: each value's identity is its `path` (the
// metatable field __shepherd_identity names it), so a file's size may change
// and its task keeps its id.
void read_identities(const SuiteReader& r, lua_State* L, int list, const Path& dp, Dimension& d) {
  if (!lua_getmetatable(L, list)) return;
  lua_pushliteral(L, "__shepherd_identity");
  lua_rawget(L, -2);
  std::string field = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
  lua_pop(L, 2);
  if (field.empty()) return;
  std::set<std::string> seen;
  for (size_t i = 0; i < d.values.size(); ++i) {
    const auto& v = d.values[i];
    Path vp = dp;
    vp.push_back(std::to_string(i + 1));
    if (!v.is_object() || !v.contains(field)) r.invalid(vp, "a record without its '" + field + "'");
    if (!seen.insert(v[field].dump()).second) r.invalid(vp, "duplicate " + field + " " + v[field].dump());
    d.identities.push_back(v[field]);
  }
}

std::vector<Dimension> read_matrix(const SuiteReader& r, lua_State* L, int idx) {
  Path mp{"matrix"};
  if (lua_isnil(L, idx)) r.invalid(mp, "required field is missing");
  r.expect(idx, LUA_TTABLE, mp, "a table of dimension = { values… }");
  std::vector<Dimension> dims;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) r.invalid(mp, "dimension names must be strings");
    Dimension d;
    d.name = lua_tostring(L, -2);
    Path dp{"matrix", d.name};
    int list = lua_gettop(L);
    r.expect(list, LUA_TTABLE, dp, "a list of values");
    if (read_input_dimension(r, L, list, dp, d)) {
      dims.push_back(std::move(d));
      lua_pop(L, 1);
      continue;
    }
    size_t n = lua_objlen(L, list);
    if (n == 0) r.invalid(dp, "must list at least one value");
    std::set<std::string> seen;
    for (size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L, list, static_cast<int>(i));
      Path vp = dp;
      vp.push_back(std::to_string(i));
      nlohmann::json value;
      std::string error;
      if (lua_isnil(L, -1) || !try_to_json(L, lua_gettop(L), value, error, "value")) {
        r.invalid(vp, error.empty() ? "a value must not be nil" : error);
      }
      if (!seen.insert(value.dump()).second) r.invalid(vp, "duplicate value " + value.dump());
      d.values.push_back(std::move(value));
      lua_pop(L, 1);
    }
    read_identities(r, L, list, dp, d);
    dims.push_back(std::move(d));
    lua_pop(L, 1);
  }
  if (dims.empty()) r.invalid(mp, "must have at least one dimension");
  std::sort(dims.begin(), dims.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return dims;
}

void read_retry(const SuiteReader& r, lua_State* L, int idx, RetryConfig& retry) {
  if (lua_isnil(L, idx)) return;
  Path p{"retry"};
  r.expect(idx, LUA_TTABLE, p, "a table");
  r.check_fields(idx, {"max_retries", "base_delay_ms", "backoff_multiplier", "max_delay_ms", "jitter",
                       "retry_on_timeout", "retry_on_api_error", "retry_on_format_error", "poison_after"}, p);
  retry.max_retries = static_cast<int>(r.number_field(idx, "max_retries", p, retry.max_retries, 0, 1000, true));
  retry.base_delay_ms = static_cast<long>(r.number_field(idx, "base_delay_ms", p, retry.base_delay_ms, 0, 86'400'000, true));
  retry.backoff_multiplier = r.number_field(idx, "backoff_multiplier", p, retry.backoff_multiplier, 1, 100, false);
  retry.max_delay_ms = static_cast<long>(r.number_field(idx, "max_delay_ms", p, retry.max_delay_ms, 0, 86'400'000, true));
  retry.jitter = r.bool_field(idx, "jitter", p, retry.jitter);
  retry.retry_on_timeout = r.bool_field(idx, "retry_on_timeout", p, retry.retry_on_timeout);
  retry.retry_on_api_error = r.bool_field(idx, "retry_on_api_error", p, retry.retry_on_api_error);
  retry.retry_on_format_error = r.bool_field(idx, "retry_on_format_error", p, retry.retry_on_format_error);
  retry.poison_after = static_cast<int>(r.number_field(idx, "poison_after", p, retry.poison_after, 2, 1000, true));
}

void read_conversation(const SuiteReader& r, lua_State* L, int idx, const Suite& suite, ConversationSpec& c) {
  if (lua_isnil(L, idx)) return;
  Path p{"conversation"};
  if (!suite.has_task) r.invalid(p, "only a suite with task(cell, llm) has conversations");
  r.expect(idx, LUA_TTABLE, p, "a table");
  r.check_fields(idx, {"max_turns", "task_timeout_ms", "max_open"}, p);
  c.max_turns = static_cast<int>(r.number_field(idx, "max_turns", p, c.max_turns, 1, 10'000, true));
  c.task_timeout_ms = static_cast<long>(r.number_field(idx, "task_timeout_ms", p, c.task_timeout_ms, 1, 7 * 86'400'000.0, true));
  c.max_open = static_cast<int>(r.number_field(idx, "max_open", p, c.max_open, 1, 1'000'000, true));
}

void read_alerts(const SuiteReader& r, lua_State* L, int idx, AlertSpec& alerts) {
  if (lua_isnil(L, idx)) return;
  Path p{"alerts"};
  r.expect(idx, LUA_TTABLE, p, "a table { rules = { … }, webhook = \"http://…\" }");
  r.check_fields(idx, {"rules", "webhook"}, p);
  alerts.webhook = r.string_field(idx, "webhook", p, false);
  if (!alerts.webhook.empty() && alerts.webhook.rfind("http://", 0) != 0 && alerts.webhook.rfind("https://", 0) != 0) {
    r.invalid({"alerts", "webhook"}, "an http:// or https:// URL");
  }
  int rules = r.get(idx, "rules");
  if (lua_isnil(L, rules)) r.invalid({"alerts", "rules"}, "required field is missing");
  r.expect(rules, LUA_TTABLE, {"alerts", "rules"}, "a list of { class = …, code = …, window_s = …, count = … }");
  size_t n = lua_objlen(L, rules);
  for (size_t i = 1; i <= n; ++i) {
    lua_rawgeti(L, rules, static_cast<int>(i));
    int rule = lua_gettop(L);
    Path rp{"alerts", "rules", std::to_string(i)};
    r.expect(rule, LUA_TTABLE, rp, "a table { class = …, code = …, window_s = …, count = … }");
    r.check_fields(rule, {"name", "class", "code", "window_s", "count"}, rp);
    AlertRule a;
    a.name = r.string_field(rule, "name", rp, false);
    a.cls = r.string_field(rule, "class", rp, false);
    a.code = r.string_field(rule, "code", rp, false);
    if (a.cls.empty() && a.code.empty()) r.invalid(rp, "give class, code or both");
    a.window_s = r.number_field(rule, "window_s", rp, a.window_s, 1, 7 * 86400, false);
    a.count = static_cast<int>(r.number_field(rule, "count", rp, a.count, 1, 1'000'000, true));
    if (a.name.empty()) {
      char window[32];
      std::snprintf(window, sizeof window, "%g", a.window_s);
      a.name = (a.cls.empty() ? a.code : a.code.empty() ? a.cls : a.cls + "/" + a.code) + " x" +
               std::to_string(a.count) + "/" + window + "s";
    }
    alerts.rules.push_back(std::move(a));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

void read_maintain(const SuiteReader& r, lua_State* L, int idx, const Suite& suite, MaintainConfig& m) {
  if (lua_isnil(L, idx)) return;
  Path p{"maintain"};
  r.expect(idx, LUA_TTABLE, p, "a table");
  r.check_fields(idx, {"minimum_completion_rate", "maximum_failure_rate", "priority_models", "skip_models",
                       "cooldown_hours", "batch_size", "group_by"}, p);
  {
    int g = r.get(idx, "group_by");
    bool given = !lua_isnil(L, g);
    lua_pop(L, 1);
    if (given) {
      m.group_by = r.string_list(idx, "group_by", p, false, true);
      for (size_t i = 0; i < m.group_by.size(); ++i) {
        bool known = std::any_of(suite.dims.begin(), suite.dims.end(), [&](const auto& d) { return d.name == m.group_by[i]; });
        if (!known) r.invalid({"maintain", "group_by", std::to_string(i + 1)}, "'" + m.group_by[i] + "' is not a dimension of the matrix");
      }
    }
  }
  m.minimum_completion_rate = r.number_field(idx, "minimum_completion_rate", p, m.minimum_completion_rate, 0, 1, false);
  m.maximum_failure_rate = r.number_field(idx, "maximum_failure_rate", p, m.maximum_failure_rate, 0, 1, false);
  m.cooldown_hours = r.number_field(idx, "cooldown_hours", p, m.cooldown_hours, 0, 24 * 365, false);
  m.batch_size = static_cast<int>(r.number_field(idx, "batch_size", p, m.batch_size, 1, 100000, true));
  for (auto [name, list] : {std::pair{"priority_models", &m.priority_models}, std::pair{"skip_models", &m.skip_models}}) {
    *list = r.string_list(idx, name, p, false, true);
    for (size_t i = 0; i < list->size(); ++i) {
      if (std::find(suite.models.begin(), suite.models.end(), (*list)[i]) == suite.models.end()) {
        r.invalid({"maintain", name, std::to_string(i + 1)}, "model '" + (*list)[i] + "' is not one of the suite's models");
      }
    }
  }
}

void read_policies(const SuiteReader& r, lua_State* L, int idx, Suite& suite) {
  if (lua_isnil(L, idx)) return;
  Path p{"policies"};
  r.expect(idx, LUA_TTABLE, p, "a table of policy = \"file.lua\"");
  r.check_fields(idx, {std::begin(kPolicyKinds), std::end(kPolicyKinds)}, p);
  for (const char* name : kPolicyKinds) {
    std::string rel = r.string_field(idx, name, p, false);
    if (rel.empty()) continue;
    fs::path file = fs::path(rel).is_absolute() ? fs::path(rel) : fs::path(suite.dir) / rel;
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) r.invalid({"policies", name}, "no such file: " + file.string());
    suite.policies.overrides[name] = fs::weakly_canonical(file).string();
  }
}

// outputs = { path = function(cell), write = function(cell, result) }: the
// functions run per done task on the workers' states (host/outputs/).
void read_outputs(const SuiteReader& r, lua_State* L, int idx, Suite& suite) {
  if (lua_isnil(L, idx)) return;
  Path p{"outputs"};
  r.expect(idx, LUA_TTABLE, p, "a table { path = function(cell), write = function(cell, result) }");
  r.check_fields(idx, {"path", "write"}, p);
  int path = r.get(idx, "path");
  if (lua_isnil(L, path)) r.invalid({"outputs", "path"}, "required field is missing");
  r.expect(path, LUA_TFUNCTION, {"outputs", "path"}, "a function(cell) returning the output file's path");
  lua_pop(L, 1);
  int write = r.get(idx, "write");
  if (!lua_isnil(L, write)) r.expect(write, LUA_TFUNCTION, {"outputs", "write"}, "a function(cell, result) returning the file's text");
  suite.has_output_write = !lua_isnil(L, write);
  lua_pop(L, 1);
  suite.has_outputs = true;
}

}  // namespace

void push_suite_table(lua_State* L, const std::string& path, const std::string& dir, const std::string& source) {
  // The suite's own modules resolve beside it.
  lua_getglobal(L, "package");
  lua_pushstring(L, (dir + "/?.lua;" + dir + "/?/init.lua").c_str());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  install_packaged_loader(L);
  lua_getglobal(L, "shepherd");
  if (lua_istable(L, -1)) {
    lua_pushstring(L, dir.c_str());
    lua_setfield(L, -2, "suite_dir");
  }
  lua_pop(L, 1);

  LuaFailure failure;
  if (!load_chunk(L, source, path, failure)) {
    throw Error(codes::SUITE_SYNTAX, failure.describe(), Stage::config,
                {{"file", path}, {"line", failure.line}});
  }
  // The suite's code (and every module it requires) runs interpreted, under
  // time and memory limits: compiled traces would skip the limit's hook. A
  // suite that loops while it loads is an error, never a hang (of run or status).
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  make_interruptible(L, -1);
  bool loaded = false;
  {
    CallLimit limit(L, kSuiteLoadBudget);
    MemoryLimit memory(L, kSuiteLoadMemory);
    loaded = protected_call(L, 0, 1, failure);
  }
  if (!loaded) {
    throw Error(codes::SUITE_INVALID, failure.describe(), Stage::config,
                {{"file", failure.file.empty() ? path : failure.file}, {"line", failure.line}});
  }
  if (!lua_istable(L, -1)) {
    std::string got = luaL_typename(L, -1);
    lua_pop(L, 1);
    throw Error(codes::SUITE_INVALID, path + ": the suite file must return a table, got " + got,
                Stage::config, {{"file", path}, {"line", 0}});
  }
}

Suite load_suite(const std::string& path, const SuiteLoadOptions& options) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw Error(codes::SUITE_NOT_FOUND, "suite file not found: " + path, Stage::config, {{"file", path}});
  }
  Suite suite;
  suite.path = fs::absolute(path).lexically_normal().string();
  suite.dir = fs::path(suite.path).parent_path().string();
  suite.source = read_file(suite.path);
  suite.config_hash = stable_hash_hex(suite.source);

  LuaState L;
  register_shepherd_api(L);
  push_suite_table(L, suite.path, suite.dir, suite.source);
  int t = lua_gettop(L);
  SuiteReader r(L, suite);
  r.check_fields(t, {"name", "description", "providers", "matrix", "models", "request", "task", "conversation", "check", "key_for",
                     "retry", "maintain", "policies", "alerts", "outputs", "batch_file", "batch_file_format"}, {});

  suite.name = r.string_field(t, "name", {}, true);
  static const std::regex name_re("[A-Za-z0-9][A-Za-z0-9_.-]*");
  if (suite.name.size() > kMaxSuiteNameBytes) {
    r.invalid({"name"}, "at most " + std::to_string(kMaxSuiteNameBytes) + " characters (it names the store and log files)");
  }
  if (!std::regex_match(suite.name, name_re)) {
    r.invalid({"name"}, "use letters, digits, '_', '-' and '.' (it names the store and log files)");
  }
  r.string_field(t, "description", {}, false);

  int providers = r.get(t, "providers");
  if (lua_isnil(L, providers)) r.invalid({"providers"}, "required field is missing");
  r.expect(providers, LUA_TTABLE, {"providers"}, "a table of name = { … }");
  lua_pushnil(L);
  while (lua_next(L, providers) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING) r.invalid({"providers"}, "provider names must be strings");
    std::string name = lua_tostring(L, -2);
    suite.providers.push_back(read_provider(r, L, lua_gettop(L), name, options));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (suite.providers.empty()) r.invalid({"providers"}, "must name at least one provider");
  std::sort(suite.providers.begin(), suite.providers.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });

  int matrix = r.get(t, "matrix");
  const bool batch = read_batch_suite(r, L, t, matrix, suite);
  if (!batch) suite.dims = read_matrix(r, L, matrix);
  lua_pop(L, 1);
  if (!batch)
    for (auto& d : suite.dims) d.source_line = find_field_line(suite.source, {"matrix", d.name});

  auto served = [&](const std::string& model) {
    for (const auto& p : suite.providers)
      if (std::find(p.models.begin(), p.models.end(), model) != p.models.end()) return true;
    return false;
  };
  auto model_dim = std::find_if(suite.dims.begin(), suite.dims.end(), [](const auto& d) { return d.name == "model"; });
  suite.model_is_dimension = model_dim != suite.dims.end() || batch;
  if (batch) {
    for (const auto& model : suite.models) {
      if (!served(model)) r.invalid({"batch_file"}, "model '" + model + "' (named in the file) is not in any provider's models");
    }
  } else if (suite.model_is_dimension) {
    raw_field(L, t, "models");
    if (!lua_isnil(L, -1)) {
      r.invalid({"models"}, "not allowed when the matrix has a 'model' dimension (each task names its model)");
    }
    lua_pop(L, 1);
    for (size_t i = 0; i < model_dim->values.size(); ++i) {
      const auto& v = model_dim->values[i];
      Path vp{"matrix", "model", std::to_string(i + 1)};
      if (!v.is_string() || v.get<std::string>().empty()) r.invalid(vp, "a model must be a non-empty string");
      if (!served(v.get<std::string>())) {
        r.invalid(vp, "model '" + v.get<std::string>() + "' is not in any provider's models");
      }
      suite.models.push_back(v.get<std::string>());
    }
  } else {
    suite.models = r.string_list(t, "models", {}, false);
    if (suite.models.empty()) {
      r.invalid({"models"}, "required when the matrix has no 'model' dimension (the models to use, in order)");
    }
    for (size_t i = 0; i < suite.models.size(); ++i) {
      if (!served(suite.models[i])) {
        r.invalid({"models", std::to_string(i + 1)}, "model '" + suite.models[i] + "' is not in any provider's models");
      }
    }
  }

  // One request per task, or one conversation per task: never both.
  int request = r.get(t, "request");
  int task = r.get(t, "task");
  suite.has_task = !lua_isnil(L, task);
  if (lua_isnil(L, request) && !suite.has_task && !batch) {
    r.invalid({"request"}, "required field is missing (or give task(cell, llm) for a conversation)");
  }
  if (!lua_isnil(L, request) && suite.has_task) {
    r.invalid({"task"}, "give request(cell) or task(cell, llm), not both");
  }
  if (suite.has_task) {
    r.expect(task, LUA_TFUNCTION, {"task"}, "a function(cell, llm) returning the task's result");
  } else if (!batch) {
    r.expect(request, LUA_TFUNCTION, {"request"}, "a function(cell) returning the request body");
  }
  lua_pop(L, 2);
  int conversation = r.get(t, "conversation");
  read_conversation(r, L, conversation, suite, suite.conversation);
  lua_pop(L, 1);
  int check = r.get(t, "check");
  if (!lua_isnil(L, check)) {
    r.expect(check, LUA_TFUNCTION, {"check"},
             suite.has_task ? "a function(cell, result)" : "a function(cell, response)");
  }
  suite.has_check = !lua_isnil(L, check);
  lua_pop(L, 1);
  int key_for = r.get(t, "key_for");
  if (!lua_isnil(L, key_for)) r.expect(key_for, LUA_TFUNCTION, {"key_for"}, "a function(cell, keys) returning a key id");
  suite.has_key_for = !lua_isnil(L, key_for);
  lua_pop(L, 1);

  int retry = r.get(t, "retry");
  read_retry(r, L, retry, suite.retry);
  lua_pop(L, 1);
  int maintain = r.get(t, "maintain");
  read_maintain(r, L, maintain, suite, suite.maintain);
  lua_pop(L, 1);
  int policies = r.get(t, "policies");
  read_policies(r, L, policies, suite);
  lua_pop(L, 1);
  int alerts = r.get(t, "alerts");
  read_alerts(r, L, alerts, suite.alerts);
  lua_pop(L, 1);
  int outputs = r.get(t, "outputs");
  read_outputs(r, L, outputs, suite);
  lua_pop(L, 1);
  return suite;
}

}  // namespace shepherd
