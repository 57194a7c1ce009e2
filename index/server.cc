#include "index/server.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>
#include <prometheus/registry.h>

#include "monitoring/metrics.h"
#include "http/server.h"
#include "store/index_catalog.h"

namespace lattice {

void AddIndexServerFlags(CLI::App* command, IndexServerOptions* options) {
  command->add_option("--data-dir", options->data_dir, "Data directory whose indexes/ are served")
      ->capture_default_str();
  command->add_option("--address", options->address, "HTTP address")->capture_default_str();
  command->add_option("--port", options->port, "HTTP port (0 = any free port)")
      ->capture_default_str();
  command->add_option("--threads", options->threads, "HTTP server threads")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
}

int RunIndexServer(const IndexServerOptions& options, const std::atomic<bool>* stop) {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "lattice serve-index: error: %s\n", s.message().c_str());
    return 1;
  };
  auto catalog = store::IndexCatalog::Open(options.data_dir + "/indexes");
  if (!catalog.ok()) return fail(catalog.status());

  prometheus::Registry registry;
  IndexApiOptions api = options.api;
  api.registry = &registry;
  auto router = std::make_shared<Router>();
  router->Add("GET", "/healthz",
              [](HttpRequest&) { return HttpResponse::Json(200, {{"status", "ok"}}); });
  router->Add("GET", "/metrics", [&registry](HttpRequest&) {
    return HttpResponse::Text(200, RenderMetrics(registry), "text/plain; version=0.0.4");
  });
  AddIndexRoutes(*router, catalog->get(), api);

  HttpServerOptions hopts;
  hopts.address = options.address;
  hopts.port = options.port;
  hopts.threads = options.threads;
  auto server = HttpServer::Start(hopts, router);
  if (!server.ok()) return fail(server.status().WithContext("serve-index"));
  const uint16_t port = (*server)->port();
  const std::string info_path =
      options.data_dir + "/index-server-" + std::to_string(port) + ".json";
  {
    std::ofstream info(info_path, std::ios::trunc);
    info << nlohmann::json{{"address", options.address}, {"port", port}, {"pid", getpid()}}.dump()
         << "\n";
  }
  std::fprintf(stderr,
               "lattice serve-index: listening on http://%s:%u (indexes in %s/indexes, "
               "%d thread(s))\n",
               options.address.c_str(), port, options.data_dir.c_str(), options.threads);
  while (!stop->load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  (*server)->Stop();
  std::remove(info_path.c_str());
  std::fprintf(stderr, "lattice serve-index: stopped\n");
  return 0;
}

}  // namespace lattice
