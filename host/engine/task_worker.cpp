#include "engine/task_worker.h"

#include <cstdint>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/error.h"
#include "core/text.h"
#include "engine/response_parser.h"
#include "engine/response_reader.h"
#include "lua/api.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"

namespace shepherd {

namespace {

// How much larger than max_response_bytes the events of a streamed answer may
// be on the wire (see build_request).
constexpr size_t kStreamWireFactor = 8;

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A one-line account of a failed attempt, for the store and the export.
std::string describe(const std::string& cls, const HttpResponse& r, const ParsedResponse& p,
                     const std::string& requested, const std::string& check_reason, const std::string& stream_error) {
  if (r.transport != Transport::none) {
    std::string what(to_string(r.transport));
    return "transport " + what + " after " + std::to_string(static_cast<long>(r.elapsed_ms)) + " ms" +
           (r.transport_detail.empty() ? "" : " (" + r.transport_detail + ")");
  }
  if (cls == "model_mismatch") return "asked for " + requested + ", answered by " + p.model;
  if (cls == "check_failed") return "check failed: " + check_reason;
  std::string out = "HTTP " + std::to_string(r.status);
  if (!p.error_message.empty()) return out + ": " + p.error_message;
  if (!stream_error.empty()) return out + ": " + stream_error;
  if (!p.parse_error.empty()) return out + ": " + p.parse_error;
  if (cls == "bad_response") return out + ": the body is not a chat completion";
  return out;
}

}  // namespace

TaskWorker::TaskWorker(const RunContext& ctx) : ctx_(ctx), suite_(*ctx.suite, *ctx.matrix) {
  policy_generation_ = ctx.policies->generation();
  policies_ = std::make_unique<PolicySet>(suite_.lua(), *ctx.policies->current(), ctx.suite->retry,
                                          ctx.suite->maintain);
}

void TaskWorker::refresh_policies() {
  uint64_t generation = ctx_.policies->generation();
  if (generation == policy_generation_) return;
  auto sources = ctx_.policies->current();
  try {
    // Fresh environments in this state; the old set decides until this succeeds.
    auto fresh = std::make_unique<PolicySet>(suite_.lua(), *sources, ctx_.suite->retry, ctx_.suite->maintain);
    policies_ = std::move(fresh);
    policy_generation_ = generation;
  } catch (const Error& e) {
    // The set passed in a scratch state, so this is rare (memory): try again
    // at the next decision, and say so once.
    if (failed_generation_ != generation) {
      failed_generation_ = generation;
      spdlog::error("a worker could not load policies {} and keeps {} for now: {}", sources->version,
                    policies_->version(), e.what());
    }
  }
}

TaskWorker::~TaskWorker() { policies_.reset(); }

std::string TaskWorker::current_request_hash(uint64_t ordinal) {
  nlohmann::json body;
  std::string error;
  return suite_.request_body(ordinal, body, error) ? request_hash(body) : std::string();
}

bool TaskWorker::build_request(uint32_t task_index, TaskRuntime& task, HttpRequest& out, double& tokens,
                               std::string& error) {
  RequestBody built;
  if (!task.conversation) {
    nlohmann::json body;
    if (!suite_.request_body(task.ordinal, body, error)) return false;
    built = make_request_body(std::move(body));
  }
  const RequestBody& request = task.conversation ? task.turn_request : built;
  task.request_hash = request.hash;
  const SlotBinding& slot = ctx_.slots[static_cast<size_t>(task.slot)];
  const KeyBinding& key = ctx_.keys[slot.key];
  const ProviderSpec& p = *key.provider;
  // The host decides the model: the cell's, or the current resource.
  out.body = compose_request(request, ctx_.models[task.attempt_model], p.stream, p.stream_usage);
  out.id = task_index;
  out.method = "POST";
  out.url = slot.url;
  out.headers.clear();
  out.headers.reserve(2 + p.headers.size());
  out.headers.push_back(key.auth_header);
  out.headers.emplace_back("Content-Type: application/json");
  out.headers.insert(out.headers.end(), p.headers.begin(), p.headers.end());
  // What a tokens-per-minute budget reserves: roughly 4 bytes a token for the
  // prompt, plus what the answer may use.
  tokens = static_cast<double>(out.body.size()) / 4 + (request.max_tokens >= 0 ? request.max_tokens : 256);
  out.connect_timeout_ms = p.timeouts.connect_ms;
  out.first_byte_timeout_ms = p.timeouts.first_byte_ms;
  out.total_timeout_ms = p.timeouts.total_ms;
  out.stall_timeout_ms = p.timeouts.stall_ms;
  // max_response_bytes bounds the answer. A streamed answer repeats id, model
  // and created in every chunk, about 200 bytes of events per token, so its
  // events on the wire run to tens of times the answer (a 40,000-token answer
  // is ~8 MiB of events): the wire gets kStreamWireFactor times the limit,
  // and the assembler holds the answer itself to the limit.
  const bool is_streamed = request.sets_stream ? request.streamed_by_suite : p.stream;
  out.max_response_bytes = is_streamed && p.max_response_bytes <= SIZE_MAX / kStreamWireFactor
                               ? p.max_response_bytes * kStreamWireFactor
                               : p.max_response_bytes;
  return true;
}

AttemptOutcome TaskWorker::judge(TaskRuntime& task, HttpResponse& r, int usable_keys) {
  refresh_policies();
  const ProviderSpec& provider = *ctx_.keys[ctx_.slots[static_cast<size_t>(task.slot)].key].provider;
  std::string stream_error;
  ParsedResponse parsed = read_response(r, provider.max_response_bytes, stream_error);
  const std::string& requested = ctx_.models[task.attempt_model];
  const Suite& suite = *ctx_.suite;
  std::string_view role = suite.model_is_dimension ? "dimension" : "resource";

  std::string check_reason;
  bool check_failed = false;
  // A conversation's check judges its result, not each turn.
  if (suite.has_check && !task.conversation && r.transport == Transport::none && r.status == 200 &&
      parsed.is_completion) {
    CheckInput in{parsed.content, parsed.model, parsed.finish_reason, parsed.usage_json};
    check_failed = !suite_.check(task.ordinal, in, check_reason);
  }

  OutcomeView view = outcome_view(r, parsed, requested, role, check_failed ? &check_reason : nullptr);

  AttemptOutcome out;
  AttemptRecord& rec = out.record;
  ++task.attempts_run;
  ++task.attempts_total;
  ++task.turn_attempts;
  // What retry.lua counts: a conversation's turn retries on its own.
  const int attempt = task.conversation ? task.turn_attempts : task.attempts_run;
  rec.task_id = task.id;
  rec.run_id = ctx_.run_id;
  rec.n = task.attempts_total;
  rec.task_attempts = task.attempts_total;
  const KeyBinding& key = ctx_.keys[ctx_.slots[static_cast<size_t>(task.slot)].key];
  rec.key_id = key.key_id;
  rec.endpoint = key.provider->base_url;
  rec.model_requested = requested;
  rec.model_answered = parsed.model;
  rec.http_status = r.status;
  rec.transport = std::string(to_string(r.transport));
  rec.policy_version = policies_->version();
  rec.latency_ms = r.elapsed_ms;
  rec.prompt_tokens = parsed.prompt_tokens;
  rec.completion_tokens = parsed.completion_tokens;
  rec.started_at = task.sent_unix;
  rec.ended_at = unix_now();
  rec.response = r.body;
  rec.request_hash = task.request_hash;
  if (task.conversation) {
    rec.turn = task.turn;
    rec.conversation = task.conversation_no;
  }

  LuaFailure failure;
  std::string cls;
  if (!policies_->classify(view, cls, failure)) {
    rec.cls = "policy_error";
    rec.decision = "fail";
    rec.error_code = codes::POLICY_ERROR;
    rec.error_message = "classify failed: " + failure.describe();
    rec.task_state = TaskState::failed;
    out.kind = AttemptOutcome::Kind::fail;
    return out;
  }
  rec.cls = cls;
  SlotFeedback& fb = out.feedback;
  fb.status = r.status;
  fb.transport_failure = r.transport != Transport::none && r.transport != Transport::too_large;
  fb.quota_exhausted = cls == "quota_exhausted";
  // A 429 rests the slot unless classify saw more in it (a quota, or a
  // request too large ever to fit).
  fb.rate_limited = cls == "rate_limited" || (r.status == 429 && !fb.quota_exhausted && cls != "client_error");
  // A bad key (401, or Gemini's 400 API_KEY_INVALID) is disabled; a 403 is
  // this key refused this model, and only that slot is taken out.
  fb.auth_failed = r.status == 401 || (cls == "auth_failed" && r.status != 403);
  fb.forbidden = cls == "auth_failed" && r.status == 403;
  fb.model_not_found = cls == "model_not_found";
  if (parsed.retry_after_ms >= 0) fb.retry_after_s = static_cast<double>(parsed.retry_after_ms) / 1000.0;
  fb.headers = parse_rate_headers(r.headers);
  if (parsed.prompt_tokens >= 0 && parsed.completion_tokens >= 0) {
    fb.tokens_used = parsed.prompt_tokens + parsed.completion_tokens;
  }
  if (cls == "ok" && task.conversation) {
    rec.decision = "answered";
    rec.task_state = TaskState::pending;
    out.completion = std::move(parsed.body);
    out.kind = AttemptOutcome::Kind::done;
    return out;
  }
  if (cls == "ok") {
    rec.decision = "done";
    rec.task_state = TaskState::done;
    rec.content = std::move(parsed.content);
    rec.usage_json = std::move(parsed.usage_json);
    out.kind = AttemptOutcome::Kind::done;
    return out;
  }

  rec.error_message = clip_text(describe(cls, r, parsed, requested, check_reason, stream_error));
  DecideInput in;
  in.cls = cls;
  in.attempt = attempt;
  nlohmann::json cell = ctx_.matrix->cell(task.ordinal);
  in.cell = &cell;
  in.model = requested;
  in.model_role = role;
  in.history = &task.history;
  in.retry_after_ms = parsed.retry_after_ms;
  in.status = r.status;
  in.error_code = parsed.error_code;
  in.usable_keys = usable_keys;
  Decision decision;
  bool decided = policies_->decide(in, decision, failure);
  task.history.push_back(HistoryEntry{cls, r.status, parsed.error_code});
  if (!decided) {
    rec.decision = "fail";
    rec.error_code = codes::POLICY_ERROR;
    rec.error_message = "decide failed: " + failure.describe() + " (after " + rec.error_message + ")";
    rec.task_state = TaskState::failed;
    out.kind = AttemptOutcome::Kind::fail;
    return out;
  }
  rec.decision = std::string(to_string(decision.action));
  rec.error_code = decision.code.empty() ? upper(cls) : decision.code;
  if (decision.action == Decision::Action::retry) {
    // Retries always end, whatever the policy says: the same error over and
    // over is poison, and no task gets more than kMaxAttemptsPerRun.
    int n = suite.retry.poison_after;
    const auto& h = task.history;
    bool same = h.size() >= static_cast<size_t>(n) &&
                std::all_of(h.end() - n, h.end(), [&](const HistoryEntry& e) {
                  return e.cls == h.back().cls && e.status == h.back().status && e.code == h.back().code;
                });
    if (same || attempt >= kMaxAttemptsPerRun) {
      decision.action = Decision::Action::fail;
      rec.decision = "fail";
      rec.error_code = same ? "POISONED" : "RETRY_LIMIT";
      rec.error_message = (same ? "the same error " + std::to_string(n) + " times in a row: "
                                : std::to_string(kMaxAttemptsPerRun) + " attempts in one run: ") +
                          rec.error_message;
    }
  }
  switch (decision.action) {
    case Decision::Action::retry:
      rec.task_state = TaskState::pending;
      rec.delay_ms = decision.delay_ms;
      out.kind = AttemptOutcome::Kind::retry;
      out.delay_ms = decision.delay_ms;
      break;
    case Decision::Action::switch_model:
      if (suite.model_is_dimension) {
        // The answer must come from the cell's model: there is nothing to switch to.
        rec.decision = "fail";
        rec.error_message += " (switch_model refused: the model is a dimension of this suite)";
        rec.task_state = TaskState::failed;
        out.kind = AttemptOutcome::Kind::fail;
        break;
      }
      rec.task_state = TaskState::pending;
      out.kind = AttemptOutcome::Kind::switch_model;
      break;
    case Decision::Action::fail:
      rec.task_state = TaskState::failed;
      out.kind = AttemptOutcome::Kind::fail;
      break;
  }
  return out;
}

std::optional<uint32_t> TaskWorker::choose_next_model(uint32_t current, const std::vector<uint32_t>& exhausted,
                                                      const std::string& cls, std::string& note) {
  refresh_policies();
  const auto& models = ctx_.models;
  std::vector<bool> used(models.size(), false);
  std::vector<std::string> exhausted_names;
  for (uint32_t m : exhausted) {
    used[m] = true;
    exhausted_names.push_back(models[m]);
  }
  used[current] = true;
  SwitchInput in{models[current], &models, &exhausted_names, cls};
  std::string chosen;
  LuaFailure failure;
  if (policies_->next_model(in, chosen, failure)) {
    if (chosen.empty()) {
      note = "switch.lua: no model left";
      return std::nullopt;
    }
    auto it = std::find(models.begin(), models.end(), chosen);
    if (it != models.end() && !used[static_cast<size_t>(it - models.begin())]) {
      note = "switch.lua chose it";
      return static_cast<uint32_t>(it - models.begin());
    }
    note = "switch.lua answered '" + chosen + "', which is not an unused model of the suite; took the next in order";
  } else {
    note = "switch.lua failed (" + failure.describe() + "); took the next in order";
  }
  for (uint32_t step = 1; step <= models.size(); ++step) {
    uint32_t m = static_cast<uint32_t>((current + step) % models.size());
    if (!used[m]) return m;
  }
  return std::nullopt;
}

AttemptRecord TaskWorker::unsent_failure(TaskRuntime& task, const std::string& code, const std::string& message) {
  ++task.attempts_run;
  ++task.attempts_total;
  AttemptRecord rec;
  rec.task_id = task.id;
  rec.run_id = ctx_.run_id;
  rec.n = task.attempts_total;
  rec.task_attempts = rec.n;
  rec.model_requested = ctx_.models[task.attempt_model];
  rec.cls = "request_error";
  rec.decision = "fail";
  rec.error_code = code;
  rec.error_message = message;
  rec.policy_version = policies_->version();
  rec.started_at = rec.ended_at = unix_now();
  rec.task_state = TaskState::failed;
  return rec;
}

}  // namespace shepherd
