#pragma once
// Tasks as records, the way `shepherd export` and workflows write them:
// JSON lines, or CSV (RFC 4180) with the same fields.
#include <ostream>
#include <string>

#include "store/store.h"

namespace shepherd {

// Writes every task in the store's view (limit_to) of `suite`. `format`:
// "jsonl" or "csv". Throws Error(IO_ERROR) when the stream fails.
void write_export(Store& store, const std::string& suite, const std::string& format, bool transcripts,
                  std::ostream& out);

}  // namespace shepherd
