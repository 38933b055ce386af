#include "deploy/local/worker_control.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/check.h"
#include "common/tensor_io.h"

namespace paragan {
namespace local {
namespace {

constexpr char kPidFile[] = "/launcher.pid";
constexpr char kRequestFile[] = "/scale_request";
constexpr char kReplyFile[] = "/scale_reply";

bool ProcessAlive(pid_t pid) {
  return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

// "<id> <rest>" split at the first space; the rest without its newline.
std::pair<std::string, std::string> IdAndRest(const std::string& text) {
  std::pair<std::string, std::string> out = absl::StrSplit(
      absl::StripTrailingAsciiWhitespace(text), absl::MaxSplits(' ', 1));
  return out;
}

}  // namespace

std::string ControlDir(const std::string& out_dir) {
  return out_dir + "/control";
}

ScaleControl::ScaleControl(std::string out_dir) : dir_(ControlDir(out_dir)) {}

ScaleControl::~ScaleControl() {
  if (opened_) std::remove((dir_ + kPidFile).c_str());
}

absl::Status ScaleControl::Open() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir_, ": ", ec.message()));
  }
  std::remove((dir_ + kRequestFile).c_str());
  std::remove((dir_ + kReplyFile).c_str());
  PG_RETURN_IF_ERROR(
      WriteFileAtomically(dir_ + kPidFile, absl::StrCat(getpid(), "\n")));
  opened_ = true;
  return absl::OkStatus();
}

std::optional<ScaleControl::Request> ScaleControl::Poll() {
  absl::StatusOr<std::string> text = ReadFileToString(dir_ + kRequestFile);
  if (!text.ok()) return std::nullopt;
  const auto [id, rest] = IdAndRest(*text);
  if (id.empty() || id == answered_) return std::nullopt;
  Request r;
  r.id = id;
  if (!absl::SimpleAtoi(rest, &r.workers)) {
    Answer(r, absl::InvalidArgumentError(
                  absl::StrCat("the request asks for '", rest,
                               "' workers: not a number (--scale_workers=N)")))
        .IgnoreError();
    return std::nullopt;
  }
  return r;
}

absl::Status ScaleControl::Answer(const Request& request,
                                  const absl::StatusOr<std::string>& outcome) {
  answered_ = request.id;
  return WriteFileAtomically(
      dir_ + kReplyFile,
      absl::StrCat(request.id, outcome.ok() ? " ok\n" : " error\n",
                   outcome.ok() ? *outcome : outcome.status().message(), "\n"));
}

absl::StatusOr<std::string> RequestScale(const std::string& out_dir,
                                         int workers, absl::Duration timeout) {
  const std::string dir = ControlDir(out_dir);
  absl::StatusOr<std::string> pid_text = ReadFileToString(dir + kPidFile);
  int pid = 0;
  if (!pid_text.ok() ||
      !absl::SimpleAtoi(absl::StripTrailingAsciiWhitespace(*pid_text), &pid) ||
      !ProcessAlive(pid)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no paragan_local is training in ", out_dir, " (no live ", dir,
        kPidFile, "): start the run first, with the same --out_dir"));
  }
  const std::string id =
      absl::StrCat(getpid(), "-", absl::ToUnixNanos(absl::Now()));
  PG_RETURN_IF_ERROR(WriteFileAtomically(dir + kRequestFile,
                                         absl::StrCat(id, " ", workers, "\n")));
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    absl::StatusOr<std::string> reply = ReadFileToString(dir + kReplyFile);
    if (reply.ok()) {
      std::vector<std::string> lines = absl::StrSplit(*reply, '\n');
      const auto [reply_id, verdict] = IdAndRest(lines[0]);
      if (reply_id == id) {
        const std::string message = lines.size() > 1 ? lines[1] : "";
        if (verdict == "ok") return message;
        return absl::FailedPreconditionError(message);
      }
    }
    if (!ProcessAlive(pid)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the paragan_local training in ", out_dir, " (pid ", pid,
                       ") ended before answering"));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the paragan_local training in ", out_dir, " (pid ", pid,
                   ") did not answer within ", absl::FormatDuration(timeout)));
}

}  // namespace local
}  // namespace paragan
