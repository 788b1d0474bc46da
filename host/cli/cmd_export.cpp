#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "core/text.h"
#include "core/error.h"
#include "store/export_format.h"
#include "store/store.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/suite_runtime.h"

namespace shepherd::cli {

int cmd_export(const GlobalOptions&, const ExportArgs& a) {
  Suite suite = load_suite(a.suite, SuiteLoadOptions{false});
  std::string db = default_db_path(suite.dir, suite.name, a.db);
  Store store(db, Store::Mode::read_only);
  store.limit_to(cells_in_view(suite, a.where));

  std::ofstream file;
  if (!a.out.empty()) {
    file.open(a.out, std::ios::binary | std::ios::trunc);
    if (!file) throw Error(codes::IO_ERROR, "cannot write " + a.out, Stage::execution, {{"path", a.out}});
  }
  std::ostream& out = a.out.empty() ? std::cout : file;
  write_export(store, suite.name, a.format, a.transcripts, out);
  return kExitOk;
}

}  // namespace shepherd::cli
