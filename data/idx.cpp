#include "data/idx.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"

namespace mixtape::data {
namespace {

// 16 GiB: far beyond any real IDX data set, so a header that declares more is corrupt. Also keeps every
// size computation far from overflow.
constexpr uint64_t kMaxDataBytes = uint64_t{1} << 34;
// The payload is read in chunks of this size into a buffer that grows (at most doubling) only as data arrives,
// so a header that claims more than the file holds costs about what the file holds, not what it claims.
constexpr size_t kChunk = size_t{1} << 20;

struct GzCloser {
  void operator()(gzFile f) const {
    if (f) gzclose(f);
  }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

std::string where(const std::string& path) { return "IDX file '" + path + "'"; }

std::string hex_byte(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
  return buf;
}

const char* idx_type_name(unsigned code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
  }
}

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + ")";
}

// The zlib error state of `f` as text, or "" when none (end of input is not an error).
std::string gz_error_text(gzFile f) {
  int errnum = Z_OK;
  const char* msg = gzerror(f, &errnum);
  if (errnum == Z_OK) return "";
  if (errnum == Z_ERRNO) return std::string("read error: ") + std::strerror(errno);
  return std::string("zlib: ") + (msg ? msg : "unknown error");
}

// True when the compressed stream ended in the middle (zlib's Z_BUF_ERROR "unexpected end of file").
bool gz_stream_cut(gzFile f) {
  int errnum = Z_OK;
  gzerror(f, &errnum);
  return errnum == Z_BUF_ERROR;
}

// Reads up to n bytes; returns how many were read (fewer only at the end of the input). A damaged gzip
// stream or an I/O error throws.
size_t read_some(gzFile f, uint8_t* buf, size_t n, const std::string& path) {
  size_t got = 0;
  while (got < n) {
    const unsigned want = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
    const int r = gzread(f, buf + got, want);
    if (r < 0) {
      const int read_errno = errno;  // the failed read's reason, before building the message can change errno
      int errnum = Z_OK;
      gzerror(f, &errnum);
      if (errnum == Z_ERRNO) throw Error(where(path) + ": read error: " + std::strerror(read_errno));
      throw Error(where(path) + ": corrupt gzip data (" + gz_error_text(f) +
                  "): the file is damaged; download or reinstall it");
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

// What to append to a "truncated" message when the gzip stream itself was cut short.
std::string cut_note(gzFile f) { return gz_stream_cut(f) ? " (the gzip stream ends early)" : ""; }

uint32_t big_endian_u32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

std::string truncated_message(const std::string& path, uint64_t expected, uint64_t found,
                              const std::vector<int64_t>& dims) {
  return where(path) + ": truncated: expected " + std::to_string(expected) + " bytes of data, found " +
         std::to_string(found) + " (dimensions " + dims_string(dims) + ")";
}

// An uncompressed regular file proves its size up front: throws before allocating when it cannot hold the declared
// data; returns whether the size was proven (false for gzip, whose trailer's ISIZE is no proof, and for pipes).
bool check_plain_size(gzFile f, const std::string& path, uint64_t header_bytes, uint64_t expected,
                      const std::vector<int64_t>& dims) {
  if (!gzdirect(f)) return false;
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(path, ec);
  if (ec || size < header_bytes) return false;  // not a regular file: the chunked read decides
  MIXTAPE_CHECK(size - header_bytes >= expected, truncated_message(path, expected, size - header_bytes, dims));
  return true;
}

// Reads `expected` bytes of payload in kChunk pieces; the buffer's capacity never exceeds `expected`, and (for a
// gzip stream, whose size nothing proves) at most doubles what has arrived. Returns fewer bytes at the end of input.
std::vector<uint8_t> read_payload(gzFile f, const std::string& path, uint64_t expected, bool size_proven) {
  std::vector<uint8_t> data;
  if (size_proven) data.reserve(expected);
  size_t got = 0;
  while (got < expected) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(expected - got, kChunk));
    if (data.capacity() < got + want)
      data.reserve(static_cast<size_t>(std::min<uint64_t>(expected, std::max(got + want, 2 * data.capacity()))));
    data.resize(got + want);
    const size_t n = read_some(f, data.data() + got, want, path);
    got += n;
    if (n < want) break;
  }
  data.resize(got);
  return data;
}

}  // namespace

IdxArray read_idx(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  MIXTAPE_CHECK(!ec || ec == std::errc::no_such_file_or_directory, where(path), ": cannot access: ", ec.message());
  MIXTAPE_CHECK(std::filesystem::exists(status), where(path), ": no such file");
  MIXTAPE_CHECK(!std::filesystem::is_directory(status), where(path), ": is a directory, not a file");

  errno = 0;
  GzFile file(gzopen(path.c_str(), "rb"));
  MIXTAPE_CHECK(file != nullptr, where(path), ": cannot open: ", errno ? std::strerror(errno) : "out of memory");
  gzbuffer(file.get(), 1u << 17);

  // Magic: two zero bytes, the element type code, the number of dimensions.
  uint8_t magic[4];
  const size_t got_magic = read_some(file.get(), magic, 4, path);
  MIXTAPE_CHECK(got_magic == 4, where(path), ": truncated: expected a 4-byte header, found ", got_magic, " bytes",
                cut_note(file.get()));
  MIXTAPE_CHECK(magic[0] == 0 && magic[1] == 0, where(path),
                ": not an IDX file: bad magic number (expected the first two bytes to be 0x00 0x00, found ",
                hex_byte(magic[0]), " ", hex_byte(magic[1]), ")");
  MIXTAPE_CHECK(magic[2] == 0x08, where(path), ": unsupported IDX type code ", hex_byte(magic[2]), " (",
                idx_type_name(magic[2]), "): only 0x08 (unsigned byte) is supported");
  const int ndim = magic[3];
  MIXTAPE_CHECK(ndim >= 1 && ndim <= 4, where(path), ": unsupported number of dimensions ", ndim,
                " in the header: expected 1 to 4");

  // Dimensions: big-endian uint32, each positive, the product bounded.
  uint8_t dim_bytes[16];
  const size_t want_dims = 4 * static_cast<size_t>(ndim);
  const size_t got_dims = read_some(file.get(), dim_bytes, want_dims, path);
  MIXTAPE_CHECK(got_dims == want_dims, where(path), ": truncated: expected ", want_dims, " bytes of dimensions for ",
                ndim, " dimensions, found ", got_dims, cut_note(file.get()));
  IdxArray out;
  uint64_t expected = 1;
  for (int i = 0; i < ndim; ++i) {
    const uint32_t d = big_endian_u32(dim_bytes + 4 * i);
    out.dims.push_back(d);
    MIXTAPE_CHECK(d > 0, where(path), ": dimension ", i, " is 0 in the header: every dimension must be positive");
    MIXTAPE_CHECK(expected <= kMaxDataBytes / d, where(path), ": the header declares dimensions ",
                  dims_string(out.dims), "... of more than ", kMaxDataBytes >> 30,
                  " GiB of data: the header is corrupt");
    expected *= d;
  }

  // Data: exactly `expected` bytes.
  const uint64_t header_bytes = 4 + want_dims;
  const bool size_proven = check_plain_size(file.get(), path, header_bytes, expected, out.dims);
  out.data = read_payload(file.get(), path, expected, size_proven);
  MIXTAPE_CHECK(out.data.size() == expected, truncated_message(path, expected, out.data.size(), out.dims),
                cut_note(file.get()));

  // Nothing may follow.
  std::vector<uint8_t> scratch(1u << 16);
  uint64_t extra = 0;
  for (;;) {
    const size_t n = read_some(file.get(), scratch.data(), scratch.size(), path);
    extra += n;
    if (n < scratch.size()) break;
  }
  MIXTAPE_CHECK(extra == 0, where(path), ": ", extra, " trailing bytes after the ", expected,
                " bytes of data declared by dimensions ", dims_string(out.dims),
                ": the header does not match the contents");
  MIXTAPE_CHECK(!gz_stream_cut(file.get()), where(path),
                ": truncated gzip stream (the compressed data ends before its checksum; ", gz_error_text(file.get()),
                ")");
  return out;
}

void write_idx(const std::string& path, const IdxArray& array, bool gzip) {
  const size_t ndim = array.dims.size();
  MIXTAPE_CHECK(ndim >= 1 && ndim <= 4, "write_idx('", path, "'): expected 1 to 4 dimensions, got ", ndim);
  uint64_t expected = 1;
  for (size_t i = 0; i < ndim; ++i) {
    const int64_t d = array.dims[i];
    MIXTAPE_CHECK(d > 0 && d <= int64_t{UINT32_MAX}, "write_idx('", path, "'): dimension ", i, " is ", d,
                  ": expected 1 to 2^32-1");
    MIXTAPE_CHECK(expected <= kMaxDataBytes / static_cast<uint64_t>(d), "write_idx('", path, "'): dimensions ",
                  dims_string(array.dims), " describe more than ", kMaxDataBytes >> 30, " GiB");
    expected *= static_cast<uint64_t>(d);
  }
  MIXTAPE_CHECK(expected == array.data.size(), "write_idx('", path, "'): dimensions ", dims_string(array.dims),
                " hold ", expected, " bytes but data has ", array.data.size());

  std::vector<uint8_t> header = {0, 0, 0x08, static_cast<uint8_t>(ndim)};
  for (int64_t d : array.dims) {
    const auto u = static_cast<uint32_t>(d);
    header.insert(header.end(), {static_cast<uint8_t>(u >> 24), static_cast<uint8_t>(u >> 16),
                                 static_cast<uint8_t>(u >> 8), static_cast<uint8_t>(u)});
  }

  errno = 0;
  gzFile f = gzopen(path.c_str(), gzip ? "wb" : "wbT");  // "T": plain (transparent) writing
  MIXTAPE_CHECK(f != nullptr, "write_idx: cannot create '", path, "': ", errno ? std::strerror(errno) : "out of memory");
  GzFile file(f);
  auto write_all = [&](const uint8_t* p, size_t n) {
    while (n > 0) {
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n, size_t{1} << 30));
      const int w = gzwrite(file.get(), p, chunk);
      MIXTAPE_CHECK(w > 0, "write_idx: cannot write '", path, "': ", gz_error_text(file.get()));
      p += w;
      n -= static_cast<size_t>(w);
    }
  };
  write_all(header.data(), header.size());
  write_all(array.data.data(), array.data.size());
  errno = 0;
  const int rc = gzclose(file.release());
  MIXTAPE_CHECK(rc == Z_OK, "write_idx: cannot finish writing '", path, "' (zlib code ", rc, ")",
                errno ? std::string(": ") + std::strerror(errno) : std::string());
}

}  // namespace mixtape::data
