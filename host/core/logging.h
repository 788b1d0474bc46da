#pragma once
// spdlog set-up: human lines on stderr, and one file per run that is never
// overwritten. A logger never throws into its caller.
#include <string>

namespace shepherd {

void init_logging(bool verbose, bool quiet);

// Adds a file sink: <dir>/<suite>-<YYYYmmdd-HHMMSS>-run<id>.log. Returns its path.
std::string open_run_log(const std::string& dir, const std::string& suite, long long run_id);

}  // namespace shepherd
