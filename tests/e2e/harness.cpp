#include "harness.h"

#include <cstring>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

namespace fs = std::filesystem;

namespace e2e {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Process::Process(std::vector<std::string> args, std::map<std::string, std::string> env) {
  static int counter = 0;
  std::string base = (fs::temp_directory_path() / ("e2e-proc-" + std::to_string(getpid()) + "-" + std::to_string(counter++))).string();
  out_path_ = base + ".out";
  err_path_ = base + ".err";
  pid_ = fork();
  if (pid_ == 0) {
    int out = open(out_path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    int err = open(err_path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    dup2(out, 1);
    dup2(err, 2);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  fs::remove(out_path_, ec);
  fs::remove(err_path_, ec);
}

void Process::signal(int sig) { kill(pid_, sig); }

bool Process::running() {
  if (reaped_) return false;
  int status = 0;
  struct rusage usage {};
  pid_t r = wait4(pid_, &status, WNOHANG, &usage);
  if (r == 0) return true;
  reaped_ = true;
  result_.cpu_seconds = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                        static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  result_.max_rss_kb = usage.ru_maxrss;
  result_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result_.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return false;
}

Result Process::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      reaped_ = true;
      ADD_FAILURE() << "process did not exit within " << timeout.count() << " ms; stderr:\n" << err_so_far();
      result_.exit_code = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  result_.out = out_so_far();
  result_.err = err_so_far();
  return result_;
}

std::string Process::out_so_far() const { return read_file(out_path_); }
std::string Process::err_so_far() const { return read_file(err_path_); }

Result shepherd(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                std::chrono::milliseconds timeout) {
  std::vector<std::string> full{SHEPHERD_BIN};
  full.insert(full.end(), args.begin(), args.end());
  Process p(full, env);
  return p.wait(timeout);
}

Mock::Mock(const nlohmann::json& scenario) {
  dir_ = (fs::temp_directory_path() / ("e2e-mock-" + std::to_string(getpid()) + "-" + std::to_string(rand()))).string();
  fs::create_directories(dir_);
  std::string path = dir_ + "/scenario.json";
  std::ofstream(path) << scenario.dump();
  process_ = std::make_unique<Process>(std::vector<std::string>{SHEPHERD_BIN, "mock", "--json", "--port", "0", "--scenario", path});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string out = process_->out_so_far();
    if (auto nl = out.find('\n'); nl != std::string::npos) {
      port_ = nlohmann::json::parse(out.substr(0, nl)).at("port").get<int>();
      return;
    }
    if (!process_->running()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  throw std::runtime_error("mock did not start: " + process_->err_so_far());
}

std::string Mock::base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

nlohmann::json Mock::stats() const {
  return nlohmann::json::parse(http_get("http://127.0.0.1:" + std::to_string(port_) + "/stats"));
}

void Mock::reset() const {
  CURL* c = curl_easy_init();
  std::string url = "http://127.0.0.1:" + std::to_string(port_) + "/reset";
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char*, size_t s, size_t n, void*) { return s * n; });
  curl_easy_perform(c);
  curl_easy_cleanup(c);
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "shepherd-e2e-XXXXXX").string();
  path_ = mkdtemp(tmpl.data());
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string TempDir::write(const std::string& name, const std::string& content) const {
  std::ofstream(file(name)) << content;
  return file(name);
}

std::map<std::string, std::string> key_env(int keys) {
  std::map<std::string, std::string> env;
  for (int i = 0; i < keys; ++i) env["E2E_KEY_" + std::to_string(i)] = "e2e-secret-value-" + std::to_string(i);
  return env;
}

SuiteSpec suite_at(const std::string& base_url) {
  SuiteSpec s;
  s.base_url = base_url;
  return s;
}

std::string SuiteSpec::text() const {
  std::ostringstream s;
  s << "return {\n  name = \"" << name << "\",\n  providers = {\n    mock = {\n"
    << "      base_url = \"" << base_url << "\",\n";
  // Only when given: the lines below keep their numbers (tests name them).
  if (!provider_extra.empty()) s << provider_extra << "\n";
  s << "      keys = {";
  for (int i = 0; i < keys; ++i) s << " { id = \"k" << i << "\", env = \"E2E_KEY_" << i << "\" },";
  s << " },\n      models = {";
  for (const auto& m : models) s << " \"" << m << "\",";
  s << " },\n      limits = { concurrency = " << concurrency << " },\n      timeouts = " << timeouts << ",\n    },\n  },\n"
    << "  matrix = " << matrix << ",\n" << extra << "\n";
  if (!request.empty()) {
    s << "  request = " << request << ",\n}\n";
    return s.str();
  }
  s << "  request = function(cell)\n    local parts = {}\n"
    << "    for k, v in pairs(cell) do parts[#parts + 1] = k .. '=' .. tostring(v) end\n"
    << "    table.sort(parts)\n"
    << "    return { model = cell.model, max_tokens = 16, messages = { { role = 'user', content = table.concat(parts, ' ') } } }\n"
    << "  end,\n}\n";
  return s.str();
}

std::string http_get(const std::string& url) {
  std::string body;
  CURL* c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, +[](char* p, size_t s, size_t n, void* d) {
    static_cast<std::string*>(d)->append(p, s * n);
    return s * n;
  });
  curl_easy_perform(c);
  curl_easy_cleanup(c);
  return body;
}

std::vector<nlohmann::json> parse_jsonl(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::string query(const std::string& db, const std::string& sql) {
  SQLite::Database d(db, SQLite::OPEN_READONLY);
  d.exec("PRAGMA busy_timeout=5000");
  SQLite::Statement st(d, sql);
  if (!st.executeStep()) return "";
  return st.getColumn(0).isNull() ? "" : st.getColumn(0).getString();
}

std::string try_query(const std::string& db, const std::string& sql, const std::string& fallback) {
  try {
    return query(db, sql);
  } catch (const std::exception&) {
    return fallback;
  }
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

struct StoreWriteLock::Impl {
  explicit Impl(const std::string& db) : database(db, SQLite::OPEN_READWRITE) {
    database.exec("PRAGMA busy_timeout=5000");
    database.exec("BEGIN IMMEDIATE");
  }
  SQLite::Database database;
};

StoreWriteLock::StoreWriteLock(const std::string& db) : impl_(std::make_unique<Impl>(db)) {}
StoreWriteLock::~StoreWriteLock() { release(); }

void StoreWriteLock::release() {
  if (!impl_) return;
  impl_->database.exec("ROLLBACK");
  impl_.reset();
}

bool signal_blocked(pid_t pid, int sig) {
  std::istringstream in(read_file("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("SigBlk:", 0) != 0) continue;
    unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
    return (mask >> (sig - 1)) & 1ULL;
  }
  return false;
}

std::vector<std::vector<std::string>> query_rows(const std::string& db, const std::string& sql) {
  SQLite::Database d(db, SQLite::OPEN_READONLY);
  d.exec("PRAGMA busy_timeout=5000");
  SQLite::Statement st(d, sql);
  std::vector<std::vector<std::string>> rows;
  while (st.executeStep()) {
    std::vector<std::string> row;
    for (int i = 0; i < st.getColumnCount(); ++i)
      row.push_back(st.getColumn(i).isNull() ? "" : st.getColumn(i).getString());
    rows.push_back(std::move(row));
  }
  return rows;
}

std::map<std::string, nlohmann::json> export_by_dims(const std::string& suite, const std::string& db) {
  Result r = shepherd({"export", suite, "--db", db, "--format", "jsonl"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, nlohmann::json> out;
  for (auto& row : parse_jsonl(r.out)) out[row["dims"].dump()] = row;
  return out;
}

long number_arg(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::stol(argv[i + 1]);
  return fallback;
}

}  // namespace e2e
