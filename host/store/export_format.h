#pragma once
// Tasks as records, the way `shepherd export` and workflows write them:
// JSON lines, CSV (RFC 4180) with the same fields and one column per
// dimension, or the OpenAI Batch API's output lines.
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/store.h"

namespace shepherd {

// Writes every task in the store's view (limit_to) of `suite`. `format`:
// "jsonl", "csv" or "openai-batch". `dims`: the suite's dimension names, the
// CSV's columns after `task`. `task_suite`: its tasks are conversations (an
// openai-batch body is then made from the result). Throws Error(IO_ERROR) when the stream fails.
void write_export(Store& store, const std::string& suite, const std::string& format, bool transcripts,
                  std::ostream& out, const std::vector<std::string>& dims = {}, bool task_suite = false);

// One task as a JSONL export line (and a `run --results` line) writes it:
// task, dims, state, model, content, attempts, turns, error, latency_ms,
// usage, stale (and transcript when asked).
nlohmann::json export_record(const ExportRow& row, bool transcripts);

// One task as a line of a Batch API output file: {id, custom_id, response:
// {status_code, request_id, body}, error}. Done: the body is the chat
// completion the provider returned (the latest attempt's), or one made from
// the stored result where none is stored (a conversation's result). Failed:
// the latest answer's status and body where there was one, and error.
nlohmann::json openai_batch_record(const ExportRow& row, const Store::LastAttempt& last, bool task_suite);

}  // namespace shepherd
