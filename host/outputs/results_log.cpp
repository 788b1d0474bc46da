#include "outputs/results_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "core/redactor.h"
#include "core/text.h"

namespace shepherd {

ResultsLog::ResultsLog(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    throw Error(codes::IO_ERROR, "cannot open the results file " + path + ": " + std::strerror(errno), Stage::cli,
                {{"path", path}});
  }
}

ResultsLog::~ResultsLog() {
  if (fd_ >= 0) ::close(fd_);
}

void ResultsLog::append(const nlohmann::json& record) {
  std::string line = safe_dump(record);
  // No key's value reaches any file the host writes.
  if (auto redactor = Redactor::current(); !redactor->empty()) redactor->scrub(line);
  line += '\n';
  std::lock_guard lock(mutex_);
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (!failed_) spdlog::error("writing the results file {} failed: {}", path_, std::strerror(errno));
      failed_ = true;
      return;
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace shepherd
