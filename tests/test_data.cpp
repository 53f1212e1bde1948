// data/: IDX files (plain and gzip), Fashion-MNIST, synthetic data sets, subsets, the DataLoader.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <new>
#include <numbers>
#include <numeric>
#include <regex>
#include <set>
#include <stdexcept>
#include <string>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "data/dataset.h"
#include "data/idx.h"
#include "data/loader.h"
#include "test_util.h"

using namespace mixtape;
using namespace mixtape::data;
using Catch::Matchers::Contains;
using mixtape::testing::error_of;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

namespace {

// A fresh directory, removed with its contents at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("mixtape_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

Bytes read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// An IDX file built by hand from the format's definition (independent of write_idx).
Bytes idx_bytes(const std::vector<uint32_t>& dims, const Bytes& data, uint8_t type_code = 0x08) {
  Bytes out = {0, 0, type_code, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    out.insert(out.end(), {static_cast<uint8_t>(d >> 24), static_cast<uint8_t>(d >> 16), static_cast<uint8_t>(d >> 8),
                           static_cast<uint8_t>(d)});
  }
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

uint32_t crc32(const Bytes& data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t byte : data) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put_le32(Bytes& out, uint32_t v) {
  for (int k = 0; k < 4; ++k) out.push_back(static_cast<uint8_t>(v >> (8 * k)));
}

// A gzip file (RFC 1952) holding `data` in stored deflate blocks (RFC 1951): a second, independent gzip writer.
Bytes gzip_stored(const Bytes& data) {
  Bytes out = {0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 0xFF};
  size_t pos = 0;
  do {
    const size_t len = std::min<size_t>(data.size() - pos, 65535);
    const bool last = pos + len == data.size();
    out.push_back(last ? 1 : 0);  // BFINAL, BTYPE = 00 (stored)
    out.push_back(static_cast<uint8_t>(len));
    out.push_back(static_cast<uint8_t>(len >> 8));
    out.push_back(static_cast<uint8_t>(~len));
    out.push_back(static_cast<uint8_t>(~len >> 8));
    out.insert(out.end(), data.begin() + static_cast<std::ptrdiff_t>(pos),
               data.begin() + static_cast<std::ptrdiff_t>(pos + len));
    pos += len;
  } while (pos < data.size());
  put_le32(out, crc32(data));
  put_le32(out, static_cast<uint32_t>(data.size()));
  return out;
}

// Deterministic, poorly compressible bytes.
Bytes noise_bytes(size_t n, uint32_t seed) {
  Bytes out(n);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

// A data set whose row i holds i + k/8 in element k, and label i (so each batch row identifies its sample).
Dataset indexed_dataset(int64_t n, const Shape& row_shape = Shape{3}) {
  Shape shape{n};
  for (int64_t d : row_shape) shape.push_back(d);
  const int64_t row = row_shape.numel();
  std::vector<float> x(static_cast<size_t>(n * row));
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    y[static_cast<size_t>(i)] = i;
    for (int64_t k = 0; k < row; ++k) x[static_cast<size_t>(i * row + k)] = static_cast<float>(i) + k / 8.0f;
  }
  Dataset ds;
  ds.inputs = from_vector(x, shape);
  ds.labels = from_vector(y, Shape{n});
  ds.num_classes = n;
  ds.name = "indexed";
  return ds;
}

struct Epoch {
  std::vector<std::vector<float>> inputs;
  std::vector<std::vector<int64_t>> labels;
  std::vector<Shape> input_shapes;
  std::vector<int64_t> indices;
};

// Everything one loop over `loader` yields.
Epoch run_epoch(DataLoader& loader) {
  Epoch e;
  for (const Batch& b : loader) {
    e.inputs.push_back(b.inputs.to_vector<float>());
    e.labels.push_back(b.labels.to_vector<int64_t>());
    e.input_shapes.push_back(b.inputs.shape());
    e.indices.push_back(b.index);
  }
  return e;
}

std::vector<int64_t> flat_labels(const Epoch& e) {
  std::vector<int64_t> all;
  for (const auto& l : e.labels) all.insert(all.end(), l.begin(), l.end());
  return all;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// IDX
// ---------------------------------------------------------------------------------------------

TEST_CASE("IDX: write_idx/read_idx round trip, plain and gzip, 1 to 4 dimensions", "[data][idx]") {
  TempDir dir;
  const std::vector<std::vector<uint32_t>> shapes = {{7}, {3, 5}, {4, 2, 3}, {2, 3, 2, 2}};
  for (const auto& dims32 : shapes) {
    size_t n = 1;
    for (uint32_t d : dims32) n *= d;
    IdxArray a;
    a.dims.assign(dims32.begin(), dims32.end());
    a.data = noise_bytes(n, static_cast<uint32_t>(dims32.size()));
    const std::string plain = dir.file("a.idx"), gz = dir.file("a.idx.gz");
    write_idx(plain, a, false);
    write_idx(gz, a, true);
    // The plain file is exactly the format's bytes; the gzip one really is gzip.
    CHECK(read_bytes(plain) == idx_bytes(dims32, a.data));
    const Bytes gz_bytes = read_bytes(gz);
    REQUIRE(gz_bytes.size() > 2);
    CHECK(gz_bytes[0] == 0x1F);
    CHECK(gz_bytes[1] == 0x8B);
    for (const std::string& path : {plain, gz}) {
      const IdxArray b = read_idx(path);
      CHECK(b.dims == a.dims);
      CHECK(b.data == a.data);
    }
  }
}

TEST_CASE("IDX: reads gzip written by another encoder (stored blocks, several blocks)", "[data][idx]") {
  TempDir dir;
  const Bytes data = noise_bytes(3 * 40000, 5);  // 120000 bytes: two stored blocks
  write_bytes(dir.file("x.gz"), gzip_stored(idx_bytes({3, 200, 200}, data)));
  const IdxArray a = read_idx(dir.file("x.gz"));
  CHECK(a.dims == std::vector<int64_t>{3, 200, 200});
  CHECK(a.data == data);
}

TEST_CASE("IDX: big-endian dimensions above 2^16 are decoded", "[data][idx]") {
  TempDir dir;
  const Bytes data = noise_bytes(70000, 9);
  write_bytes(dir.file("big"), idx_bytes({70000}, data));
  const IdxArray a = read_idx(dir.file("big"));
  CHECK(a.dims == std::vector<int64_t>{70000});
  CHECK(a.data == data);
}

TEST_CASE("IDX: a missing file or a directory is an error naming the path", "[data][idx]") {
  TempDir dir;
  const std::string missing = dir.file("nope-idx3-ubyte.gz");
  const std::string msg = error_of([&] { read_idx(missing); });
  CHECK_THAT(msg, Contains(missing));
  CHECK_THAT(msg, Contains("no such file"));
  const std::string dmsg = error_of([&] { read_idx(dir.path.string()); });
  CHECK_THAT(dmsg, Contains(dir.path.string()));
  CHECK_THAT(dmsg, Contains("directory"));
}

TEST_CASE("IDX: bad headers are rejected with the file and the problem", "[data][idx]") {
  TempDir dir;
  const std::string path = dir.file("bad.idx");
  const Bytes data = noise_bytes(6, 1);

  SECTION("wrong magic") {
    Bytes b = idx_bytes({6}, data);
    b[0] = 0x12;
    b[1] = 0x34;
    write_bytes(path, b);
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("magic"));
    CHECK_THAT(msg, Contains("0x12 0x34"));
  }
  SECTION("unsupported type code") {
    write_bytes(path, idx_bytes({6}, data, 0x0D));
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("unsupported IDX type code 0x0D"));
    CHECK_THAT(msg, Contains("float32"));
    CHECK_THAT(msg, Contains("0x08"));
  }
  SECTION("zero or too many dimensions") {
    write_bytes(path, Bytes{0, 0, 8, 0});
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("number of dimensions 0"));
    write_bytes(path, idx_bytes({1, 1, 1, 1, 6}, data));
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("number of dimensions 5"));
  }
  SECTION("a zero dimension") {
    write_bytes(path, idx_bytes({6, 0}, {}));
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("dimension 1 is 0"));
  }
  SECTION("absurd dimensions (no overflow, no huge allocation)") {
    write_bytes(path, idx_bytes({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, data));
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("corrupt"));
    write_bytes(path, idx_bytes({65536, 65536, 5}, data));  // 20 GiB
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("corrupt"));
  }
  SECTION("a header cut short") {
    write_bytes(path, Bytes{0, 0, 8});
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("truncated"));
    write_bytes(path, Bytes{0, 0, 8, 2, 0, 0, 0, 6, 0});
    CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("truncated"));
  }
}

TEST_CASE("IDX: a file cut in half is reported as truncated with expected and found sizes", "[data][idx]") {
  TempDir dir;
  SECTION("plain") {
    const Bytes full = idx_bytes({10, 10}, noise_bytes(100, 2));  // 12 header bytes + 100
    const std::string path = dir.file("half.idx");
    write_bytes(path, Bytes(full.begin(), full.begin() + 56));
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("truncated: expected 100 bytes of data, found 44"));
    CHECK_THAT(msg, Contains("(10, 10)"));
  }
  SECTION("gzip") {
    IdxArray a{{50, 400}, noise_bytes(20000, 3)};
    const std::string full = dir.file("full.gz"), path = dir.file("half.gz");
    write_idx(full, a, true);
    const Bytes gz = read_bytes(full);
    write_bytes(path, Bytes(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2)));
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("truncated: expected 20000 bytes of data, found "));
    std::smatch found;  // some data came out of the first half, not all of it
    REQUIRE(std::regex_search(msg, found, std::regex("found ([0-9]+)")));
    CHECK(std::stol(found[1]) > 0);
    CHECK(std::stol(found[1]) < 20000);
    CHECK_THAT(msg, Contains("gzip stream ends early"));
  }
  SECTION("gzip missing only its checksum trailer") {
    const Bytes gz = gzip_stored(idx_bytes({8}, noise_bytes(8, 4)));
    const std::string path = dir.file("notrailer.gz");
    write_bytes(path, Bytes(gz.begin(), gz.end() - 8));
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("truncated"));
  }
}

namespace {

// Whether this build runs under AddressSanitizer or ThreadSanitizer (they reserve address space of their own).
constexpr bool kSanitized =
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

// This process's virtual memory size (VmSize in /proc/self/status), in bytes; 0 when unknown.
size_t virtual_memory_bytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;  // "VmSize:   12345 kB"
  return 0;
}

// Runs read_idx(path) in a child process whose address space may grow by at most `budget` bytes. Returns what
// happened: "error: <message>" (a mixtape::Error), "out of memory", "read" or "no budget" (no VmSize to limit).
std::string read_idx_within(const std::string& path, size_t budget) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    // Free heap space the parent left would serve allocations without growing the address space: give it back,
    // and have every allocation from 256 KiB up mapped afresh (so it counts against the limit).
    ::malloc_trim(0);
    ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    std::string report;
    const size_t vm = virtual_memory_bytes();
    const rlimit limit{vm + budget, RLIM_INFINITY};
    if (vm == 0 || ::setrlimit(RLIMIT_AS, &limit) != 0) {
      report = "no budget";
    } else {
      try {
        read_idx(path);
        report = "read";
      } catch (const Error& e) {
        report = std::string("error: ") + e.what();
      } catch (const std::bad_alloc&) {
        report = "out of memory";
      }
    }
    const ssize_t written = ::write(fds[1], report.data(), report.size());
    ::_exit(written == static_cast<ssize_t>(report.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string report;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) report.append(buf, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  return report;
}

}  // namespace

TEST_CASE("IDX: a header claiming 60000 images over 100 bytes fails without allocating what it claims", "[data][idx]") {
  TempDir dir;
  const Bytes file = idx_bytes({60000, 28, 28}, noise_bytes(100, 8));  // claims 47,040,000 bytes
  const std::string plain = dir.file("claims.idx"), gz = dir.file("claims.idx.gz");
  write_bytes(plain, file);
  write_bytes(gz, gzip_stored(file));  // a complete gzip stream whose IDX payload is short
  for (const std::string& path : {plain, gz}) {
    if (kSanitized) {
      WARN("under a sanitizer the address-space budget of the IDX reader is not exercised");
    } else {
      // Within a budget of 8 MiB (a sixth of what the header claims) the reader still reports the truncation.
      const std::string report = read_idx_within(path, size_t{8} << 20);
      if (report == "no budget") WARN("no VmSize in /proc/self/status: the IDX reader's budget is not exercised");
      else CHECK_THAT(report, Contains("error: ") && Contains("truncated: expected 47040000 bytes of data, found 100"));
    }
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path) && Contains("truncated: expected 47040000 bytes of data, found 100") &&
                        Contains("(60000, 28, 28)"));
  }
}

TEST_CASE("IDX: dimensions whose product overflows 64 bits are rejected, not wrapped to 0", "[data][idx]") {
  TempDir dir;
  const std::string path = dir.file("wrap.idx");
  write_bytes(path, idx_bytes({65536, 65536, 65536, 65536}, {}));  // 2^64: a naive uint64 product is 0
  const std::string msg = error_of([&] { read_idx(path); });
  CHECK_THAT(msg, Contains(path) && Contains("(65536, 65536") && Contains("corrupt"));
  write_bytes(path, idx_bytes({0x80000000u, 0x80000000u, 4}, {}));  // 2^64 again, in three dimensions
  CHECK_THAT(error_of([&] { read_idx(path); }), Contains(path) && Contains("corrupt"));
}

TEST_CASE("IDX: trailing bytes after the declared data are an error", "[data][idx]") {
  TempDir dir;
  Bytes b = idx_bytes({2, 3}, noise_bytes(6, 5));
  b.insert(b.end(), {1, 2, 3});
  SECTION("plain") {
    const std::string path = dir.file("trailing.idx");
    write_bytes(path, b);
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("3 trailing bytes"));
    CHECK_THAT(msg, Contains("(2, 3)"));
  }
  SECTION("gzip") {
    const std::string path = dir.file("trailing.gz");
    write_bytes(path, gzip_stored(b));
    const std::string msg = error_of([&] { read_idx(path); });
    CHECK_THAT(msg, Contains(path));
    CHECK_THAT(msg, Contains("3 trailing bytes"));
  }
}

TEST_CASE("IDX: a corrupt gzip stream is an error naming the file", "[data][idx]") {
  TempDir dir;
  const std::string path = dir.file("corrupt.gz");
  SECTION("invalid deflate block") {
    write_idx(path, IdxArray{{1000}, noise_bytes(1000, 6)}, true);
    Bytes gz = read_bytes(path);
    gz[10] = 0xFF;  // first deflate block header: BTYPE = 11 is reserved
    write_bytes(path, gz);
  }
  SECTION("checksum mismatch") {
    Bytes gz = gzip_stored(idx_bytes({1000}, noise_bytes(1000, 7)));
    gz[100] ^= 0x01;  // a data byte: only the CRC-32 can tell
    write_bytes(path, gz);
  }
  const std::string msg = error_of([&] { read_idx(path); });
  CHECK_THAT(msg, Contains(path));
  CHECK_THAT(msg, Contains("corrupt gzip"));
}

TEST_CASE("IDX: write_idx rejects inconsistent arrays", "[data][idx]") {
  TempDir dir;
  CHECK_THAT(error_of([&] { write_idx(dir.file("x"), IdxArray{{2, 3}, Bytes(5)}, false); }),
             Contains("(2, 3)") && Contains("5"));
  CHECK_THROWS_AS(write_idx(dir.file("x"), IdxArray{{}, {}}, false), Error);
  CHECK_THROWS_AS(write_idx(dir.file("x"), IdxArray{{1, 1, 1, 1, 1}, Bytes(1)}, true), Error);
  CHECK_THAT(error_of([&] { write_idx(dir.file("no/such/dir/x"), IdxArray{{1}, Bytes(1)}, false); }),
             Contains("no/such/dir/x"));
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST
// ---------------------------------------------------------------------------------------------

namespace {
// A small fake Fashion-MNIST directory: n images whose pixel p of image i is (i * 784 + p) % 256.
void write_fake_fashion(const TempDir& dir, const std::string& prefix, int64_t n, bool gzip = true,
                        std::vector<uint8_t> labels = {}) {
  IdxArray images{{n, 28, 28}, Bytes(static_cast<size_t>(n * 784))};
  for (size_t k = 0; k < images.data.size(); ++k) images.data[k] = static_cast<uint8_t>(k % 256);
  if (labels.empty()) {
    for (int64_t i = 0; i < n; ++i) labels.push_back(static_cast<uint8_t>((i * 3) % 10));
  }
  const std::string ext = gzip ? ".gz" : "";
  write_idx(dir.file(prefix + "-images-idx3-ubyte" + ext), images, gzip);
  write_idx(dir.file(prefix + "-labels-idx1-ubyte" + ext), IdxArray{{static_cast<int64_t>(labels.size())}, labels},
            gzip);
}
}  // namespace

TEST_CASE("Fashion-MNIST: the default directory is Debian's", "[data][fashion]") {
  CHECK(default_fashion_mnist_dir() == "/usr/share/datasets/fashion-mnist");
}

TEST_CASE("Fashion-MNIST: the installed data set loads, normalised, with the known labels", "[data][fashion]") {
  const std::string dir = default_fashion_mnist_dir();
  if (!fs::is_directory(dir)) {
    WARN("Fashion-MNIST is not installed in " << dir << " (sudo apt-get install dataset-fashion-mnist): skipped");
    return;
  }
  const Dataset train = load_fashion_mnist(dir, true);
  const Dataset test = load_fashion_mnist(dir, false);
  CHECK(train.size() == 60000);
  CHECK(test.size() == 10000);
  CHECK(train.num_classes == 10);
  CHECK(train.inputs.shape() == Shape{60000, 784});
  CHECK(test.inputs.shape() == Shape{10000, 784});
  CHECK(train.labels.shape() == Shape{60000});
  CHECK(train.inputs.dtype() == DType::f32);
  CHECK(train.labels.dtype() == DType::i64);
  CHECK(train.inputs.device().is_cpu());

  // Labels: 0..9, 6000 (train) / 1000 (test) per class; first ones as read by Python's gzip module.
  for (const auto* ds : {&train, &test}) {
    std::map<int64_t, int64_t> counts;
    const int64_t* y = ds->labels.data<int64_t>();
    for (int64_t i = 0; i < ds->size(); ++i) counts[y[i]]++;
    REQUIRE(counts.size() == 10);
    CHECK(counts.begin()->first == 0);
    CHECK(counts.rbegin()->first == 9);
    for (const auto& [label, count] : counts) CHECK(count == ds->size() / 10);
  }
  const std::vector<int64_t> first_train = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9};
  const std::vector<int64_t> first_test = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5};
  for (size_t i = 0; i < first_train.size(); ++i) {
    CHECK(train.labels.data<int64_t>()[i] == first_train[i]);
    CHECK(test.labels.data<int64_t>()[i] == first_test[i]);
  }

  // Normalisation: pixels 0 and 255 map to the documented constants; image 0's raw pixel sum is 76247.
  const float* x = train.inputs.data<float>();
  double sum = 0, sq = 0, lo = 1e9, hi = -1e9, first_image = 0;
  const int64_t total = train.inputs.numel();
  for (int64_t i = 0; i < total; ++i) {
    sum += x[i];
    sq += static_cast<double>(x[i]) * x[i];
    lo = std::min<double>(lo, x[i]);
    hi = std::max<double>(hi, x[i]);
    if (i < 784) first_image += x[i];
  }
  const double mean = sum / static_cast<double>(total);
  const double stdev = std::sqrt(sq / static_cast<double>(total) - mean * mean);
  CHECK(std::abs(mean) < 0.01);
  CHECK(std::abs(stdev - 1.0) < 0.01);
  CHECK(lo == Approx(-0.2860 / 0.3530).epsilon(1e-6));
  CHECK(hi == Approx((1.0 - 0.2860) / 0.3530).epsilon(1e-6));
  CHECK(first_image == Approx((76247.0 / 255.0 - 784 * 0.2860) / 0.3530).epsilon(1e-5));

  // limit keeps the first samples.
  const Dataset few = load_fashion_mnist(dir, false, 100);
  CHECK(few.size() == 100);
  CHECK(few.inputs.to_vector<float>() == subset(test, 0, 100).inputs.to_vector<float>());
  CHECK(few.labels.to_vector<int64_t>() == subset(test, 0, 100).labels.to_vector<int64_t>());
}

TEST_CASE("Fashion-MNIST: loads a directory of small IDX files, gzip or plain, with limit", "[data][fashion]") {
  TempDir dir;
  write_fake_fashion(dir, "train", 5, true);
  write_fake_fashion(dir, "t10k", 3, false);  // uncompressed names are accepted too
  const Dataset train = load_fashion_mnist(dir.path.string(), true);
  const Dataset test = load_fashion_mnist(dir.path.string(), false);
  CHECK(train.size() == 5);
  CHECK(test.size() == 3);
  CHECK(train.name == "fashion-mnist/train");
  CHECK(test.name == "fashion-mnist/test");
  CHECK(train.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 3, 6, 9, 2});
  const std::vector<float> x = train.inputs.to_vector<float>();
  for (size_t k : {size_t{0}, size_t{1}, size_t{255}, size_t{784 * 4 + 17}}) {
    const double pixel = static_cast<double>(k % 256);
    CHECK(x[k] == Approx((pixel / 255.0 - 0.2860) / 0.3530).epsilon(1e-6));
  }
  const Dataset limited = load_fashion_mnist(dir.path.string(), true, 2);
  CHECK(limited.size() == 2);
  CHECK(limited.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 3});
  CHECK(load_fashion_mnist(dir.path.string(), true, 5).size() == 5);  // a limit equal to the size is fine
  // Beyond the size it is an error naming the limit, the size and the file (it was silently capped before).
  const std::string msg = error_of([&] { load_fashion_mnist(dir.path.string(), true, 1000); });
  CHECK_THAT(msg, Contains("limit 1000") && Contains("5 samples") && Contains(dir.file("train-images-idx3-ubyte.gz")));
  CHECK_THAT(error_of([&] { load_fashion_mnist(dir.path.string(), false, 4); }),
             Contains("limit 4") && Contains("3 samples") && Contains(dir.file("t10k-images-idx3-ubyte")));
  CHECK_THROWS_AS(load_fashion_mnist(dir.path.string(), true, 0), Error);
}

TEST_CASE("Fashion-MNIST: missing directory or file says how to install it", "[data][fashion]") {
  TempDir dir;
  const std::string missing = (dir.path / "not-here").string();
  const std::string msg = error_of([&] { load_fashion_mnist(missing, true); });
  CHECK_THAT(msg, Contains(missing));
  CHECK_THAT(msg, Contains("sudo apt-get install dataset-fashion-mnist"));
  CHECK_THAT(msg, Contains("--data"));

  write_fake_fashion(dir, "train", 4);
  fs::remove(dir.file("train-labels-idx1-ubyte.gz"));
  const std::string fmsg = error_of([&] { load_fashion_mnist(dir.path.string(), true); });
  CHECK_THAT(fmsg, Contains(dir.file("train-labels-idx1-ubyte.gz")));
  CHECK_THAT(fmsg, Contains("missing"));
  CHECK_THAT(fmsg, Contains("apt-get install dataset-fashion-mnist"));
  CHECK_THAT(fmsg, Contains("--data"));
  // The test split is looked for under its own names.
  CHECK_THAT(error_of([&] { load_fashion_mnist(dir.path.string(), false); }),
             Contains("t10k-images-idx3-ubyte.gz"));
}

TEST_CASE("Fashion-MNIST: bad contents are rejected naming the file", "[data][fashion]") {
  TempDir dir;
  SECTION("a label above 9") {
    write_fake_fashion(dir, "train", 5, true, {1, 2, 3, 10, 4});
    const std::string msg = error_of([&] { load_fashion_mnist(dir.path.string(), true); });
    CHECK_THAT(msg, Contains(dir.file("train-labels-idx1-ubyte.gz")));
    CHECK_THAT(msg, Contains("label 10 at index 3"));
  }
  SECTION("counts differ") {
    write_fake_fashion(dir, "train", 5, true, {1, 2, 3, 4});
    const std::string msg = error_of([&] { load_fashion_mnist(dir.path.string(), true); });
    CHECK_THAT(msg, Contains("5 images") && Contains("4 labels"));
  }
  SECTION("images are not 28x28") {
    write_fake_fashion(dir, "train", 2);
    write_idx(dir.file("train-images-idx3-ubyte.gz"), IdxArray{{2, 28, 27}, Bytes(2 * 28 * 27)}, true);
    const std::string msg = error_of([&] { load_fashion_mnist(dir.path.string(), true); });
    CHECK_THAT(msg, Contains(dir.file("train-images-idx3-ubyte.gz")));
    CHECK_THAT(msg, Contains("(N, 28, 28)") && Contains("(2, 28, 27)"));
  }
  SECTION("a damaged file") {
    write_fake_fashion(dir, "train", 2);
    const Bytes gz = read_bytes(dir.file("train-images-idx3-ubyte.gz"));
    write_bytes(dir.file("train-images-idx3-ubyte.gz"), Bytes(gz.begin(), gz.begin() + 20));
    CHECK_THAT(error_of([&] { load_fashion_mnist(dir.path.string(), true); }),
               Contains(dir.file("train-images-idx3-ubyte.gz")) && Contains("truncated"));
  }
}

// ---------------------------------------------------------------------------------------------
// Synthetic data sets and subsets
// ---------------------------------------------------------------------------------------------

TEST_CASE("make_spirals: deterministic per seed, balanced, on the spiral arms", "[data][synthetic]") {
  const Dataset a = make_spirals(301, 3, 7), b = make_spirals(301, 3, 7), c = make_spirals(301, 3, 8);
  CHECK(a.inputs.shape() == Shape{301, 2});
  CHECK(a.labels.shape() == Shape{301});
  CHECK(a.inputs.dtype() == DType::f32);
  CHECK(a.labels.dtype() == DType::i64);
  CHECK(a.num_classes == 3);
  CHECK(a.inputs.to_vector<float>() == b.inputs.to_vector<float>());
  CHECK(a.labels.to_vector<int64_t>() == b.labels.to_vector<int64_t>());
  CHECK(a.inputs.to_vector<float>() != c.inputs.to_vector<float>());
  std::map<int64_t, int> counts;
  for (int64_t y : a.labels.to_vector<int64_t>()) counts[y]++;
  CHECK(counts == std::map<int64_t, int>{{0, 101}, {1, 100}, {2, 100}});

  // Without noise, sample j of class c sits at radius (j + 0.5) / count and angle 2*pi*c/3 + 4 * radius.
  const Dataset exact = make_spirals(300, 3, 1, 0.0);
  const std::vector<float> x = exact.inputs.to_vector<float>();
  for (int64_t i = 0; i < 300; ++i) {
    const int64_t c = i % 3, j = i / 3;
    const double r = (j + 0.5) / 100.0, t = 2.0 * std::numbers::pi * c / 3.0 + 4.0 * r;
    CHECK(x[static_cast<size_t>(2 * i)] == Approx(r * std::sin(t)).margin(1e-6));
    CHECK(x[static_cast<size_t>(2 * i + 1)] == Approx(r * std::cos(t)).margin(1e-6));
  }
  // Noise has the requested standard deviation.
  const std::vector<float> noisy = make_spirals(3000, 3, 2, 0.1).inputs.to_vector<float>();
  const std::vector<float> clean = make_spirals(3000, 3, 2, 0.0).inputs.to_vector<float>();
  double sq = 0;
  for (size_t k = 0; k < noisy.size(); ++k) sq += (noisy[k] - clean[k]) * (noisy[k] - clean[k]);
  CHECK(std::sqrt(sq / static_cast<double>(noisy.size())) == Approx(0.1).epsilon(0.05));
  CHECK_THROWS_AS(make_spirals(0, 3, 1), Error);
  CHECK_THROWS_AS(make_spirals(10, 0, 1), Error);
}

TEST_CASE("make_blobs: deterministic per seed, balanced, clusters with the requested spread", "[data][synthetic]") {
  const Dataset a = make_blobs(3000, 3, 4, 11), b = make_blobs(3000, 3, 4, 11), c = make_blobs(3000, 3, 4, 12);
  CHECK(a.inputs.shape() == Shape{3000, 4});
  CHECK(a.num_classes == 3);
  CHECK(a.inputs.to_vector<float>() == b.inputs.to_vector<float>());
  CHECK(a.inputs.to_vector<float>() != c.inputs.to_vector<float>());
  std::map<int64_t, int> counts;
  for (int64_t y : a.labels.to_vector<int64_t>()) counts[y]++;
  CHECK(counts == std::map<int64_t, int>{{0, 1000}, {1, 1000}, {2, 1000}});

  // spread 0: every sample is its class's center, inside [-10, 10]^dims; the same centers with spread 1.
  const std::vector<float> centers = make_blobs(3000, 3, 4, 11, 0.0).inputs.to_vector<float>();
  const std::vector<float> x = a.inputs.to_vector<float>();
  std::vector<double> sq(3, 0.0);
  for (int64_t i = 0; i < 3000; ++i) {
    for (int d = 0; d < 4; ++d) {
      const size_t k = static_cast<size_t>(i * 4 + d), k0 = static_cast<size_t>((i % 3) * 4 + d);
      CHECK(centers[k] == centers[k0]);
      CHECK(std::abs(centers[k]) <= 10.0f);
      sq[static_cast<size_t>(i % 3)] += (x[k] - centers[k]) * (x[k] - centers[k]);
    }
  }
  for (double s : sq) CHECK(std::sqrt(s / 4000.0) == Approx(1.0).epsilon(0.05));
  CHECK_THROWS_AS(make_blobs(10, 2, 0, 1), Error);
}

TEST_CASE("subset: copies a range of samples", "[data][synthetic]") {
  const Dataset ds = indexed_dataset(10, Shape{2, 3});
  Dataset s = subset(ds, 3, 7);
  CHECK(s.size() == 4);
  CHECK(s.inputs.shape() == Shape{4, 2, 3});
  CHECK(s.labels.to_vector<int64_t>() == std::vector<int64_t>{3, 4, 5, 6});
  CHECK(s.inputs.to_vector<float>()[6] == 4.0f);
  CHECK(s.num_classes == ds.num_classes);
  s.inputs.data<float>()[0] = -1.0f;  // a copy: the original is untouched
  CHECK(ds.inputs.data<float>()[18] == 3.0f);
  CHECK(subset(ds, 5, 5).size() == 0);
  CHECK_THAT(error_of([&] { subset(ds, 4, 11); }), Contains("[4, 11)") && Contains("indexed"));
  CHECK_THROWS_AS(subset(ds, 5, 4), Error);
  CHECK_THROWS_AS(subset(ds, -1, 4), Error);
}

// ---------------------------------------------------------------------------------------------
// DataLoader
// ---------------------------------------------------------------------------------------------

TEST_CASE("shuffled_indices: a permutation that matches the independent reference", "[data][loader]") {
  // From tests/data/shuffle_reference.py (mt19937_64 and Fisher-Yates re-implemented in Python).
  CHECK(shuffled_indices(10, 42, 0) == std::vector<int64_t>{9, 6, 2, 0, 1, 4, 3, 8, 5, 7});
  CHECK(shuffled_indices(10, 42, 1) == std::vector<int64_t>{5, 4, 1, 3, 0, 2, 7, 8, 6, 9});
  CHECK(shuffled_indices(20, 7, 3) ==
        std::vector<int64_t>{15, 12, 1, 13, 8, 9, 11, 7, 19, 17, 0, 18, 3, 6, 10, 14, 16, 5, 4, 2});
  CHECK(shuffled_indices(0, 1, 0).empty());
  CHECK(shuffled_indices(1, 1, 0) == std::vector<int64_t>{0});
}

TEST_CASE("shuffled_indices: all orders of 3 are equally likely", "[data][loader]") {
  std::map<std::vector<int64_t>, int> counts;
  const int trials = 6000;
  for (int e = 0; e < trials; ++e) counts[shuffled_indices(3, 5, e)]++;
  REQUIRE(counts.size() == 6);
  for (const auto& [order, count] : counts) CHECK(std::abs(count - trials / 6) < 120);  // ~4 sigma
}

static_assert(std::input_iterator<DataLoader::Iterator>);
static_assert(std::sentinel_for<DataLoader::Iterator, DataLoader::Iterator>);

TEST_CASE("DataLoader: every sample exactly once per epoch, rows intact", "[data][loader]") {
  const bool shuffle = GENERATE(false, true);
  const bool prefetch = GENERATE(false, true);
  CAPTURE(shuffle, prefetch);
  const Dataset ds = indexed_dataset(103);
  DataLoader loader(ds, {.batch_size = 10, .shuffle = shuffle, .seed = 3, .prefetch = prefetch});
  CHECK(loader.num_batches() == 11);
  for (int epoch = 0; epoch < 2; ++epoch) {
    const Epoch e = run_epoch(loader);
    REQUIRE(e.labels.size() == 11);
    for (size_t b = 0; b < 11; ++b) {
      const int64_t rows = b < 10 ? 10 : 3;
      CHECK(e.indices[b] == static_cast<int64_t>(b));
      CHECK(e.input_shapes[b] == Shape{rows, 3});
      REQUIRE(e.labels[b].size() == static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) {  // input row r belongs to the sample labelled e.labels[b][r]
        const auto i = static_cast<float>(e.labels[b][static_cast<size_t>(r)]);
        CHECK(e.inputs[b][static_cast<size_t>(3 * r)] == i);
        CHECK(e.inputs[b][static_cast<size_t>(3 * r + 2)] == i + 0.25f);
      }
    }
    std::vector<int64_t> all = flat_labels(e);
    CHECK(all == loader.order(epoch));
    if (!shuffle) CHECK(std::is_sorted(all.begin(), all.end()));
    if (shuffle) CHECK(!std::is_sorted(all.begin(), all.end()));
    std::sort(all.begin(), all.end());
    std::vector<int64_t> expected(103);
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(all == expected);
  }
}

TEST_CASE("DataLoader: drop_last and batch counts", "[data][loader]") {
  const Dataset ds = indexed_dataset(103);
  DataLoader keep(ds, {.batch_size = 10, .drop_last = false});
  DataLoader drop(ds, {.batch_size = 10, .drop_last = true});
  CHECK(keep.num_batches() == 11);
  CHECK(drop.num_batches() == 10);
  const Epoch e = run_epoch(drop);
  CHECK(e.labels.size() == 10);
  for (const auto& l : e.labels) CHECK(l.size() == 10);
  std::set<int64_t> seen;
  for (int64_t y : flat_labels(e)) seen.insert(y);
  CHECK(seen.size() == 100);  // distinct samples; the 3 left over are this epoch's last in order
  const std::vector<int64_t> order = drop.order(0);
  for (size_t k = 100; k < 103; ++k) CHECK(seen.count(order[k]) == 0);

  const Dataset even = indexed_dataset(100);
  CHECK(DataLoader(even, {.batch_size = 10, .drop_last = false}).num_batches() == 10);
  CHECK(DataLoader(even, {.batch_size = 10, .drop_last = true}).num_batches() == 10);
  CHECK(DataLoader(even, {.batch_size = 1000, .drop_last = false}).num_batches() == 1);

  DataLoader none(even, {.batch_size = 1000, .drop_last = true});
  CHECK(none.num_batches() == 0);
  int iterations = 0;
  for (const Batch& b : none) {
    (void)b;
    ++iterations;
  }
  CHECK(iterations == 0);
}

TEST_CASE("DataLoader: the order depends only on (seed, epoch)", "[data][loader]") {
  const Dataset ds = indexed_dataset(50);
  DataLoader a(ds, {.batch_size = 8, .seed = 9});
  DataLoader b(ds, {.batch_size = 8, .seed = 9});
  DataLoader other_seed(ds, {.batch_size = 8, .seed = 10});
  a.set_epoch(3);
  b.set_epoch(3);
  other_seed.set_epoch(3);
  const auto a3 = flat_labels(run_epoch(a));
  CHECK(a3 == flat_labels(run_epoch(b)));
  CHECK(a3 != flat_labels(run_epoch(other_seed)));

  // Each loop advances the epoch, so consecutive loops reshuffle; set_epoch replays (resuming).
  CHECK(a.epoch() == 4);
  const auto a4 = flat_labels(run_epoch(a));
  CHECK(a4 != a3);
  CHECK(a4 == a.order(4));
  a.set_epoch(3);
  CHECK(flat_labels(run_epoch(a)) == a3);
  DataLoader fresh(ds, {.batch_size = 8, .seed = 9});
  CHECK(fresh.epoch() == 0);
  CHECK(flat_labels(run_epoch(fresh)) == fresh.order(0));
  CHECK(fresh.order(0) != a3);
  CHECK_THROWS_AS(a.set_epoch(-1), Error);
}

TEST_CASE("DataLoader: prefetch on and off give identical batches", "[data][loader]") {
  const Dataset ds = make_blobs(517, 4, 5, 3);
  auto add_index = [](Batch& b) {  // a transform, run on the prefetch thread when prefetching
    float* x = b.inputs.data<float>();
    for (int64_t k = 0; k < b.inputs.numel(); ++k) x[k] += static_cast<float>(b.index);
  };
  DataLoader on(ds, {.batch_size = 32, .seed = 5, .prefetch = true, .transform = add_index});
  DataLoader off(ds, {.batch_size = 32, .seed = 5, .prefetch = false, .transform = add_index});
  for (int epoch = 0; epoch < 3; ++epoch) {
    const Epoch a = run_epoch(on), b = run_epoch(off);
    CHECK(a.labels == b.labels);
    CHECK(a.inputs == b.inputs);
    CHECK(a.indices == b.indices);
    CHECK(a.labels.size() == 17);
  }
  // The transform really ran: batch 1's inputs are the data set's rows plus 1.
  DataLoader plain(ds, {.batch_size = 32, .seed = 5});
  plain.set_epoch(0);
  on.set_epoch(0);
  const Epoch p = run_epoch(plain), t = run_epoch(on);
  CHECK(t.inputs[1][0] == p.inputs[1][0] + 1.0f);
}

TEST_CASE("DataLoader: batches are fresh contiguous tensors with the data set's row shape", "[data][loader]") {
  const Dataset ds = indexed_dataset(7, Shape{2, 3});
  DataLoader loader(ds, {.batch_size = 4, .shuffle = false});
  int count = 0;
  for (auto [x, y] : loader) {  // structured binding: (inputs, labels)
    CHECK(x.shape() == (count == 0 ? Shape{4, 2, 3} : Shape{3, 2, 3}));
    CHECK(y.shape() == (count == 0 ? Shape{4} : Shape{3}));
    CHECK(x.dtype() == DType::f32);
    CHECK(y.dtype() == DType::i64);
    CHECK(x.impl()->storage != ds.inputs.impl()->storage);
    x.data<float>()[0] = -100.0f;  // writing a batch leaves the data set alone
    ++count;
  }
  CHECK(count == 2);
  CHECK(ds.inputs.data<float>()[0] == 0.0f);
  CHECK(ds.inputs.data<float>()[4 * 6] == 4.0f);
}

TEST_CASE("DataLoader: breaking out early, or dropping the loader, neither hangs nor crashes", "[data][loader]") {
  const Dataset ds = indexed_dataset(2000);
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < 50; ++round) {
    DataLoader loader(ds, {.batch_size = 4, .seed = static_cast<uint64_t>(round)});
    const int stop_after = round % 5;  // 0: run to the end
    int seen = 0;
    for (const Batch& b : loader) {
      CHECK(b.index == seen);
      if (++seen == stop_after) break;
    }
    CHECK(seen == (stop_after ? stop_after : 500));
  }
  // An iterator outlives its loader; destroying a half-used iterator stops the prefetch thread.
  auto loader = std::make_unique<DataLoader>(ds, LoaderOptions{.batch_size = 2});
  auto it = loader->begin();
  loader.reset();
  ++it;
  CHECK(it->index == 1);
  CHECK(it->labels.shape() == Shape{2});
  it = DataLoader::Iterator();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
}

TEST_CASE("DataLoader: an exception while building a batch reaches the consuming loop", "[data][loader]") {
  const bool prefetch = GENERATE(false, true);
  CAPTURE(prefetch);
  const Dataset ds = indexed_dataset(40);
  auto fail_at_3 = [](Batch& b) {
    if (b.index == 3) throw std::runtime_error("augmentation failed on batch 3");
  };
  DataLoader loader(ds, {.batch_size = 5, .prefetch = prefetch, .transform = fail_at_3});
  std::vector<int64_t> got;
  std::string message;
  try {
    for (const Batch& b : loader) got.push_back(b.index);
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  CHECK(message == "augmentation failed on batch 3");
  CHECK(got == std::vector<int64_t>{0, 1, 2});
  // The loader stays usable.
  CHECK_THROWS_WITH(run_epoch(loader), "augmentation failed on batch 3");
}

TEST_CASE("DataLoader: invalid data sets and options are rejected", "[data][loader]") {
  const Dataset ds = indexed_dataset(10);
  CHECK_THAT(error_of([&] { (void)DataLoader(ds, {.batch_size = 0}); }), Contains("batch_size"));
  Dataset bad = ds;
  bad.labels = from_vector(std::vector<int64_t>{1, 2, 3});
  CHECK_THAT(error_of([&] { (void)DataLoader(bad, {}); }), Contains("10 inputs") && Contains("3 labels"));
  CHECK_THROWS_AS(DataLoader(Dataset{}, {}), Error);
  CHECK_THROWS_AS((void)*DataLoader::Iterator(), Error);
}
