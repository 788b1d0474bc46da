#pragma once
// shepherd.jsonl / shepherd.csv: a file of records as a matrix dimension.
// A record's identity (what its task id hashes) is its `id` field when one is
// named, else the record itself: never its position, so inserting a line
// keeps every other task's id.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shepherd {

struct InputRecords {
  std::vector<nlohmann::json> values;      // in file order
  std::vector<nlohmann::json> identities;  // per value when an id field is named; empty: the values themselves
};

// Each non-blank line a JSON value (an object when `id_field` is named).
// Throws Error(SUITE_INVALID) naming the file and line(s) on a malformed
// line, a missing or non-scalar id, or two records with one identity.
InputRecords read_jsonl(const std::string& path, const std::string& id_field = "");

// RFC 4180: a header row names the fields; fields may be quoted ("a, b",
// "say ""hi""", line breaks inside quotes); every record is an object of
// strings. Throws like read_jsonl (a row with the wrong number of fields too).
InputRecords read_csv(const std::string& path, const std::string& id_field = "");

// A Batch API input file: "openai" lines are {custom_id, method, url, body}
// (custom_id is each record's identity; method POST, url a chat completions
// path); "cookbook" lines are request bodies with an optional `metadata`
// (the whole line is the identity). Every body names its `model`. Throws
// like read_jsonl.
InputRecords read_batch_file(const std::string& path, const std::string& format);

// The request body of a record read_batch_file returned.
nlohmann::json batch_request_body(const nlohmann::json& record, const std::string& format);

}  // namespace shepherd
