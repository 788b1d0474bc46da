#include "store/store_lock.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "core/error.h"

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

// flock (not fcntl locks): tied to this open file description, so a second
// StoreLock in the same process is refused too, and SQLite's own fcntl locks
// on the database are untouched. False with errno set when it is held.
bool try_flock(int fd) {
  int rc = 0;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  return rc == 0;
}

[[noreturn]] void locked(const std::string& db_path, int holder) {
  nlohmann::json details = {{"path", db_path}};
  std::string message = "store " + db_path + " is in use by another shepherd run";
  if (holder > 0) {
    details["pid"] = holder;
    message += " (pid " + std::to_string(holder) + ")";
  }
  throw Error(codes::STORE_LOCKED, message, Stage::storage, std::move(details));
}

[[noreturn]] void open_failed(const std::string& db_path, const std::string& what, int err) {
  throw Error(codes::STORE_OPEN_FAILED, "cannot " + what + ": " + std::strerror(err), Stage::storage,
              {{"path", db_path}});
}

}  // namespace

StoreLock::StoreLock(const std::string& db_path) {
  std::error_code ec;
  path_ = std::filesystem::weakly_canonical(std::filesystem::absolute(db_path), ec).string();
  if (ec) path_ = db_path;

  // The lock file first: it names the holder, so a refusal can say who.
  const std::string lock_path = path_ + ".lock";
  struct stat lock_stat{};
  const bool lock_file_existed = ::stat(lock_path.c_str(), &lock_stat) == 0;
  lock_fd_ = ::open(lock_path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) open_failed(db_path, "open lock file " + lock_path, errno);
  if (!try_flock(lock_fd_)) {
    const int err = errno;
    const int holder = err == EWOULDBLOCK ? read_holder_pid(lock_fd_) : 0;
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (err == EWOULDBLOCK) locked(db_path, holder);
    open_failed(db_path, "lock " + lock_path, err);
  }

  // Then the database file itself (created empty if new: SQLite takes an
  // empty file as a new database). A lock file with no store beside it means
  // earlier runs kept a store here that is gone (deleted, moved, lost mid-run):
  // starting afresh sends every task again, which must not happen unsaid.
  struct stat before{};
  const bool store_existed = ::stat(path_.c_str(), &before) == 0;
  db_fd_ = ::open(path_.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (db_fd_ < 0) {
    const int err = errno;
    ::close(lock_fd_);
    open_failed(db_path, "open " + path_, err);
  }
  struct stat st{};
  if (::fstat(db_fd_, &st) == 0 && st.st_nlink > 1) {
    ::close(db_fd_);
    ::close(lock_fd_);
    throw Error(codes::STORE_OPEN_FAILED,
                "store " + db_path + " has " + std::to_string(st.st_nlink) +
                    " hard links: one store, one name (remove the other links, or copy the file)",
                Stage::storage, {{"path", db_path}, {"links", st.st_nlink}});
  }
  if (!try_flock(db_fd_)) {
    const int err = errno;
    ::close(db_fd_);
    ::close(lock_fd_);
    if (err == EWOULDBLOCK) locked(db_path, 0);  // reached through another name
    open_failed(db_path, "lock " + path_, err);
  }
  if (!store_existed && lock_file_existed) {
    spdlog::warn("no store at {}, though earlier runs kept one there ({} is theirs): starting a new, empty store, "
                 "so every task is requested again; if the store was moved or deleted by mistake, stop now and "
                 "put it back",
                 path_, lock_path);
  }
  write_own_pid(lock_fd_);
}

StoreLock::~StoreLock() {
  // The lock file stays: unlinking it would let a newcomer lock a fresh inode
  // while a waiter still holds the old one. Clearing the pid avoids a stale reading.
  if (lock_fd_ >= 0) {
    [[maybe_unused]] const int rc = ::ftruncate(lock_fd_, 0);
    ::close(lock_fd_);
  }
  // Closing a descriptor of the database drops this process's fcntl locks on
  // it: by now every SQLite connection of the run is closed.
  if (db_fd_ >= 0) ::close(db_fd_);
}

std::string StoreLock::lost() const {
  struct stat held{};
  if (::fstat(db_fd_, &held) != 0) return "";
  struct stat now{};
  const bool present = ::stat(path_.c_str(), &now) == 0;
  // A rename over the store unlinks the old file too: say which happened.
  if (present && (now.st_ino != held.st_ino || now.st_dev != held.st_dev))
    return "the store file " + path_ + " was replaced by another file during the run";
  if (held.st_nlink == 0 || !present) return "the store file " + path_ + " was deleted during the run";
  return "";
}

}  // namespace shepherd
