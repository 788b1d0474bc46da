#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace shepherd {

struct HttpRequest {
  uint64_t id = 0;                    // the caller's correlation id, echoed in the response
  std::string method = "POST";        // "POST" or "GET"
  std::string url;
  std::vector<std::string> headers;   // "Name: value"; may carry secrets: never log them
  std::string body;
  long connect_timeout_ms = 10'000;
  long total_timeout_ms = 600'000;
  long first_byte_timeout_ms = 0;     // longest wait for the first byte of the body; 0 = off
  long stall_timeout_ms = 0;          // longest silence once the body has begun; 0 = off
  size_t max_response_bytes = 8u << 20;
};

// Why a transfer ended without a complete HTTP response.
enum class Transport {
  none,       // a complete response arrived (any status)
  timeout,    // total or connect deadline passed
  connect,    // refused, unreachable, DNS
  reset,      // connection reset or closed before the response completed
  stall,      // the body began, then went silent longer than stall_timeout_ms
  first_byte, // no byte of the body within first_byte_timeout_ms
  too_large,  // body exceeded max_response_bytes
  cancelled,  // cancel_all()
  other,
};

std::string_view to_string(Transport t);

struct HttpResponse {
  uint64_t id = 0;
  long status = 0;                     // 0 when no HTTP response arrived
  Transport transport = Transport::none;
  std::string transport_detail;        // curl's error text; never contains header values
  std::vector<std::pair<std::string, std::string>> headers;  // names lowercased
  std::string body;
  double elapsed_ms = 0;

  // First header with this (lowercase) name, or empty.
  std::string_view header(std::string_view lower_name) const;
};

}  // namespace shepherd
