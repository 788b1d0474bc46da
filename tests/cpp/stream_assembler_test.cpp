// StreamAssembler: server-sent chat.completion.chunk events assembled into the
// one chat.completion JSON object the engine already reads. Every stream here
// is also fed in two pieces split at every byte boundary, and one byte at a
// time; all three must give the identical result.
#include "engine/stream_assembler.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "engine/response_parser.h"

namespace shepherd {
namespace {

using nlohmann::json;

// Sanitizers slow parsing thirtyfold: there the speed test checks results only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kTimed = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
constexpr bool kTimed = false;
#else
constexpr bool kTimed = true;
#endif
#else
constexpr bool kTimed = true;
#endif

// ---- Recorded streams (exact bytes as the providers sent them) --------------

// openai/openai-python @ e43b4224, .inline-snapshot/external/e2aad469b71d….bin
// (gpt-4o-2024-08-06 recorded by tests/lib/chat/test_completions_streaming.py::test_parse_nothing;
// stream_options.include_usage: the usage chunk has "choices": []).
constexpr std::string_view kOpenAiText = R"sse(data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":"I'm"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" unable"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" to"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" provide"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" real"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":"-time"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" weather"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" updates"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" To"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" get"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" current"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" weather"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" in"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" San"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" Francisco"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":","},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" I"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" recommend"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" checking"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" a"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" reliable"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" weather"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" website"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" or"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" a"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" weather"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":" app"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"content":"."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion.chunk","created":1727346168,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[],"usage":{"prompt_tokens":14,"completion_tokens":30,"total_tokens":44,"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

)sse";

// openai/openai-python @ e43b4224, .inline-snapshot/external/f82268f2fefd….bin
// (test_parse_multiple_pydantic_tools: two parallel tool calls, index 0 then index 1).
constexpr std::string_view kOpenAiParallelTools = R"sse(data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_JMW1whyEaYG438VE1OIflxA2","type":"function","function":{"name":"GetWeatherArgs","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\": "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Edinb"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"urgh"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\", \"c"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ountry"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\": \""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"GB\", "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"units"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\": \""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"c\"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_DNYTawLBoN8fj3KN6qU9N1Ou","type":"function","function":{"name":"get_stock_price","arguments":""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"ti"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"cker\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":": \"AAP"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"L\", "}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"exch"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"ange\":"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" \"NA"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"SDAQ\""}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"}"}}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}

data: {"id":"chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63","object":"chat.completion.chunk","created":1727346178,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[],"usage":{"prompt_tokens":149,"completion_tokens":60,"total_tokens":209,"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

)sse";

// openai/openai-python @ e43b4224, .inline-snapshot/external/173417d55340….bin
// (test_parse_pydantic_model_refusal: delta.refusal pieces, content null).
constexpr std::string_view kOpenAiRefusal = R"sse(data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":"I'm"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" sorry"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":","},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" I"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" can't"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" assist"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" with"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" that"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":" request"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{"refusal":"."},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7","object":"chat.completion.chunk","created":1727346172,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[],"usage":{"prompt_tokens":79,"completion_tokens":11,"total_tokens":90,"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

)sse";

// openai/openai-python @ e43b4224, .inline-snapshot/external/a491adda08c3….bin
// (test_parse_pydantic_model_multiple_choices: n=3, choices interleaved).
constexpr std::string_view kOpenAiThreeChoices = R"sse(data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"{\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"{\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"{\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"city"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"city"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"city"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"\":\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"\":\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"\":\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"San"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"San"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"San"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":" Francisco"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":" Francisco"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":" Francisco"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"\",\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"\",\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"\",\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"temperature"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"\":"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"temperature"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"\":"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"temperature"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"\":"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"65"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":",\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"61"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":",\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"59"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":",\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"units"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"units"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"units"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"\":\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"\":\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"\":\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"f"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"f"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"f"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{"content":"\"}"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{"content":"\"}"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{"content":"\"}"},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":1,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[{"index":2,"delta":{},"logprobs":null,"finish_reason":"stop"}]}

data: {"id":"chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq","object":"chat.completion.chunk","created":1727346170,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_b40fb1c6fb","choices":[],"usage":{"prompt_tokens":79,"completion_tokens":42,"total_tokens":121,"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

)sse";

// openai/openai-python @ e43b4224, .inline-snapshot/external/4cc50a6135d2….bin
// (test_parse_max_tokens_reached: finish_reason "length").
constexpr std::string_view kOpenAiLength = R"sse(data: {"id":"chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh","object":"chat.completion.chunk","created":1727346171,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_7568d46099","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh","object":"chat.completion.chunk","created":1727346171,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_7568d46099","choices":[{"index":0,"delta":{"content":"{\""},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh","object":"chat.completion.chunk","created":1727346171,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_7568d46099","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}]}

data: {"id":"chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh","object":"chat.completion.chunk","created":1727346171,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_7568d46099","choices":[],"usage":{"prompt_tokens":79,"completion_tokens":1,"total_tokens":80,"completion_tokens_details":{"reasoning_tokens":0}}}

data: [DONE]

)sse";

// neuraxes/neurouter @ 0a40e20, internal/data/upstream/deepseek/api_test.go
// (deepseek-reasoner: reasoning_content deltas, then content; usage on the finish chunk; no usage chunk).
constexpr std::string_view kDeepSeekReasoning = R"sse(data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":""},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Hmm, the user just said \"Hello!\" with an exclamation mark, which suggests a friendly and enthusiastic tone."},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" This is a simple greeting, so no complex analysis is needed."},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":" \n\n"},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"The best response would be to mirror their energy with an equally warm and welcoming reply"},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"."},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"Hello","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"!","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" 😊","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" It","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"'s","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" wonderful","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" to","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" meet","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":" you","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"!","reasoning_content":null},"logprobs":null,"finish_reason":null}]}

data: {"id":"f802c271-d4da-4773-b8b3-b1e4dfbf14f3","object":"chat.completion.chunk","created":1759299469,"model":"deepseek-reasoner","system_fingerprint":"fp_ffc7281d48_prod0820_fp8_kvcache","choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":6,"completion_tokens":169,"total_tokens":175,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":117},"prompt_cache_hit_tokens":1,"prompt_cache_miss_tokens":5}}

data: [DONE]

)sse";

// vercel/ai @ ed857f50, packages/groq/src/__fixtures__/groq-tool-call.chunks.txt,
// recorded as JSON lines; framed here as the "data: …\n\n" events they arrived in, plus [DONE]
// (current Groq: usage both at the top level and under x_groq).
constexpr std::string_view kGroqToolCall = R"sse(data: {"id":"chatcmpl-b610d559-f156-4aca-8827-24b4fe6af54f","object":"chat.completion.chunk","created":1770770843,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_f8b414701e","choices":[{"index":0,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_01kh52nj5yfcat8hrmvrk2j2hj","seed":689520654}}

data: {"id":"chatcmpl-b610d559-f156-4aca-8827-24b4fe6af54f","object":"chat.completion.chunk","created":1770770843,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_f8b414701e","choices":[{"index":0,"delta":{"tool_calls":[{"id":"tk85n1k4m","type":"function","function":{"name":"weather","arguments":"{}"},"index":0}]},"logprobs":null,"finish_reason":null}]}

data: {"id":"chatcmpl-b610d559-f156-4aca-8827-24b4fe6af54f","object":"chat.completion.chunk","created":1770770843,"model":"llama-3.3-70b-versatile","system_fingerprint":"fp_f8b414701e","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"x_groq":{"id":"req_01kh52nj5yfcat8hrmvrk2j2hj","usage":{"queue_time":0.041520249,"prompt_tokens":210,"prompt_time":0.010407901,"completion_tokens":15,"completion_time":0.046601227,"total_tokens":225,"total_time":0.057009128}},"usage":{"queue_time":0.041520249,"prompt_tokens":210,"prompt_time":0.010407901,"completion_tokens":15,"completion_time":0.046601227,"total_tokens":225,"total_time":0.057009128}}

data: [DONE]

)sse";

// vercel/ai @ ed857f50, packages/groq/src/groq-chat-language-model.test.ts ("should stream tool call
// deltas when tool call arguments are passed in the first chunk"): older Groq, usage only under x_groq.
constexpr std::string_view kGroqXGroqUsage = R"sse(data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_O17Uplv4lJvD6DVdIvFFeRMw","type":"function","function":{"name":"test-tool","arguments":"{\""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"va"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"lue"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\":\""}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"Spark"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"le"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":" Day"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1711357598,"model":"gemma2-9b-it","system_fingerprint":"fp_3bc1b5746c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"}"}}]},"finish_reason":null}]}

data: {"id":"chatcmpl-e7f8e220-656c-4455-a132-dacfc1370798","object":"chat.completion.chunk","created":1729171479,"model":"gemma2-9b-it","system_fingerprint":"fp_10c08bf97d","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"x_groq":{"id":"req_01jadadp0femyae9kav1gpkhe8","usage":{"queue_time":0.061348671,"prompt_tokens":18,"prompt_time":0.000211569,"completion_tokens":439,"completion_time":0.798181818,"total_tokens":457,"total_time":0.798393387}}}

data: [DONE]

)sse";

// ---- Streams shaped after providers' documentation --------------------------

// OpenRouter (openrouter.ai/docs/api-reference/streaming): ": OPENROUTER
// PROCESSING" comments while the model is queued and between chunks, reasoning
// in delta.reasoning, usage with cost in the last chunk.
constexpr std::string_view kOpenRouterReasoning =
    ": OPENROUTER PROCESSING\n\n"
    ": OPENROUTER PROCESSING\n\n"
    R"(data: {"id":"gen-1747-abc","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":"chat.completion.chunk","created":1747000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Two plus"},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]})"
    "\n\n"
    ": OPENROUTER PROCESSING\n\n"
    R"(data: {"id":"gen-1747-abc","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":"chat.completion.chunk","created":1747000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":" two."},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]})"
    "\n\n"
    R"(data: {"id":"gen-1747-abc","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":"chat.completion.chunk","created":1747000000,"choices":[{"index":0,"delta":{"role":"assistant","content":"4"},"finish_reason":"stop","native_finish_reason":"stop","logprobs":null}]})"
    "\n\n"
    R"(data: {"id":"gen-1747-abc","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":"chat.completion.chunk","created":1747000000,"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}],"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16,"cost":0.0000123}})"
    "\n\n"
    "data: [DONE]\n\n";

// OpenRouter's documented mid-stream error ("Handling Errors During Streaming"):
// the error at the top level, the choice closed with finish_reason "error".
constexpr std::string_view kOpenRouterMidStreamError =
    ": OPENROUTER PROCESSING\n\n"
    R"(data: {"id":"cmpl-abc123","object":"chat.completion.chunk","created":1234567890,"model":"gpt-3.5-turbo","provider":"openai","choices":[{"index":0,"delta":{"role":"assistant","content":"Half an ans"},"finish_reason":null}]})"
    "\n\n"
    R"(data: {"id":"cmpl-abc123","object":"chat.completion.chunk","created":1234567890,"model":"gpt-3.5-turbo","provider":"openai","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]})"
    "\n\n";

// The bare shape (OpenRouter before the unified form, vLLM and others).
constexpr std::string_view kBareMidStreamError =
    R"(data: {"id":"gen-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"partial"},"finish_reason":null}]})"
    "\n\n"
    R"(data: {"error": {"code": 502, "message": "Upstream error from Together: Service unavailable"}})"
    "\n\n";

// OpenAI itself (coder/aibridge fixtures/openai/chatcompletions/stream_error.txtar,
// recorded from gpt-4.1): four chunks, then the error as a data event, then EOF.
constexpr std::string_view kOpenAiMidStreamError =
    R"(data: {"id":"chatcmpl-BwoiPTGRbKkY5rncfaM0s9KtWrq5N","object":"chat.completion.chunk","created":1753357673,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_51e1070cf2","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-BwoiPTGRbKkY5rncfaM0s9KtWrq5N","object":"chat.completion.chunk","created":1753357673,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_51e1070cf2","choices":[{"index":0,"delta":{"content":"The"},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-BwoiPTGRbKkY5rncfaM0s9KtWrq5N","object":"chat.completion.chunk","created":1753357673,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_51e1070cf2","choices":[{"index":0,"delta":{"content":" question"},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"id":"chatcmpl-BwoiPTGRbKkY5rncfaM0s9KtWrq5N","object":"chat.completion.chunk","created":1753357673,"model":"gpt-4.1-2025-04-14","service_tier":"default","system_fingerprint":"fp_51e1070cf2","choices":[{"index":0,"delta":{"content":" \""},"logprobs":null,"finish_reason":null}],"usage":null})"
    "\n\n"
    R"(data: {"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error"}})"
    "\n\n";

// Anthropic's native streaming (docs.anthropic.com/en/api/messages-streaming,
// "Error events"): named events; an overloaded error arrives as event: error.
constexpr std::string_view kAnthropicError =
    "event: message_start\n"
    R"(data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-3-5-sonnet-20241022", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "output_tokens": 1}}})"
    "\n\n"
    "event: ping\n"
    R"(data: {"type": "ping"})"
    "\n\n"
    "event: error\n"
    R"(data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})"
    "\n\n";

// ---- Helpers -----------------------------------------------------------------

std::string describe(const AssembledStream& r) {
  return "complete=" + std::to_string(r.complete) + " error=[" + r.error + "] body=[" +
         r.body.substr(0, 300) + "]";
}

bool same(const AssembledStream& a, const AssembledStream& b) {
  return a.complete == b.complete && a.body == b.body && a.error == b.error;
}

// Assembles `stream` fed whole, then in two pieces split at every byte
// boundary, then one byte at a time, and checks the results are identical.
// Streams beyond `every_split_limit` bytes (the 100,000-deep and the 5 MB
// ones) are split at a stride instead: every boundary would be quadratic.
AssembledStream assemble_every_way(std::string_view stream, size_t max_body_bytes = 8u << 20,
                                   size_t every_split_limit = 64u << 10) {
  const AssembledStream whole = assemble_stream(stream, max_body_bytes);
  const size_t stride = stream.size() <= every_split_limit ? 1 : stream.size() / 97 + 1;
  for (size_t cut = 0; cut <= stream.size(); cut += stride) {
    StreamAssembler two(max_body_bytes);
    two.feed(stream.substr(0, cut));
    two.feed(stream.substr(cut));
    const AssembledStream r = two.finish();
    if (!same(r, whole)) {
      ADD_FAILURE() << "split at byte " << cut << " differs:\n  " << describe(r) << "\n  whole: "
                    << describe(whole);
      break;
    }
  }
  StreamAssembler bytewise(max_body_bytes);
  for (char c : stream) bytewise.feed(std::string_view(&c, 1));
  const AssembledStream r = bytewise.finish();
  EXPECT_TRUE(same(r, whole)) << "byte at a time:\n  " << describe(r) << "\n  whole: "
                              << describe(whole);
  return whole;
}

json body_of(const AssembledStream& r) {
  EXPECT_FALSE(r.body.empty()) << describe(r);
  json body = json::parse(r.body, nullptr, false);
  EXPECT_FALSE(body.is_discarded()) << "body is not valid JSON: " << r.body.substr(0, 300);
  return body;
}

ParsedResponse parsed(const AssembledStream& r) {
  HttpResponse response;
  response.status = 200;
  response.body = r.body;
  return parse_response(response);
}

std::string with_line_endings(std::string_view stream, std::string_view eol) {
  std::string out;
  for (char c : stream) {
    if (c == '\n') out += eol;
    else out += c;
  }
  return out;
}

// One data event per chunk object.
std::string sse(const std::vector<std::string>& chunks, bool done = true) {
  std::string out;
  for (const auto& c : chunks) out += "data: " + c + "\n\n";
  if (done) out += "data: [DONE]\n\n";
  return out;
}

std::string content_chunk(std::string_view content_json, int index = 0) {
  return R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":)" +
         std::to_string(index) + R"(,"delta":{"content":)" + std::string(content_json) +
         R"(},"finish_reason":null}]})";
}

std::string finish_chunk(std::string_view reason = "stop", int index = 0) {
  return R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":)" +
         std::to_string(index) + R"(,"delta":{},"finish_reason":")" + std::string(reason) + R"("}]})";
}

// ---- Recorded streams, assembled ----------------------------------------------

TEST(StreamAssembler, OpenAiTextWithUsageChunk) {
  const AssembledStream r = assemble_every_way(kOpenAiText);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(body_of(r), json::parse(R"({
    "id": "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL", "object": "chat.completion", "created": 1727346168,
    "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_5050236cbd",
    "choices": [{"index": 0, "message": {"role": "assistant",
      "content": "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, I recommend checking a reliable weather website or a weather app."},
      "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 14, "completion_tokens": 30, "total_tokens": 44,
              "completion_tokens_details": {"reasoning_tokens": 0}}})"));
  // Keys in the order a non-streamed answer has them.
  EXPECT_EQ(r.body.rfind(R"({"id":"chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL","object":"chat.completion",)", 0), 0u);

  // The rest of the engine reads it exactly as it reads a non-streamed answer.
  const ParsedResponse p = parsed(r);
  EXPECT_TRUE(p.is_completion);
  EXPECT_EQ(p.model, "gpt-4o-2024-08-06");
  EXPECT_EQ(p.finish_reason, "stop");
  EXPECT_EQ(p.prompt_tokens, 14);
  EXPECT_EQ(p.completion_tokens, 30);
  EXPECT_TRUE(p.error_code.empty());
}

TEST(StreamAssembler, OpenAiTwoParallelToolCalls) {
  const AssembledStream r = assemble_every_way(kOpenAiParallelTools);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(body_of(r), json::parse(R"({
    "id": "chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63", "object": "chat.completion", "created": 1727346178,
    "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_5050236cbd",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
        {"id": "call_JMW1whyEaYG438VE1OIflxA2", "type": "function",
         "function": {"name": "GetWeatherArgs", "arguments": "{\"city\": \"Edinburgh\", \"country\": \"GB\", \"units\": \"c\"}"}},
        {"id": "call_DNYTawLBoN8fj3KN6qU9N1Ou", "type": "function",
         "function": {"name": "get_stock_price", "arguments": "{\"ticker\": \"AAPL\", \"exchange\": \"NASDAQ\"}"}}]},
      "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 149, "completion_tokens": 60, "total_tokens": 209,
              "completion_tokens_details": {"reasoning_tokens": 0}}})"));
  const ParsedResponse p = parsed(r);
  EXPECT_TRUE(p.is_completion);  // a tool call answers with no text
  EXPECT_EQ(p.finish_reason, "tool_calls");
}

TEST(StreamAssembler, OpenAiThreeInterleavedChoicesInIndexOrder) {
  const AssembledStream r = assemble_every_way(kOpenAiThreeChoices);
  EXPECT_TRUE(r.complete);
  const json body = body_of(r);
  ASSERT_EQ(body["choices"].size(), 3u);
  const char* temperatures[] = {"65", "61", "59"};
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["message"]["content"],
              std::string(R"({"city":"San Francisco","temperature":)") + temperatures[i] +
                  R"(,"units":"f"})");
    EXPECT_EQ(body["choices"][i]["finish_reason"], "stop");
  }
}

TEST(StreamAssembler, OpenAiRefusal) {
  const AssembledStream r = assemble_every_way(kOpenAiRefusal);
  EXPECT_TRUE(r.complete);
  const json message = body_of(r)["choices"][0]["message"];
  EXPECT_EQ(message["refusal"], "I'm sorry, I can't assist with that request.");
  EXPECT_EQ(message["content"], "");  // no content and no tool calls
  EXPECT_FALSE(message.contains("tool_calls"));
}

TEST(StreamAssembler, OpenAiLengthFinish) {
  const AssembledStream r = assemble_every_way(kOpenAiLength);
  EXPECT_TRUE(r.complete);
  const json body = body_of(r);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "{\"");
  EXPECT_EQ(body["usage"]["completion_tokens"], 1);
}

TEST(StreamAssembler, DeepSeekReasoningContent) {
  const AssembledStream r = assemble_every_way(kDeepSeekReasoning);
  EXPECT_TRUE(r.complete);
  const json body = body_of(r);
  EXPECT_EQ(body["model"], "deepseek-reasoner");
  const json& message = body["choices"][0]["message"];
  EXPECT_EQ(message["content"], "Hello! \xF0\x9F\x98\x8A It's wonderful to meet you!");
  EXPECT_EQ(message["reasoning_content"],
            "Hmm, the user just said \"Hello!\" with an exclamation mark, which suggests a friendly "
            "and enthusiastic tone. This is a simple greeting, so no complex analysis is needed. "
            "\n\nThe best response would be to mirror their energy with an equally warm and "
            "welcoming reply.");
  EXPECT_EQ(body["usage"]["completion_tokens_details"]["reasoning_tokens"], 117);
}

TEST(StreamAssembler, GroqUsageUnderXGroq) {
  const AssembledStream r = assemble_every_way(kGroqXGroqUsage);
  EXPECT_TRUE(r.complete);
  const json body = body_of(r);
  EXPECT_EQ(body["usage"], json::parse(R"({"queue_time":0.061348671,"prompt_tokens":18,
      "prompt_time":0.000211569,"completion_tokens":439,"completion_time":0.798181818,
      "total_tokens":457,"total_time":0.798393387})"));
  EXPECT_EQ(body["system_fingerprint"], "fp_3bc1b5746c");  // the first chunk's
  const json& call = body["choices"][0]["message"]["tool_calls"][0];
  EXPECT_EQ(call["id"], "call_O17Uplv4lJvD6DVdIvFFeRMw");
  EXPECT_EQ(call["function"]["name"], "test-tool");
  EXPECT_EQ(call["function"]["arguments"], R"({"value":"Sparkle Day"})");
  EXPECT_EQ(parsed(r).prompt_tokens, 18);
}

// Found writing the parser fuzz target's invariants: usage counts went through as sent, so
// 9223372036854775807 + 1 overflowed where task_worker adds the two (undefined
// behaviour) and a negative count reached the key pool's token budget.
TEST(StreamAssembler, UsageCountsOutOfRangeAreUnknown) {
  struct Case {
    const char* counts;
    int64_t prompt, completion;
  };
  for (const Case& c : {Case{R"("prompt_tokens":9223372036854775807,"completion_tokens":1)", -1, 1},
                        Case{R"("prompt_tokens":-5,"completion_tokens":18446744073709551615)", -1, -1},
                        Case{R"("prompt_tokens":9007199254740992,"completion_tokens":1e300)", -1, -1},
                        Case{R"("prompt_tokens":9007199254740991,"completion_tokens":0)", 9007199254740991, 0}}) {
    const std::string usage =
        std::string(R"({"id":"c1","object":"chat.completion.chunk","created":7,"model":"m","choices":[],"usage":{)") +
        c.counts + "}}";
    const AssembledStream r = assemble_every_way(sse({content_chunk(R"("hi")"), finish_chunk(), usage}));
    ASSERT_TRUE(r.complete) << describe(r);
    const ParsedResponse p = parsed(r);
    EXPECT_EQ(p.prompt_tokens, c.prompt) << c.counts;
    EXPECT_EQ(p.completion_tokens, c.completion) << c.counts;
  }
}

TEST(StreamAssembler, GroqToolCallWithUsageInBothPlaces) {
  const AssembledStream r = assemble_every_way(kGroqToolCall);
  EXPECT_TRUE(r.complete);
  const json body = body_of(r);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 210);
  EXPECT_EQ(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "{}");
  EXPECT_TRUE(body["choices"][0]["message"]["content"].is_null());
}

TEST(StreamAssembler, OpenRouterCommentsAndReasoning) {
  const AssembledStream r = assemble_every_way(kOpenRouterReasoning);
  EXPECT_TRUE(r.complete);
  const json body = body_of(r);
  EXPECT_EQ(body["id"], "gen-1747-abc");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "4");
  EXPECT_EQ(body["choices"][0]["message"]["reasoning_content"], "Two plus two.");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["cost"], 0.0000123);
}

// ---- Errors the provider reports inside the stream -----------------------------

TEST(StreamAssembler, OpenRouterMidStreamErrorIsTheAnswer) {
  const AssembledStream r = assemble_every_way(kOpenRouterMidStreamError);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(body_of(r), json::parse(
      R"({"error":{"code":"server_error","message":"Provider disconnected unexpectedly"}})"));
  const ParsedResponse p = parsed(r);
  EXPECT_FALSE(p.is_completion);
  EXPECT_EQ(p.error_code, "server_error");
  EXPECT_EQ(p.error_message, "Provider disconnected unexpectedly");
}

TEST(StreamAssembler, BareMidStreamError) {
  const AssembledStream r = assemble_every_way(kBareMidStreamError);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(body_of(r), json::parse(
      R"({"error":{"code":502,"message":"Upstream error from Together: Service unavailable"}})"));
  EXPECT_EQ(parsed(r).error_code, "502");
}

TEST(StreamAssembler, OpenAiMidStreamError) {
  const AssembledStream r = assemble_every_way(kOpenAiMidStreamError);
  EXPECT_TRUE(r.complete);
  const ParsedResponse p = parsed(r);
  EXPECT_EQ(p.error_code, "server_error");
  EXPECT_EQ(p.error_message, "The server had an error while processing your request. Sorry about that!");
}

TEST(StreamAssembler, AnthropicErrorEvent) {
  const AssembledStream r = assemble_every_way(kAnthropicError);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.error, "");
  EXPECT_EQ(body_of(r), json::parse(R"({"error":{"type":"overloaded_error","message":"Overloaded"}})"));
  EXPECT_EQ(parsed(r).error_code, "overloaded_error");
}

TEST(StreamAssembler, ErrorEventThatIsNotJsonKeepsItsText) {
  const AssembledStream r = assemble_every_way("event: error\ndata: upstream overloaded\n\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(body_of(r), json::parse(R"({"error":{"message":"upstream overloaded"}})"));
}

TEST(StreamAssembler, NullErrorKeyIsNoError) {
  const AssembledStream r = assemble_every_way(sse({
      R"({"id":"c","model":"m","error":null,"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]})"}));
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"], "ok");
}

// ---- Framing -----------------------------------------------------------------------

TEST(StreamAssembler, CrLfAndCrLineEndingsGiveTheSameAnswer) {
  for (std::string_view stream : {kOpenAiText, kOpenAiParallelTools, kOpenRouterReasoning, kAnthropicError}) {
    const AssembledStream lf = assemble_stream(stream);
    for (std::string_view eol : {"\r\n", "\r"}) {
      SCOPED_TRACE(eol == "\r" ? "CR" : "CRLF");
      const AssembledStream r = assemble_every_way(with_line_endings(stream, eol));
      EXPECT_TRUE(same(r, lf)) << describe(r) << "\n  LF: " << describe(lf);
    }
  }
}

TEST(StreamAssembler, WhatwgFieldParsing) {
  // No space after the colon; one JSON chunk across two data lines (joined
  // with \n, which JSON reads as whitespace); id:, retry:, an unknown field
  // and a field without a colon are ignored; "event: message" is the default.
  const std::string stream =
      "\xEF\xBB\xBF"  // a BOM opening the stream is dropped
      "retry: 3000\n"
      "id: 1\n"
      "data:{\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\n"
      "data: \"delta\":{\"content\":\"a b\"}}]}\n"
      "\n"
      "unknown: whatever\n"
      "data\n"  // a data field with no value: an empty event, dropped
      "\n"
      "event: message\n"
      "data:  {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},\"finish_reason\":\"stop\"}]}\n"
      "\n"
      "data: [DONE]\n\n";
  const AssembledStream r = assemble_every_way(stream);
  EXPECT_TRUE(r.complete) << describe(r);
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"], "a b!");
}

TEST(StreamAssembler, DoneEndsTheStreamAndTheRestIsIgnored) {
  const std::string stream = std::string(kOpenAiText) + "data: {not json at all\n\ndata: {\"error\":{}}\n\n";
  const AssembledStream r = assemble_every_way(stream);
  EXPECT_TRUE(same(r, assemble_stream(kOpenAiText))) << describe(r);
}

TEST(StreamAssembler, DoneWithoutTrailingNewline) {
  const std::string stream = sse({content_chunk("\"hi\"")}, false) + "data: [DONE]";
  const AssembledStream r = assemble_every_way(stream);
  EXPECT_TRUE(r.complete) << describe(r);
  EXPECT_TRUE(body_of(r)["choices"][0]["finish_reason"].is_null());
}

TEST(StreamAssembler, CompleteWithoutDoneWhenEveryChoiceFinished) {
  // Some servers close after the finish chunk with no [DONE].
  const AssembledStream r =
      assemble_every_way(sse({content_chunk("\"x\"", 0), content_chunk("\"y\"", 1), finish_chunk("stop", 1),
                              finish_chunk("length", 0)},
                             false));
  EXPECT_TRUE(r.complete) << describe(r);
  EXPECT_EQ(r.error, "");
  const json body = body_of(r);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["choices"][1]["finish_reason"], "stop");
}

// ---- Broken streams ------------------------------------------------------------------

TEST(StreamAssembler, TruncatedStreamKeepsWhatArrived) {
  // kOpenAiText cut after " to" (before the finish chunk): no [DONE], no finish_reason.
  const std::string_view text = kOpenAiText;
  const size_t cut = text.find("data: ", text.find("\" to\""));
  const AssembledStream r = assemble_every_way(text.substr(0, cut));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error, "stream ended before the answer was complete");
  const json body = body_of(r);
  EXPECT_EQ(body["choices"][0]["message"]["content"], "I'm unable to");
  EXPECT_TRUE(body["choices"][0]["finish_reason"].is_null());
}

TEST(StreamAssembler, CutInsideTheLastEventIsTruncationNotMalformed) {
  const std::string_view text = kOpenAiText;
  const size_t cut = text.find("\" to\"") - 40;  // inside the JSON of the " to" chunk
  const AssembledStream r = assemble_every_way(text.substr(0, cut));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error, "stream ended before the answer was complete");
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"], "I'm unable");
}

TEST(StreamAssembler, OneOfThreeChoicesUnfinishedIsTruncated) {
  // Cut after the first choice's finish chunk, before the second's.
  const std::string_view text = kOpenAiThreeChoices;
  const size_t first = text.find("\"finish_reason\":\"stop\"");
  const size_t second = text.find("\"finish_reason\":\"stop\"", first + 1);
  const AssembledStream r = assemble_every_way(text.substr(0, text.rfind("data: ", second)));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error, "stream ended before the answer was complete");
  const json body = body_of(r);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(body["choices"][1]["finish_reason"].is_null());
}

TEST(StreamAssembler, OnlyCommentsThenEofIsTruncated) {
  const AssembledStream r = assemble_every_way(": OPENROUTER PROCESSING\n\n: OPENROUTER PROCESSING\n\n");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error, "stream ended before the answer was complete");
  EXPECT_EQ(r.body, "");
}

TEST(StreamAssembler, DoneWithoutAnyChunkIsNoAnswer) {
  const AssembledStream r = assemble_every_way("data: [DONE]\n\n");
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.error, "stream ended without an answer");
}

TEST(StreamAssembler, MalformedChunkIsNamed) {
  // As the mock server's "malformed" fault writes it: one event's JSON cut in half.
  const std::string good = content_chunk("\"Hello\"");
  const std::string broken = content_chunk("\"world, and a long tail of text that goes on\"").substr(0, 60);
  const AssembledStream r = assemble_every_way(sse({good, broken, finish_chunk()}));
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error.rfind("malformed chunk (not valid JSON): ", 0), 0u) << r.error;
  EXPECT_NE(r.error.find(broken), std::string::npos) << r.error;
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"], "Hello");  // what came before
}

TEST(StreamAssembler, MalformedChunkExcerptIsAtMost200BytesAndPrintable) {
  std::string junk = "{\"x\":\"";
  for (int i = 0; i < 500; ++i) junk += "\x01\xC3\xA9\xFF";
  const AssembledStream r = assemble_every_way("data: " + junk + "\n\n");
  EXPECT_FALSE(r.complete);
  const std::string prefix = "malformed chunk (not valid JSON): ";
  ASSERT_EQ(r.error.rfind(prefix, 0), 0u) << r.error;
  EXPECT_LE(r.error.size() - prefix.size(), 200u);
  EXPECT_NO_THROW((void)json(r.error).dump());  // valid UTF-8: can be stored and logged
  EXPECT_EQ(r.error.find('\x01'), std::string::npos);
}

TEST(StreamAssembler, NonObjectChunkIsMalformed) {
  const AssembledStream r = assemble_every_way("data: [1,2,3]\n\n");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error.rfind("malformed chunk (not a JSON object)", 0), 0u) << r.error;
}

TEST(StreamAssembler, DeeplyNestedChunkIsRefusedWithoutCrashing) {
  const std::string deep(100'000, '[');
  for (const std::string& stream :
       {"data: " + deep + "\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":" + deep + "}}]}\n\n",
        sse({content_chunk("\"ok\"")}, false) + "data: " + deep + std::string(100'000, ']') + "\n\n"}) {
    const AssembledStream r = assemble_every_way(stream);
    EXPECT_FALSE(r.complete);
    EXPECT_EQ(r.error.rfind("malformed chunk (JSON nested deeper than 128 levels): ", 0), 0u) << r.error.substr(0, 100);
  }
  // As an error event, the provider's text is kept, never parsed deeper.
  const AssembledStream e = assemble_every_way("event: error\ndata: " + deep + "\n\n");
  EXPECT_TRUE(e.complete);
  const json body = body_of(e);
  EXPECT_LE(body["error"]["message"].get<std::string>().size(), 1000u);
}

TEST(StreamAssembler, TooLargeAnswerIsRefused) {
  const AssembledStream r = assemble_every_way(kOpenAiText, 100);
  EXPECT_FALSE(r.complete);
  EXPECT_NE(r.error.find("too large"), std::string::npos) << r.error;
  EXPECT_EQ(r.body, "");
}

TEST(StreamAssembler, EndlessLineIsRefusedWithBoundedMemory) {
  StreamAssembler a(1000);
  const std::string piece(4096, 'a');
  for (int i = 0; i < 100; ++i) a.feed(piece);  // 400 KB without a line end
  const AssembledStream r = a.finish();
  EXPECT_FALSE(r.complete);
  EXPECT_NE(r.error.find("too large"), std::string::npos) << r.error;
}

TEST(StreamAssembler, MillionsOfChoiceIndexesAreRefused) {
  std::string stream;
  for (int i = 0; i < 10'000; ++i) stream += "data: {\"choices\":[{\"index\":" + std::to_string(i * 1'000'003LL) + ",\"delta\":{}}]}\n\n";
  const AssembledStream r = assemble_stream(stream, 64u << 10);
  EXPECT_FALSE(r.complete);
  EXPECT_NE(r.error.find("too large"), std::string::npos) << r.error;
}

// ---- Text split inside a character ------------------------------------------------------

TEST(StreamAssembler, Utf8SequenceSplitAcrossDeltas) {
  // Raw bytes of "é" and of U+1F60A split between chunks (invalid JSON on
  // their own), then U+1F60A as a surrogate pair split between chunks.
  const AssembledStream r = assemble_every_way(sse({
      content_chunk("\"caf\xC3\""), content_chunk("\"\xA9 \xF0\x9F\""), content_chunk("\"\x98\x8A\""),
      content_chunk(R"("\ud83d")"), content_chunk(R"("\ude0a")"), finish_chunk()}));
  EXPECT_TRUE(r.complete) << describe(r);
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"],
            "caf\xC3\xA9 \xF0\x9F\x98\x8A\xF0\x9F\x98\x8A");
}

TEST(StreamAssembler, Utf8SplitInsideToolArgumentsAndReasoning) {
  const AssembledStream r = assemble_every_way(sse({
      "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"na\xC3\",\"tool_calls\":[{\"index\":0,"
      "\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"q\\\":\\\"\xE2\x82\"}}]}}]}",
      "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"\xAF" "ve\",\"tool_calls\":[{\"index\":0,"
      "\"function\":{\"arguments\":\"\xAC\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}"}));
  EXPECT_TRUE(r.complete) << describe(r);
  const json message = body_of(r)["choices"][0]["message"];
  EXPECT_EQ(message["reasoning_content"], "na\xC3\xAF" "ve");
  EXPECT_EQ(message["tool_calls"][0]["function"]["arguments"], "{\"q\":\"\xE2\x82\xAC\"}");
}

TEST(StreamAssembler, InvalidFinalTextBecomesReplacementCharacters) {
  const AssembledStream r = assemble_every_way(sse({
      content_chunk("\"ok \xC3\""), content_chunk(R"("\ud83d end")"), content_chunk("\"\xFF\""), finish_chunk()}));
  EXPECT_TRUE(r.complete) << describe(r);
  // A lead byte with no continuation, a lone high surrogate, a byte that is
  // never UTF-8: one U+FFFD each.
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"],
            "ok \xEF\xBF\xBD\xEF\xBF\xBD end\xEF\xBF\xBD");
}

// ---- Provider variations ------------------------------------------------------------------

TEST(StreamAssembler, ToolCallsWithoutIndexAreMatchedById) {
  // Some OpenAI-compatible layers (Gemini's, some proxies) omit tool_calls[].index.
  const AssembledStream r = assemble_every_way(sse({
      R"({"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":"}}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"arguments":"1}"}}]}}]})",
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]}}]})",
      R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]})"}));
  const json calls = body_of(r)["choices"][0]["message"]["tool_calls"];
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0]["function"]["arguments"], "{\"x\":1}");
  EXPECT_EQ(calls[1]["function"]["name"], "g");
}

TEST(StreamAssembler, ReasoningSentUnderBothNamesIsTakenOnce) {
  const AssembledStream r = assemble_every_way(sse({
      R"({"choices":[{"index":0,"delta":{"reasoning_content":"think","reasoning":"think"}}]})",
      R"({"choices":[{"index":0,"delta":{"content":"done"},"finish_reason":"stop"}]})"}));
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["reasoning_content"], "think");
}

TEST(StreamAssembler, ContentWithToolCallsStaysAString) {
  const AssembledStream r = assemble_every_way(sse({
      content_chunk("\"Let me check.\""),
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}]})"}));
  EXPECT_EQ(body_of(r)["choices"][0]["message"]["content"], "Let me check.");
}

// ---- Not a stream --------------------------------------------------------------------------

TEST(StreamAssembler, PlainJsonBodyIsNotSseButIsHandedBack) {
  const AssembledStream r = assemble_every_way(
      "{\n  \"error\": {\"message\": \"Rate limit reached\", \"type\": \"requests\", \"code\": \"rate_limit_exceeded\"}\n}\n");
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.error.rfind("not a server-sent event stream", 0), 0u) << r.error;
  EXPECT_EQ(body_of(r)["error"]["code"], "rate_limit_exceeded");
}

TEST(StreamAssembler, HtmlAndEmptyBodiesAreNotSse) {
  const AssembledStream html = assemble_every_way("<html><body>502 Bad Gateway</body></html>");
  EXPECT_FALSE(html.complete);
  EXPECT_EQ(html.error, "not a server-sent event stream: <html><body>502 Bad Gateway</body></html>");
  EXPECT_EQ(html.body, "");
  const AssembledStream empty = assemble_every_way("");
  EXPECT_FALSE(empty.complete);
  EXPECT_EQ(empty.error, "not a server-sent event stream: the body is empty");
}

// ---- Robustness ------------------------------------------------------------------------------

TEST(StreamAssembler, FinishIsIdempotentAndLateBytesAreIgnored) {
  StreamAssembler a;
  a.feed(kOpenAiText.substr(0, 1000));
  const AssembledStream first = a.finish();
  a.feed(kOpenAiText.substr(1000));
  const AssembledStream second = a.finish();
  EXPECT_TRUE(same(first, second));
  EXPECT_FALSE(first.complete);
}

TEST(StreamAssembler, FiveMegabytesOfOneByteDeltasIsFast) {
  const std::string chunk = R"(data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]})" "\n\n";
  std::string stream;
  stream.reserve((5u << 20) + 4096);
  size_t deltas = 0;
  while (stream.size() < (5u << 20)) {
    stream += chunk;
    ++deltas;
  }
  stream += sse({finish_chunk()});

  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const AssembledStream whole = assemble_stream(stream);
  const auto whole_ms = std::chrono::duration<double, std::milli>(clock::now() - start).count();

  const auto start_pieces = clock::now();
  StreamAssembler pieces;  // as curl hands it over: 16 KiB at a time
  for (size_t at = 0; at < stream.size(); at += 16384) pieces.feed(std::string_view(stream).substr(at, 16384));
  const AssembledStream r = pieces.finish();
  const auto pieces_ms = std::chrono::duration<double, std::milli>(clock::now() - start_pieces).count();

  const auto start_bytes = clock::now();
  StreamAssembler bytewise;
  for (char c : stream) bytewise.feed(std::string_view(&c, 1));
  const AssembledStream b = bytewise.finish();
  const auto bytes_ms = std::chrono::duration<double, std::milli>(clock::now() - start_bytes).count();

  std::printf("5 MB, %zu one-byte deltas: whole %.0f ms, 16 KiB pieces %.0f ms, byte at a time %.0f ms\n",
              deltas, whole_ms, pieces_ms, bytes_ms);
  EXPECT_TRUE(whole.complete) << describe(whole);
  EXPECT_TRUE(same(whole, r));
  EXPECT_TRUE(same(whole, b));
  EXPECT_EQ(body_of(whole)["choices"][0]["message"]["content"].get<std::string>().size(), deltas);
  if (kTimed) {
    EXPECT_LT(whole_ms, 1000);
    EXPECT_LT(pieces_ms, 1000);
    EXPECT_LT(bytes_ms, 1000);
  }
}

// ---- is_event_stream -------------------------------------------------------------------------

TEST(IsEventStream, ByContentType) {
  EXPECT_TRUE(is_event_stream("text/event-stream", ""));
  EXPECT_TRUE(is_event_stream("text/event-stream; charset=utf-8", "{}"));
  EXPECT_TRUE(is_event_stream(" Text/Event-Stream ;charset=UTF-8", ""));
  EXPECT_FALSE(is_event_stream("application/json", R"({"choices":[]})"));
  EXPECT_FALSE(is_event_stream("text/event-streams", ""));
}

TEST(IsEventStream, ByBody) {
  EXPECT_TRUE(is_event_stream("", "data: {}"));
  EXPECT_TRUE(is_event_stream("", "data:{}"));
  EXPECT_TRUE(is_event_stream("", "event: error\ndata: {}"));
  EXPECT_TRUE(is_event_stream("", "id: 1\n"));
  EXPECT_TRUE(is_event_stream("", ": OPENROUTER PROCESSING\n\n"));
  EXPECT_TRUE(is_event_stream("", "\xEF\xBB\xBF\r\n  \tdata: [DONE]"));
  EXPECT_TRUE(is_event_stream("", "retry: 1000\n"));
  // No JSON text begins like an event stream, so a wrong header does not hide one.
  EXPECT_TRUE(is_event_stream("text/plain", "data: {}\n\n"));
  EXPECT_FALSE(is_event_stream("", R"({"error":{"message":"x"}})"));
  EXPECT_FALSE(is_event_stream("", "  \n"));
  EXPECT_FALSE(is_event_stream("", ""));
  EXPECT_FALSE(is_event_stream("", "database error"));
  EXPECT_FALSE(is_event_stream("", "<html>"));
}

}  // namespace
}  // namespace shepherd
