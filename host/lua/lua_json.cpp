#include "lua/lua_json.h"

#include "core/json_limits.h"
#include "core/text.h"

#include <climits>
#include <cmath>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace shepherd {

const char* const kJsonArrayMarker = "shepherd.json.array";

namespace {

// ------------------------------------------------------------ Lua -> JSON

// Lua -> JSON with a depth limit and a budget of JSON text. The path of the
// value being converted is kept as steps and spelled out only on failure:
// building "request.messages[2]" for every value would cost more than the
// conversion itself.
class Converter {
 public:
  Converter(lua_State* L, const char* root, size_t max_bytes) : L_(L), root_(root), max_bytes_(max_bytes) {}

  nlohmann::json convert(int index) {
    index = index < 0 ? lua_gettop(L_) + index + 1 : index;
    switch (lua_type(L_, index)) {
      case LUA_TNIL: spend(kNode); return nullptr;
      case LUA_TBOOLEAN: spend(kNode); return static_cast<bool>(lua_toboolean(L_, index));
      case LUA_TSTRING: {
        size_t len = 0;
        const char* s = lua_tolstring(L_, index, &len);
        spend(kNode + kString + len);
        if (!is_valid_utf8(std::string_view(s, len))) fail("string is not valid UTF-8");
        return std::string(s, len);
      }
      case LUA_TNUMBER: {
        spend(kNode);
        double d = lua_tonumber(L_, index);
        if (!std::isfinite(d)) fail("number is not finite");
        if (d == std::floor(d) && std::fabs(d) < 9007199254740992.0) return static_cast<int64_t>(d);
        return d;
      }
      case LUA_TTABLE: return convert_table(index);
      default: fail(std::string("cannot convert a ") + lua_typename(L_, lua_type(L_, index)) + " to JSON");
    }
  }

 private:
  struct Step {
    std::string_view key;  // a key on the Lua stack while its value converts; empty for an index
    size_t index = 0;      // 1-based array index, 0 for a key
  };

  [[noreturn]] void fail(const std::string& why) {
    std::string path = root_;
    for (const auto& step : steps_) {
      if (step.index > 0) path += "[" + std::to_string(step.index) + "]";
      else path.append(".").append(step.key);
    }
    throw std::runtime_error(path + ": " + why);
  }

  // What the converted value will hold in memory, roughly (libstdc++ sizes):
  // the budget is about memory, and a node costs more than its JSON text.
  static constexpr size_t kNode = sizeof(nlohmann::json);
  static constexpr size_t kString = sizeof(std::string);
  static constexpr size_t kArray = sizeof(nlohmann::json::array_t);
  static constexpr size_t kObject = sizeof(nlohmann::json::object_t);
  static constexpr size_t kMember = 32 + sizeof(std::string) + sizeof(nlohmann::json);  // a map node

  void spend(size_t bytes) {
    bytes_ += bytes;
    if (bytes_ > max_bytes_) {
      fail("larger than " + size_text(max_bytes_) + " as JSON (a huge table, or subtables shared many times over?)");
    }
  }

  bool is_array_marked(int index) {
    if (!lua_getmetatable(L_, index)) return false;
    luaL_getmetatable(L_, kJsonArrayMarker);
    bool marked = lua_rawequal(L_, -1, -2);
    lua_pop(L_, 2);
    return marked;
  }

  // Counts the keys; `sequence`: they are exactly 1..n (n integers in [1, n]).
  size_t count_keys(int index, size_t n, bool& sequence) {
    size_t count = 0;
    bool in_range = true;
    lua_pushnil(L_);
    while (lua_next(L_, index) != 0) {
      ++count;
      if (in_range) {
        if (lua_type(L_, -2) != LUA_TNUMBER) {
          in_range = false;
        } else {
          double k = lua_tonumber(L_, -2);
          in_range = k >= 1 && k <= static_cast<double>(n) && k == std::floor(k);
        }
      }
      lua_pop(L_, 1);
    }
    sequence = count > 0 && in_range && count == n;
    return count;
  }

  nlohmann::json convert_table(int index) {
    if (++depth_ > kMaxLuaToJsonDepth) {
      fail("nested deeper than " + std::to_string(kMaxLuaToJsonDepth) + " levels (a cycle?)");
    }
    // Never luaL_checkstack: it raises, and try_to_json must not.
    if (!lua_checkstack(L_, 4)) fail("Lua stack exhausted");
    size_t n = lua_objlen(L_, index);
    bool sequence = false;
    size_t count = count_keys(index, n, sequence);
    nlohmann::json out;
    if (sequence || (count == 0 && is_array_marked(index))) {
      spend(kNode + kArray);
      out = nlohmann::json::array();
      out.get_ref<nlohmann::json::array_t&>().reserve(n);
      for (size_t i = 1; i <= n; ++i) {
        steps_.push_back({{}, i});
        lua_rawgeti(L_, index, static_cast<int>(i));
        out.push_back(convert(-1));
        lua_pop(L_, 1);
        steps_.pop_back();
      }
    } else {
      spend(kNode + kObject);
      out = nlohmann::json::object();
      auto& members = out.get_ref<nlohmann::json::object_t&>();
      lua_pushnil(L_);
      while (lua_next(L_, index) != 0) {
        if (lua_type(L_, -2) != LUA_TSTRING) {
          lua_pop(L_, 2);
          fail("mixes array items and named fields (JSON objects need string keys)");
        }
        size_t len = 0;
        const char* key = lua_tolstring(L_, -2, &len);
        // Checked before it joins the path: error messages stay valid UTF-8.
        if (!is_valid_utf8(std::string_view(key, len))) fail("a key is not valid UTF-8");
        steps_.push_back({std::string_view(key, len), 0});
        spend(kMember - kNode + len);  // the value counts its own node
        members.emplace(std::string(key, len), convert(-1));
        lua_pop(L_, 1);
        steps_.pop_back();
      }
    }
    --depth_;
    return out;
  }

  static std::string size_text(size_t bytes) {
    if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
    if (bytes >= 1024 && bytes % 1024 == 0) return std::to_string(bytes >> 10) + " KiB";
    return std::to_string(bytes) + " bytes";
  }

  lua_State* L_;
  const char* root_;
  size_t max_bytes_;
  int depth_ = 0;
  size_t bytes_ = 0;
  std::vector<Step> steps_;
};

// ------------------------------------------------------------ JSON -> Lua

// Whether `value` nests no deeper than `levels_left` containers. Recurses at
// most levels_left + 1 frames whatever the value's depth, so it is safe on
// the values it exists to refuse.
bool depth_within(const nlohmann::json& value, int levels_left) {
  if (!value.is_structured()) return true;
  if (levels_left == 0) return false;
  for (const auto& item : value) {
    if (item.is_structured() && !depth_within(item, levels_left - 1)) return false;
  }
  return true;
}

int clamp_size(size_t n) { return n > static_cast<size_t>(INT_MAX) ? INT_MAX : static_cast<int>(n); }

// Recurses once per level: only called once depth_within has bounded that,
// with the Lua stack already grown for every level (two slots each).
void push_value(lua_State* L, const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
    case nlohmann::json::value_t::binary: lua_pushnil(L); return;
    case nlohmann::json::value_t::boolean: lua_pushboolean(L, value.get<bool>()); return;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
    case nlohmann::json::value_t::number_float: lua_pushnumber(L, value.get<double>()); return;
    case nlohmann::json::value_t::string: {
      const auto& s = value.get_ref<const std::string&>();
      lua_pushlstring(L, s.data(), s.size());
      return;
    }
    case nlohmann::json::value_t::array: {
      const auto& items = value.get_ref<const nlohmann::json::array_t&>();
      lua_createtable(L, clamp_size(items.size()), 0);
      int i = 1;
      for (const auto& item : items) {
        push_value(L, item);
        lua_rawseti(L, -2, i++);
      }
      if (items.empty()) {
        luaL_getmetatable(L, kJsonArrayMarker);
        lua_setmetatable(L, -2);
      }
      return;
    }
    case nlohmann::json::value_t::object: {
      const auto& members = value.get_ref<const nlohmann::json::object_t&>();
      lua_createtable(L, 0, clamp_size(members.size()));
      for (const auto& [key, item] : members) {
        lua_pushlstring(L, key.data(), key.size());
        push_value(L, item);
        lua_rawset(L, -3);
      }
      return;
    }
  }
  lua_pushnil(L);
}

}  // namespace

bool try_to_json(lua_State* L, int index, nlohmann::json& out, std::string& error, const char* root,
                 size_t max_bytes) {
  int top = lua_gettop(L);
  try {
    Converter c(L, root, max_bytes);
    out = c.convert(index);
    return true;
  } catch (const std::exception& e) {
    lua_settop(L, top);
    error = e.what();
    return false;
  }
}

nlohmann::json to_json(lua_State* L, int index, const char* what, size_t max_bytes) {
  nlohmann::json out;
  std::string error;
  if (!try_to_json(L, index, out, error, what, max_bytes)) {
    lua_pushlstring(L, error.data(), error.size());
    error = std::string();  // free before lua_error unwinds this frame
    lua_error(L);
  }
  return out;
}

bool try_push_json(lua_State* L, const nlohmann::json& value, std::string& error) {
  if (!depth_within(value, kMaxJsonDepth)) {
    error = "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
    return false;
  }
  // Every slot the deepest value needs (a table and a key per level), now:
  // lua_checkstack reports failure where luaL_checkstack would raise.
  if (!lua_checkstack(L, 2 * kMaxJsonDepth + 4)) {
    error = "Lua stack exhausted";
    return false;
  }
  push_value(L, value);
  return true;
}

void push_json(lua_State* L, const nlohmann::json& value) {
  std::string error;
  if (try_push_json(L, value, error)) return;
  lua_pushlstring(L, error.data(), error.size());
  error = std::string();  // free before lua_error unwinds this frame
  lua_error(L);
}

}  // namespace shepherd
