// load_suite: a suite file is validated once, and every mistake names the
// file, the field and the line. Suites are written into a temp dir per test.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/hash.h"
#include "suite/field_lines.h"
#include "suite/suite.h"

namespace shepherd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The demo suite exactly as issue 2 writes it; examples/demo.lua must stay this text.
const char* const kDemoSuite = R"LUA(return {
  name = "demo",
  providers = {
    local_mock = {
      kind = "openai",                          -- OpenAI-compatible POST {base_url}/chat/completions
      base_url = "http://127.0.0.1:8089/v1",
      keys = { { id = "k0", env = "DEMO_KEY_0" }, { id = "k1", env = "DEMO_KEY_1" } },
      models = { "m-a", "m-b", "m-c" },
      limits = { concurrency = 16 },            -- in flight per (key, model)
      timeouts = { connect_ms = 1000, total_ms = 2000, stall_ms = 1500 },
    },
  },
  matrix = {
    model = { "m-a", "m-b", "m-c" },
    prompt_type = { "baseline", "cot", "optimal", "flawed" },
    instance = { 1, 2, 3 },
  },
  request = function(cell)
    return {
      model = cell.model,
      max_tokens = 32,
      messages = { { role = "user", content = string.format("task %s/%s/%d", cell.model, cell.prompt_type, cell.instance) } },
    }
  end,
}
)LUA";

// A small valid suite, assembled from parts so a test can drop or change one.
struct SuiteText {
  std::string prefix;
  std::string name = "  name = \"t\",\n";
  std::string providers =
      "  providers = {\n"
      "    local_mock = {\n"
      "      base_url = \"http://127.0.0.1:1/v1\",\n"
      "      keys = { { id = \"k0\", env = \"SHEPHERD_SUITE_TEST_KEY\" } },\n"
      "      models = { \"m-a\", \"m-b\" },\n"
      "      limits = { concurrency = 4 },\n"
      "      timeouts = { total_ms = 5000 },\n"
      "    },\n"
      "  },\n";
  std::string matrix =
      "  matrix = {\n"
      "    model = { \"m-a\", \"m-b\" },\n"
      "    instance = { 1, 2 },\n"
      "  },\n";
  std::string models;
  std::string request = "  request = function(cell) return { model = cell.model } end,\n";
  std::string extra;

  std::string str() const {
    return prefix + "return {\n" + name + providers + matrix + models + request + extra + "}\n";
  }
};

// `text` with the one occurrence of `from` replaced by `to`.
std::string replaced(std::string text, const std::string& from, const std::string& to) {
  size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << "'" << from << "' not in the text";
  if (pos == std::string::npos) return text;
  EXPECT_EQ(text.find(from, pos + 1), std::string::npos) << "'" << from << "' is not unique";
  return text.replace(pos, from.size(), to);
}

// 1-based line of the first occurrence of `needle`.
int line_of(const std::string& text, const std::string& needle) {
  size_t pos = text.find(needle);
  EXPECT_NE(pos, std::string::npos) << needle;
  if (pos == std::string::npos) return -1;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(pos), '\n'));
}

class SuiteLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = "/tmp/shepherd_suite_test_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    ::setenv("SHEPHERD_SUITE_TEST_KEY", "sk-suite-test", 1);
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    ::unsetenv("SHEPHERD_SUITE_TEST_KEY");
  }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  // Loads `text` from a file, expecting an Error; returns it.
  Error load_error(const std::string& text, SuiteLoadOptions options = {}, const std::string& name = "suite.lua") {
    std::string path = write(name, text);
    try {
      Suite s = load_suite(path, options);
      ADD_FAILURE() << "loaded without an error:\n" << text;
    } catch (const Error& e) {
      return e;
    }
    return Error(codes::INTERNAL, "no error", Stage::config);
  }

  // Expects SUITE_INVALID naming `field`, at `line` (when >= 0).
  void expect_invalid(const std::string& text, const std::string& field, int line) {
    Error e = load_error(text);
    EXPECT_EQ(e.code(), codes::SUITE_INVALID) << e.what();
    EXPECT_EQ(e.stage(), Stage::config);
    EXPECT_EQ(e.details().value("field", ""), field) << e.what();
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    EXPECT_EQ(e.details().value("file", ""), (dir_ / "suite.lua").string());
    if (line >= 0) {
      EXPECT_EQ(e.details().value("line", -1), line) << e.what();
      if (line > 0) {
        EXPECT_NE(std::string(e.what()).find("suite.lua:" + std::to_string(line) + ":"), std::string::npos)
            << e.what();
      }
    }
  }

  Suite load_ok(const std::string& text, SuiteLoadOptions options = {}) {
    std::string path = write("suite.lua", text);
    try {
      return load_suite(path, options);
    } catch (const Error& e) {
      ADD_FAILURE() << e.code() << ": " << e.what() << "\n" << text;
      return Suite{};
    }
  }

  fs::path dir_;
};

// ---------------------------------------------------------------- the demo suite

TEST(DemoExample, IsTheSuiteTheIssueWrites) {
  std::ifstream in(std::string(SHEPHERD_TEST_SOURCE_DIR) + "/../examples/demo.lua");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, kDemoSuite);
}

TEST_F(SuiteLoaderTest, DemoSuiteLoads) {
  ::setenv("DEMO_KEY_0", "sk-demo-zero", 1);
  ::setenv("DEMO_KEY_1", "sk-demo-one", 1);
  Suite s = load_ok(kDemoSuite);
  ::unsetenv("DEMO_KEY_0");
  ::unsetenv("DEMO_KEY_1");

  EXPECT_EQ(s.name, "demo");
  EXPECT_EQ(s.path, (dir_ / "suite.lua").string());
  EXPECT_EQ(s.dir, dir_.string());
  EXPECT_EQ(s.source, kDemoSuite);
  EXPECT_EQ(s.config_hash, stable_hash_hex(kDemoSuite));

  ASSERT_EQ(s.dims.size(), 3u);
  EXPECT_EQ(s.dims[0].name, "instance");
  EXPECT_EQ(s.dims[1].name, "model");
  EXPECT_EQ(s.dims[2].name, "prompt_type");
  EXPECT_EQ(json(s.dims[0].values), json::parse("[1,2,3]"));
  EXPECT_TRUE(s.dims[0].values[0].is_number_integer());
  EXPECT_EQ(json(s.dims[1].values), json::parse(R"(["m-a","m-b","m-c"])"));
  EXPECT_EQ(json(s.dims[2].values), json::parse(R"(["baseline","cot","optimal","flawed"])"));  // file order

  EXPECT_TRUE(s.model_is_dimension);
  EXPECT_EQ(s.models, (std::vector<std::string>{"m-a", "m-b", "m-c"}));
  EXPECT_FALSE(s.has_check);

  ASSERT_EQ(s.providers.size(), 1u);
  const ProviderSpec& p = s.providers[0];
  EXPECT_EQ(p.name, "local_mock");
  EXPECT_EQ(p.kind, "openai");
  EXPECT_EQ(p.base_url, "http://127.0.0.1:8089/v1");
  ASSERT_EQ(p.keys.size(), 2u);
  EXPECT_EQ(p.keys[0].id, "k0");
  EXPECT_EQ(p.keys[0].env, "DEMO_KEY_0");
  EXPECT_EQ(p.keys[0].value, "sk-demo-zero");
  EXPECT_EQ(p.keys[1].id, "k1");
  EXPECT_EQ(p.keys[1].value, "sk-demo-one");
  EXPECT_EQ(p.models, (std::vector<std::string>{"m-a", "m-b", "m-c"}));
  EXPECT_EQ(p.limits.concurrency, 16);
  EXPECT_EQ(p.timeouts.connect_ms, 1000);
  EXPECT_EQ(p.timeouts.total_ms, 2000);
  EXPECT_EQ(p.timeouts.stall_ms, 1500);
  EXPECT_EQ(p.max_response_bytes, 8u << 20);
  EXPECT_TRUE(p.headers.empty());

  RetryConfig defaults;
  EXPECT_EQ(s.retry.to_json(), defaults.to_json());
  EXPECT_TRUE(s.policies.overrides.empty());
}

TEST_F(SuiteLoaderTest, BaseUrlLosesTrailingSlashesAndDefaultsApply) {
  SuiteText t;
  t.providers = replaced(t.providers, "\"http://127.0.0.1:1/v1\"", "\"https://api.example.com/v1//\"");
  t.providers = replaced(t.providers, "      limits = { concurrency = 4 },\n", "");
  t.providers = replaced(t.providers, "      timeouts = { total_ms = 5000 },\n",
                         "      headers = { [\"X-Org\"] = \"acme\" },\n      max_response_bytes = 4096,\n");
  Suite s = load_ok(t.str());
  ASSERT_EQ(s.providers.size(), 1u);
  const ProviderSpec& p = s.providers[0];
  EXPECT_EQ(p.base_url, "https://api.example.com/v1");
  EXPECT_EQ(p.kind, "openai");
  Limits limits;
  Timeouts timeouts;
  EXPECT_EQ(p.limits.concurrency, limits.concurrency);
  EXPECT_EQ(p.timeouts.connect_ms, timeouts.connect_ms);
  EXPECT_EQ(p.timeouts.total_ms, timeouts.total_ms);
  EXPECT_EQ(p.timeouts.stall_ms, timeouts.stall_ms);
  EXPECT_EQ(p.headers, (std::vector<std::string>{"X-Org: acme"}));
  EXPECT_EQ(p.max_response_bytes, 4096u);
}

// Found by tests/fuzz (fuzz_suite_loader under UBSan): `total_ms = 2/00`
// (inf) was cast to an integer type to test integrality, which is undefined
// behaviour; inf, NaN and 1e300 are range errors like any other.
TEST_F(SuiteLoaderTest, NonFiniteAndHugeIntegerFieldsAreRangeErrors) {
  for (const char* value : {"2/00", "-1/0", "0/0", "1e300", "-1e300"}) {
    SuiteText t;
    t.providers = replaced(t.providers, "timeouts = { total_ms = 5000 }",
                           std::string("timeouts = { total_ms = ") + value + " }");
    Error e = load_error(t.str());
    EXPECT_EQ(e.code(), codes::SUITE_INVALID) << value;
    EXPECT_NE(std::string(e.what()).find("total_ms: must be between 1.0 and 86400000.0"), std::string::npos)
        << value << ": " << e.what();
  }
  SuiteText fractional;
  fractional.providers = replaced(fractional.providers, "total_ms = 5000", "total_ms = 1.5");
  EXPECT_NE(std::string(load_error(fractional.str()).what()).find("expected an integer"), std::string::npos);
}

TEST_F(SuiteLoaderTest, ProvidersAreSortedByName) {
  SuiteText t;
  t.providers =
      "  providers = {\n"
      "    zeta = { base_url = \"http://z/v1\", keys = { { id = \"z\", env = \"SHEPHERD_SUITE_TEST_KEY\" } }, models = { \"m-b\" } },\n"
      "    alpha = { base_url = \"http://a/v1\", keys = { { id = \"a\", env = \"SHEPHERD_SUITE_TEST_KEY\" } }, models = { \"m-a\" } },\n"
      "  },\n";
  Suite s = load_ok(t.str());
  ASSERT_EQ(s.providers.size(), 2u);
  EXPECT_EQ(s.providers[0].name, "alpha");
  EXPECT_EQ(s.providers[1].name, "zeta");
}

TEST_F(SuiteLoaderTest, CheckFunctionIsRecorded) {
  SuiteText t;
  t.extra = "  check = function(cell, response) return true end,\n  description = \"with a check\",\n";
  EXPECT_TRUE(load_ok(t.str()).has_check);
  t.extra = "  check = \"yes\",\n";
  expect_invalid(t.str(), "check", line_of(t.str(), "check ="));
}

// ---------------------------------------------------------------- keys

TEST_F(SuiteLoaderTest, MissingKeyEnvironmentVariable) {
  ::unsetenv("SHEPHERD_SUITE_TEST_ABSENT");
  SuiteText t;
  t.providers = replaced(t.providers, "SHEPHERD_SUITE_TEST_KEY", "SHEPHERD_SUITE_TEST_ABSENT");
  Error e = load_error(t.str());
  EXPECT_EQ(e.code(), codes::KEY_ENV_MISSING) << e.what();
  EXPECT_NE(std::string(e.what()).find("SHEPHERD_SUITE_TEST_ABSENT"), std::string::npos) << e.what();
  EXPECT_EQ(e.details().value("env", ""), "SHEPHERD_SUITE_TEST_ABSENT");
  EXPECT_EQ(e.details().value("key", ""), "k0");
  EXPECT_EQ(e.details().value("provider", ""), "local_mock");

  ::setenv("SHEPHERD_SUITE_TEST_ABSENT", "", 1);  // set but empty is missing too
  EXPECT_EQ(load_error(t.str()).code(), codes::KEY_ENV_MISSING);
  ::unsetenv("SHEPHERD_SUITE_TEST_ABSENT");

  Suite s = load_ok(t.str(), SuiteLoadOptions{false});
  ASSERT_EQ(s.providers.size(), 1u);
  ASSERT_EQ(s.providers[0].keys.size(), 1u);
  EXPECT_EQ(s.providers[0].keys[0].env, "SHEPHERD_SUITE_TEST_ABSENT");
  EXPECT_EQ(s.providers[0].keys[0].value, "");
}

TEST_F(SuiteLoaderTest, KeyListMistakes) {
  SuiteText t;
  t.providers = replaced(t.providers, "{ { id = \"k0\", env = \"SHEPHERD_SUITE_TEST_KEY\" } }",
                         "{ { id = \"k0\", env = \"SHEPHERD_SUITE_TEST_KEY\" }, { id = \"k0\", env = \"X\" } }");
  expect_invalid(t.str(), "providers.local_mock.keys[2]", -1);

  SuiteText empty;
  empty.providers = replaced(empty.providers, "{ { id = \"k0\", env = \"SHEPHERD_SUITE_TEST_KEY\" } }", "{}");
  expect_invalid(empty.str(), "providers.local_mock.keys", line_of(empty.str(), "keys ="));

  SuiteText no_env;
  no_env.providers = replaced(no_env.providers, ", env = \"SHEPHERD_SUITE_TEST_KEY\"", "");
  expect_invalid(no_env.str(), "providers.local_mock.keys[1].env", -1);
}

// ---------------------------------------------------------------- syntax and runtime errors

TEST_F(SuiteLoaderTest, SyntaxErrorNamesFileAndLine) {
  SuiteText t;
  t.matrix = replaced(t.matrix, "instance = { 1, 2 },", "instance = { 1, 2 ,, },");
  std::string text = t.str();
  int line = line_of(text, ",, }");
  Error e = load_error(text);
  EXPECT_EQ(e.code(), codes::SUITE_SYNTAX) << e.what();
  EXPECT_EQ(e.details().value("file", ""), (dir_ / "suite.lua").string());
  EXPECT_EQ(e.details().value("line", -1), line) << e.what();
  EXPECT_NE(std::string(e.what()).find("suite.lua:" + std::to_string(line) + ":"), std::string::npos) << e.what();
}

TEST_F(SuiteLoaderTest, RuntimeErrorIsInvalidWithLine) {
  SuiteText t;
  t.prefix = "local helpers = {}\nlocal value = helpers.missing.field\n";
  Error e = load_error(t.str());
  EXPECT_EQ(e.code(), codes::SUITE_INVALID) << e.what();
  EXPECT_EQ(e.details().value("line", -1), 2) << e.what();
  EXPECT_EQ(e.details().value("file", ""), (dir_ / "suite.lua").string());
  EXPECT_NE(std::string(e.what()).find("suite.lua:2:"), std::string::npos) << e.what();

  SuiteText raised;
  raised.prefix = "\n\n\nerror(\"no such dataset\")\n";
  Error r = load_error(raised.str());
  EXPECT_EQ(r.code(), codes::SUITE_INVALID);
  EXPECT_EQ(r.details().value("line", -1), 4);
  EXPECT_NE(std::string(r.what()).find("no such dataset"), std::string::npos) << r.what();
}

TEST_F(SuiteLoaderTest, ErrorsInALongPathNameTheWholeFile) {
  // Lua shortens chunk names over 60 characters to "...tail" in its messages;
  // the error's details must still name the real file.
  std::string deep = "a_directory_name_long_enough_to_push_the_path_past_sixty_characters/suite.lua";
  std::string full = (dir_ / deep).string();

  SuiteText syntax;
  syntax.matrix = replaced(syntax.matrix, "instance = { 1, 2 },", "instance = { 1, 2 ,, },");
  Error s = load_error(syntax.str(), {}, deep);
  EXPECT_EQ(s.code(), codes::SUITE_SYNTAX);
  EXPECT_EQ(s.details().value("file", ""), full);

  SuiteText runtime;
  runtime.prefix = "error(\"boom\")\n";
  Error r = load_error(runtime.str(), {}, deep);
  EXPECT_EQ(r.code(), codes::SUITE_INVALID);
  EXPECT_EQ(r.details().value("line", -1), 1);
  EXPECT_EQ(r.details().value("file", ""), full) << r.what();
}

TEST_F(SuiteLoaderTest, NotATable) {
  Error e = load_error("return 42\n");
  EXPECT_EQ(e.code(), codes::SUITE_INVALID);
  EXPECT_NE(std::string(e.what()).find("must return a table"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("number"), std::string::npos) << e.what();
  EXPECT_EQ(load_error("local x = 1\n").code(), codes::SUITE_INVALID);  // returns nothing
}

TEST_F(SuiteLoaderTest, NotFound) {
  try {
    load_suite((dir_ / "nope.lua").string());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), codes::SUITE_NOT_FOUND);
    EXPECT_EQ(e.details().value("file", ""), (dir_ / "nope.lua").string());
  }
  try {
    load_suite(dir_.string());  // a directory is not a suite file
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), codes::SUITE_NOT_FOUND);
  }
}

// ---------------------------------------------------------------- required, mistyped and unknown fields

TEST_F(SuiteLoaderTest, MissingRequiredFields) {
  SuiteText no_request;
  no_request.request = "";
  expect_invalid(no_request.str(), "request", 0);

  SuiteText no_matrix;
  no_matrix.matrix = "";
  expect_invalid(no_matrix.str(), "matrix", 0);

  SuiteText no_providers;
  no_providers.providers = "";
  expect_invalid(no_providers.str(), "providers", 0);

  SuiteText no_name;
  no_name.name = "";
  expect_invalid(no_name.str(), "name", 0);

  SuiteText no_base_url;
  no_base_url.providers = replaced(no_base_url.providers, "      base_url = \"http://127.0.0.1:1/v1\",\n", "");
  expect_invalid(no_base_url.str(), "providers.local_mock.base_url", -1);

  SuiteText no_models;
  no_models.providers = replaced(no_models.providers, "      models = { \"m-a\", \"m-b\" },\n", "");
  expect_invalid(no_models.str(), "providers.local_mock.models", -1);
}

TEST_F(SuiteLoaderTest, MistypedFieldsNameFieldAndLine) {
  struct Case {
    std::string from, to, field;
  };
  const std::vector<Case> cases = {
      {"concurrency = 4", "concurrency = \"16\"", "providers.local_mock.limits.concurrency"},
      {"concurrency = 4", "concurrency = 0", "providers.local_mock.limits.concurrency"},
      {"concurrency = 4", "concurrency = 2.5", "providers.local_mock.limits.concurrency"},
      {"total_ms = 5000", "total_ms = -1", "providers.local_mock.timeouts.total_ms"},
      {"base_url = \"http://127.0.0.1:1/v1\"", "base_url = 5", "providers.local_mock.base_url"},
      {"base_url = \"http://127.0.0.1:1/v1\"", "base_url = \"ftp://x\"", "providers.local_mock.base_url"},
      {"base_url = \"http://127.0.0.1:1/v1\"", "base_url = \"\"", "providers.local_mock.base_url"},
      {"models = { \"m-a\", \"m-b\" }", "models = \"m-a\"", "providers.local_mock.models"},
      {"limits = { concurrency = 4 }", "limits = 4", "providers.local_mock.limits"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.to);
    SuiteText t;
    t.providers = replaced(t.providers, c.from, c.to);
    std::string text = t.str();
    expect_invalid(text, c.field, line_of(text, c.to));
  }

  SuiteText name;
  name.name = "  name = \"has spaces\",\n";
  expect_invalid(name.str(), "name", 2);

  SuiteText number_name;
  number_name.name = "  name = 7,\n";
  expect_invalid(number_name.str(), "name", 2);

  SuiteText request;
  request.request = "  request = { model = \"m-a\" },\n";
  expect_invalid(request.str(), "request", line_of(request.str(), "request ="));
}

TEST_F(SuiteLoaderTest, UnknownFieldsAreRefused) {
  SuiteText top;
  top.extra = "  matrx = { a = { 1 } },\n";
  expect_invalid(top.str(), "matrx", line_of(top.str(), "matrx"));

  SuiteText in_limits;
  in_limits.providers = replaced(in_limits.providers, "concurrency = 4", "concurency = 4");
  expect_invalid(in_limits.str(), "providers.local_mock.limits.concurency", line_of(in_limits.str(), "concurency"));

  SuiteText in_provider;
  in_provider.providers = replaced(in_provider.providers, "      limits = { concurrency = 4 },\n",
                                   "      limits = { concurrency = 4 },\n      rpm = 60,\n");
  expect_invalid(in_provider.str(), "providers.local_mock.rpm", line_of(in_provider.str(), "rpm"));
}

TEST_F(SuiteLoaderTest, UnknownProviderKind) {
  SuiteText t;
  t.providers = replaced(t.providers, "      base_url =", "      kind = \"anthropic\",\n      base_url =");
  expect_invalid(t.str(), "providers.local_mock.kind", line_of(t.str(), "kind ="));
}

// ---------------------------------------------------------------- matrix and models

TEST_F(SuiteLoaderTest, MatrixModelNotServedByAnyProvider) {
  SuiteText t;
  t.matrix = replaced(t.matrix, "model = { \"m-a\", \"m-b\" }", "model = { \"m-a\", \"m-z\" }");
  Error e = load_error(t.str());
  EXPECT_EQ(e.code(), codes::SUITE_INVALID);
  EXPECT_EQ(e.details().value("field", ""), "matrix.model[2]");
  EXPECT_NE(std::string(e.what()).find("m-z"), std::string::npos) << e.what();

  SuiteText not_string;
  not_string.matrix = replaced(not_string.matrix, "model = { \"m-a\", \"m-b\" }", "model = { \"m-a\", 3 }");
  EXPECT_EQ(load_error(not_string.str()).details().value("field", ""), "matrix.model[2]");
}

TEST_F(SuiteLoaderTest, ModelsTogetherWithAModelDimension) {
  SuiteText t;
  t.models = "  models = { \"m-a\" },\n";
  expect_invalid(t.str(), "models", line_of(t.str(), "models = { \"m-a\" },\n  request"));
}

TEST_F(SuiteLoaderTest, NoModelDimensionNeedsModels) {
  SuiteText t;
  t.matrix = "  matrix = {\n    instance = { 1, 2, 3 },\n  },\n";
  expect_invalid(t.str(), "models", -1);  // the line is covered by ModelsTogetherWithAModelDimension

  t.models = "  models = { \"m-b\", \"m-a\" },\n";
  Suite s = load_ok(t.str());
  EXPECT_FALSE(s.model_is_dimension);
  EXPECT_EQ(s.models, (std::vector<std::string>{"m-b", "m-a"}));  // the suite's order: fallbacks
  ASSERT_EQ(s.dims.size(), 1u);
  EXPECT_EQ(s.dims[0].name, "instance");

  t.models = "  models = { \"m-a\", \"m-x\" },\n";
  Error e = load_error(t.str());
  EXPECT_EQ(e.code(), codes::SUITE_INVALID);
  EXPECT_EQ(e.details().value("field", ""), "models[2]");

  t.models = "  models = {},\n";
  EXPECT_EQ(load_error(t.str()).details().value("field", ""), "models");
}

TEST_F(SuiteLoaderTest, MatrixMistakes) {
  SuiteText empty_dim;
  empty_dim.matrix = replaced(empty_dim.matrix, "instance = { 1, 2 }", "instance = {}");
  expect_invalid(empty_dim.str(), "matrix.instance", line_of(empty_dim.str(), "instance ="));

  SuiteText duplicate;
  duplicate.matrix = replaced(duplicate.matrix, "instance = { 1, 2 }", "instance = { 1, 2, 1 }");
  expect_invalid(duplicate.str(), "matrix.instance[3]", line_of(duplicate.str(), "instance ="));

  SuiteText not_list;
  not_list.matrix = replaced(not_list.matrix, "instance = { 1, 2 }", "instance = 3");
  expect_invalid(not_list.str(), "matrix.instance", line_of(not_list.str(), "instance ="));

  SuiteText function_value;
  function_value.matrix = replaced(function_value.matrix, "instance = { 1, 2 }", "instance = { 1, print }");
  expect_invalid(function_value.str(), "matrix.instance[2]", -1);

  SuiteText no_dims;
  no_dims.matrix = "  matrix = {},\n";
  expect_invalid(no_dims.str(), "matrix", line_of(no_dims.str(), "matrix ="));
}

// ---------------------------------------------------------------- retry and policies

TEST_F(SuiteLoaderTest, RetryTableOverridesDefaults) {
  SuiteText t;
  t.extra =
      "  retry = { max_retries = 5, base_delay_ms = 10, backoff_multiplier = 3.5, max_delay_ms = 100,\n"
      "            jitter = false, retry_on_timeout = false, retry_on_api_error = false,\n"
      "            retry_on_format_error = true },\n";
  Suite s = load_ok(t.str());
  EXPECT_EQ(s.retry.max_retries, 5);
  EXPECT_EQ(s.retry.base_delay_ms, 10);
  EXPECT_DOUBLE_EQ(s.retry.backoff_multiplier, 3.5);
  EXPECT_EQ(s.retry.max_delay_ms, 100);
  EXPECT_FALSE(s.retry.jitter);
  EXPECT_FALSE(s.retry.retry_on_timeout);
  EXPECT_FALSE(s.retry.retry_on_api_error);
  EXPECT_TRUE(s.retry.retry_on_format_error);

  t.extra = "  retry = { max_retries = 1 },\n";
  Suite partial = load_ok(t.str());
  RetryConfig expected;
  expected.max_retries = 1;
  EXPECT_EQ(partial.retry.to_json(), expected.to_json());
}

TEST_F(SuiteLoaderTest, RetryTableIsValidated) {
  struct Case {
    std::string retry, field;
  };
  const std::vector<Case> cases = {
      {"retry = { jitter = \"yes\" }", "retry.jitter"},
      {"retry = { max_retries = -1 }", "retry.max_retries"},
      {"retry = { max_retries = 1.5 }", "retry.max_retries"},
      {"retry = { base_delay_ms = \"1s\" }", "retry.base_delay_ms"},
      {"retry = { backoff_multiplier = 0.5 }", "retry.backoff_multiplier"},
      {"retry = { retry_on_timeout = 1 }", "retry.retry_on_timeout"},
      {"retry = { max_retry = 3 }", "retry.max_retry"},
      {"retry = 3", "retry"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.retry);
    SuiteText t;
    t.extra = "  " + c.retry + ",\n";
    expect_invalid(t.str(), c.field, line_of(t.str(), c.retry));
  }
}

TEST_F(SuiteLoaderTest, PolicyOverridesResolveBesideTheSuite) {
  write("my.lua", "return {}\n");
  write("policies/classify.lua", "return {}\n");
  SuiteText t;
  t.extra = "  policies = { retry = \"my.lua\", classify = \"policies/classify.lua\" },\n";
  Suite s = load_ok(t.str());
  ASSERT_EQ(s.policies.overrides.size(), 2u);
  EXPECT_EQ(s.policies.overrides.at("retry"), fs::weakly_canonical(dir_ / "my.lua").string());
  EXPECT_EQ(s.policies.overrides.at("classify"), fs::weakly_canonical(dir_ / "policies/classify.lua").string());
  EXPECT_TRUE(fs::path(s.policies.overrides.at("retry")).is_absolute());

  SuiteText absolute;
  absolute.extra = "  policies = { retry = \"" + (dir_ / "my.lua").string() + "\" },\n";
  EXPECT_EQ(load_ok(absolute.str()).policies.overrides.at("retry"), fs::weakly_canonical(dir_ / "my.lua").string());
}

TEST_F(SuiteLoaderTest, PolicyOverrideMistakes) {
  SuiteText missing;
  missing.extra = "  policies = { retry = \"missing.lua\" },\n";
  Error e = load_error(missing.str());
  EXPECT_EQ(e.code(), codes::SUITE_INVALID);
  EXPECT_EQ(e.details().value("field", ""), "policies.retry");
  EXPECT_NE(std::string(e.what()).find("missing.lua"), std::string::npos) << e.what();
  EXPECT_EQ(e.details().value("line", -1), line_of(missing.str(), "policies ="));

  SuiteText unknown;
  unknown.extra = "  policies = { switch = \"x.lua\" },\n";
  expect_invalid(unknown.str(), "policies.switch", line_of(unknown.str(), "policies ="));

  SuiteText not_string;
  not_string.extra = "  policies = { classify = true },\n";
  expect_invalid(not_string.str(), "policies.classify", line_of(not_string.str(), "policies ="));
}

// ---------------------------------------------------------------- push_suite_table

TEST_F(SuiteLoaderTest, PushSuiteTableLeavesTheTable) {
  LuaState L;
  SuiteText t;
  push_suite_table(L, (dir_ / "suite.lua").string(), dir_.string(), t.str());
  ASSERT_EQ(lua_gettop(L), 1);
  ASSERT_TRUE(lua_istable(L, 1));
  lua_getfield(L, 1, "name");
  EXPECT_STREQ(lua_tostring(L, -1), "t");
  lua_pop(L, 1);

  // The suite's own modules resolve beside it.
  write("helper.lua", "return { answer = 42 }\n");
  std::string src = "local h = require('helper')\nreturn { n = h.answer }\n";
  push_suite_table(L, (dir_ / "suite.lua").string(), dir_.string(), src);
  lua_getfield(L, -1, "n");
  EXPECT_EQ(lua_tonumber(L, -1), 42);
}

// ---------------------------------------------------------------- find_field_line

TEST(FieldLines, FindsNestedFieldsInOrder) {
  const std::string src =
      "return {\n"                                // 1
      "  name = \"x\",\n"                         // 2
      "  providers = {\n"                         // 3
      "    a = {\n"                               // 4
      "      limits = { concurrency = 2 },\n"     // 5
      "    },\n"                                  // 6
      "    b = {\n"                               // 7
      "      limits = { concurrency = 3 },\n"     // 8
      "      [\"timeouts\"] = { total_ms = 1 },\n"  // 9
      "    },\n"                                  // 10
      "  },\n"                                    // 11
      "  retry = { max_retries = 3 },\n"          // 12
      "}\n";
  EXPECT_EQ(find_field_line(src, {"name"}), 2);
  EXPECT_EQ(find_field_line(src, {"providers"}), 3);
  EXPECT_EQ(find_field_line(src, {"providers", "a", "limits", "concurrency"}), 5);
  EXPECT_EQ(find_field_line(src, {"providers", "b", "limits", "concurrency"}), 8);
  EXPECT_EQ(find_field_line(src, {"providers", "b", "timeouts", "total_ms"}), 9);
  EXPECT_EQ(find_field_line(src, {"retry", "max_retries"}), 12);
  // The deepest component found: "c" is absent, so the line of "providers".
  EXPECT_EQ(find_field_line(src, {"providers", "c", "limits"}), 3);
  // List indexes are skipped.
  EXPECT_EQ(find_field_line(src, {"providers", "b", "1", "limits"}), 8);
  EXPECT_EQ(find_field_line(src, {"missing"}), 0);
  EXPECT_EQ(find_field_line(src, {}), 0);
}

TEST(FieldLines, IgnoresComparisonsAndLongerNames) {
  const std::string src =
      "local limits_max = 5\n"           // 1
      "if x.limits == 3 then end\n"      // 2
      "local t = {\n"                    // 3
      "  limits = 4,\n"                  // 4
      "}\n";
  EXPECT_EQ(find_field_line(src, {"limits"}), 4);
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
namespace {

// A minimal valid suite with `extra` top-level fields, written to a temp file.
std::string maintain_suite(const std::string& extra) {
  static int n = 0;
  std::string path = "/tmp/shepherd-maintain-" + std::to_string(getpid()) + "-" + std::to_string(n++) + ".lua";
  std::ofstream(path) << "return {\n  name = 'm',\n  providers = { p = { base_url = 'http://127.0.0.1:9/v1',\n"
                         "    keys = { { id = 'k', env = 'UNUSED_KEY' } }, models = { 'a', 'b' } } },\n"
                         "  matrix = { x = { 1 } },\n  models = { 'a', 'b' },\n"
                      << extra << "\n  request = function(cell) return {} end,\n}\n";
  return path;
}

Error load_error_of(const std::string& extra) {
  std::string path = maintain_suite(extra);
  try {
    load_suite(path, SuiteLoadOptions{false});
  } catch (const Error& e) {
    std::remove(path.c_str());
    return e;
  }
  std::remove(path.c_str());
  return Error("NONE", "loaded", Stage::config);
}

TEST(MaintainConfig, DefaultsAndOverrides) {
  std::string path = maintain_suite(
      "  maintain = { minimum_completion_rate = 0.9, priority_models = { 'b' }, skip_models = {}, batch_size = 2 },");
  Suite s = load_suite(path, SuiteLoadOptions{false});
  std::remove(path.c_str());
  EXPECT_DOUBLE_EQ(s.maintain.minimum_completion_rate, 0.9);
  EXPECT_DOUBLE_EQ(s.maintain.maximum_failure_rate, 0.3);
  EXPECT_EQ(s.maintain.priority_models, std::vector<std::string>{"b"});
  EXPECT_TRUE(s.maintain.skip_models.empty());
  EXPECT_DOUBLE_EQ(s.maintain.cooldown_hours, 2);
  EXPECT_EQ(s.maintain.batch_size, 2);
}

TEST(MaintainConfig, ErrorsNameTheField) {
  Error range = load_error_of("  maintain = { maximum_failure_rate = 1.5 },");
  EXPECT_EQ(range.code(), "SUITE_INVALID");
  EXPECT_EQ(range.details()["field"], "maintain.maximum_failure_rate");
  EXPECT_EQ(range.details()["line"], 7);  // the `maintain = …` line
  Error unknown_model = load_error_of("  maintain = { skip_models = { 'zzz' } },");
  EXPECT_EQ(unknown_model.details()["field"], "maintain.skip_models[1]");
  Error type = load_error_of("  maintain = { batch_size = 'five' },");
  EXPECT_EQ(type.details()["field"], "maintain.batch_size");
  Error unknown = load_error_of("  maintain = { cooldown = 3 },");
  EXPECT_EQ(unknown.details()["field"], "maintain.cooldown");
}

TEST(MaintainConfig, NotANumberIsRefused) {
  EXPECT_EQ(load_error_of("  retry = { backoff_multiplier = 0/0 },").details()["field"], "retry.backoff_multiplier");
  EXPECT_EQ(load_error_of("  maintain = { cooldown_hours = 0/0 },").details()["field"], "maintain.cooldown_hours");
  EXPECT_EQ(load_error_of("  retry = { poison_after = 1 },").details()["field"], "retry.poison_after");
}

}  // namespace
}  // namespace shepherd
