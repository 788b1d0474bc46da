#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_limits.h"
#include "core/resources.h"
#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"
#include "mock/mock_server.h"
#include "suite/suite.h"

extern "C" {
#include <luajit.h>
}

namespace shepherd::cli {

namespace {

// A scenario is JSON, or a Lua file returning the same shape as a table.
nlohmann::json read_scenario(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) {
    throw Error(codes::SCENARIO_INVALID, "scenario file not found: " + path, Stage::config, {{"file", path}});
  }
  std::string text = read_file(path);
  if (std::filesystem::path(path).extension() != ".lua") {
    // Bounded like every JSON the host reads: a canned body_json nested
    // 100,000 deep would overflow the stack when it is serialised.
    std::string why;
    auto j = parse_json_bounded(text, &why);
    if (j.is_discarded()) {
      throw Error(codes::SCENARIO_INVALID, path + ": " + why, Stage::config, {{"file", path}});
    }
    return j;
  }
  LuaState L;
  register_shepherd_api(L);
  LuaFailure failure;
  bool loaded = load_chunk(L, text, path, failure);
  if (loaded) {
    // Same limits as a suite's top level: a scenario that loops or eats memory
    // is a SCENARIO_INVALID, never a hung mock.
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    make_interruptible(L, -1);
    CallLimit limit(L, kSuiteLoadBudget);
    MemoryLimit memory(L, kSuiteLoadMemory);
    loaded = protected_call(L, 0, 1, failure);
  }
  if (!loaded) {
    throw Error(codes::SCENARIO_INVALID, failure.describe(), Stage::config, {{"file", path}, {"line", failure.line}});
  }
  nlohmann::json j;
  std::string error;
  if (!lua_istable(L, -1) || !try_to_json(L, lua_gettop(L), j, error, "scenario")) {
    throw Error(codes::SCENARIO_INVALID, path + ": must return a table of plain data" + (error.empty() ? "" : ": " + error),
                Stage::config, {{"file", path}});
  }
  if (j.is_array() && j.empty()) j = nlohmann::json::object();
  return j;
}

}  // namespace

int cmd_mock(const GlobalOptions& g, const MockArgs& a) {
  Scenario scenario;
  if (!a.scenario.empty()) scenario = Scenario::from_json(read_scenario(a.scenario), a.scenario);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  MockServer server(std::move(scenario), static_cast<uint16_t>(a.port));
  if (g.json) {
    std::printf("%s\n", nlohmann::json({{"status", "listening"}, {"port", server.port()},
                                        {"base_url", "http://127.0.0.1:" + std::to_string(server.port()) + "/v1"}})
                            .dump()
                            .c_str());
  } else {
    std::printf("mock provider listening on http://127.0.0.1:%u/v1\n", server.port());
  }
  std::fflush(stdout);
  server.start();
  int sig = 0;
  sigwait(&signals, &sig);
  server.stop();
  return kExitOk;
}

}  // namespace shepherd::cli
