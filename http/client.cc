#include "http/client.h"

#include <limits>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace lattice::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// Each blocking step is an async Beast operation run to completion on a private
// io_context, so that tcp_stream's timer bounds it (Beast's sync calls have no timeout).
struct HttpClient::Impl {
  Impl(std::string h, uint16_t p, std::string t, std::chrono::milliseconds to)
      : host(std::move(h)), port(p), token(std::move(t)), timeout(to), stream(ioc) {}

  std::string host;
  uint16_t port;
  std::string token;
  std::chrono::milliseconds timeout;
  asio::io_context ioc;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool connected = false;

  std::string Address() const { return host + ":" + std::to_string(port); }

  // Runs the io_context until the pending operation completes.
  void RunPending() {
    ioc.restart();
    ioc.run();
  }

  void Close() {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
    buffer.clear();
    connected = false;
  }

  Status TransportError(const char* what, const beast::error_code& ec) const {
    if (ec == beast::error::timeout) {
      return Status::Unavailable("timed out after " + std::to_string(timeout.count()) +
                                 " ms " + what + " the coordinator at " + Address());
    }
    return Status::Unavailable(std::string("connection to the coordinator at ") + Address() +
                               " failed while " + what + ": " + ec.message());
  }

  Status Connect() {
    tcp::resolver resolver(ioc);
    beast::error_code ec;
    const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
    if (ec) {
      return Status::Unavailable("cannot resolve the coordinator host \"" + host +
                                 "\": " + ec.message());
    }
    stream.expires_after(timeout);
    stream.async_connect(endpoints, [&ec](beast::error_code e, const tcp::endpoint&) { ec = e; });
    RunPending();
    if (ec) {
      Close();
      const std::string reason =
          ec == asio::error::connection_refused ? "" : " (" + ec.message() + ")";
      return Status::Unavailable("cannot reach the coordinator at " + Address() + reason +
                                 ": is `lattice cluster` running?");
    }
    beast::error_code opt_ec;
    stream.socket().set_option(tcp::no_delay(true), opt_ec);
    connected = true;
    return Status::Ok();
  }

  // True for the errors of a connection the server closed before it read the request.
  static bool ClosedByPeer(const beast::error_code& ec) {
    return ec == http::error::end_of_stream || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::broken_pipe;
  }

  // One exchange on the current connection. `*retryable` is set when the connection
  // turned out closed by the peer before any response byte arrived.
  StatusOr<ClientResponse> Exchange(const http::request<http::string_body>& req,
                                    bool* retryable) {
    *retryable = false;
    beast::error_code ec;
    stream.expires_after(timeout);
    http::async_write(stream, req, [&ec](beast::error_code e, std::size_t) { ec = e; });
    RunPending();
    if (ec) {
      *retryable = ClosedByPeer(ec);
      return TransportError("sending to", ec);
    }

    http::response_parser<http::string_body> parser;
    parser.body_limit((std::numeric_limits<std::uint64_t>::max)());
    stream.expires_after(timeout);
    http::async_read(stream, buffer, parser, [&ec](beast::error_code e, std::size_t) { ec = e; });
    RunPending();
    if (ec) {
      *retryable = !parser.got_some() && ClosedByPeer(ec);
      return TransportError("reading from", ec);
    }

    http::response<http::string_body> res = parser.release();
    ClientResponse out;
    out.status = static_cast<int>(res.result_int());
    out.content_type = std::string(res[http::field::content_type]);
    out.body = std::move(res.body());
    if (!res.keep_alive()) Close();
    return out;
  }
};

HttpClient::HttpClient(std::string host, uint16_t port, std::string token,
                       std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>(std::move(host), port, std::move(token), timeout)) {}

HttpClient::~HttpClient() { impl_->Close(); }

std::string HttpClient::address() const { return impl_->Address(); }

StatusOr<ClientResponse> HttpClient::Request(const std::string& method,
                                             const std::string& target,
                                             const std::string& body,
                                             const std::string& content_type) {
  const http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) {
    return Status::InvalidArgument("unknown HTTP method \"" + method + "\"");
  }
  http::request<http::string_body> req(verb, target, 11);
  req.set(http::field::host, impl_->Address());
  req.set(http::field::user_agent, "lattice-cli");
  if (!impl_->token.empty()) req.set(http::field::authorization, "Bearer " + impl_->token);
  if (!body.empty()) req.set(http::field::content_type, content_type);
  req.body() = body;
  req.keep_alive(true);
  req.prepare_payload();

  for (int attempt = 0;; ++attempt) {
    const bool reused = impl_->connected;
    if (!impl_->connected) LATTICE_RETURN_IF_ERROR(impl_->Connect());
    bool retryable = false;
    StatusOr<ClientResponse> res = impl_->Exchange(req, &retryable);
    if (res.ok()) return res;
    impl_->Close();
    // A kept-alive connection the server had closed while idle: nothing was processed.
    if (!reused || !retryable || attempt > 0) return res.status();
  }
}

}  // namespace lattice::cli
