#pragma once
// One HTTP exchange on a reusable curl easy handle: the request it carries,
// the response it accumulates, and what the stall sweep needs to know.
#include <curl/curl.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/clock.h"
#include "http/details/curl_handles.h"
#include "http/http_types.h"

namespace shepherd::details {

struct Transfer {
  // `now` is the event loop's clock, read once per loop turn: callbacks stamp
  // activity with it instead of reading the clock per chunk.
  explicit Transfer(easy_handle handle, const TimePoint* now);

  // Resets the handle and sets every option for `request`; false (with the
  // reason in `error`) if curl refused one. `share` carries the DNS cache and
  // TLS sessions common to all transfers.
  bool prepare(HttpRequest&& request, TimePoint submitted_at, CURLSH* share);

  // Moves the finished response out and drops the request; the handle stays
  // for the next prepare().
  HttpResponse take_response(Transport transport, std::string detail);

  easy_handle easy;
  const TimePoint* now;
  char error[CURL_ERROR_SIZE] = {};

  HttpRequest request;
  header_list headers;
  HttpResponse response;
  TimePoint submitted{};
  TimePoint last_activity{};
  bool body_started = false;  // a first body byte arrived: the stall clock runs from here
  bool too_large = false;   // the write callback refused the body
  size_t active_index = 0;  // position in the client's active list
  uint32_t shard = 0;       // which of the client's multi handles drives it
};

// Maps how curl ended a transfer onto Transport.
Transport classify_result(CURLcode code, const Transfer& transfer);

}  // namespace shepherd::details
