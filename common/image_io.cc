#include "common/image_io.h"

// clang-format off
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>
#include <png.h>
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/check.h"
#include "common/tensor_io.h"

namespace paragan {
namespace {

// Decoded images larger than this are rejected before allocating (1 GiB).
constexpr int64_t kMaxImageBytes = int64_t{1} << 30;

absl::Status CheckImageArgs(int height, int width, int channels) {
  if (height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid image size ", height, "x", width));
  }
  if (channels != 1 && channels != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("image channels must be 1 or 3, got ", channels));
  }
  if (int64_t{height} * width * channels > kMaxImageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("image too large: ", height, "x", width, "x", channels));
  }
  return absl::OkStatus();
}

// ----------------------------------------------------------------------------
// libpng. Errors longjmp back to the setjmp in the *Impl functions. Every
// function a longjmp crosses keeps only trivially destructible locals; all
// state lives in a context struct owned by the caller.

struct PngContext {
  // Reading.
  const char* in = nullptr;
  size_t in_size = 0;
  size_t in_pos = 0;
  Image* image = nullptr;
  // Writing.
  std::string* out = nullptr;
  const uint8_t* pixels = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;
  // Error message from libpng.
  char error[256] = {0};
};

void PngError(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngContext*>(png_get_error_ptr(png));
  std::snprintf(ctx->error, sizeof(ctx->error), "%s",
                msg != nullptr ? msg : "unknown libpng error");
  png_longjmp(png, 1);
}

void PngWarning(png_structp, png_const_charp) {}

void PngReadData(png_structp png, png_bytep out, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->in_size - ctx->in_pos < n) {
    png_error(png, "unexpected end of file (truncated PNG)");
  }
  std::memcpy(out, ctx->in + ctx->in_pos, n);
  ctx->in_pos += n;
}

void PngWriteData(png_structp png, png_bytep data, png_size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  ctx->out->append(reinterpret_cast<const char*>(data), n);
}

void PngFlush(png_structp) {}

// Runs after setjmp; may longjmp out (only POD locals here).
void ReadPngBody(png_structp png, png_infop info, PngContext* ctx) {
  png_set_read_fn(png, ctx, PngReadData);
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  const int color_type = png_get_color_type(png, info);
  const int bit_depth = png_get_bit_depth(png, info);

  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  if (bit_depth == 16) png_set_scale_16(png);
  // tRNS chunks are ignored (never expanded into alpha); real alpha dropped.
  if ((color_type & PNG_COLOR_MASK_ALPHA) != 0) png_set_strip_alpha(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);

  const int channels = png_get_channels(png, info);
  if (channels != 1 && channels != 3) png_error(png, "unsupported PNG layout");
  if (int64_t{width} * height * channels > kMaxImageBytes) {
    png_error(png, "image too large");
  }
  if (png_get_rowbytes(png, info) != size_t{width} * channels) {
    png_error(png, "unexpected PNG row size");
  }
  Image* image = ctx->image;
  image->height = static_cast<int>(height);
  image->width = static_cast<int>(width);
  image->channels = channels;
  image->pixels.resize(size_t{height} * width * channels);
  for (int pass = 0; pass < passes; ++pass) {
    for (png_uint_32 y = 0; y < height; ++y) {
      png_read_row(png, image->pixels.data() + size_t{y} * width * channels,
                   nullptr);
    }
  }
  png_read_end(png, nullptr);
}

bool DecodePngImpl(PngContext* ctx) {
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, PngError, PngWarning);
  if (png == nullptr) {
    std::snprintf(ctx->error, sizeof(ctx->error), "libpng init failed");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    std::snprintf(ctx->error, sizeof(ctx->error), "libpng init failed");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  ReadPngBody(png, info, ctx);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

void WritePngBody(png_structp png, png_infop info, PngContext* ctx) {
  png_set_write_fn(png, ctx, PngWriteData, PngFlush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(ctx->width),
               static_cast<png_uint_32>(ctx->height), 8,
               ctx->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const size_t stride = size_t(ctx->width) * ctx->channels;
  for (int y = 0; y < ctx->height; ++y) {
    png_write_row(png, ctx->pixels + stride * y);
  }
  png_write_end(png, nullptr);
}

bool EncodePngImpl(PngContext* ctx) {
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, PngError, PngWarning);
  if (png == nullptr) {
    std::snprintf(ctx->error, sizeof(ctx->error), "libpng init failed");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    std::snprintf(ctx->error, sizeof(ctx->error), "libpng init failed");
    return false;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return false;
  }
  WritePngBody(png, info, ctx);
  png_destroy_write_struct(&png, &info);
  return true;
}

// ----------------------------------------------------------------------------
// libjpeg. error_exit (and warnings, which flag corrupt data) longjmp back.

struct JpegErrorManager {
  jpeg_error_mgr pub;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void JpegErrorExit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void JpegEmitMessage(j_common_ptr cinfo, int msg_level) {
  if (msg_level < 0) JpegErrorExit(cinfo);  // Corrupt-data warning.
}

void JpegOutputMessage(j_common_ptr) {}

void SetUpJpegErrors(JpegErrorManager* err) {
  jpeg_std_error(&err->pub);
  err->pub.error_exit = JpegErrorExit;
  err->pub.emit_message = JpegEmitMessage;
  err->pub.output_message = JpegOutputMessage;
  err->message[0] = '\0';
}

struct JpegContext {
  const char* in = nullptr;
  size_t in_size = 0;
  Image* image = nullptr;
  // Writing.
  const uint8_t* pixels = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;
  int quality = 95;
  unsigned char* out = nullptr;  // malloc'ed by libjpeg
  unsigned long out_size = 0;    // NOLINT(runtime/int): libjpeg's type
  JpegErrorManager err;
};

void ReadJpegBody(jpeg_decompress_struct* cinfo, JpegContext* ctx) {
  jpeg_mem_src(cinfo, reinterpret_cast<const unsigned char*>(ctx->in),
               static_cast<unsigned long>(ctx->in_size));  // NOLINT
  jpeg_read_header(cinfo, TRUE);
  cinfo->out_color_space = cinfo->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(cinfo);
  const int channels = cinfo->output_components;
  const int64_t width = cinfo->output_width;
  const int64_t height = cinfo->output_height;
  if (channels != 1 && channels != 3) {
    std::snprintf(ctx->err.message, sizeof(ctx->err.message),
                  "unsupported JPEG output components %d", channels);
    std::longjmp(ctx->err.jump, 1);
  }
  if (width * height * channels > kMaxImageBytes) {
    std::snprintf(ctx->err.message, sizeof(ctx->err.message),
                  "image too large");
    std::longjmp(ctx->err.jump, 1);
  }
  Image* image = ctx->image;
  image->height = static_cast<int>(height);
  image->width = static_cast<int>(width);
  image->channels = channels;
  image->pixels.resize(static_cast<size_t>(width * height * channels));
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = image->pixels.data() +
                   size_t{cinfo->output_scanline} * width * channels;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
}

bool DecodeJpegImpl(JpegContext* ctx, jpeg_decompress_struct* cinfo) {
  SetUpJpegErrors(&ctx->err);
  cinfo->err = &ctx->err.pub;
  if (setjmp(ctx->err.jump)) {
    jpeg_destroy_decompress(cinfo);
    return false;
  }
  jpeg_create_decompress(cinfo);
  ReadJpegBody(cinfo, ctx);
  jpeg_destroy_decompress(cinfo);
  return true;
}

void WriteJpegBody(jpeg_compress_struct* cinfo, JpegContext* ctx) {
  jpeg_mem_dest(cinfo, &ctx->out, &ctx->out_size);
  cinfo->image_width = static_cast<JDIMENSION>(ctx->width);
  cinfo->image_height = static_cast<JDIMENSION>(ctx->height);
  cinfo->input_components = ctx->channels;
  cinfo->in_color_space = ctx->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(cinfo);
  jpeg_set_quality(cinfo, ctx->quality, TRUE);
  jpeg_start_compress(cinfo, TRUE);
  const size_t stride = size_t(ctx->width) * ctx->channels;
  while (cinfo->next_scanline < cinfo->image_height) {
    JSAMPROW row =
        const_cast<JSAMPROW>(ctx->pixels) + stride * cinfo->next_scanline;
    jpeg_write_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_compress(cinfo);
}

bool EncodeJpegImpl(JpegContext* ctx, jpeg_compress_struct* cinfo) {
  SetUpJpegErrors(&ctx->err);
  cinfo->err = &ctx->err.pub;
  if (setjmp(ctx->err.jump)) {
    jpeg_destroy_compress(cinfo);
    return false;
  }
  jpeg_create_compress(cinfo);
  WriteJpegBody(cinfo, ctx);
  jpeg_destroy_compress(cinfo);
  return true;
}

// ----------------------------------------------------------------------------
// .npy

int64_t NpyElementSize(absl::string_view descr) {
  if (descr.size() < 3) return 0;
  const char order = descr[0];
  const char kind = descr[1];
  int64_t size = 0;
  if (!absl::SimpleAtoi(descr.substr(2), &size) || size <= 0 || size > 16) {
    return 0;
  }
  if (kind != 'i' && kind != 'u' && kind != 'f' && kind != 'b') return 0;
  // Multi-byte data must be little-endian ('<', or '=' on this host).
  if (size == 1 || order == '<' || order == '=' || order == '|') return size;
  return 0;
}

std::string ShapeRepr(const Shape& shape) {
  if (shape.empty()) return "()";
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

absl::Status NpyError(absl::string_view source, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(source, ": ", what));
}

// The value text after `'key':` in a header dict, or an empty view.
absl::string_view NpyHeaderValue(absl::string_view header,
                                 absl::string_view key) {
  const std::string quoted = absl::StrCat("'", key, "':");
  size_t pos = header.find(quoted);
  if (pos == absl::string_view::npos) return {};
  pos += quoted.size();
  while (pos < header.size() && header[pos] == ' ') ++pos;
  return header.substr(pos);
}

}  // namespace

absl::StatusOr<std::string> EncodePng(const uint8_t* data, int height,
                                      int width, int channels) {
  absl::Status st = CheckImageArgs(height, width, channels);
  if (!st.ok()) return st;
  std::string out;
  PngContext ctx;
  ctx.out = &out;
  ctx.pixels = data;
  ctx.height = height;
  ctx.width = width;
  ctx.channels = channels;
  if (!EncodePngImpl(&ctx)) {
    return absl::InternalError(
        absl::StrCat("PNG encoding failed: ", ctx.error));
  }
  return out;
}

absl::Status WritePng(const std::string& path, const uint8_t* data, int height,
                      int width, int channels) {
  absl::StatusOr<std::string> png = EncodePng(data, height, width, channels);
  if (!png.ok()) {
    return absl::Status(png.status().code(),
                        absl::StrCat(path, ": ", png.status().message()));
  }
  return WriteFileAtomically(path, *png);
}

absl::Status WriteJpeg(const std::string& path, const uint8_t* data, int height,
                       int width, int channels, int quality) {
  absl::Status st = CheckImageArgs(height, width, channels);
  if (st.ok() && (quality < 1 || quality > 100)) {
    st = absl::InvalidArgumentError(
        absl::StrCat("JPEG quality must be in [1, 100], got ", quality));
  }
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat(path, ": ", st.message()));
  }
  JpegContext ctx;
  ctx.pixels = data;
  ctx.height = height;
  ctx.width = width;
  ctx.channels = channels;
  ctx.quality = quality;
  jpeg_compress_struct cinfo;
  const bool ok = EncodeJpegImpl(&ctx, &cinfo);
  std::string bytes;
  if (ok) bytes.assign(reinterpret_cast<const char*>(ctx.out), ctx.out_size);
  std::free(ctx.out);
  if (!ok) {
    return absl::InternalError(
        absl::StrCat(path, ": JPEG encoding failed: ", ctx.err.message));
  }
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<Image> DecodeImage(absl::string_view bytes,
                                  absl::string_view source) {
  static constexpr unsigned char kPngSig[8] = {0x89, 'P',  'N',  'G',
                                               '\r', '\n', 0x1a, '\n'};
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  Image image;
  if (bytes.size() >= 8 && std::memcmp(b, kPngSig, 8) == 0) {
    PngContext ctx;
    ctx.in = bytes.data();
    ctx.in_size = bytes.size();
    ctx.image = &image;
    if (!DecodePngImpl(&ctx)) {
      return absl::DataLossError(
          absl::StrCat(source, ": corrupt PNG: ", ctx.error));
    }
    return image;
  }
  if (bytes.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
    JpegContext ctx;
    ctx.in = bytes.data();
    ctx.in_size = bytes.size();
    ctx.image = &image;
    jpeg_decompress_struct cinfo;
    if (!DecodeJpegImpl(&ctx, &cinfo)) {
      return absl::DataLossError(
          absl::StrCat(source, ": corrupt JPEG: ", ctx.err.message));
    }
    return image;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": not a PNG or JPEG file (unrecognized signature, ",
                   bytes.size(), " bytes)"));
}

absl::StatusOr<Image> DecodeImageFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadFileToString(path);
  if (!bytes.ok()) return bytes.status();
  return DecodeImage(*bytes, path);
}

Image MakeImageGrid(const float* images, int n, int c, int h, int w, int nrow,
                    int padding) {
  PG_CHECK(n > 0 && c > 0 && h > 0 && w > 0 && nrow > 0 && padding >= 0)
      << "n=" << n << " c=" << c << " h=" << h << " w=" << w << " nrow=" << nrow
      << " padding=" << padding;
  const int cols = std::min(nrow, n);
  const int rows = (n + cols - 1) / cols;
  Image grid;
  grid.channels = c;
  grid.height = rows * (h + padding) + padding;
  grid.width = cols * (w + padding) + padding;
  grid.pixels.assign(size_t(grid.height) * grid.width * c, 0);
  for (int i = 0; i < n; ++i) {
    const int y0 = padding + (i / cols) * (h + padding);
    const int x0 = padding + (i % cols) * (w + padding);
    const float* img = images + size_t(i) * c * h * w;
    for (int ch = 0; ch < c; ++ch) {
      for (int y = 0; y < h; ++y) {
        const float* src = img + (size_t(ch) * h + y) * w;
        uint8_t* dst =
            grid.pixels.data() + (size_t(y0 + y) * grid.width + x0) * c + ch;
        for (int x = 0; x < w; ++x) dst[size_t(x) * c] = PixelFromUnit(src[x]);
      }
    }
  }
  return grid;
}

absl::StatusOr<std::string> EncodeNpy(absl::string_view dtype,
                                      const Shape& shape, const void* data) {
  if (dtype != "|u1" && dtype != "<i4" && dtype != "<f4") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported npy dtype '", dtype, "' (use |u1, <i4 or <f4)"));
  }
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 0 ||
        (d != 0 && count > std::numeric_limits<int64_t>::max() / 16 / d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid npy shape ", ShapeToString(shape)));
    }
    count *= d;
  }
  const int64_t bytes = count * NpyElementSize(dtype);
  if (bytes > 0 && data == nullptr) {
    return absl::InvalidArgumentError("npy data is null");
  }
  // Exactly what numpy.lib.format writes: the dict repr (keys sorted), spare
  // spaces so the first axis can grow in place, then padding so the data
  // starts at a multiple of 64 (a full 64 when already aligned), then '\n'.
  std::string header = absl::StrCat(
      "{'descr': '", dtype,
      "', 'fortran_order': False, 'shape': ", ShapeRepr(shape), ", }");
  if (!shape.empty()) {
    const size_t digits = absl::StrCat(shape[0]).size();
    header.append(21 - std::min<size_t>(digits, 21), ' ');
  }
  const size_t hlen = header.size() + 1;
  const size_t padlen = 64 - ((10 + hlen) % 64);
  header.append(padlen, ' ');
  header.push_back('\n');
  if (header.size() > 65535) {
    return absl::InvalidArgumentError("npy header too large for version 1.0");
  }
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  if (bytes > 0) out.append(static_cast<const char*>(data), bytes);
  return out;
}

absl::Status WriteNpy(const std::string& path, absl::string_view dtype,
                      const Shape& shape, const void* data) {
  absl::StatusOr<std::string> npy = EncodeNpy(dtype, shape, data);
  if (!npy.ok()) {
    return absl::Status(npy.status().code(),
                        absl::StrCat(path, ": ", npy.status().message()));
  }
  return WriteFileAtomically(path, *npy);
}

absl::StatusOr<NpyArray> ParseNpy(absl::string_view data,
                                  absl::string_view source) {
  if (data.size() < 10 || data.substr(0, 6) != absl::string_view("\x93NUMPY")) {
    return NpyError(source, "not a .npy file (bad magic)");
  }
  const int major = static_cast<unsigned char>(data[6]);
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) |
                 (size_t{static_cast<unsigned char>(data[9])} << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) return NpyError(source, "truncated header");
    for (int i = 3; i >= 0; --i) {
      header_len = (header_len << 8) | static_cast<unsigned char>(data[8 + i]);
    }
    header_start = 12;
  } else {
    return NpyError(source, absl::StrCat("unsupported npy version ", major));
  }
  if (data.size() - header_start < header_len) {
    return NpyError(source, "truncated header");
  }
  const absl::string_view header = data.substr(header_start, header_len);

  NpyArray array;
  absl::string_view descr = NpyHeaderValue(header, "descr");
  if (descr.empty() || descr[0] != '\'') {
    return NpyError(source, "header has no 'descr' string");
  }
  const size_t descr_end = descr.find('\'', 1);
  if (descr_end == absl::string_view::npos) {
    return NpyError(source, "unterminated 'descr'");
  }
  array.dtype = std::string(descr.substr(1, descr_end - 1));
  const int64_t elem = NpyElementSize(array.dtype);
  if (elem == 0) {
    return NpyError(source,
                    absl::StrCat("unsupported dtype '", array.dtype, "'"));
  }
  absl::string_view order = NpyHeaderValue(header, "fortran_order");
  if (!absl::StartsWith(order, "False")) {
    return NpyError(source, "only C-order (fortran_order: False) is supported");
  }
  absl::string_view shape = NpyHeaderValue(header, "shape");
  if (shape.empty() || shape[0] != '(') {
    return NpyError(source, "header has no 'shape' tuple");
  }
  const size_t close = shape.find(')');
  if (close == absl::string_view::npos) {
    return NpyError(source, "unterminated 'shape'");
  }
  int64_t count = 1;
  for (absl::string_view part : absl::StrSplit(shape.substr(1, close - 1), ',',
                                               absl::SkipWhitespace())) {
    int64_t d = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &d) || d < 0 ||
        (d != 0 && count > std::numeric_limits<int64_t>::max() / elem / d)) {
      return NpyError(source, absl::StrCat("bad shape entry '", part, "'"));
    }
    array.shape.push_back(d);
    count *= d;
  }
  const size_t offset = header_start + header_len;
  const int64_t expected = count * elem;
  if (static_cast<int64_t>(data.size() - offset) != expected) {
    return NpyError(
        source,
        absl::StrCat("data size mismatch: shape ", ShapeToString(array.shape),
                     " of ", array.dtype, " needs ", expected,
                     " bytes, file has ", data.size() - offset));
  }
  array.bytes = std::string(data.substr(offset));
  return array;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  absl::StatusOr<std::string> data = ReadFileToString(path);
  if (!data.ok()) return data.status();
  return ParseNpy(*data, path);
}

}  // namespace paragan
