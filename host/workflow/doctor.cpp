#include "workflow/doctor.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>

#include <SQLiteCpp/SQLiteCpp.h>

#include "core/error.h"
#include "core/redactor.h"
#include "core/text.h"
#include "engine/response_reader.h"
#include "http/http_client.h"
#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/sandbox.h"
#include "policy/policy_set.h"
#include "policy/policy_sources.h"
#include "store/store.h"
#include "suite/request_body.h"

namespace shepherd {

namespace fs = std::filesystem;

namespace {

// The chat request a probe sends: the least a provider will answer.
constexpr const char* kPingPrompt = "ping";
// A streamed answer repeats its head in every event (task_worker.cpp's kStreamWireFactor).
constexpr size_t kStreamWireFactor = 8;
// What PolicySet gives a policy file and its selftest() at load.
constexpr std::chrono::milliseconds kSelftestBudget{2000};
constexpr size_t kSelftestMemory = size_t{256} << 20;
// Lines of PRAGMA integrity_check kept: the first problems say enough.
constexpr int kIntegrityRows = 20;

DoctorCheck passed(std::string name, std::string detail, nlohmann::json data = nullptr) {
  return DoctorCheck{std::move(name), true, std::move(detail), false, std::move(data)};
}

DoctorCheck failed(std::string name, std::string detail, nlohmann::json data = nullptr) {
  return DoctorCheck{std::move(name), false, std::move(detail), false, std::move(data)};
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// An error as one line: "CODE: message", what a provider echoed redacted.
std::string describe(const Error& e) { return e.code() + ": " + redacted(clip_text(e.what(), 1000)); }

std::string db_path_for(const Suite& suite, const std::string& db_flag) {
  return db_flag.empty() ? (fs::path(suite.dir) / (suite.name + ".db")).string()
                         : fs::absolute(db_flag).lexically_normal().string();
}

// The nearest directory of `p` (itself or an ancestor) that exists.
fs::path existing_dir(fs::path p) {
  std::error_code ec;
  while (!p.empty() && !fs::is_directory(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  return p.empty() ? fs::path(".") : p;
}

// --- the suite -------------------------------------------------------------

DoctorCheck check_suite(const Suite& suite) {
  uint64_t tasks = 1;
  for (const auto& d : suite.dims) tasks *= d.values.size();
  size_t keys = 0;
  for (const auto& p : suite.providers) keys += p.keys.size();
  return passed("suite", "'" + suite.name + "' (" + suite.path + ") validates: " +
                             plural(suite.providers.size(), "provider", "providers") + ", " +
                             plural(keys, "key", "keys") + ", " + plural(suite.models.size(), "model", "models") +
                             ", " + plural(tasks, "task", "tasks"),
                {{"name", suite.name}, {"path", suite.path}, {"tasks", tasks}});
}

// --- the policies ----------------------------------------------------------

// "…tail/of/a/long/path.lua" (as Lua shortens chunk names) stands for `full`.
bool same_chunk(const std::string& shown, const std::string& full) {
  if (shown == full) return true;
  if (shown.rfind("...", 0) != 0 || shown.size() <= 3) return false;
  std::string tail = shown.substr(3);
  return full.size() >= tail.size() && full.compare(full.size() - tail.size(), tail.size(), tail) == 0;
}

// The first line of `traceback` inside the chunk `chunk_name`, or 0.
int line_in_traceback(const std::string& traceback, const std::string& chunk_name) {
  size_t start = 0;
  while (start < traceback.size()) {
    size_t end = traceback.find('\n', start);
    std::string line = traceback.substr(start, end == std::string::npos ? std::string::npos : end - start);
    line.erase(0, line.find_first_not_of(" \t"));
    LuaFailure f = parse_lua_message(line);
    if (f.line > 0 && same_chunk(f.file, chunk_name)) return f.line;
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return 0;
}

// Loads a policy file as PolicySet does (sandboxed, time- and memory-bound)
// and pushes its module's selftest, or returns false.
bool push_selftest(lua_State* L, const PolicySource& src, LuaFailure& failure) {
  register_shepherd_api(L);
  if (!load_chunk(L, src.text, src.chunk_name, failure)) return false;
  make_interruptible(L, -1);
  push_sandbox_env(L);
  lua_setfenv(L, -2);
  {
    CallLimit limit(L, kSelftestBudget);
    MemoryLimit memory(L, kSelftestMemory);
    if (!protected_call(L, 0, 1, failure)) return false;
  }
  if (!lua_istable(L, -1)) return false;
  lua_getfield(L, -1, "selftest");
  return lua_isfunction(L, -1);
}

// Whether the module has a selftest() (PolicySet ran it, and does not say).
bool has_selftest(const PolicySource& src) {
  LuaState L;
  LuaFailure failure;
  return push_selftest(L, src, failure);
}

// A selftest that fails through assert() reports no position; run it again in
// a scratch state, as PolicySet runs it, to find the line from the traceback.
int selftest_line(const PolicySource& src) {
  LuaState L;
  LuaFailure failure;
  if (!push_selftest(L, src, failure)) return failure.line;
  {
    CallLimit limit(L, kSelftestBudget);
    MemoryLimit memory(L, kSelftestMemory);
    if (protected_call(L, 0, 0, failure)) return 0;  // passes now: nothing to point at
  }
  return failure.line > 0 && same_chunk(failure.file, src.chunk_name) ? failure.line
                                                                      : line_in_traceback(failure.traceback, src.chunk_name);
}

PolicySources packaged_policies() { return PolicySources::for_suite(Suite{}); }

// Each policy in a set of its own (the others packaged), in a fresh state:
// one broken file does not hide another.
std::vector<DoctorCheck> check_policies(const Suite& suite) {
  std::vector<DoctorCheck> out;
  PolicySources mine, packaged;
  try {
    mine = PolicySources::for_suite(suite);
    packaged = packaged_policies();
  } catch (const Error& e) {
    out.push_back(failed("policies", "cannot read the policy files: " + describe(e)));
    return out;
  }
  for (const char* kind : kPolicyKinds) {
    const PolicySource& src = *mine.find(kind);
    PolicySources one = packaged;
    *one.find(kind) = src;
    one.update_version();
    const bool overridden = suite.policies.overrides.count(kind) > 0;
    nlohmann::json data = {{"policy", kind}, {"file", src.chunk_name}, {"version", src.hash},
                           {"override", overridden}};
    const std::string name = std::string("policy ") + kind;
    const std::string what = (overridden ? "the suite's " : "packaged ") + src.chunk_name;
    try {
      LuaState L;
      register_shepherd_api(L);
      PolicySet set(L, one, suite.retry, suite.maintain);
      const bool tested = has_selftest(src);
      data["selftest"] = tested;
      out.push_back(passed(name, what + " loads" + (tested ? " and its selftest() passes" : " (no selftest())"), data));
    } catch (const Error& e) {
      int line = e.details().value("line", 0);
      std::string message = e.what();
      if (line == 0 && message.find("selftest() failed") != std::string::npos) {
        line = selftest_line(src);
        // "chunk: selftest() failed: …" becomes "chunk:line: selftest() failed: …".
        if (line > 0 && message.rfind(src.chunk_name + ": ", 0) == 0) {
          message.insert(src.chunk_name.size(), ":" + std::to_string(line));
        }
      }
      data["line"] = line;
      out.push_back(failed(name, redacted(clip_text(message, 1000)), data));
    }
  }
  return out;
}

// --- the keys --------------------------------------------------------------

bool key_set(const KeySpec& key) {
  const char* value = std::getenv(key.env.c_str());
  return value != nullptr && *value != '\0';
}

std::vector<DoctorCheck> check_keys(const Suite& suite) {
  std::vector<DoctorCheck> out;
  for (const auto& p : suite.providers) {
    for (const auto& k : p.keys) {
      nlohmann::json data = {{"provider", p.name}, {"key", k.id}, {"env", k.env}};
      std::string name = "key " + p.name + "/" + k.id;
      // Only the variable's name: never its value, not even its length.
      out.push_back(key_set(k) ? passed(name, "$" + k.env + " is set", data)
                               : failed(name, "$" + k.env + " is not set", data));
    }
  }
  return out;
}

// --- the store, the disk, the logs -----------------------------------------

// PRAGMA integrity_check: "ok", or the first problems.
DoctorCheck integrity(SQLite::Database& db) {
  try {
    SQLite::Statement check(db, "PRAGMA integrity_check(" + std::to_string(kIntegrityRows) + ")");
    std::vector<std::string> rows;
    while (check.executeStep()) rows.push_back(check.getColumn(0).getString());
    if (rows.size() == 1 && rows[0] == "ok") return passed("store integrity", "PRAGMA integrity_check: ok");
    // One problem a line ("Page 6: free space corruption"), for a one-line detail.
    std::vector<std::string> problems;
    for (const auto& row : rows) {
      size_t start = 0;
      while (start <= row.size()) {
        size_t end = row.find('\n', start);
        std::string line = row.substr(start, end == std::string::npos ? std::string::npos : end - start);
        if (!line.empty() && line.rfind("*** in database", 0) != 0) problems.push_back(line);
        if (end == std::string::npos) break;
        start = end + 1;
      }
    }
    if (problems.empty()) problems.push_back("no answer");
    std::string detail;
    for (size_t i = 0; i < problems.size() && i < 3; ++i) detail += (i ? "; " : "") + problems[i];
    if (problems.size() > 3) detail += "; … (" + std::to_string(problems.size()) + " problems)";
    return failed("store integrity", "PRAGMA integrity_check: " + clip_text(detail, 400), {{"problems", problems}});
  } catch (const std::exception& e) {
    return failed("store integrity", std::string("PRAGMA integrity_check failed: ") + clip_text(e.what(), 300));
  }
}

std::vector<DoctorCheck> check_store(const std::string& db) {
  std::vector<DoctorCheck> out;
  std::error_code ec;
  if (!fs::exists(db, ec)) {
    out.push_back(passed("store", "no run yet: no store at " + db + " (the first run creates it)", {{"path", db}}));
    return out;
  }
  nlohmann::json data = {{"path", db}};
  std::unique_ptr<Store> store;
  bool integrity_readable = true;  // a raw read is safe (not a store with several names)
  try {
    store = std::make_unique<Store>(db, Store::Mode::read_only);
    out.push_back(passed("store", db + " opens", data));
    out.push_back(passed("store schema", "v" + std::to_string(Store::kSchemaVersion) + " (current)",
                         {{"version", Store::kSchemaVersion}}));
  } catch (const Error& e) {
    const auto& d = e.details();
    if (e.code() == codes::STORE_SCHEMA_TOO_NEW) {
      out.push_back(passed("store", db + " opens", data));
      out.push_back(failed("store schema", describe(e), {{"expected", Store::kSchemaVersion}}));
    } else if (e.code() == codes::STORE_OPEN_FAILED && d.contains("found") && d["found"].is_number() &&
               d["found"].get<int>() > 0) {
      // Older: the next run migrates it forward, as every run does.
      int found = d["found"].get<int>();
      out.push_back(passed("store", db + " opens", data));
      DoctorCheck schema = passed("store schema",
                                  "v" + std::to_string(found) + ", older than this build's v" +
                                      std::to_string(Store::kSchemaVersion) + ": the next run migrates it",
                                  {{"version", found}, {"expected", Store::kSchemaVersion}});
      schema.warning = true;
      out.push_back(std::move(schema));
    } else {
      out.push_back(failed("store", describe(e), data));
      integrity_readable = !d.contains("links");
    }
  }
  if (store) {
    out.push_back(integrity(store->db()));
  } else if (integrity_readable) {
    // Whatever keeps it from opening as a store, SQLite can still say whether the file is sound.
    try {
      SQLite::Database raw(db, SQLite::OPEN_READONLY, 5000);
      out.push_back(integrity(raw));
    } catch (const std::exception& e) {
      out.push_back(failed("store integrity", std::string("cannot open for the check: ") + clip_text(e.what(), 300)));
    }
  } else {
    out.push_back(failed("store integrity", "not checked: the store has several names (hard links)"));
  }
  return out;
}

DoctorCheck check_disk(const std::string& db, const DoctorOptions& o) {
  fs::path dir = existing_dir(fs::path(db).parent_path());
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) {
    return failed("disk", "cannot read the free space of " + dir.string() + ": " + std::strerror(errno));
  }
  const uint64_t free = static_cast<uint64_t>(st.f_bavail) * static_cast<uint64_t>(st.f_frsize);
  nlohmann::json data = {{"path", dir.string()}, {"free_bytes", free}};
  std::string detail = human_bytes(free) + " free in " + dir.string();
  if (free < o.min_free_bytes) {
    return failed("disk", detail + ": under " + human_bytes(o.min_free_bytes) + ", a run may fail to commit", data);
  }
  DoctorCheck c = passed("disk", detail, data);
  if (free < o.warn_free_bytes) {
    c.warning = true;
    c.detail += ": under " + human_bytes(o.warn_free_bytes);
  }
  return c;
}

// Creates and removes a file in `dir`: the honest test (access() says yes to
// root on a directory it still cannot write, e.g. on a read-only mount).
bool can_create_in(const fs::path& dir, std::string& why) {
  std::string tmpl = (dir / ".shepherd-doctor-XXXXXX").string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    why = std::strerror(errno);
    return false;
  }
  ::close(fd);
  ::unlink(tmpl.c_str());
  return true;
}

DoctorCheck check_logs(const std::string& db) {
  fs::path logs = fs::path(db).parent_path() / "logs";
  std::error_code ec;
  std::string why;
  nlohmann::json data = {{"path", logs.string()}};
  if (fs::exists(logs, ec)) {
    if (!fs::is_directory(logs, ec)) return failed("logs", logs.string() + " exists and is not a directory", data);
    if (!can_create_in(logs, why)) return failed("logs", logs.string() + " is not writable: " + why, data);
    return passed("logs", logs.string() + " is writable", data);
  }
  fs::path parent = existing_dir(logs.parent_path());
  if (!can_create_in(parent, why)) {
    return failed("logs", logs.string() + " does not exist and " + parent.string() + " is not writable: " + why, data);
  }
  return passed("logs", logs.string() + " does not exist yet; the first run creates it (" + parent.string() +
                            " is writable)",
                data);
}

// --- the probe -------------------------------------------------------------

struct ProbeSlot {
  const ProviderSpec* provider;
  const KeySpec* key;
  std::string model;
  std::string name() const { return "probe " + provider->name + "/" + key->id + "/" + model; }
};

// The suite's policies, or the packaged ones when the suite's do not load
// (that failure is a check of its own).
std::unique_ptr<PolicySet> classifier(lua_State* L, const Suite& suite, std::string& note) {
  try {
    return std::make_unique<PolicySet>(L, PolicySources::for_suite(suite), suite.retry, suite.maintain);
  } catch (const Error&) {
    note = " (packaged classify: the suite's policies do not load)";
    return std::make_unique<PolicySet>(L, packaged_policies(), suite.retry, suite.maintain);
  }
}

std::string probe_detail(const HttpResponse& r, const ParsedResponse& parsed, const std::string& cls) {
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.0f ms", r.elapsed_ms);
  std::string head = r.transport == Transport::none
                         ? "HTTP " + std::to_string(r.status)
                         : "no answer (" + std::string(to_string(r.transport)) +
                               (r.transport_detail.empty() || r.transport_detail == to_string(r.transport)
                                    ? ""
                                    : ": " + clip_text(r.transport_detail, 200)) +
                               ")";
  std::string out = head + ", " + (cls.empty() ? "unclassified" : cls) + ", " + ms;
  if (!parsed.model.empty()) out += ", answered by " + parsed.model;
  if (!parsed.error_message.empty() || !parsed.error_code.empty()) {
    out += ": " + clip_text(parsed.error_code.empty() ? parsed.error_message
                                                      : parsed.error_code + (parsed.error_message.empty()
                                                                                 ? std::string()
                                                                                 : " " + parsed.error_message),
                            300);
  }
  return redacted(out);
}

std::vector<DoctorCheck> probe(const Suite& suite, const DoctorOptions& o) {
  std::vector<DoctorCheck> out;
  std::vector<ProbeSlot> slots;
  std::vector<std::string> secrets;
  for (const auto& p : suite.providers) {
    for (const auto& k : p.keys) {
      for (const auto& m : suite.models) {
        if (std::find(p.models.begin(), p.models.end(), m) == p.models.end()) continue;
        slots.push_back(ProbeSlot{&p, &k, m});
      }
      if (key_set(k)) secrets.push_back(std::getenv(k.env.c_str()));
    }
  }
  // From here on no key's value reaches what the checks say.
  Redactor::install(secrets);

  std::vector<HttpRequest> batch;
  std::vector<size_t> sent;  // slot index per request id
  std::vector<std::optional<DoctorCheck>> result(slots.size());
  nlohmann::json ping = {{"max_tokens", 1}, {"messages", {{{"role", "user"}, {"content", kPingPrompt}}}}};
  const RequestBody body = make_request_body(ping);
  for (size_t i = 0; i < slots.size(); ++i) {
    const ProbeSlot& s = slots[i];
    const ProviderSpec& p = *s.provider;
    nlohmann::json data = {{"provider", p.name}, {"key", s.key->id}, {"model", s.model}};
    if (!key_set(*s.key)) {
      result[i] = failed(s.name(), "not probed: $" + s.key->env + " is not set", data);
      continue;
    }
    KeySpec key = *s.key;
    key.value = std::getenv(key.env.c_str());
    HttpRequest r;
    r.id = batch.size();
    try {
      r.url = p.url_for(s.model);
    } catch (const std::exception&) {
      result[i] = failed(s.name(), "not probed: no deployment for " + s.model, data);
      continue;
    }
    r.body = compose_request(body, s.model, p.stream, p.stream_usage);
    r.headers.push_back(p.auth_header(key));
    r.headers.emplace_back("Content-Type: application/json");
    r.headers.insert(r.headers.end(), p.headers.begin(), p.headers.end());
    r.connect_timeout_ms = std::min(p.timeouts.connect_ms, o.probe_timeout_ms);
    r.first_byte_timeout_ms = p.timeouts.first_byte_ms;
    r.stall_timeout_ms = p.timeouts.stall_ms;
    r.total_timeout_ms = std::min(p.timeouts.total_ms, o.probe_timeout_ms);
    r.max_response_bytes = p.stream && p.max_response_bytes <= SIZE_MAX / kStreamWireFactor
                               ? p.max_response_bytes * kStreamWireFactor
                               : p.max_response_bytes;
    batch.push_back(std::move(r));
    sent.push_back(i);
  }

  std::vector<HttpResponse> answers;
  if (!batch.empty()) {
    std::mutex mutex;
    std::condition_variable arrived;
    const size_t expected = batch.size();
    try {
      HttpClient client(HttpClientOptions{}, [&](std::vector<HttpResponse>&& done) {
        std::lock_guard lock(mutex);
        for (auto& r : done) answers.push_back(std::move(r));
        arrived.notify_all();
      });
      client.submit(std::move(batch));
      bool cancelled = false;
      std::unique_lock lock(mutex);
      while (answers.size() < expected) {
        arrived.wait_for(lock, std::chrono::milliseconds(100));
        if (!cancelled && o.stopping && o.stopping()) {
          cancelled = true;
          lock.unlock();
          client.cancel_all();  // each is delivered as cancelled
          lock.lock();
        }
      }
    } catch (const Error& e) {
      for (size_t i : sent) {
        result[i] = failed(slots[i].name(), "not probed: " + describe(e));
      }
      answers.clear();
    }
  }

  if (!answers.empty()) {
    LuaState L;
    register_shepherd_api(L);
    std::string note;
    std::unique_ptr<PolicySet> policies = classifier(L, suite, note);
    const std::string role = suite.model_is_dimension ? "dimension" : "resource";
    for (auto& r : answers) {
      const size_t i = sent.at(static_cast<size_t>(r.id));
      const ProbeSlot& s = slots[i];
      if (r.transport == Transport::cancelled) {
        result[i] = failed(s.name(), "not answered: cancelled (SIGINT/SIGTERM)",
                           {{"provider", s.provider->name}, {"key", s.key->id}, {"model", s.model}});
        continue;
      }
      std::string stream_error;
      ParsedResponse parsed = read_response(r, s.provider->max_response_bytes, stream_error);
      OutcomeView view = outcome_view(r, parsed, s.model, role, nullptr);
      std::string cls;
      LuaFailure failure;
      std::string detail;
      if (!policies->classify(view, cls, failure)) {
        cls.clear();
        detail = "; classify failed: " + failure.describe();
      }
      nlohmann::json data = {{"provider", s.provider->name},
                             {"key", s.key->id},
                             {"model", s.model},
                             {"status", r.status},
                             {"class", cls.empty() ? nlohmann::json() : nlohmann::json(cls)},
                             {"latency_ms", r.elapsed_ms},
                             {"model_answered", parsed.model.empty() ? nlohmann::json() : nlohmann::json(parsed.model)}};
      if (r.transport != Transport::none) data["transport"] = to_string(r.transport);
      if (!parsed.error_code.empty() || !parsed.error_message.empty()) {
        data["error"] = {{"code", redacted(parsed.error_code)},
                         {"message", redacted(clip_text(parsed.error_message, 300))}};
      }
      result[i] = DoctorCheck{s.name(), cls == "ok", probe_detail(r, parsed, cls) + redacted(detail) + note, false,
                              std::move(data)};
    }
  }
  for (size_t i = 0; i < slots.size(); ++i) {
    out.push_back(result[i] ? std::move(*result[i]) : failed(slots[i].name(), "no answer delivered"));
  }
  return out;
}

std::vector<DoctorCheck> store_disk_logs(const std::string& db, const DoctorOptions& o) {
  std::vector<DoctorCheck> out = check_store(db);
  out.push_back(check_disk(db, o));
  out.push_back(check_logs(db));
  return out;
}

}  // namespace

nlohmann::json DoctorCheck::to_json() const {
  nlohmann::json j = {{"name", name}, {"ok", ok}, {"detail", detail}};
  if (warning) j["warning"] = true;
  if (!data.is_null()) j["data"] = data;
  return j;
}

std::vector<DoctorCheck> run_doctor(const Suite& suite, const DoctorOptions& options) {
  std::vector<DoctorCheck> out;
  auto add = [&](std::vector<DoctorCheck> more) {
    for (auto& c : more) out.push_back(std::move(c));
  };
  out.push_back(check_suite(suite));
  add(check_policies(suite));
  add(check_keys(suite));
  add(store_disk_logs(db_path_for(suite, options.db_path), options));
  if (options.probe) add(probe(suite, options));
  return out;
}

DoctorReport doctor_suite(const std::string& suite_path, const DoctorOptions& options) {
  DoctorReport report;
  try {
    // Key values are read by the checks, one by one: a missing one is a
    // check that fails, not a suite that does not load.
    Suite suite = load_suite(suite_path, SuiteLoadOptions{false});
    report.suite = suite.name;
    report.db = db_path_for(suite, options.db_path);
    report.checks = run_doctor(suite, options);
  } catch (const Error& e) {
    report.suite = suite_path;
    nlohmann::json data = {{"code", e.code()}};
    for (const char* f : {"file", "line", "field"}) {
      if (e.details().contains(f)) data[f] = e.details()[f];
    }
    report.checks.push_back(failed("suite", describe(e), data));
    // Without the suite its store is known only from --db.
    if (!options.db_path.empty()) {
      report.db = fs::absolute(options.db_path).lexically_normal().string();
      for (auto& c : store_disk_logs(report.db, options)) report.checks.push_back(std::move(c));
    }
  }
  return report;
}

}  // namespace shepherd
