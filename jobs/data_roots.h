// Where job input files (dataset and corpus files named in specs) may be read from.
// Issue 9: a spec could name any readable file (/etc/passwd, the API token) and the
// trial error then showed its first bytes to anyone who can read trials.
//
// A path is allowed when, after resolving symlinks and "..", it lies under one of the
// allowed roots and under none of the denied ones (the coordinator's data directory,
// which holds the token). Until SetDataRoots is called every path is allowed (library
// use and unit tests); `lattice cluster` calls it on every rank before any job runs.
//
// Thread-safety: SetDataRoots must happen before jobs run (it is not synchronised with
// CheckDataPath); CheckDataPath is safe to call concurrently afterwards.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace lattice::jobs {

// `allowed`: directories (made absolute and canonical here); empty = the current working
// directory. `denied`: directories never readable, even inside an allowed one.
// Errors: InvalidArgument when an allowed root does not exist or is not a directory.
Status SetDataRoots(const std::vector<std::string>& allowed,
                    const std::vector<std::string>& denied);

// Ok, or InvalidArgument "<path>: outside the allowed data roots (lattice cluster
// --data-roots)" — the message never shows the resolved absolute path or file content.
Status CheckDataPath(const std::string& path);

}  // namespace lattice::jobs
