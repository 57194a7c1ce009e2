// Fuzz target: the HTTP request path (http/server.h): raw bytes on a loopback connection
// to a running HttpServer, through Beast's parser, the header / body / chunk limits, the
// Host check, the Router (404 / 405 / 401 / path params / query) and real handlers: the
// index query routes (index/routes.h) over a catalog of two small indexes (flat L2 and
// HNSW inner product, one with item metadata), and a few plain routes (echo, path
// parameters, an authenticated POST, an offloaded one).
//
// Input: the bytes a client sends (any number of pipelined requests). A first byte '~'
// (dropped) sends them to a second server with small limits (256-byte bodies, 512-byte
// headers, an allowed_hosts entry), so the 413 / 431 paths are reachable by short inputs;
// otherwise the server has the default limits (64 MiB bodies, 64 KiB headers).
// The client writes everything, half-closes, and reads until the server closes.
// Checks, besides ASan / UBSan in the server's threads:
//   * the server answers and closes within 8 s (no hang on any input; below -timeout);
//   * no response is a 500: the handlers here never fail, so a 500 means a handler threw.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <omp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "http/server.h"
#include "index/routes.h"
#include "store/index_catalog.h"
#include "store/vector_index.h"

namespace {

using nlohmann::json;

void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_http_server: %s: %s\n", what, detail.c_str());
  std::abort();
}

constexpr int kDim = 4;
constexpr char kToken[] = "fuzz-token";

struct World {
  std::string dir;
  std::unique_ptr<lattice::store::IndexCatalog> catalog;
  std::unique_ptr<lattice::HttpServer> server;        // default limits
  std::unique_ptr<lattice::HttpServer> small_server;  // small limits
};
World* world = nullptr;

void Publish(const std::string& name, lattice::store::IndexParams params, bool with_items) {
  auto index = lattice::store::MakeVectorIndex(params);
  if (!index.ok()) Fail("init", index.status().ToString());
  std::vector<float> x;
  std::vector<int64_t> ids;
  lattice::store::ItemMetadata items;
  for (int i = 0; i < 32; ++i) {
    for (int d = 0; d < kDim; ++d) x.push_back(static_cast<float>((i * 7 + d * 3) % 11) - 5.f);
    ids.push_back(10 * i);
    items[10 * i] = json{{"path", "img/" + std::to_string(i) + ".png"}, {"label", i % 3}}.dump();
  }
  lattice::Status s = (*index)->Add(x.data(), 32, ids.data());
  if (!s.ok()) Fail("init", s.ToString());
  auto published = world->catalog->Publish(name, **index, {{"vectors", 32}, {"dim", kDim}},
                                           with_items ? &items : nullptr);
  if (!published.ok()) Fail("init", published.status().ToString());
}

std::shared_ptr<lattice::Router> MakeRouter() {
  auto router = std::make_shared<lattice::Router>();
  lattice::IndexApiOptions options;
  options.max_k = 50;
  options.max_batch = 64;
  options.max_ef_search = 128;
  options.max_nprobe = 16;
  options.max_query_work = 4096;
  lattice::AddIndexRoutes(*router, world->catalog.get(), options);
  router->Add("GET", "/healthz", [](lattice::HttpRequest&) {
    return lattice::HttpResponse::Json(200, {{"ok", true}});
  });
  auto describe = [](lattice::HttpRequest& req) {
    json j = {{"method", req.method}, {"path", req.path}, {"query", req.query},
              {"params", req.path_params}, {"body_bytes", req.body.size()},
              {"content_type", req.content_type}};
    return lattice::HttpResponse::Json(200, j);
  };
  router->Add("GET", "/v1/things/{id}", describe);
  router->Add("GET", "/v1/things/{id}/parts/{part}", describe);
  router->Add("GET", "/v1/things/special", describe);
  router->Add("DELETE", "/v1/things/{id}", describe, /*mutating=*/true);
  router->Add("POST", "/v1/echo", [](lattice::HttpRequest& req) {
    return lattice::HttpResponse::Text(200, req.body, "application/octet-stream");
  }, /*mutating=*/true);
  router->Add("POST", "/v1/work", describe,
              lattice::RouteOptions{/*authenticated=*/false, /*offload=*/true});
  router->SetToken(kToken);
  return router;
}

std::unique_ptr<lattice::HttpServer> StartServer(lattice::HttpServerOptions options,
                                                 std::shared_ptr<const lattice::Router> router) {
  options.address = "127.0.0.1";
  options.port = 0;
  options.threads = 2;
  options.idle_timeout_ms = 10000;
  auto server = lattice::HttpServer::Start(options, std::move(router));
  if (!server.ok()) Fail("init", server.status().ToString());
  return std::move(server).value();
}

void Shutdown() {
  if (world == nullptr) return;
  world->small_server.reset();
  world->server.reset();
  world->catalog.reset();
  std::error_code ec;
  std::filesystem::remove_all(world->dir, ec);
  delete world;
  world = nullptr;
}

// Sends `bytes` to `port`, half-closes, returns everything read until the server closes.
std::string Exchange(uint16_t port, const char* bytes, size_t size) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Fail("socket", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Non-blocking from the start: libFuzzer's SIGALRM (-timeout) interrupts system calls.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS && errno != EINTR) Fail("connect", std::strerror(errno));
    pollfd p{fd, POLLOUT, 0};
    while (poll(&p, 1, 5000) < 0 && errno == EINTR) {
    }
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (!(p.revents & POLLOUT) || error != 0) Fail("connect", std::strerror(error));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  std::string response;
  size_t sent = 0;
  bool write_open = true;
  if (size == 0) {
    shutdown(fd, SHUT_WR);
    write_open = false;
  }
  char buf[65536];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      Fail("hang", "no close from the server within 8 s; " + std::to_string(sent) + " of " +
                       std::to_string(size) + " bytes sent, " +
                       std::to_string(response.size()) + " received");
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
    if (poll(&p, 1, static_cast<int>(left.count())) < 0) {
      if (errno == EINTR) continue;
      Fail("poll", std::strerror(errno));
    }
    if (write_open && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = send(fd, bytes + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == size) {
        shutdown(fd, SHUT_WR);  // the server closed its side, or all is sent
        write_open = false;
      }
    }
    if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        response.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        break;  // closed (or reset) by the server
      }
    }
  }
  close(fd);
  return response;
}

// Walks the responses (status line, headers, Content-Length body); each must be well
// formed and none a 500.
void CheckResponses(const std::string& r) {
  size_t at = 0;
  while (at < r.size()) {
    if (r.compare(at, 7, "HTTP/1.") != 0 || r.size() < at + 13) {
      Fail("response", "no status line at byte " + std::to_string(at) + ": " + r.substr(at, 200));
    }
    const int status = std::atoi(r.c_str() + at + 9);
    const size_t end = r.find("\r\n\r\n", at);
    if (end == std::string::npos) Fail("response", "unterminated header: " + r.substr(at, 400));
    if (status == 500) Fail("500", r.substr(at, 400));
    std::string header = r.substr(at, end - at);
    for (char& c : header) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const size_t cl = header.find("\r\ncontent-length: ");
    if (cl == std::string::npos) Fail("response", "no Content-Length: " + r.substr(at, 400));
    const size_t length = std::strtoull(header.c_str() + cl + 18, nullptr, 10);
    at = end + 4 + length;
  }
  if (at != r.size()) Fail("response", "body shorter than its Content-Length");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  omp_set_num_threads(1);
  world = new World;
  char dir[] = "/tmp/lattice-fuzz-http-XXXXXX";
  if (mkdtemp(dir) == nullptr) Fail("init", "mkdtemp failed");
  world->dir = dir;
  auto catalog = lattice::store::IndexCatalog::Open(world->dir + "/indexes");
  if (!catalog.ok()) Fail("init", catalog.status().ToString());
  world->catalog = std::move(catalog).value();
  using lattice::store::IndexType;
  using lattice::store::Metric;
  Publish("flat4", {IndexType::kFlat, Metric::kL2, kDim, json::object()}, /*with_items=*/true);
  Publish("hnsw4", {IndexType::kHnsw, Metric::kInnerProduct, kDim, {{"M", 8}}}, false);
  std::shared_ptr<const lattice::Router> router = MakeRouter();
  world->server = StartServer({}, router);
  lattice::HttpServerOptions small;
  small.max_body_bytes = 256;
  small.max_header_bytes = 512;
  small.allowed_hosts = {"lattice.example"};
  small.work_threads = 1;
  small.work_queue = 1;
  world->small_server = StartServer(small, router);
  std::atexit(Shutdown);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* bytes = reinterpret_cast<const char*>(data);
  lattice::HttpServer* server = world->server.get();
  if (size > 0 && bytes[0] == '~') {
    server = world->small_server.get();
    ++bytes;
    --size;
  }
  const std::string response = Exchange(server->port(), bytes, size);
  CheckResponses(response);
  return 0;
}
