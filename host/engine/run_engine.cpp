#include "engine/run_engine.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <optional>
#include <queue>
#include <unordered_set>
#include <condition_variable>
#include <filesystem>
#include <thread>

#include <spdlog/spdlog.h>

#include "alerts/alert_rules.h"
#include "alerts/webhook.h"
#include "core/error.h"
#include "core/process.h"
#include "core/redactor.h"
#include "core/text.h"
#include "core/logging.h"
#include "engine/exhausted_memory.h"
#include "engine/progress.h"
#include "engine/run_context.h"
#include "engine/task_worker.h"
#include "http/http_client.h"
#include "outputs/output_writer.h"
#include "outputs/results_log.h"
#include "policy/policy_watcher.h"
#include "store/store.h"
#include "store/export_format.h"
#include "store/store_lock.h"
#include "store/turn_log.h"
#include "suite/where.h"
#include "store/writer.h"

namespace fs = std::filesystem;

namespace shepherd {

namespace {

// Answers from the HTTP loop, waiting for a worker. A conversation's turn
// goes to the worker whose Lua state holds the conversation.
struct CompletionQueue {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<HttpResponse> items;
  std::vector<std::vector<HttpResponse>> owned;  // by worker
  bool kick = true;  // a worker should look for launches even without answers
  bool closed = false;  // the run is over
};

int64_t steady_ms() {
  return std::chrono::duration_cast<Millis>(SteadyClock::now().time_since_epoch()).count() + 1;  // never 0
}

std::string hostname() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

// A worker's own state besides its Lua: when its conversations run out of time.
struct WorkerState {
  int index = 0;
  size_t max_open = 0;  // conversations it may hold at once
  struct Deadline {
    TimePoint at;
    uint32_t task;
    bool operator>(const Deadline& o) const { return at > o.at; }
  };
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines;
  std::unique_ptr<TurnLog> turn_log;  // opened when a conversation first resumes
};

class Run {
 public:
  Run(const Suite& suite, const RunOptions& options) : suite_(suite), options_(options), matrix_(suite) {}

  RunReport execute();

 private:
  void build_pool(Store& store);  // keys, slots and the dispatcher
  // Parks the slots whose quota ran out in an earlier run (engine/exhausted_memory.h).
  void remember_exhaustion(Store& store, KeyPool& pool, const std::vector<std::pair<std::string, std::string>>& slot_names);
  // `affinity` (may be empty): the preferred key of a cell, or -1.
  // `hash_of`: the hash of the request the suite builds for a cell now.
  void plan(Store& store, RunReport& report, const std::function<int(uint64_t)>& affinity,
            const std::function<std::string(uint64_t)>& hash_of);
  void worker_loop(TaskWorker& worker, WorkerState& state, std::atomic<int64_t>& busy_since_ms);
  void watch_workers(std::vector<std::atomic<int64_t>>& busy_since_ms);
  void handle(TaskWorker& worker, WorkerState& state, HttpResponse& response);
  void launch(TaskWorker& worker);
  // Conversations: begin what the worker has room for; carry out what a
  // conversation asked for; end those past their deadline; begin again
  // those whose model is gone.
  void start_conversations(TaskWorker& worker, WorkerState& state);
  void follow(TaskWorker& worker, uint32_t index, ConversationStep&& step);
  void expire_conversations(TaskWorker& worker, WorkerState& state);
  void restart_conversation(TaskWorker& worker, uint32_t index);
  void finish_conversation(TaskWorker& worker, uint32_t index, TaskResultRecord&& result);
  // A task is done or failed, its record pushed: its output file (outputs)
  // and its --results line follow the record's commit. Called only when
  // follows_finish(): a run with neither pays nothing.
  bool follows_finish() const { return results_ != nullptr || suite_.has_outputs; }
  void task_finished(TaskWorker& worker, const TaskRuntime& t, ExportRow&& row);
  void count_for_alerts(const std::string& cls, const std::string& code);  // a failed attempt
  std::string label(const TaskRuntime& t) const;  // for logs: the cell, and the id
  void report_reload(const PolicyWatcher::Result& result);  // log and event
  void record_pool(TimePoint now);
  void switch_model(TaskWorker& worker, uint32_t from, uint32_t task, const std::string& cls);
  void wake_all();
  void close_queue();  // every worker returns

  const Suite& suite_;
  const RunOptions& options_;
  Matrix matrix_;
  RunContext ctx_;
  std::unique_ptr<PolicyRegistry> registry_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<HttpClient> http_;
  CompletionQueue queue_;
  int64_t stuck_reported_ = 0;  // the busy period already reported as stuck
  std::atomic<bool> workers_done_{false};
  size_t total_concurrency_ = 0;  // of every slot: how many conversations are worth keeping open
  std::unique_ptr<AlertCounter> alerts_;     // the suite's alert rules, counted live
  std::unique_ptr<WebhookSender> webhook_;   // where a fired alert is posted, if anywhere
  std::atomic<uint64_t> turns_sent_{0};
  std::atomic<uint64_t> turns_replayed_{0};
  std::unique_ptr<ResultsLog> results_;  // --results
};

// A finished task as the export shows it, from the record that finishes it.
ExportRow finished_row(const Matrix& matrix, const TaskRuntime& t, const AttemptRecord& rec) {
  ExportRow row;
  row.task = rec.task_id;
  row.dims_json = matrix.cell(t.ordinal).dump();
  row.state = rec.task_state;
  row.model = rec.model_answered;
  row.content = rec.content;
  row.attempts = rec.task_attempts;
  row.error_code = rec.error_code;
  row.error_message = rec.error_message;
  row.latency_ms = rec.latency_ms;
  row.usage_json = rec.usage_json;
  return row;
}

ExportRow finished_row(const Matrix& matrix, const TaskRuntime& t, const TaskResultRecord& result) {
  ExportRow row;
  row.task = result.task_id;
  row.dims_json = matrix.cell(t.ordinal).dump();
  row.state = result.state;
  row.model = result.model;
  row.content = result.content;
  row.attempts = t.attempts_total;
  row.error_code = result.error_code;
  row.error_message = result.error_message;
  row.latency_ms = result.latency_ms;
  row.usage_json = result.usage_json;
  row.turns = result.turns;
  return row;
}

void Run::build_pool(Store& store) {
  // Slots: every key of every provider, for each model that provider serves.
  // Several providers serving one model (Azure deployments) are slots of it.
  KeyPool pool(/*slow_start=*/true);
  ctx_.models = suite_.models;
  std::vector<std::pair<std::string, std::string>> slot_names;  // (key id, model) per slot
  for (uint32_t p = 0; p < suite_.providers.size(); ++p) {
    const ProviderSpec& provider = suite_.providers[p];
    const BreakerSpec& b = provider.breaker;
    CircuitBreakerOptions breaker{b.failure_rate, b.min_calls, b.window, Millis{b.window_ms}, Millis{b.open_ms},
                                  Millis{b.max_open_ms}, b.probes};
    pool.configure_endpoint(p, breaker);
    for (const KeySpec& key : provider.keys) {
      uint32_t key_index = pool.add_key(key.id, p);
      ctx_.keys.push_back(KeyBinding{&provider, key.id, provider.auth_header(key)});
      for (uint32_t m = 0; m < ctx_.models.size(); ++m) {
        const std::string& model = ctx_.models[m];
        if (std::find(provider.models.begin(), provider.models.end(), model) == provider.models.end()) continue;
        Limits l = provider.limits_for(key, model);
        pool.add_slot(key_index, m, SlotLimits{l.concurrency, l.rpm, l.tpm}, p, provider.quota_reset_minute_utc,
                      breaker);
        total_concurrency_ += static_cast<size_t>(std::max(1, l.concurrency));
        ctx_.slots.push_back(SlotBinding{key_index, provider.url_for(model)});
        slot_names.emplace_back(key.id, model);
      }
    }
  }
  remember_exhaustion(store, pool, slot_names);
  // Models as resources start at the first one not remembered as exhausted.
  uint32_t first = 0;
  if (!suite_.model_is_dimension) {
    while (first + 1 < ctx_.models.size() && !pool.model_usable(first)) ++first;
    if (first > 0) spdlog::info("starting with {}: the models before it ran out of quota earlier", ctx_.models[first]);
  }
  dispatcher_ = std::make_unique<Dispatcher>(std::move(pool), first);
}

void Run::remember_exhaustion(Store& store, KeyPool& pool,
                              const std::vector<std::pair<std::string, std::string>>& slot_names) {
  if (options_.forget_exhausted) {
    store.record_event(ctx_.run_id, "exhausted_forgotten", "{}");
    spdlog::info("--forget-exhausted: models whose quota ran out in earlier runs are tried again");
    return;
  }
  const double now = unix_now();
  const TimePoint steady_now = SteadyClock::now();
  for (const auto& r : remembered_exhaustion(store, suite_.name, now)) {
    for (size_t slot = 0; slot < slot_names.size(); ++slot) {
      if (slot_names[slot] != std::make_pair(r.key, r.model)) continue;
      const TimePoint until = r.until == 0 ? TimePoint::max()
                                           : steady_now + std::chrono::milliseconds(static_cast<int64_t>((r.until - now) * 1000));
      pool.park_until(static_cast<int>(slot), until);
      spdlog::warn("{} on key {} ran out of quota in an earlier run: not sent {} (run --forget-exhausted to try it now)",
                   r.model, r.key, r.until == 0 ? std::string("again (no quota_resets time known)")
                                                : "before " + utc_time_text(r.until));
      nlohmann::json detail = {{"key", r.key}, {"model", r.model}, {"since", r.since}};
      detail["until_unix"] = r.until == 0 ? nlohmann::json() : nlohmann::json(r.until);
      store.record_event(ctx_.run_id, "quota_remembered", safe_dump(detail));
    }
  }
}

void Run::plan(Store& store, RunReport& report, const std::function<int(uint64_t)>& affinity,
               const std::function<std::string(uint64_t)>& hash_of) {
  for (const auto& [other, n] : store.other_suites(suite_.name)) {
    spdlog::warn("store {} also holds {} tasks of suite '{}', not '{}' (a renamed suite?): tasks belong to a suite "
                 "name, so '{}' does not reuse them",
                 options_.db_path, n, other, suite_.name, suite_.name);
  }
  std::vector<TaskSeed> seeds = plan_cells(suite_);
  std::vector<std::string> ids;
  ids.reserve(seeds.size());
  for (const auto& seed : seeds) ids.push_back(seed.id);
  store.ensure_tasks(suite_.name, seeds);
  seeds.clear();
  // --where: this run is about a slice of the matrix; nothing else moves.
  Where where = options_.where_json.is_null() ? Where::parse(matrix_, options_.where)
                                              : Where::from_json(matrix_, options_.where_json);
  std::unordered_set<std::string> only(options_.only_tasks.begin(), options_.only_tasks.end());
  auto in_slice = [&](uint64_t i) { return where.matches(matrix_, i) && (only.empty() || only.count(ids[i])); };
  if (!where.all()) spdlog::info("this run covers the slice {}", where.describe());
  if (!only.empty()) spdlog::info("this run covers {} named tasks", only.size());
  if (!options_.retry_classes.empty()) {
    // --retry-class: only the slice's failed tasks whose last class is named
    // go back to pending; the others stay failed, their class kept. Scoped on
    // a connection of its own, so the run's store keeps its whole view.
    Store scoped(options_.db_path, Store::Mode::read_write);
    if (!where.all() || !only.empty()) {
      std::vector<TaskSeed> slice;
      for (uint64_t i = 0; i < matrix_.size(); ++i)
        if (in_slice(i)) slice.emplace_back(ids[i], std::string());
      scoped.limit_to(slice);
    }
    int n = scoped.reset_matching(suite_.name, "failed", options_.retry_classes);
    std::string classes;
    for (const auto& c : options_.retry_classes) classes += (classes.empty() ? "" : ",") + c;
    // Said even when none: a mistyped class matches nothing.
    spdlog::info("{} failed tasks of class {} sent back to pending (--retry-class)", n, classes);
  } else if (options_.retry_failed) {
    int n = 0;
    if (where.all() && only.empty()) {
      n = store.reset_failed(suite_.name);
    } else {
      std::vector<std::string> slice;
      for (uint64_t i = 0; i < matrix_.size(); ++i)
        if (in_slice(i)) slice.push_back(ids[i]);
      n = store.reset_failed(suite_.name, slice);
    }
    if (n > 0) spdlog::info("{} failed tasks sent back to pending (--retry-failed)", n);
  }
  std::unordered_map<std::string, StoredTask> stored;
  for (auto& t : store.load_tasks(suite_.name)) stored.emplace(t.id, t);

  // A done task whose suite now builds another request (an edited prompt,
  // another max_tokens) is stale: never mixed in silently.
  std::vector<std::string> stale;
  for (uint64_t i = 0; i < matrix_.size(); ++i) {
    if (!in_slice(i)) continue;
    StoredTask& s = stored.at(ids[i]);
    if (s.state != TaskState::done || s.request_hash.empty()) continue;
    std::string now = hash_of(i);
    if (now.empty() || now == s.request_hash) continue;
    stale.push_back(s.id);
    if (options_.rerun_stale) s.state = TaskState::pending;
  }
  if (!stale.empty() && options_.rerun_stale) {
    store.reset_to_pending(stale);
    report.stale_rerun = stale.size();
    spdlog::warn("{} done tasks are stale (the suite now builds a different request): sending them again "
                 "(--rerun-stale; their old answers stay in the history)", stale.size());
  } else if (!stale.empty()) {
    report.stale = stale.size();
    spdlog::warn("{} done tasks are stale (the suite now builds a different request): kept as they are; "
                 "`run --rerun-stale` sends them again, `status` and `export` mark them", stale.size());
  }

  size_t model_dim = 0;
  for (size_t d = 0; d < matrix_.dims().size(); ++d)
    if (matrix_.dims()[d].name == "model") model_dim = d;
  uint64_t done = 0, failed = 0;
  for (uint64_t i = 0; i < matrix_.size(); ++i) {
    if (!in_slice(i)) continue;
    const StoredTask& s = stored.at(ids[i]);
    if (s.state == TaskState::done) { ++done; continue; }
    if (s.state == TaskState::failed) { ++failed; continue; }
    TaskRuntime t;
    t.id = ids[i];
    t.ordinal = i;
    t.attempts_total = s.attempts;
    t.conversation = suite_.has_task;
    t.conversation_no = std::max(1, s.conversation);
    if (!suite_.batch_file.empty()) {
      t.model = suite_.batch_models[i];  // each line names its model
    } else if (suite_.model_is_dimension) {
      t.model = static_cast<int32_t>(matrix_.value_indices(i)[model_dim]);
    }
    if (affinity) t.preferred_key = affinity(i);
    dispatcher_->add_task(std::move(t));
  }
  dispatcher_->count_finished_before(done, failed);
}

void Run::record_pool(TimePoint now) {
  // `status` shows the last of these: per key id and model, what the pool is doing.
  writer_->push(EventRecord{ctx_.run_id, unix_now(), "pool", safe_dump(dispatcher_->pool_snapshot(now, ctx_.models))});
}

void Run::watch_workers(std::vector<std::atomic<int64_t>>& busy_since_ms) {
  constexpr int64_t stuck_after_ms = 30'000;
  int64_t now = steady_ms();
  for (size_t i = 0; i < busy_since_ms.size(); ++i) {
    int64_t since = busy_since_ms[i].load();
    if (since == 0 || now - since < stuck_after_ms || stuck_reported_ == since) continue;
    stuck_reported_ = since;
    spdlog::error("worker {} has been inside Lua for {} s: a policy or the suite's request/check is stuck in a "
                  "C function (a pathological string pattern?) that no time limit can stop; stop the run with two "
                  "signals (results so far are kept)", i, (now - since) / 1000);
    writer_->push(EventRecord{ctx_.run_id, unix_now(), "worker_stuck", safe_dump({{"worker", i}, {"seconds", (now - since) / 1000}})});
  }
}

void Run::report_reload(const PolicyWatcher::Result& r) {
  if (r.kind == PolicyWatcher::Result::Kind::reloaded) {
    std::string changed;
    for (const auto& kind : r.changed) changed += (changed.empty() ? "" : ", ") + kind;
    spdlog::warn("policies reloaded: version {} ({} changed)", r.version, changed.empty() ? "none" : changed);
    writer_->push(EventRecord{ctx_.run_id, unix_now(), "policy_reload",
                              safe_dump({{"version", r.version}, {"changed", r.changed}})});
  } else if (r.kind == PolicyWatcher::Result::Kind::rejected) {
    const Error& e = *r.error;
    spdlog::error("{}: {} (the policies in force stay)", e.code(), e.what());
    nlohmann::json detail = e.to_json();
    detail["kept"] = registry_->current()->version;
    writer_->push(EventRecord{ctx_.run_id, unix_now(), "policy_load_failed", safe_dump(detail)});
  }
}

void Run::wake_all() {
  {
    std::lock_guard lock(queue_.mutex);
    queue_.kick = true;
  }
  queue_.cv.notify_all();
}

void Run::close_queue() {
  {
    std::lock_guard lock(queue_.mutex);
    queue_.closed = true;
  }
  workers_done_ = true;
  queue_.cv.notify_all();
}

void Run::launch(TaskWorker& worker) {
  auto launches = dispatcher_->take_launches(SteadyClock::now(), 1024);
  if (launches.empty()) return;
  std::vector<HttpRequest> batch;
  batch.reserve(launches.size());
  for (uint32_t index : launches) {
    TaskRuntime& t = dispatcher_->task(index);
    HttpRequest request;
    std::string error;
    bool built = false;
    try {
      built = worker.build_request(index, t, request, t.tokens_reserved, error);
    } catch (const std::exception& e) {
      error = std::string("building the request failed: ") + e.what();
    }
    if (!built) {
      spdlog::warn("task {}: {}", label(t), error);
      AttemptRecord failure = worker.unsent_failure(t, codes::REQUEST_BUILD_FAILED, error);
      std::optional<ExportRow> finished;
      if (follows_finish() && !t.conversation) finished = finished_row(matrix_, t, failure);
      writer_->push(std::move(failure));
      if (finished) task_finished(worker, t, std::move(*finished));
      dispatcher_->release(t.slot);
      dispatcher_->finish(index, TaskState::failed);
      continue;
    }
    if (t.conversation) turns_sent_.fetch_add(1, std::memory_order_relaxed);
    t.sent_unix = unix_now();
    dispatcher_->reserve_tokens(t.slot, t.tokens_reserved, SteadyClock::now());
    batch.push_back(std::move(request));
  }
  http_->submit(std::move(batch));
}

void Run::handle(TaskWorker& worker, WorkerState& state, HttpResponse& r) {
  uint32_t index = static_cast<uint32_t>(r.id);
  TaskRuntime& t = dispatcher_->task(index);
  if (r.transport == Transport::cancelled) {  // stopped before an answer: not an attempt
    dispatcher_->release(t.slot, t.tokens_reserved);
    if (t.conversation && SteadyClock::now() >= worker.conversations().deadline(index)) {
      dispatcher_->turn_answered(index);  // the deadline cancelled it: the task ends here
      finish_conversation(worker, index, worker.conversations().stop(index, codes::TASK_TIMEOUT,
                                                             "the task ran past conversation.task_timeout_ms (" +
                                                                 std::to_string(suite_.conversation.task_timeout_ms) +
                                                                 " ms); its turn " + std::to_string(t.turn) +
                                                                 " was cancelled"));
      return;
    }
    dispatcher_->back_to_queue(index);
    return;
  }
  AttemptOutcome out;
  try {
    out = worker.judge(t, r, dispatcher_->usable_slots(t.attempt_model, t.slot));
  } catch (const std::exception& e) {
    // Whatever went wrong, this task alone fails and the run goes on.
    out = AttemptOutcome{};
    out.record = worker.unsent_failure(t, codes::INTERNAL, std::string("judging the answer failed: ") + e.what());
  }
  const AttemptRecord& rec = out.record;
  switch (out.kind) {
    case AttemptOutcome::Kind::retry:
      if (spdlog::should_log(spdlog::level::debug)) {
        spdlog::debug("task {} attempt {}: {} ({}), retry in {} ms", label(t), rec.n, rec.cls, rec.error_message,
                      out.delay_ms);
      }
      break;
    case AttemptOutcome::Kind::fail:
      if (t.conversation) {
        spdlog::info("task {} turn {} failed after {} attempts: {} {}", label(t), t.turn, t.turn_attempts, rec.error_code,
                     rec.error_message);
      } else {
        spdlog::info("task {} failed after {} attempts: {} {}", label(t), rec.n, rec.error_code, rec.error_message);
      }
      break;
    default:
      break;
  }
  std::string cls = rec.cls;
  std::string code = rec.error_code, message = rec.error_message;
  if (alerts_ && out.kind != AttemptOutcome::Kind::done) count_for_alerts(cls, code);
  TurnFacts facts{rec.latency_ms, rec.prompt_tokens, rec.completion_tokens, rec.model_answered};
  std::optional<ExportRow> finished;
  if (follows_finish() && !t.conversation && rec.task_state != TaskState::pending) {
    finished = finished_row(matrix_, t, rec);
  }
  // The record is queued before the task can move on, so a later attempt's
  // record can never be committed before this one.
  writer_->push(std::move(out.record));
  if (finished) task_finished(worker, t, std::move(*finished));

  TimePoint now = SteadyClock::now();
  for (const PoolEvent& e : dispatcher_->slot_result(t.slot, out.feedback, t.tokens_reserved, now)) {
    if (e.kind == "key_disabled") {
      spdlog::warn("key {} answered {}: it is out of this run", e.detail.value("key", "?"), e.detail.value("status", 0));
    } else {
      spdlog::info("{} {}", e.kind, safe_dump(e.detail));
    }
    nlohmann::json detail = e.detail;
    // The model by name: a later run remembers the exhaustion by it.
    if (e.kind == "quota_parked") detail["model"] = ctx_.models.at(detail.value("model_index", 0u));
    writer_->push(EventRecord{ctx_.run_id, unix_now(), e.kind, safe_dump(detail)});
  }
  ConversationRunner& conversations = worker.conversations();
  switch (out.kind) {
    case AttemptOutcome::Kind::done:
      if (!t.conversation) {
        dispatcher_->finish(index, TaskState::done);
        break;
      }
      dispatcher_->turn_answered(index);
      follow(worker, index, conversations.answered(index, out.completion, facts));
      break;
    case AttemptOutcome::Kind::retry:
      // Retry delays count toward a conversation's deadline.
      if (t.conversation && now + Millis(out.delay_ms) >= conversations.deadline(index)) {
        dispatcher_->turn_answered(index);
        finish_conversation(worker, index, conversations.stop(index, codes::TASK_TIMEOUT,
                                                      "turn " + std::to_string(t.turn) + " failed (" + message +
                                                          ") and its retry in " + std::to_string(out.delay_ms) +
                                                          " ms would pass conversation.task_timeout_ms"));
        break;
      }
      dispatcher_->retry_at(index, now + Millis(out.delay_ms));
      break;
    case AttemptOutcome::Kind::fail:
      if (!t.conversation) {
        dispatcher_->finish(index, TaskState::failed);
        break;
      }
      dispatcher_->turn_answered(index);
      follow(worker, index, conversations.turn_failed(index, cls, code, message));
      break;
    case AttemptOutcome::Kind::switch_model:
      if (t.conversation) {
        conversations.close(index);  // all turns of a result come from one model: begin again on the next
        ++t.conversation_no;
      }
      try {
        switch_model(worker, t.attempt_model, index, cls);
      } catch (const std::exception& e) {
        // Never leave the dispatcher waiting for a choice that will not come.
        spdlog::error("choosing the next model failed: {}: stopping", e.what());
        dispatcher_->no_model_left();
      }
      break;
  }
  (void)state;
}

void Run::count_for_alerts(const std::string& cls, const std::string& code) {
  for (const FiredAlert& f : alerts_->observe(cls, code, unix_now())) {
    std::string text = f.text(suite_.alerts, suite_.name);
    nlohmann::json detail = f.to_json(suite_.alerts, suite_.name);
    spdlog::warn("{}", text);
    writer_->push(EventRecord{ctx_.run_id, f.at, "alert", safe_dump(detail)});
    if (webhook_) webhook_->send(safe_dump({{"text", text}, {"alert", detail}}));
  }
}

std::string Run::label(const TaskRuntime& t) const {
  return matrix_.label(t.ordinal) + " (" + t.id.substr(0, 12) + ")";
}

void Run::finish_conversation(TaskWorker& worker, uint32_t index, TaskResultRecord&& result) {
  TaskRuntime& t = dispatcher_->task(index);
  TaskState state = result.state;
  result.run_id = ctx_.run_id;
  if (state == TaskState::failed) {
    spdlog::info("task {} failed after {} turns: {} {}", label(t), result.turns, result.error_code,
                 result.error_message);
  } else if (spdlog::should_log(spdlog::level::debug)) {
    spdlog::debug("task {} done in {} turns", label(t), result.turns);
  }
  std::optional<ExportRow> finished;
  if (follows_finish()) finished = finished_row(matrix_, t, result);
  writer_->push(std::move(result));
  if (finished) task_finished(worker, t, std::move(*finished));
  dispatcher_->finish(index, state);
}

void Run::task_finished(TaskWorker& worker, const TaskRuntime& t, ExportRow&& row) {
  // path(cell) and write(cell, result) run here, on the worker's own state;
  // the file is written by the writer's thread once the result is committed,
  // so an output never exists for a result the store lacks, and `export
  // --format files` can always write it again.
  std::optional<OutputFile> file;
  if (suite_.has_outputs && row.state == TaskState::done) {
    OutputFile made;
    std::string error;
    bool ok = false;
    try {
      ok = render_output(worker.suite_runtime(), t.ordinal, output_result_of(row), made, error);
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (ok) {
      // The stored content is scrubbed of key values; so is its file.
      if (auto redactor = Redactor::current(); !redactor->empty()) redactor->scrub(made.text);
      file = std::move(made);
    } else {
      // The task stays done (its answer is stored): only its file is missing,
      // and `export --format files` writes it once the suite is fixed.
      spdlog::error("task {}: no output written: {}", label(t), error);
      writer_->push(EventRecord{ctx_.run_id, unix_now(), "output_failed",
                                safe_dump({{"task", t.id}, {"cell", matrix_.label(t.ordinal)}, {"error", error}})});
    }
  }
  std::optional<nlohmann::json> line;
  if (results_) line = export_record(row, false);
  if (!file && !line) return;
  Writer* writer = writer_.get();
  writer->after_commit([this, writer, file = std::move(file), line = std::move(line), id = t.id,
                        cell = matrix_.label(t.ordinal)] {
    if (file) {
      try {
        write_output(*file);
      } catch (const std::exception& e) {
        spdlog::error("task {} ({}): no output written: {}", cell, id.substr(0, 12), e.what());
        writer->push(EventRecord{ctx_.run_id, unix_now(), "output_failed",
                                 safe_dump({{"task", id}, {"cell", cell}, {"error", e.what()}})});
      }
    }
    if (line) results_->append(*line);
  });
}

void Run::follow(TaskWorker& worker, uint32_t index, ConversationStep&& step) {
  if (step.replayed > 0) turns_replayed_.fetch_add(static_cast<uint64_t>(step.replayed), std::memory_order_relaxed);
  if (step.kind == ConversationStep::Kind::finished) {
    finish_conversation(worker, index, std::move(step.result));
    return;
  }
  TaskRuntime& t = dispatcher_->task(index);
  t.turn = step.turn;
  t.turn_request = std::move(step.request);
  t.turn_attempts = 0;
  t.history.clear();  // a new turn: retries and poison count from here
  if (!dispatcher_->queue_turn(index)) restart_conversation(worker, index);
}

void Run::restart_conversation(TaskWorker& worker, uint32_t index) {
  worker.conversations().close(index);
  ++dispatcher_->task(index).conversation_no;
  dispatcher_->restart(index);
}

void Run::start_conversations(TaskWorker& worker, WorkerState& state) {
  ConversationRunner& conversations = worker.conversations();
  for (uint32_t index : dispatcher_->take_restarts(state.index)) restart_conversation(worker, index);
  if (!suite_.has_task || conversations.open() >= state.max_open) return;
  // A bounded batch, so the turns it produces go out before more begin.
  size_t room = std::min<size_t>(state.max_open - conversations.open(), 256);
  auto starts = dispatcher_->take_starts(state.index, room);
  for (uint32_t index : starts) {
    TaskRuntime& t = dispatcher_->task(index);
    ConversationStart start;
    start.task_id = t.id;
    start.ordinal = t.ordinal;
    start.attempt = t.conversation_no;
    start.model = ctx_.models[static_cast<size_t>(t.conv_model)];
    start.deadline = SteadyClock::now() + Millis(suite_.conversation.task_timeout_ms);
    // Turns answered before this run (a crash, a stop) are replayed.
    if (t.attempts_total > 0 && t.attempts_run == 0) {
      try {
        if (!state.turn_log) state.turn_log = std::make_unique<TurnLog>(options_.db_path);
        start.recorded = state.turn_log->load(t.id, t.conversation_no);
      } catch (const std::exception& e) {
        spdlog::warn("task {}: its answered turns could not be read ({}): they are sent again", label(t), e.what());
      }
    }
    state.deadlines.push(WorkerState::Deadline{start.deadline, index});
    ConversationStep step;
    try {
      step = worker.conversations().start(index, std::move(start));
    } catch (const std::exception& e) {
      step = ConversationStep{};
      step.result.task_id = t.id;
      step.result.state = TaskState::failed;
      step.result.error_code = codes::INTERNAL;
      step.result.error_message = std::string("starting the conversation failed: ") + e.what();
      worker.conversations().close(index);
    }
    follow(worker, index, std::move(step));
  }
  if (starts.size() == room) {
    std::lock_guard lock(queue_.mutex);
    queue_.kick = true;  // more may be waiting: come back without sleeping
  }
}

void Run::expire_conversations(TaskWorker& worker, WorkerState& state) {
  ConversationRunner& conversations = worker.conversations();
  TimePoint now = SteadyClock::now();
  // Entries of conversations that ended wait for their time like the rest:
  // drop them once they outnumber the open ones, or a long run piles up
  // one per task finished within the timeout.
  if (state.deadlines.size() > 2 * conversations.open() + 1024) {
    std::vector<WorkerState::Deadline> live;
    while (!state.deadlines.empty()) {
      const auto& d = state.deadlines.top();
      if (conversations.is_open(d.task) && conversations.deadline(d.task) == d.at) live.push_back(d);
      state.deadlines.pop();
    }
    for (const auto& d : live) state.deadlines.push(d);
  }
  while (!state.deadlines.empty() && state.deadlines.top().at <= now) {
    auto [at, index] = state.deadlines.top();
    state.deadlines.pop();
    if (!conversations.is_open(index) || conversations.deadline(index) != at) continue;  // ended or begun again
    if (dispatcher_->withdraw(index)) {
      TaskRuntime& t = dispatcher_->task(index);
      finish_conversation(worker, index, conversations.stop(index, codes::TASK_TIMEOUT,
                                                    "the task ran past conversation.task_timeout_ms (" +
                                                        std::to_string(suite_.conversation.task_timeout_ms) +
                                                        " ms) while turn " + std::to_string(t.turn) + " waited"));
    } else {
      http_->cancel(index);  // on the wire: its cancelled answer ends the task
    }
  }
}

void Run::switch_model(TaskWorker& worker, uint32_t from, uint32_t task, const std::string& cls) {
  if (!dispatcher_->exhaust_model(from, task)) return;  // another answer already moved on
  std::string note;
  auto next = worker.choose_next_model(from, dispatcher_->exhausted_models(), cls, note);
  nlohmann::json detail = {{"from", ctx_.models[from]}, {"to", next ? nlohmann::json(ctx_.models[*next]) : nlohmann::json()},
                           {"class", cls}, {"why", note}};
  writer_->push(EventRecord{ctx_.run_id, unix_now(), "model_switch", safe_dump(detail)});
  if (next) {
    spdlog::warn("model {} exhausted ({}): switching to {} ({})", ctx_.models[from], cls, ctx_.models[*next], note);
    dispatcher_->switch_to(*next);
  } else {
    spdlog::error("model {} exhausted ({}) and no model is left: stopping; unfinished tasks stay pending",
                  ctx_.models[from], cls);
    dispatcher_->no_model_left();
  }
}

void Run::worker_loop(TaskWorker& worker, WorkerState& state, std::atomic<int64_t>& busy_since_ms) {
  std::vector<HttpResponse> batch;
  const size_t me = static_cast<size_t>(state.index);
  while (!workers_done_.load()) {
    TimePoint now = SteadyClock::now();
    TimePoint wake = std::min(dispatcher_->next_wakeup(now), now + Millis(100));
    if (!state.deadlines.empty()) wake = std::min(wake, state.deadlines.top().at);
    {
      std::unique_lock lock(queue_.mutex);
      auto& mine = queue_.owned[me];
      queue_.cv.wait_until(lock, wake, [&] {
        return !queue_.items.empty() || !mine.empty() || queue_.kick || queue_.closed;
      });
      if (queue_.closed) return;
      size_t take = std::min<size_t>(queue_.items.size(), 256);
      batch.assign(std::make_move_iterator(queue_.items.begin()),
                   std::make_move_iterator(queue_.items.begin() + static_cast<long>(take)));
      queue_.items.erase(queue_.items.begin(), queue_.items.begin() + static_cast<long>(take));
      for (auto& r : mine) batch.push_back(std::move(r));
      mine.clear();
      queue_.kick = false;
    }
    // Time limits stop Lua, not a C function it called (a pathological
    // string pattern): the main loop watches for a worker stuck here.
    busy_since_ms = steady_ms();
    for (auto& r : batch) handle(worker, state, r);
    batch.clear();
    if (suite_.has_task) {
      expire_conversations(worker, state);
      start_conversations(worker, state);
    }
    launch(worker);
    busy_since_ms = 0;
    if (dispatcher_->idle()) close_queue();
  }
}

RunReport Run::execute() {
  // SIGHUP (a policy reload) is blocked by main() before anything else and
  // stays blocked to the very end: one sent while the run plans or finishes
  // waits instead of ending the process.
  RunReport report;
  report.db_path = options_.db_path;
  StoreLock lock(options_.db_path);
  Store store(options_.db_path, Store::Mode::read_write);
  if (!options_.results_path.empty()) results_ = std::make_unique<ResultsLog>(options_.results_path);
  ctx_.suite = &suite_;
  ctx_.matrix = &matrix_;
  registry_ = std::make_unique<PolicyRegistry>(PolicySources::for_suite(suite_));
  ctx_.policies = registry_.get();
  const std::string first_version = registry_->current()->version;
  // From here on no key's value reaches a log, the store or an error.
  std::vector<std::string> secrets;
  for (const auto& p : suite_.providers)
    for (const auto& k : p.keys) secrets.push_back(k.value);
  Redactor::install(secrets);

  RunInfo info{suite_.name, suite_.path, hostname(), static_cast<int>(getpid()), suite_.config_hash, first_version};
  ctx_.run_id = report.run_id = store.begin_run(info);
  fs::path log_dir = fs::absolute(options_.db_path).parent_path() / "logs";
  report.log_path = open_run_log(log_dir.string(), suite_.name, report.run_id);
  build_pool(store);
  // Every Lua state is built here, so a broken policy stops the run before it starts.
  std::vector<std::unique_ptr<TaskWorker>> workers;
  for (int i = 0; i < std::max(1, options_.workers); ++i) workers.push_back(std::make_unique<TaskWorker>(ctx_));
  std::function<int(uint64_t)> affinity;
  std::vector<std::string> key_ids;
  for (const auto& k : ctx_.keys) key_ids.push_back(k.key_id);
  if (suite_.has_key_for) affinity = [&](uint64_t ordinal) { return workers[0]->preferred_key(ordinal, key_ids); };
  plan(store, report, affinity, [&](uint64_t ordinal) { return workers[0]->current_request_hash(ordinal); });
  if (suite_.has_outputs) {
    // A run killed between a commit and its file leaves a done task without
    // its output: written here, from the store, before anything is sent.
    OutputCounts o = write_stored_outputs(store, workers[0]->suite_runtime(), /*only_missing=*/true);
    if (o.written > 0) spdlog::info("{} outputs of done tasks were missing: written from the store", o.written);
  }
  auto counters = dispatcher_->counters();
  spdlog::info("run {} of suite {} ({}): {} tasks, {} already done, {} failed; policies {}; store {}",
               report.run_id, suite_.name, suite_.path, counters.total, counters.done, counters.failed,
               first_version, options_.db_path);

  // From here on SIGINT and SIGTERM are taken by this loop: every thread
  // started below inherits the mask. Before, they simply end the process
  // (nothing is in flight, every transaction is whole).
  sigset_t signals = termination_signals();
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (!suite_.alerts.rules.empty()) {
    alerts_ = std::make_unique<AlertCounter>(suite_.alerts);
    // Windows span runs and monitor rounds: what fired lately stays quiet,
    // and what failed lately (an earlier run's attempts) counts.
    const double now = unix_now();
    for (size_t i = 0; i < suite_.alerts.rules.size(); ++i) {
      const AlertRule& rule = suite_.alerts.rules[i];
      alerts_->fired_before(i, store.last_alert_at(suite_.name, rule.name));
      alerts_->seed(i, store.failed_attempt_times(suite_.name, rule.cls, rule.code, now - rule.window_s, now));
    }
    if (!suite_.alerts.webhook.empty()) webhook_ = std::make_unique<WebhookSender>(suite_.alerts.webhook);
  }
  // A failed commit stops dispatching at once, from the writer's thread: no
  // request goes out whose answer could not be stored.
  writer_ = std::make_unique<Writer>(options_.db_path, [this] {
    dispatcher_->stop_dispatching();
    wake_all();
  });
  queue_.owned.resize(workers.size());
  http_ = std::make_unique<HttpClient>(HttpClientOptions{}, [this](std::vector<HttpResponse>&& done) {
    bool owned = false;
    {
      std::lock_guard lock(queue_.mutex);
      for (auto& r : done) {
        // The owner was set before the request was submitted.
        const TaskRuntime& t = dispatcher_->task(static_cast<uint32_t>(r.id));
        if (t.conversation && t.owner >= 0) {
          queue_.owned[static_cast<size_t>(t.owner)].push_back(std::move(r));
          owned = true;
        } else {
          queue_.items.push_back(std::move(r));
        }
      }
    }
    if (owned) queue_.cv.notify_all();
    else queue_.cv.notify_one();
  });

  TimePoint start = SteadyClock::now();
  std::vector<std::thread> threads;
  std::vector<std::atomic<int64_t>> busy_since_ms(workers.size());
  std::vector<WorkerState> states(workers.size());
  // Enough conversations open that every slot has a turn to send while the
  // others think: twice the slots' concurrency, unless the suite says.
  size_t max_open = suite_.conversation.max_open > 0 ? static_cast<size_t>(suite_.conversation.max_open)
                                                     : std::max<size_t>(16, 2 * total_concurrency_);
  for (size_t i = 0; i < workers.size(); ++i) {
    states[i].index = static_cast<int>(i);
    // max_open bounds the whole run: shared out exactly, the remainder to the
    // first workers (with fewer conversations than workers, some hold none).
    states[i].max_open = max_open / workers.size() + (i < max_open % workers.size() ? 1 : 0);
    threads.emplace_back([this, &w = *workers[i], &st = states[i], &busy = busy_since_ms[i]] {
      worker_loop(w, st, busy);
    });
  }

  Progress progress(suite_.name, options_.live_progress);
  PolicyWatcher watcher(*registry_, suite_);
  watcher.start();
  TimePoint grace_end = TimePoint::max();
  TimePoint next_snapshot = SteadyClock::now() + Millis(2000);
  TimePoint hard_end = TimePoint::max();
  bool cancelling = false;  // re-cancel every tick: a worker may submit just after a cancel
  std::shared_ptr<const Error> store_failure;
  while (!workers_done_.load()) {
    timespec tick{0, 100'000'000};
    int sig = sigtimedwait(&signals, nullptr, &tick);
    TimePoint now = SteadyClock::now();
    if (sig == SIGINT || sig == SIGTERM) {
      progress.clear();
      if (!report.interrupted) {
        report.interrupted = true;
        spdlog::warn("{} received: no new requests; waiting up to {} ms for {} in flight (again to stop now)",
                     sig == SIGINT ? "SIGINT" : "SIGTERM", options_.grace_ms, dispatcher_->counters().in_flight);
        dispatcher_->stop_dispatching();
        grace_end = now + Millis(options_.grace_ms);
        wake_all();
      } else if (hard_end == TimePoint::max()) {
        spdlog::warn("second signal: cancelling what is in flight");
        dispatcher_->stop_dispatching();
        cancelling = true;
        hard_end = now + Millis(2000);
      } else {
        std::_Exit(kExitStoppedEarly);  // third signal: committed work is safe, nothing else matters
      }
    }
    if (sig == SIGHUP) watcher.request_reload();
    for (auto& result : watcher.take_results()) report_reload(result);
    if (std::string why; !store_failure && !(why = lock.lost()).empty()) {
      // Results committed from now on would go to a file nobody can open.
      store_failure = std::make_shared<const Error>(codes::STORE_LOST, why + ": stopping the run", Stage::storage,
                                                    nlohmann::json{{"path", options_.db_path}});
      spdlog::error("{}", store_failure->what());
      dispatcher_->stop_dispatching();
      cancelling = true;
      wake_all();
    }
    if (!store_failure && (store_failure = writer_->failure())) {
      spdlog::error("{}: stopping the run", store_failure->what());
      dispatcher_->stop_dispatching();
      cancelling = true;
      wake_all();
    }
    if (now >= grace_end) cancelling = true;
    if (!cancelling && dispatcher_->models_exhausted()) {
      cancelling = true;  // no model left: stop at once; what is in flight goes back to pending
      wake_all();
    }
    if (cancelling) http_->cancel_all();
    if (now >= hard_end) {
      // A worker stuck in the suite's own Lua (request or check) cannot be
      // cancelled: what is committed is safe, so leave.
      spdlog::error("workers did not stop within 2 s of the second signal: exiting");
      writer_->flush();
      std::_Exit(kExitStoppedEarly);
    }
    watch_workers(busy_since_ms);
    if (now >= next_snapshot) {
      record_pool(now);
      next_snapshot = now + Millis(2000);
    }
    progress.update(dispatcher_->counters(), now);
  }
  for (auto& t : threads) t.join();
  http_.reset();
  progress.clear();
  record_pool(SteadyClock::now());
  writer_->flush();
  // The writer's account is final only now: answers that arrived after the
  // failed commit count as lost too.
  if (auto f = writer_->failure(); f && (!store_failure || store_failure->code() != codes::STORE_LOST)) {
    store_failure = f;
  }
  writer_.reset();

  report.seconds = ms_between(start, SteadyClock::now()) / 1000.0;
  report.counters = dispatcher_->counters();
  report.models_exhausted = dispatcher_->models_exhausted();
  report.blocked = dispatcher_->blocked();
  if (report.blocked > 0) {
    spdlog::error("{} tasks stay pending: no key can serve their model any more (rejected or out of quota)",
                  report.blocked);
  }
  if (store_failure) throw *store_failure;
  const auto& c = report.counters;
  std::string outcome = report.interrupted ? "interrupted" : report.models_exhausted ? "models_exhausted" : "completed";
  store.finish_run(report.run_id, outcome,
                   {{"total", c.total}, {"done", c.done}, {"failed", c.failed}, {"pending", c.total - c.done - c.failed},
                    {"seconds", report.seconds}});
  spdlog::info("run {} {}: {} done, {} failed, {} pending, {:.2f} s", report.run_id, outcome, c.done, c.failed,
               c.total - c.done - c.failed, report.seconds);
  report.turns_sent = turns_sent_.load();
  report.turns_replayed = turns_replayed_.load();
  if (suite_.has_task) {
    spdlog::info("conversations: {} turns sent, {} answered from the store (replayed after a stop)",
                 report.turns_sent, report.turns_replayed);
  }
  return report;
}

}  // namespace

RunReport run_suite(const Suite& suite, const RunOptions& options) {
  Run run(suite, options);
  return run.execute();
}

}  // namespace shepherd
