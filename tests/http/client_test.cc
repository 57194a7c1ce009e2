#include "http/client.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "http/server.h"
#include "tests/http/http_test_util.h"
#include "tests/testutil/testutil.h"

namespace lattice::cli {
namespace {

using nlohmann::json;

std::shared_ptr<Router> PeerRouter() {
  auto router = std::make_shared<Router>();
  router->Add("GET", "/peer", [](HttpRequest& req) {
    return HttpResponse::Json(200, {{"peer", req.remote_address}, {"auth", req.authorization}});
  });
  router->Add("GET", "/slow", [](HttpRequest&) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return HttpResponse::Json(200, {});
  });
  return router;
}

// A port nothing listens on: bind an ephemeral one, then close it.
uint16_t UnusedPort() {
  auto server = testing::StartLoopbackServer(std::make_shared<Router>());
  const uint16_t port = server->port();
  server->Stop();
  return port;
}

TEST(HttpClientTest, ConnectionRefusedIsUnavailableWithAHint) {
  const uint16_t port = UnusedPort();
  HttpClient client("127.0.0.1", port);
  auto r = client.Request("GET", "/v1/sweeps");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "cannot reach the coordinator at 127.0.0.1:" +
                                      std::to_string(port) + ": is `lattice cluster` running?");
}

TEST(HttpClientTest, ReusesOneConnectionAndSendsTheToken) {
  auto server = testing::StartLoopbackServer(PeerRouter());
  HttpClient client("127.0.0.1", server->port(), "tok");
  std::string first_peer;
  for (int i = 0; i < 5; ++i) {
    auto r = client.Request("GET", "/peer");
    ASSERT_OK(r);
    const json body = json::parse(r->body);
    EXPECT_EQ(body["auth"], "Bearer tok");
    if (i == 0) first_peer = body["peer"];
    EXPECT_EQ(body["peer"], first_peer);  // same client port: same connection
  }
}

TEST(HttpClientTest, ReconnectsWhenTheServerClosedAnIdleConnection) {
  HttpServerOptions options;
  options.idle_timeout_ms = 50;
  auto server = testing::StartLoopbackServer(PeerRouter(), options);
  HttpClient client("127.0.0.1", server->port());
  auto first = client.Request("GET", "/peer");
  ASSERT_OK(first);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto second = client.Request("GET", "/peer");
  ASSERT_OK(second);
  EXPECT_EQ(second->status, 200);
  EXPECT_NE(json::parse(first->body)["peer"], json::parse(second->body)["peer"]);
}

TEST(HttpClientTest, TimesOut) {
  auto server = testing::StartLoopbackServer(PeerRouter());
  HttpClient client("127.0.0.1", server->port(), "", std::chrono::milliseconds(100));
  auto r = client.Request("GET", "/slow");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto again = client.Request("GET", "/peer");  // a fresh connection after the timeout
  ASSERT_OK(again);
}

TEST(HttpClientTest, UnknownMethodIsInvalidArgument) {
  HttpClient client("127.0.0.1", 1);
  EXPECT_EQ(client.Request("FROB", "/").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace lattice::cli
