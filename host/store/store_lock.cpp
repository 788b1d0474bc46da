#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "core/error.h"
#include "store/store_lock.h"

namespace shepherd {
namespace {

// The holder writes its pid into the lock file; 0 when unreadable (the holder
// may not have written it yet).
int read_holder_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  return std::atoi(buf);
}

void write_own_pid(int fd) {
  const std::string pid = std::to_string(::getpid()) + "\n";
  // Informational only: a failure here must not cost the lock.
  if (::ftruncate(fd, 0) == 0) {
    [[maybe_unused]] const ssize_t n = ::pwrite(fd, pid.data(), pid.size(), 0);
  }
}

}  // namespace

StoreLock::StoreLock(const std::string& db_path) {
  const std::string lock_path = db_path + ".lock";
  const int fd = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error(codes::STORE_OPEN_FAILED,
                "cannot open lock file " + lock_path + ": " + std::strerror(errno),
                Stage::storage, {{"path", db_path}, {"lock", lock_path}});
  }
  // flock (not fcntl locks): tied to this open file, so a second StoreLock in
  // the same process is refused too, and the kernel drops it when we die.
  int rc = 0;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const int holder = read_holder_pid(fd);
      ::close(fd);
      nlohmann::json details = {{"path", db_path}};
      std::string message = "store " + db_path + " is in use by another shepherd run";
      if (holder > 0) {
        details["pid"] = holder;
        message += " (pid " + std::to_string(holder) + ")";
      }
      throw Error(codes::STORE_LOCKED, message, Stage::storage, std::move(details));
    }
    ::close(fd);
    throw Error(codes::STORE_OPEN_FAILED,
                "cannot lock " + lock_path + ": " + std::strerror(err), Stage::storage,
                {{"path", db_path}, {"lock", lock_path}});
  }
  write_own_pid(fd);
  fd_ = fd;
}

StoreLock::~StoreLock() {
  if (fd_ < 0) return;
  // The file stays: unlinking it would let a newcomer lock a fresh inode while
  // a waiter still holds the old one. Clearing the pid avoids a stale reading.
  [[maybe_unused]] const int rc = ::ftruncate(fd_, 0);
  ::close(fd_);  // releases the flock
}

}  // namespace shepherd
