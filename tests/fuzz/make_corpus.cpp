// Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/) with the project's own writers:
//   fuzz_make_corpus DIR      (scripts/fuzz --make-corpus regenerates tests/fuzz/corpus with it)
// Valid files (tiny IDX arrays, plain and gzip; a tiny safetensors file of every dtype; checkpoints of the miniature
// MLP for each optimizer and precision, with and without checksums) and a few broken ones (each names its defect).
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "amp/autocast.h"
#include "amp/grad_scaler.h"
#include "apps/checkpoint.h"
#include "apps/trainer.h"
#include "autograd/ops.h"
#include "autograd/tape.h"
#include "core/random.h"
#include "core/safetensors.h"
#include "data/idx.h"
#include "optim/optimizer.h"
#include "tests/fuzz/mini_mlp.h"

namespace fs = std::filesystem;
using namespace mixtape;
using Bytes = std::vector<uint8_t>;

namespace {

Bytes read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_file(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_text(const fs::path& p, const std::string& s) { write_file(p, Bytes(s.begin(), s.end())); }

/// A safetensors file's header (JSON) and data, split.
struct Split {
  nlohmann::json header;
  Bytes data;
};

Split split(const Bytes& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t{file[static_cast<size_t>(i)]} << (8 * i);
  Split s;
  s.header = nlohmann::json::parse(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  s.data.assign(file.begin() + 8 + static_cast<std::ptrdiff_t>(n), file.end());
  return s;
}

Bytes join(const std::string& header, const Bytes& data) {
  Bytes out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

/// The same file without mixtape's checksums (as another writer would produce it): mutations of its data and
/// header then reach the checks behind the checksums.
Bytes without_checksums(const Bytes& file) {
  Split s = split(file);
  s.header["__metadata__"].erase("mixtape.data_crc32");
  s.header["__metadata__"].erase("mixtape.header_crc32");
  return join(s.header.dump(), s.data);
}

void make_idx(const fs::path& dir) {
  const data::IdxArray labels{{6}, {0, 1, 2, 9, 4, 7}};
  data::IdxArray images{{2, 3, 4}, {}};
  for (int i = 0; i < 24; ++i) images.data.push_back(static_cast<uint8_t>(i * 11));
  data::write_idx((dir / "labels-1d.idx").string(), labels, false);
  data::write_idx((dir / "labels-1d.idx.gz").string(), labels, true);
  data::write_idx((dir / "images-3d.idx").string(), images, false);
  data::write_idx((dir / "images-3d.idx.gz").string(), images, true);
  data::write_idx((dir / "4d.idx").string(), data::IdxArray{{1, 2, 1, 2}, {1, 2, 3, 4}}, false);
  const Bytes raw = read_file(dir / "images-3d.idx");
  Bytes b = raw;
  b[0] = 0x1f;
  write_file(dir / "broken-magic.idx", b);
  b = raw;
  b[2] = 0x0D;  // float32: not supported
  write_file(dir / "broken-type-float.idx", b);
  b = raw;
  b.resize(raw.size() - 5);
  write_file(dir / "broken-truncated-data.idx", b);
  b = raw;
  b.push_back(7);
  write_file(dir / "broken-trailing-byte.idx", b);
  b = raw;
  b[3] = 0;  // no dimensions
  write_file(dir / "broken-ndim-0.idx", b);
  const Bytes gz = read_file(dir / "images-3d.idx.gz");
  write_file(dir / "broken-cut.idx.gz", Bytes(gz.begin(), gz.end() - 6));
  b = gz;
  b[b.size() - 5] ^= 0xff;  // the stored length/CRC no longer match
  write_file(dir / "broken-crc.idx.gz", b);
}

void make_safetensors(const fs::path& dir) {
  const std::map<std::string, Tensor> tensors = {
      {"w.f32", from_vector<float>({1.5f, -2.f, 0.f, 3.25f, 1e-30f, -0.f}, Shape{2, 3})},
      {"w.f16", from_vector<float>({1.f, 65504.f, -6e-8f}, Shape{3}).to(DType::f16)},
      {"w.bf16", from_vector<float>({1.f, 3e38f}, Shape{1, 2}).to(DType::bf16)},
      {"w.f64", from_vector<double>({3.141592653589793}, Shape{})},
      {"labels", from_vector<int64_t>({0, 9, -1, 7}, Shape{4})},
      {"pixels", from_vector<uint8_t>({0, 255, 128}, Shape{3, 1})},
      {"empty", Tensor::empty(Shape{0, 5}, DType::f32)},
  };
  const std::string tiny = (dir / "tiny.safetensors").string();
  save_safetensors(tiny, tensors, {{"format", "pt"}, {"note", "seed"}});
  const Bytes file = read_file(tiny);
  write_file(dir / "tiny-no-checksums.safetensors", without_checksums(file));
  save_safetensors((dir / "empty.safetensors").string(), {});
  write_file(dir / "minimal-handmade.safetensors",
             join(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Bytes{0, 0, 128, 63, 0, 0, 0, 64}));

  const Split s = split(without_checksums(file));
  auto with_header = [&](const fs::path& name, nlohmann::json h) { write_file(dir / name, join(h.dump(), s.data)); };
  nlohmann::json h = s.header;
  h["w.f32"]["data_offsets"][1] = h["w.f32"]["data_offsets"][1].get<uint64_t>() + 4;
  with_header("broken-offsets-overlap.safetensors", h);
  h = s.header;
  h["w.f32"]["dtype"] = "F8_E4M3";
  with_header("broken-dtype.safetensors", h);
  h = s.header;
  h["w.f32"]["shape"] = {2, -3};
  with_header("broken-negative-dim.safetensors", h);
  h = s.header;
  h["w.f32"]["shape"] = {2, {3}};
  with_header("broken-nested-shape.safetensors", h);
  h = s.header;
  h["__metadata__"]["note"] = 5;
  with_header("broken-metadata-number.safetensors", h);
  Bytes b = file;
  b[b.size() - 1] ^= 1;  // data checksum mismatch
  write_file(dir / "broken-data-crc.safetensors", b);
  b = file;
  b[0] = 0xff;  // header length beyond the file
  write_file(dir / "broken-header-length.safetensors", b);
  write_file(dir / "broken-json.safetensors", join(R"({"x":{"dtype":"F32","shape":[2],)", {}));
}

void make_checkpoints(const fs::path& dir) {
  struct Case {
    const char* optimizer;
    const char* precision;
  };
  for (const Case& k : {Case{"adam", "fp16"}, Case{"adamw", "bf16"}, Case{"sgd", "fp32"}}) {
    app::TrainConfig c;
    c.optimizer = k.optimizer;
    c.precision = k.precision;
    manual_seed(c.seed);
    auto model = fuzz::mini_mlp();
    std::unique_ptr<optim::Optimizer> opt = app::make_optimizer(c, model->parameters());
    const DType lower = app::precision_dtype(c.precision);
    amp::GradScaler scaler(*opt, amp::GradScalerOptions{.enabled = lower == DType::f16, .max_consecutive_skips = 100});
    const Tensor loss = fuzz::mini_mlp_loss(*model, lower);
    opt->zero_grad();
    backward(scaler.scale(loss));
    scaler.step();
    scaler.update();
    app::RunState state;
    state.epoch = 1;
    state.step = 1;
    state.rng_seed = default_generator().seed();
    state.rng_offset = default_generator().offset();
    state.config = app::to_json(c);
    const std::string name = std::string("mini-mlp-") + k.optimizer + "-" + k.precision;
    const fs::path path = dir / (name + ".safetensors");
    app::save_checkpoint(path.string(), *model, *opt, scaler.state_dict(), state);
    write_file(dir / (name + "-no-checksums.safetensors"), without_checksums(read_file(path)));
  }
  const Split s = split(without_checksums(read_file(dir / "mini-mlp-adam-fp16.safetensors")));
  auto with_header = [&](const fs::path& name, nlohmann::json h) { write_file(dir / name, join(h.dump(), s.data)); };
  nlohmann::json h = s.header;
  h["__metadata__"].erase("format");
  with_header("broken-no-format.safetensors", h);
  h = s.header;
  h["__metadata__"]["epoch"] = "-3";
  with_header("odd-negative-epoch.safetensors", h);
  h = s.header;
  h["__metadata__"]["config"] = "[1, 2]";
  with_header("broken-config-not-object.safetensors", h);
  h = s.header;
  h["__metadata__"]["step"] = "99999999999999999999999";
  with_header("broken-step-overflow.safetensors", h);
  h = s.header;
  h["model.1.weight"]["shape"] = {4, 3};  // transposed: same bytes, wrong shape
  with_header("broken-transposed-weight.safetensors", h);
}

void make_cli(const fs::path& dir) {
  auto argv = [&](const char* name, std::initializer_list<std::string> tokens) {
    std::string s;
    for (const std::string& t : tokens) {
      if (!s.empty()) s.push_back('\0');
      s += t;
    }
    write_text(dir / name, s);
  };
  argv("train-bf16", {"train", "--model", "mlp", "--epochs", "3", "--precision", "bf16", "--json", "--save", "run.st"});
  argv("train-resume", {"train", "--epochs", "5", "--resume", "/dev/null", "--loss-scale", "on", "--lr=1e-3"});
  argv("train-sgd", {"train", "--optimizer", "sgd", "--momentum", "0.9", "--weight-decay", "1e-4", "--batch", "64",
                     "--limit", "512", "--test-limit", "200", "--seed", "7", "--no-progress", "--device", "cuda:1"});
  argv("train-help", {"train", "--help"});
  argv("compare-plot", {"compare", "--model", "cnn", "--precisions", "fp32,bf16", "--out", "o", "--plot", "l.png"});
  argv("bench-quick", {"bench", "--quick", "--models", "mlp,cnn", "--batches", "8,32", "--gemm-shapes", "64x64x64"});
  argv("bench-threads", {"bench", "--threads", "1", "--no-gemm", "--vs-pytorch", "--python", "python3", "--json"});
  argv("bad-precision", {"train", "--precision", "fp8"});
  argv("bad-epochs", {"train", "--epochs", "0"});
  argv("bad-shape", {"bench", "--gemm-shapes", "64x64"});
  argv("no-command", {"--version"});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_make_corpus DIR (writes DIR/idx, DIR/safetensors, DIR/checkpoint, DIR/cli)\n";
    return 2;
  }
  const fs::path root(argv[1]);
  for (const char* t : {"idx", "safetensors", "checkpoint", "cli"}) fs::create_directories(root / t);
  make_idx(root / "idx");
  make_safetensors(root / "safetensors");
  make_checkpoints(root / "checkpoint");
  make_cli(root / "cli");
  std::cout << "seed corpus written to " << root.string() << "\n";
  return 0;
}
