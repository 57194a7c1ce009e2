#include "scheduler/cluster.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "monitoring/metrics.h"
#include "scheduler/sweep_routes.h"
#include "scheduler/checkpoints.h"
#include "scheduler/coordinator.h"
#include "scheduler/embed_spec.h"
#include "http/server.h"
#include "store/index_catalog.h"
#include "store/state_store.h"

namespace lattice {
namespace {

Status WriteFileAtomically(const std::string& path, const std::string& content, mode_t mode) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::IoError("cannot write " + tmp);
    out << content;
    if (!out.flush()) return Status::IoError("cannot write " + tmp);
  }
  if (chmod(tmp.c_str(), mode) != 0) return Status::IoError("cannot chmod " + tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::IoError("cannot rename " + tmp);
  return Status::Ok();
}

void ShutdownWorkers(ControlChannel& channel) {
  for (int r = 1; r < channel.size(); ++r) (void)channel.Send(WorkerRank{r}, ShutdownMsg{});
}

}  // namespace

StatusOr<std::string> LoadOrCreateToken(const std::string& data_dir) {
  std::string path = data_dir + "/token";
  std::ifstream in(path);
  std::string token;
  if (in && std::getline(in, token) && token.size() >= 16) return token;
  std::random_device rd;
  static const char kHex[] = "0123456789abcdef";
  token.clear();
  for (int i = 0; i < 40; ++i) token += kHex[rd() % 16];
  LATTICE_RETURN_IF_ERROR(WriteFileAtomically(path, token + "\n", 0600));
  return token;
}

int RunCoordinatorProcess(const ClusterOptions& options, ControlChannel& channel,
                          const std::atomic<int>* stop_signals) {
  auto fail = [&](const Status& s) {
    std::fprintf(stderr, "lattice cluster: error: %s\n", s.message().c_str());
    ShutdownWorkers(channel);
    return 1;
  };
  // Everything the coordinator creates in the data directory (RocksDB files, token,
  // coordinator.json, indexes) is private: files 0600, directories 0700.
  umask(077);
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) return fail(Status::IoError("cannot create data directory " + options.data_dir + ": " + ec.message()));
  std::filesystem::permissions(options.data_dir, std::filesystem::perms::owner_all, ec);

  auto store = StateStore::Open({options.data_dir + "/state", /*sync_writes=*/true});
  if (!store.ok()) return fail(store.status());
  auto token = LoadOrCreateToken(options.data_dir);
  if (!token.ok()) return fail(token.status());

  prometheus::Registry registry;
  SchedulerMetrics metrics(registry);
  StateStore* state = store->get();
  IndexBuilder index_builder(state, options.data_dir + "/indexes",
                             [state](const SweepRecord& sweep) { return EncoderLineage(*state, sweep); },
                             options.min_free_bytes,
                             [](const SweepRecord& sweep) { return scheduler::IndexItemIds(sweep.spec); });
  CoordinatorOptions copts;
  copts.worker_timeout_ms = options.worker_timeout_ms;
  copts.keepalive_ms = std::max(1, options.worker_timeout_ms / 4);
  copts.stop_signals = stop_signals;
  copts.drain_grace_ms = options.drain_grace_ms;
  copts.index_builder = &index_builder;
  copts.min_free_bytes = options.min_free_bytes;
  Coordinator coordinator(copts, store->get(), &channel, options.metrics ? &metrics : nullptr);
  Status recovered = coordinator.Recover();
  if (!recovered.ok()) return fail(recovered);

  auto catalog = store::IndexCatalog::Open(options.data_dir + "/indexes");  // read side
  if (!catalog.ok()) return fail(catalog.status());

  HttpServerOptions hopts;
  hopts.address = options.http_address;
  hopts.port = options.http_port;
  hopts.threads = options.http_threads;
  hopts.max_connections = options.http_max_connections;
  hopts.allowed_hosts = options.allowed_hosts;
  auto server = HttpServer::Start(
      hopts, MakeApiRouter(&coordinator, store->get(), &registry, *token, catalog->get()));
  if (!server.ok()) return fail(server.status().WithContext("HTTP API"));
  uint16_t port = (*server)->port();
  nlohmann::json info = {{"address", options.http_address}, {"port", port}, {"pid", getpid()},
                         {"workers", channel.size() - 1}};
  std::string info_path = options.data_dir + "/coordinator.json";
  Status wrote = WriteFileAtomically(info_path, info.dump() + "\n", 0600);
  if (!wrote.ok()) return fail(wrote);
  std::fprintf(stderr,
               "lattice cluster: coordinator listening on http://%s:%u with %d worker(s); "
               "data in %s (token: %s/token)\n",
               options.http_address.c_str(), port, channel.size() - 1, options.data_dir.c_str(),
               options.data_dir.c_str());

  coordinator.Run();
  (*server)->Stop();
  std::remove(info_path.c_str());
  std::fprintf(stderr, "lattice cluster: stopped\n");
  return 0;
}

}  // namespace lattice
