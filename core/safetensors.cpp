#include "core/safetensors.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/atomic_file.h"
#include "core/json_limits.h"

namespace mixtape {

namespace {

constexpr const char* kDataCrc = "mixtape.data_crc32";
constexpr const char* kHeaderCrc = "mixtape.header_crc32";
constexpr uint64_t kMaxHeader = 100u << 20;  // 100 MiB of JSON is far beyond any real header

const char* st_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::f64: return "F64";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "?";
}

bool parse_st_dtype(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {{"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16},
                                                        {"F64", DType::f64}, {"I64", DType::i64}, {"U8", DType::u8}};
  for (const auto& [name, t] : table)
    if (s == name) {
      out = t;
      return true;
    }
  return false;
}

uint32_t crc_of(const void* data, size_t n, uint32_t crc = 0) {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, 1u << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(c);
}

/// CRC of the header without the checksum entries (nlohmann's objects are sorted, so this is canonical).
uint32_t header_crc(nlohmann::json header) {
  if (header.contains("__metadata__")) {
    header["__metadata__"].erase(kDataCrc);
    header["__metadata__"].erase(kHeaderCrc);
  }
  const std::string s = header.dump();
  return crc_of(s.data(), s.size());
}


/// One tensor of a header, validated.
struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

/// Validates the header entry of tensor `name` (every number in it is hostile: types, signs, the element count and
/// the byte count are checked for overflow before anything is allocated).
Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& e, uint64_t data_len) {
  auto where = [&] { return detail::cat("'", path, "': tensor '", name, "'"); };
  MIXTAPE_CHECK(e.is_object(), where(), " must be an object, got ", json_limits::brief(e));
  for (auto k = e.begin(); k != e.end(); ++k)
    MIXTAPE_CHECK(k.key() == "dtype" || k.key() == "shape" || k.key() == "data_offsets", where(), " has an unexpected key '",
                  k.key(), "' (expected dtype, shape and data_offsets)");
  MIXTAPE_CHECK(e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), where(),
                " lacks dtype, shape or data_offsets");
  Entry entry;
  entry.name = name;
  const auto& dtype = e["dtype"];
  MIXTAPE_CHECK(dtype.is_string() && parse_st_dtype(dtype.get<std::string>(), entry.dtype), where(),
                " has unsupported dtype ", json_limits::brief(dtype), " (expected F32, F16, BF16, F64, I64 or U8)");
  const auto& shape = e["shape"];
  MIXTAPE_CHECK(shape.is_array() && shape.size() <= static_cast<size_t>(Shape::kMaxDims), where(), " has a bad shape ",
                json_limits::brief(shape), " (expected a list of at most ", Shape::kMaxDims, " non-negative integers)");
  uint64_t numel = 1;
  for (const auto& d : shape) {
    MIXTAPE_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0), where(),
                  " has a bad shape ", json_limits::brief(shape), " (dimensions are non-negative integers)");
    const uint64_t v = d.get<uint64_t>();
    MIXTAPE_CHECK(v <= static_cast<uint64_t>(INT64_MAX) && !__builtin_mul_overflow(numel, v, &numel) &&
                      numel <= static_cast<uint64_t>(INT64_MAX),
                  where(), " has shape ", json_limits::brief(shape), ", more elements than can exist");
    entry.shape.push_back(static_cast<int64_t>(v));
  }
  uint64_t want = 0;
  MIXTAPE_CHECK(!__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(entry.dtype)), &want), where(),
                " of shape ", entry.shape.to_string(), " has more bytes than can exist");
  const auto& off = e["data_offsets"];
  MIXTAPE_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), where(),
                " has bad data_offsets ", json_limits::brief(off), " (expected [begin, end])");
  entry.begin = off[0].get<uint64_t>();
  entry.end = off[1].get<uint64_t>();
  MIXTAPE_CHECK(entry.end >= entry.begin && entry.end - entry.begin == want, where(), " of shape ",
                entry.shape.to_string(), " needs ", want, " bytes but its offsets [", entry.begin, ", ", entry.end,
                "] span ", entry.end >= entry.begin ? entry.end - entry.begin : 0);
  MIXTAPE_CHECK(entry.end <= data_len, "'", path, "' is truncated: tensor '", name, "' ends at byte ", entry.end,
                " of the data but only ", data_len, " bytes are present");
  return entry;
}

}  // namespace

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [k, v] : metadata) {
    MIXTAPE_CHECK(k != kDataCrc && k != kHeaderCrc, "save_safetensors: metadata key '", k, "' is reserved");
    meta[k] = v;
  }
  std::vector<Tensor> host;
  uint64_t offset = 0;
  uint32_t data_crc = 0;
  for (const auto& [name, t] : tensors) {
    MIXTAPE_CHECK(name != "__metadata__" && !name.empty(), "save_safetensors: invalid tensor name '", name, "'");
    MIXTAPE_CHECK(t.defined(), "save_safetensors: tensor '", name, "' is undefined");
    const Tensor h = t.to(Device::cpu());
    header[name] = {{"dtype", st_dtype(h.dtype())},
                    {"shape", h.shape().vec()},
                    {"data_offsets", {offset, offset + h.nbytes()}}};
    offset += h.nbytes();
    data_crc = crc_of(h.raw_data(), h.nbytes(), data_crc);
    host.push_back(h);
  }
  meta[kDataCrc] = std::to_string(data_crc);
  header["__metadata__"] = meta;
  header["__metadata__"][kHeaderCrc] = std::to_string(header_crc(header));
  std::string json = header.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // align the data to 8 bytes, as the format recommends

  write_file_atomically(path, [&](std::FILE* f) {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(json.size()) >> (8 * i));
    bool ok = std::fwrite(len, 1, 8, f) == 8;
    ok = ok && std::fwrite(json.data(), 1, json.size(), f) == json.size();
    for (const Tensor& h : host) ok = ok && (h.nbytes() == 0 || std::fwrite(h.raw_data(), 1, h.nbytes(), f) == h.nbytes());
    return ok;
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MIXTAPE_CHECK(in.good(), "cannot open '", path, "': ", std::filesystem::exists(path) ? "permission denied" : "no such file");
  in.seekg(0, std::ios::end);
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  MIXTAPE_CHECK(file_size >= 8, "'", path, "' is not a safetensors file: ", file_size, " bytes is too short for a header");
  uint8_t len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(len[i]) << (8 * i);
  MIXTAPE_CHECK(header_len <= kMaxHeader && header_len <= file_size - 8, "'", path,
                "' is truncated or corrupt: its header claims ", header_len, " bytes but the file has ", file_size, " bytes");
  std::string json(header_len, '\0');
  in.read(json.data(), static_cast<std::streamsize>(header_len));
  MIXTAPE_CHECK(static_cast<uint64_t>(in.gcount()) == header_len, "'", path, "': read error in the header");
  // The format's header is an object of objects holding strings and flat lists of numbers: depth 3 at most
  // (the numbers of a shape).
  const nlohmann::json header = json_limits::parse(json, 3, detail::cat("'", path, "' has a corrupt header"));
  MIXTAPE_CHECK(header.is_object(), "'", path, "' has a corrupt header: expected a JSON object, got ",
                json_limits::brief(header));

  SafetensorsFile out;
  const uint64_t data_len = file_size - 8 - header_len;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      MIXTAPE_CHECK(it->is_object(), "'", path, "': __metadata__ must be an object of strings, got ",
                    json_limits::brief(*it));
      for (auto m = it->begin(); m != it->end(); ++m) {
        MIXTAPE_CHECK(m->is_string(), "'", path, "': metadata '", m.key(), "' is not a string but ",
                      json_limits::brief(*m));
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, it.key(), *it, data_len));
  }
  // The tensors must tile the data region exactly (the format's rule), which also catches trailing bytes.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  uint64_t cursor = 0;
  for (const Entry& e : entries) {
    MIXTAPE_CHECK(e.begin == cursor, "'", path, "': tensor '", e.name, "' overlaps or leaves a gap in the data (starts at ",
                  e.begin, ", expected ", cursor, ")");
    cursor = e.end;
  }
  MIXTAPE_CHECK(cursor == data_len, "'", path, "' has ", data_len - cursor, " unexpected bytes after its tensors");

  std::vector<char> data(data_len);
  in.read(data.data(), static_cast<std::streamsize>(data_len));
  MIXTAPE_CHECK(static_cast<uint64_t>(in.gcount()) == data_len, "'", path, "': read error");
  if (auto it = out.metadata.find(kHeaderCrc); it != out.metadata.end()) {
    MIXTAPE_CHECK(it->second == std::to_string(header_crc(header)), "'", path,
                  "' is corrupt: its header checksum does not match (the file was altered)");
  }
  if (auto it = out.metadata.find(kDataCrc); it != out.metadata.end()) {
    // Checksums are over the tensors in name order, as written.
    uint32_t crc = 0;
    std::vector<const Entry*> by_name;
    for (const Entry& e : entries) by_name.push_back(&e);
    std::sort(by_name.begin(), by_name.end(), [](const Entry* a, const Entry* b) { return a->name < b->name; });
    for (const Entry* e : by_name) crc = crc_of(data.data() + e->begin, e->end - e->begin, crc);
    MIXTAPE_CHECK(it->second == std::to_string(crc), "'", path,
                  "' is corrupt: its data checksum does not match (the file was altered or damaged)");
  }
  out.metadata.erase(kDataCrc);
  out.metadata.erase(kHeaderCrc);
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (t.nbytes()) std::memcpy(t.raw_data(), data.data() + e.begin, t.nbytes());
    out.tensors[e.name] = t;
  }
  return out;
}

}  // namespace mixtape
