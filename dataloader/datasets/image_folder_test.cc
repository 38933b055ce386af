#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/image_io.h"
#include "dataloader/datasets/dataset.h"
#include "gtest/gtest.h"

namespace paragan {
namespace {

std::string MakeDir(const std::string& rel) {
  const char* d = std::getenv("TEST_TMPDIR");
  std::string path = d != nullptr ? d : "/tmp";
  size_t start = 0;
  while (start <= rel.size()) {
    const size_t slash = rel.find('/', start);
    path += "/" + rel.substr(start, slash - start);
    mkdir(path.c_str(), 0755);
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return path;
}

void WriteRaw(const std::string& path, const std::string& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(data.data(), 1, data.size(), f);
  std::fclose(f);
}

// h x w image whose left quarter is red, middle half green, right quarter
// blue (HWC).
std::vector<uint8_t> Stripes(int h, int w) {
  std::vector<uint8_t> p(size_t(h) * w * 3, 0);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int ch = x < w / 4 ? 0 : (x < w * 3 / 4 ? 1 : 2);
      p[(size_t(y) * w + x) * 3 + ch] = 200;
    }
  }
  return p;
}

std::vector<uint8_t> Uniform(int h, int w, int c, uint8_t value) {
  return std::vector<uint8_t>(size_t(h) * w * c, value);
}

// Builds <root>/{apple (PNG), banana (JPEG), .hidden} + a stray text file.
std::string MakeFolder(const std::string& name) {
  const std::string root = MakeDir(name);
  const std::string apple = MakeDir(name + "/apple");
  const std::string banana = MakeDir(name + "/banana");
  MakeDir(name + "/.hidden");
  WriteRaw(root + "/README.txt", "not a class");
  WriteRaw(apple + "/notes.txt", "ignored");
  // Wide RGB image: center crop keeps only the green middle.
  std::vector<uint8_t> stripes = Stripes(20, 40);
  EXPECT_TRUE(WritePng(apple + "/a1.png", stripes.data(), 20, 40, 3).ok());
  std::vector<uint8_t> gray = Uniform(7, 7, 1, 100);
  EXPECT_TRUE(WritePng(apple + "/a2.PNG", gray.data(), 7, 7, 1).ok());
  std::vector<uint8_t> light = Uniform(48, 32, 3, 220);
  EXPECT_TRUE(WriteJpeg(banana + "/b1.jpg", light.data(), 48, 32, 3).ok());
  std::vector<uint8_t> dark = Uniform(16, 16, 1, 30);
  EXPECT_TRUE(WriteJpeg(banana + "/b2.JPEG", dark.data(), 16, 16, 1).ok());
  return root;
}

TEST(ImageFolderTest, LoadsClassesResizesAndConverts) {
  const std::string root = MakeFolder("folder_ok");
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(root, 16, 3);
  ASSERT_TRUE(ds.ok()) << ds.status();
  const DatasetInfo& info = (*ds)->info();
  EXPECT_EQ(info.size, 4);
  EXPECT_EQ(info.num_classes, 2);
  EXPECT_EQ(info.channels, 3);
  EXPECT_EQ(info.height, 16);
  EXPECT_EQ(info.width, 16);

  const int plane = 16 * 16;
  std::vector<float> img(3 * plane);
  auto byte = [&](int ch, int y, int x) {
    return (img[ch * plane + y * 16 + x] + 1.0f) * 127.5f;
  };
  int label = -1;
  // Sorted: apple/a1.png, apple/a2.PNG, banana/b1.jpg, banana/b2.JPEG.
  (*ds)->Get(0, img.data(), &label);
  EXPECT_EQ(label, 0);
  for (int y = 0; y < 16; ++y) {
    for (int x = 0; x < 16; ++x) {
      ASSERT_NEAR(byte(0, y, x), 0, 0.5);
      ASSERT_NEAR(byte(1, y, x), 200, 0.5);
      ASSERT_NEAR(byte(2, y, x), 0, 0.5);
    }
  }
  (*ds)->Get(1, img.data(), &label);  // gray 7x7 upscaled, replicated to RGB
  EXPECT_EQ(label, 0);
  for (int ch = 0; ch < 3; ++ch) EXPECT_NEAR(byte(ch, 8, 3), 100, 0.5);
  (*ds)->Get(2, img.data(), &label);
  EXPECT_EQ(label, 1);
  EXPECT_NEAR(byte(1, 5, 5), 220, 3);
  (*ds)->Get(3, img.data(), &label);
  EXPECT_EQ(label, 1);
  EXPECT_NEAR(byte(2, 15, 15), 30, 3);
}

TEST(ImageFolderTest, GrayOutput) {
  const std::string root = MakeFolder("folder_gray");
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(root, 8, 1);
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<float> img(64);
  (*ds)->Get(0, img.data(), nullptr);
  // Green 200 -> 0.587 * 200 = 117.4 -> 117.
  EXPECT_NEAR((img[27] + 1.0f) * 127.5f, 117, 0.5);
}

TEST(CenterCropResizeTest, AreaAndBilinear) {
  // 4x4 gray with 2x2 blocks 0, 40 / 80, 120 -> 2x2 area average is exact.
  Image im;
  im.height = 4;
  im.width = 4;
  im.channels = 1;
  im.pixels = {0, 0, 40, 40, 0, 0, 40, 40, 80, 80, 120, 120, 80, 80, 120, 120};
  EXPECT_EQ(CenterCropResize(im, 2, 1), (std::vector<uint8_t>{0, 40, 80, 120}));
  EXPECT_EQ(CenterCropResize(im, 1, 1), (std::vector<uint8_t>{60}));
  // Identity size keeps the pixels; a 3x resize of a 2-pixel row ramps.
  EXPECT_EQ(CenterCropResize(im, 4, 1), im.pixels);
  Image two;
  two.height = 2;
  two.width = 2;
  two.channels = 1;
  two.pixels = {0, 90, 0, 90};
  const std::vector<uint8_t> up = CenterCropResize(two, 4, 1);
  EXPECT_EQ(std::vector<uint8_t>(up.begin(), up.begin() + 4),
            (std::vector<uint8_t>{0, 23, 68, 90}));
}

TEST(ImageFolderTest, Errors) {
  auto expect = [](const std::string& dir, const std::string& needle) {
    absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenImageFolder(dir, 8, 3);
    ASSERT_FALSE(ds.ok());
    EXPECT_NE(ds.status().message().find(needle), std::string::npos)
        << ds.status();
  };
  const std::string missing = MakeDir("folder_err") + "/missing";
  expect(missing, missing);

  const std::string empty = MakeDir("folder_empty");
  WriteRaw(empty + "/file.png", "stray file, not a class folder");
  expect(empty, "no class sub-folders");

  const std::string no_images = MakeFolder("folder_noimg");
  const std::string cherry = MakeDir("folder_noimg/cherry");
  WriteRaw(cherry + "/readme.md", "x");
  expect(no_images, cherry);

  const std::string corrupt = MakeFolder("folder_corrupt");
  const std::string bad = corrupt + "/banana/b0.jpg";
  WriteRaw(bad, std::string("\xff\xd8\xff\xe0", 4) + "garbage");
  expect(corrupt, bad);

  absl::StatusOr<std::unique_ptr<Dataset>> ds =
      OpenImageFolder(MakeFolder("folder_args"), 8, 2);
  EXPECT_TRUE(absl::IsInvalidArgument(ds.status()));
}

TEST(ImageFolderTest, ViaOpenDataset) {
  DatasetSpec spec;
  spec.name = "folder";
  spec.path = MakeFolder("folder_spec");
  spec.resolution = 12;
  spec.channels = 3;
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenDataset(spec);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->info().size, 4);
  EXPECT_EQ((*ds)->info().height, 12);
}

}  // namespace
}  // namespace paragan
