// Character-level text (data/text.h).
#include "data/text.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>

#include "core/error.h"

namespace mixtape::data {

std::u32string decode_utf8(const std::string& bytes, const std::string& what) {
  std::u32string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = p[i];
    int len = 0;
    char32_t c = 0, min = 0;
    if (b < 0x80) {
      out.push_back(b);
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2, c = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3, c = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4, c = b & 0x07, min = 0x10000;
    } else {
      throw Error(detail::cat(what, ": invalid UTF-8 at byte ", i, " (byte 0x", std::hex, static_cast<int>(b), std::dec,
                              " cannot start a character); the text must be UTF-8"));
    }
    MIXTAPE_CHECK(i + static_cast<size_t>(len) <= n, what, ": invalid UTF-8 at byte ", i,
                  " (a character cut off by the end of the file)");
    for (int k = 1; k < len; ++k) {
      const unsigned char cont = p[i + static_cast<size_t>(k)];
      MIXTAPE_CHECK((cont & 0xC0) == 0x80, what, ": invalid UTF-8 at byte ", i + static_cast<size_t>(k),
                    " (a character's continuation byte expected)");
      c = (c << 6) | (cont & 0x3F);
    }
    MIXTAPE_CHECK(c >= min && c <= 0x10FFFF && (c < 0xD800 || c > 0xDFFF), what, ": invalid UTF-8 at byte ", i,
                  " (an overlong form, a surrogate or a value beyond U+10FFFF)");
    out.push_back(c);
    i += static_cast<size_t>(len);
  }
  return out;
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

CharVocab CharVocab::from_text(const std::u32string& text) {
  CharVocab v;
  v.chars_ = text;
  std::sort(v.chars_.begin(), v.chars_.end());
  v.chars_.erase(std::unique(v.chars_.begin(), v.chars_.end()), v.chars_.end());
  return v;
}

CharVocab CharVocab::from_chars(const std::string& chars_utf8) {
  CharVocab v;
  v.chars_ = decode_utf8(chars_utf8, "the vocabulary");
  for (size_t i = 1; i < v.chars_.size(); ++i)
    MIXTAPE_CHECK(v.chars_[i - 1] < v.chars_[i], "the vocabulary's characters are not distinct and in ascending order");
  return v;
}

int64_t CharVocab::id(char32_t c, const std::string& what) const {
  const auto it = std::lower_bound(chars_.begin(), chars_.end(), c);
  if (it == chars_.end() || *it != c) {
    std::ostringstream name;
    if (c >= 0x20 && c != 0x7F) name << "'" << encode_utf8(std::u32string(1, c)) << "' ";
    name << "(U+" << std::hex << std::uppercase << std::setw(4) << std::setfill('0') << static_cast<uint32_t>(c) << ")";
    throw Error(detail::cat(what, ": the character ", name.str(), " is not in the vocabulary of ", chars_.size(),
                            " characters"));
  }
  return it - chars_.begin();
}

std::vector<int64_t> CharVocab::encode(const std::string& utf8, const std::string& what) const {
  std::vector<int64_t> ids;
  for (char32_t c : decode_utf8(utf8, what)) ids.push_back(id(c, what));
  return ids;
}

std::string CharVocab::decode(const std::vector<int64_t>& ids) const {
  std::u32string s;
  for (int64_t i : ids) {
    MIXTAPE_CHECK(i >= 0 && i < size(), "CharVocab::decode: id ", i, " is outside [0, ", size(), ")");
    s.push_back(chars_[static_cast<size_t>(i)]);
  }
  return encode_utf8(s);
}

namespace {

std::string read_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  MIXTAPE_CHECK(std::filesystem::is_regular_file(path, ec), what, ": '", path, "' is not a readable file",
                std::filesystem::exists(path, ec) ? "" : " (it does not exist)");
  std::ifstream in(path, std::ios::binary);
  MIXTAPE_CHECK(in.good(), what, ": cannot open '", path, "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  MIXTAPE_CHECK(!in.bad(), what, ": reading '", path, "' failed");
  return ss.str();
}

TextCorpus split(const std::u32string& text, const std::string& source, double fraction, const CharVocab* vocab,
                 int64_t min_part) {
  MIXTAPE_CHECK(std::isfinite(fraction) && fraction > 0 && fraction < 1, "the validation fraction must be in (0, 1), got ",
                fraction);
  TextCorpus c;
  c.source = source;
  c.characters = static_cast<int64_t>(text.size());
  c.vocab = vocab != nullptr ? *vocab : CharVocab::from_text(text);
  const int64_t n = c.characters;
  const int64_t n_val = static_cast<int64_t>(std::floor(static_cast<double>(n) * fraction));
  const int64_t n_train = n - n_val;
  MIXTAPE_CHECK(n_train >= min_part && n_val >= min_part, source, ": ", n, " characters is too little text: training "
                "and validation need at least ", min_part, " characters each (", n_train, " and ", n_val, " here)");
  Tensor ids = Tensor::empty(Shape{n}, DType::i64);
  int64_t* p = ids.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = c.vocab.id(text[static_cast<size_t>(i)], source);
  c.train = Tensor::empty(Shape{n_train}, DType::i64);
  c.validation = Tensor::empty(Shape{n_val}, DType::i64);
  std::copy(p, p + n_train, c.train.data<int64_t>());
  std::copy(p + n_train, p + n, c.validation.data<int64_t>());
  return c;
}

}  // namespace

TextCorpus load_text(const std::string& path, double fraction, const CharVocab* vocab, int64_t min_part) {
  const std::string what = "--data " + path;
  return split(decode_utf8(read_file(path, what), what), path, fraction, vocab, min_part);
}

std::string default_text_dir() { return "/usr/share/games/fortunes"; }

std::vector<std::string> default_text_files() {
  // the prose and verse of the collection (its ASCII-art and one-liner files left out)
  return {"literature", "wisdom", "fortunes", "humorists", "people", "platitudes", "science", "songs-poems",
          "love", "politics", "education", "work", "pets", "food", "men-women", "miscellaneous"};
}

TextCorpus load_default_text(double fraction, const CharVocab* vocab, int64_t min_part) {
  std::u32string text;
  for (const std::string& name : default_text_files()) {
    const std::string path = (std::filesystem::path(default_text_dir()) / name).string();
    std::error_code ec;
    MIXTAPE_CHECK(std::filesystem::is_regular_file(path, ec), "the default text corpus needs Debian's fortunes package (",
                  path, " is missing): run scripts/setup or `apt-get install fortunes`, or pass --data FILE with any "
                  "UTF-8 text");
    const std::u32string part = decode_utf8(read_file(path, path), path);
    // drop the "%" lines that separate the quotations, and the backspaces of overstruck characters
    std::u32string line;
    for (size_t i = 0; i <= part.size(); ++i) {
      if (i == part.size() || part[i] == U'\n') {
        if (line != U"%") {
          text += line;
          if (i < part.size()) text.push_back(U'\n');
        }
        line.clear();
      } else if (part[i] == U'\b') {
        if (!line.empty()) line.pop_back();
      } else {
        line.push_back(part[i]);
      }
    }
  }
  return split(text, default_text_dir() + " (fortunes)", fraction, vocab, min_part);
}

std::pair<Tensor, Tensor> sample_windows(const Tensor& ids, int64_t batch, int64_t context, Generator& gen) {
  MIXTAPE_CHECK(ids.defined() && ids.dtype() == DType::i64 && ids.dim() == 1, "sample_windows: expected 1-D i64 ids");
  MIXTAPE_CHECK(batch >= 1 && context >= 1, "sample_windows: batch and context must be positive, got ", batch, " and ",
                context);
  const int64_t n = ids.numel();
  MIXTAPE_CHECK(n > context, "sample_windows: ", n, " characters hold no window of ", context,
                " plus the next character: use a shorter --context or more text");
  const std::vector<double> u = rand(Shape{batch}, DType::f64, Device::cpu(), &gen, 0.0, 1.0).to_vector<double>();
  Tensor x = Tensor::empty(Shape{batch, context}, DType::i64), y = Tensor::empty(Shape{batch, context}, DType::i64);
  const int64_t* src = ids.data<int64_t>();
  const int64_t starts = n - context;  // a window at s needs ids s .. s + context
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t s = std::min<int64_t>(static_cast<int64_t>(u[static_cast<size_t>(b)] * static_cast<double>(starts)), starts - 1);
    std::copy(src + s, src + s + context, x.data<int64_t>() + b * context);
    std::copy(src + s + 1, src + s + 1 + context, y.data<int64_t>() + b * context);
  }
  return {x, y};
}

}  // namespace mixtape::data
