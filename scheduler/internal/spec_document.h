// Spec documents: the text of a sweep spec (YAML or JSON) -> an ordered JSON value, within
// the limits of sweep_spec.h (kMaxSpecValues, kMaxSpecDepth, kMaxSpecKeysPerMapping).
//
// Protocol of ParseSpecDocument:
//   1. The text must be valid UTF-8 ("spec: invalid UTF-8 at byte 12").
//   2. Text that is a JSON object (first character '{' and nlohmann::json accepts all of
//      it) is read by nlohmann::json: YAML 1.2 reads the same JSON, but yaml-cpp rejects
//      surrogate-pair escapes such as "\ud83d\ude00". Integers stay integers (above
//      INT64_MAX: floats, as in YAML).
//   3. Anything else is YAML (yaml-cpp). Aliases are expanded while converting; an alias
//      inside the node it names ("&a [*a]") is rejected, as is every limit below, and a
//      scalar or key that is not valid UTF-8 once escapes are applied (yaml-cpp writes
//      "\N" and "\_" as single Latin-1 bytes).
//   4. Both paths count every value (mapping, list, scalar; keys do not count), the
//      nesting of mappings and lists, and the keys of each mapping, and stop at the first
//      limit passed, so no input costs more than the limits allow. Duplicate keys and
//      non-finite numbers (.nan, .inf: a spec is stored as JSON) are rejected.
// Errors: InvalidArgument, message starting with the key path or "spec:".
//
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace lattice::scheduler::internal {

StatusOr<nlohmann::ordered_json> ParseSpecDocument(const std::string& text);

// OK iff `text` is well-formed UTF-8 (no overlong forms, surrogates or code points above
// U+10FFFF). Error: "spec: invalid UTF-8 at byte N" (0-based offset).
Status CheckUtf8(const std::string& text);

// Values in `v` as the limits count them: every mapping, list and scalar is one.
int64_t CountSpecValues(const nlohmann::json& v);

}  // namespace lattice::scheduler::internal
