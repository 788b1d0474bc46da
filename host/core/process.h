#pragma once
// Process-wide settings shared by the long-running commands.
#include <signal.h>

namespace shepherd {

// Soft RLIMIT_NOFILE up to the hard limit: thousands of sockets in flight.
void raise_open_file_limit();

// SIGINT and SIGTERM: what stops `run` and `mock`.
sigset_t termination_signals();

}  // namespace shepherd
