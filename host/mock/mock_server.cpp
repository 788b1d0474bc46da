#include "mock/mock_server.h"

#include "core/process.h"
#include "core/text.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <new>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "core/error.h"
#include "core/hash.h"
#include "mock/details/chat_answer.h"
#include "mock/details/chat_reply.h"
#include "mock/details/chat_stream.h"
#include "mock/details/event_handles.h"
#include "mock/details/mock_behavior.h"
#include "mock/details/mock_stats.h"
#include "mock/details/request_log.h"

namespace shepherd {

using namespace details;
using nlohmann::json;

namespace {

constexpr int listen_backlog = 65535;  // the kernel caps it at somaxconn
// A held request stays open until the client gives up, never because we did.
constexpr int connection_timeout_s = 24 * 3600;

[[noreturn]] void bind_failed(uint16_t port, const char* step, int err) {
  throw Error(codes::MOCK_BIND_FAILED,
              "mock server: cannot " + std::string(step) + " 127.0.0.1:" + std::to_string(port) +
                  ": " + std::strerror(err),
              Stage::execution, {{"port", port}, {"step", step}, {"errno", err}});
}

// A non-blocking listening socket on 127.0.0.1 with a deep accept queue, so a
// burst of thousands of connects is queued rather than refused.
UniqueFd listen_on(uint16_t port, uint16_t& bound_port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) bind_failed(port, "create a socket for", errno);
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  // Accepted connections inherit it: a streamed answer's events go out as
  // written, not held by Nagle until the client's delayed ACK (~40 ms each).
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    bind_failed(port, "bind", errno);
  if (::listen(fd.get(), listen_backlog) != 0) bind_failed(port, "listen on", errno);
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    bind_failed(port, "read the address of", errno);
  bound_port = ntohs(addr.sin_port);
  return fd;
}

// libevent writes with writev, which raises SIGPIPE when a client has gone.
// Block it on the serving thread; on exit swallow what our writes raised.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t set = sigpipe_set();
    pthread_sigmask(SIG_BLOCK, &set, &old_);
  }
  ~SigpipeBlock() {
    sigset_t set = sigpipe_set();
    if (!sigismember(&old_, SIGPIPE)) {
      timespec zero{0, 0};
      while (sigtimedwait(&set, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  static sigset_t sigpipe_set() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    return set;
  }
  sigset_t old_;
};

// "Authorization: Bearer K" (OpenAI) or "api-key: K" (Azure).
std::string_view request_key(evkeyvalq* headers) {
  if (const char* auth = evhttp_find_header(headers, "Authorization")) {
    std::string_view v = trim(auth);
    if (v.size() > 7 && strncasecmp(v.data(), "Bearer ", 7) == 0) return trim(v.substr(7));
  }
  if (const char* key = evhttp_find_header(headers, "api-key")) return trim(key);
  return {};
}

// Azure OpenAI: /openai/deployments/{deployment}/chat/completions (the query,
// ?api-version=…, is already cut off).
bool is_azure_chat_path(std::string_view path) {
  constexpr std::string_view prefix = "/openai/deployments/";
  constexpr std::string_view suffix = "/chat/completions";
  return path.size() > prefix.size() + suffix.size() && path.substr(0, prefix.size()) == prefix &&
         path.substr(path.size() - suffix.size()) == suffix &&
         path.substr(prefix.size(), path.size() - prefix.size() - suffix.size()).find('/') == std::string_view::npos;
}

std::string_view path_of(const char* uri) {
  std::string_view path = uri ? uri : "";
  return path.substr(0, path.find('?'));
}

timeval to_timeval(double ms) {
  const auto us = static_cast<int64_t>(ms * 1000.0);
  return timeval{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
}

}  // namespace

class MockServer::Impl {
 public:
  Impl(Scenario scenario, uint16_t port);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  uint16_t port() const { return port_; }
  void run();
  void start();
  void stop();
  json stats() const { return stats_.to_json(); }
  json requests() const { return log_.to_json(); }

 private:
  // What a held request does when its timer fires.
  enum class Action { reply, stall, reset, hang, stream };

  struct Pending {
    Impl* server = nullptr;
    evhttp_request* req = nullptr;
    evhttp_connection* evcon = nullptr;
    Action action = Action::reply;
    Reply reply;
    EventPtr timer;  // absent for hang; for a stream, the next step
    // Action::stream only: the headers are out, steps follow.
    StreamPlan stream;
    size_t next_step = 0;
    EventPtr keep_alive;  // writes a comment after comment_ms without a write
    AnsweredRequest record;  // logged once the answer is written in full
  };

  // How the request asked to be answered.
  struct StreamAsk {
    bool stream = false;         // "stream": true
    bool include_usage = false;  // "stream_options": {"include_usage": true}
  };

  static void on_request(evhttp_request* req, void* arg);
  static void on_wake(evutil_socket_t fd, short what, void* arg);
  static void on_timer(evutil_socket_t fd, short what, void* arg);
  static void on_keep_alive(evutil_socket_t fd, short what, void* arg);
  static void on_close(evhttp_connection* evcon, void* arg);
  static void on_written(evhttp_request* req, void* arg);
  static void on_closed_while_writing(evhttp_connection* evcon, void* arg);
  static StreamAsk stream_ask(const json& body);

  void serve();
  void route(evhttp_request* req);
  void handle_chat(evhttp_request* req);
  void decide_and_answer(evhttp_request* req);
  void answer(evhttp_request* req, Reply reply, double delay_ms, const AnsweredRequest& record);
  // `record`: a chat request's answer, logged once written in full.
  void send(evhttp_request* req, const Reply& reply, const AnsweredRequest* record = nullptr);
  void hold(evhttp_request* req, Action action, Reply reply, double delay_ms,
            const AnsweredRequest& record);
  void fire(Pending* p);
  void release(Pending* p);
  void log_when_written(evhttp_request* req, AnsweredRequest record, int status);
  void start_stream(evhttp_request* req, StreamPlan plan, const Reply& head, double delay_ms,
                    const AnsweredRequest& record);
  void stream_step(Pending* p);
  void end_stream(Pending* p);
  void write_event(Pending* p, std::string_view text);
  static void start_stall(evhttp_request* req, const Reply& reply);
  static void watch_for_close(evhttp_connection* evcon);
  static void reset_connection(evhttp_connection* evcon);

  Scenario scenario_;
  MockBehavior behavior_;  // refers to scenario_
  MockStats stats_;
  RequestLog log_;
  // Answers being written, one per connection (evhttp reads a connection's
  // next request only after the answer to the last one is out).
  std::unordered_map<evhttp_connection*, AnsweredRequest> writing_;
  EventBasePtr base_;
  EvhttpPtr http_;
  UniqueFd wake_fd_;
  EventPtr wake_event_;
  EvbufferPtr scratch_;  // carries one stream write into evhttp, which drains it
  std::unordered_map<Pending*, std::unique_ptr<Pending>> pending_;
  uint64_t completions_ = 0;
  bool committed_ = false;  // the request being routed has been answered or held
  uint16_t port_ = 0;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> serving_{false};
  std::thread thread_;
};

MockServer::Impl::Impl(Scenario scenario, uint16_t port)
    : scenario_(std::move(scenario)), behavior_(scenario_) {
  raise_open_file_limit();
  UniqueFd listener = listen_on(port, port_);

  // evhttp toggles reading and writing several times per request; the epoll
  // changelist folds those toggles into one epoll_ctl per loop turn.
  std::unique_ptr<event_config, decltype(&event_config_free)> config(event_config_new(),
                                                                     event_config_free);
  if (config) event_config_set_flag(config.get(), EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  base_.reset(config ? event_base_new_with_config(config.get()) : event_base_new());
  if (!base_) throw Error(codes::INTERNAL, "mock server: event_base_new failed", Stage::execution);
  http_.reset(evhttp_new(base_.get()));
  if (!http_) throw Error(codes::INTERNAL, "mock server: evhttp_new failed", Stage::execution);
  evhttp_set_timeout(http_.get(), connection_timeout_s);
  evhttp_set_gencb(http_.get(), on_request, this);
  if (!evhttp_accept_socket_with_handle(http_.get(), listener.get()))
    bind_failed(port, "accept on", errno);
  listener.release();  // the evhttp listener closes it now

  // Libevent is built here without thread support, so stop() wakes the loop
  // through an eventfd instead of calling into the base from another thread.
  wake_fd_ = UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_) throw Error(codes::INTERNAL, "mock server: eventfd failed", Stage::execution);
  wake_event_.reset(event_new(base_.get(), wake_fd_.get(), EV_READ | EV_PERSIST, on_wake, this));
  if (!wake_event_ || event_add(wake_event_.get(), nullptr) != 0)
    throw Error(codes::INTERNAL, "mock server: cannot watch the wake-up fd", Stage::execution);
  scratch_.reset(evbuffer_new());
  if (!scratch_) throw Error(codes::INTERNAL, "mock server: evbuffer_new failed", Stage::execution);
}

MockServer::Impl::~Impl() {
  stop();
  if (thread_.joinable()) thread_.join();
  // Freeing evhttp closes every connection; on_close drops the held requests
  // while pending_ and stats_ still exist.
  http_.reset();
  pending_.clear();
  wake_event_.reset();
  base_.reset();
}

void MockServer::Impl::serve() {
  SigpipeBlock no_sigpipe;
  if (!stop_requested_) event_base_loop(base_.get(), 0);
  serving_ = false;
}

void MockServer::Impl::run() {
  if (serving_.exchange(true))
    throw Error(codes::INTERNAL, "mock server is already serving", Stage::execution);
  serve();
}

void MockServer::Impl::start() {
  if (serving_.exchange(true))
    throw Error(codes::INTERNAL, "mock server is already serving", Stage::execution);
  if (thread_.joinable()) thread_.join();  // a previous start() that was stopped
  thread_ = std::thread([this] { serve(); });
}

void MockServer::Impl::stop() {
  stop_requested_ = true;
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
}

void MockServer::Impl::on_wake(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Impl*>(arg);
  uint64_t count = 0;
  [[maybe_unused]] auto n = ::read(fd, &count, sizeof count);
  if (self->stop_requested_) event_base_loopbreak(self->base_.get());
}

void MockServer::Impl::on_request(evhttp_request* req, void* arg) {
  auto* self = static_cast<Impl*>(arg);
  self->committed_ = false;
  try {
    self->route(req);
  } catch (...) {
    // Nothing may unwind through libevent; answer unless we already did.
    if (!self->committed_) evhttp_send_error(req, 500, "Internal Server Error");
  }
}

void MockServer::Impl::route(evhttp_request* req) {
  const std::string_view path = path_of(evhttp_request_get_uri(req));
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  if (method == EVHTTP_REQ_POST &&
      (path == "/v1/chat/completions" || path == "/chat/completions" || is_azure_chat_path(path))) {
    handle_chat(req);
  } else if (method == EVHTTP_REQ_GET && path == "/stats") {
    Reply r;
    r.body = stats_.to_json().dump();
    send(req, r);
  } else if (method == EVHTTP_REQ_GET && path == "/requests") {
    Reply r;
    r.body = log_.to_json_text();
    send(req, r);
  } else if (method == EVHTTP_REQ_POST && path == "/reset") {
    behavior_.reset();
    stats_.clear();
    log_.clear();
    Reply r;
    r.body = R"({"reset":true})";
    send(req, r);
  } else {
    send(req, not_found_reply());
  }
}

void MockServer::Impl::handle_chat(evhttp_request* req) {
  stats_.request_started();
  try {
    decide_and_answer(req);
  } catch (...) {
    if (!committed_) stats_.request_finished();  // on_request answers it with a 500
    throw;
  }
}

void MockServer::Impl::decide_and_answer(evhttp_request* req) {
  evbuffer* input = evhttp_request_get_input_buffer(req);
  const size_t size = evbuffer_get_length(input);
  const char* data = size ? reinterpret_cast<const char*>(evbuffer_pullup(input, -1)) : "";
  const json body = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);

  static const json no_messages = json::array();
  const json* messages = &no_messages;
  ChatFacts facts;
  const char* why = "We could not parse the JSON body of your request.";
  if (body.is_object()) {
    auto model = body.find("model");
    if (model != body.end() && model->is_string() &&
        !model->get_ref<const std::string&>().empty()) {
      facts.well_formed = true;
      facts.model = model->get_ref<const std::string&>();
    } else {
      why = "you must provide a model parameter";
    }
    if (auto m = body.find("messages"); m != body.end()) messages = &*m;
  }
  const StreamAsk ask = stream_ask(body);
  facts.body = std::string_view(data, size);
  facts.key = request_key(evhttp_request_get_input_headers(req));
  AnsweredRequest record;
  record.body_hash = stable_hash64(facts.body);
  record.turn = facts.turn = read_conversation(*messages).turn;
  if (facts.well_formed && behavior_.tracks_cells()) {
    std::string cell(facts.model);
    cell += '\n';
    cell += messages->dump(-1, ' ', false, json::error_handler_t::replace);
    facts.cell = stable_hash64(cell);
  }

  const Decision d = behavior_.decide(facts, SteadyClock::now());
  std::string_view key_label = facts.key;
  if (facts.key.empty())
    key_label = "<none>";
  else if ((d.outcome == Outcome::bad_request || d.outcome == Outcome::unauthorized) &&
           !behavior_.key_valid(facts.key))
    key_label = "<invalid>";  // an unknown key is never recorded or echoed
  stats_.record(d.outcome, key_label, facts.model.empty() ? "<none>" : facts.model);

  auto with_rate = [&](Reply r) {
    if (d.rate) add_rate_headers(r, *d.rate);
    return r;
  };
  // Text or tool calls, decided by the conversation alone (see chat_answer.h).
  const ToolsSpec* tools = scenario_.tools ? &*scenario_.tools : nullptr;
  auto chat = [&] { return answer_chat(body, *messages, tools); };
  auto completion = [&](std::string_view model) {
    Reply r;
    r.body =
        completion_body(++completions_, static_cast<int64_t>(std::time(nullptr)), model, chat());
    return with_rate(std::move(r));
  };
  // Answers that carry content stream when asked to; hang and error_500 never do.
  auto stream = [&](std::string_view model, StreamFault fault) {
    StreamHead head;
    head.id = ++completions_;
    head.created = static_cast<int64_t>(std::time(nullptr));
    head.model = model;
    head.include_usage = ask.include_usage;
    start_stream(req, stream_plan(head, chat(), fault), with_rate(Reply{}), d.latency_ms, record);
  };

  switch (d.outcome) {
    case Outcome::bad_request: return answer(req, bad_request_reply(why), 0, record);
    case Outcome::unauthorized: return answer(req, unauthorized_reply(), 0, record);
    case Outcome::canned: return answer(req, canned_reply(*d.canned), d.latency_ms, record);
    case Outcome::rate_limited:
      return answer(req, rate_limited_reply(*d.rate, facts.model), 0, record);
    case Outcome::quota_exhausted: return answer(req, with_rate(quota_reply()), 0, record);
    case Outcome::error_500:
      return answer(req, with_rate(server_error_reply()), d.latency_ms, record);
    case Outcome::ok:
      if (ask.stream) return stream(facts.model, StreamFault::none);
      return answer(req, completion(facts.model), d.latency_ms, record);
    case Outcome::wrong_model:
      if (ask.stream) return stream(scenario_.wrong_model_name, StreamFault::none);
      return answer(req, completion(scenario_.wrong_model_name), d.latency_ms, record);
    case Outcome::malformed: {
      if (ask.stream) return stream(facts.model, StreamFault::malformed);
      Reply r = completion(facts.model);
      r.body.resize(r.body.size() / 2);  // truncated JSON: not a chat completion
      return answer(req, std::move(r), d.latency_ms, record);
    }
    case Outcome::hang: return hold(req, Action::hang, Reply{}, -1, record);
    case Outcome::stall:
      if (ask.stream) return stream(facts.model, StreamFault::stall);
      return hold(req, Action::stall, completion(facts.model), d.latency_ms, record);
    case Outcome::reset:
      if (ask.stream) return stream(facts.model, StreamFault::reset);
      return hold(req, Action::reset, Reply{}, d.latency_ms, record);
  }
}

MockServer::Impl::StreamAsk MockServer::Impl::stream_ask(const json& body) {
  StreamAsk ask;
  if (!body.is_object()) return ask;
  auto stream = body.find("stream");
  ask.stream = stream != body.end() && stream->is_boolean() && stream->get<bool>();
  auto options = body.find("stream_options");
  if (ask.stream && options != body.end() && options->is_object()) {
    auto usage = options->find("include_usage");
    ask.include_usage = usage != options->end() && usage->is_boolean() && usage->get<bool>();
  }
  return ask;
}

void MockServer::Impl::answer(evhttp_request* req, Reply reply, double delay_ms,
                              const AnsweredRequest& record) {
  if (delay_ms > 0) return hold(req, Action::reply, std::move(reply), delay_ms, record);
  send(req, reply, &record);
  stats_.request_finished();
}

void MockServer::Impl::send(evhttp_request* req, const Reply& reply,
                            const AnsweredRequest* record) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", reply.content_type);
  for (const auto& [name, value] : reply.headers) evhttp_add_header(headers, name, value.c_str());
  evbuffer_add(evhttp_request_get_output_buffer(req), reply.body.data(), reply.body.size());
  committed_ = true;
  if (record) log_when_written(req, *record, reply.status);
  evhttp_send_reply(req, reply.status, reason_phrase(reply.status), nullptr);
}

// evhttp calls on_written once the last byte of the answer is handed to the
// socket; if the connection goes first, the entry is dropped unlogged.
void MockServer::Impl::log_when_written(evhttp_request* req, AnsweredRequest record, int status) {
  evhttp_connection* evcon = evhttp_request_get_connection(req);
  if (evcon == nullptr) return;  // the client is gone: nothing will be written
  record.status = status;
  writing_[evcon] = record;
  evhttp_request_set_on_complete_cb(req, on_written, this);
  evhttp_connection_set_closecb(evcon, on_closed_while_writing, this);
}

void MockServer::Impl::on_written(evhttp_request* req, void* arg) {
  auto* self = static_cast<Impl*>(arg);
  evhttp_connection* evcon = evhttp_request_get_connection(req);
  auto it = self->writing_.find(evcon);
  if (it == self->writing_.end()) return;
  AnsweredRequest entry = it->second;
  self->writing_.erase(it);
  evhttp_connection_set_closecb(evcon, nullptr, nullptr);
  entry.answered_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  self->log_.add(entry);
}

void MockServer::Impl::on_closed_while_writing(evhttp_connection* evcon, void* arg) {
  static_cast<Impl*>(arg)->writing_.erase(evcon);
}

// Keeps the request until its timer fires (never, for hang) or its client goes.
void MockServer::Impl::hold(evhttp_request* req, Action action, Reply reply, double delay_ms,
                            const AnsweredRequest& record) {
  auto owned = std::make_unique<Pending>();
  Pending* p = owned.get();
  p->server = this;
  p->req = req;
  p->evcon = evhttp_request_get_connection(req);
  p->action = action;
  p->reply = std::move(reply);
  p->record = record;
  if (action != Action::hang) {
    p->timer.reset(evtimer_new(base_.get(), on_timer, p));
    if (!p->timer) throw std::bad_alloc();
  }
  pending_.emplace(p, std::move(owned));
  committed_ = true;

  if (p->timer) {
    const timeval delay = to_timeval(std::max(0.0, delay_ms));
    evtimer_add(p->timer.get(), &delay);
  }
  watch_for_close(p->evcon);
  evhttp_connection_set_closecb(p->evcon, on_close, p);
}

void MockServer::Impl::on_timer(evutil_socket_t, short, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  p->server->fire(p);
}

void MockServer::Impl::fire(Pending* p) {
  switch (p->action) {
    case Action::reply: {
      evhttp_request* req = p->req;
      evhttp_connection_set_closecb(p->evcon, nullptr, nullptr);
      const Reply reply = std::move(p->reply);
      const AnsweredRequest record = p->record;
      release(p);  // frees the timer whose callback this is: libevent allows it
      send(req, reply, &record);
      return;
    }
    case Action::stall:
      // Stays held: the connection is dropped only when the client gives up.
      start_stall(p->req, p->reply);
      p->reply = Reply{};
      return;
    case Action::reset: {
      evhttp_connection* evcon = p->evcon;
      evhttp_connection_set_closecb(evcon, nullptr, nullptr);
      release(p);
      reset_connection(evcon);
      return;
    }
    case Action::hang: return;  // has no timer
    case Action::stream: return stream_step(p);
  }
}

void MockServer::Impl::release(Pending* p) {
  pending_.erase(p);
  stats_.request_finished();
}

// Status and headers at once (the client sees the response begin), then the
// plan's steps from a timer: the first after the latency, the rest chunk_ms
// apart. Chunked transfer, as evhttp does for HTTP/1.1 without a length.
void MockServer::Impl::start_stream(evhttp_request* req, StreamPlan plan, const Reply& head,
                                    double delay_ms, const AnsweredRequest& record) {
  auto owned = std::make_unique<Pending>();
  Pending* p = owned.get();
  p->server = this;
  p->req = req;
  p->evcon = evhttp_request_get_connection(req);
  p->action = Action::stream;
  p->stream = std::move(plan);
  p->record = record;
  p->timer.reset(evtimer_new(base_.get(), on_timer, p));
  if (!p->timer) throw std::bad_alloc();
  if (scenario_.stream.comment_ms > 0) {
    p->keep_alive.reset(evtimer_new(base_.get(), on_keep_alive, p));
    if (!p->keep_alive) throw std::bad_alloc();
  }
  pending_.emplace(p, std::move(owned));
  committed_ = true;
  stats_.record_streamed();

  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", "text/event-stream");
  evhttp_add_header(headers, "Cache-Control", "no-cache");
  for (const auto& [name, value] : head.headers) evhttp_add_header(headers, name, value.c_str());
  evhttp_send_reply_start(req, 200, reason_phrase(200));

  const timeval delay = to_timeval(std::max(0.0, delay_ms));
  evtimer_add(p->timer.get(), &delay);
  if (p->keep_alive) {
    const timeval period = to_timeval(scenario_.stream.comment_ms);
    evtimer_add(p->keep_alive.get(), &period);
  }
  watch_for_close(p->evcon);
  evhttp_connection_set_closecb(p->evcon, on_close, p);
}

void MockServer::Impl::stream_step(Pending* p) {
  const std::vector<std::string>& steps = p->stream.steps;
  if (p->next_step == steps.size()) return end_stream(p);  // a reset, one step after the last
  const double chunk_ms = scenario_.stream.chunk_ms;
  do {
    write_event(p, steps[p->next_step++]);
  } while (chunk_ms <= 0 && p->next_step < steps.size());
  // A reset waits one more step, so what was written reaches the client first.
  if (p->next_step < steps.size() || p->stream.ending == StreamPlan::Ending::reset) {
    const timeval delay = to_timeval(chunk_ms);
    evtimer_add(p->timer.get(), &delay);
    return;
  }
  end_stream(p);
}

void MockServer::Impl::end_stream(Pending* p) {
  switch (p->stream.ending) {
    case StreamPlan::Ending::done: {
      evhttp_request* req = p->req;
      const AnsweredRequest record = p->record;
      evhttp_connection_set_closecb(p->evcon, nullptr, nullptr);
      release(p);  // may free the timer whose callback this is: libevent allows it
      log_when_written(req, record, 200);  // logged when the final chunk is out
      evhttp_send_reply_end(req);
      return;
    }
    case StreamPlan::Ending::stall:
      // Silent from now on, keep-alive comments included; held until the client goes.
      p->keep_alive.reset();
      return;
    case StreamPlan::Ending::reset: {
      evhttp_connection* evcon = p->evcon;
      evhttp_connection_set_closecb(evcon, nullptr, nullptr);
      release(p);
      reset_connection(evcon);
      return;
    }
  }
}

// One write of a stream: its own HTTP chunk. Any write restarts the keep-alive wait.
void MockServer::Impl::write_event(Pending* p, std::string_view text) {
  evbuffer_add(scratch_.get(), text.data(), text.size());
  evhttp_send_reply_chunk(p->req, scratch_.get());
  evbuffer_drain(scratch_.get(), evbuffer_get_length(scratch_.get()));  // if evhttp declined it
  if (p->keep_alive) {
    const timeval period = to_timeval(scenario_.stream.comment_ms);
    evtimer_add(p->keep_alive.get(), &period);
  }
}

void MockServer::Impl::on_keep_alive(evutil_socket_t, short, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  p->server->write_event(p, keep_alive_comment);
}

void MockServer::Impl::on_close(evhttp_connection*, void* arg) {
  auto* p = static_cast<Pending*>(arg);
  // When the client hangs up, evhttp detaches an unanswered request and leaves
  // it to us; when evhttp itself is freed, it still owns and frees it.
  if (evhttp_request_get_connection(p->req) == nullptr) evhttp_request_free(p->req);
  p->server->release(p);
}

// Status, headers and the full Content-Length, then half the body and silence.
void MockServer::Impl::start_stall(evhttp_request* req, const Reply& reply) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", reply.content_type);
  for (const auto& [name, value] : reply.headers) evhttp_add_header(headers, name, value.c_str());
  evhttp_add_header(headers, "Content-Length", std::to_string(reply.body.size()).c_str());
  evhttp_send_reply_start(req, reply.status, reason_phrase(reply.status));
  EvbufferPtr half(evbuffer_new());
  if (!half) return;
  evbuffer_add(half.get(), reply.body.data(), reply.body.size() / 2);
  evhttp_send_reply_chunk(req, half.get());
}

// Once a request is read, evhttp stops reading its connection, so a client
// that gives up on a held request would go unnoticed. Read again, but without
// evhttp's read callback (which must not run mid-request): EOF then reaches
// evhttp's event callback, which frees the connection and calls on_close.
// (evhttp_send_reply later installs its own callbacks again.)
void MockServer::Impl::watch_for_close(evhttp_connection* evcon) {
  bufferevent* bev = evhttp_connection_get_bufferevent(evcon);
  bufferevent_data_cb read_cb = nullptr;
  bufferevent_data_cb write_cb = nullptr;
  bufferevent_event_cb event_cb = nullptr;
  void* cb_arg = nullptr;
  bufferevent_getcb(bev, &read_cb, &write_cb, &event_cb, &cb_arg);
  bufferevent_setcb(bev, nullptr, write_cb, event_cb, cb_arg);
  bufferevent_enable(bev, EV_READ);
}

// Abort with a TCP RST rather than an orderly FIN. SO_LINGER {1,0} alone is
// not enough: evhttp_connection_free shuts the socket down for writing (a FIN)
// before the deferred close, and the client then reads a clean EOF. So on
// Linux we first dissolve the connection with connect(AF_UNSPEC), which sends
// the RST at once; the linger setting covers systems where that is refused.
// What a stream already wrote is pushed out first, so the reset comes mid-stream.
void MockServer::Impl::reset_connection(evhttp_connection* evcon) {
  bufferevent* bev = evhttp_connection_get_bufferevent(evcon);
  const evutil_socket_t fd = bufferevent_getfd(bev);
  if (fd >= 0) {
    evbuffer_write(bufferevent_get_output(bev), fd);
    const linger abort_on_close{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    ::connect(fd, &unspec, sizeof unspec);
  }
  evhttp_connection_free(evcon);  // also frees the request it still holds
}

MockServer::MockServer(Scenario scenario, uint16_t port)
    : impl_(std::make_unique<Impl>(std::move(scenario), port)) {}

MockServer::~MockServer() = default;

uint16_t MockServer::port() const { return impl_->port(); }
void MockServer::run() { impl_->run(); }
void MockServer::start() { impl_->start(); }
void MockServer::stop() { impl_->stop(); }
nlohmann::json MockServer::stats() const { return impl_->stats(); }
nlohmann::json MockServer::requests() const { return impl_->requests(); }

}  // namespace shepherd
