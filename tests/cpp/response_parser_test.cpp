// parse_response: what the policies need out of one chat-completion answer.
#include "engine/response_parser.h"

#include <ctime>
#include <string>

#include <gtest/gtest.h>

namespace shepherd {
namespace {

using nlohmann::json;

HttpResponse response(long status, std::string body,
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

std::string http_date(std::time_t t) {
  char buf[64];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

TEST(ResponseParser, CompletionFields) {
  const std::string body = R"({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
      {"index": 0, "message": {"role": "assistant", "content": "The answer is 4."}, "finish_reason": "stop"},
      {"index": 1, "message": {"role": "assistant", "content": "second choice"}, "finish_reason": "length"}
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
  })";
  ParsedResponse p = parse_response(response(200, body));
  EXPECT_TRUE(p.is_completion);
  EXPECT_EQ(p.content, "The answer is 4.");
  EXPECT_EQ(p.model, "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(p.finish_reason, "stop");
  EXPECT_EQ(p.prompt_tokens, 12);
  EXPECT_EQ(p.completion_tokens, 5);
  EXPECT_EQ(json::parse(p.usage_json), json::parse(R"({"prompt_tokens":12,"completion_tokens":5,"total_tokens":17})"));
  EXPECT_TRUE(p.error_code.empty());
  EXPECT_TRUE(p.error_message.empty());
  EXPECT_EQ(p.retry_after_ms, -1);
  ASSERT_TRUE(p.body.is_object());
  EXPECT_EQ(p.body["id"], "chatcmpl-1");
}

TEST(ResponseParser, UsageIsOptionalAndPartial) {
  ParsedResponse none = parse_response(
      response(200, R"({"model":"m","choices":[{"message":{"content":"x"},"finish_reason":"stop"}]})"));
  EXPECT_TRUE(none.is_completion);
  EXPECT_EQ(none.prompt_tokens, -1);
  EXPECT_EQ(none.completion_tokens, -1);
  EXPECT_TRUE(none.usage_json.empty());

  ParsedResponse partial = parse_response(
      response(200, R"({"model":"m","choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":7}})"));
  EXPECT_EQ(partial.prompt_tokens, 7);
  EXPECT_EQ(partial.completion_tokens, -1);
  EXPECT_EQ(partial.finish_reason, "");

  ParsedResponse wrong = parse_response(
      response(200, R"({"model":"m","choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":"7"}})"));
  EXPECT_EQ(wrong.prompt_tokens, -1);
}

TEST(ResponseParser, ErrorObjectWithCode) {
  ParsedResponse p = parse_response(response(
      429, R"({"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}})"));
  EXPECT_EQ(p.error_code, "insufficient_quota");
  EXPECT_EQ(p.error_message, "You exceeded your current quota");
  EXPECT_FALSE(p.is_completion);
  EXPECT_EQ(p.content, "");

  ParsedResponse code_wins = parse_response(
      response(400, R"({"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}})"));
  EXPECT_EQ(code_wins.error_code, "context_length_exceeded");
}

TEST(ResponseParser, ErrorObjectWithTypeOnly) {
  ParsedResponse null_code = parse_response(
      response(401, R"({"error":{"message":"Incorrect API key","type":"invalid_request_error","code":null}})"));
  EXPECT_EQ(null_code.error_code, "invalid_request_error");
  EXPECT_EQ(null_code.error_message, "Incorrect API key");

  ParsedResponse no_code = parse_response(response(529, R"({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}})"));
  EXPECT_EQ(no_code.error_code, "overloaded_error");
  EXPECT_EQ(no_code.error_message, "Overloaded");

  ParsedResponse numeric = parse_response(response(429, R"({"error":{"code":429,"message":"slow down"}})"));
  EXPECT_EQ(numeric.error_code, "429");

  ParsedResponse text = parse_response(response(500, R"({"error":"upstream failed"})"));
  EXPECT_EQ(text.error_code, "");
  EXPECT_EQ(text.error_message, "upstream failed");
}

TEST(ResponseParser, RetryAfterMsBeatsRetryAfter) {
  ParsedResponse p = parse_response(response(429, R"({"error":{"code":"rate_limit_exceeded"}})",
                                             {{"retry-after", "30"}, {"retry-after-ms", "1500"}}));
  EXPECT_EQ(p.retry_after_ms, 1500);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after-ms", "250.2"}})), 251);  // rounded up
  // An unreadable retry-after-ms falls back to Retry-After.
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after-ms", "soon"}, {"retry-after", "2"}})), 2000);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after-ms", "-5"}, {"retry-after", "2"}})), 2000);
}

TEST(ResponseParser, RetryAfterSeconds) {
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after", "7"}})), 7000);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after", "0"}})), 0);
  EXPECT_EQ(parse_retry_after_ms(response(503, "", {{"retry-after", "1.5"}})), 1500);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {})), -1);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after", "later"}})), -1);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after", "-3"}})), -1);
}

TEST(ResponseParser, RetryAfterHttpDate) {
  std::time_t now = std::time(nullptr);
  long in_two_minutes = parse_retry_after_ms(response(429, "", {{"retry-after", http_date(now + 120)}}));
  EXPECT_GE(in_two_minutes, 118'000);
  EXPECT_LE(in_two_minutes, 120'000);
  EXPECT_EQ(in_two_minutes % 1000, 0);
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after", http_date(now - 3600)}})), 0);  // past: now
  EXPECT_EQ(parse_retry_after_ms(response(429, "", {{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}})), 0);
}

TEST(ResponseParser, MalformedJson) {
  ParsedResponse p = parse_response(response(200, R"({"choices":[{"message":{"content":"cut off)"));
  EXPECT_TRUE(p.body.is_discarded());
  EXPECT_FALSE(p.is_completion);
  EXPECT_EQ(p.content, "");
  EXPECT_EQ(p.model, "");
  EXPECT_EQ(p.prompt_tokens, -1);

  ParsedResponse html = parse_response(response(502, "<html><body>Bad Gateway</body></html>", {{"retry-after", "3"}}));
  EXPECT_TRUE(html.body.is_discarded());
  EXPECT_EQ(html.retry_after_ms, 3000);

  ParsedResponse empty = parse_response(response(200, ""));
  EXPECT_TRUE(empty.body.is_discarded());
  EXPECT_FALSE(empty.is_completion);
}

TEST(ResponseParser, NonObjectJson) {
  for (const char* body : {"[1,2,3]", "\"just a string\"", "42", "null", "true"}) {
    SCOPED_TRACE(body);
    ParsedResponse p = parse_response(response(200, body));
    EXPECT_FALSE(p.body.is_discarded());
    EXPECT_FALSE(p.body.is_object());
    EXPECT_FALSE(p.is_completion);
    EXPECT_EQ(p.model, "");
    EXPECT_EQ(p.error_code, "");
  }
}

TEST(ResponseParser, OddShapesAreNotCompletions) {
  for (const char* body : {
           R"({"model":"m","choices":[]})",
           R"({"model":"m","choices":{}})",
           R"({"model":"m","choices":["text"]})",
           R"({"model":"m","choices":[{"finish_reason":"stop"}]})",
           R"({"model":"m","choices":[{"message":"hi"}]})",
           R"({"model":"m","choices":[{"message":{"role":"assistant"}}]})",
           R"({"model":"m","choices":[{"message":{"content":42}}]})",
       }) {
    SCOPED_TRACE(body);
    ParsedResponse p = parse_response(response(200, body));
    EXPECT_FALSE(p.is_completion);
    EXPECT_EQ(p.content, "");
    EXPECT_EQ(p.model, "m");
  }
}

TEST(ResponseParser, NullContentWithToolCalls) {
  ParsedResponse tools = parse_response(response(200, R"({
    "model": "m",
    "choices": [{"message": {"role": "assistant", "content": null,
                             "tool_calls": [{"id": "call_1", "type": "function",
                                             "function": {"name": "f", "arguments": "{}"}}]},
                 "finish_reason": "tool_calls"}]
  })"));
  EXPECT_TRUE(tools.is_completion);
  EXPECT_EQ(tools.content, "");
  EXPECT_EQ(tools.finish_reason, "tool_calls");

  ParsedResponse plain_null = parse_response(
      response(200, R"({"model":"m","choices":[{"message":{"role":"assistant","content":null},"finish_reason":"content_filter"}]})"));
  EXPECT_FALSE(plain_null.is_completion);
  EXPECT_EQ(plain_null.finish_reason, "content_filter");
}

TEST(ResponseParser, TransportFailure) {
  HttpResponse r = response(0, R"({"choices":[{"message":{"content":"partial"}}]})", {{"retry-after", "4"}});
  r.transport = Transport::reset;
  ParsedResponse p = parse_response(r);
  EXPECT_TRUE(p.body.is_discarded());
  EXPECT_FALSE(p.is_completion);
  EXPECT_EQ(p.content, "");
  EXPECT_EQ(p.retry_after_ms, 4000);

  HttpResponse timeout = response(200, R"({"model":"m","choices":[{"message":{"content":"x"}}]})");
  timeout.transport = Transport::timeout;  // a status, then the deadline
  EXPECT_FALSE(parse_response(timeout).is_completion);
}

}  // namespace
}  // namespace shepherd

namespace shepherd {
TEST(RetryAfter, AbsurdValuesAreClampedToADay) {
  HttpResponse r;
  r.status = 429;
  r.headers = {{"retry-after", "100000000000"}};
  EXPECT_EQ(parse_retry_after_ms(r), 86'400'000);
  r.headers = {{"retry-after-ms", "1e300"}};
  EXPECT_EQ(parse_retry_after_ms(r), 86'400'000);
  r.headers = {{"retry-after", "inf"}};
  EXPECT_EQ(parse_retry_after_ms(r), -1);
}
}  // namespace shepherd
