// load_suite on any Lua text. The input is written to suite.lua in a private
// temporary directory and loaded as `shepherd run` would (keys not read from
// the environment). Invariants: the loader returns a suite or throws
// shepherd::Error with a suite code; anything else (another exception, a
// crash, a sanitizer report, a hang) is a finding.
//
// Two things keep this bounded and harmless, neither of which touches the
// loader itself:
//  - Suites are trusted like shell scripts (they get io and os). Inputs that
//    name a way out to the machine or past the limits (os, io, debug, jit,
//    require, load, _G, ...) are skipped, so the fuzzer never writes files,
//    runs commands or turns the time limit's hook off.
//  - The loader gives a suite's top level 10 s and 2 GiB. An input is first
//    run the same way with 250 ms and 256 MiB; one that does not finish within
//    that is skipped (and not kept), so the fuzzer spends its time on loader
//    paths rather than on Lua loops. The loader's own limits are tested in
//    tests/cpp/suite_loader_test.cpp.
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/text.h"
#include "fuzz_check.h"
#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_state.h"
#include "suite/suite.h"

extern "C" {
#include <luajit.h>
}

namespace {

namespace fs = std::filesystem;

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// Whether `text` names, as a whole word anywhere (strings included), one of
// the ways a suite could reach the machine or disable the hook.
bool names_an_escape(std::string_view text) {
  static constexpr std::string_view kWords[] = {
      "os",      "io",       "debug",   "jit",     "ffi",     "require", "package",
      "load",    "loadfile", "dofile",  "loadstring", "module", "_G",    "getfenv",
      "setfenv", "collectgarbage", "newproxy"};
  for (size_t i = 0; i < text.size();) {
    if (!is_word_char(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && is_word_char(text[j])) ++j;
    std::string_view word = text.substr(i, j - i);
    for (std::string_view w : kWords) {
      if (word == w) return true;
    }
    i = j;
  }
  return false;
}

// Runs the text as the loader would, with a small budget: true when it
// finishes (successfully or with an ordinary error) within it.
bool finishes_quickly(const std::string& text, const std::string& path, const std::string& dir) {
  shepherd::LuaState L(size_t{512} << 20);
  shepherd::register_shepherd_api(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, (dir + "/?.lua").c_str());
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  shepherd::LuaFailure failure;
  if (!shepherd::load_chunk(L, text, path, failure)) return true;  // a syntax error: the loader's quick path
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  shepherd::make_interruptible(L, -1);
  bool expired = false;
  bool ok = false;
  {
    shepherd::CallLimit limit(L, std::chrono::milliseconds(250));
    shepherd::MemoryLimit memory(L, size_t{256} << 20);
    ok = shepherd::protected_call(L, 0, 1, failure);
    expired = limit.expired();
  }
  if (expired) return false;
  if (!ok && failure.message.find("not enough memory") != std::string::npos) return false;
  return true;
}

struct Workdir {
  fs::path dir;
  fs::path suite;
  Workdir() {
    std::string tmpl = (fs::temp_directory_path() / "shepherd-fuzz-suite-XXXXXX").string();
    FUZZ_CHECK(mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    dir = tmpl;
    suite = dir / "suite.lua";
  }
  ~Workdir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Workdir work;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (names_an_escape(text)) return -1;
  if (!finishes_quickly(text, work.suite.string(), work.dir.string())) return -1;
  {
    std::ofstream out(work.suite, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    FUZZ_CHECK(out.good(), "cannot write %s", work.suite.c_str());
  }
  shepherd::SuiteLoadOptions options;
  options.resolve_keys = false;
  try {
    shepherd::Suite suite = shepherd::load_suite(work.suite.string(), options);
    FUZZ_CHECK(!suite.name.empty() && suite.name.size() <= shepherd::kMaxSuiteNameBytes, "name of %zu bytes",
               suite.name.size());
    FUZZ_CHECK(!suite.providers.empty() && !suite.models.empty(), "a suite without providers or models");
    for (const auto& p : suite.providers) {
      FUZZ_CHECK(p.base_url.size() <= shepherd::kMaxFieldBytes, "base_url of %zu bytes", p.base_url.size());
      FUZZ_CHECK(p.timeouts.connect_ms >= 1 && p.timeouts.total_ms >= 1, "a zero timeout");
      for (const auto& m : p.models) FUZZ_CHECK(!m.empty() && m.size() <= shepherd::kMaxFieldBytes, "a model name");
      (void)p.url_for(p.models.front());
    }
    for (const auto& d : suite.dims) {
      for (const auto& v : d.values) (void)shepherd::safe_dump(v);
    }
  } catch (const shepherd::Error& e) {
    const std::string& code = e.code();
    FUZZ_CHECK(code == "SUITE_SYNTAX" || code == "SUITE_INVALID" || code == "SUITE_NOT_FOUND",
               "unexpected code %s: %s", code.c_str(), e.what());
    (void)shepherd::safe_dump(e.to_json());  // what --json prints
  }
  return 0;
}
