#pragma once
#include <string>

namespace shepherd {

// Exclusive hold on a store for one `run`: an flock on "<db>.lock", released
// by the kernel when the process dies, so kill -9 never leaves it stuck.
class StoreLock {
 public:
  explicit StoreLock(const std::string& db_path);  // throws Error(STORE_LOCKED)
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace shepherd
