// Helpers shared by the client commands (cli/commands.cc, cli/submit_command.cc).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "http/client.h"
#include "common/status.h"

namespace lattice::cli::internal {

// Makes `fn(io)` the subcommand's action, with the process's streams; its return value is
// the exit code `main` returns.
template <typename Fn>
void SetRunner(CLI::App* sub, int* exit_code, Fn fn) {
  sub->callback([exit_code, fn] {
    CommandIo io{std::cout, std::cerr, ::isatty(STDERR_FILENO) != 0};
    *exit_code = fn(io);
    std::cout.flush();
  });
}

// Wall clock, ms since the Unix epoch (the coordinator's *_ms fields use the same).
int64_t NowMs();

// Prints "error: <message>" to io.err and returns exit_code.
int PrintError(CommandIo& io, const std::string& message, int exit_code);

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string EncodePathSegment(const std::string& segment);
// "/v1/sweeps/<encoded sweep><suffix>".
std::string SweepTarget(const std::string& sweep, const std::string& suffix);

// A 2xx response's JSON body, or a Status carrying the server's error message: 400 →
// InvalidArgument, 401 → Unauthenticated, 404 → NotFound, 409 → FailedPrecondition,
// 503 → Unavailable, others → Internal. Transport errors pass through (Unavailable).
StatusOr<nlohmann::json> ParseResponse(const StatusOr<ClientResponse>& response);
StatusOr<nlohmann::json> CallJson(HttpClient& client, const std::string& method,
                                  const std::string& target, const std::string& body,
                                  const std::string& content_type);

// Every trial of `sweep` (GET /v1/sweeps/{id}/trials page after page, following
// "next_after"; a server without pages answers all in one): the first page's body with
// "trials" holding them all, ascending index.
StatusOr<nlohmann::json> FetchAllTrials(HttpClient& client, const std::string& sweep);

// j[key] when j is an object and j[key] has the type, else `fallback` (never throws).
std::string StringField(const nlohmann::json& j, const char* key, const std::string& fallback = "");
int64_t IntField(const nlohmann::json& j, const char* key, int64_t fallback = 0);

std::unique_ptr<HttpClient> MakeClient(const ClientOptions& options, const std::string& token);

// Adds --host, --port (env LATTICE_PORT; else the port in <data-dir>/coordinator.json,
// else 7070) and --data-dir to a client subcommand.
void AddCommonOptions(CLI::App* sub, ClientOptions* options);

}  // namespace lattice::cli::internal
