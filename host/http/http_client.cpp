#include "http/http_client.h"

#include "core/process.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/clock.h"
#include "core/error.h"
#include "http/details/curl_handles.h"
#include "http/details/transfer.h"

namespace shepherd {

using details::Transfer;

namespace {

// Stall limits are hundreds of milliseconds and up: a 50 ms sweep finds a
// stalled transfer soon enough and costs nothing next to the I/O.
constexpr auto stall_sweep_interval = Millis(50);
constexpr int max_events = 1024;

bool watched(const HttpRequest& r) { return r.stall_timeout_ms > 0 || r.first_byte_timeout_ms > 0; }

// libcurl 7.88 walks every cached connection of a multi handle when it looks
// for one to reuse and again when a handle is removed: O(connections) per
// request, which at 10,000 in flight costs ~200 us each. Spreading transfers
// over several multi handles (all on this one loop) keeps each cache short.
// A shard takes new transfers until it holds shard_fill of them, so light
// loads stay on one cache (best reuse, one HTTP/2 connection) and heavy
// loads spread evenly.
constexpr size_t shard_count = 32;
constexpr size_t shard_fill = 128;

// epoll data: the shard in the high half, the socket in the low half; the
// eventfd gets a tag no socket can have.
constexpr uint64_t wake_tag = ~uint64_t{0};

struct Pending {
  HttpRequest request;
  TimePoint submitted;
};

[[noreturn]] void fail_init(const std::string& what) {
  throw Error(codes::HTTP_INIT_FAILED, "HTTP client setup failed: " + what, Stage::execution);
}

}  // namespace

class HttpClient::Impl {
 public:
  Impl(HttpClientOptions options, CompletionSink sink);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void submit(std::vector<HttpRequest>&& batch);
  void submit(HttpRequest&& request);
  void cancel_all();
  void cancel(uint64_t id);
  size_t in_flight() const { return in_flight_.load(std::memory_order_relaxed); }

 private:
  void wake();

  // Everything below runs on the loop thread only.
  void run();
  void dispatch(const epoll_event& event, bool& woken);
  bool handle_wake();  // false once the destructor asked the loop to stop
  void start(Pending&& pending);
  void sweep_stalled();
  void collect_finished();
  void abort(Transfer& transfer, Transport transport, std::string detail);
  void complete(Transfer& transfer, Transport transport, std::string detail);
  void reject(Pending&& pending, Transport transport, std::string detail);
  void deliver();
  void shutdown();
  int wait_timeout_ms() const;

  struct Shard {
    Impl* owner = nullptr;
    uint32_t index = 0;
    details::multi_handle multi;
    std::optional<TimePoint> timer_due;  // curl's single timeout for this multi
    size_t active = 0;
  };
  Shard& pick_shard();

  static int on_socket(CURL* easy, curl_socket_t socket, int what, void* userp, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* userp);

  CompletionSink sink_;
  details::unique_fd epoll_;
  details::unique_fd wake_fd_;
  // The shards' connection caches are separate; DNS answers and TLS sessions
  // are shared by all (one thread uses it, so no locking).
  details::share_handle share_;
  std::array<Shard, shard_count> shards_;  // after the fds: multi cleanup still calls on_socket

  // Shared with submitting threads.
  std::mutex mutex_;
  std::vector<Pending> queue_;
  std::vector<Pending> cancelled_queue_;  // queued when cancel_all() was called
  bool cancel_requested_ = false;
  std::vector<uint64_t> cancel_ids_;  // cancel(id) calls not yet carried out
  bool stop_requested_ = false;
  std::atomic<size_t> in_flight_{0};

  // Loop thread only.
  TimePoint now_ = SteadyClock::now();  // read once per loop turn
  TimePoint next_sweep_{};
  size_t watched_ = 0;  // active transfers with a first-byte or stall limit
  std::vector<std::unique_ptr<Transfer>> active_;
  std::vector<std::unique_ptr<Transfer>> free_;  // idle easy handles, reused
  std::vector<HttpResponse> done_;               // finished in this loop turn
  std::vector<Pending> draining_;
  std::vector<Transfer*> stalled_;

  std::thread thread_;  // last: starts once everything above exists
};

HttpClient::Impl::Impl(HttpClientOptions options, CompletionSink sink) : sink_(std::move(sink)) {
  if (!sink_) fail_init("no completion sink");
  if (!details::curl_global_ready()) fail_init("curl_global_init failed");
  raise_open_file_limit();

  epoll_ = details::unique_fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) fail_init(std::string("epoll_create1: ") + std::strerror(errno));
  wake_fd_ = details::unique_fd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_) fail_init(std::string("eventfd: ") + std::strerror(errno));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = wake_tag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &event) != 0)
    fail_init(std::string("epoll_ctl: ") + std::strerror(errno));

  share_.reset(curl_share_init());
  if (!share_) fail_init("curl_share_init failed");
  if (curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
      curl_share_setopt(share_.get(), CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)
    fail_init("curl_share_setopt failed");

  // Each shard may cache max_connections: a shard never holds many more
  // connections than its share of the peak concurrency anyway.
  const auto max_connections =
      static_cast<long>(std::min<size_t>(options.max_connections, LONG_MAX));
  for (uint32_t i = 0; i < shard_count; ++i) {
    Shard& shard = shards_[i];
    shard.owner = this;
    shard.index = i;
    shard.multi.reset(curl_multi_init());
    if (!shard.multi) fail_init("curl_multi_init failed");
    CURLM* m = shard.multi.get();
    CURLMcode rc = CURLM_OK;
    const auto set = [&](CURLMoption option, auto value) {
      if (rc == CURLM_OK) rc = curl_multi_setopt(m, option, value);
    };
    set(CURLMOPT_SOCKETFUNCTION, &on_socket);
    set(CURLMOPT_SOCKETDATA, static_cast<void*>(&shard));
    set(CURLMOPT_TIMERFUNCTION, &on_timer);
    set(CURLMOPT_TIMERDATA, static_cast<void*>(&shard));
    set(CURLMOPT_MAXCONNECTS, max_connections);
    set(CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
    if (rc != CURLM_OK) fail_init(curl_multi_strerror(rc));
  }

  thread_ = std::thread([this] { run(); });
}

HttpClient::Impl::~Impl() {
  {
    std::lock_guard lock(mutex_);
    stop_requested_ = true;
  }
  wake();
  thread_.join();
}

void HttpClient::Impl::wake() {
  const uint64_t one = 1;
  // Only EAGAIN (counter saturated) can fail, and then a wake-up is pending anyway.
  [[maybe_unused]] const auto written = ::write(wake_fd_.get(), &one, sizeof one);
}

void HttpClient::Impl::submit(std::vector<HttpRequest>&& batch) {
  if (batch.empty()) return;
  const auto now = SteadyClock::now();
  in_flight_.fetch_add(batch.size(), std::memory_order_relaxed);
  bool was_empty = false;
  {
    std::lock_guard lock(mutex_);
    was_empty = queue_.empty();
    queue_.reserve(queue_.size() + batch.size());
    for (auto& request : batch) queue_.push_back({std::move(request), now});
  }
  // A non-empty queue already has a wake-up on its way; the loop drains it whole.
  if (was_empty) wake();
}

void HttpClient::Impl::submit(HttpRequest&& request) {
  const auto now = SteadyClock::now();
  in_flight_.fetch_add(1, std::memory_order_relaxed);
  bool was_empty = false;
  {
    std::lock_guard lock(mutex_);
    was_empty = queue_.empty();
    queue_.push_back({std::move(request), now});
  }
  if (was_empty) wake();
}

void HttpClient::Impl::cancel_all() {
  {
    std::lock_guard lock(mutex_);
    for (auto& pending : queue_) cancelled_queue_.push_back(std::move(pending));
    queue_.clear();
    cancel_requested_ = true;
  }
  wake();
}

void HttpClient::Impl::cancel(uint64_t id) {
  {
    std::lock_guard lock(mutex_);
    cancel_ids_.push_back(id);
  }
  wake();
}

void HttpClient::Impl::run() {
  epoll_event events[max_events];
  while (true) {
    int n = epoll_wait(epoll_.get(), events, max_events, wait_timeout_ms());
    if (n < 0) {
      if (errno != EINTR) spdlog::error("http: epoll_wait failed: {}", std::strerror(errno));
      n = 0;
    }
    now_ = SteadyClock::now();

    bool woken = false;
    for (int i = 0; i < n; ++i) dispatch(events[i], woken);
    for (Shard& shard : shards_) {
      if (!shard.timer_due || now_ < *shard.timer_due) continue;
      shard.timer_due.reset();  // curl may set a new one from inside the call
      int running = 0;
      curl_multi_socket_action(shard.multi.get(), CURL_SOCKET_TIMEOUT, 0, &running);
    }
    collect_finished();
    if (woken && !handle_wake()) break;
    if (watched_ > 0 && now_ >= next_sweep_) {
      sweep_stalled();
      next_sweep_ = now_ + stall_sweep_interval;
    }
    deliver();
  }
  shutdown();
}

void HttpClient::Impl::dispatch(const epoll_event& event, bool& woken) {
  if (event.data.u64 == wake_tag) {
    uint64_t count = 0;
    [[maybe_unused]] const auto got = ::read(wake_fd_.get(), &count, sizeof count);
    woken = true;
    return;
  }
  const auto shard = static_cast<uint32_t>(event.data.u64 >> 32);
  const auto fd = static_cast<curl_socket_t>(event.data.u64 & 0xffff'ffffu);
  int flags = 0;
  if (event.events & EPOLLIN) flags |= CURL_CSELECT_IN;
  if (event.events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
  if (event.events & EPOLLERR) flags |= CURL_CSELECT_ERR;
  // A hang-up is read like input, so curl sees the EOF or the reset itself.
  if (event.events & EPOLLHUP) flags |= CURL_CSELECT_IN;
  int running = 0;
  curl_multi_socket_action(shards_[shard].multi.get(), fd, flags, &running);
}

bool HttpClient::Impl::handle_wake() {
  std::vector<Pending> cancelled;
  std::vector<uint64_t> cancel_ids;
  bool cancel = false;
  {
    std::lock_guard lock(mutex_);
    if (stop_requested_) return false;
    draining_.swap(queue_);
    cancelled.swap(cancelled_queue_);
    cancel_ids.swap(cancel_ids_);
    cancel = std::exchange(cancel_requested_, false);
  }
  // Single cancellations are rare (a task's deadline): a scan is enough.
  for (uint64_t id : cancel_ids) {
    auto queued = std::find_if(draining_.begin(), draining_.end(), [&](const Pending& p) { return p.request.id == id; });
    if (queued != draining_.end()) {
      reject(std::move(*queued), Transport::cancelled, "cancelled");
      draining_.erase(queued);
      continue;
    }
    auto active = std::find_if(active_.begin(), active_.end(), [&](const auto& t) { return t->request.id == id; });
    if (active != active_.end()) abort(**active, Transport::cancelled, "cancelled");
  }
  if (cancel) {
    // Everything active now was submitted before cancel_all(); what is in
    // draining_ came after it and starts normally.
    while (!active_.empty()) abort(*active_.back(), Transport::cancelled, "cancelled");
    for (auto& pending : cancelled) reject(std::move(pending), Transport::cancelled, "cancelled");
  }
  for (auto& pending : draining_) start(std::move(pending));
  draining_.clear();
  return true;
}

void HttpClient::Impl::start(Pending&& pending) {
  std::unique_ptr<Transfer> transfer;
  if (!free_.empty()) {
    transfer = std::move(free_.back());
    free_.pop_back();
  } else {
    details::easy_handle easy(curl_easy_init());
    if (!easy) return reject(std::move(pending), Transport::other, "curl_easy_init failed");
    transfer = std::make_unique<Transfer>(std::move(easy), &now_);
  }

  Transfer& t = *transfer;
  t.active_index = active_.size();
  active_.push_back(std::move(transfer));
  Shard& shard = pick_shard();
  t.shard = shard.index;
  ++shard.active;  // complete() counts this and watched_ down
  const bool ready = t.prepare(std::move(pending.request), pending.submitted, share_.get());
  if (watched(t.request)) ++watched_;
  if (!ready) return complete(t, Transport::other, t.error);
  const CURLMcode rc = curl_multi_add_handle(shard.multi.get(), t.easy.get());
  if (rc != CURLM_OK) complete(t, Transport::other, curl_multi_strerror(rc));
}

HttpClient::Impl::Shard& HttpClient::Impl::pick_shard() {
  Shard* least = &shards_[0];
  for (Shard& shard : shards_) {
    if (shard.active < shard_fill) return shard;
    if (shard.active < least->active) least = &shard;
  }
  return *least;
}

void HttpClient::Impl::sweep_stalled() {
  stalled_.clear();
  for (const auto& t : active_) {
    const HttpRequest& r = t->request;
    const bool stalled = t->body_started && r.stall_timeout_ms > 0 && now_ - t->last_activity > Millis(r.stall_timeout_ms);
    const bool no_first_byte =
        !t->body_started && r.first_byte_timeout_ms > 0 && now_ - t->submitted > Millis(r.first_byte_timeout_ms);
    if (stalled || no_first_byte) stalled_.push_back(t.get());
  }
  for (Transfer* t : stalled_) {
    if (t->body_started) {
      abort(*t, Transport::stall,
            "no data for " + std::to_string(t->request.stall_timeout_ms) + " ms after the answer began");
    } else {
      abort(*t, Transport::first_byte,
            "no byte of the answer within " + std::to_string(t->request.first_byte_timeout_ms) + " ms");
    }
  }
}

void HttpClient::Impl::collect_finished() {
  for (Shard& shard : shards_) {
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(shard.multi.get(), &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      // Copy out first: removing the handle invalidates msg.
      CURL* easy = msg->easy_handle;
      const CURLcode code = msg->data.result;
      char* priv = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
      Transfer& t = *reinterpret_cast<Transfer*>(priv);
      curl_multi_remove_handle(shard.multi.get(), easy);

      const Transport transport = details::classify_result(code, t);
      std::string detail;
      if (transport == Transport::too_large)
        detail = "response body exceeded " + std::to_string(t.request.max_response_bytes) +
                 " bytes";
      else if (code != CURLE_OK)
        detail = t.error[0] != '\0' ? t.error : curl_easy_strerror(code);
      complete(t, transport, std::move(detail));
    }
  }
}

void HttpClient::Impl::abort(Transfer& transfer, Transport transport, std::string detail) {
  curl_multi_remove_handle(shards_[transfer.shard].multi.get(), transfer.easy.get());
  complete(transfer, transport, std::move(detail));
}

void HttpClient::Impl::complete(Transfer& t, Transport transport, std::string detail) {
  if (watched(t.request)) --watched_;
  --shards_[t.shard].active;
  const auto submitted = t.submitted;
  HttpResponse response = t.take_response(transport, std::move(detail));
  response.elapsed_ms = ms_between(submitted, SteadyClock::now());
  done_.push_back(std::move(response));

  // Swap-and-pop out of the active list; the handle goes back to the free list.
  const size_t index = t.active_index;
  std::swap(active_[index], active_.back());
  active_[index]->active_index = index;
  free_.push_back(std::move(active_.back()));
  active_.pop_back();
}

void HttpClient::Impl::reject(Pending&& pending, Transport transport, std::string detail) {
  HttpResponse response;
  response.id = pending.request.id;
  response.transport = transport;
  response.transport_detail = std::move(detail);
  response.elapsed_ms = std::max(0.0, ms_between(pending.submitted, SteadyClock::now()));
  done_.push_back(std::move(response));
}

void HttpClient::Impl::deliver() {
  if (done_.empty()) return;
  // Counted down first, so a sink that sees its last response also sees zero.
  in_flight_.fetch_sub(done_.size(), std::memory_order_relaxed);
  std::vector<HttpResponse> batch;
  batch.swap(done_);
  try {
    sink_(std::move(batch));
  } catch (const std::exception& e) {
    spdlog::error("http: completion sink threw: {}", e.what());
  } catch (...) {
    spdlog::error("http: completion sink threw a non-standard exception");
  }
}

void HttpClient::Impl::shutdown() {
  // curl's required order: detach every easy handle, free them, then the
  // multi handles; the share goes last, once nothing uses it.
  for (const auto& t : active_)
    curl_multi_remove_handle(shards_[t->shard].multi.get(), t->easy.get());
  active_.clear();
  free_.clear();
  for (Shard& shard : shards_) shard.multi.reset();
  share_.reset();
}

int HttpClient::Impl::wait_timeout_ms() const {
  std::optional<TimePoint> due;
  for (const Shard& shard : shards_)
    if (shard.timer_due && (!due || *shard.timer_due < *due)) due = shard.timer_due;
  if (watched_ > 0 && (!due || next_sweep_ < *due)) due = next_sweep_;
  if (!due) return -1;
  const auto now = SteadyClock::now();
  if (*due <= now) return 0;
  // Round up: waking a fraction early would only spin through an empty turn.
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(*due - now).count();
  return static_cast<int>(std::min<long long>((us + 999) / 1000, INT_MAX));
}

int HttpClient::Impl::on_socket(CURL*, curl_socket_t socket, int what, void* userp, void* socketp) {
  auto& shard = *static_cast<Shard*>(userp);
  const int ep = shard.owner->epoll_.get();
  if (what == CURL_POLL_REMOVE) {
    epoll_ctl(ep, EPOLL_CTL_DEL, socket, nullptr);  // fails harmlessly if already closed
    return 0;
  }
  epoll_event event{};
  event.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0u) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0u);
  event.data.u64 = (uint64_t{shard.index} << 32) | static_cast<uint32_t>(socket);
  // socketp marks a socket we registered; a closed and reused descriptor may
  // have lost its registration, hence the fallbacks.
  if (socketp && epoll_ctl(ep, EPOLL_CTL_MOD, socket, &event) == 0) return 0;
  if (epoll_ctl(ep, EPOLL_CTL_ADD, socket, &event) != 0 && errno == EEXIST)
    epoll_ctl(ep, EPOLL_CTL_MOD, socket, &event);
  if (!socketp) curl_multi_assign(shard.multi.get(), socket, &shard);
  return 0;
}

int HttpClient::Impl::on_timer(CURLM*, long timeout_ms, void* userp) {
  auto& shard = *static_cast<Shard*>(userp);
  if (timeout_ms < 0)
    shard.timer_due.reset();
  else
    shard.timer_due = SteadyClock::now() + Millis(timeout_ms);
  return 0;
}

HttpClient::HttpClient(HttpClientOptions options, CompletionSink sink)
    : impl_(std::make_unique<Impl>(options, std::move(sink))) {}

HttpClient::~HttpClient() = default;

void HttpClient::submit(std::vector<HttpRequest>&& batch) { impl_->submit(std::move(batch)); }

void HttpClient::submit(HttpRequest&& request) { impl_->submit(std::move(request)); }

void HttpClient::cancel_all() { impl_->cancel_all(); }
void HttpClient::cancel(uint64_t id) { impl_->cancel(id); }

size_t HttpClient::in_flight() const { return impl_->in_flight(); }

}  // namespace shepherd
