// The SSE assembler on any bytes, split anywhere. The input is
//   byte 0   the body limit: 8 MiB (the default) or a small one, so the
//            "too large" paths are reached with small inputs
//   byte 1   how the bytes arrive: all at once, one at a time, or in pieces
//            of pseudo-random sizes drawn from this seed
//   the rest the response body
// Invariants: nothing throws or crashes; the result does not depend on how
// the bytes were split; a body, when there is one, is a JSON object the
// response parser accepts (valid UTF-8, within the host's depth bound); an
// error is printable UTF-8.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/json_limits.h"
#include "core/text.h"
#include "engine/stream_assembler.h"
#include "fuzz_check.h"

namespace {

constexpr size_t kLimits[] = {8u << 20, 64, 512, 4096};

shepherd::AssembledStream assemble_in_pieces(std::string_view body, size_t limit, uint8_t seed) {
  shepherd::StreamAssembler assembler(limit);
  uint32_t state = 0x9E3779B9u ^ seed;
  while (!body.empty()) {
    size_t n;
    if (seed == 0) {
      n = 1;
    } else {
      state = state * 1103515245u + 12345u;
      n = 1 + (state >> 16) % (seed % 32 + 1);
    }
    n = std::min(n, body.size());
    assembler.feed(body.substr(0, n));
    body.remove_prefix(n);
  }
  return assembler.finish();
}

bool printable_utf8(const std::string& s) {
  if (!shepherd::is_valid_utf8(s)) return false;
  for (unsigned char c : s) {
    if (c < 0x20 && c != '\n' && c != '\t') return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return -1;
  const size_t limit = kLimits[data[0] % std::size(kLimits)];
  const uint8_t seed = data[1];
  std::string_view body(reinterpret_cast<const char*>(data) + 2, size - 2);

  // The header sniff: the first line of the body doubles as a Content-Type.
  (void)shepherd::is_event_stream(body.substr(0, body.find('\n')), body);
  (void)shepherd::is_event_stream("", body);

  const shepherd::AssembledStream whole = shepherd::assemble_stream(body, limit);
  const shepherd::AssembledStream pieces = assemble_in_pieces(body, limit, seed);
  FUZZ_CHECK(whole.complete == pieces.complete && whole.body == pieces.body && whole.error == pieces.error,
             "the split changed the result (seed %u):\n  whole:  %d %.300s | %.300s\n  pieces: %d %.300s | %.300s",
             seed, whole.complete, whole.body.c_str(), whole.error.c_str(), pieces.complete,
             pieces.body.c_str(), pieces.error.c_str());

  FUZZ_CHECK(whole.complete || !whole.error.empty(), "incomplete without a reason");
  FUZZ_CHECK(printable_utf8(whole.error), "the error is not printable UTF-8: %.300s", whole.error.c_str());
  if (!whole.body.empty()) {
    FUZZ_CHECK(shepherd::is_valid_utf8(whole.body), "the body is not valid UTF-8");
    std::string why;
    auto parsed = shepherd::parse_json_bounded(whole.body, &why);
    FUZZ_CHECK(parsed.is_object(), "the body is not a JSON object the parser accepts (%s): %.300s", why.c_str(),
               whole.body.c_str());
    // Everything in it came from the input, within the limit; escaping may
    // grow a byte to six (\u0001), and each choice adds its frame.
    FUZZ_CHECK(whole.body.size() <= 6 * (limit + (64u << 10)) + 4096, "a body of %zu bytes from a limit of %zu",
               whole.body.size(), limit);
  }
  return 0;
}
