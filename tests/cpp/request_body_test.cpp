// RequestBody: a task's body serialised once, without the model the host
// picks per attempt; its hash is the one request_hash (suite_runtime.h)
// gives the same fields, and compose_request puts the model back, first.
#include <string>

#include <gtest/gtest.h>

#include "core/hash.h"
#include "suite/request_body.h"
#include "suite/suite_runtime.h"

namespace shepherd {
namespace {

using nlohmann::json;

json sample_body() {
  return json::parse(R"({"model":"m-a","max_tokens":32,"temperature":0.5,
                         "messages":[{"role":"user","content":"hi \u00e9"}]})");
}

// The composed text parsed back, after checking it is valid JSON.
json parsed(const std::string& text) {
  json out = json::parse(text, nullptr, false);
  EXPECT_FALSE(out.is_discarded()) << text;
  return out;
}

// -------------------------------------------------------------- make_request_body

TEST(MakeRequestBody, DropsTheModel) {
  RequestBody b = make_request_body(sample_body());
  EXPECT_EQ(b.text.find("\"model\""), std::string::npos) << b.text;
  json expected = sample_body();
  expected.erase("model");
  EXPECT_EQ(parsed(b.text), expected);
}

TEST(MakeRequestBody, TextIsCompactJson) {
  RequestBody b = make_request_body(json::parse(R"({"b": [1, 2], "a": {"x": "y"}})"));
  EXPECT_EQ(b.text, R"({"a":{"x":"y"},"b":[1,2]})");
}

TEST(MakeRequestBody, HashIsTheTextsHash) {
  RequestBody b = make_request_body(sample_body());
  EXPECT_EQ(b.hash, stable_hash_hex(b.text));
  EXPECT_EQ(b.hash.size(), 16u);
}

TEST(MakeRequestBody, HashEqualsRequestHashWithOrWithoutModel) {
  json with_model = sample_body();
  json without_model = sample_body();
  without_model.erase("model");
  RequestBody b = make_request_body(with_model);
  EXPECT_EQ(b.hash, request_hash(with_model));
  EXPECT_EQ(b.hash, request_hash(without_model));
  EXPECT_EQ(make_request_body(without_model).hash, b.hash);
}

TEST(MakeRequestBody, HashDoesNotDependOnTheModel) {
  json a = sample_body();
  json b = sample_body();
  b["model"] = "another-model";
  EXPECT_EQ(make_request_body(a).hash, make_request_body(b).hash);
}

TEST(MakeRequestBody, HashDoesNotDependOnKeyOrder) {
  json a = json::parse(R"({"max_tokens":8,"messages":[{"role":"user","content":"x"}]})");
  json b = json::parse(R"({"messages":[{"content":"x","role":"user"}],"max_tokens":8})");
  EXPECT_EQ(make_request_body(a).hash, make_request_body(b).hash);
}

TEST(MakeRequestBody, HashChangesWithAnyOtherField) {
  json a = sample_body();
  json b = sample_body();
  b["max_tokens"] = 33;
  json c = sample_body();
  c["messages"][0]["content"] = "hi";
  EXPECT_NE(make_request_body(a).hash, make_request_body(b).hash);
  EXPECT_NE(make_request_body(a).hash, make_request_body(c).hash);
  EXPECT_NE(make_request_body(b).hash, make_request_body(c).hash);
}

TEST(MakeRequestBody, ReadsMaxTokens) {
  EXPECT_EQ(make_request_body(sample_body()).max_tokens, 32);
  EXPECT_EQ(make_request_body(json::parse(R"({"max_tokens":0})")).max_tokens, 0);
  EXPECT_EQ(make_request_body(json::parse(R"({"max_tokens":12.5})")).max_tokens, 12.5);
  EXPECT_EQ(make_request_body(json::parse(R"({"max_tokens":"64"})")).max_tokens, -1);
  EXPECT_EQ(make_request_body(json::parse(R"({"max_tokens":null})")).max_tokens, -1);
  EXPECT_EQ(make_request_body(json::parse(R"({"messages":[]})")).max_tokens, -1);
}

TEST(MakeRequestBody, NotesWhatTheSuiteChoseAboutStreaming) {
  RequestBody none = make_request_body(sample_body());
  EXPECT_FALSE(none.sets_stream);
  EXPECT_FALSE(none.sets_stream_options);
  EXPECT_FALSE(none.streamed_by_suite);

  RequestBody on = make_request_body(json::parse(R"({"stream":true})"));
  EXPECT_TRUE(on.sets_stream);
  EXPECT_TRUE(on.streamed_by_suite);
  EXPECT_FALSE(on.sets_stream_options);

  RequestBody off = make_request_body(json::parse(R"({"stream":false})"));
  EXPECT_TRUE(off.sets_stream);
  EXPECT_FALSE(off.streamed_by_suite);

  RequestBody odd = make_request_body(json::parse(R"({"stream":"yes"})"));  // not a boolean: not streamed
  EXPECT_TRUE(odd.sets_stream);
  EXPECT_FALSE(odd.streamed_by_suite);

  RequestBody options = make_request_body(json::parse(R"({"stream_options":{"include_usage":false}})"));
  EXPECT_FALSE(options.sets_stream);
  EXPECT_TRUE(options.sets_stream_options);
}

TEST(MakeRequestBody, EmptyBody) {
  RequestBody b = make_request_body(json::object());
  EXPECT_EQ(b.text, "{}");
  EXPECT_EQ(b.hash, stable_hash_hex("{}"));
  EXPECT_EQ(b.hash, request_hash(json::object()));

  RequestBody only_model = make_request_body(json{{"model", "m-a"}});
  EXPECT_EQ(only_model.text, "{}");
  EXPECT_EQ(only_model.hash, b.hash);
}

// ---------------------------------------------------------------- compose_request

TEST(ComposeRequest, PutsTheModelFirst) {
  RequestBody b = make_request_body(sample_body());
  std::string text = compose_request(b, "m-b", false, false);
  EXPECT_EQ(text.rfind("{\"model\":\"m-b\",", 0), 0u) << text;
  json expected = sample_body();
  expected["model"] = "m-b";
  EXPECT_EQ(parsed(text), expected);
}

TEST(ComposeRequest, ResultIsTheBodyPlusTheModel) {
  json body = sample_body();
  body.erase("model");
  RequestBody b = make_request_body(body);
  EXPECT_EQ(compose_request(b, "m-a", false, false), R"({"model":"m-a",)" + b.text.substr(1));
}

TEST(ComposeRequest, EscapesTheModelName) {
  RequestBody b = make_request_body(json::parse(R"({"max_tokens":1})"));
  std::string model = "we\"ird\\model/\u00e9\n";
  json out = parsed(compose_request(b, model, false, false));
  EXPECT_EQ(out["model"], model);
  EXPECT_EQ(out["max_tokens"], 1);
  EXPECT_EQ(out.size(), 2u);
}

TEST(ComposeRequest, AddsStreamingWhenAsked) {
  RequestBody b = make_request_body(sample_body());
  json out = parsed(compose_request(b, "m-a", true, true));
  EXPECT_EQ(out["stream"], true);
  EXPECT_EQ(out["stream_options"], json::parse(R"({"include_usage":true})"));
  json expected = sample_body();
  expected["stream"] = true;
  expected["stream_options"] = {{"include_usage", true}};
  EXPECT_EQ(out, expected);
  EXPECT_EQ(compose_request(b, "m-a", true, true).rfind("{\"model\":\"m-a\",", 0), 0u);
}

TEST(ComposeRequest, StreamWithoutUsage) {
  RequestBody b = make_request_body(sample_body());
  json out = parsed(compose_request(b, "m-a", true, false));
  EXPECT_EQ(out["stream"], true);
  EXPECT_FALSE(out.contains("stream_options"));
}

TEST(ComposeRequest, NoStreamingFieldsWhenNotStreaming) {
  RequestBody b = make_request_body(sample_body());
  json out = parsed(compose_request(b, "m-a", false, true));
  EXPECT_FALSE(out.contains("stream"));
  EXPECT_FALSE(out.contains("stream_options"));
}

TEST(ComposeRequest, KeepsTheSuitesStreamChoice) {
  // The suite said stream=false: the host adds neither field.
  RequestBody off = make_request_body(json::parse(R"({"stream":false,"max_tokens":4})"));
  std::string text = compose_request(off, "m-a", true, true);
  json out = parsed(text);
  EXPECT_EQ(out, json::parse(R"({"model":"m-a","stream":false,"max_tokens":4})"));

  // stream=true with its own options: kept as they are, nothing duplicated.
  RequestBody own = make_request_body(json::parse(R"({"stream":true,"stream_options":{"include_usage":false}})"));
  text = compose_request(own, "m-a", true, true);
  EXPECT_EQ(text, R"({"model":"m-a","stream":true,"stream_options":{"include_usage":false}})");
}

TEST(ComposeRequest, KeepsTheSuitesStreamOptions) {
  // Options without `stream`: the host turns streaming on but keeps the suite's options.
  RequestBody b = make_request_body(json::parse(R"({"stream_options":{"include_usage":false}})"));
  std::string text = compose_request(b, "m-a", true, true);
  EXPECT_EQ(text, R"({"model":"m-a","stream":true,"stream_options":{"include_usage":false}})");
  EXPECT_EQ(parsed(text), json::parse(R"({"model":"m-a","stream":true,"stream_options":{"include_usage":false}})"));
}

TEST(ComposeRequest, EmptyBody) {
  RequestBody b = make_request_body(json::object());
  EXPECT_EQ(compose_request(b, "m-a", false, false), R"({"model":"m-a"})");
  EXPECT_EQ(compose_request(b, "m-a", true, false), R"({"model":"m-a","stream":true})");
  EXPECT_EQ(compose_request(b, "m-a", true, true),
            R"({"model":"m-a","stream":true,"stream_options":{"include_usage":true}})");
  for (bool stream : {false, true})
    for (bool usage : {false, true}) parsed(compose_request(b, "m-a", stream, usage));
}

TEST(ComposeRequest, ADefaultRequestBodyComposesValidJson) {
  // A RequestBody never filled (text empty) must still give valid JSON.
  RequestBody b;
  EXPECT_EQ(compose_request(b, "m-a", false, false), R"({"model":"m-a"})");
}

TEST(ComposeRequest, NeverTwoModels) {
  RequestBody b = make_request_body(json::parse(R"({"model":"from-suite","n":1})"));
  std::string text = compose_request(b, "from-host", false, false);
  EXPECT_EQ(text, R"({"model":"from-host","n":1})");
  size_t first = text.find("\"model\"");
  EXPECT_EQ(text.find("\"model\"", first + 1), std::string::npos);
}

}  // namespace
}  // namespace shepherd
