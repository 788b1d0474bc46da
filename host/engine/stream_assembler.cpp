#include "engine/stream_assembler.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "core/json_limits.h"

namespace shepherd {

namespace {

using nlohmann::json;

constexpr std::string_view kBom = "\xEF\xBB\xBF";
// Room for the JSON around one delta: a pending line or event may exceed the
// body limit by this much before it counts as too large.
constexpr size_t kEventAllowance = 64u << 10;
// What a new choice or tool call costs against the body limit, so that a
// stream of a million distinct indexes is refused like a large one.
constexpr size_t kEntryCost = 64;
constexpr size_t kExcerptBytes = 200;

constexpr std::string_view kTruncated = "stream ended before the answer was complete";

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string_view trim(std::string_view s) {
  const size_t first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const size_t last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

// Length of the well-formed UTF-8 sequence starting at s[i], or 0.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](size_t k) { return k < s.size() && (at(k) & 0xC0) == 0x80; };
  const unsigned char b = at(i);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (i + 1 >= s.size()) return 0;
    const unsigned char b1 = at(i + 1);
    const bool second_ok = b == 0xE0 ? (b1 >= 0xA0 && b1 <= 0xBF)
                         : b == 0xED ? (b1 >= 0x80 && b1 <= 0x9F)  // no surrogates
                                     : (b1 & 0xC0) == 0x80;
    return second_ok && cont(i + 2) ? 3 : 0;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (i + 1 >= s.size()) return 0;
    const unsigned char b1 = at(i + 1);
    const bool second_ok = b == 0xF0 ? (b1 >= 0x90 && b1 <= 0xBF)
                         : b == 0xF4 ? (b1 >= 0x80 && b1 <= 0x8F)  // nothing beyond U+10FFFF
                                     : (b1 & 0xC0) == 0x80;
    return second_ok && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

// At most `limit` bytes of `s` for an error message: whole UTF-8 characters
// only, control characters and broken bytes shown as '?', so the message is
// always printable and valid UTF-8 wherever it is logged or stored.
std::string excerpt(std::string_view s, size_t limit = kExcerptBytes) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char b = static_cast<unsigned char>(s[i]);
    size_t len = b >= 0x80 ? utf8_sequence_length(s, i) : 1;
    if (out.size() + std::max<size_t>(len, 1) > limit) break;
    if (len == 0) {
      out += '?';
      ++i;
    } else if (len == 1) {
      out += (b < 0x20 || b == 0x7F) ? '?' : static_cast<char>(b);
      ++i;
    } else {
      out.append(s.substr(i, len));
      i += len;
    }
  }
  return out;
}

// ---- Strings split across chunks -------------------------------------------
// A provider may cut a delta inside a character: raw bytes of half a UTF-8
// sequence, or (a UTF-16 server) half a surrogate pair as "\ud83d". nlohmann
// refuses both. The bytes must survive until the halves are concatenated, so
// a refused chunk is re-encoded before parsing: each broken byte and each lone
// surrogate escape becomes a private-use code point in plane 16 that the
// merge turns back into the byte (or a WTF-8 surrogate) it stood for. Only
// chunks that needed it are decoded this way; all others are taken verbatim.
constexpr uint32_t kSurrogateBase = 0x10F000;  // U+10F000..U+10F7FF: \uD800..\uDFFF
constexpr uint32_t kByteBase = 0x10FE00;       // U+10FE80..U+10FEFF: raw bytes 0x80..0xFF

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool hex4(std::string_view s, size_t at, uint32_t* value) {
  if (at + 4 > s.size()) return false;
  uint32_t v = 0;
  for (size_t k = at; k < at + 4; ++k) {
    const char c = s[k];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
    else return false;
  }
  *value = v;
  return true;
}

// Re-encodes broken bytes and lone surrogate escapes inside JSON strings;
// false when there were none (the chunk is broken some other way).
bool reencode_broken_text(std::string_view text, std::string& out) {
  out.clear();
  out.reserve(text.size() + 16);
  bool changed = false;
  bool in_string = false;
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    if (!in_string) {
      if (c == '"') in_string = true;
      out += c;
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = false;
      out += c;
      ++i;
    } else if (c == '\\') {
      uint32_t v = 0;
      if (i + 1 < text.size() && text[i + 1] == 'u' && hex4(text, i + 2, &v) && v >= 0xD800 &&
          v <= 0xDFFF) {
        uint32_t low = 0;
        if (v <= 0xDBFF && i + 7 < text.size() && text[i + 6] == '\\' && text[i + 7] == 'u' &&
            hex4(text, i + 8, &low) && low >= 0xDC00 && low <= 0xDFFF) {
          out.append(text.substr(i, 12));  // a whole pair
          i += 12;
        } else {
          append_utf8(out, kSurrogateBase + (v - 0xD800));
          changed = true;
          i += 6;
        }
      } else {
        const size_t n = std::min<size_t>(2, text.size() - i);
        out.append(text.substr(i, n));
        i += n;
      }
    } else if (static_cast<unsigned char>(c) >= 0x80) {
      const size_t len = utf8_sequence_length(text, i);
      if (len > 0) {
        out.append(text.substr(i, len));
        i += len;
      } else {
        append_utf8(out, kByteBase + static_cast<unsigned char>(c));
        changed = true;
        ++i;
      }
    } else {
      out += c;
      ++i;
    }
  }
  return changed;
}

// The inverse, for a string taken from a re-encoded chunk: the stand-ins
// become the raw byte, or the WTF-8 form of the lone surrogate.
std::string decode_broken_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (i + 3 < s.size() && static_cast<unsigned char>(s[i]) == 0xF4 &&
        static_cast<unsigned char>(s[i + 1]) == 0x8F) {
      const uint32_t cp = kSurrogateBase | ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) |
                          (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
      if (cp < kSurrogateBase + 0x800) {
        const uint32_t unit = 0xD800 + (cp - kSurrogateBase);
        out += static_cast<char>(0xED);
        out += static_cast<char>(0x80 | ((unit >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (unit & 0x3F));
        i += 4;
        continue;
      }
      if (cp >= kByteBase + 0x80 && cp <= kByteBase + 0xFF) {
        out += static_cast<char>(cp - kByteBase);
        i += 4;
        continue;
      }
    }
    out += s[i];
    ++i;
  }
  return out;
}

// Joins WTF-8 surrogate halves that met after concatenation into the UTF-8
// of their character; a half that stayed alone becomes one U+FFFD (same
// length), rather than three when the serializer meets its three bytes.
void join_surrogates(std::string& s) {
  auto at = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  size_t w = 0;
  for (size_t r = 0; r < s.size();) {
    if (r + 5 < s.size() && at(r) == 0xED && at(r + 1) >= 0xA0 && at(r + 1) <= 0xAF &&
        (at(r + 2) & 0xC0) == 0x80 && at(r + 3) == 0xED && at(r + 4) >= 0xB0 && at(r + 4) <= 0xBF &&
        (at(r + 5) & 0xC0) == 0x80) {
      const uint32_t high = 0xD000 | ((at(r + 1) & 0x3Fu) << 6) | (at(r + 2) & 0x3Fu);
      const uint32_t low = 0xD000 | ((at(r + 4) & 0x3Fu) << 6) | (at(r + 5) & 0x3Fu);
      const uint32_t cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
      std::string utf8;
      append_utf8(utf8, cp);
      for (char c : utf8) s[w++] = c;  // 4 bytes replace 6: writing never overtakes reading
      r += 6;
    } else if (r + 2 < s.size() && at(r) == 0xED && at(r + 1) >= 0xA0 && at(r + 1) <= 0xBF &&
               (at(r + 2) & 0xC0) == 0x80) {
      s[w++] = '\xEF';
      s[w++] = '\xBF';
      s[w++] = '\xBD';
      r += 3;
    } else {
      s[w++] = s[r++];
    }
  }
  s.resize(w);
}

// ---- Output ----------------------------------------------------------------

void append_json_string(std::string& out, const std::string& s, bool join) {
  if (join && s.find('\xED') != std::string::npos) {
    std::string fixed = s;
    join_surrogates(fixed);
    out += dump(json(std::move(fixed)));
  } else {
    out += dump(json(s));
  }
}

std::optional<int64_t> integer_field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned() &&
      it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  return it->get<int64_t>();
}

const std::string* string_field(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
}

size_t saturating_add(size_t a, size_t b) {
  return a > std::numeric_limits<size_t>::max() - b ? std::numeric_limits<size_t>::max() : a + b;
}

}  // namespace

StreamAssembler::StreamAssembler(size_t max_body_bytes)
    : max_body_bytes_(max_body_bytes),
      max_pending_bytes_(saturating_add(max_body_bytes, kEventAllowance)) {}

void StreamAssembler::feed(std::string_view bytes) {
  if (finished_ || state_ != State::reading || bytes.empty()) return;
  try {
    if (!bom_checked_) {
      // A UTF-8 BOM opening the stream is dropped (WHATWG); it may arrive a byte at a time.
      const size_t take = std::min(kBom.size() - bom_probe_.size(), bytes.size());
      bom_probe_.append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      if (kBom.substr(0, bom_probe_.size()) != bom_probe_) {
        bom_checked_ = true;
        const std::string probe = std::move(bom_probe_);
        bom_probe_.clear();
        feed_bytes(probe);
      } else if (bom_probe_.size() == kBom.size()) {
        bom_checked_ = true;
        bom_probe_.clear();
      } else {
        return;  // all of `bytes` went into the probe
      }
    }
    feed_bytes(bytes);
  } catch (const std::exception& e) {
    fail(std::string("stream assembly failed: ") + e.what());
  } catch (...) {
    fail("stream assembly failed");
  }
}

void StreamAssembler::feed_bytes(std::string_view bytes) {
  while (!bytes.empty() && state_ == State::reading) {
    if (skip_lf_) {
      skip_lf_ = false;
      if (bytes.front() == '\n') {
        bytes.remove_prefix(1);
        continue;
      }
    }
    const size_t end = bytes.find_first_of("\r\n");
    const std::string_view piece = bytes.substr(0, end);
    if (line_.size() + piece.size() > max_pending_bytes_) {
      fail("stream too large: one line exceeds " + std::to_string(max_pending_bytes_) + " bytes");
      return;
    }
    if (end == std::string_view::npos) {
      line_.append(piece);
      return;
    }
    skip_lf_ = bytes[end] == '\r';
    bytes.remove_prefix(end + 1);
    if (line_.empty()) {
      on_line(piece);
    } else {
      line_.append(piece);
      on_line(line_);
      line_.clear();
    }
  }
}

void StreamAssembler::on_line(std::string_view line) {
  if (line.empty()) {
    // Dispatch. WHATWG: an event with an empty data buffer is dropped.
    if (!data_.empty()) {
      data_.pop_back();  // the \n after the last data line
      dispatch(event_type_, data_, false);
    }
    data_.clear();
    event_type_.clear();
    return;
  }
  if (line.front() == ':') {  // a comment, e.g. ": OPENROUTER PROCESSING"
    saw_sse_ = true;
    return;
  }
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    saw_sse_ = true;
    if (data_.size() + value.size() + 1 > max_pending_bytes_) {
      fail("stream too large: one event exceeds " + std::to_string(max_pending_bytes_) + " bytes");
      return;
    }
    data_.append(value);
    data_ += '\n';
  } else if (field == "event") {
    saw_sse_ = true;
    event_type_.assign(value);
  } else if (field == "id" || field == "retry") {
    saw_sse_ = true;
  } else if (!saw_sse_ && !raw_overflow_) {
    // Not SSE (so far): kept in case the whole body is a plain JSON answer.
    if (raw_.size() + line.size() + 1 > max_body_bytes_) {
      raw_overflow_ = true;
      raw_.clear();
    } else {
      raw_.append(line);
      raw_ += '\n';
    }
  }
  if (saw_sse_ && !raw_.empty()) raw_ = std::string();
}

void StreamAssembler::dispatch(std::string_view event_type, std::string_view data, bool at_end) {
  if (state_ != State::reading) return;
  if (event_type == "error") {
    on_error_event(data);
    return;
  }
  const std::string_view payload = trim(data);
  if (payload.empty()) return;  // an empty event: a keep-alive at most
  if (payload == "[DONE]") {
    state_ = State::done;  // anything after it is ignored
    return;
  }
  std::string why;
  json chunk = parse_json_bounded(payload, &why);
  bool repaired = false;
  if (chunk.is_discarded() && json_depth_within(payload)) {
    std::string reencoded;
    if (reencode_broken_text(payload, reencoded)) {
      std::string ignored;
      chunk = parse_json_bounded(reencoded, &ignored);
      repaired = !chunk.is_discarded();
    }
  }
  const bool named = !event_type.empty() && event_type != "message";
  if (chunk.is_discarded()) {
    if (at_end) return;  // the connection cut the last event short: truncation, reported as such
    if (named) return;   // a custom event carrying text is no chunk of ours
    fail("malformed chunk (" + why + "): " + excerpt(payload), true);
    return;
  }
  if (!chunk.is_object()) {
    if (at_end || named) return;
    fail("malformed chunk (not a JSON object): " + excerpt(payload), true);
    return;
  }
  if (auto e = chunk.find("error");
      e != chunk.end() && !e->is_null() && !(e->is_boolean() && !e->get<bool>())) {
    // OpenAI, OpenRouter, vLLM: the provider's error as a data event. It is
    // the answer; the classifier decides what it means.
    error_body_ = dump(json{{"error", *e}});
    state_ = State::provider_error;
    return;
  }
  saw_chunk_ = true;
  repaired_any_ = repaired_any_ || repaired;
  merge_chunk(chunk, repaired);
}

void StreamAssembler::on_error_event(std::string_view data) {
  // Anthropic: event: error / data: {"type":"error","error":{"type":"overloaded_error",...}}
  std::string why;
  const json payload = parse_json_bounded(trim(data), &why);
  json error;
  if (payload.is_object()) {
    auto inner = payload.find("error");
    error = inner != payload.end() && !inner->is_null() ? *inner : payload;
  } else if (!payload.is_discarded() && !payload.is_null()) {
    error = payload;
  } else {
    error = json{{"message", excerpt(trim(data), 1000)}};
  }
  error_body_ = dump(json{{"error", std::move(error)}});
  state_ = State::provider_error;
}

void StreamAssembler::merge_chunk(const json& chunk, bool repaired) {
  // id, created, model and system_fingerprint: the first chunk that has them
  // (Azure's first chunk carries only prompt filter results, with "" and 0).
  auto take_first = [&](json& slot, const char* key, bool want_string) {
    if (!slot.is_null()) return;
    auto it = chunk.find(key);
    if (it == chunk.end() || (it->is_string() && it->get_ref<const std::string&>().empty()) ||
        (it->is_number() && *it == 0)) {
      return;
    }
    if (want_string ? it->is_string() : (it->is_string() || it->is_number())) {
      if (charge(it->is_string() ? it->get_ref<const std::string&>().size() : 0)) slot = *it;
    }
  };
  take_first(id_, "id", false);
  take_first(created_, "created", false);
  take_first(model_, "model", true);
  take_first(system_fingerprint_, "system_fingerprint", true);
  if (state_ != State::reading) return;

  // The include_usage chunk has "choices": []; xAI repeats a running usage in
  // every chunk, so the last one wins. Groq puts it under x_groq.
  if (auto u = chunk.find("usage"); u != chunk.end() && u->is_object()) {
    usage_ = *u;
  } else if (auto x = chunk.find("x_groq"); x != chunk.end() && x->is_object()) {
    if (auto gu = x->find("usage"); gu != x->end() && gu->is_object()) usage_ = *gu;
  }

  auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array()) return;
  for (const json& c : *choices) {
    if (!c.is_object()) continue;
    const int64_t index = integer_field(c, "index").value_or(0);
    auto [it, inserted] = choices_.try_emplace(index);
    if (inserted && !charge(kEntryCost)) return;
    Choice& choice = it->second;
    if (auto delta = c.find("delta"); delta != c.end() && delta->is_object()) {
      merge_delta(choice, *delta, repaired);
      if (state_ != State::reading) return;
    }
    // Some servers send "" where OpenAI sends null; neither ends the choice.
    if (const std::string* reason = string_field(c, "finish_reason"); reason && !reason->empty()) {
      choice.finish_reason = *reason;
      choice.finished = true;
    }
  }
}

void StreamAssembler::merge_delta(Choice& choice, const json& delta, bool repaired) {
  auto append_field = [&](std::string& to, const std::string& text) {
    if (repaired) append(to, decode_broken_text(text));
    else append(to, text);
  };
  if (const std::string* role = string_field(delta, "role"); role && !role->empty()) choice.role = *role;
  if (auto content = delta.find("content"); content != delta.end()) {
    if (content->is_string()) {
      append_field(choice.content, content->get_ref<const std::string&>());
    } else if (content->is_array()) {
      // Content parts (Mistral): only the text ones are the answer.
      for (const json& part : *content) {
        if (!part.is_object()) continue;
        const std::string* type = string_field(part, "type");
        const std::string* text = string_field(part, "text");
        if (text && (!type || *type == "text")) append_field(choice.content, *text);
      }
    }
  }
  // DeepSeek/Qwen/vLLM say reasoning_content, OpenRouter says reasoning; a
  // server sending both in one delta means the same text, taken once.
  if (const std::string* r = string_field(delta, "reasoning_content")) append_field(choice.reasoning, *r);
  else if (const std::string* r2 = string_field(delta, "reasoning")) append_field(choice.reasoning, *r2);
  if (const std::string* refusal = string_field(delta, "refusal")) append_field(choice.refusal, *refusal);
  if (auto calls = delta.find("tool_calls"); calls != delta.end() && calls->is_array()) {
    for (const json& call : *calls) {
      if (state_ != State::reading) return;
      if (call.is_object()) merge_tool_call(choice, call, repaired);
    }
  }
}

void StreamAssembler::merge_tool_call(Choice& choice, const json& call, bool repaired) {
  auto text = [&](const std::string& s) { return repaired ? decode_broken_text(s) : s; };
  const std::string* id = string_field(call, "id");
  int64_t index = 0;
  if (auto given = integer_field(call, "index")) {
    index = *given;
  } else if (!choice.tool_calls.empty()) {
    // Without an index (some OpenAI-compatible layers): the call with this
    // id, a new call for a new id, else a continuation of the last one.
    index = choice.tool_calls.rbegin()->first;
    if (id && !id->empty()) {
      auto same = std::find_if(choice.tool_calls.begin(), choice.tool_calls.end(),
                               [&](const auto& entry) { return entry.second.id == *id; });
      if (same != choice.tool_calls.end()) index = same->first;
      else if (index < std::numeric_limits<int64_t>::max()) ++index;
    }
  }
  auto [it, inserted] = choice.tool_calls.try_emplace(index);
  if (inserted && !charge(kEntryCost)) return;
  ToolCall& tc = it->second;
  if (id && !id->empty()) tc.id = text(*id);
  if (const std::string* type = string_field(call, "type"); type && !type->empty()) tc.type = text(*type);
  auto function = call.find("function");
  if (function == call.end() || !function->is_object()) return;
  if (const std::string* name = string_field(*function, "name"); name && !name->empty())
    tc.name = text(*name);
  if (auto args = function->find("arguments"); args != function->end()) {
    if (args->is_string()) append(tc.arguments, text(args->get_ref<const std::string&>()));
    else if (args->is_object() || args->is_array()) append(tc.arguments, dump(*args));  // sent whole
  }
}

void StreamAssembler::append(std::string& to, std::string_view text) {
  if (text.empty() || !charge(text.size())) return;
  to.append(text);
}

bool StreamAssembler::charge(size_t bytes) {
  if (state_ == State::failed) return false;
  assembled_bytes_ = saturating_add(assembled_bytes_, bytes);
  if (assembled_bytes_ <= max_body_bytes_) return true;
  fail("stream too large: the answer exceeds " + std::to_string(max_body_bytes_) + " bytes");
  return false;
}

void StreamAssembler::fail(std::string why, bool keep_partial) {
  if (state_ == State::failed) return;
  state_ = State::failed;
  error_ = std::move(why);
  keep_partial_ = keep_partial;
}

std::string StreamAssembler::build_completion() const {
  const bool join = repaired_any_;
  std::string out;
  out.reserve(assembled_bytes_ + 256 + choices_.size() * 128);
  out += "{\"id\":";
  out += id_.is_null() ? std::string("\"\"") : dump(id_);
  out += ",\"object\":\"chat.completion\",\"created\":";
  out += created_.is_null() ? std::string("0") : dump(created_);
  out += ",\"model\":";
  out += model_.is_null() ? std::string("\"\"") : dump(model_);
  if (!system_fingerprint_.is_null()) {
    out += ",\"system_fingerprint\":";
    out += dump(system_fingerprint_);
  }
  out += ",\"choices\":[";
  bool first_choice = true;
  for (const auto& [index, choice] : choices_) {
    if (!first_choice) out += ',';
    first_choice = false;
    out += "{\"index\":";
    out += std::to_string(index);
    out += ",\"message\":{\"role\":";
    append_json_string(out, choice.role.empty() ? std::string("assistant") : choice.role, join);
    out += ",\"content\":";
    if (choice.content.empty() && !choice.tool_calls.empty()) out += "null";
    else append_json_string(out, choice.content, join);
    if (!choice.tool_calls.empty()) {
      out += ",\"tool_calls\":[";
      bool first_call = true;
      for (const auto& [call_index, call] : choice.tool_calls) {
        if (!first_call) out += ',';
        first_call = false;
        out += "{\"id\":";
        append_json_string(out, call.id, join);
        out += ",\"type\":";
        append_json_string(out, call.type.empty() ? std::string("function") : call.type, join);
        out += ",\"function\":{\"name\":";
        append_json_string(out, call.name, join);
        out += ",\"arguments\":";
        append_json_string(out, call.arguments, join);
        out += "}}";
      }
      out += ']';
    }
    if (!choice.reasoning.empty()) {
      out += ",\"reasoning_content\":";
      append_json_string(out, choice.reasoning, join);
    }
    if (!choice.refusal.empty()) {
      out += ",\"refusal\":";
      append_json_string(out, choice.refusal, join);
    }
    out += "},\"finish_reason\":";
    if (choice.finished) append_json_string(out, choice.finish_reason, join);
    else out += "null";
    out += '}';
  }
  out += ']';
  if (usage_.is_object()) {
    out += ",\"usage\":";
    out += dump(usage_);
  }
  out += '}';
  return out;
}

AssembledStream StreamAssembler::finish() {
  AssembledStream out;
  try {
    if (!finished_) {
      finished_ = true;
      if (!bom_checked_) {  // a body shorter than a BOM
        bom_checked_ = true;
        const std::string probe = std::move(bom_probe_);
        bom_probe_.clear();
        feed_bytes(probe);
      }
      // Leniency at the end: many servers close right after "data: [DONE]"
      // with no blank line. The unterminated last line and event still
      // count; when they do not parse, the stream was cut: truncation.
      if (state_ == State::reading && !line_.empty()) {
        on_line(line_);
        line_.clear();
      }
      if (state_ == State::reading && !data_.empty()) {
        data_.pop_back();
        dispatch(event_type_, data_, true);
        data_.clear();
      }
    }

    switch (state_) {
      case State::failed:
        out.error = error_;
        if (keep_partial_ && saw_chunk_) out.body = build_completion();
        return out;
      case State::provider_error:
        out.complete = true;
        out.body = error_body_;
        return out;
      case State::done:
        out.complete = true;
        if (saw_chunk_) out.body = build_completion();
        else out.error = "stream ended without an answer";
        return out;
      case State::reading:
        break;
    }
    if (!saw_sse_) {
      out.error = raw_.empty() && !raw_overflow_
                      ? "not a server-sent event stream: the body is empty"
                      : "not a server-sent event stream: " + excerpt(trim(raw_));
      // A server that ignored "stream": its plain JSON answer, for the caller to read.
      if (!raw_.empty()) {
        const json plain = parse_json_bounded(raw_);
        if (plain.is_object()) out.body = dump(plain);
      }
      return out;
    }
    const bool all_finished =
        !choices_.empty() && std::all_of(choices_.begin(), choices_.end(),
                                         [](const auto& entry) { return entry.second.finished; });
    if (saw_chunk_) out.body = build_completion();
    if (all_finished) {
      out.complete = true;  // some servers omit [DONE]
    } else {
      out.error = std::string(kTruncated);
    }
  } catch (const std::exception& e) {
    out = AssembledStream{};
    out.error = std::string("stream assembly failed: ") + e.what();
  } catch (...) {
    out = AssembledStream{};
    out.error = "stream assembly failed";
  }
  return out;
}

bool is_event_stream(std::string_view content_type, std::string_view body) {
  std::string_view media = trim(content_type.substr(0, content_type.find(';')));
  constexpr std::string_view kEventStream = "text/event-stream";
  if (media.size() == kEventStream.size() &&
      std::equal(media.begin(), media.end(), kEventStream.begin(), [](char a, char b) {
        return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
      }))
    return true;
  if (body.starts_with(kBom)) body.remove_prefix(kBom.size());
  const size_t start = body.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos) return false;
  body.remove_prefix(start);
  for (std::string_view prefix : {"data:", "event:", "id:", "retry:", ":"}) {
    if (body.starts_with(prefix)) return true;
  }
  return false;
}

AssembledStream assemble_stream(std::string_view body, size_t max_body_bytes) {
  StreamAssembler assembler(max_body_bytes);
  assembler.feed(body);
  return assembler.finish();
}

}  // namespace shepherd
