#include "alerts/webhook.h"

#include <curl/curl.h>

#include <algorithm>

#include <spdlog/spdlog.h>

namespace shepherd {

namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

WebhookSender::WebhookSender(std::string url, long timeout_ms)
    : url_(std::move(url)), timeout_ms_(timeout_ms), thread_([this] { run(); }) {}

WebhookSender::~WebhookSender() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
  }
  wake_.notify_one();
  thread_.join();
}

void WebhookSender::send(std::string json_body) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(json_body));
  }
  wake_.notify_one();
}

long WebhookSender::post(const std::string& url, const std::string& body, long timeout_ms, std::string& error) {
  CURL* easy = curl_easy_init();
  if (!easy) {
    error = "curl_easy_init failed";
    return 0;
  }
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  char message[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(easy, CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, message);
  long status = 0;
  CURLcode rc = curl_easy_perform(easy);
  if (rc == CURLE_OK) {
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
  } else {
    error = message[0] ? message : curl_easy_strerror(rc);
  }
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);
  return status;
}

void WebhookSender::run() {
  for (;;) {
    std::string body;
    long timeout_ms = timeout_ms_;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      if (stopping_) {
        // The owner is waiting: what is left shares one timeout.
        long left = static_cast<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now()).count());
        if (left <= 0) {
          spdlog::warn("alert webhook: {} alert(s) not sent, the endpoint did not answer in time", queue_.size());
          return;
        }
        timeout_ms = std::min(timeout_ms, left);
      }
      body = std::move(queue_.front());
      queue_.pop_front();
    }
    std::string error;
    long status = post(url_, body, timeout_ms, error);
    if (status < 200 || status >= 300) {
      spdlog::warn("alert webhook failed: {}", status == 0 ? error : "HTTP " + std::to_string(status));
    }
  }
}

}  // namespace shepherd
