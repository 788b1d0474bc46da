#include "http/details/transfer.h"

#include "core/text.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <string_view>

namespace shepherd::details {
namespace {

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void mark_activity(Transfer& t) { t.last_activity = *t.now; }

// Called once per header line, status lines and the blank line included.
size_t on_header(char* data, size_t size, size_t count, void* userp) {
  auto& t = *static_cast<Transfer*>(userp);
  const size_t length = size * count;
  mark_activity(t);
  const std::string_view line(data, length);

  // A status line starts a new response (after 1xx or a redirect): only the
  // final response's headers and body count.
  if (line.starts_with("HTTP/")) {
    t.response.headers.clear();
    t.response.body.clear();
    return length;
  }
  if (line.starts_with(' ') || line.starts_with('\t')) {  // obsolete line folding
    if (!t.response.headers.empty()) {
      const auto more = trim(line);
      if (!more.empty()) {
        auto& value = t.response.headers.back().second;
        if (!value.empty()) value += ' ';
        value += more;
      }
    }
    return length;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return length;  // the blank end-of-headers line
  auto name = lowercase(trim(line.substr(0, colon)));
  const auto value = trim(line.substr(colon + 1));

  // Size the body once from Content-Length instead of growing it chunk by chunk.
  if (name == "content-length") {
    size_t expected = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), expected);
    if (ec == std::errc() && end == value.data() + value.size())
      t.response.body.reserve(std::min(expected, t.request.max_response_bytes));
  }
  t.response.headers.emplace_back(std::move(name), std::string(value));
  return length;
}

size_t on_body(char* data, size_t size, size_t count, void* userp) {
  auto& t = *static_cast<Transfer*>(userp);
  const size_t length = size * count;
  mark_activity(t);
  t.body_started = true;  // an SSE comment counts: the answer is alive
  const size_t cap = t.request.max_response_bytes;
  const size_t room = cap - std::min(t.response.body.size(), cap);
  if (length > room) {
    t.response.body.append(data, room);  // keep the head of the body for diagnosis
    t.too_large = true;
    return CURL_WRITEFUNC_ERROR;
  }
  t.response.body.append(data, length);
  return length;
}

}  // namespace

Transfer::Transfer(easy_handle handle, const TimePoint* loop_now)
    : easy(std::move(handle)), now(loop_now) {}

bool Transfer::prepare(HttpRequest&& r, TimePoint submitted_at, CURLSH* share) {
  request = std::move(r);
  response = HttpResponse{};
  response.id = request.id;
  submitted = submitted_at;
  last_activity = submitted_at;
  body_started = false;
  too_large = false;
  error[0] = '\0';

  // "Expect:" suppresses curl's 100-continue round trip before a POST body.
  curl_slist* list = nullptr;
  for (const auto& line : request.headers) {
    auto* grown = curl_slist_append(list, line.c_str());
    if (!grown) {
      curl_slist_free_all(list);
      std::snprintf(error, sizeof error, "out of memory building request headers");
      return false;
    }
    list = grown;
  }
  if (auto* grown = curl_slist_append(list, "Expect:")) list = grown;
  headers.reset(list);

  // The easy handle keeps its state from the previous request: start clean.
  CURL* e = easy.get();
  curl_easy_reset(e);
  CURLcode rc = CURLE_OK;
  const auto set = [&](CURLoption option, auto value) {
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, option, value);
  };
  set(CURLOPT_PRIVATE, static_cast<void*>(this));
  set(CURLOPT_SHARE, share);
  set(CURLOPT_ERRORBUFFER, error);
  set(CURLOPT_NOSIGNAL, 1L);
  set(CURLOPT_HEADERFUNCTION, &on_header);
  set(CURLOPT_HEADERDATA, static_cast<void*>(this));
  set(CURLOPT_WRITEFUNCTION, &on_body);
  set(CURLOPT_WRITEDATA, static_cast<void*>(this));
  set(CURLOPT_PROTOCOLS_STR, "http,https");
  // No redirects: curl would carry the suite's extra headers (an Azure
  // api-key) to whatever host a Location names. A 3xx is just an answer.
  set(CURLOPT_FOLLOWLOCATION, 0L);
  set(CURLOPT_TCP_KEEPALIVE, 1L);
  set(CURLOPT_TCP_KEEPIDLE, 30L);
  set(CURLOPT_TCP_KEEPINTVL, 15L);
  set(CURLOPT_ACCEPT_ENCODING, "");  // every encoding curl can decode
  set(CURLOPT_URL, request.url.c_str());
  set(CURLOPT_HTTPHEADER, headers.get());
  set(CURLOPT_CONNECTTIMEOUT_MS, std::max(0L, request.connect_timeout_ms));
  set(CURLOPT_TIMEOUT_MS, std::max(0L, request.total_timeout_ms));

  if (request.method == "GET") {
    set(CURLOPT_HTTPGET, 1L);
  } else {
    // POSTFIELDS points into `request`, which lives until take_response().
    set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    set(CURLOPT_POSTFIELDS, request.body.data());
    if (request.method != "POST") set(CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (rc != CURLE_OK) {
    std::snprintf(error, sizeof error, "%s", curl_easy_strerror(rc));
    return false;
  }
  return true;
}

HttpResponse Transfer::take_response(Transport transport, std::string detail) {
  long status = 0;
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &status);
  response.status = status;
  response.transport = transport;
  response.transport_detail = std::move(detail);
  HttpResponse out = std::move(response);
  response = HttpResponse{};
  // Free the request (body, secrets in headers) now rather than at reuse.
  request = HttpRequest{};
  headers.reset();
  return out;
}

Transport classify_result(CURLcode code, const Transfer& transfer) {
  if (transfer.too_large) return Transport::too_large;
  switch (code) {
    case CURLE_OK:
      return Transport::none;
    case CURLE_OPERATION_TIMEDOUT:
      return Transport::timeout;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return Transport::connect;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2_STREAM:  // the server reset the stream: a reset, on HTTP/2
      return Transport::reset;
    default:
      return Transport::other;
  }
}

}  // namespace shepherd::details
