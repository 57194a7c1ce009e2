#include "http/server.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace lattice {

// ---------------------------------------------------------------------------------------
// HttpResponse

HttpResponse HttpResponse::Json(int status, const nlohmann::json& body) {
  HttpResponse r;
  r.status = status;
  // Replace invalid UTF-8 rather than throwing from a handler's return path.
  r.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

HttpResponse HttpResponse::Text(int status, std::string body, std::string content_type) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

HttpResponse HttpResponse::Error(int status, const std::string& code, const std::string& message) {
  return Json(status, {{"error", {{"code", code}, {"message", message}}}});
}

HttpResponse HttpResponse::FromStatus(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return Json(200, nlohmann::json::object());
    case StatusCode::kInvalidArgument: return Error(400, "invalid_argument", status.message());
    case StatusCode::kNotFound: return Error(404, "not_found", status.message());
    case StatusCode::kAlreadyExists: return Error(409, "already_exists", status.message());
    case StatusCode::kFailedPrecondition:
      return Error(409, "failed_precondition", status.message());
    case StatusCode::kUnauthenticated: return Error(401, "unauthenticated", status.message());
    case StatusCode::kCancelled: return Error(409, "cancelled", status.message());
    case StatusCode::kUnavailable: return Error(503, "unavailable", status.message());
    case StatusCode::kIoError: return Error(500, "io_error", status.message());
    case StatusCode::kInternal: return Error(500, "internal", status.message());
    case StatusCode::kDataLoss: return Error(500, "data_loss", status.message());
    case StatusCode::kInsufficientStorage:
      return Error(507, "insufficient_storage", status.message());
  }
  return Error(500, "internal", status.message());
}

// ---------------------------------------------------------------------------------------
// Router

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> segments;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (end > start) segments.push_back(path.substr(start, end - start));
    start = end + 1;
  }
  return segments;
}

std::map<std::string, std::string> ParseQuery(const std::string& query) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string::npos) end = query.size();
    const std::string pair = query.substr(start, end - start);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      const std::string key = PercentDecode(pair.substr(0, eq), true);
      out[key] = eq == std::string::npos ? "" : PercentDecode(pair.substr(eq + 1), true);
    }
    start = end + 1;
  }
  return out;
}

// Compares in time that depends only on the lengths, not on where the strings differ.
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

}  // namespace

std::string PercentDecode(const std::string& text, bool plus_as_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      const int hi = HexValue(text[i + 1]);
      const int lo = HexValue(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
  return out;
}

void Router::Add(std::string method, std::string pattern, HttpHandler handler, bool mutating) {
  RouteOptions options;
  options.authenticated = mutating;
  Add(std::move(method), std::move(pattern), std::move(handler), options);
}

void Router::Add(std::string method, std::string pattern, HttpHandler handler,
                 RouteOptions options) {
  Route route;
  route.method = std::move(method);
  route.segments = SplitPath(pattern);
  for (const std::string& s : route.segments) {
    const bool is_param = s.size() >= 2 && s.front() == '{' && s.back() == '}';
    if (!is_param) ++route.literal_segments;
  }
  route.handler = std::move(handler);
  route.options = options;
  routes_.push_back(std::move(route));
}

void Router::SetToken(std::string token) { token_ = std::move(token); }

bool Router::Match(const Route& route, const std::vector<std::string>& segments,
                   std::map<std::string, std::string>* params) {
  if (route.segments.size() != segments.size()) return false;
  params->clear();
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& p = route.segments[i];
    if (p.size() >= 2 && p.front() == '{' && p.back() == '}') {
      (*params)[p.substr(1, p.size() - 2)] = PercentDecode(segments[i], false);
    } else if (p != PercentDecode(segments[i], false)) {
      return false;
    }
  }
  return true;
}

bool Router::Authorized(const std::string& authorization) const {
  if (token_.empty()) return false;
  return ConstantTimeEquals(authorization, "Bearer " + token_);
}

Router::Resolved Router::Resolve(HttpRequest& request) const {
  const size_t q = request.target.find('?');
  const std::string raw_path = request.target.substr(0, q);
  request.path = PercentDecode(raw_path, false);
  request.query = q == std::string::npos ? std::map<std::string, std::string>{}
                                         : ParseQuery(request.target.substr(q + 1));
  const std::vector<std::string> segments = SplitPath(raw_path);

  Resolved out;
  const Route* best = nullptr;
  std::map<std::string, std::string> params, best_params;
  std::set<std::string> allowed;
  for (const Route& route : routes_) {
    if (!Match(route, segments, &params)) continue;
    allowed.insert(route.method);
    if (route.method != request.method) continue;
    if (best == nullptr || route.literal_segments > best->literal_segments) {
      best = &route;
      best_params = params;
    }
  }
  if (allowed.empty()) {
    out.error = HttpResponse::Error(404, "not_found", "no such resource: " + request.path);
    return out;
  }
  if (best == nullptr) {
    std::string allow;
    for (const std::string& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    out.error = HttpResponse::Error(
        405, "method_not_allowed", request.method + " is not allowed on " + request.path);
    out.error.headers.emplace_back("Allow", allow);
    return out;
  }
  if (best->options.authenticated && !Authorized(request.authorization)) {
    out.error = HttpResponse::Error(
        401, "unauthenticated",
        request.authorization.empty()
            ? "this call needs the API token: send \"Authorization: Bearer <token>\""
            : "wrong API token");
    out.error.headers.emplace_back("WWW-Authenticate", "Bearer");
    return out;
  }
  request.path_params = std::move(best_params);
  out.ok = true;
  out.offload = best->options.offload;
  out.route = static_cast<size_t>(best - routes_.data());
  return out;
}

HttpResponse Router::Invoke(const Resolved& resolved, HttpRequest& request) const {
  LATTICE_CHECK(resolved.ok && resolved.route < routes_.size());
  try {
    return routes_[resolved.route].handler(request);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lattice http: handler of %s %s threw: %s\n", request.method.c_str(),
                 request.path.c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "lattice http: handler of %s %s threw an unknown exception\n",
                 request.method.c_str(), request.path.c_str());
  }
  return HttpResponse::Error(500, "internal", "the handler failed (see the server log)");
}

HttpResponse Router::Dispatch(HttpRequest& request) const {
  Resolved resolved = Resolve(request);
  if (!resolved.ok) return std::move(resolved.error);
  return Invoke(resolved, request);
}

// ---------------------------------------------------------------------------------------
// HttpServer

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Largest read of a request body (Beast reads at most 64 KiB at a time anyway).
constexpr std::size_t kBodyReadBytes = std::size_t{64} << 10;
// The most unparsed bytes a connection buffers: a header, a chunk header with its
// extensions, or the trailers must fit (over it: buffer_overflow → 431). At most 64 KiB
// also keeps every field name and value under Beast's 65535-byte field limit, which
// Beast enforces by throwing.
constexpr std::size_t kReadBufferBytes = kBodyReadBytes;
// Descriptors kept for the rest of the process (RocksDB, MPI, logs) when sizing the cap.
constexpr int kFdReserve = 256;
// How long a reserve connection (over max_connections) may take to send its header.
constexpr int kReserveHeaderTimeoutMs = 5000;

// The bounded pool that runs offloaded handlers. TrySubmit never blocks: false when
// `queue` jobs already wait. Stop joins the threads after their current job and drops
// the jobs still waiting.
class WorkPool {
 public:
  WorkPool(int threads, int queue)
      : capacity_(static_cast<size_t>(std::max(threads, 1)) + static_cast<size_t>(std::max(queue, 0))) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~WorkPool() { Stop(); }

  bool TrySubmit(std::function<void()> job) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || jobs_.size() + busy_ >= capacity_) return false;
    jobs_.push_back(std::move(job));
    cv_.notify_one();
    return true;
  }

  void Stop() {
    std::deque<std::function<void()>> dropped;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      dropped.swap(jobs_);
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      ++busy_;
      lock.unlock();
      job();
      job = nullptr;  // release what it holds (a session) outside the lock
      lock.lock();
      --busy_;
    }
  }

  const size_t capacity_;  // threads + queue: jobs running or waiting at most
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  size_t busy_ = 0;  // jobs running
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// What every session shares; owned by HttpServer::Impl, outlives the io threads.
struct ServerShared {
  HttpServerOptions options;
  std::shared_ptr<const Router> router;
  std::unique_ptr<WorkPool> pool;
  std::atomic<int> connections{0};  // sessions within max_connections
  std::atomic<int> reserve{0};      // sessions over it (one request each)
  asio::ip::address bound;
  std::string host_name;            // gethostname(), lower case
};

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The Host header's host part, lower case, without port or IPv6 brackets.
std::string HostName(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    return Lower(host.substr(1, close == std::string_view::npos ? host.npos : close - 1));
  }
  const size_t colon = host.find(':');
  return Lower(host.substr(0, colon));
}

// See "DNS-rebinding protection" in server.h.
bool HostAllowed(const ServerShared& shared, std::string_view header) {
  if (header.empty()) return true;
  const std::vector<std::string>& extra = shared.options.allowed_hosts;
  if (std::find(extra.begin(), extra.end(), "*") != extra.end()) return true;
  const std::string name = HostName(header);
  if (name == "localhost" || name == shared.host_name) return true;
  if (std::find(extra.begin(), extra.end(), name) != extra.end()) return true;
  beast::error_code ec;
  const asio::ip::address ip = asio::ip::make_address(name, ec);
  if (ec) return false;
  return ip.is_loopback() || ip == shared.bound || shared.bound.is_unspecified();
}

// One connection: read a request's header, check it, read its body, dispatch, write the
// response, repeat while keep-alive. All steps run on the connection's strand (the
// socket's executor), except offloaded handlers, which run on the work pool and post
// their response back to the strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  // `reserve`: accepted over max_connections; answers one request and closes.
  Session(tcp::socket&& socket, ServerShared& shared, bool reserve)
      : stream_(std::move(socket)), shared_(shared), options_(shared.options),
        reserve_(reserve),
        buffer_(kReadBufferBytes) {
    ++(reserve_ ? shared_.reserve : shared_.connections);
    beast::error_code ec;
    const tcp::endpoint peer = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_address_ = peer.address().to_string() + ":" + std::to_string(peer.port());
  }
  ~Session() { --(reserve_ ? shared_.reserve : shared_.connections); }

  void Run() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::DoRead, shared_from_this()));
  }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->body_limit(options_.max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    stream_.expires_after(std::chrono::milliseconds(
        reserve_ ? std::min(options_.idle_timeout_ms, kReserveHeaderTimeoutMs)
                 : options_.idle_timeout_ms));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  // Everything that can be decided from the header is decided here, before the body is
  // read: Host, reserve-connection shedding, route, method and token.
  void OnHeader(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return OnReadError(ec);
    const auto& h = parser_->get();
    keep_alive_ = h.keep_alive() && !reserve_;
    version_ = h.version();
    request_ = HttpRequest{};
    request_.method = std::string(h.method_string());
    request_.target = std::string(h.target());
    request_.authorization = std::string(h[http::field::authorization]);
    request_.content_type = std::string(h[http::field::content_type]);
    request_.remote_address = remote_address_;
    const std::string host(h[http::field::host]);
    if (!HostAllowed(shared_, host)) {
      return Reject(HttpResponse::Error(
          403, "forbidden_host",
          "Host \"" + std::string(host) +
              "\" is not a name of this server (add it to the allowed hosts)"));
    }
    resolved_ = shared_.router->Resolve(request_);
    if (reserve_) {
      const auto& paths = options_.priority_paths;
      if (request_.method != "GET" ||
          std::find(paths.begin(), paths.end(), request_.path) == paths.end()) {
        return Reject(Overloaded("too many connections"));
      }
    }
    if (!resolved_.ok) return Reject(std::move(resolved_.error));
    if (parser_->is_done()) return Handle();
    // Beast reads at most what the buffer can hold without growing (capacity - size, at
    // least 512 bytes), and a flat_buffer that held only headers never grows: a 700 KB
    // body would take ~1400 recv calls, each a strand dispatch and a timer reset. Before
    // a large body, make room for reads of up to kBodyReadBytes.
    const boost::optional<std::uint64_t> length = parser_->content_length();
    const std::uint64_t want = length ? *length : std::uint64_t{kBodyReadBytes};
    if (want > buffer_.capacity() - buffer_.size()) {
      buffer_.reserve(buffer_.size() + static_cast<std::size_t>(std::min<std::uint64_t>(
                                           want, buffer_.max_size() - buffer_.size())));
    }
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnBody, shared_from_this()));
  }

  static HttpResponse Overloaded(const std::string& why) {
    HttpResponse r = HttpResponse::Error(503, "overloaded", why + "; retry later");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }

  // An answer decided from the header. The connection stays open only when the request
  // had no body (nothing unread on the wire).
  void Reject(HttpResponse&& r) {
    Send(std::move(r), keep_alive_ && parser_->is_done(), version_);
  }

  void OnReadError(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      return Send(HttpResponse::Error(413, "payload_too_large",
                                      "request body exceeds " +
                                          std::to_string(options_.max_body_bytes) + " bytes"),
                  /*keep_alive=*/false, 11);
    }
    if (ec == http::error::header_limit) {
      return Send(HttpResponse::Error(431, "headers_too_large", "request headers too large"),
                  false, 11);
    }
    if (ec == http::error::buffer_overflow) {  // chunk extensions or trailers
      return Send(HttpResponse::Error(431, "headers_too_large",
                                      "request trailers or chunk extensions too large"),
                  false, 11);
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
      return DoClose();
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category()) {
      return Send(HttpResponse::Error(400, "bad_request", "malformed HTTP request: " + ec.message()),
                  false, 11);
    }
    DoClose();  // timeout, reset, aborted
  }

  void OnBody(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return OnReadError(ec);
    Handle();
  }

  void Handle() {
    request_.body = std::move(parser_->get().body());
    parser_.reset();
    if (!resolved_.offload) {
      return Send(shared_.router->Invoke(resolved_, request_), keep_alive_, version_);
    }
    const bool queued = shared_.pool->TrySubmit([self = shared_from_this()] {
      HttpResponse r = self->shared_.router->Invoke(self->resolved_, self->request_);
      asio::post(self->stream_.get_executor(), [self, r = std::move(r)]() mutable {
        self->Send(std::move(r), self->keep_alive_, self->version_);
      });
    });
    if (!queued) Send(Overloaded("the search pool is full"), keep_alive_, version_);
  }

  void Send(HttpResponse&& r, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>();
    res->version(version);
    res->result(static_cast<unsigned>(r.status));
    res->set(http::field::server, "lattice");
    res->set(http::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) res->set(name, value);
    res->keep_alive(keep_alive);
    res->body() = std::move(r.body);
    res->prepare_payload();
    response_ = res;
    stream_.expires_after(std::chrono::milliseconds(options_.idle_timeout_ms));
    http::async_write(stream_, *res,
                      beast::bind_front_handler(&Session::OnWrite, shared_from_this(),
                                                !keep_alive));
  }

  void OnWrite(bool close, beast::error_code ec, std::size_t /*bytes*/) {
    response_.reset();
    if (ec) return DoClose();
    if (close) return DoLingeringClose();
    DoRead();
  }

  // After an error response, stop sending and drain what the client still sends for a
  // short while, so that closing does not reset the connection before the client has
  // read the response.
  void DoLingeringClose() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::seconds(1));
    Drain();
  }

  void Drain() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) return self->DoClose();
                              self->Drain();
                            });
  }

  void DoClose() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  ServerShared& shared_;
  const HttpServerOptions& options_;  // shared_.options
  const bool reserve_;
  // Bounded by kReadBufferBytes: chunk extensions and trailers cannot grow it.
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  HttpRequest request_;          // the request being served
  Router::Resolved resolved_;    // its route
  bool keep_alive_ = false;
  unsigned version_ = 11;
  std::string remote_address_;
  char drain_[4096];
};

// Accepts connections and starts a Session for each.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& ioc, ServerShared& shared)
      : ioc_(ioc), acceptor_(asio::make_strand(ioc)), retry_timer_(acceptor_.get_executor()),
        shared_(shared) {}

  Status Listen(const tcp::endpoint& endpoint) {
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + shared_.options.address + ":" +
                                 std::to_string(endpoint.port()) + ": " + ec.message());
    }
    return Status::Ok();
  }

  uint16_t port() const {
    beast::error_code ec;
    return acceptor_.local_endpoint(ec).port();
  }

  void Start() { DoAccept(); }

 private:
  void DoAccept() {
    acceptor_.async_accept(asio::make_strand(ioc_),
                           beast::bind_front_handler(&Listener::OnAccept, shared_from_this()));
  }

  void OnAccept(beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // E.g. out of file descriptors: back off instead of spinning.
      std::fprintf(stderr, "lattice http: accept failed: %s\n", ec.message().c_str());
      retry_timer_.expires_after(std::chrono::milliseconds(50));
      retry_timer_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
        if (!wait_ec) self->DoAccept();
      });
      return;
    }
    const HttpServerOptions& o = shared_.options;
    const bool reserve = shared_.connections.load() >= o.max_connections;
    if (reserve && shared_.reserve.load() >= o.reserve_connections) {
      socket.close(ec);  // over the cap and the reserve: shed at once
    } else {
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), shared_, reserve)->Run();
    }
    DoAccept();
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  ServerShared& shared_;
};

// Raises RLIMIT_NOFILE's soft limit to fit the connection cap; returns the cap that fits.
int FitConnectionCap(const HttpServerOptions& o) {
  const rlim_t want = static_cast<rlim_t>(o.max_connections) +
                      static_cast<rlim_t>(o.reserve_connections) + kFdReserve;
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want) {
    return o.max_connections;
  }
  struct rlimit raised = rl;
  raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  if (rl.rlim_cur >= want) return o.max_connections;
  const int fit = std::max<int>(
      1, static_cast<int>(rl.rlim_cur) - o.reserve_connections - kFdReserve);
  std::fprintf(stderr,
               "lattice http: open-file limit %llu is too low for %d connections; "
               "capping connections at %d\n",
               static_cast<unsigned long long>(rl.rlim_cur), o.max_connections, fit);
  return fit;
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions opts)
      : ioc(std::make_unique<asio::io_context>(opts.threads)),
        work(asio::make_work_guard(*ioc)) {
    shared.options = std::move(opts);
  }

  ServerShared shared;
  std::unique_ptr<asio::io_context> ioc;  // reset by Stop: closes every socket
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::shared_ptr<Listener> listener;
  std::vector<std::thread> threads;
  uint16_t port = 0;
  std::mutex stop_mu;
  bool stopped = false;

  void RunIoThread() {
    for (;;) {
      try {
        ioc->run();
        return;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "lattice http: io thread caught: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "lattice http: io thread caught an unknown exception\n");
      }
    }
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                        std::shared_ptr<const Router> router) {
  if (options.threads < 1 || options.work_threads < 1) {
    return Status::InvalidArgument("http server: threads and work_threads must be >= 1, got " +
                                   std::to_string(options.threads) + " and " +
                                   std::to_string(options.work_threads));
  }
  if (options.max_connections < 1 || options.reserve_connections < 0 || options.work_queue < 0) {
    return Status::InvalidArgument(
        "http server: max_connections must be >= 1, reserve_connections and work_queue >= 0");
  }
  if (router == nullptr) return Status::InvalidArgument("http server: router is null");
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(options.address, ec);
  if (ec) {
    return Status::InvalidArgument("http server: bad listen address \"" + options.address +
                                   "\": " + ec.message());
  }
  options.max_connections = FitConnectionCap(options);
  auto impl = std::make_unique<Impl>(std::move(options));
  ServerShared& shared = impl->shared;
  shared.router = std::move(router);
  shared.bound = address;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0) shared.host_name = Lower(host);
  impl->listener = std::make_shared<Listener>(*impl->ioc, shared);
  LATTICE_RETURN_IF_ERROR(impl->listener->Listen(tcp::endpoint(address, shared.options.port)));
  shared.pool = std::make_unique<WorkPool>(shared.options.work_threads, shared.options.work_queue);
  impl->port = impl->listener->port();
  impl->listener->Start();
  for (int i = 0; i < shared.options.threads; ++i) {
    impl->threads.emplace_back([raw = impl.get()] { raw->RunIoThread(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const { return impl_->port; }

int HttpServer::max_connections() const { return impl_->shared.options.max_connections; }

void HttpServer::Stop() {
  if (impl_ == nullptr) return;
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->work.reset();
  impl_->ioc->stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Offloaded handlers still running finish; their responses are posted to the stopped
  // io_context and destroyed with it. Waiting ones are dropped.
  if (impl_->shared.pool != nullptr) impl_->shared.pool->Stop();
  impl_->listener.reset();
  // Destroying the io_context destroys the pending handlers, which own the listener and
  // the sessions: the listening socket and every connection close here.
  impl_->ioc.reset();
}

}  // namespace lattice
