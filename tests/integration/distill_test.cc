// The distillation examples end to end on a real `mpirun -np 3` cluster (Fashion-MNIST):
// examples/fashion-mnist-teacher.yaml trains the teacher, examples/distill-fmnist.yaml
// distils it (teacher named by its sweep's name) into a student with under a quarter of
// its parameters, examples/distill-ab.yaml sweeps temperature x alpha x width.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/integration/cluster_fixture.h"
#include "tests/testutil/cluster.h"

namespace lattice {
namespace {

using nlohmann::json;

class DistillTest : public testutil::ClusterFixture {
 protected:
  static std::string Example(const std::string& name) {
    std::ifstream in(testutil::SourceDir() + "/examples/" + name);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Submits an example and waits for it; returns its trials.
  json Run(const std::string& example) {
    json sweep = Call("POST", "/v1/sweeps", Example(example), 201);
    sweep = WaitForSweep(sweep["id"], std::chrono::seconds(600));
    EXPECT_EQ(sweep["state"], "completed") << sweep.dump(2) << cluster_->Log();
    return Call("GET", "/v1/sweeps/" + sweep["id"].get<std::string>() + "/trials")["trials"];
  }

  // The trial's stored checkpoints (the listing also shows the pruned ones).
  json Kept(const std::string& trial) {
    json kept = json::array();
    const json listed = Call("GET", "/v1/trials/" + trial + "/checkpoints");  // outlives the loop
    for (const auto& c : listed["checkpoints"]) {
      if (c["state"] == "kept") kept.push_back(c);
    }
    return kept;
  }
};

TEST_F(DistillTest, TeacherThenStudentThenAbSweep) {
  StartCluster();
  json teacher = Run("fashion-mnist-teacher.yaml");
  ASSERT_EQ(teacher.size(), 1u);
  const std::string teacher_id = teacher[0]["id"];
  const double teacher_accuracy = teacher[0]["metrics"]["val_accuracy"];
  ASSERT_GT(teacher_accuracy, 0.8);

  json student = Run("distill-fmnist.yaml");
  ASSERT_EQ(student.size(), 1u);
  const json& m = student[0]["metrics"];
  std::printf("[ info ] teacher %s %.4f (%g params) -> student %.4f (%g params), agreement %.4f\n",
              teacher_id.c_str(), teacher_accuracy, m["teacher_params"].get<double>(),
              m["val_accuracy"].get<double>(), m["student_params"].get<double>(),
              m["agreement"].get<double>());
  // The teacher's name was resolved at submit to its trial; on the same validation files it
  // scores exactly what its own trial reported.
  EXPECT_EQ(student[0]["config"]["teacher"]["trial"], teacher_id);
  EXPECT_DOUBLE_EQ(m["teacher_val_accuracy"].get<double>(), teacher_accuracy);
  EXPECT_LE(4 * m["student_params"].get<double>(), m["teacher_params"].get<double>());
  EXPECT_GE(m["val_accuracy"].get<double>(), 0.95 * teacher_accuracy);
  EXPECT_GT(student[0]["checkpoint_bytes"].get<int64_t>(), 0) << "the student keeps its weights";
  json epochs = Call("GET", "/v1/trials/" + student[0]["id"].get<std::string>() + "/metrics");
  ASSERT_FALSE(epochs["epochs"].empty()) << epochs.dump();
  EXPECT_TRUE(epochs["epochs"][0]["values"].contains("agreement")) << epochs.dump();
  EXPECT_TRUE(epochs["epochs"][0]["values"].contains("lr")) << epochs.dump();

  json ab = Run("distill-ab.yaml");
  ASSERT_EQ(ab.size(), 12u);
  for (const auto& t : ab) {
    EXPECT_EQ(t["state"], "completed") << t.dump();
    EXPECT_DOUBLE_EQ(t["metrics"]["teacher_val_accuracy"].get<double>(), teacher_accuracy);
    EXPECT_GT(t["metrics"]["agreement"].get<double>(), 0.5) << t.dump();
  }

  // A teacher that does not exist is a 400 naming the key, and nothing is stored.
  std::string bad = Example("distill-fmnist.yaml");
  bad.replace(bad.find("trial: fmnist-teacher"), 21, "trial: no-such-sweep");
  json err = Call("POST", "/v1/sweeps", bad, 400);
  EXPECT_NE(err.dump().find("teacher.trial"), std::string::npos) << err.dump();
}

std::string Spec(const std::string& name, const std::string& rest) {
  const std::string dir = "/usr/share/datasets/fashion-mnist/";
  return "name: " + name + "\n" + rest +
         "dataset: {format: idx, images: " + dir + "train-images-idx3-ubyte.gz, labels: " + dir +
         "train-labels-idx1-ubyte.gz, scale: 0.00392156862745098, standardize: true, "
         "limit: 20000}\n";
}

// A distill trial whose student is the user's TorchScript module (tests/jobs/fixtures/
// make_torchscript_model.py's student.pt: 784 -> 32 -> 10, input [B, 1, 28, 28]), under a
// quarter of the teacher's parameters: it reaches >= 95 % of the teacher's validation
// accuracy, and the downloaded checkpoint is the trained module in Debian's python3-torch.
// Bad modules: a missing file or one outside --data-roots is a 400 at submit (nothing
// stored); a file that is no module fails its trial once, permanently, naming model.path.
TEST_F(DistillTest, TorchScriptStudent) {
  const std::string fixtures = dir_.Join("fixtures");
  ASSERT_EQ(std::system(("/usr/bin/python3 " + testutil::SourceDir() +
                         "/tests/jobs/fixtures/make_torchscript_model.py make " + fixtures)
                            .c_str()),
            0);
  StartCluster();
  json teacher = Call("POST", "/v1/sweeps",
                      Spec("ts-teacher", "kind: train\nseed: 1\nmodel: {type: mlp, hidden: [256, 128]}\n"
                                         "train: {epochs: 4, batch_size: 64, threads: 1}\n"
                                         "search: {method: grid, parameters: {seed: [1]}}\n"),
                      201);
  json teacher_done = WaitForSweep(teacher["id"], std::chrono::seconds(600));
  ASSERT_EQ(teacher_done["state"], "completed") << teacher_done.dump(2) << cluster_->Log();
  json teacher_trials = Call("GET", "/v1/sweeps/" + teacher["id"].get<std::string>() + "/trials");
  const double teacher_accuracy = teacher_trials["trials"][0]["metrics"]["val_accuracy"];
  const std::string student_model = "model: {type: torchscript, path: " + fixtures +
                                    "/student.pt, input_shape: [1, 28, 28]}\n";
  const std::string distill = "kind: distill\nseed: 2\nteacher: {type: trial, trial: ts-teacher}\n"
                              "train: {epochs: 4, batch_size: 64, lr: 2.0e-3, threads: 1}\n";
  json sweep = Call("POST", "/v1/sweeps", Spec("ts-student", distill + student_model), 201);
  json done = WaitForSweep(sweep["id"], std::chrono::seconds(600));
  ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
  const std::string trial = sweep["id"].get<std::string>() + "-t0";
  json t = Call("GET", "/v1/trials/" + trial);
  const json& m = t["metrics"];
  std::printf("[ info ] teacher %.4f (%g params) -> TorchScript student %.4f (%g params)\n",
              teacher_accuracy, m["teacher_params"].get<double>(), m["val_accuracy"].get<double>(),
              m["student_params"].get<double>());
  EXPECT_DOUBLE_EQ(m["teacher_val_accuracy"].get<double>(), teacher_accuracy);
  EXPECT_LE(4 * m["student_params"].get<double>(), m["teacher_params"].get<double>());
  EXPECT_GE(m["val_accuracy"].get<double>(), 0.95 * teacher_accuracy);

  const std::string pt = dir_.Join("student-trained.pt");
  std::string out;
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " checkpoint download " + trial +
                                     " -o " + pt + " --data-dir " + DataDir(),
                                 &out),
            0)
      << out;
  const std::string check =
      "import json, torch\n"
      "files = {'lattice.json': ''}\n"
      "m = torch.jit.load('" + pt + "', _extra_files=files)\n"
      "info = json.loads(files['lattice.json'])\n"
      "y = m(torch.rand(5, *info['input_shape']))\n"
      "assert tuple(y.shape) == (5, 10), y.shape\n"
      "assert not m.training\n"
      "print(sum(p.numel() for p in m.parameters()), len(info['input_mean']))\n";
  std::ofstream(dir_.Join("check.py")) << check;
  ASSERT_EQ(testutil::RunCommand("/usr/bin/python3 " + dir_.Join("check.py"), &out), 0) << out;
  EXPECT_NE(out.find("25450 784"), std::string::npos) << out;

  // Refused at submit, nothing stored.
  const size_t sweeps = Call("GET", "/v1/sweeps")["sweeps"].size();
  json err = Call("POST", "/v1/sweeps",
                  Spec("ts-missing", distill + "model: {type: torchscript, path: " + fixtures +
                                         "/nope.pt}\n"),
                  400);
  EXPECT_NE(err.dump().find("model.path: file not found"), std::string::npos) << err.dump();
  testutil::TempDir outside;  // not under the cluster's --data-roots
  std::filesystem::copy_file(fixtures + "/student.pt", outside.Join("student.pt"));
  err = Call("POST", "/v1/sweeps",
             Spec("ts-outside", distill + "model: {type: torchscript, path: " +
                                    outside.Join("student.pt") + "}\n"),
             400);
  EXPECT_NE(err.dump().find("outside the allowed data roots"), std::string::npos) << err.dump();
  EXPECT_EQ(Call("GET", "/v1/sweeps")["sweeps"].size(), sweeps);

  // Not a module: one attempt, failed, no checkpoint.
  std::ofstream(fixtures + "/text.pt") << "not a module";
  json bad = Call("POST", "/v1/sweeps",
                  Spec("ts-bad", distill + "model: {type: torchscript, path: " + fixtures +
                                     "/text.pt}\n"),
                  201);
  WaitForSweep(bad["id"], std::chrono::seconds(300));
  json failed = Call("GET", "/v1/trials/" + bad["id"].get<std::string>() + "-t0");
  EXPECT_EQ(failed["state"], "failed") << failed.dump();
  EXPECT_EQ(failed["attempts"], 1) << failed.dump();
  EXPECT_NE(failed["error"].get<std::string>().find("model.path: " + fixtures +
                                                    "/text.pt: cannot load TorchScript module"),
            std::string::npos)
      << failed.dump();
  EXPECT_EQ(client_->Request("GET", "/v1/trials/" + bad["id"].get<std::string>() + "-t0/checkpoint")
                ->status,
            404);
}

// SIGKILL of the whole cluster mid-distillation after >= 2 step checkpoints: after a
// restart the trial resumes from its latest checkpoint and ends with final weights
// bit-identical to an uninterrupted run of the same config.
TEST_F(DistillTest, KilledDistillationResumesFromItsCheckpointBitIdentically) {
  StartCluster();
  json teacher = Call("POST", "/v1/sweeps",
                      Spec("teacher", "kind: train\nseed: 1\nmodel: {type: mlp, hidden: 128}\n"
                                      "train: {epochs: 2, batch_size: 64, threads: 1}\n"
                                      "search: {method: grid, parameters: {seed: [1]}}\n"),
                      201);
  ASSERT_EQ(WaitForSweep(teacher["id"], std::chrono::seconds(300))["state"], "completed");
  const std::string distill =
      "kind: distill\nseed: 3\nteacher: {type: trial, trial: teacher}\n"
      "model: {type: mlp, hidden: 256, dropout: 0.1}\n"
      "train: {epochs: 25, batch_size: 64, threads: 1, schedule: {type: cosine}}\n"
      "checkpoint: {every_steps: 100, keep_last: 2}\n";
  json sweep = Call("POST", "/v1/sweeps", Spec("student", distill), 201);
  const std::string trial = sweep["id"].get<std::string>() + "-t0";
  json listed;
  ASSERT_TRUE(testutil::WaitFor(
      [&] {
        listed = Kept(trial);
        return listed.size() >= 2;
      },
      std::chrono::seconds(120), std::chrono::milliseconds(10)))
      << listed.dump();
  cluster_->Kill();
  const int64_t step_at_kill = listed.back()["step"];
  ASSERT_EQ(listed.back()["kind"], "step");

  StartCluster();
  json done = WaitForSweep(sweep["id"], std::chrono::seconds(600));
  ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
  const std::string log = cluster_->Log();
  const std::string resumed = "trial " + trial + " attempt 2 resumes from its checkpoint at step ";
  const size_t at = log.find(resumed);
  ASSERT_NE(at, std::string::npos) << log;
  const int64_t resumed_step = std::stoll(log.substr(at + resumed.size()));
  std::printf("[ info ] killed with a checkpoint at step %lld; resumed from step %lld\n",
              static_cast<long long>(step_at_kill), static_cast<long long>(resumed_step));
  EXPECT_GE(resumed_step, step_at_kill);
  json t = Call("GET", "/v1/trials/" + trial);
  EXPECT_EQ(t["attempts"], 2);
  json kept = Kept(trial);
  ASSERT_EQ(kept.size(), 3u) << "keep_last 2 step checkpoints + the final one: " << kept.dump();

  // A kept step checkpoint downloads like the final one (its header says where it stood);
  // a pruned one is a clear error.
  const std::string pt = DataDir() + "/../step.pt";
  std::string out;
  const int64_t kept_step = kept[0]["step"];
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " checkpoint download " + trial +
                                     " --step " + std::to_string(kept_step) + " -o " + pt +
                                     " --data-dir " + DataDir(),
                                 &out),
            0)
      << out;
  std::ifstream header_file(pt + ".json");
  json header = json::parse(header_file, nullptr, false);
  EXPECT_EQ(header["resume"]["step"], kept_step) << header.dump();
  EXPECT_NE(testutil::RunCommand(testutil::LatticeBinary() + " checkpoint download " + trial +
                                     " --step 100 -o " + pt + " --data-dir " + DataDir(),
                                 &out),
            0);
  EXPECT_NE(out.find("no checkpoint at step 100"), std::string::npos) << out;

  // The same config, never interrupted: the same final weights, byte for byte.
  json whole = Call("POST", "/v1/sweeps", Spec("student-whole", distill), 201);
  ASSERT_EQ(WaitForSweep(whole["id"], std::chrono::seconds(600))["state"], "completed");
  auto a = client_->Request("GET", "/v1/trials/" + trial + "/checkpoint");
  auto b = client_->Request("GET", "/v1/trials/" + whole["id"].get<std::string>() + "-t0/checkpoint");
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_EQ(a->status, 200);
  ASSERT_EQ(b->status, 200);
  EXPECT_EQ(a->body.size(), b->body.size());
  EXPECT_TRUE(a->body == b->body) << "the resumed run's final checkpoint differs";

  // `lattice resume` continues the finished trial from its latest checkpoint, 2 more epochs.
  std::string output;
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " resume " + trial +
                                     " --epochs 27 --data-dir " + DataDir(),
                                 &output),
            0)
      << output;
  EXPECT_NE(output.find("resumed from its latest checkpoint"), std::string::npos) << output;
  done = WaitForSweep(sweep["id"], std::chrono::seconds(600));
  ASSERT_EQ(done["state"], "completed") << done.dump(2) << cluster_->Log();
  t = Call("GET", "/v1/trials/" + trial);
  EXPECT_EQ(t["attempts"], 3);
  EXPECT_EQ(t["epochs_done"], 27);
  EXPECT_EQ(t["config"]["train"]["epochs"], 27);
  std::string refused;
  EXPECT_NE(testutil::RunCommand(testutil::LatticeBinary() + " resume " + trial +
                                     " --from-step 1 --data-dir " + DataDir(),
                                 &refused),
            0);
  EXPECT_NE(refused.find("no checkpoint at step 1"), std::string::npos) << refused;
}

// A model whose step checkpoints exceed 64 MB (5.8 M parameters with AdamW's two moments):
// they cross MPI and land in RocksDB as pieces of at most 16 MiB, a resume sends one back
// to a worker in pieces, and the downloaded checkpoint is the same bytes the store holds.
TEST_F(DistillTest, CheckpointsOver64MBCrossTheClusterInPieces) {
  StartCluster();
  const std::string spec =
      "kind: train\nseed: 2\nmodel: {type: mlp, hidden: [2048, 2048]}\n"
      "train: {epochs: 1, batch_size: 32, threads: 1}\n"
      "checkpoint: {every_steps: 8, keep_last: 2}\n"
      "search: {method: grid, parameters: {seed: [2]}}\n";
  std::string limited = Spec("big", spec);
  limited.replace(limited.find("limit: 20000"), 12, "limit: 800");
  json sweep = Call("POST", "/v1/sweeps", limited, 201);
  ASSERT_EQ(WaitForSweep(sweep["id"], std::chrono::seconds(300))["state"], "completed")
      << cluster_->Log();
  const std::string trial = sweep["id"].get<std::string>() + "-t0";
  json kept = Kept(trial);
  ASSERT_EQ(kept.size(), 3u) << kept.dump();
  for (const auto& c : kept) {
    if (c["kind"] != "step") continue;
    EXPECT_GT(c["bytes"].get<int64_t>(), int64_t{64} << 20) << c.dump();
    EXPECT_EQ(c["chunks"], (c["bytes"].get<int64_t>() + (int64_t{16} << 20) - 1) / (int64_t{16} << 20))
        << c.dump();
  }
  const int64_t first_kept = kept[0]["step"];
  auto step_blob = client_->Request("GET", "/v1/trials/" + trial + "/checkpoint?step=" +
                                               std::to_string(first_kept));
  ASSERT_OK(step_blob);
  ASSERT_EQ(step_blob->status, 200);
  EXPECT_EQ(static_cast<int64_t>(step_blob->body.size()), kept[0]["bytes"].get<int64_t>());

  // Resuming from the older kept step sends it to a worker in pieces; the run completes.
  std::string output;
  ASSERT_EQ(testutil::RunCommand(testutil::LatticeBinary() + " resume " + trial + " --from-step " +
                                     std::to_string(first_kept) + " --data-dir " + DataDir(),
                                 &output),
            0)
      << output;
  ASSERT_EQ(WaitForSweep(sweep["id"], std::chrono::seconds(300))["state"], "completed")
      << cluster_->Log();
  const std::string log = cluster_->Log();
  EXPECT_NE(log.find("trial " + trial + " attempt 2 resumes from its checkpoint at step " +
                     std::to_string(first_kept)),
            std::string::npos)
      << log;
  json t = Call("GET", "/v1/trials/" + trial);
  EXPECT_EQ(t["state"], "completed") << t.dump();
  EXPECT_EQ(t["attempts"], 2);
}

}  // namespace
}  // namespace lattice
