#pragma once
// One output file per done task (a suite's `outputs`): the suite's
// path(cell) and write(cell, result) give its name and text, on the Lua state
// of a worker (during a run) or of `export --format files`; the file is
// written whole or not at all.
#include <cstdint>
#include <functional>
#include <string>

#include "store/store.h"
#include "suite/suite_runtime.h"

namespace shepherd {

// What write(cell, result) sees. Built from the answer during a run and from
// the store by `export --format files`, with the same fields, so that both
// write the same text.
struct OutputResult {
  std::string task;
  std::string content;     // the final assistant text, or a task suite's result
  std::string model;       // the model that answered
  std::string usage_json;  // empty: none
  int attempts = 0;
  double latency_ms = -1;  // -1: none
};

struct OutputFile {
  std::string path;  // absolute
  std::string text;
};

// The task's output file: path(cell), resolved against the suite's
// directory, and write(cell, result), or the result's content when the suite
// gives no write. False, with `error` naming the function, when one raises or
// returns anything but a non-empty string.
bool render_output(SuiteRuntime& runtime, uint64_t ordinal, const OutputResult& result, OutputFile& out,
                   std::string& error);

// Creates the file's directories and writes it atomically: a temporary file
// beside it (".NAME.tmp-PID", never taken for an output), fsync, rename.
// Throws Error(IO_ERROR) naming the path.
void write_output(const OutputFile& file);

OutputResult output_result_of(const ExportRow& row);

struct OutputCounts {
  uint64_t written = 0;
  uint64_t skipped = 0;  // only_missing: the file was there
  uint64_t failed = 0;   // path/write failed, or the file could not be written
};

// Writes the output of every done task the store shows (its view, see
// Store::limit_to) again, or with `only_missing` those whose file does not
// exist. Each failure is logged (task and cell) and counted; the rest go on.
OutputCounts write_stored_outputs(Store& store, SuiteRuntime& runtime, bool only_missing);

}  // namespace shepherd
