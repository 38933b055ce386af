#include "common/tensor_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace paragan {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "tensor_io assumes a little-endian host");

constexpr char kMagic[8] = {'P', 'G', 'T', 'E', 'N', 'S', '0', '1'};
constexpr uint32_t kMaxNdim = 32;

std::string ErrnoText(int err) { return std::strerror(err); }

uint32_t Crc32(absl::string_view data) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(data.data());
  size_t left = data.size();
  while (left > 0) {
    const uInt chunk =
        static_cast<uInt>(std::min<size_t>(left, size_t{1} << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    left -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

void PutU32(std::string* out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}

void PutI64(std::string* out, int64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out->append(b, 8);
}

// Bounds-checked little-endian reader over an in-memory buffer.
class Reader {
 public:
  Reader(absl::string_view data, absl::string_view source)
      : data_(data), source_(source) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t pos() const { return pos_; }

  absl::Status Error(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat(source_, ": ", what, " (at byte ",
                                            pos_, " of ", data_.size(), ")"));
  }

  absl::Status U32(uint32_t* v, absl::string_view what) {
    if (remaining() < 4) return Error(absl::StrCat("truncated ", what));
    std::memcpy(v, data_.data() + pos_, 4);
    pos_ += 4;
    return absl::OkStatus();
  }

  absl::Status I64(int64_t* v, absl::string_view what) {
    if (remaining() < 8) return Error(absl::StrCat("truncated ", what));
    std::memcpy(v, data_.data() + pos_, 8);
    pos_ += 8;
    return absl::OkStatus();
  }

  absl::Status Bytes(size_t n, std::string* out, absl::string_view what) {
    if (remaining() < n) {
      return Error(absl::StrCat("truncated ", what, ": need ", n,
                                " bytes, have ", remaining()));
    }
    out->assign(data_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }

 private:
  absl::string_view data_;
  absl::string_view source_;
  size_t pos_ = 0;
};

// prod(dims) with overflow and sign checks; -1 on failure.
int64_t CheckedNumElements(const Shape& dims) {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d < 0) return -1;
    if (d != 0 && n > std::numeric_limits<int64_t>::max() / d) return -1;
    n *= d;
  }
  return n;
}

template <typename T>
absl::StatusOr<NamedArray> MakeArray(std::string name, Shape dims,
                                     uint32_t dtype,
                                     const std::vector<T>& values) {
  const int64_t n = CheckedNumElements(dims);
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("array '", name, "': invalid dims ", ShapeToString(dims)));
  }
  if (n != static_cast<int64_t>(values.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("array '", name, "': dims ", ShapeToString(dims), " hold ",
                     n, " elements but ", values.size(), " values given"));
  }
  NamedArray a;
  a.name = std::move(name);
  a.dtype = dtype;
  a.dims = std::move(dims);
  a.bytes.assign(reinterpret_cast<const char*>(values.data()),
                 values.size() * sizeof(T));
  return a;
}

template <typename T>
absl::StatusOr<std::vector<T>> ToVector(const NamedArray& array,
                                        uint32_t dtype) {
  if (array.dtype != dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("array '", array.name, "' has dtype ",
                     DTypeName(array.dtype), ", expected ", DTypeName(dtype)));
  }
  absl::Status st = ValidateNamedArray(array);
  if (!st.ok()) return st;
  std::vector<T> out(array.bytes.size() / sizeof(T));
  if (!out.empty())
    std::memcpy(out.data(), array.bytes.data(), array.bytes.size());
  return out;
}

std::string DirName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

int64_t DTypeSize(uint32_t dtype) {
  switch (dtype) {
    case kDTypeFloat32:
      return 4;
    case kDTypeInt64:
      return 8;
    case kDTypeUint8:
      return 1;
    default:
      return 0;
  }
}

std::string DTypeName(uint32_t dtype) {
  switch (dtype) {
    case kDTypeFloat32:
      return "float32";
    case kDTypeInt64:
      return "int64";
    case kDTypeUint8:
      return "uint8";
    default:
      return absl::StrCat("dtype(", dtype, ")");
  }
}

absl::StatusOr<NamedArray> MakeFloatArray(std::string name, Shape dims,
                                          const std::vector<float>& values) {
  return MakeArray(std::move(name), std::move(dims), kDTypeFloat32, values);
}
absl::StatusOr<NamedArray> MakeInt64Array(std::string name, Shape dims,
                                          const std::vector<int64_t>& values) {
  return MakeArray(std::move(name), std::move(dims), kDTypeInt64, values);
}
absl::StatusOr<NamedArray> MakeUint8Array(std::string name, Shape dims,
                                          const std::vector<uint8_t>& values) {
  return MakeArray(std::move(name), std::move(dims), kDTypeUint8, values);
}

absl::StatusOr<std::vector<float>> ToFloatVector(const NamedArray& array) {
  return ToVector<float>(array, kDTypeFloat32);
}
absl::StatusOr<std::vector<int64_t>> ToInt64Vector(const NamedArray& array) {
  return ToVector<int64_t>(array, kDTypeInt64);
}
absl::StatusOr<std::vector<uint8_t>> ToUint8Vector(const NamedArray& array) {
  return ToVector<uint8_t>(array, kDTypeUint8);
}

absl::Status ValidateNamedArray(const NamedArray& array) {
  const int64_t elem = DTypeSize(array.dtype);
  if (elem == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("array '", array.name, "': unknown dtype ", array.dtype));
  }
  if (array.dims.size() > kMaxNdim) {
    return absl::InvalidArgumentError(
        absl::StrCat("array '", array.name, "': ", array.dims.size(),
                     " dims (at most ", kMaxNdim, ")"));
  }
  const int64_t n = CheckedNumElements(array.dims);
  if (n < 0 || n > std::numeric_limits<int64_t>::max() / elem) {
    return absl::InvalidArgumentError(absl::StrCat(
        "array '", array.name, "': invalid dims ", ShapeToString(array.dims)));
  }
  if (static_cast<int64_t>(array.bytes.size()) != n * elem) {
    return absl::InvalidArgumentError(
        absl::StrCat("array '", array.name, "': dims ",
                     ShapeToString(array.dims), " of ", DTypeName(array.dtype),
                     " need ", n * elem, " bytes, have ", array.bytes.size()));
  }
  return absl::OkStatus();
}

const NamedArray* FindArray(const std::vector<NamedArray>& arrays,
                            absl::string_view name) {
  for (const NamedArray& a : arrays) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

absl::StatusOr<std::string> SerializeTensors(
    const std::vector<NamedArray>& arrays) {
  if (arrays.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("too many arrays");
  }
  size_t total = sizeof(kMagic) + 4 + 4;
  for (const NamedArray& a : arrays) {
    absl::Status st = ValidateNamedArray(a);
    if (!st.ok()) return st;
    if (a.name.size() > std::numeric_limits<uint32_t>::max()) {
      return absl::InvalidArgumentError("array name too long");
    }
    total += 12 + a.name.size() + 8 * a.dims.size() + a.bytes.size();
  }
  std::string out;
  out.reserve(total);
  out.append(kMagic, sizeof(kMagic));
  PutU32(&out, static_cast<uint32_t>(arrays.size()));
  for (const NamedArray& a : arrays) {
    PutU32(&out, static_cast<uint32_t>(a.name.size()));
    out.append(a.name);
    PutU32(&out, a.dtype);
    PutU32(&out, static_cast<uint32_t>(a.dims.size()));
    for (int64_t d : a.dims) PutI64(&out, d);
    out.append(a.bytes);
  }
  PutU32(&out, Crc32(out));
  return out;
}

absl::StatusOr<std::vector<NamedArray>> ParseTensors(absl::string_view data,
                                                     absl::string_view source) {
  if (data.size() < sizeof(kMagic) + 8) {
    return absl::DataLossError(
        absl::StrCat(source, ": ", data.size(),
                     " bytes is too short for a PGTENS01 tensor file"));
  }
  if (std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError(
        absl::StrCat(source, ": bad magic (not a PGTENS01 tensor file)"));
  }
  const absl::string_view body = data.substr(0, data.size() - 4);
  uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, data.data() + body.size(), 4);
  const uint32_t crc = Crc32(body);
  if (crc != stored_crc) {
    return absl::DataLossError(
        absl::StrCat(source, ": checksum mismatch (stored crc32 ", stored_crc,
                     ", computed ", crc, "): file is corrupt or truncated"));
  }

  Reader r(body.substr(sizeof(kMagic)), source);
  uint32_t count = 0;
  absl::Status st = r.U32(&count, "array count");
  if (!st.ok()) return st;
  // Each entry needs at least 12 bytes: never reserve from an unchecked count.
  if (count > r.remaining() / 12) {
    return r.Error(
        absl::StrCat("array count ", count, " exceeds what the file can hold"));
  }
  std::vector<NamedArray> arrays;
  arrays.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    NamedArray a;
    const std::string entry = absl::StrCat("entry ", i);
    uint32_t name_len = 0;
    if (!(st = r.U32(&name_len, entry + " name length")).ok()) return st;
    if (!(st = r.Bytes(name_len, &a.name, entry + " name")).ok()) return st;
    if (!(st = r.U32(&a.dtype, entry + " dtype")).ok()) return st;
    const int64_t elem = DTypeSize(a.dtype);
    if (elem == 0) {
      return r.Error(
          absl::StrCat("array '", a.name, "' has unknown dtype ", a.dtype));
    }
    uint32_t ndim = 0;
    if (!(st = r.U32(&ndim, entry + " ndim")).ok()) return st;
    if (ndim > kMaxNdim) {
      return r.Error(absl::StrCat("array '", a.name, "' has ", ndim,
                                  " dims (at most ", kMaxNdim, ")"));
    }
    a.dims.resize(ndim);
    for (uint32_t d = 0; d < ndim; ++d) {
      if (!(st = r.I64(&a.dims[d], entry + " dims")).ok()) return st;
    }
    const int64_t n = CheckedNumElements(a.dims);
    if (n < 0 || n > static_cast<int64_t>(r.remaining()) / elem) {
      return r.Error(absl::StrCat("array '", a.name, "' dims ",
                                  ShapeToString(a.dims), " of ",
                                  DTypeName(a.dtype), " exceed the ",
                                  r.remaining(), " bytes left in the file"));
    }
    if (!(st =
              r.Bytes(static_cast<size_t>(n * elem), &a.bytes, entry + " data"))
             .ok()) {
      return st;
    }
    arrays.push_back(std::move(a));
  }
  if (r.remaining() != 0) {
    return r.Error(
        absl::StrCat(r.remaining(), " unexpected bytes after the last array"));
  }
  return arrays;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents, bool owner_only) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat(
        "cannot create ", tmp, " (writing ", path, "): ", ErrnoText(err)));
  }
  auto fail = [&](absl::string_view what, int err) {
    std::fclose(f);
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(what, " ", tmp, " (writing ",
                                               path, "): ", ErrnoText(err)));
  };
  if (owner_only && fchmod(fileno(f), 0600) != 0) {
    return fail("cannot chmod", errno);
  }
  if (!contents.empty() &&
      std::fwrite(contents.data(), 1, contents.size(), f) != contents.size()) {
    return fail("cannot write", errno);
  }
  if (std::fflush(f) != 0) return fail("cannot flush", errno);
  if (fsync(fileno(f)) != 0) return fail("cannot fsync", errno);
  if (std::fclose(f) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat(
        "cannot close ", tmp, " (writing ", path, "): ", ErrnoText(err)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ",
                                               path, ": ", ErrnoText(err)));
  }
  absl::Status synced = SyncDirectory(DirName(path));
  if (!synced.ok()) {
    return absl::UnavailableError(
        absl::StrCat("wrote ", path, " but ", synced.message()));
  }
  return absl::OkStatus();
}

absl::Status MakeOwnerOnlyDirectory(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!ec) {
    std::filesystem::permissions(dir, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::replace, ec);
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot make ", dir, " (mode 0700): ", ec.message()));
  }
  return absl::OkStatus();
}

absl::Status SyncDirectory(const std::string& dir) {
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    const int err = errno;
    return absl::UnavailableError(absl::StrCat(
        "cannot open directory ", dir, " to sync it: ", ErrnoText(err)));
  }
  const int rc = fsync(dfd);
  const int err = errno;
  close(dfd);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot fsync directory ", dir, ": ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    }
    return absl::UnavailableError(
        absl::StrCat("cannot open ", path, ": ", ErrnoText(err)));
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    std::fclose(f);
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a regular file"));
  }
  std::string out(static_cast<size_t>(sb.st_size), '\0');
  const size_t got = out.empty() ? 0 : std::fread(&out[0], 1, out.size(), f);
  const bool error = std::ferror(f) != 0;
  std::fclose(f);
  if (error || got != out.size()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot read ", path, ": got ", got, " of ", out.size(), " bytes"));
  }
  return out;
}

absl::Status WriteTensorFile(const std::string& path,
                             const std::vector<NamedArray>& arrays) {
  absl::StatusOr<std::string> data = SerializeTensors(arrays);
  if (!data.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", path, ": ", data.status().message()));
  }
  return WriteFileAtomically(path, *data);
}

absl::StatusOr<std::vector<NamedArray>> ReadTensorFile(
    const std::string& path) {
  absl::StatusOr<std::string> data = ReadFileToString(path);
  if (!data.ok()) return data.status();
  return ParseTensors(*data, path);
}

}  // namespace paragan
