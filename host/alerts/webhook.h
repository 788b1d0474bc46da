#pragma once
// Posts alert messages as JSON ({"text": …, "alert": {…}}: Slack's incoming
// webhook shape) from a thread of its own, with a short timeout, so a slow or
// dead endpoint never holds a run. Failures are logged, never raised.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace shepherd {

class WebhookSender {
 public:
  explicit WebhookSender(std::string url, long timeout_ms = 3000);
  // Sends what is queued, all of it within one timeout from now (a dead
  // endpoint delays the caller by one timeout, not one per alert; what does
  // not fit is logged as not sent), then joins.
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  void send(std::string json_body);

  // One POST now, on the caller's thread: the HTTP status, or 0 with `error`.
  static long post(const std::string& url, const std::string& body, long timeout_ms, std::string& error);

 private:
  void run();

  std::string url_;
  long timeout_ms_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;  // set when stopping: the queue's last moment
  std::thread thread_;
};

}  // namespace shepherd
