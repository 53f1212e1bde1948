// Character-level text data (data/text.h): strict UTF-8, the vocabulary, the split, random windows, the default
// corpus from Debian's fortunes package (skipped, saying so, where it is not installed), and the errors.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/text.h"
#include "test_util.h"

using namespace mixtape;

namespace {

/// Writes `bytes` to the file `name` of `dir`; returns its path.
std::string write_file(const testing::TempDir& dir, const std::string& name, const std::string& bytes) {
  std::ofstream(dir.file(name), std::ios::binary) << bytes;
  return dir.file(name);
}

}  // namespace

TEST_CASE("UTF-8: multi-byte characters round-trip, and invalid sequences are errors naming the byte", "[data][text]") {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z
  const std::u32string u = data::decode_utf8(s, "t");
  REQUIRE(u.size() == 5);
  CHECK(u[1] == U'\u00e9');
  CHECK(u[2] == U'\u20ac');
  CHECK(u[3] == U'\U0001F600');
  CHECK(data::encode_utf8(u) == s);
  CHECK_THROWS_WITH(data::decode_utf8("ab\xC3", "f"), Catch::Contains("f: invalid UTF-8 at byte 2") && Catch::Contains("cut off"));
  CHECK_THROWS_WITH(data::decode_utf8("\xC0\xAF", "f"), Catch::Contains("overlong"));
  CHECK_THROWS_WITH(data::decode_utf8("\xED\xA0\x80", "f"), Catch::Contains("surrogate"));
  CHECK_THROWS_WITH(data::decode_utf8("x\xFF", "f"), Catch::Contains("byte 1"));
  CHECK_THROWS_WITH(data::decode_utf8("\xE2\x28\xA1", "f"), Catch::Contains("continuation byte"));
}

TEST_CASE("the vocabulary: distinct characters in code-point order, saved and restored, unknown ones named",
          "[data][text]") {
  const data::CharVocab v = data::CharVocab::from_text(data::decode_utf8("banana\xC3\xA9!", "t"));
  CHECK(v.size() == 5);  // ! a b n é
  CHECK(v.encode("ab!") == std::vector<int64_t>{1, 2, 0});
  CHECK(v.decode({4, 3}) == "\xC3\xA9n");
  const data::CharVocab w = data::CharVocab::from_chars(v.chars_utf8());
  CHECK(w.encode("n\xC3\xA9") == v.encode("n\xC3\xA9"));
  CHECK_THROWS_WITH(v.encode("abc", "--prompt"), Catch::Contains("--prompt: the character 'c' (U+0063) is not in the vocabulary"));
  CHECK_THROWS_WITH(data::CharVocab::from_chars("ba"), Catch::Contains("ascending"));
  CHECK_THROWS_WITH(v.decode({5}), Catch::Contains("outside [0, 5)"));
}

TEST_CASE("load_text splits the text, keeps a saved vocabulary's ids, and names what is wrong", "[data][text]") {
  const testing::TempDir dir;
  const std::string path = write_file(dir, "split.txt", "abcdefghij");
  const data::TextCorpus c = data::load_text(path, 0.3);
  CHECK(c.characters == 10);
  CHECK(c.vocab.size() == 10);
  CHECK(c.train.to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6});
  CHECK(c.validation.to_vector<int64_t>() == std::vector<int64_t>{7, 8, 9});
  // with a larger saved vocabulary, its ids
  const data::CharVocab big = data::CharVocab::from_text(U"0abcdefghij");
  CHECK(data::load_text(path, 0.3, &big).train.to_vector<int64_t>()[0] == 1);
  const data::CharVocab small = data::CharVocab::from_text(U"abc");
  CHECK_THROWS_WITH(data::load_text(path, 0.3, &small), Catch::Contains("'d' (U+0064) is not in the vocabulary"));
  CHECK_THROWS_WITH(data::load_text(path, 0.3, nullptr, 5), Catch::Contains("too little text"));
  CHECK_THROWS_WITH(data::load_text(path + ".missing"), Catch::Contains("does not exist"));
  CHECK_THROWS_WITH(data::load_text(write_file(dir, "bad.txt", "ok\xFF"), 0.3), Catch::Contains("invalid UTF-8 at byte 2"));
}

TEST_CASE("random windows: y is x one character on, inside the text, the same for the same generator state",
          "[data][text]") {
  std::vector<int64_t> ids(100);
  for (int64_t i = 0; i < 100; ++i) ids[static_cast<size_t>(i)] = i;
  const Tensor t = from_vector<int64_t>(ids, Shape{100});
  Generator g1(5), g2(5);
  const auto [x, y] = data::sample_windows(t, 16, 10, g1);
  REQUIRE(x.shape() == Shape{16, 10});
  const std::vector<int64_t> xv = x.to_vector<int64_t>(), yv = y.to_vector<int64_t>();
  bool varied = false;
  for (int64_t b = 0; b < 16; ++b) {
    const int64_t s = xv[static_cast<size_t>(b * 10)];
    CHECK(s >= 0);
    CHECK(s + 10 <= 99);  // the last window's next character exists
    varied = varied || s != xv[0];
    for (int64_t k = 0; k < 10; ++k) {
      CHECK(xv[static_cast<size_t>(b * 10 + k)] == s + k);
      CHECK(yv[static_cast<size_t>(b * 10 + k)] == s + k + 1);
    }
  }
  CHECK(varied);
  CHECK(data::sample_windows(t, 16, 10, g2).first.to_vector<int64_t>() == xv);
  Generator g3(5);
  CHECK_THROWS_WITH(data::sample_windows(t, 1, 100, g3), Catch::Contains("no window of 100"));
}

TEST_CASE("the default corpus: the fortunes package's quotations without their % separators", "[data][text]") {
  if (!std::filesystem::exists(data::default_text_dir() + "/literature")) {
    WARN("skipping: Debian's fortunes package is not installed (" << data::default_text_dir() << ")");
    return;
  }
  const data::TextCorpus c = data::load_default_text();
  CHECK(c.characters > 1000000);
  CHECK(c.vocab.size() > 60);
  CHECK(c.vocab.size() < 200);
  CHECK(c.validation.numel() == c.characters / 10);
  // no line consisting of "%" alone survives
  const std::vector<int64_t> ids = c.train.to_vector<int64_t>();
  const std::string head = c.vocab.decode(std::vector<int64_t>(ids.begin(), ids.begin() + 20000));
  CHECK(head.find("\n%\n") == std::string::npos);
  CHECK(head.find("Mark Twain") != std::string::npos);
}
