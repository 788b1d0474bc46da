#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "core/text.h"
#include "core/error.h"
#include "outputs/output_writer.h"
#include "store/export_format.h"
#include "store/store.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/suite_runtime.h"

namespace shepherd::cli {

namespace {

// --format files: every done task's output file again, from the store alone
// (no request is sent), through the suite's outputs.path and outputs.write.
int export_files(const GlobalOptions& g, const Suite& suite, Store& store) {
  Matrix matrix(suite.dims);
  SuiteRuntime runtime(suite, matrix);
  OutputCounts counts = write_stored_outputs(store, runtime, /*only_missing=*/false);
  int exit_code = counts.failed > 0 ? kExitSomeFailed : kExitOk;
  if (g.json) {
    std::cout << safe_dump({{"status", counts.failed > 0 ? "failed" : "ok"},
                            {"exit_code", exit_code},
                            {"written", counts.written},
                            {"failed", counts.failed}})
              << std::endl;
  } else {
    std::printf("%llu files written\n", static_cast<unsigned long long>(counts.written));
    if (counts.failed > 0)
      std::fprintf(stderr, "%llu outputs could not be written (see the errors above)\n",
                   static_cast<unsigned long long>(counts.failed));
  }
  return exit_code;
}

}  // namespace

int cmd_export(const GlobalOptions& g, const ExportArgs& a) {
  Suite suite = load_suite(a.suite, SuiteLoadOptions{false});
  if (a.format == "files") {
    if (!suite.has_outputs) {
      throw Error(codes::USAGE, "--format files needs a suite with outputs = { path = function(cell) … }; " + suite.path +
                                    " has none", Stage::cli, {{"option", "--format"}});
    }
    if (!a.out.empty()) {
      throw Error(codes::USAGE, "--format files writes where outputs.path says: --out does not apply", Stage::cli,
                  {{"option", "--out"}});
    }
  }
  std::string db = default_db_path(suite.dir, suite.name, a.db);
  Store store(db, Store::Mode::read_only);
  store.limit_to(cells_in_view(suite, a.where));
  if (a.format == "files") return export_files(g, suite, store);

  std::ofstream file;
  if (!a.out.empty()) {
    file.open(a.out, std::ios::binary | std::ios::trunc);
    if (!file) throw Error(codes::IO_ERROR, "cannot write " + a.out, Stage::execution, {{"path", a.out}});
  }
  std::ostream& out = a.out.empty() ? std::cout : file;
  std::vector<std::string> dims;
  for (const auto& d : suite.dims) dims.push_back(d.name);
  write_export(store, suite.name, a.format, a.transcripts, out, dims, suite.has_task);
  return kExitOk;
}

}  // namespace shepherd::cli
