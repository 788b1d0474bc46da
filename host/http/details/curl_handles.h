#pragma once
// Owning handles for libcurl objects and file descriptors, and the one-time
// process setup every HttpClient needs.
#include <curl/curl.h>

#include <memory>
#include <utility>

namespace shepherd::details {

struct easy_deleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct multi_deleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};
struct share_deleter {
  void operator()(CURLSH* share) const { curl_share_cleanup(share); }
};
struct slist_deleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

using easy_handle = std::unique_ptr<CURL, easy_deleter>;
using multi_handle = std::unique_ptr<CURLM, multi_deleter>;
using share_handle = std::unique_ptr<CURLSH, share_deleter>;
using header_list = std::unique_ptr<curl_slist, slist_deleter>;

// A file descriptor closed on destruction (epoll, eventfd).
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

// curl_global_init exactly once per process; false if it failed.
bool curl_global_ready();

// Thousands of sockets in flight need more than the usual 1024 descriptors:

}  // namespace shepherd::details
