#include "http/server.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
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
  Route route;
  route.method = std::move(method);
  route.segments = SplitPath(pattern);
  for (const std::string& s : route.segments) {
    const bool is_param = s.size() >= 2 && s.front() == '{' && s.back() == '}';
    if (!is_param) ++route.literal_segments;
  }
  route.handler = std::move(handler);
  route.mutating = mutating;
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

HttpResponse Router::Dispatch(HttpRequest& request) const {
  const size_t q = request.target.find('?');
  const std::string raw_path = request.target.substr(0, q);
  request.path = PercentDecode(raw_path, false);
  request.query = q == std::string::npos ? std::map<std::string, std::string>{}
                                         : ParseQuery(request.target.substr(q + 1));
  const std::vector<std::string> segments = SplitPath(raw_path);

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
    return HttpResponse::Error(404, "not_found", "no such resource: " + request.path);
  }
  if (best == nullptr) {
    std::string allow;
    for (const std::string& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    HttpResponse r = HttpResponse::Error(
        405, "method_not_allowed", request.method + " is not allowed on " + request.path);
    r.headers.emplace_back("Allow", allow);
    return r;
  }
  if (best->mutating && !Authorized(request.authorization)) {
    HttpResponse r = HttpResponse::Error(
        401, "unauthenticated",
        request.authorization.empty()
            ? "this call needs the API token: send \"Authorization: Bearer <token>\""
            : "wrong API token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
  }
  request.path_params = std::move(best_params);
  try {
    return best->handler(request);
  } catch (const std::exception& e) {
    return HttpResponse::Error(500, "internal", std::string("handler failed: ") + e.what());
  } catch (...) {
    return HttpResponse::Error(500, "internal", "handler failed with an unknown exception");
  }
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

// One connection: read a request, dispatch, write the response, repeat while keep-alive.
// All steps run on the connection's strand (the socket's executor).
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<const Router> router,
          const HttpServerOptions& options)
      : stream_(std::move(socket)), router_(std::move(router)), options_(options) {
    beast::error_code ec;
    const tcp::endpoint peer = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_address_ = peer.address().to_string() + ":" + std::to_string(peer.port());
  }

  void Run() {
    asio::dispatch(stream_.get_executor(),
                   beast::bind_front_handler(&Session::DoRead, shared_from_this()));
  }

 private:
  void DoRead() {
    parser_.emplace();
    parser_->body_limit(options_.max_body_bytes);
    parser_->header_limit(static_cast<std::uint32_t>(options_.max_header_bytes));
    stream_.expires_after(std::chrono::milliseconds(options_.idle_timeout_ms));
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&Session::OnHeader, shared_from_this()));
  }

  // Beast reads at most what the buffer can hold without growing (capacity - size, at
  // least 512 bytes), and a flat_buffer that held only headers never grows: a 700 KB body
  // would take ~1400 recv calls, each a strand dispatch and a timer reset. Before a large
  // body, make room for reads of up to kBodyReadBytes.
  void OnHeader(beast::error_code ec, std::size_t bytes) {
    if (ec || parser_->is_done()) return OnRead(ec, bytes);
    const boost::optional<std::uint64_t> length = parser_->content_length();
    const std::uint64_t want = length ? *length : std::uint64_t{kBodyReadBytes};
    if (want > buffer_.capacity() - buffer_.size()) {
      buffer_.reserve(buffer_.size() + static_cast<std::size_t>(std::min<std::uint64_t>(
                                           want, kBodyReadBytes)));
    }
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::OnRead, shared_from_this()));
  }

  void OnRead(beast::error_code ec, std::size_t /*bytes*/) {
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
    if (ec == http::error::end_of_stream || ec == http::error::partial_message) {
      return DoClose();
    }
    if (ec && ec.category() == http::make_error_code(http::error::bad_target).category()) {
      return Send(HttpResponse::Error(400, "bad_request", "malformed HTTP request: " + ec.message()),
                  false, 11);
    }
    if (ec) return DoClose();  // timeout, reset, aborted
    http::request<http::string_body> req = parser_->release();
    const bool keep_alive = req.keep_alive();
    const unsigned version = req.version();
    HttpRequest request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    request.authorization = std::string(req[http::field::authorization]);
    request.content_type = std::string(req[http::field::content_type]);
    request.remote_address = remote_address_;
    request.body = std::move(req.body());
    Send(router_->Dispatch(request), keep_alive, version);
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
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  std::shared_ptr<const Router> router_;
  std::string remote_address_;
  const HttpServerOptions& options_;  // owned by HttpServer::Impl, outlives the io threads
  char drain_[4096];
};

// Accepts connections and starts a Session for each.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& ioc, std::shared_ptr<const Router> router,
           const HttpServerOptions& options)
      : ioc_(ioc), acceptor_(asio::make_strand(ioc)), retry_timer_(acceptor_.get_executor()),
        router_(std::move(router)), options_(options) {}

  Status Listen(const tcp::endpoint& endpoint) {
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("cannot listen on " + options_.address + ":" +
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
    socket.set_option(tcp::no_delay(true), ec);
    std::make_shared<Session>(std::move(socket), router_, options_)->Run();
    DoAccept();
  }

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  std::shared_ptr<const Router> router_;
  const HttpServerOptions& options_;
};

}  // namespace

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions opts)
      : options(std::move(opts)),
        ioc(std::make_unique<asio::io_context>(options.threads)),
        work(asio::make_work_guard(*ioc)) {}

  HttpServerOptions options;
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
  if (options.threads < 1) {
    return Status::InvalidArgument("http server: threads must be >= 1, got " +
                                   std::to_string(options.threads));
  }
  if (router == nullptr) return Status::InvalidArgument("http server: router is null");
  beast::error_code ec;
  const asio::ip::address address = asio::ip::make_address(options.address, ec);
  if (ec) {
    return Status::InvalidArgument("http server: bad listen address \"" + options.address +
                                   "\": " + ec.message());
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->listener = std::make_shared<Listener>(*impl->ioc, std::move(router), impl->options);
  LATTICE_RETURN_IF_ERROR(impl->listener->Listen(tcp::endpoint(address, impl->options.port)));
  impl->port = impl->listener->port();
  impl->listener->Start();
  for (int i = 0; i < impl->options.threads; ++i) {
    impl->threads.emplace_back([raw = impl.get()] { raw->RunIoThread(); });
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

uint16_t HttpServer::port() const { return impl_->port; }

void HttpServer::Stop() {
  if (impl_ == nullptr) return;
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->work.reset();
  impl_->ioc->stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->listener.reset();
  // Destroying the io_context destroys the pending handlers, which own the listener and
  // the sessions: the listening socket and every connection close here.
  impl_->ioc.reset();
}

}  // namespace lattice
