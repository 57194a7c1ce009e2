#include "jobs/internal/train_model.h"

#include "jobs/internal/torchscript_model.h"

namespace lattice::jobs::internal {
namespace {

// The built-in classifier (BuildModel).
class SequentialModel : public TrainModel {
 public:
  SequentialModel(const ModelConfig& config, int64_t in, int64_t classes)
      : config_(config), in_(in), classes_(classes),
        model_(BuildModel(config, in, classes)) {}

  torch::Tensor forward(const torch::Tensor& x) override { return model_->forward(x); }
  void train() override { model_->train(); }
  void eval() override { model_->eval(); }
  std::vector<torch::Tensor> parameters() const override { return model_->parameters(); }
  std::vector<torch::Tensor> buffers() const override { return model_->buffers(); }
  NamedWeights CloneWeights() const override { return internal::CloneWeights(*model_); }
  void LoadWeights(const NamedWeights& weights) override {
    internal::LoadWeights(weights, *model_);
  }
  std::unique_ptr<TrainModel> Twin() const override {
    std::unique_ptr<SequentialModel> twin;
    {
      KeepCpuGeneratorState keep;  // building draws initial weights: not from the run's draws
      twin = std::make_unique<SequentialModel>(config_, in_, classes_);
    }
    twin->model_->to(parameters().front().device());
    twin->CopyWeightsFrom(*this);
    twin->eval();
    return twin;
  }
  void CopyWeightsFrom(const TrainModel& from) override {
    const auto* other = dynamic_cast<const SequentialModel*>(&from);
    LATTICE_CHECK(other != nullptr);
    torch::nn::Sequential source = other->model_;  // a handle: CopyWeights reads it
    CopyWeights(*source, *model_);
  }
  void to(const torch::Device& device) override { model_->to(device); }
  bool needs_two_rows() const override {
    return config_.batchnorm && config_.type == ModelType::kMlp;
  }
  torch::nn::Sequential* sequential() override { return &model_; }

  std::string Encode(const CheckpointHeader& header, const torch::Tensor& input_mean,
                     const torch::Tensor& input_std,
                     const std::function<void(torch::serialize::OutputArchive&)>& extra) override {
    return EncodeCheckpoint(*model_, header, input_mean, input_std, extra);
  }

  void Decode(const std::string& blob, size_t offset,
              torch::serialize::InputArchive* state) override {
    state->load_from(blob.data() + offset, blob.size() - offset);
    // Loaded into a twin, then copied in place: Module::load may replace a parameter's
    // storage, and ours must keep aliasing the flat buffer the optimizer updates.
    std::unique_ptr<SequentialModel> twin;
    {
      KeepCpuGeneratorState keep;
      twin = std::make_unique<SequentialModel>(config_, in_, classes_);
    }
    twin->model_->load(*state);
    CopyWeightsFrom(*twin);
  }

 private:
  const ModelConfig config_;
  const int64_t in_, classes_;
  torch::nn::Sequential model_;
};

}  // namespace

StatusOr<std::unique_ptr<TrainModel>> MakeTrainModel(const ModelConfig& m, int64_t in,
                                                     int64_t classes, const torch::Tensor& probe,
                                                     const torch::Device& device) {
  if (m.type == ModelType::kTorchScript) {
    LATTICE_ASSIGN_OR_RETURN(std::unique_ptr<TorchScriptModel> model,
                             TorchScriptModel::Load(m, classes, probe, device));
    return std::unique_ptr<TrainModel>(std::move(model));
  }
  // Built (and initialised from the seeded CPU generator) on the CPU, then moved: the
  // initial weights are the same on every device.
  auto model = std::make_unique<SequentialModel>(m, in, classes);
  model->to(device);
  return std::unique_ptr<TrainModel>(std::move(model));
}

}  // namespace lattice::jobs::internal
