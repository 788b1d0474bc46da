#include "lua/api_workflow.h"

#include <signal.h>

#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/files.h"
#include "core/process.h"
#include "core/text.h"
#include "lua/lua_json.h"
#include "workflow/doctor.h"
#include "workflow/suite_view.h"

namespace shepherd {

namespace fs = std::filesystem;

namespace {

constexpr const char* kViewMeta = "shepherd.suite";
char kStoppingKey;  // registry: true once SIGINT or SIGTERM arrived

struct ViewBox {
  std::unique_ptr<SuiteView> view;
};

SuiteView& check_view(lua_State* L, const char* fname) {
  auto* box = static_cast<ViewBox*>(luaL_checkudata(L, 1, kViewMeta));
  if (!box->view) luaL_error(L, "bad self to '%s' (a closed suite)", fname);
  return *box->view;
}

void set_stopping(lua_State* L) {
  lua_pushlightuserdata(L, &kStoppingKey);
  lua_pushboolean(L, 1);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

bool stopping(lua_State* L) {
  lua_pushlightuserdata(L, &kStoppingKey);
  lua_rawget(L, LUA_REGISTRYINDEX);
  bool seen = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (seen) return true;
  // A signal pending since the last look is taken now.
  sigset_t signals = termination_signals();
  timespec zero{0, 0};
  if (sigtimedwait(&signals, nullptr, &zero) > 0) {
    set_stopping(L);
    return true;
  }
  return false;
}

// The options table at `index` as JSON (nil: an empty object). Misuse raises.
nlohmann::json options_at(lua_State* L, int index, const char* fname) {
  if (lua_isnoneornil(L, index)) return nlohmann::json::object();
  if (!lua_istable(L, index)) {
    luaL_error(L, "bad argument #1 to '%s' (table expected, got %s)", fname, luaL_typename(L, index));
  }
  nlohmann::json out;
  std::string error;
  if (!try_to_json(L, index, out, error, "options") || !out.is_object()) {
    if (out.is_array() && out.empty()) return nlohmann::json::object();
    lua_pushfstring(L, "bad argument #1 to '%s' (%s)", fname, error.empty() ? "a table of options" : error.c_str());
    error = std::string();
    lua_error(L);
  }
  return out;
}

std::vector<std::string> string_list(const nlohmann::json& v, const char* what) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    size_t start = 0;
    while (start <= s.size()) {
      size_t at = s.find(',', start);
      std::string part = s.substr(start, at == std::string::npos ? std::string::npos : at - start);
      if (!part.empty()) out.push_back(part);
      if (at == std::string::npos) break;
      start = at + 1;
    }
    return out;
  }
  if (!v.is_array()) throw Error(codes::USAGE, std::string(what) + " must be a list of strings", Stage::cli);
  for (const auto& x : v) {
    if (!x.is_string()) throw Error(codes::USAGE, std::string(what) + " must be a list of strings", Stage::cli);
    out.push_back(x.get<std::string>());
  }
  return out;
}

// Runs `body` (which pushes its results and returns their count). Error
// USAGE is misuse and raises; any other Error returns nil, code, message.
template <class F>
int guarded(lua_State* L, const char* fname, F&& body) {
  std::string raise;
  try {
    return body();
  } catch (const Error& e) {
    if (e.code() != codes::USAGE) {
      lua_pushnil(L);
      lua_pushstring(L, e.code().c_str());
      lua_pushstring(L, e.what());
      return 3;
    }
    raise = std::string("bad argument #1 to '") + fname + "' (" + e.what() + ")";
  } catch (const std::exception& e) {
    lua_pushnil(L);
    lua_pushstring(L, codes::INTERNAL);
    lua_pushstring(L, e.what());
    return 3;
  }
  lua_pushlstring(L, raise.data(), raise.size());
  raise = std::string();  // freed before lua_error leaves this frame
  return lua_error(L);
}

void push_or_raise(lua_State* L, const nlohmann::json& value) {
  std::string error;
  if (!try_push_json(L, value, error)) throw Error(codes::INTERNAL, error, Stage::execution);
}

int suite_open(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  nlohmann::json opts = options_at(L, 2, "suite");
  return guarded(L, "suite", [&] {
    auto given = opts.find("db");
    if (given != opts.end() && !given->is_string()) throw Error(codes::USAGE, "db must be a path", Stage::cli);
    std::string db = given == opts.end() ? std::string() : given->get<std::string>();
    auto view = std::make_unique<SuiteView>(path, db);
    auto* box = static_cast<ViewBox*>(lua_newuserdata(L, sizeof(ViewBox)));
    new (box) ViewBox{std::move(view)};
    luaL_getmetatable(L, kViewMeta);
    lua_setmetatable(L, -2);
    return 1;
  });
}

int view_gc(lua_State* L) {
  auto* box = static_cast<ViewBox*>(luaL_checkudata(L, 1, kViewMeta));
  box->~ViewBox();
  return 0;
}

int view_status(lua_State* L) {
  SuiteView& view = check_view(L, "status");
  nlohmann::json opts = options_at(L, 2, "status");
  return guarded(L, "status", [&] {
    auto s = view.status(string_list(opts.value("by", nlohmann::json()), "by"), opts.value("where", nlohmann::json()));
    push_or_raise(L, s["groups"]);
    return 1;
  });
}

int tasks_next(lua_State* L) {
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2)) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(2));
  lua_rawgeti(L, lua_upvalueindex(1), static_cast<int>(i));
  return 1;
}

int view_tasks(lua_State* L) {
  SuiteView& view = check_view(L, "tasks");
  nlohmann::json opts = options_at(L, 2, "tasks");
  return guarded(L, "tasks", [&] {
    // One state, or a list of them ("pending", "done", "failed", "stale").
    std::vector<std::string> states;
    if (auto it = opts.find("state"); it != opts.end() && !it->is_null()) {
      states = it->is_string() ? std::vector<std::string>{it->get<std::string>()} : string_list(*it, "state");
    }
    int64_t limit = -1;
    if (auto it = opts.find("limit"); it != opts.end()) {
      if (!it->is_number() || it->get<double>() < 0) throw Error(codes::USAGE, "limit must be a number >= 0", Stage::cli);
      limit = static_cast<int64_t>(it->get<double>());
    }
    lua_newtable(L);
    int list = lua_gettop(L);
    int n = 0;
    view.tasks(states, opts.value("where", nlohmann::json()), limit, [&](const nlohmann::json& row) {
      push_or_raise(L, row);
      lua_rawseti(L, list, ++n);
      return true;
    });
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, tasks_next, 2);
    return 1;
  });
}

int view_attempts(lua_State* L) {
  SuiteView& view = check_view(L, "attempts");
  const char* id = luaL_checkstring(L, 2);
  return guarded(L, "attempts", [&] {
    push_or_raise(L, view.attempts(id));
    return 1;
  });
}

int view_events(lua_State* L) {
  SuiteView& view = check_view(L, "events");
  nlohmann::json opts = options_at(L, 2, "events");
  return guarded(L, "events", [&] {
    double since = opts.value("since", 0.0);
    push_or_raise(L, view.events(opts.value("kind", std::string()), since));
    return 1;
  });
}

int view_run(lua_State* L) {
  SuiteView& view = check_view(L, "run");
  nlohmann::json opts = options_at(L, 2, "run");
  return guarded(L, "run", [&] {
    SliceRun slice;
    slice.where = opts.value("where", nlohmann::json());
    slice.tasks = string_list(opts.value("tasks", nlohmann::json()), "tasks");
    slice.retry_failed = opts.value("retry_failed", false);
    slice.forget_exhausted = opts.value("forget_exhausted", false);
    if (auto it = opts.find("retry_classes"); it != opts.end()) {
      // An empty list names nothing to retry: misuse, as `--retry-class ''` is.
      bool empty = it->is_null() || (it->is_object() && it->empty());
      if (!empty) slice.retry_classes = string_list(*it, "retry_classes");
      if (slice.retry_classes.empty()) {
        throw Error(codes::USAGE, "retry_classes must name at least one class", Stage::cli);
      }
      if (slice.retry_failed) {
        throw Error(codes::USAGE, "retry_failed (every class) and retry_classes (only these) exclude each other",
                    Stage::cli);
      }
    }
    slice.progress = opts.value("progress", false);
    RunReport r = view.run(slice);
    if (r.interrupted) set_stopping(L);
    const auto& c = r.counters;
    uint64_t pending = c.total - c.done - c.failed;
    int exit = r.interrupted || r.models_exhausted || pending > 0 ? 3 : c.failed > 0 ? 4 : 0;
    push_or_raise(L, {{"done", c.done},
                      {"failed", c.failed},
                      {"pending", pending},
                      {"total", c.total},
                      {"finished", c.done_now},
                      {"seconds", r.seconds},
                      {"interrupted", r.interrupted},
                      {"models_exhausted", r.models_exhausted},
                      {"run", r.run_id},
                      {"exit", exit}});
    return 1;
  });
}

int view_reset(lua_State* L) {
  SuiteView& view = check_view(L, "reset");
  nlohmann::json opts = options_at(L, 2, "reset");
  return guarded(L, "reset", [&] {
    std::vector<std::string> classes = string_list(opts.value("class", nlohmann::json()), "class");
    int n = view.reset(opts.value("where", nlohmann::json()), opts.value("state", std::string("failed")), classes);
    lua_pushinteger(L, n);
    return 1;
  });
}

int view_select_retest(lua_State* L) {
  SuiteView& view = check_view(L, "select_retest");
  nlohmann::json opts = options_at(L, 2, "select_retest");
  return guarded(L, "select_retest", [&] {
    push_or_raise(L, view.select_retest(opts, string_list(opts.value("by", nlohmann::json()), "by"),
                                        opts.value("where", nlohmann::json())));
    return 1;
  });
}

int view_export(lua_State* L) {
  SuiteView& view = check_view(L, "export");
  nlohmann::json opts = options_at(L, 2, "export");
  return guarded(L, "export", [&] {
    std::string out = opts.value("out", std::string());
    if (out.empty()) throw Error(codes::USAGE, "out (a file path) is required", Stage::cli);
    view.export_to(opts.value("format", std::string("jsonl")), out, opts.value("where", nlohmann::json()),
                   opts.value("transcripts", false));
    lua_pushstring(L, out.c_str());
    return 1;
  });
}

int view_would_retry(lua_State* L) {
  SuiteView& view = check_view(L, "would_retry");
  const char* cls = luaL_checkstring(L, 2);
  return guarded(L, "would_retry", [&] {
    lua_pushboolean(L, view.would_retry(cls));
    return 1;
  });
}

int view_mark_maintained(lua_State* L) {
  SuiteView& view = check_view(L, "mark_maintained");
  luaL_checktype(L, 2, LUA_TTABLE);
  nlohmann::json group = options_at(L, 2, "mark_maintained");
  return guarded(L, "mark_maintained", [&] {
    view.mark_maintained(group);
    lua_pushboolean(L, 1);
    return 1;
  });
}

int view_errors(lua_State* L) {
  SuiteView& view = check_view(L, "errors");
  nlohmann::json opts = options_at(L, 2, "errors");
  return guarded(L, "errors", [&] {
    auto window = opts.find("window_s");
    if (window != opts.end() && !window->is_number()) throw Error(codes::USAGE, "window_s must be a number", Stage::cli);
    push_or_raise(L, view.errors(window == opts.end() ? 3600.0 : window->get<double>()));
    return 1;
  });
}

int view_check_alerts(lua_State* L) {
  SuiteView& view = check_view(L, "check_alerts");
  return guarded(L, "check_alerts", [&] {
    push_or_raise(L, view.check_alerts());
    return 1;
  });
}

int view_check_where(lua_State* L) {
  SuiteView& view = check_view(L, "check_where");
  nlohmann::json where = options_at(L, 2, "check_where");
  return guarded(L, "check_where", [&] {
    view.check_where(where);
    lua_pushboolean(L, 1);
    return 1;
  });
}

int view_info(lua_State* L) {
  SuiteView& view = check_view(L, "info");
  return guarded(L, "info", [&] {
    push_or_raise(L, view.info());
    return 1;
  });
}

// The options of s:doctor and shepherd.doctor_suite: {probe = bool[, db = PATH]}.
DoctorOptions doctor_options(lua_State* L, const nlohmann::json& opts) {
  DoctorOptions o;
  if (auto it = opts.find("probe"); it != opts.end()) {
    if (!it->is_boolean()) throw Error(codes::USAGE, "probe must be a boolean", Stage::cli);
    o.probe = it->get<bool>();
  }
  if (auto it = opts.find("db"); it != opts.end()) {
    if (!it->is_string()) throw Error(codes::USAGE, "db must be a path", Stage::cli);
    o.db_path = it->get<std::string>();
  }
  // SIGINT/SIGTERM cancel the probes in flight (and stopping() stays true).
  o.stopping = [L] { return stopping(L); };
  return o;
}

nlohmann::json checks_json(const std::vector<DoctorCheck>& checks) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : checks) out.push_back(c.to_json());
  return out;
}

// s:doctor{probe = bool} -> { {name, ok, detail, warning, data}, … }
int view_doctor(lua_State* L) {
  SuiteView& view = check_view(L, "doctor");
  nlohmann::json opts = options_at(L, 2, "doctor");
  return guarded(L, "doctor", [&] {
    if (opts.contains("db")) throw Error(codes::USAGE, "db is the handle's: give it to shepherd.suite", Stage::cli);
    DoctorOptions o = doctor_options(L, opts);
    o.db_path = view.db_path();
    push_or_raise(L, checks_json(run_doctor(view.suite(), o)));
    return 1;
  });
}

// shepherd.doctor_suite(path, {db, probe}) -> checks, {suite, db}: works on a
// suite that does not load too (its failure is the "suite" check).
int doctor_suite_fn(lua_State* L) {
  const char* path = luaL_checkstring(L, 1);
  nlohmann::json opts = options_at(L, 2, "doctor_suite");
  return guarded(L, "doctor_suite", [&] {
    DoctorReport report = doctor_suite(path, doctor_options(L, opts));
    push_or_raise(L, checks_json(report.checks));
    push_or_raise(L, {{"suite", report.suite}, {"db", report.db}});
    return 2;
  });
}

int view_index_name(lua_State* L) {
  SuiteView& view = check_view(L, "name");
  lua_pushstring(L, view.suite().name.c_str());
  return 1;
}

// shepherd.report(path_template, tbl): {suite} and {ts} substituted; written
// to a temporary file, synced and renamed, so a report is whole or absent.
int report(lua_State* L) {
  std::string tpl = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  nlohmann::json body;
  std::string error;
  if (!try_to_json(L, 2, body, error, "report")) {
    lua_pushfstring(L, "bad argument #2 to 'report' (%s)", error.c_str());
    error = std::string();
    return lua_error(L);
  }
  return guarded(L, "report", [&] {
    char ts[32];
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(ts, sizeof ts, "%Y%m%d-%H%M%S", &tm);
    std::string path = tpl;
    const bool stamped = path.find("{ts}") != std::string::npos;
    for (auto [key, value] : {std::pair<std::string, std::string>{"{ts}", ts},
                              {"{suite}", body.is_object() ? body.value("suite", std::string("suite")) : "suite"}}) {
      for (size_t at; (at = path.find(key)) != std::string::npos;) path.replace(at, key.size(), value);
    }
    // Two reports in one second must not overwrite each other.
    if (stamped && fs::exists(path)) {
      fs::path base(path);
      std::string stem = base.stem().string(), ext = base.extension().string();
      for (int n = 2; fs::exists(path); ++n) path = (base.parent_path() / (stem + "-" + std::to_string(n) + ext)).string();
    }
    fs::path p(path);
    if (p.has_parent_path()) fs::create_directories(p.parent_path());
    write_file_atomically(path, body.dump(2) + "\n");
    lua_pushstring(L, path.c_str());
    return 1;
  });
}

// shepherd.sleep(ms): true after sleeping, false at once when asked to stop.
int sleep_ms(lua_State* L) {
  double ms = luaL_checknumber(L, 1);
  if (!(ms >= 0) || !std::isfinite(ms)) return luaL_argerror(L, 1, "milliseconds >= 0 expected");
  if (stopping(L)) {
    lua_pushboolean(L, 0);
    return 1;
  }
  sigset_t signals = termination_signals();
  timespec wait{static_cast<time_t>(ms / 1000), static_cast<long>(std::fmod(ms, 1000.0) * 1e6)};
  for (;;) {
    int sig = sigtimedwait(&signals, nullptr, &wait);
    if (sig > 0) {
      set_stopping(L);
      lua_pushboolean(L, 0);
      return 1;
    }
    if (errno != EINTR) break;  // EAGAIN: the time is up
  }
  lua_pushboolean(L, 1);
  return 1;
}

int stopping_fn(lua_State* L) {
  lua_pushboolean(L, stopping(L));
  return 1;
}

}  // namespace

void register_workflow_api(lua_State* L, const std::vector<std::string>& args, bool json_output) {
  luaL_newmetatable(L, kViewMeta);
  static const luaL_Reg methods[] = {{"status", view_status},   {"tasks", view_tasks},
                                     {"attempts", view_attempts}, {"events", view_events},
                                     {"run", view_run},         {"reset", view_reset},
                                     {"select_retest", view_select_retest}, {"export", view_export},
                                     {"would_retry", view_would_retry},
                                     {"mark_maintained", view_mark_maintained},
                                     {"info", view_info},
                                     {"check_where", view_check_where},
                                     {"errors", view_errors},
                                     {"check_alerts", view_check_alerts},
                                     {"doctor", view_doctor},
                                     {"name", view_index_name},  {nullptr, nullptr}};
  lua_newtable(L);
  luaL_register(L, nullptr, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, view_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "shepherd.suite");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);

  lua_getglobal(L, "shepherd");
  lua_createtable(L, static_cast<int>(args.size()), 0);
  for (size_t i = 0; i < args.size(); ++i) {
    lua_pushlstring(L, args[i].data(), args[i].size());
    lua_rawseti(L, -2, static_cast<int>(i) + 1);
  }
  lua_setfield(L, -2, "args");
  lua_pushboolean(L, json_output);
  lua_setfield(L, -2, "json_output");
  // The running binary, for the command lines a workflow writes (retest scripts).
  std::error_code ec;
  std::string self = fs::read_symlink("/proc/self/exe", ec).string();
  lua_pushstring(L, ec ? "shepherd" : self.c_str());
  lua_setfield(L, -2, "executable");
  static const luaL_Reg fns[] = {{"suite", suite_open}, {"report", report}, {"sleep", sleep_ms},
                                 {"stopping", stopping_fn}, {"doctor_suite", doctor_suite_fn},
                                 {nullptr, nullptr}};
  luaL_register(L, nullptr, fns);
  lua_pop(L, 1);
}

}  // namespace shepherd
