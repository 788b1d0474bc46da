#pragma once
// One event-loop thread driving every transfer through libcurl's multi
// interface (curl_multi_socket_action + epoll): thousands in flight at once,
// connections reused, no thread and no blocking call per request.
#include <functional>
#include <memory>
#include <vector>

#include "http/http_types.h"

namespace shepherd {

struct HttpClientOptions {
  // Connections each of the client's connection caches may keep (there are
  // several, so the process may hold more in all).
  size_t max_connections = 20'000;
};

class HttpClient {
 public:
  // Called on the loop thread with every response finished in one loop turn.
  // Must be quick: hand the batch to another thread.
  using CompletionSink = std::function<void(std::vector<HttpResponse>&&)>;

  HttpClient(HttpClientOptions options, CompletionSink sink);
  ~HttpClient();  // cancels what is in flight (no completions delivered) and joins
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Thread-safe; wakes the loop once per batch.
  void submit(std::vector<HttpRequest>&& batch);
  void submit(HttpRequest&& request);

  // Thread-safe: aborts every transfer; each is delivered with Transport::cancelled.
  void cancel_all();

  // Thread-safe: aborts the transfer of this request id (queued or active),
  // delivered with Transport::cancelled; an id no longer in flight is ignored.
  void cancel(uint64_t id);

  size_t in_flight() const;  // submitted and not yet delivered

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shepherd
