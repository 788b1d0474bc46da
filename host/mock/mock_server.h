#pragma once
// The built-in OpenAI-compatible mock provider: POST /v1/chat/completions,
// GET /stats, GET /requests, POST /reset. One libevent (evhttp) loop:
// thousands of slow requests held at once, no thread per connection. Binds
// 127.0.0.1 only.
#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "mock/scenario.h"

namespace shepherd {

class MockServer {
 public:
  // port 0 picks a free port; throws Error(MOCK_BIND_FAILED).
  explicit MockServer(Scenario scenario, uint16_t port = 0);
  ~MockServer();  // stops and joins if started
  MockServer(const MockServer&) = delete;
  MockServer& operator=(const MockServer&) = delete;

  uint16_t port() const;
  void run();    // serve on the calling thread until stop()
  void start();  // serve on a background thread
  void stop();   // thread-safe, idempotent

  nlohmann::json stats() const;     // thread-safe; the body of GET /stats
  nlohmann::json requests() const;  // thread-safe; the body of GET /requests

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shepherd
