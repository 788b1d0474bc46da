#include "http/http_types.h"

namespace shepherd {

std::string_view to_string(Transport t) {
  switch (t) {
    case Transport::none: return "";
    case Transport::timeout: return "timeout";
    case Transport::connect: return "connect";
    case Transport::reset: return "reset";
    case Transport::stall: return "stall";
    case Transport::first_byte: return "first_byte";
    case Transport::too_large: return "too_large";
    case Transport::cancelled: return "cancelled";
    case Transport::other: return "other";
  }
  return "other";
}

std::string_view HttpResponse::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers)
    if (name == lower_name) return value;
  return {};
}

}  // namespace shepherd
