#include "worker/train/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/check.h"
#include "common/tensor_io.h"

namespace paragan {
namespace {

static_assert(sizeof(float) == 4, "F32 needs 4-byte floats");

// ------------------------------------------------------------------ JSON out

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

// ------------------------------------------------------------------- JSON in
//
// A small strict parser for the header: objects, arrays, strings, integers
// (what a safetensors header holds); other JSON values parse (so an error can
// name them) but are refused by the caller.

struct Json {
  enum Kind { kNull, kBool, kNumber, kString, kArray, kObject } kind = kNull;
  bool boolean = false;
  // kNumber: the literal; `is_uint` when it is a plain non-negative integer
  // that fits uint64 (then `uint` holds it).
  std::string literal;
  bool is_uint = false;
  uint64_t uint = 0;
  std::string str;
  std::vector<Json> items;                            // kArray
  std::vector<std::pair<std::string, Json>> members;  // kObject, in order
};

const char* KindName(Json::Kind k) {
  switch (k) {
    case Json::kNull:
      return "null";
    case Json::kBool:
      return "a boolean";
    case Json::kNumber:
      return "a number";
    case Json::kString:
      return "a string";
    case Json::kArray:
      return "an array";
    case Json::kObject:
      return "an object";
  }
  return "?";
}

class JsonParser {
 public:
  explicit JsonParser(absl::string_view text) : s_(text) {}

  absl::StatusOr<Json> ParseDocument() {
    Json v;
    PG_RETURN_IF_ERROR(ParseValue(&v, 0));
    SkipSpace();
    if (pos_ != s_.size()) return Error("unexpected text after the JSON value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("header JSON: ", what, " at byte ", pos_));
  }

  void SkipSpace() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' ||
                                s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(absl::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  absl::Status ParseValue(Json* v, int depth) {
    if (depth > kMaxDepth) return Error("nested too deeply");
    SkipSpace();
    if (pos_ >= s_.size()) return Error("unexpected end");
    const char c = s_[pos_];
    if (c == '{') return ParseObject(v, depth);
    if (c == '[') return ParseArray(v, depth);
    if (c == '"') {
      v->kind = Json::kString;
      return ParseString(&v->str);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ParseNumber(v);
    if (Consume("true")) {
      v->kind = Json::kBool;
      v->boolean = true;
      return absl::OkStatus();
    }
    if (Consume("false")) {
      v->kind = Json::kBool;
      return absl::OkStatus();
    }
    if (Consume("null")) {
      v->kind = Json::kNull;
      return absl::OkStatus();
    }
    return Error(absl::StrFormat("unexpected character '%c'", c));
  }

  absl::Status ParseObject(Json* v, int depth) {
    v->kind = Json::kObject;
    ++pos_;  // '{'
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return absl::OkStatus();
    }
    std::set<std::string> keys;
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '"') return Error("expected a key");
      std::string key;
      PG_RETURN_IF_ERROR(ParseString(&key));
      if (!keys.insert(key).second) {
        return Error(absl::StrCat("duplicate key \"", key, "\""));
      }
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != ':') return Error("expected ':'");
      ++pos_;
      Json member;
      PG_RETURN_IF_ERROR(ParseValue(&member, depth + 1));
      v->members.emplace_back(std::move(key), std::move(member));
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return absl::OkStatus();
      }
      return Error("expected ',' or '}'");
    }
  }

  absl::Status ParseArray(Json* v, int depth) {
    v->kind = Json::kArray;
    ++pos_;  // '['
    SkipSpace();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return absl::OkStatus();
    }
    while (true) {
      Json item;
      PG_RETURN_IF_ERROR(ParseValue(&item, depth + 1));
      v->items.push_back(std::move(item));
      SkipSpace();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return absl::OkStatus();
      }
      return Error("expected ',' or ']'");
    }
  }

  absl::Status ParseNumber(Json* v) {
    v->kind = Json::kNumber;
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    const size_t digits = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    if (pos_ == digits) return Error("bad number");
    if (s_[digits] == '0' && pos_ - digits > 1) {
      return Error("number with a leading zero");
    }
    bool integer = true;
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integer = false;
      ++pos_;
      const size_t f = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == f) return Error("bad number");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integer = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      const size_t e = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      if (pos_ == e) return Error("bad number");
    }
    v->literal = std::string(s_.substr(start, pos_ - start));
    if (integer && s_[start] != '-') {
      uint64_t x = 0;
      bool fits = true;
      for (size_t i = digits; i < pos_; ++i) {
        const uint64_t d = static_cast<uint64_t>(s_[i] - '0');
        if (x > (std::numeric_limits<uint64_t>::max() - d) / 10) {
          fits = false;
          break;
        }
        x = x * 10 + d;
      }
      v->is_uint = fits;
      v->uint = x;
    }
    return absl::OkStatus();
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  absl::Status ParseHex4(uint32_t* cp) {
    if (pos_ + 4 > s_.size()) return Error("truncated \\u escape");
    uint32_t x = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = s_[pos_++];
      x <<= 4;
      if (h >= '0' && h <= '9') {
        x |= static_cast<uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        x |= static_cast<uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        x |= static_cast<uint32_t>(h - 'A' + 10);
      } else {
        return Error("bad \\u escape");
      }
    }
    *cp = x;
    return absl::OkStatus();
  }

  absl::Status ParseString(std::string* out) {
    ++pos_;  // '"'
    out->clear();
    while (true) {
      if (pos_ >= s_.size()) return Error("unterminated string");
      const unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return absl::OkStatus();
      }
      if (c < 0x20) return Error("control character in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) return Error("unterminated string");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          uint32_t cp = 0;
          PG_RETURN_IF_ERROR(ParseHex4(&cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!Consume("\\u")) return Error("unpaired surrogate");
            uint32_t lo = 0;
            PG_RETURN_IF_ERROR(ParseHex4(&lo));
            if (lo < 0xDC00 || lo > 0xDFFF) return Error("unpaired surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired surrogate");
          }
          AppendUtf8(cp, out);
          break;
        }
        default:
          return Error(absl::StrFormat("bad escape '\\%c'", e));
      }
    }
  }

  absl::string_view s_;
  size_t pos_ = 0;
};

// Whether `s` is valid UTF-8 (the header must be).
bool IsUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + extra >= s.size()) return false;
    for (int k = 1; k <= extra; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += extra + 1;
  }
  return true;
}

// prod(shape) or an error on a negative dim or overflow past int64.
absl::StatusOr<int64_t> CheckedNumel(const Shape& shape,
                                     absl::string_view what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": negative dimension in shape ", ShapeToString(shape)));
    }
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape ", ShapeToString(shape), " overflows"));
    }
    n *= d;
  }
  return n;
}

absl::Status CheckTensor(const SafetensorsTensor& t) {
  const std::string what = absl::StrCat("tensor '", t.name, "'");
  const int64_t size = SafetensorsDTypeSize(t.dtype);
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unknown dtype '", t.dtype, "'"));
  }
  PG_ASSIGN_OR_RETURN(int64_t n, CheckedNumel(t.shape, what));
  if (n > std::numeric_limits<int64_t>::max() / size ||
      static_cast<uint64_t>(n * size) != t.bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": ", t.bytes.size(), " bytes for ", t.dtype, " shape ",
        ShapeToString(t.shape), " (", n, " elements of ", size, " bytes)"));
  }
  return absl::OkStatus();
}

std::string JoinShape(const Shape& s) { return absl::StrJoin(s, ","); }

std::string ErrnoText(int err) { return std::strerror(err); }

absl::Status SyncDirOf(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(
        "wrote ", path, " but cannot open ", dir, ": ", ErrnoText(errno)));
  }
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(
        "wrote ", path, " but cannot fsync ", dir, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

}  // namespace

const SafetensorsTensor* SafetensorsFile::Find(absl::string_view name) const {
  for (const SafetensorsTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

namespace {

// The reference's dtypes in its enum order, which is increasing alignment.
struct DTypeInfo {
  const char* name;
  int64_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};

// Index in kDTypes, or -1.
int DTypeRank(absl::string_view dtype) {
  for (size_t i = 0; i < sizeof(kDTypes) / sizeof(kDTypes[0]); ++i) {
    if (dtype == kDTypes[i].name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

int64_t SafetensorsDTypeSize(absl::string_view dtype) {
  const int r = DTypeRank(dtype);
  return r < 0 ? 0 : kDTypes[r].size;
}

absl::StatusOr<SafetensorsTensor> MakeF32Tensor(
    std::string name, Shape shape, const std::vector<float>& values) {
  PG_ASSIGN_OR_RETURN(int64_t n,
                      CheckedNumel(shape, absl::StrCat("tensor '", name, "'")));
  if (static_cast<uint64_t>(n) != values.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': shape ", ShapeToString(shape),
                     " holds ", n, " values, got ", values.size()));
  }
  SafetensorsTensor t{std::move(name), "F32", std::move(shape), {}};
  t.bytes.assign(reinterpret_cast<const char*>(values.data()),
                 values.size() * sizeof(float));
  return t;
}

absl::StatusOr<SafetensorsTensor> MakeI64Tensor(
    std::string name, Shape shape, const std::vector<int64_t>& values) {
  PG_ASSIGN_OR_RETURN(int64_t n,
                      CheckedNumel(shape, absl::StrCat("tensor '", name, "'")));
  if (static_cast<uint64_t>(n) != values.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "': shape ", ShapeToString(shape),
                     " holds ", n, " values, got ", values.size()));
  }
  SafetensorsTensor t{std::move(name), "I64", std::move(shape), {}};
  t.bytes.assign(reinterpret_cast<const char*>(values.data()),
                 values.size() * sizeof(int64_t));
  return t;
}

absl::StatusOr<std::vector<float>> F32Values(const SafetensorsTensor& t) {
  if (t.dtype != "F32") {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", t.name, "' is ", t.dtype, ", not F32"));
  }
  PG_RETURN_IF_ERROR(CheckTensor(t));
  std::vector<float> v(t.bytes.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}

absl::StatusOr<std::vector<int64_t>> I64Values(const SafetensorsTensor& t) {
  if (t.dtype != "I64") {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", t.name, "' is ", t.dtype, ", not I64"));
  }
  PG_RETURN_IF_ERROR(CheckTensor(t));
  std::vector<int64_t> v(t.bytes.size() / sizeof(int64_t));
  if (!v.empty()) std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}

absl::StatusOr<std::string> EncodeSafetensors(
    const std::vector<SafetensorsTensor>& tensors,
    const std::map<std::string, std::string>& metadata) {
  std::vector<const SafetensorsTensor*> order;
  std::set<std::string> names;
  for (const SafetensorsTensor& t : tensors) {
    if (t.name.empty()) return absl::InvalidArgumentError("empty tensor name");
    if (t.name == "__metadata__") {
      return absl::InvalidArgumentError(
          "a tensor may not be called __metadata__");
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("duplicate tensor name '", t.name, "'"));
    }
    PG_RETURN_IF_ERROR(CheckTensor(t));
    order.push_back(&t);
  }
  // The reference's order: dtypes in decreasing alignment (its enum order,
  // descending), then by name.
  std::sort(order.begin(), order.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) {
              const int ra = DTypeRank(a->dtype), rb = DTypeRank(b->dtype);
              if (ra != rb) return ra > rb;
              return a->name < b->name;
            });
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first_meta = true;
    for (const auto& [k, v] : metadata) {
      if (!first_meta) header += ",";
      first_meta = false;
      AppendJsonString(k, &header);
      header += ":";
      AppendJsonString(v, &header);
    }
    header += "}";
    first = false;
  }
  uint64_t offset = 0;
  for (const SafetensorsTensor* t : order) {
    if (!first) header += ",";
    first = false;
    AppendJsonString(t->name, &header);
    absl::StrAppend(&header, ":{\"dtype\":\"", t->dtype, "\",\"shape\":[",
                    JoinShape(t->shape), "],\"data_offsets\":[", offset, ",",
                    offset + t->bytes.size(), "]}");
    offset += t->bytes.size();
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kSafetensorsMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header of ", header.size(), " bytes exceeds the limit of ",
        kSafetensorsMaxHeaderBytes));
  }
  std::string out;
  out.reserve(8 + header.size() + offset);
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(n >> (8 * i)));
  out += header;
  for (const SafetensorsTensor* t : order) out += t->bytes;
  return out;
}

absl::StatusOr<SafetensorsFile> DecodeSafetensors(absl::string_view data,
                                                  absl::string_view source) {
  auto bad = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat(source, ": not a valid safetensors file: ", what));
  };
  if (data.size() < 8) {
    return bad(absl::StrCat("only ", data.size(),
                            " bytes (the header length alone takes 8)"));
  }
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) {
    n |= static_cast<uint64_t>(static_cast<unsigned char>(data[i])) << (8 * i);
  }
  if (n > kSafetensorsMaxHeaderBytes) {
    return bad(absl::StrCat("header length ", n, " exceeds the limit of ",
                            kSafetensorsMaxHeaderBytes, " bytes"));
  }
  if (n > data.size() - 8) {
    return bad(absl::StrCat("header length ", n, " runs past the end of the ",
                            data.size(), "-byte file"));
  }
  const absl::string_view header = data.substr(8, n);
  const absl::string_view body = data.substr(8 + n);
  if (header.empty() || header[0] != '{') {
    return bad("the header does not start with '{'");
  }
  if (!IsUtf8(header)) return bad("the header is not valid UTF-8");
  absl::StatusOr<Json> parsed = JsonParser(header).ParseDocument();
  if (!parsed.ok()) return bad(parsed.status().message());
  if (parsed->kind != Json::kObject) return bad("the header is not an object");

  SafetensorsFile file;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  for (const auto& [name, entry] : parsed->members) {
    if (name == "__metadata__") {
      if (entry.kind != Json::kObject) {
        return bad(absl::StrCat("__metadata__ is ", KindName(entry.kind),
                                ", not an object of strings"));
      }
      for (const auto& [k, v] : entry.members) {
        if (v.kind != Json::kString) {
          return bad(absl::StrCat("metadata \"", k, "\" is ", KindName(v.kind),
                                  ", not a string"));
        }
        file.metadata[k] = v.str;
      }
      continue;
    }
    const std::string what = absl::StrCat("tensor '", name, "'");
    if (entry.kind != Json::kObject) {
      return bad(
          absl::StrCat(what, " is ", KindName(entry.kind), ", not an object"));
    }
    const Json *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
    for (const auto& [k, v] : entry.members) {
      if (k == "dtype") {
        dtype = &v;
      } else if (k == "shape") {
        shape = &v;
      } else if (k == "data_offsets") {
        offsets = &v;
      } else {
        return bad(absl::StrCat(what, " has an unknown field \"", k,
                                "\" (expected dtype, shape, data_offsets)"));
      }
    }
    if (!dtype || !shape || !offsets) {
      return bad(absl::StrCat(what, " lacks ",
                              !dtype   ? "dtype"
                              : !shape ? "shape"
                                       : "data_offsets"));
    }
    SafetensorsTensor t;
    t.name = name;
    if (dtype->kind != Json::kString) {
      return bad(absl::StrCat(what, ": dtype is ", KindName(dtype->kind)));
    }
    t.dtype = dtype->str;
    const int64_t size = SafetensorsDTypeSize(t.dtype);
    if (size == 0) {
      return bad(absl::StrCat(what, ": unknown dtype \"", t.dtype, "\""));
    }
    if (shape->kind != Json::kArray) {
      return bad(absl::StrCat(what, ": shape is ", KindName(shape->kind),
                              ", not an array"));
    }
    for (const Json& d : shape->items) {
      if (d.kind != Json::kNumber || !d.is_uint ||
          d.uint > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return bad(
            absl::StrCat(what, ": shape holds ",
                         d.kind == Json::kNumber ? d.literal : KindName(d.kind),
                         ", not a non-negative integer"));
      }
      t.shape.push_back(static_cast<int64_t>(d.uint));
    }
    if (offsets->kind != Json::kArray || offsets->items.size() != 2 ||
        !offsets->items[0].is_uint || !offsets->items[1].is_uint) {
      return bad(absl::StrCat(what,
                              ": data_offsets is not [begin, end] with "
                              "non-negative integers"));
    }
    const uint64_t begin = offsets->items[0].uint;
    const uint64_t end = offsets->items[1].uint;
    if (begin > end) {
      return bad(absl::StrCat(what, ": data_offsets [", begin, ", ", end,
                              "] end before they begin"));
    }
    if (end > body.size()) {
      return bad(absl::StrCat(what, ": data_offsets [", begin, ", ", end,
                              "] run past the ", body.size(),
                              " bytes of data"));
    }
    absl::StatusOr<int64_t> numel = CheckedNumel(t.shape, what);
    if (!numel.ok()) return bad(numel.status().message());
    if (*numel > std::numeric_limits<int64_t>::max() / size ||
        static_cast<uint64_t>(*numel * size) != end - begin) {
      return bad(absl::StrCat(what, ": ", t.dtype, " shape [",
                              JoinShape(t.shape), "] needs ", *numel, " x ",
                              size, " bytes but data_offsets [", begin, ", ",
                              end, "] hold ", end - begin));
    }
    t.bytes = std::string(body.substr(begin, end - begin));
    ranges.push_back({begin, end, file.tensors.size()});
    file.tensors.push_back(std::move(t));
  }
  // The tensors must tile the data exactly: no overlap, no gap, nothing left.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t at = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    const std::string& name = file.tensors[r.index].name;
    if (r.begin < at) {
      return bad(absl::StrCat(
          "tensor '", name, "' (bytes ", r.begin, "-", r.end,
          ") overlaps tensor '", file.tensors[ranges[i - 1].index].name,
          "' (bytes ", ranges[i - 1].begin, "-", ranges[i - 1].end, ")"));
    }
    if (r.begin > at) {
      return bad(absl::StrCat("bytes ", at, "-", r.begin,
                              " of the data belong to no tensor (before '",
                              name, "')"));
    }
    at = r.end;
  }
  if (at != body.size()) {
    return bad(absl::StrCat(body.size() - at, " bytes after the last tensor (",
                            body.size(), " bytes of data, tensors end at ", at,
                            ")"));
  }
  // Data order.
  std::vector<SafetensorsTensor> ordered;
  ordered.reserve(ranges.size());
  for (const Range& r : ranges) {
    ordered.push_back(std::move(file.tensors[r.index]));
  }
  file.tensors = std::move(ordered);
  return file;
}

absl::Status WriteSafetensorsFile(
    const std::string& path, const std::vector<SafetensorsTensor>& tensors,
    const std::map<std::string, std::string>& metadata, bool overwrite) {
  std::error_code ec;
  if (!overwrite && std::filesystem::symlink_status(path, ec).type() !=
                        std::filesystem::file_type::not_found) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " exists (pass --overwrite to replace it)"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory"));
  }
  PG_ASSIGN_OR_RETURN(std::string bytes, EncodeSafetensors(tensors, metadata));
  if (overwrite) return WriteFileAtomically(path, bytes);
  // Complete the file under a name of our own, then link it into place: the
  // link fails if `path` appeared meanwhile, so nothing is ever replaced.
  const std::string staged = absl::StrCat(path, ".partial.", getpid());
  PG_RETURN_IF_ERROR(WriteFileAtomically(staged, bytes));
  if (link(staged.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(staged.c_str());
    if (err == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, " exists (pass --overwrite to replace it)"));
    }
    return absl::UnavailableError(absl::StrCat("cannot link ", staged, " to ",
                                               path, ": ", ErrnoText(err)));
  }
  std::remove(staged.c_str());
  return SyncDirOf(path);
}

absl::StatusOr<SafetensorsFile> ReadSafetensorsFile(const std::string& path) {
  PG_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path));
  return DecodeSafetensors(data, path);
}

}  // namespace paragan
