// Helpers for the HTTP tests: a server on an ephemeral loopback port and raw sockets.
#pragma once

#include <memory>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "http/server.h"
#include "tests/testutil/testutil.h"

namespace lattice::testing {

inline std::unique_ptr<HttpServer> StartLoopbackServer(std::shared_ptr<const Router> router,
                                                       HttpServerOptions options = {}) {
  options.address = "127.0.0.1";
  options.port = 0;
  StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(options, std::move(router));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(server).value() : nullptr;
}

// A blocking loopback TCP connection for sending hand-written bytes.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) : socket_(ioc_) {
    socket_.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  }
  void Send(const std::string& bytes) { boost::asio::write(socket_, boost::asio::buffer(bytes)); }
  // Reads until the server closes the connection.
  std::string ReadToEof() {
    std::string out;
    boost::system::error_code ec;
    boost::asio::read(socket_, boost::asio::dynamic_buffer(out), ec);
    return out;
  }
  boost::asio::ip::tcp::socket& socket() { return socket_; }

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
};

}  // namespace lattice::testing
