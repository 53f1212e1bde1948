#pragma once
// Character-level text for language models (the GPT demo): a UTF-8 file read as Unicode code points, a vocabulary
// built from the characters it holds (stored in checkpoints, so sampling and resuming use the same ids), a
// train/validation split, and random contiguous windows for training.
//
//   data::TextCorpus text = data::load_text(path);          // or load_default_text()
//   auto [x, y] = data::sample_windows(text.train, 32, 64, gen);   // (32, 64) ids and the ids one further
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace mixtape::data {

/// Code points of UTF-8 text; throws mixtape::Error naming `what` and the byte offset of an invalid sequence
/// (truncated, overlong, a surrogate, beyond U+10FFFF).
std::u32string decode_utf8(const std::string& bytes, const std::string& what);
/// UTF-8 of code points.
std::string encode_utf8(const std::u32string& text);

/// The characters of a text, each with an id: ids follow ascending code points.
class CharVocab {
 public:
  CharVocab() = default;
  /// The distinct characters of `text`.
  static CharVocab from_text(const std::u32string& text);
  /// The vocabulary whose characters are `chars_utf8` in id order (as chars_utf8() wrote them); throws when they are
  /// not distinct and ascending.
  static CharVocab from_chars(const std::string& chars_utf8);
  int64_t size() const { return static_cast<int64_t>(chars_.size()); }
  /// The id of a character; throws naming it (and `what`) when the vocabulary lacks it.
  int64_t id(char32_t c, const std::string& what = "text") const;
  /// Ids of UTF-8 text (every character must be in the vocabulary).
  std::vector<int64_t> encode(const std::string& utf8, const std::string& what = "text") const;
  /// UTF-8 of ids (each in [0, size())).
  std::string decode(const std::vector<int64_t>& ids) const;
  /// The characters in id order, as UTF-8 (for checkpoints).
  std::string chars_utf8() const { return encode_utf8(chars_); }

 private:
  std::u32string chars_;
};

/// A text split for training: the first part trains, the last validation_fraction validates.
struct TextCorpus {
  CharVocab vocab;
  Tensor train, validation;  ///< i64 ids (n)
  std::string source;        ///< where the text came from
  int64_t characters = 0;
};

/// Reads a UTF-8 text file and splits it. With `vocab`, its ids are used (every character of the file must be in
/// it: a checkpoint's vocabulary); otherwise the vocabulary is the file's characters. Throws mixtape::Error naming
/// the file for a missing or unreadable file, invalid UTF-8, too little text (each part needs at least
/// min_part_chars characters), or characters outside `vocab`.
TextCorpus load_text(const std::string& path, double validation_fraction = 0.1, const CharVocab* vocab = nullptr,
                     int64_t min_part_chars = 2);

/// The default corpus: the quotations of Debian's `fortunes` package (about 1.2 MB of English text from the files
/// listed in default_text_files(), in that order, their "%" separator lines left out), split as load_text does.
/// Throws naming the package when its files are missing.
TextCorpus load_default_text(double validation_fraction = 0.1, const CharVocab* vocab = nullptr,
                             int64_t min_part_chars = 2);
/// Where the fortunes package puts its files, and the files the default corpus reads.
std::string default_text_dir();
std::vector<std::string> default_text_files();

/// `batch` windows of `context` consecutive ids of `ids` at random starts (uniform, drawn from gen): x (batch,
/// context) and y, the ids one position further (the next character of each). ids must hold more than context.
std::pair<Tensor, Tensor> sample_windows(const Tensor& ids, int64_t batch, int64_t context, Generator& gen);

}  // namespace mixtape::data
