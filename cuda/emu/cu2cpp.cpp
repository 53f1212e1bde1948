// cu2cpp: turns a CUDA source (.cu/.cuh) into host C++ for the emulation build (MIXTAPE_CUDA_EMU). Two rewrites,
// nothing else changes (comments, strings and line numbers are kept, and a #line directive names the original):
//
//   name<targs><<<grid, block, shmem, stream>>>(args)
//     -> ::mixtape::emu::launch(::mixtape::emu::make_cfg(grid, block, shmem, stream), "name<targs>", __FILE__,
//                               __LINE__, [](auto&... a) { name<targs>(a...); })(args)
//   __shared__ T a[N], b;             -> static T a[N], b; ::mixtape::emu::shared_var(&a, sizeof(a)); ...
//   extern __shared__ T buf[];        -> T* buf = ::mixtape::emu::dynamic_shared<T>();
//
// Usage: cu2cpp INPUT OUTPUT [NAME_IN_LINE_DIRECTIVE]. Exit status 1 with a message naming the line on input it
// cannot rewrite (an unterminated launch or declaration).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

/// Line number (1-based) of offset `pos` in `s`.
int line_of(const std::string& s, size_t pos) {
  int line = 1;
  for (size_t i = 0; i < pos && i < s.size(); ++i) line += s[i] == '\n';
  return line;
}

/// Marks which bytes of `s` are code (not inside a comment, string or character literal).
std::vector<bool> code_mask(const std::string& s) {
  std::vector<bool> code(s.size(), true);
  size_t i = 0;
  while (i < s.size()) {
    if (s.compare(i, 2, "//") == 0) {
      while (i < s.size() && s[i] != '\n') code[i++] = false;
    } else if (s.compare(i, 2, "/*") == 0) {
      const size_t end = s.find("*/", i + 2);
      const size_t stop = end == std::string::npos ? s.size() : end + 2;
      while (i < stop) code[i++] = false;
    } else if (s[i] == '"' || s[i] == '\'') {
      const char q = s[i];
      code[i++] = false;
      while (i < s.size() && s[i] != q && s[i] != '\n') {
        if (s[i] == '\\' && i + 1 < s.size()) code[i++] = false;
        code[i++] = false;
      }
      if (i < s.size()) code[i++] = false;
    } else {
      ++i;
    }
  }
  return code;
}

/// Start of the kernel name (with its template arguments) that ends just before `pos` ('<<<').
size_t name_start(const std::string& s, size_t pos) {
  size_t j = pos;
  while (j > 0 && std::isspace(static_cast<unsigned char>(s[j - 1]))) --j;
  if (j > 0 && s[j - 1] == '>') {  // template argument list: walk back to its '<'
    int depth = 0;
    while (j > 0) {
      --j;
      if (s[j] == '>') ++depth;
      else if (s[j] == '<' && --depth == 0) break;
    }
  }
  while (j > 0 && (is_ident(s[j - 1]) || s[j - 1] == ':')) --j;
  return j;
}

/// Collapses runs of whitespace (including escaped newlines) to single spaces, for a string literal.
std::string one_line(const std::string& t) {
  std::string out;
  bool space = false;
  for (char c : t) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '\\') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c == '"' ? '\'' : c;
  }
  return out;
}

/// Offset of the ';' ending the declaration that starts at `from`, skipping nested brackets.
size_t statement_end(const std::string& s, const std::vector<bool>& code, size_t from) {
  int depth = 0;
  for (size_t i = from; i < s.size(); ++i) {
    if (!code[i]) continue;
    const char c = s[i];
    if (c == '(' || c == '[' || c == '{') ++depth;
    else if (c == ')' || c == ']' || c == '}') --depth;
    else if (c == ';' && depth == 0) return i;
  }
  return std::string::npos;
}

/// Splits a declarator list at top-level commas.
std::vector<std::string> split_declarators(const std::string& d) {
  std::vector<std::string> parts;
  int depth = 0;
  std::string cur;
  for (char c : d) {
    if (c == '(' || c == '[' || c == '<') ++depth;
    if (c == ')' || c == ']' || c == '>') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

/// The declared name of one declarator ("float a[8][33]" -> "a", "s_shift" -> "s_shift").
std::string declared_name(const std::string& part) {
  std::string p = part;
  const size_t bracket = p.find('[');
  if (bracket != std::string::npos) p = p.substr(0, bracket);
  size_t e = p.size();
  while (e > 0 && !is_ident(p[e - 1])) --e;
  size_t b = e;
  while (b > 0 && is_ident(p[b - 1])) --b;
  return p.substr(b, e - b);
}

/// Removes __align__(n) / alignas(n) from a type spelling.
std::string strip_alignment(std::string t) {
  for (const char* kw : {"__align__", "alignas"}) {
    for (size_t p; (p = t.find(kw)) != std::string::npos;) {
      const size_t open = t.find('(', p), close = t.find(')', open);
      if (open == std::string::npos || close == std::string::npos) break;
      t.erase(p, close + 1 - p);
    }
  }
  return t;
}

struct Edit {
  size_t begin, end;
  std::string text;
};

void rewrite_launches(const std::string& s, const std::vector<bool>& code, std::vector<Edit>& edits) {
  for (size_t pos = s.find("<<<"); pos != std::string::npos; pos = s.find("<<<", pos + 3)) {
    if (!code[pos]) continue;
    int depth = 0;
    size_t close = std::string::npos;
    for (size_t i = pos + 3; i + 2 < s.size(); ++i) {
      if (!code[i]) continue;
      if (s[i] == '(') ++depth;
      else if (s[i] == ')') --depth;
      else if (depth == 0 && s.compare(i, 3, ">>>") == 0) {
        close = i;
        break;
      }
    }
    if (close == std::string::npos)
      throw std::runtime_error("line " + std::to_string(line_of(s, pos)) + ": '<<<' without a matching '>>>'");
    const size_t start = name_start(s, pos);
    const std::string name = s.substr(start, pos - start);
    const std::string cfg = s.substr(pos + 3, close - pos - 3);
    edits.push_back({start, close + 3,
                     "::mixtape::emu::launch(::mixtape::emu::make_cfg(" + cfg + "), \"" + one_line(name) +
                         "\", __FILE__, __LINE__, [](auto&... mixtape_emu_a) { " + name + "(mixtape_emu_a...); })"});
    pos = close;
  }
}

void rewrite_shared(const std::string& s, const std::vector<bool>& code, std::vector<Edit>& edits) {
  const std::string kw = "__shared__";
  for (size_t pos = s.find(kw); pos != std::string::npos; pos = s.find(kw, pos + kw.size())) {
    if (!code[pos] || (pos > 0 && is_ident(s[pos - 1])) || is_ident(s[pos + kw.size()])) continue;
    // `#define __shared__ ...` and the like are preprocessor lines: leave them alone
    size_t line_begin = s.rfind('\n', pos);
    line_begin = line_begin == std::string::npos ? 0 : line_begin + 1;
    const size_t first = s.find_first_not_of(" \t", line_begin);
    if (first != std::string::npos && s[first] == '#' && s.compare(first, 7, "#define") != 0) continue;
    const size_t end = statement_end(s, code, pos);
    if (end == std::string::npos)
      throw std::runtime_error("line " + std::to_string(line_of(s, pos)) + ": __shared__ declaration without ';'");
    const std::string decl = s.substr(pos + kw.size(), end - pos - kw.size());
    // extern __shared__: dynamic shared memory
    size_t before = pos;
    while (before > 0 && std::isspace(static_cast<unsigned char>(s[before - 1]))) --before;
    if (before >= 6 && s.compare(before - 6, 6, "extern") == 0 && (before == 6 || !is_ident(s[before - 7]))) {
      const std::string name = declared_name(decl);
      const size_t name_at = decl.rfind(name, decl.find('['));
      const std::string type = strip_alignment(decl.substr(0, name_at));
      edits.push_back({before - 6, end + 1,
                       type + "* " + name + " = ::mixtape::emu::dynamic_shared<" + type + ">();"});
      continue;
    }
    std::string text = "static" + decl + ";";
    for (const std::string& part : split_declarators(decl)) {
      const std::string name = declared_name(part);
      if (name.empty())
        throw std::runtime_error("line " + std::to_string(line_of(s, pos)) + ": cannot find the name in '" + part + "'");
      text += " ::mixtape::emu::shared_var(&" + name + ", sizeof(" + name + "));";
    }
    edits.push_back({pos, end + 1, text});
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::cerr << "usage: cu2cpp INPUT.cu OUTPUT.cpp [NAME_FOR_#line]\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  if (!in) {
    std::cerr << "cu2cpp: cannot read " << argv[1] << "\n";
    return 1;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string s = buf.str();
  std::vector<Edit> edits;
  try {
    const std::vector<bool> code = code_mask(s);
    rewrite_launches(s, code, edits);
    rewrite_shared(s, code, edits);
  } catch (const std::exception& e) {
    std::cerr << argv[1] << ": " << e.what() << "\n";
    return 1;
  }
  std::sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.begin < b.begin; });
  std::string out = std::string("#line 1 \"") + (argc == 4 ? argv[3] : argv[1]) + "\"\n";
  size_t at = 0;
  for (const Edit& e : edits) {
    if (e.begin < at) {
      std::cerr << argv[1] << ": line " << line_of(s, e.begin) << ": overlapping rewrites\n";
      return 1;
    }
    out.append(s, at, e.begin - at);
    out += e.text;
    at = e.end;
  }
  out.append(s, at, std::string::npos);
  const std::string tmp = std::string(argv[2]) + ".tmp";
  {
    std::ofstream o(tmp, std::ios::binary);
    o << out;
    if (!o) {
      std::cerr << "cu2cpp: cannot write " << tmp << "\n";
      return 1;
    }
  }
  if (std::rename(tmp.c_str(), argv[2]) != 0) {
    std::cerr << "cu2cpp: cannot rename " << tmp << " to " << argv[2] << "\n";
    return 1;
  }
  return 0;
}
