// Fuzzes the PNG and JPEG decoder the image-folder dataset reads user files
// with. A decoded image is 8-bit gray or RGB with exactly h*w*c pixels.

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "common/tensor_io.h"
#include "tools/fuzz/fuzz_target.h"

namespace paragan {

std::vector<std::string> FuzzSeeds() {
  std::vector<uint8_t> gray(5 * 7), rgb(4 * 3 * 3);
  for (size_t i = 0; i < gray.size(); ++i) gray[i] = uint8_t(i * 7);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(255 - i * 5);
  std::vector<std::string> seeds = {*EncodePng(gray.data(), 5, 7, 1),
                                    *EncodePng(rgb.data(), 4, 3, 3)};
  char dir[] = "/tmp/paragan-seeds-XXXXXX";
  FuzzCheck(mkdtemp(dir) != nullptr, "a temporary directory");
  const std::string path = std::string(dir) + "/seed.jpg";
  for (int channels : {1, 3}) {
    const std::vector<uint8_t>& px = channels == 1 ? gray : rgb;
    const int h = channels == 1 ? 5 : 4, w = channels == 1 ? 7 : 3;
    FuzzCheck(WriteJpeg(path, px.data(), h, w, channels, 80).ok(), "jpeg");
    seeds.push_back(*ReadFileToString(path));
  }
  unlink(path.c_str());
  rmdir(dir);
  return seeds;
}

}  // namespace paragan

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<paragan::Image> image = paragan::DecodeImage(
      absl::string_view(reinterpret_cast<const char*>(data), size),
      "fuzz input");
  if (image.ok()) {
    paragan::FuzzCheck(image->channels == 1 || image->channels == 3,
                       "gray or RGB");
    paragan::FuzzCheck(image->height > 0 && image->width > 0, "not empty");
    paragan::FuzzCheck(image->pixels.size() == size_t(image->height) *
                                                   size_t(image->width) *
                                                   size_t(image->channels),
                       "h*w*c pixels");
  }
  return 0;
}
