#pragma once
// Drives the real binary: processes, the mock provider, temp dirs, the store.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace e2e {

struct Result {
  int exit_code = -1;  // -1: killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
  double cpu_seconds = 0;  // user + system of the child
  long max_rss_kb = 0;     // peak resident set of the child
};

// A child process with stdout/stderr captured to files.
class Process {
 public:
  Process(std::vector<std::string> args, std::map<std::string, std::string> env = {});
  ~Process();  // SIGKILLs if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Waits up to `timeout`; on timeout, SIGKILLs and fails the test.
  Result wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  bool running();
  std::string out_so_far() const;
  std::string err_so_far() const;

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_;
  bool reaped_ = false;
  Result result_;
};

// Runs shepherd to completion.
Result shepherd(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                std::chrono::milliseconds timeout = std::chrono::seconds(120));

// `shepherd mock --port 0 --scenario FILE` on a free port.
class Mock {
 public:
  explicit Mock(const nlohmann::json& scenario = nlohmann::json::object());
  int port() const { return port_; }
  std::string base_url() const;
  nlohmann::json stats() const;
  void reset() const;

 private:
  std::string dir_;
  std::unique_ptr<Process> process_;
  int port_ = 0;
};

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::string write(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

// A suite file's text: one provider "mock" at base_url with keys k0..k{n-1}
// (env E2E_KEY_i), the given models, matrix (Lua text) and extra fields.
struct SuiteSpec {
  std::string name = "e2e";
  std::string base_url;
  int keys = 1;
  std::vector<std::string> models = {"m-a"};
  int concurrency = 8;
  std::string timeouts = "{ connect_ms = 1000, total_ms = 3000, stall_ms = 1000 }";
  std::string matrix = "{ model = { \"m-a\" }, instance = { 1, 2, 3 } }";
  std::string extra;  // more top-level fields, Lua text ending with ','
  std::string provider_extra;  // more fields of the provider, Lua text ending with ',' (e.g. "stream = false,")
  // The suite's request function as Lua text (`function(cell) … end`);
  // empty: the default, whose prompt lists the cell's dimensions sorted.
  std::string request;
  std::string text() const;
};

SuiteSpec suite_at(const std::string& base_url);

std::map<std::string, std::string> key_env(int keys);

// A benchmark's `--name N` argument, or `fallback`.
long number_arg(int argc, char** argv, const char* name, long fallback);  // E2E_KEY_i = e2e-secret-value-i

std::string http_get(const std::string& url);
std::string read_file(const std::string& path);
std::vector<nlohmann::json> parse_jsonl(const std::string& text);

// Runs `sql` on the store and returns the first column of the first row as text.
std::string query(const std::string& db, const std::string& sql);

// Every row of `sql`, each column as text ("" for NULL).
std::vector<std::vector<std::string>> query_rows(const std::string& db, const std::string& sql);

// `shepherd export SUITE --db DB --format jsonl`, one record per task, keyed by
// the dims' text (their JSON dump).
std::map<std::string, nlohmann::json> export_by_dims(const std::string& suite, const std::string& db);
// query() that gives `fallback` while the store cannot be read (not created yet).
std::string try_query(const std::string& db, const std::string& sql, const std::string& fallback = "");

// Polls `done` every 5 ms until it holds (true) or `timeout` passes (false).
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout);

// SQLite's write lock on a store, held by this (test) process as another
// writer would hold it: BEGIN IMMEDIATE, released by release() or the destructor.
class StoreWriteLock {
 public:
  explicit StoreWriteLock(const std::string& db);
  ~StoreWriteLock();
  StoreWriteLock(const StoreWriteLock&) = delete;
  StoreWriteLock& operator=(const StoreWriteLock&) = delete;
  void release();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether `sig` is in the blocked mask of process `pid` (/proc/PID/status SigBlk).
bool signal_blocked(pid_t pid, int sig);

}  // namespace e2e
