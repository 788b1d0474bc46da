// turn_answer: the table llm:chat returns, built from the chat completion
// alone, so that a live answer and the same answer replayed from the store
// are one and the same value.
#include <gtest/gtest.h>

#include "conversation/turn_answer.h"

namespace shepherd {
namespace {

using nlohmann::json;

json completion_with(const json& message, const json& finish_reason = "stop") {
  return {{"id", "chatcmpl-1"},
          {"object", "chat.completion"},
          {"model", "m-a-2024"},
          {"choices", json::array({{{"index", 0}, {"message", message}, {"finish_reason", finish_reason}}})},
          {"usage", {{"prompt_tokens", 11}, {"completion_tokens", 7}, {"total_tokens", 18}}}};
}

TEST(TurnAnswer, TextAnswer) {
  json answer = turn_answer(completion_with({{"role", "assistant"}, {"content", "Paris."}}));
  EXPECT_EQ(answer["content"], "Paris.");
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":"Paris."})"));
  EXPECT_FALSE(answer.contains("tool_calls"));
  EXPECT_EQ(answer["finish_reason"], "stop");
  EXPECT_EQ(answer["model"], "m-a-2024");
  EXPECT_EQ(answer["usage"], json::parse(R"({"prompt_tokens":11,"completion_tokens":7,"total_tokens":18})"));
  EXPECT_EQ(answer.size(), 5u) << answer.dump();
}

TEST(TurnAnswer, MessageKeepsOnlyRoleAndContent) {
  // Provider extras (refusal, annotations, reasoning) never reach the next request.
  json answer = turn_answer(completion_with(
      {{"role", "assistant"}, {"content", "ok"}, {"refusal", nullptr}, {"annotations", json::array()},
       {"reasoning_content", "hmm"}}));
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":"ok"})"));
}

TEST(TurnAnswer, RoleIsAlwaysAssistant) {
  json answer = turn_answer(completion_with({{"content", "no role given"}}));
  EXPECT_EQ(answer["message"]["role"], "assistant");
  answer = turn_answer(completion_with({{"role", "system"}, {"content", "odd role"}}));
  EXPECT_EQ(answer["message"]["role"], "assistant");
}

TEST(TurnAnswer, ToolCallAnswer) {
  json message = json::parse(R"({
    "role": "assistant",
    "content": null,
    "tool_calls": [
      {"index": 0, "id": "call_1", "type": "function",
       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "extra": 1},
       "provider_specific": {"x": 1}},
      {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
    ]})");
  json answer = turn_answer(completion_with(message, "tool_calls"));
  EXPECT_FALSE(answer.contains("content")) << answer.dump();
  EXPECT_FALSE(answer["message"].contains("content")) << answer.dump();
  json calls = json::parse(R"([
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
  ])");
  EXPECT_EQ(answer["tool_calls"], calls);
  EXPECT_EQ(answer["message"], json({{"role", "assistant"}, {"tool_calls", calls}}));
  EXPECT_EQ(answer["finish_reason"], "tool_calls");
}

TEST(TurnAnswer, ToolCallWithEmptyContentHasNoContent) {
  json message = json::parse(R"({"role":"assistant","content":"",
    "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]})");
  json answer = turn_answer(completion_with(message, "tool_calls"));
  EXPECT_FALSE(answer.contains("content"));
  EXPECT_FALSE(answer["message"].contains("content"));
  EXPECT_EQ(answer["message"]["tool_calls"].size(), 1u);
}

TEST(TurnAnswer, ToolCallWithTextKeepsBoth) {
  json message = json::parse(R"({"role":"assistant","content":"Let me look.",
    "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]})");
  json answer = turn_answer(completion_with(message, "tool_calls"));
  EXPECT_EQ(answer["content"], "Let me look.");
  EXPECT_EQ(answer["message"]["content"], "Let me look.");
  EXPECT_EQ(answer["message"]["tool_calls"], answer["tool_calls"]);
}

TEST(TurnAnswer, ToolCallArgumentsGivenAsAnObjectBecomeJsonText) {
  json message = json::parse(R"({"role":"assistant",
    "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"b":[1,2],"a":"x"}}}]})");
  json answer = turn_answer(completion_with(message));
  const json& args = answer["tool_calls"][0]["function"]["arguments"];
  ASSERT_TRUE(args.is_string()) << answer.dump();
  EXPECT_EQ(json::parse(args.get<std::string>()), json::parse(R"({"a":"x","b":[1,2]})"));
  EXPECT_EQ(answer["message"]["tool_calls"][0]["function"]["arguments"], args);
}

TEST(TurnAnswer, ToolCallDefaults) {
  // No type: "function"; no arguments: ""; no id: none (the provider's omission stays visible).
  json message = json::parse(R"({"role":"assistant","tool_calls":[{"function":{"name":"f"}}]})");
  json answer = turn_answer(completion_with(message));
  EXPECT_EQ(answer["tool_calls"], json::parse(R"([{"type":"function","function":{"name":"f","arguments":""}}])"));

  message = json::parse(R"({"role":"assistant","tool_calls":[{"id":"c","type":"function",
                            "function":{"name":"f","arguments":null}}]})");
  answer = turn_answer(completion_with(message));
  EXPECT_EQ(answer["tool_calls"][0]["function"]["arguments"], "");
}

TEST(TurnAnswer, ContentPartsAreJoined) {
  json message = json::parse(R"({"role":"assistant","content":[
    {"type":"text","text":"Hello, "},
    {"type":"image_url","image_url":{"url":"http://x"}},
    {"type":"text","text":"world."}
  ]})");
  json answer = turn_answer(completion_with(message));
  EXPECT_EQ(answer["content"], "Hello, world.");
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":"Hello, world."})"));
}

TEST(TurnAnswer, ContentPartsWithoutTextGiveEmptyContent) {
  json message = json::parse(R"({"role":"assistant","content":[{"type":"image_url","image_url":{"url":"u"}}]})");
  json answer = turn_answer(completion_with(message));
  EXPECT_FALSE(answer.contains("content"));
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":""})"));
}

TEST(TurnAnswer, EmptyContentWithoutToolCalls) {
  json answer = turn_answer(completion_with({{"role", "assistant"}, {"content", ""}}));
  EXPECT_EQ(answer["content"], "");
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":""})"));

  answer = turn_answer(completion_with({{"role", "assistant"}, {"content", nullptr}}));
  EXPECT_FALSE(answer.contains("content"));
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":""})"));

  answer = turn_answer(completion_with({{"role", "assistant"}, {"tool_calls", json::array()}}));
  EXPECT_FALSE(answer.contains("tool_calls"));
  EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":""})"));
}

TEST(TurnAnswer, MissingChoices) {
  for (const char* text : {R"({"model":"m","usage":{"prompt_tokens":1}})", R"({"choices":[]})", R"({"choices":null})",
                           R"({"choices":{"0":{}}})", R"({"choices":[{"finish_reason":"length"}]})",
                           R"({"choices":[{"message":null}]})", "{}", "null", "[]", "\"text\"", "42"}) {
    json answer = turn_answer(json::parse(text));
    EXPECT_EQ(answer["message"], json::parse(R"({"role":"assistant","content":""})")) << text;
    EXPECT_FALSE(answer.contains("content")) << text;
    EXPECT_FALSE(answer.contains("tool_calls")) << text;
  }
  json answer = turn_answer(json::parse(R"({"model":"m","usage":{"prompt_tokens":1}})"));
  EXPECT_EQ(answer["model"], "m");
  EXPECT_EQ(answer["usage"], json::parse(R"({"prompt_tokens":1})"));
  answer = turn_answer(json::parse(R"({"choices":[{"finish_reason":"length"}]})"));
  EXPECT_EQ(answer["finish_reason"], "length");
}

TEST(TurnAnswer, OnlyTheFirstChoiceCounts) {
  json c = completion_with({{"role", "assistant"}, {"content", "first"}});
  c["choices"].push_back({{"index", 1}, {"message", {{"role", "assistant"}, {"content", "second"}}}});
  EXPECT_EQ(turn_answer(c)["content"], "first");
}

TEST(TurnAnswer, UsageModelAndFinishReasonPassThrough) {
  json c = completion_with({{"role", "assistant"}, {"content", "x"}}, "length");
  c["usage"] = json::parse(R"({"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,
                               "prompt_tokens_details":{"cached_tokens":2}})");
  c["model"] = "served-model";
  json answer = turn_answer(c);
  EXPECT_EQ(answer["usage"], c["usage"]);
  EXPECT_EQ(answer["model"], "served-model");
  EXPECT_EQ(answer["finish_reason"], "length");
}

TEST(TurnAnswer, AbsentOrMalformedMetadataIsLeftOut) {
  json c = completion_with({{"role", "assistant"}, {"content", "x"}}, nullptr);
  c["usage"] = "lots";
  c["model"] = 7;
  json answer = turn_answer(c);
  EXPECT_FALSE(answer.contains("finish_reason"));
  EXPECT_FALSE(answer.contains("usage"));
  EXPECT_FALSE(answer.contains("model"));
  EXPECT_EQ(answer["content"], "x");

  c.erase("usage");
  c.erase("model");
  c["choices"][0]["finish_reason"] = 3;
  answer = turn_answer(c);
  EXPECT_EQ(answer.size(), 2u) << answer.dump();  // content and message
}

TEST(TurnAnswer, SameCompletionSameAnswer) {
  // A replayed turn is parsed from the stored text: it must give what the live one gave.
  json c = completion_with(json::parse(R"({"role":"assistant","content":"a",
    "tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":{"x":1}}}]})"));
  EXPECT_EQ(turn_answer(c), turn_answer(json::parse(c.dump())));
}

}  // namespace
}  // namespace shepherd
