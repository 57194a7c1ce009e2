// The distillation examples end to end on a real `mpirun -np 3` cluster (Fashion-MNIST):
// examples/fashion-mnist-teacher.yaml trains the teacher, examples/distill-fmnist.yaml
// distils it (teacher named by its sweep's name) into a student with under a quarter of
// its parameters, examples/distill-ab.yaml sweeps temperature x alpha x width.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/integration/cluster_fixture.h"

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

}  // namespace
}  // namespace lattice
