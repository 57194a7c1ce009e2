// A small synchronous HTTP/1.1 client (Boost.Beast) for the coordinator's API.
//
// One HttpClient holds at most one connection and reuses it across requests
// (keep-alive). When a reused connection turns out to have been closed by the server
// before it answered (the usual idle keep-alive race), the request is sent once more on
// a fresh connection.
//
// Thread-safety: not thread-safe; use one HttpClient per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"

namespace lattice::cli {

struct ClientResponse {
  int status = 0;            // HTTP status code
  std::string content_type;  // "" when the server sent none
  std::string body;
};

class HttpClient {
 public:
  // `token`, when non-empty, is sent as "Authorization: Bearer <token>" on every request.
  // `timeout` bounds each of connect, send and receive of one request.
  HttpClient(std::string host, uint16_t port, std::string token = "",
             std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request and returns the response, whatever its status code (a 404 is an OK
  // StatusOr holding status 404). `content_type` is sent only with a non-empty body.
  // Errors:
  //   Unavailable  — cannot connect ("cannot reach the coordinator at 127.0.0.1:7070: is
  //                  `lattice cluster` running?"), timeout, or the connection broke;
  //   InvalidArgument — unknown method.
  StatusOr<ClientResponse> Request(const std::string& method, const std::string& target,
                                   const std::string& body = "",
                                   const std::string& content_type = "application/json");

  // "host:port", as used in error messages.
  std::string address() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace lattice::cli
