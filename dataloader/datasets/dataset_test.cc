#include "dataloader/datasets/dataset.h"

#include <sys/stat.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace paragan {
namespace {

std::string FashionMnistDir() {
  const char* d = std::getenv("PARAGAN_FASHION_MNIST_DIR");
  return d != nullptr && d[0] != '\0' ? d : "/usr/share/datasets/fashion-mnist";
}

bool HaveFashionMnist() {
  struct stat sb;
  return stat((FashionMnistDir() + "/t10k-images-idx3-ubyte.gz").c_str(),
              &sb) == 0;
}

#define SKIP_WITHOUT_FASHION_MNIST()                                 \
  if (!HaveFashionMnist())                                           \
  GTEST_SKIP() << "Fashion-MNIST not found in " << FashionMnistDir() \
               << " (apt-get install dataset-fashion-mnist, or set " \
                  "PARAGAN_FASHION_MNIST_DIR)"

void CheckImageRange(const std::vector<float>& image) {
  for (float v : image) {
    ASSERT_GE(v, -1.0f);
    ASSERT_LE(v, 1.0f);
  }
}

TEST(FashionMnistTest, LoadsTestSplit) {
  SKIP_WITHOUT_FASHION_MNIST();
  absl::StatusOr<std::unique_ptr<Dataset>> ds =
      OpenFashionMnist(FashionMnistDir(), /*train=*/false);
  ASSERT_TRUE(ds.ok()) << ds.status();
  const DatasetInfo& info = (*ds)->info();
  EXPECT_EQ(info.size, 10000);
  EXPECT_EQ(info.channels, 1);
  EXPECT_EQ(info.height, 32);
  EXPECT_EQ(info.width, 32);
  EXPECT_EQ(info.num_classes, 10);

  std::vector<int> counts(10, 0);
  std::vector<float> image(32 * 32);
  double mean = 0;
  for (int64_t i = 0; i < info.size; ++i) {
    int label = -1;
    (*ds)->Get(i, image.data(), &label);
    ASSERT_GE(label, 0);
    ASSERT_LT(label, 10);
    ++counts[label];
    if (i % 97 != 0) continue;
    CheckImageRange(image);
    for (int y = 0; y < 32; ++y) {
      for (int x = 0; x < 32; ++x) {
        const float v = image[y * 32 + x];
        if (y < 2 || y >= 30 || x < 2 || x >= 30) {
          ASSERT_EQ(v, -1.0f) << "padding at " << y << "," << x;
        }
        // Every value is byte / 127.5 - 1.
        const float byte = (v + 1.0f) * 127.5f;
        ASSERT_NEAR(byte, std::round(byte), 1e-3);
        mean += v;
      }
    }
  }
  // Fashion-MNIST's test split has exactly 1000 items per class.
  for (int k = 0; k < 10; ++k) EXPECT_EQ(counts[k], 1000) << "class " << k;
  // Mostly dark background but clearly not empty.
  mean /= (info.size / 97 + 1) * 1024.0;
  EXPECT_GT(mean, -0.9);
  EXPECT_LT(mean, 0.0);
}

TEST(FashionMnistTest, LoadsTrainSplit) {
  SKIP_WITHOUT_FASHION_MNIST();
  absl::StatusOr<std::unique_ptr<Dataset>> ds =
      OpenFashionMnist(FashionMnistDir(), /*train=*/true);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->info().size, 60000);
  std::vector<float> image(32 * 32);
  int label = -1;
  (*ds)->Get(59999, image.data(), &label);
  EXPECT_GE(label, 0);
  EXPECT_LT(label, 10);
  CheckImageRange(image);

  DatasetSpec spec;
  spec.name = "fashion_mnist";
  spec.path = FashionMnistDir();
  absl::StatusOr<std::unique_ptr<Dataset>> via_spec = OpenDataset(spec);
  ASSERT_TRUE(via_spec.ok()) << via_spec.status();
  EXPECT_EQ((*via_spec)->info().size, 60000);
}

// ---------------------------------------------------------------------------
// Small generated IDX files (no real dataset needed).

std::string TmpDir(const std::string& name) {
  const char* d = std::getenv("TEST_TMPDIR");
  const std::string dir = std::string(d != nullptr ? d : "/tmp") + "/" + name;
  mkdir(dir.c_str(), 0755);
  return dir;
}

std::string BigEndian(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

void WriteGz(const std::string& path, const std::string& data) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, data.data(), static_cast<unsigned>(data.size())),
            static_cast<int>(data.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

struct IdxOptions {
  uint32_t image_magic = 2051;
  uint32_t label_magic = 2049;
  uint32_t images = 5;
  uint32_t labels = 5;
  uint32_t rows = 28;
  uint32_t cols = 28;
  size_t drop_image_bytes = 0;  // remove from the end of the pixel data
  int bad_label = -1;           // stored as label of item 0 if >= 0
};

std::string ImageBytes(const IdxOptions& o) {
  std::string s = BigEndian(o.image_magic) + BigEndian(o.images) +
                  BigEndian(o.rows) + BigEndian(o.cols);
  for (size_t i = 0; i < size_t{o.images} * o.rows * o.cols; ++i) {
    s.push_back(static_cast<char>((i * 7) % 256));
  }
  s.resize(s.size() - o.drop_image_bytes);
  return s;
}

std::string LabelBytes(const IdxOptions& o) {
  std::string s = BigEndian(o.label_magic) + BigEndian(o.labels);
  for (uint32_t i = 0; i < o.labels; ++i)
    s.push_back(static_cast<char>(i % 10));
  if (o.bad_label >= 0 && o.labels > 0) s[8] = static_cast<char>(o.bad_label);
  return s;
}

std::string MakeIdxDir(const std::string& name, const IdxOptions& o) {
  const std::string dir = TmpDir(name);
  WriteGz(dir + "/t10k-images-idx3-ubyte.gz", ImageBytes(o));
  WriteGz(dir + "/t10k-labels-idx1-ubyte.gz", LabelBytes(o));
  return dir;
}

void ExpectError(const std::string& dir, const std::string& file,
                 const std::string& also = "") {
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenFashionMnist(dir, false);
  ASSERT_FALSE(ds.ok());
  const std::string msg(ds.status().message());
  EXPECT_NE(msg.find(dir + "/" + file), std::string::npos) << msg;
  if (!also.empty()) {
    EXPECT_NE(msg.find(also), std::string::npos) << msg;
  }
}

TEST(FashionMnistFilesTest, ValidSmallFileLoadsExactly) {
  IdxOptions o;
  const std::string dir = MakeIdxDir("idx_ok", o);
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenFashionMnist(dir, false);
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_EQ((*ds)->info().size, 5);
  std::vector<float> image(32 * 32);
  int label = -1;
  (*ds)->Get(3, image.data(), &label);
  EXPECT_EQ(label, 3);
  for (int y = 0; y < 28; ++y) {
    for (int x = 0; x < 28; ++x) {
      const size_t i = 3 * 784 + y * 28 + x;
      ASSERT_FLOAT_EQ(image[(y + 2) * 32 + x + 2],
                      static_cast<float>((i * 7) % 256) / 127.5f - 1.0f);
    }
  }
  EXPECT_EQ(image[0], -1.0f);
  EXPECT_EQ(image[31 * 32 + 31], -1.0f);
}

TEST(FashionMnistFilesTest, WrongMagic) {
  IdxOptions o;
  o.image_magic = 2049;
  ExpectError(MakeIdxDir("idx_magic_i", o), "t10k-images-idx3-ubyte.gz",
              "magic");
  o = IdxOptions();
  o.label_magic = 2051;
  ExpectError(MakeIdxDir("idx_magic_l", o), "t10k-labels-idx1-ubyte.gz",
              "magic");
}

TEST(FashionMnistFilesTest, Truncated) {
  IdxOptions o;
  o.drop_image_bytes = 100;
  // Header says 5 images: 16 + 5*784 = 3936 bytes; 3836 present.
  ExpectError(MakeIdxDir("idx_trunc", o), "t10k-images-idx3-ubyte.gz",
              "expected");
  ExpectError(MakeIdxDir("idx_trunc2", o), "t10k-images-idx3-ubyte.gz",
              "expected 3936 bytes (from the IDX header), got 3836");
  // Trailing data is rejected too.
  o = IdxOptions();
  const std::string dir_long = MakeIdxDir("idx_long", o);
  WriteGz(dir_long + "/t10k-labels-idx1-ubyte.gz", LabelBytes(o) + "x");
  ExpectError(dir_long, "t10k-labels-idx1-ubyte.gz", "size mismatch");
  // Only part of the header.
  const std::string dir = MakeIdxDir("idx_trunc3", IdxOptions());
  WriteGz(dir + "/t10k-labels-idx1-ubyte.gz", std::string("\0\0\x08", 3));
  ExpectError(dir, "t10k-labels-idx1-ubyte.gz", "truncated");
}

TEST(FashionMnistFilesTest, TruncatedGzipStream) {
  const std::string dir = MakeIdxDir("idx_gz_trunc", IdxOptions());
  const std::string path = dir + "/t10k-images-idx3-ubyte.gz";
  FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string data(1 << 20, '\0');
  data.resize(std::fread(&data[0], 1, data.size(), f));
  std::fclose(f);
  f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(data.data(), 1, data.size() / 2, f);
  std::fclose(f);
  ExpectError(dir, "t10k-images-idx3-ubyte.gz");
}

TEST(FashionMnistFilesTest, MismatchedCounts) {
  IdxOptions o;
  o.labels = 4;
  ExpectError(MakeIdxDir("idx_count", o), "t10k-labels-idx1-ubyte.gz",
              "mismatch");
}

TEST(FashionMnistFilesTest, WrongDimsAndLabels) {
  IdxOptions o;
  o.rows = 27;
  ExpectError(MakeIdxDir("idx_dims", o), "t10k-images-idx3-ubyte.gz", "27x28");
  o = IdxOptions();
  o.bad_label = 10;
  ExpectError(MakeIdxDir("idx_label", o), "t10k-labels-idx1-ubyte.gz",
              "out of range");
}

TEST(FashionMnistFilesTest, MissingFiles) {
  const std::string dir = TmpDir("idx_missing");
  ExpectError(dir, "t10k-images-idx3-ubyte.gz", "no such file");
  absl::StatusOr<std::unique_ptr<Dataset>> ds =
      OpenFashionMnist(dir + "/nope", true);
  ASSERT_FALSE(ds.ok());
  EXPECT_NE(ds.status().message().find(dir + "/nope"), std::string::npos);
}

// ---------------------------------------------------------------------------

TEST(SyntheticTest, DeterministicRangeAndLabels) {
  std::unique_ptr<Dataset> a = MakeSyntheticDataset(100, 3, 16, 10, 7);
  std::unique_ptr<Dataset> b = MakeSyntheticDataset(100, 3, 16, 10, 7);
  std::unique_ptr<Dataset> c = MakeSyntheticDataset(100, 3, 16, 10, 8);
  EXPECT_EQ(a->info().size, 100);
  EXPECT_EQ(a->info().channels, 3);
  EXPECT_EQ(a->info().num_classes, 10);
  std::vector<float> x(3 * 16 * 16), y(x.size()), z(x.size());
  for (int64_t i = 0; i < 100; ++i) {
    int la = -1, lb = -1;
    a->Get(i, x.data(), &la);
    b->Get(i, y.data(), &lb);
    c->Get(i, z.data(), nullptr);
    ASSERT_EQ(la, i % 10);
    ASSERT_EQ(la, lb);
    ASSERT_EQ(x, y);
    ASSERT_NE(x, z);
    CheckImageRange(x);
  }
}

// Class patterns are learnable: a nearest-class-mean classifier separates
// them almost perfectly.
TEST(SyntheticTest, ClassesAreDistinct) {
  const int k = 10, res = 16, n = 400;
  std::unique_ptr<Dataset> ds = MakeSyntheticDataset(n, 1, res, k, 3);
  std::vector<std::vector<double>> means(k, std::vector<double>(res * res));
  std::vector<float> img(res * res);
  for (int i = 0; i < n / 2; ++i) {
    int label = 0;
    ds->Get(i, img.data(), &label);
    for (int p = 0; p < res * res; ++p) means[label][p] += img[p] / (n / 2 / k);
  }
  int correct = 0;
  for (int i = n / 2; i < n; ++i) {
    int label = 0;
    ds->Get(i, img.data(), &label);
    int best = -1;
    double best_d = 1e30;
    for (int c = 0; c < k; ++c) {
      double d = 0;
      for (int p = 0; p < res * res; ++p) {
        d += (img[p] - means[c][p]) * (img[p] - means[c][p]);
      }
      if (d < best_d) best_d = d, best = c;
    }
    correct += best == label;
  }
  EXPECT_GE(correct, (n / 2) * 95 / 100);
}

TEST(OpenDatasetTest, SyntheticAndErrors) {
  DatasetSpec spec;
  spec.name = "synthetic";
  spec.synthetic_size = 64;
  spec.synthetic_classes = 4;
  spec.resolution = 8;
  spec.channels = 3;
  absl::StatusOr<std::unique_ptr<Dataset>> ds = OpenDataset(spec);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ((*ds)->info().size, 64);
  EXPECT_EQ((*ds)->info().num_classes, 4);
  EXPECT_EQ((*ds)->info().height, 8);

  spec.name = "imagenet";
  ds = OpenDataset(spec);
  ASSERT_FALSE(ds.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(ds.status()));
  const std::string msg(ds.status().message());
  EXPECT_NE(msg.find("imagenet"), std::string::npos);
  EXPECT_NE(msg.find("fashion_mnist, folder, synthetic"), std::string::npos);

  spec.name = "synthetic";
  spec.channels = 2;
  EXPECT_FALSE(OpenDataset(spec).ok());
  spec.channels = 1;
  spec.synthetic_size = 0;
  EXPECT_FALSE(OpenDataset(spec).ok());
  spec.name = "fashion_mnist";
  spec.path = "/x";
  spec.resolution = 64;
  EXPECT_TRUE(absl::IsInvalidArgument(OpenDataset(spec).status()));
  spec.name = "folder";
  spec.path = "";
  EXPECT_TRUE(absl::IsInvalidArgument(OpenDataset(spec).status()));
}

}  // namespace
}  // namespace paragan
