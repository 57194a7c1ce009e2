#include "store/qrels.h"

#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/internal/vector_index_util.h"

namespace lattice::store {
namespace {

using nlohmann::json;

std::string Quote(const std::string& s) { return "'" + s + "'"; }

StatusOr<Qrels> ParseTrec(const std::string& text, const std::string& source) {
  Qrels out;
  // (query, item) -> line of its first judgment, to name duplicates.
  std::map<std::pair<std::string, std::string>, int64_t> first_line;
  std::istringstream in(text);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; fields >> field;) f.push_back(field);
    if (f.empty() || f[0][0] == '#') continue;
    const std::string at = source + ": line " + std::to_string(line_no) + ": ";
    if (f.size() != 4) {
      return Status::InvalidArgument(at + "expected 4 fields (qid iteration docid grade), got " +
                                     std::to_string(f.size()));
    }
    int grade = 0;
    const std::string& g = f[3];
    const auto [end, ec] = std::from_chars(g.data() + (g[0] == '+'), g.data() + g.size(), grade);
    if (ec != std::errc() || end != g.data() + g.size()) {
      return Status::InvalidArgument(at + "grade " + Quote(g) + " is not an integer");
    }
    const auto [it, fresh] = first_line.emplace(std::make_pair(f[0], f[2]), line_no);
    if (!fresh) {
      return Status::InvalidArgument(at + "duplicate judgment of query " + Quote(f[0]) +
                                     ", item " + Quote(f[2]) + " (first at line " +
                                     std::to_string(it->second) + ")");
    }
    out.judgments[f[0]][f[2]] = grade;
  }
  return out;
}

StatusOr<Qrels> ParseJson(const std::string& text, const std::string& source) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(source + ": malformed JSON: " + e.what());
  }
  if (!doc.is_object()) {
    return Status::InvalidArgument(source + ": expected an object {qid: {docid: grade}}, got " +
                                   std::string(doc.type_name()));
  }
  Qrels out;
  for (const auto& [qid, items] : doc.items()) {
    const std::string at = source + ": query " + Quote(qid);
    if (!items.is_object()) {
      return Status::InvalidArgument(at + ": expected an object {docid: grade}, got " +
                                     std::string(items.type_name()));
    }
    auto& judged = out.judgments[qid];
    for (const auto& [docid, grade] : items.items()) {
      const std::string item_at = at + ": item " + Quote(docid);
      if (grade.is_number_float()) {
        const double d = grade.get<double>();
        if (std::trunc(d) != d || std::fabs(d) > 1e9) {
          return Status::InvalidArgument(item_at + ": grade must be an integer, got " +
                                         grade.dump());
        }
        judged[docid] = static_cast<int>(d);
      } else if (grade.is_number_integer()) {
        const int64_t v = grade.get<int64_t>();
        if (v > 1000000000 || v < -1000000000) {
          return Status::InvalidArgument(item_at + ": grade " + grade.dump() + " is out of range");
        }
        judged[docid] = static_cast<int>(v);
      } else {
        return Status::InvalidArgument(item_at + ": grade must be an integer, got " +
                                       std::string(grade.type_name()));
      }
    }
  }
  return out;
}

}  // namespace

size_t Qrels::size() const {
  size_t n = 0;
  for (const auto& [qid, items] : judgments) n += items.size();
  return n;
}

StatusOr<Qrels> ParseQrels(const std::string& text, const std::string& source) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  StatusOr<Qrels> out = first != std::string::npos && text[first] == '{'
                            ? ParseJson(text, source)
                            : ParseTrec(text, source);
  if (out.ok() && out->size() == 0) {
    return Status::InvalidArgument(source + ": no judgments");
  }
  return out;
}

StatusOr<Qrels> ReadQrelsFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return Status::InvalidArgument(path + ": is a directory, expected a qrels file");
  }
  LATTICE_ASSIGN_OR_RETURN(std::string text, internal::ReadWholeFile(path));
  return ParseQrels(text, path);
}

}  // namespace lattice::store
