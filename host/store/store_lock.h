#pragma once
#include <string>

namespace shepherd {

// Exclusive hold on a store for one `run`, keyed on the file's identity, not
// on the path as written: an flock on the database file itself (its inode:
// a symlink or a bind mount reaches the same lock) and on "<canonical
// path>.lock", which names the holder's pid. A store with several hard links
// is refused: two names for one file invite two writers. The kernel drops
// both locks when the process dies, so kill -9 never leaves them stuck.
class StoreLock {
 public:
  explicit StoreLock(const std::string& db_path);  // throws Error(STORE_LOCKED, STORE_OPEN_FAILED)
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

  // Why the store file held by this lock is no longer the one at its path
  // (deleted, or replaced by another file); empty while it is.
  std::string lost() const;

 private:
  std::string path_;  // canonical path of the database file
  int db_fd_ = -1;
  int lock_fd_ = -1;
};

}  // namespace shepherd
