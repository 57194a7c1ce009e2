#include "scheduler/sweep_routes.h"

#include <gtest/gtest.h>

#include <prometheus/registry.h>

#include <string>

namespace lattice {
namespace {

// What POST /v1/sweeps answers for hostile spec bodies found by the fuzz campaign (issue
// 9): a 400 with a message, never a crash or a 500. The spec is rejected before the
// coordinator or the store is used, so neither is needed here.
class SweepRoutesTest : public ::testing::Test {
 protected:
  HttpResponse Post(const std::string& body) {
    HttpRequest req;
    req.method = "POST";
    req.target = req.path = "/v1/sweeps";
    req.authorization = "Bearer t0ken";
    req.body = body;
    return router_->Dispatch(req);
  }
  void ExpectBadRequest(const std::string& body, const std::string& needle) {
    HttpResponse r = Post(body);
    EXPECT_EQ(r.status, 400) << r.body;
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j["error"]["code"], "invalid_argument") << r.body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos)
        << r.body;
  }

  prometheus::Registry registry_;
  std::shared_ptr<Router> router_ = MakeApiRouter(nullptr, nullptr, &registry_, "t0ken");
};

TEST_F(SweepRoutesTest, HostileSpecsAreBadRequests) {
  ExpectBadRequest("&a [*a]\n", "recursive alias");
  ExpectBadRequest("name: n\nkind: noop\na: &a {b: *a}\n", "a.b: alias refers to");
  ExpectBadRequest("name: n\xff\nkind: noop\n", "invalid UTF-8 at byte 7");
  ExpectBadRequest("name: \"\xc3\"\nkind: noop\n", "invalid UTF-8");
  ExpectBadRequest("name: n\nkind: noop\nsleep_ms: " + std::string(3000, '[') +
                       std::string(3000, ']') + "\n",
                   "nesting deeper than 64 levels");
  ExpectBadRequest("{\"name\": \"n\\ud83d\\ude00\", \"kind\": \"noop\"}", "name: must match");
}

}  // namespace
}  // namespace lattice
