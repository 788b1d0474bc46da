// Inputs, for suites (they resolve against shepherd.suite_dir):
// shepherd.files(glob [, {root = DIR}]) -> { {path, name, stem, ext, size}, … } sorted by path;
//   as a matrix dimension a cell's task id comes from `path` alone
// shepherd.jsonl(path [, {id = "field"}]) -> a descriptor the host expands into records
// shepherd.csv(path [, {id = "field"}])   -> the same for a CSV file with a header row
// shepherd.read(path) -> the file's text; raises when it cannot be read
//
// JSONL and CSV records are read by the host once, when the suite loads, not
// by every worker's Lua state: a million records would cost each state
// seconds and hundreds of megabytes. The matrix gets a small descriptor
// (metatable field __shepherd_input); request(cell) still sees each record.
#include <filesystem>

#include "core/error.h"
#include "core/resources.h"
#include "inputs/file_glob.h"
#include "lua/api.h"

namespace fs = std::filesystem;

namespace shepherd {

namespace {

// Empty when the state is not a suite's.
std::string suite_dir(lua_State* L) {
  lua_getglobal(L, "shepherd");
  std::string dir;
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "suite_dir");
    if (lua_type(L, -1) == LUA_TSTRING) dir = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return dir;
}

fs::path resolve(const std::string& dir, const std::string& path) {
  fs::path p(path);
  return (p.is_absolute() ? p : fs::path(dir) / p).lexically_normal();
}

// opts[name] as a string, or "" when opts or the field is absent.
std::string option(lua_State* L, int idx, const char* name, const char* fn) {
  if (lua_isnoneornil(L, idx)) return "";
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING || std::string(lua_tostring(L, -1)) != name) {
      lua_pushfstring(L, "bad argument #2 to '%s' (unknown option '%s'; known: %s)", fn,
                      lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?", name);
      return lua_error(L), "";
    }
  }
  lua_getfield(L, idx, name);
  std::string out;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0) {
      lua_pushfstring(L, "bad argument #2 to '%s' (%s must be a non-empty string)", fn, name);
      return lua_error(L), "";
    }
    out = lua_tostring(L, -1);
  }
  lua_pop(L, 1);
  return out;
}

std::string need_suite_dir(lua_State* L, const char* fn) {
  std::string dir = suite_dir(L);
  if (dir.empty()) luaL_error(L, "%s is for suites: this state has no suite directory", fn);
  return dir;
}

void set_string(lua_State* L, const char* name, const std::string& value) {
  lua_pushlstring(L, value.data(), value.size());
  lua_setfield(L, -2, name);
}

int inputs_files(lua_State* L) {
  const char* fn = "shepherd.files";
  std::string glob = luaL_checkstring(L, 1);
  std::string root_opt = option(L, 2, "root", fn);
  std::string dir = need_suite_dir(L, fn);
  std::string error;
  {
    std::vector<FileRecord> files;
    fs::path root = root_opt.empty() ? fs::path(dir) : resolve(dir, root_opt);
    try {
      files = find_files(root.string(), glob);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (error.empty()) {
      lua_createtable(L, static_cast<int>(files.size()), 0);
      for (size_t i = 0; i < files.size(); ++i) {
        FileRecord& f = files[i];
        // The path is the suite directory's, whatever the root: shepherd.read(file.path) reads it.
        if (!root_opt.empty()) f.path = (root / f.path).lexically_relative(dir).generic_string();
        lua_createtable(L, 0, 5);
        set_string(L, "path", f.path);
        set_string(L, "name", f.name);
        set_string(L, "stem", f.stem);
        set_string(L, "ext", f.ext);
        lua_pushnumber(L, static_cast<double>(f.size));
        lua_setfield(L, -2, "size");
        lua_rawseti(L, -2, static_cast<int>(i) + 1);
      }
      // As a dimension: a file's task id comes from its path, not its size.
      lua_createtable(L, 0, 1);
      lua_pushliteral(L, "path");
      lua_setfield(L, -2, "__shepherd_identity");
      lua_setmetatable(L, -2);
      return 1;
    }
  }
  lua_pushfstring(L, "%s", error.c_str());
  error = std::string();
  return lua_error(L);
}

int push_records_descriptor(lua_State* L, const char* kind, const char* fn) {
  std::string path = luaL_checkstring(L, 1);
  std::string id = option(L, 2, "id", fn);
  std::string dir = need_suite_dir(L, fn);
  std::string file = resolve(dir, path).string();
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) {
    return luaL_error(L, "%s: no such file: %s", fn, file.c_str());
  }
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  set_string(L, "path", file);
  if (!id.empty()) set_string(L, "id", id);
  lua_setfield(L, -2, "__shepherd_input");
  lua_setmetatable(L, -2);
  return 1;
}

int inputs_jsonl(lua_State* L) { return push_records_descriptor(L, "jsonl", "shepherd.jsonl"); }
int inputs_csv(lua_State* L) { return push_records_descriptor(L, "csv", "shepherd.csv"); }

int inputs_read(lua_State* L) {
  const char* fn = "shepherd.read";
  std::string path = luaL_checkstring(L, 1);
  std::string dir = need_suite_dir(L, fn);
  std::string error;
  {
    std::string file = resolve(dir, path).string();
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      error = std::string(fn) + ": no such file: " + path + " (" + file + ")";
    } else {
      try {
        std::string text = read_file(file);
        lua_pushlstring(L, text.data(), text.size());
        return 1;
      } catch (const std::exception& e) {
        error = std::string(fn) + ": cannot read " + file + ": " + e.what();
      }
    }
  }
  lua_pushstring(L, error.c_str());
  error = std::string();
  return lua_error(L);
}

}  // namespace

void register_inputs_api(lua_State* L) {
  static const luaL_Reg fns[] = {{"files", inputs_files},
                                 {"jsonl", inputs_jsonl},
                                 {"csv", inputs_csv},
                                 {"read", inputs_read},
                                 {nullptr, nullptr}};
  luaL_register(L, nullptr, fns);
}

}  // namespace shepherd
