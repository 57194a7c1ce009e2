#include "cli/checkpoint_commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/internal/api.h"
#include "common/ids.h"
#include "jobs/checkpoint.h"

namespace lattice::cli {

using nlohmann::json;

namespace {

// The local file header signature that every zip archive starts with; LibTorch archives
// (torch::serialize, torch.save) are zip files.
constexpr char kZipMagic[] = "PK\x03\x04";

Status IoErrorFor(const std::string& path, int err) {
  return Status::IoError("cannot write " + path + ": " + std::strerror(err));
}

// Writes `data` to a fresh temporary file next to `path` (same directory, so that the
// rename that publishes it is atomic) and returns the temporary's name.
StatusOr<std::string> WriteTemp(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoErrorFor(path, errno);
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return IoErrorFor(path, err);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  // fsync before the rename: otherwise a crash could leave the new name on an empty file.
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return IoErrorFor(path, err);
  }
  return tmp;
}

Status Publish(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return IoErrorFor(path, err);
  }
  return Status::Ok();
}

// The metrics worth one line: the two every train/distill trial reports, else a few by name.
std::vector<std::pair<std::string, json>> KeyMetrics(const json& metrics) {
  std::vector<std::pair<std::string, json>> out;
  if (!metrics.is_object()) return out;
  for (const char* name : {"val_accuracy", "val_loss"}) {
    const auto it = metrics.find(name);
    if (it != metrics.end()) out.emplace_back(name, *it);
  }
  if (!out.empty()) return out;
  // nlohmann::json objects iterate in key order, so "a few by name" is deterministic.
  for (auto it = metrics.begin(); it != metrics.end() && out.size() < 3; ++it) {
    out.emplace_back(it.key(), it.value());
  }
  return out;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

StatusOr<CheckpointParts> SplitCheckpoint(const std::string& blob) {
  if (blob.find('\n') == std::string::npos) {
    return Status::InvalidArgument(
        "not a Lattice checkpoint: no header line in the " + std::to_string(blob.size()) +
        " bytes received (expected one line of JSON, then a LibTorch archive)");
  }
  size_t offset = 0;
  StatusOr<jobs::CheckpointHeader> header = jobs::ReadCheckpointHeader(blob, &offset);
  if (!header.ok()) return header.status();
  CheckpointParts parts;
  parts.header = header->ToJson();
  parts.archive = std::string_view(blob).substr(offset);
  if (parts.archive.empty()) {
    return Status::InvalidArgument("checkpoint: no LibTorch archive after the header line");
  }
  if (parts.archive.compare(0, 4, kZipMagic) != 0) {
    return Status::InvalidArgument(
        "checkpoint: the bytes after the header line are not a LibTorch (zip) archive");
  }
  return parts;
}

std::string CheckpointOutputPath(const std::string& trial, const std::string& output) {
  if (output.empty()) return trial + ".pt";
  if (IsDirectory(output)) {
    return output + (output.back() == '/' ? "" : "/") + trial + ".pt";
  }
  return output;
}

Status WriteFileAtomically(const std::string& path, std::string_view data) {
  LATTICE_ASSIGN_OR_RETURN(std::string tmp, WriteTemp(path, data));
  return Publish(tmp, path);
}

std::string FormatDownloadSummary(const std::string& trial, const std::string& path,
                                  size_t archive_bytes, const json& header) {
  std::string line = "wrote " + path + " (" + std::to_string(archive_bytes) +
                     " bytes, LibTorch archive) and " + path + ".json (header): trial " + trial;
  const int64_t epochs = internal::IntField(header, "epochs", -1);
  if (epochs >= 0) line += ", " + std::to_string(epochs) + (epochs == 1 ? " epoch" : " epochs");
  const json empty = json::object();
  for (const auto& [name, value] : KeyMetrics(header.is_object() && header.contains("metrics")
                                                  ? header["metrics"]
                                                  : empty)) {
    line += ", " + name + " " + FormatCell(value);
  }
  return line;
}

std::string FormatCheckpointList(const json& trial, const json& checkpoints,
                                 TrialsFormat format) {
  const std::vector<std::string> header = {"KIND",  "STEP",         "STATE",   "EPOCH",
                                           "BYTES", "val_accuracy", "val_loss"};
  std::vector<std::vector<json>> rows;
  for (const json& c : checkpoints.is_array() ? checkpoints : json::array()) {
    if (!c.is_object()) continue;
    const json& metrics = c.contains("metrics") ? c["metrics"] : json::object();
    auto metric = [&metrics](const char* name) {
      return metrics.is_object() && metrics.contains(name) ? metrics[name] : json(nullptr);
    };
    auto field = [&c](const char* name) { return c.contains(name) ? c[name] : json(nullptr); };
    const bool final = internal::StringField(c, "kind", "") == "final";
    rows.push_back({field("kind"), final ? json(nullptr) : field("step"), field("state"),
                    field("epochs"), field("bytes"), metric("val_accuracy"), metric("val_loss")});
  }
  if (format == TrialsFormat::kJson) {
    json out = json::array();
    for (const auto& row : rows) {
      json obj = json::object();
      for (size_t i = 0; i < header.size(); ++i) {
        std::string key = header[i];
        for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        obj[key] = row[i];
      }
      out.push_back(std::move(obj));
    }
    return out.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  }
  if (format == TrialsFormat::kCsv) {
    std::string out;
    for (size_t i = 0; i < header.size(); ++i) out += (i ? "," : "") + CsvEscape(header[i]);
    out += "\n";
    for (const auto& row : rows) {
      for (size_t i = 0; i < row.size(); ++i) {
        const json& v = row[i];
        out += (i ? "," : "") +
               (v.is_null() ? "" : CsvEscape(v.is_string() ? v.get<std::string>() : v.dump()));
      }
      out += "\n";
    }
    return out;
  }
  if (rows.empty()) {
    // A bare header would look like a failed lookup; say why the list is empty instead.
    return "trial " + internal::StringField(trial, "id", "?") + " (" +
           internal::StringField(trial, "state", "?") +
           ") has no stored checkpoint: completed train and distill trials keep their final "
           "weights (unless train.checkpoint: false), and step checkpoints come with "
           "checkpoint: {every_steps: N}\n";
  }
  TextTable table(header);
  for (const auto& row : rows) {
    std::vector<std::string> cells;
    for (const json& v : row) cells.push_back(FormatCell(v));
    table.AddRow(std::move(cells));
  }
  return table.Render();
}

namespace {

// Client-side check of the trial id: it also names the default output file, so nothing
// like "../x" may get that far.
Status CheckTrialId(const std::string& trial) {
  if (TrialId::Parse(trial)) return Status::Ok();
  return Status::InvalidArgument("bad trial id '" + trial + "' (expected e.g. s3-t4)");
}

}  // namespace

int RunCheckpointDownload(const ClientOptions& options, const CheckpointDownloadArgs& args,
                          CommandIo& io) {
  using internal::PrintError;
  if (Status s = CheckTrialId(args.trial); !s.ok()) return PrintError(io, s.message(), 1);
  // The download needs the API token (a checkpoint is the trial's trained weights).
  const TokenResult token = ReadToken(options.data_dir);
  if (!token.ok) return PrintError(io, token.error, 1);
  auto client = internal::MakeClient(options, token.token);
  const std::string target =
      "/v1/trials/" + internal::EncodePathSegment(args.trial) + "/checkpoint" +
      (args.step > 0 ? "?step=" + std::to_string(args.step) : std::string());
  StatusOr<ClientResponse> response = client->Request("GET", target);
  if (!response.ok()) return PrintError(io, response.status().message(), 1);
  if (response->status < 200 || response->status >= 300) {
    // Error bodies are the API's JSON errors: show the server's reason ("... has no
    // checkpoint: only completed train trials keep one").
    const Status error = internal::ParseResponse(response).status();
    return PrintError(io, "cannot download the checkpoint of " + args.trial + ": " +
                              error.message(), 1);
  }
  StatusOr<CheckpointParts> parts = SplitCheckpoint(response->body);
  if (!parts.ok()) {
    return PrintError(io, "the download of " + args.trial + " is unusable: " +
                              parts.status().message(), 1);
  }
  const std::string path = CheckpointOutputPath(args.trial, args.output);
  const std::string json_path = path + ".json";
  // Both files are written to temporaries first, so that an unwritable path leaves neither
  // file behind, nor replaces an earlier download with half of a new one.
  StatusOr<std::string> tmp_json = WriteTemp(json_path, parts->header.dump(2) + "\n");
  if (!tmp_json.ok()) return PrintError(io, tmp_json.status().message(), 1);
  StatusOr<std::string> tmp_archive = WriteTemp(path, parts->archive);
  if (!tmp_archive.ok()) {
    ::unlink(tmp_json->c_str());
    return PrintError(io, tmp_archive.status().message(), 1);
  }
  Status published = Publish(*tmp_json, json_path);
  if (!published.ok()) {
    ::unlink(tmp_archive->c_str());
    return PrintError(io, published.message(), 1);
  }
  published = Publish(*tmp_archive, path);
  if (!published.ok()) return PrintError(io, published.message(), 1);
  io.out << FormatDownloadSummary(args.trial, path, parts->archive.size(), parts->header)
         << "\n";
  return 0;
}

int RunCheckpoints(const ClientOptions& options, const CheckpointsArgs& args, CommandIo& io) {
  using internal::PrintError;
  StatusOr<TrialsFormat> format = ParseTrialsFormat(args.format);
  if (!format.ok()) return PrintError(io, format.status().message(), 1);
  if (Status s = CheckTrialId(args.trial); !s.ok()) return PrintError(io, s.message(), 1);
  auto client = internal::MakeClient(options, "");
  const std::string target = "/v1/trials/" + internal::EncodePathSegment(args.trial);
  StatusOr<json> trial = internal::CallJson(*client, "GET", target, "", "");
  if (!trial.ok()) return PrintError(io, trial.status().message(), 1);
  StatusOr<json> listed = internal::CallJson(*client, "GET", target + "/checkpoints", "", "");
  if (!listed.ok()) return PrintError(io, listed.status().message(), 1);
  io.out << FormatCheckpointList(*trial, (*listed)["checkpoints"], *format);
  return 0;
}

void RegisterCheckpointCommands(CLI::App& app, int* exit_code) {
  struct State {
    ClientOptions options;
    CheckpointDownloadArgs download;
    CheckpointsArgs list;
  };
  auto st = std::make_shared<State>();
  auto set_runner = [exit_code](CLI::App* sub, auto fn) {
    internal::SetRunner(sub, exit_code, std::move(fn));
  };

  CLI::App* checkpoint = app.add_subcommand("checkpoint", "download a trial's model checkpoint");
  checkpoint->require_subcommand(1);
  CLI::App* download = checkpoint->add_subcommand(
      "download",
      "Download the final weights of a completed train or distill trial.\n"
      "Writes the LibTorch archive to FILE (Python: m = torch.jit.load(FILE); "
      "m.state_dict() holds\n\"0.weight\", \"0.bias\", ... by position in the model, and "
      "\"input.mean\"/\"input.std\" when the\ntrial standardised its input) and the header "
      "(config, in_dim, classes, epochs, metrics)\nto FILE.json. Both are replaced atomically.");
  download->add_option("trial", st->download.trial, "trial id (e.g. s3-t4)")->required();
  download->add_option("--step", st->download.step,
                       "a step checkpoint (`lattice checkpoints <trial>` lists them) instead of "
                       "the final weights")
      ->check(CLI::PositiveNumber);
  download->add_option("-o,--output", st->download.output,
                       "archive file (default: <trial>.pt; a directory: <dir>/<trial>.pt)");
  internal::AddCommonOptions(download, &st->options);
  set_runner(download, [st](CommandIo& io) {
    return RunCheckpointDownload(st->options, st->download, io);
  });

  CLI::App* list = app.add_subcommand(
      "checkpoints",
      "List a trial's stored checkpoints (step checkpoints after retention, and the final\n"
      "one): KIND STEP EPOCH BYTES val_accuracy val_loss.\n"
      "A trial keeps at most its final checkpoint; BYTES is its stored size (header line\n"
      "and archive, as GET /v1/trials/{id}/checkpoint sends it).");
  list->add_option("trial", st->list.trial, "trial id (e.g. s3-t4)")->required();
  list->add_option("--format", st->list.format, "table | csv | json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  internal::AddCommonOptions(list, &st->options);
  set_runner(list, [st](CommandIo& io) { return RunCheckpoints(st->options, st->list, io); });
}

}  // namespace lattice::cli
