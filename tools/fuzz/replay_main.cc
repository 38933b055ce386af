// Runs a libFuzzer target without libFuzzer, so the test suite exercises
// every fuzz target under GCC and under --config=asan/ubsan: each file of the
// seed corpus, every prefix of it (truncated files and streams are the most
// common bad input), then seeded mutations of the corpus for a bounded
// number of runs or seconds. The sequence is deterministic for a seed; a
// crashing input is written to the test's undeclared outputs (or /tmp) and
// its path printed, to be added to the corpus once fixed.
//
//   <target>_test [--seconds=N] [--runs=N] [--seed=N] CORPUS_DIR_OR_FILE...
//   <target>_test --write_seeds=DIR   (writes FuzzSeeds() as seed-<i>)

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tools/fuzz/fuzz_target.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_UNDEFINED__)
extern "C" void __sanitizer_set_death_callback(void (*callback)(void));
#define PARAGAN_HAVE_SANITIZER_CALLBACK 1
#endif

namespace paragan {
namespace {

// The input being run and where to save it if it kills the process; set
// before each run so the signal handler only writes.
std::string* g_current = nullptr;
char g_crash_path[4096];

void SaveCurrentInput() {
  if (g_current == nullptr) return;
  const int fd = open(g_crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_current->size()) {
    const ssize_t n =
        write(fd, g_current->data() + done, g_current->size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  static const char kMsg[] = "\nfuzz replay: the crashing input is saved at ";
  [[maybe_unused]] ssize_t ignored = write(2, kMsg, sizeof(kMsg) - 1);
  ignored = write(2, g_crash_path, std::strlen(g_crash_path));
  ignored = write(2, "\n", 1);
}

void OnFatalSignal(int sig) {
  SaveCurrentInput();
  signal(sig, SIG_DFL);
  raise(sig);
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in),
              std::istreambuf_iterator<char>());
  return true;
}

std::vector<std::string> LoadCorpus(const std::vector<std::string>& paths) {
  std::vector<std::string> inputs;
  for (const std::string& path : paths) {
    std::vector<std::string> files;
    if (std::filesystem::is_directory(path)) {
      for (const auto& e : std::filesystem::directory_iterator(path)) {
        if (e.is_regular_file()) files.push_back(e.path().string());
      }
      std::sort(files.begin(), files.end());  // a deterministic order
    } else {
      files.push_back(path);
    }
    for (const std::string& f : files) {
      std::string data;
      if (!ReadFile(f, &data)) {
        std::fprintf(stderr, "fuzz replay: cannot read %s\n", f.c_str());
        std::exit(2);
      }
      inputs.push_back(std::move(data));
    }
  }
  return inputs;
}

// Values that break length and offset arithmetic.
constexpr uint64_t kInteresting[] = {0,
                                     1,
                                     2,
                                     0x7f,
                                     0x80,
                                     0xff,
                                     0x7fff,
                                     0xffff,
                                     0x7fffffff,
                                     0x80000000,
                                     0xffffffff,
                                     0x7fffffffffffffff,
                                     0x8000000000000000,
                                     0xffffffffffffffff};

void Mutate(std::mt19937_64& rng, const std::vector<std::string>& corpus,
            std::string* s) {
  auto pick = [&rng](size_t n) { return n == 0 ? 0 : rng() % n; };
  const int ops = 1 + static_cast<int>(rng() % 4);
  for (int op = 0; op < ops; ++op) {
    switch (rng() % 8) {
      case 0:  // flip a bit
        if (!s->empty()) (*s)[pick(s->size())] ^= char(1 << (rng() % 8));
        break;
      case 1:  // a random byte
        if (!s->empty()) (*s)[pick(s->size())] = char(rng());
        break;
      case 2: {  // an interesting 1/2/4/8-byte value, either endianness
        const size_t width = size_t{1} << (rng() % 4);
        if (s->size() < width) break;
        const size_t at = pick(s->size() - width + 1);
        const uint64_t v = kInteresting[pick(std::size(kInteresting))];
        const bool big = rng() % 2;
        for (size_t i = 0; i < width; ++i) {
          const size_t shift = 8 * (big ? width - 1 - i : i);
          (*s)[at + i] = char((v >> shift) & 0xff);
        }
        break;
      }
      case 3:  // truncate
        s->resize(pick(s->size() + 1));
        break;
      case 4:  // erase a range
        if (!s->empty()) {
          const size_t at = pick(s->size());
          s->erase(at, 1 + pick(std::min<size_t>(s->size() - at, 64)));
        }
        break;
      case 5:  // duplicate a range
        if (!s->empty()) {
          const size_t at = pick(s->size());
          const std::string piece =
              s->substr(at, 1 + pick(std::min<size_t>(s->size() - at, 64)));
          s->insert(pick(s->size() + 1), piece);
        }
        break;
      case 6: {  // insert random bytes
        std::string piece(1 + pick(16), '\0');
        for (char& c : piece) c = char(rng());
        s->insert(pick(s->size() + 1), piece);
        break;
      }
      case 7: {  // splice with another corpus input
        const std::string& other = corpus[pick(corpus.size())];
        const size_t cut = pick(s->size() + 1);
        s->resize(cut);
        s->append(other, pick(other.size() + 1), std::string::npos);
        break;
      }
    }
  }
}

int Main(int argc, char** argv) {
  double seconds = 10;
  long runs = 20000;
  uint64_t seed = 1;
  std::string write_seeds;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&a](const char* flag) -> const char* {
      const size_t n = std::strlen(flag);
      return a.compare(0, n, flag) == 0 ? a.c_str() + n : nullptr;
    };
    if (const char* v = value("--seconds=")) {
      seconds = std::atof(v);
    } else if (const char* v = value("--runs=")) {
      runs = std::atol(v);
    } else if (const char* v = value("--seed=")) {
      seed = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("--write_seeds=")) {
      write_seeds = v;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "fuzz replay: unknown flag %s\n", a.c_str());
      return 2;
    } else {
      paths.push_back(a);
    }
  }
  if (!write_seeds.empty()) {
    std::filesystem::create_directories(write_seeds);
    const std::vector<std::string> seeds = FuzzSeeds();
    for (size_t i = 0; i < seeds.size(); ++i) {
      const std::string path = write_seeds + "/seed-" + std::to_string(i);
      std::ofstream(path, std::ios::binary) << seeds[i];
    }
    std::printf("wrote %zu seeds to %s\n", seeds.size(), write_seeds.c_str());
    return 0;
  }
  const std::vector<std::string> corpus = LoadCorpus(paths);
  if (corpus.empty()) {
    std::fprintf(stderr, "fuzz replay: no corpus inputs in the paths given\n");
    return 2;
  }
  const char* out_dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR");
  std::snprintf(g_crash_path, sizeof(g_crash_path), "%s/crash-input",
                out_dir != nullptr ? out_dir : "/tmp");
  for (int sig : {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL}) {
    signal(sig, OnFatalSignal);
  }
#ifdef PARAGAN_HAVE_SANITIZER_CALLBACK
  __sanitizer_set_death_callback(SaveCurrentInput);
#endif

  std::string input;
  g_current = &input;
  long done = 0;
  auto run = [&](const std::string& data) {
    input = data;
    // A copy the target cannot overrun without a sanitizer noticing.
    std::vector<uint8_t> bytes(input.begin(), input.end());
    LLVMFuzzerTestOneInput(bytes.empty() ? nullptr : bytes.data(),
                           bytes.size());
    ++done;
  };
  for (const std::string& c : corpus) {
    run(c);
    // Every prefix of a small input; evenly spaced ones of a large one.
    const size_t step = std::max<size_t>(1, c.size() / 2048);
    for (size_t n = 0; n < c.size(); n += step) run(c.substr(0, n));
  }
  const long systematic = done;
  std::mt19937_64 rng(seed);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (done < systematic + runs &&
         std::chrono::steady_clock::now() < deadline) {
    std::string s = corpus[rng() % corpus.size()];
    Mutate(rng, corpus, &s);
    run(s);
  }
  g_current = nullptr;
  std::printf(
      "fuzz replay: %zu corpus inputs, %ld runs (%ld of them seeded "
      "mutations, seed %llu), no crash\n",
      corpus.size(), done, done - systematic,
      static_cast<unsigned long long>(seed));
  return 0;
}

}  // namespace
}  // namespace paragan

int main(int argc, char** argv) { return paragan::Main(argc, argv); }
