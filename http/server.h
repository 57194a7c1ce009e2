// A small HTTP/1.1 server on Boost.Beast + Asio, and the Router that maps requests to
// handlers. Transport only: the coordinator registers the /v1/... routes on a Router and
// starts one HttpServer with it.
//
// Threading model
//   * HttpServer owns one io_context run by `HttpServerOptions::threads` io threads.
//     Accept, read, write and the handlers all run on those threads; no thread is created
//     per connection or per request.
//   * Every connection has its own strand, so the steps of one connection never run
//     concurrently; different connections run in parallel on different io threads.
//   * Handlers therefore run concurrently with each other and must be thread-safe. A
//     handler blocks its io thread while it runs: keep it short (hand long work to
//     another thread and answer 202) or register it with RouteOptions::offload.
//   * Offloaded routes (index search) run on a bounded work pool of
//     `HttpServerOptions::work_threads` threads with at most `work_queue` requests
//     waiting; when the pool is full the request is answered 503 "overloaded" with
//     "Retry-After: 1" at once. The io threads therefore stay free for /healthz and the
//     control routes however heavy the searches are. The response is written back on the
//     connection's strand.
//   * The Router is immutable while a server uses it (it is shared as
//     `std::shared_ptr<const Router>`): register every route and call SetToken before
//     HttpServer::Start.
//
// Protocol
//   * HTTP/1.1 keep-alive (and HTTP/1.0 with "Connection: keep-alive"); pipelined
//     requests are answered in order. TCP_NODELAY is set on every accepted socket.
//   * The header is read and checked before the body: Host (below), route, method and
//     token are decided from the header alone, so an unauthenticated or misrouted request
//     is answered (and its connection closed if it has a body) without reading its body.
//   * Malformed HTTP → 400 and close; headers over `max_header_bytes` → 431 and close;
//     body over `max_body_bytes` → 413 and close (chunked bodies too); the header, a
//     chunk header with its extensions and the trailers must each fit the connection's
//     64 KiB read buffer, over it → 431 and close; an exception thrown by a handler → 500 {"error":{"code":"internal",...}}
//     whose message does not carry the exception text (that goes to stderr); the process
//     never crashes on a request.
//   * DNS-rebinding protection: a request whose Host header names neither the bound
//     address, a loopback address / "localhost", this machine's host name, nor an entry
//     of `allowed_hosts` is answered 403 "forbidden_host". When bound to 0.0.0.0 / ::,
//     any IP-literal Host is accepted (rebinding needs a name). A request without Host
//     (HTTP/1.0) is accepted.
//   * Connections: at most `max_connections` at once. Beyond that, up to
//     `reserve_connections` more are accepted to answer one request each: GET on a
//     `priority_paths` entry (/healthz) is served, anything else gets 503 "overloaded" +
//     "Retry-After: 1"; both then close. Beyond that, new connections are closed at once.
//     Start raises RLIMIT_NOFILE's soft limit to fit max_connections + reserve_connections
//     + 256 descriptors for the rest of the process, and lowers max_connections (with a
//     message on stderr) when the hard limit does not allow it.
//   * Error bodies are always {"error": {"code": ..., "message": ...}}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace lattice {

// One parsed request, as a handler sees it.
struct HttpRequest {
  std::string method;  // "GET", "POST", ... (upper case, as sent)
  std::string target;  // raw request target: "/v1/sweeps?state=running"
  std::string path;    // percent-decoded path without the query: "/v1/sweeps"
  std::map<std::string, std::string> query;  // decoded query parameters ('+' → ' ')
  std::string body;
  std::string authorization;  // raw "Authorization" header value, "" when absent
  std::map<std::string, std::string> path_params;  // {"id": "s3"} for "/v1/sweeps/{id}"
  std::string content_type;    // raw "Content-Type" header value, "" when absent
  std::string remote_address;  // peer "ip:port" (for logs), "" when unknown
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra response headers (e.g. {"Allow", "GET, POST"}). Content-Type, Content-Length,
  // Connection and Server are set by the server.
  std::vector<std::pair<std::string, std::string>> headers;

  // `body` serialized with nlohmann::json::dump().
  static HttpResponse Json(int status, const nlohmann::json& body);
  // Plain text (e.g. Prometheus exposition), with the given content type.
  static HttpResponse Text(int status, std::string body,
                           std::string content_type = "text/plain; charset=utf-8");
  // {"error": {"code": code, "message": message}} with the given status.
  static HttpResponse Error(int status, const std::string& code, const std::string& message);
  // Maps a non-OK Status to the matching HTTP error (InvalidArgument → 400 "invalid_argument",
  // NotFound → 404, AlreadyExists → 409, FailedPrecondition → 409, Unauthenticated → 401,
  // Cancelled → 409, Unavailable → 503, IoError / Internal → 500).
  static HttpResponse FromStatus(const Status& status);
};

using HttpHandler = std::function<HttpResponse(HttpRequest& request)>;

// Maps (method, path pattern) to handlers.
//
// Patterns are '/'-separated; a segment "{name}" matches any one non-empty segment and
// its percent-decoded value lands in request.path_params["name"]. Empty segments are
// ignored, so "/v1/sweeps/" matches "/v1/sweeps". When several patterns match, the one
// with the most literal segments wins ("/v1/indexes/stats" beats "/v1/indexes/{name}"),
// then the first added.
//
// Dispatch:
//   1. no pattern matches the path                → 404 "not_found"
//   2. patterns match but none for the method     → 405 "method_not_allowed" + Allow header
//   3. route is authenticated (every mutating route, and reads registered with
//      RouteOptions::authenticated) and the Authorization header is not exactly
//      "Bearer <token>" (compared in constant time) → 401 "unauthenticated"; a server
//      with no token set refuses every authenticated call (fails closed)
//   4. otherwise the handler's response; an exception thrown by the handler → 500
//      (message without the exception text, which is written to stderr).
// Resolve does steps 1-3 from the request line and headers alone (the server calls it
// before reading the body); Invoke does step 4; Dispatch is both.
//
// Thread-safety: Add and SetToken are not thread-safe and must happen before the router
// is shared with a server; Dispatch is const and safe to call concurrently.
struct RouteOptions {
  // Needs "Authorization: Bearer <token>". Every mutating route; also reads that hand out
  // stored data (checkpoint downloads). Default: false.
  bool authenticated = false;
  // Runs on the server's bounded work pool instead of an io thread (long CPU work such as
  // index search); 503 + Retry-After when the pool is full. Default: false.
  bool offload = false;
};

class Router {
 public:
  // `mutating` = RouteOptions{.authenticated = mutating}.
  void Add(std::string method, std::string pattern, HttpHandler handler, bool mutating = false);
  void Add(std::string method, std::string pattern, HttpHandler handler, RouteOptions options);
  void SetToken(std::string token);
  HttpResponse Dispatch(HttpRequest& request) const;

  // Steps 1-3 above. Reads request.method, target and authorization; sets request.path,
  // query and (when a route matched) path_params.
  struct Resolved {
    bool ok = false;        // false: answer `error`, run no handler
    HttpResponse error;     // when !ok
    bool offload = false;   // the route's RouteOptions::offload
    size_t route = 0;       // internal: the matched route
  };
  Resolved Resolve(HttpRequest& request) const;
  // Step 4 for a Resolved with ok == true.
  HttpResponse Invoke(const Resolved& resolved, HttpRequest& request) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    int literal_segments = 0;
    HttpHandler handler;
    RouteOptions options;
  };
  static bool Match(const Route& route, const std::vector<std::string>& segments,
                    std::map<std::string, std::string>* params);
  bool Authorized(const std::string& authorization) const;

  std::vector<Route> routes_;
  std::string token_;
};

struct HttpServerOptions {
  // Address to bind (IPv4 or IPv6 literal). Default: "127.0.0.1" (loopback only).
  std::string address = "127.0.0.1";
  // TCP port; 0 picks a free ephemeral port, read it back with HttpServer::port().
  // Default: 7070.
  uint16_t port = 7070;
  // Number of io threads that run accept/read/write and the handlers. Default: 2.
  int threads = 2;
  // Largest request body, in bytes; a larger one is answered 413 and the connection
  // closed. Default: 64 MiB.
  size_t max_body_bytes = size_t{64} << 20;
  // Largest request line + headers, in bytes; larger → 431. At most 64 KiB in effect
  // (the read buffer). Default: 64 KiB.
  size_t max_header_bytes = size_t{64} << 10;
  // A connection that neither completes a request nor takes a response within this
  // time, in milliseconds, is closed (covers idle keep-alive connections and slow
  // clients). Default: 60000 (60 s).
  int idle_timeout_ms = 60000;
  // Threads of the work pool that runs RouteOptions::offload routes. Default: 2.
  int work_threads = 2;
  // Offloaded requests that may wait for a work thread; more → 503. Default: 16.
  int work_queue = 16;
  // Most connections open at once (see Protocol). Default: 1024.
  int max_connections = 1024;
  // Extra connections accepted at the cap to answer priority_paths or 503. Default: 32.
  int reserve_connections = 32;
  // Paths served (GET) on reserve connections. Default: {"/healthz"}.
  std::vector<std::string> priority_paths = {"/healthz"};
  // Host names (no port) accepted besides the bound address, loopback, "localhost" and
  // this machine's host name; "*" turns the Host check off. Default: empty.
  std::vector<std::string> allowed_hosts;
};

// A running server. Start binds and listens before it returns, so a client may connect
// as soon as Start returns OK.
//
// Lifetime: Stop (or the destructor) closes the listener and every connection, and joins
// the io threads; requests in flight are abandoned. Stop must not be called from a
// handler (it joins the thread the handler runs on).
class HttpServer {
 public:
  // Errors: InvalidArgument for a bad address or thread count; Unavailable when the
  // address cannot be bound ("cannot listen on 127.0.0.1:7070: Address already in use").
  static StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                     std::shared_ptr<const Router> router);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the chosen one when options.port was 0).
  uint16_t port() const;
  // The connection cap in force (options.max_connections, possibly lowered by Start).
  int max_connections() const;
  // Idempotent; thread-safe except from a handler.
  void Stop();

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Percent-decodes `text` ("%2F" → "/"); with `plus_as_space`, '+' → ' ' (query strings).
// Invalid escapes are kept verbatim.
std::string PercentDecode(const std::string& text, bool plus_as_space);

}  // namespace lattice
