#include "store/records.h"

#include "core/error.h"

namespace shepherd {

std::string_view to_string(TaskState s) {
  switch (s) {
    case TaskState::pending: return "pending";
    case TaskState::done: return "done";
    case TaskState::failed: return "failed";
  }
  return "pending";
}

TaskState task_state_from(std::string_view s) {
  if (s == "pending") return TaskState::pending;
  if (s == "done") return TaskState::done;
  if (s == "failed") return TaskState::failed;
  throw Error(codes::INTERNAL, "unknown task state '" + std::string(s) + "' in store",
              Stage::storage);
}

}  // namespace shepherd
