#include "worker/model/safetensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/test_util/test_util.h"

namespace distill::worker {
namespace {

using ::distill::testing::MakeTempDir;
using ::distill::testing::ReadFile;
using ::distill::testing::WriteFile;

// A safetensors file built byte by byte: u64 LE header length, header, data.
std::string Craft(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return out;
}

// Writes `contents` to DIR/NAME in a fresh dir and opens it.
absl::StatusOr<std::shared_ptr<SafetensorsFile>> OpenCrafted(const std::string& name,
                                                             const std::string& contents) {
  const std::string path = MakeTempDir("safetensors_test") + "/" + name;
  WriteFile(path, contents);
  return SafetensorsFile::Open(path);
}

// Opens a crafted file and expects InvalidArgument naming the file and `problem`.
void ExpectInvalid(const std::string& contents, const std::string& problem) {
  auto file = OpenCrafted("bad.safetensors", contents);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  EXPECT_NE(file.status().message().find("bad.safetensors: "), std::string::npos) << file.status();
  EXPECT_NE(file.status().message().find(problem), std::string::npos) << file.status();
}

TEST(SafetensorsTest, RoundTripKeepsValuesDtypesAndMetadata) {
  const std::string path = MakeTempDir("safetensors_test") + "/m.safetensors";
  torch::Tensor f32 = torch::arange(6, torch::kFloat32).reshape({2, 3}) * 0.5 - 1;
  torch::Tensor f16 = torch::tensor({0.5, -1.0, 2.0, 65504.0}).to(torch::kFloat16);
  torch::Tensor bf16 = torch::tensor({1.0, -2.0, 0.25, 3.0}).reshape({2, 2}).to(torch::kBFloat16);
  torch::Tensor i64 = torch::tensor({int64_t{-1}, int64_t{0}, int64_t{1} << 40}, torch::kInt64);
  torch::Tensor flag = torch::tensor({true, false, true});
  torch::Tensor scalar = torch::tensor(7, torch::kInt32).reshape({});
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"w.f32", f32},
                                {"b.f16", f16},
                                {"c.bf16", bf16},
                                {"a.i64", i64},
                                {"flag", flag},
                                {"scalar", scalar}},
                               {{"format", "pt"}, {"note", "x"}})
                  .ok());

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names(),
            (std::vector<std::string>{"a.i64", "b.f16", "c.bf16", "flag", "scalar", "w.f32"}));
  EXPECT_EQ((*file)->metadata(),
            (std::map<std::string, std::string>{{"format", "pt"}, {"note", "x"}}));
  for (const auto& [name, want] :
       std::vector<std::pair<std::string, torch::Tensor>>{{"w.f32", f32},
                                                          {"b.f16", f16},
                                                          {"c.bf16", bf16},
                                                          {"a.i64", i64},
                                                          {"flag", flag},
                                                          {"scalar", scalar}}) {
    auto got = (*file)->Get(name);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->scalar_type(), want.scalar_type()) << name;
    EXPECT_EQ(got->sizes().vec(), want.sizes().vec()) << name;
    EXPECT_TRUE(torch::equal(*got, want)) << name;  // exact: bytes are copied verbatim
  }
  EXPECT_EQ((*file)->Get("a.i64")->data_ptr<int64_t>()[2], int64_t{1} << 40);
}

TEST(SafetensorsTest, WriterPadsHeaderAndOmitsEmptyMetadata) {
  const std::string path = MakeTempDir("safetensors_test") + "/m.safetensors";
  ASSERT_TRUE(WriteSafetensors(path, {{"x", torch::ones({3}, torch::kFloat16)}}).ok());
  const std::string bytes = ReadFile(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 6);  // 3 x F16
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);
  EXPECT_EQ(header.substr(0, header.find_last_not_of(' ') + 1),
            R"({"x":{"data_offsets":[0,6],"dtype":"F16","shape":[3]}})");
  // Written through a temp file that is renamed away.
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    EXPECT_EQ(entry.path().filename().string(), "m.safetensors");
  }
}

TEST(SafetensorsTest, WriterAlignsEveryTensorToItsElementSize) {
  const std::string path = MakeTempDir("safetensors_test") + "/m.safetensors";
  // An odd-sized U8 tensor named first would misalign the F64 after it.
  ASSERT_TRUE(WriteSafetensors(path, {{"a", torch::ones({3}, torch::kUInt8)},
                                      {"b", torch::ones({1}, torch::kFloat64)},
                                      {"c", torch::ones({1}, torch::kFloat16)}})
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  for (const std::string& name : (*file)->names()) {
    torch::Tensor t = *(*file)->Get(name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data_ptr()) % t.element_size(), 0u) << name;
    EXPECT_TRUE(torch::all(t == 1).item<bool>()) << name;
  }
}

TEST(SafetensorsTest, WritesNonContiguousTensors) {
  const std::string path = MakeTempDir("safetensors_test") + "/m.safetensors";
  torch::Tensor t = torch::arange(12, torch::kFloat32).reshape({3, 4}).t();
  ASSERT_TRUE(WriteSafetensors(path, {{"t", t}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(torch::equal(*(*file)->Get("t"), t));
}

TEST(SafetensorsTest, WriteRejectsDuplicateNamesAndUnsupportedDtypes) {
  const std::string dir = MakeTempDir("safetensors_test");
  absl::Status dup =
      WriteSafetensors(dir + "/d.safetensors", {{"x", torch::ones({1})}, {"x", torch::ones({1})}});
  EXPECT_EQ(dup.code(), absl::StatusCode::kInvalidArgument) << dup;
  absl::Status complex =
      WriteSafetensors(dir + "/c.safetensors", {{"z", torch::ones({2}, torch::kComplexFloat)}});
  EXPECT_EQ(complex.code(), absl::StatusCode::kInvalidArgument) << complex;
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(SafetensorsTest, TensorsAliasTheMappingAndOutliveTheFile) {
  const std::string path = MakeTempDir("safetensors_test") + "/m.safetensors";
  torch::Tensor want = torch::randn({16, 16});
  ASSERT_TRUE(WriteSafetensors(path, {{"w", want}}).ok());
  torch::Tensor got;
  {
    auto file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    got = *(*file)->Get("w");
    // Zero-copy: two reads share the mapped bytes.
    EXPECT_EQ((*file)->Get("w")->data_ptr(), got.data_ptr());
  }  // the SafetensorsFile is gone; the tensor keeps the mapping alive
  std::filesystem::remove(path);
  EXPECT_TRUE(torch::equal(got, want));
  EXPECT_TRUE(torch::equal(got.clone() * 2, want * 2));
}

TEST(SafetensorsTest, ReadsHandCraftedFile) {
  // Two tensors and metadata, laid out by hand (independent of the writer):
  // data section = F32 [1.5, -2] then I32 [[7], [-9]]; header not padded.
  const std::string header = R"({"__metadata__":{"format":"pt"},)"
                             R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("ids":{"dtype":"I32","shape":[2,1],"data_offsets":[8,16]}})";
  auto file = OpenCrafted("hand.safetensors",
                          Craft(header, Bytes<float>({1.5f, -2.0f}) + Bytes<int32_t>({7, -9})));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->names(), (std::vector<std::string>{"ids", "w"}));
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  torch::Tensor w = *(*file)->Get("w");
  EXPECT_EQ(w.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(w, torch::tensor({1.5f, -2.0f})));
  torch::Tensor ids = *(*file)->Get("ids");
  EXPECT_EQ(ids.scalar_type(), torch::kInt32);
  EXPECT_EQ(ids.sizes().vec(), (std::vector<int64_t>{2, 1}));
  EXPECT_EQ(ids[1][0].item<int32_t>(), -9);
  EXPECT_TRUE((*file)->Contains("ids"));
  EXPECT_FALSE((*file)->Contains("nope"));
}

TEST(SafetensorsTest, ReadsEmptyTensorAndMisalignedForeignData) {
  // A U8 byte first puts the F32 at data offset 1: Get() must still read it.
  const std::string header = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]},)"
                             R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[5,5]}})";
  std::string header_padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  auto file = OpenCrafted("m.safetensors", Craft(header_padded, "\x05" + Bytes<float>({3.25f})));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Get("a")->item<uint8_t>(), 5);
  EXPECT_EQ((*file)->Get("b")->item<float>(), 3.25f);
  EXPECT_EQ((*file)->Get("e")->numel(), 0);
}

TEST(SafetensorsTest, GetUnknownNameIsNotFound) {
  auto file = OpenCrafted("m.safetensors", Craft("{}"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Get("x").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open(MakeTempDir("safetensors_test") + "/absent.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find("absent.safetensors"), std::string::npos);
}

TEST(SafetensorsTest, FileShorterThanEightBytesIsInvalidArgument) {
  ExpectInvalid("", "shorter than");
  ExpectInvalid(std::string("\x10\0\0", 3), "shorter than");
}

TEST(SafetensorsTest, ZeroHeaderLengthIsInvalidArgument) {
  ExpectInvalid(std::string(8, '\0') + "{}", "header length is 0");
}

TEST(SafetensorsTest, TruncatedHeaderIsInvalidArgument) {
  std::string bytes = Craft(std::string(999999, ' '));
  ExpectInvalid(bytes.substr(0, 120), "header length 999999 exceeds file size 120");
  // The largest u64 must not overflow the bounds check.
  ExpectInvalid(std::string(8, '\xff') + "{}", "exceeds file size 10");
}

TEST(SafetensorsTest, InvalidJsonIsInvalidArgument) {
  ExpectInvalid(Craft(R"({"w": {"dtype": "F32",)"), "header is not valid JSON");
  ExpectInvalid(Craft("[1, 2]"), "not a JSON object");
  ExpectInvalid(Craft("{\"\xff\": 1}"), "header is not valid JSON");  // bad UTF-8
}

TEST(SafetensorsTest, UnknownDtypeIsInvalidArgument) {
  ExpectInvalid(
      Craft(R"({"x":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})", std::string(1, '\0')),
      "unknown dtype 'F8_E4M3' for tensor 'x'");
}

TEST(SafetensorsTest, OffsetsNotMatchingShapeAreInvalidArgument) {
  ExpectInvalid(
      Craft(R"({"x":{"dtype":"F32","shape":[4,8],"data_offsets":[0,64]}})", std::string(64, '\0')),
      "tensor 'x' data_offsets [0, 64] do not match shape [4, 8] x F32 (128 bytes)");
  ExpectInvalid(
      Craft(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", std::string(8, '\0')),
      "tensor 'x' has invalid data_offsets");
  ExpectInvalid(Craft(R"({"x":{"dtype":"F32","shape":[1]}})"),
                "tensor 'x' has invalid data_offsets");
}

TEST(SafetensorsTest, OffsetsBeyondFileAreInvalidArgument) {
  ExpectInvalid(
      Craft(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", std::string(16, '\0')),
      "tensor 'x' data_offsets [8, 24] lie outside the data section (16 bytes)");
  // Sizes whose byte count overflows 64 bits.
  ExpectInvalid(
      Craft(R"({"x":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
      "too large");
}

TEST(SafetensorsTest, BadShapesAreInvalidArgument) {
  for (const char* shape : {"[-1]", "[2.5]", R"(["4"])", "[null]", "4", "[[1]]"}) {
    ExpectInvalid(
        Craft(absl::StrCat(R"({"x":{"dtype":"U8","shape":)", shape, R"(,"data_offsets":[0,4]}})"),
              std::string(4, '\0')),
        "tensor 'x'");
  }
  ExpectInvalid(Craft(R"({"x":[1, 2]})"), "tensor 'x' is not an object");
  ExpectInvalid(Craft(R"({"__metadata__":{"k":1}})"), "__metadata__");
}

TEST(SafetensorsTest, NeverCrashesOnTruncatedOrCorruptedFiles) {
  const std::string dir = MakeTempDir("safetensors_test");
  const std::string good_path = dir + "/good.safetensors";
  ASSERT_TRUE(WriteSafetensors(
                  good_path, {{"a", torch::ones({2, 3})}, {"b", torch::zeros({5}, torch::kInt64)}},
                  {{"k", "v"}})
                  .ok());
  const std::string good = ReadFile(good_path);
  const std::string path = dir + "/bad.safetensors";
  for (size_t len = 0; len < good.size(); ++len) {
    WriteFile(path, good.substr(0, len));
    auto file = SafetensorsFile::Open(path);
    EXPECT_FALSE(file.ok()) << len;
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << len;
  }
  // Every single-byte change in the length and header: an error or a valid file.
  for (size_t i = 0; i < good.size() - 64; ++i) {
    for (char c : {'\0', '9', '"', '}', '\xff'}) {
      std::string bad = good;
      bad[i] = c;
      WriteFile(path, bad);
      auto file = SafetensorsFile::Open(path);
      if (!file.ok()) {
        EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << i;
        continue;
      }
      for (const std::string& name : (*file)->names()) {
        EXPECT_TRUE((*file)->Get(name).ok());
      }
    }
  }
}

TEST(SafetensorsTest, ReadsShardedDirectoryThroughIndex) {
  const std::string dir = MakeTempDir("safetensors_test");
  torch::Tensor a = torch::randn({3, 2}), b = torch::randn({4}), c = torch::arange(5);
  ASSERT_TRUE(
      WriteSafetensors(dir + "/model-00001-of-00002.safetensors", {{"a", a}, {"b", b}}).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", {{"c", c}}).ok());
  WriteFile(dir + "/model.safetensors.index.json", R"({"metadata": {"total_size": 100},
      "weight_map": {"a": "model-00001-of-00002.safetensors",
                     "b": "model-00001-of-00002.safetensors",
                     "c": "model-00002-of-00002.safetensors"}})");
  auto tensors = ReadSafetensorsDir(dir);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  ASSERT_EQ(tensors->size(), 3u);
  EXPECT_TRUE(torch::equal(tensors->at("a"), a));
  EXPECT_TRUE(torch::equal(tensors->at("b"), b));
  EXPECT_TRUE(torch::equal(tensors->at("c"), c));
}

TEST(SafetensorsTest, ReadsSingleFileDirectory) {
  const std::string dir = MakeTempDir("safetensors_test");
  torch::Tensor a = torch::randn({2, 2});
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", {{"a", a}, {"b", a * 2}}).ok());
  auto tensors = ReadSafetensorsDir(dir);
  ASSERT_TRUE(tensors.ok()) << tensors.status();
  ASSERT_EQ(tensors->size(), 2u);
  EXPECT_TRUE(torch::equal(tensors->at("b"), a * 2));
}

TEST(SafetensorsTest, EmptyDirectoryIsNotFound) {
  const std::string dir = MakeTempDir("safetensors_test");
  auto tensors = ReadSafetensorsDir(dir);
  EXPECT_EQ(tensors.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(tensors.status().message().find("no model.safetensors"), std::string::npos);
}

TEST(SafetensorsTest, IndexNamingMissingShardIsNotFound) {
  const std::string dir = MakeTempDir("safetensors_test");
  ASSERT_TRUE(WriteSafetensors(dir + "/s1.safetensors", {{"a", torch::ones({1})}}).ok());
  WriteFile(dir + "/model.safetensors.index.json",
            R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
  auto tensors = ReadSafetensorsDir(dir);
  ASSERT_FALSE(tensors.ok());
  EXPECT_EQ(tensors.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(tensors.status().message().find("model.safetensors.index.json"), std::string::npos);
  EXPECT_NE(tensors.status().message().find("s2.safetensors"), std::string::npos);
}

TEST(SafetensorsTest, IndexNameAbsentFromShardIsInvalidArgument) {
  const std::string dir = MakeTempDir("safetensors_test");
  ASSERT_TRUE(WriteSafetensors(dir + "/s1.safetensors", {{"a", torch::ones({1})}}).ok());
  WriteFile(dir + "/model.safetensors.index.json",
            R"({"weight_map": {"a": "s1.safetensors", "ghost": "s1.safetensors"}})");
  auto tensors = ReadSafetensorsDir(dir);
  ASSERT_FALSE(tensors.ok());
  EXPECT_EQ(tensors.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tensors.status().message().find("'ghost'"), std::string::npos);
  EXPECT_NE(tensors.status().message().find("s1.safetensors"), std::string::npos);
  EXPECT_NE(tensors.status().message().find("model.safetensors.index.json"), std::string::npos);
}

TEST(SafetensorsTest, MalformedIndexIsInvalidArgument) {
  const std::string dir = MakeTempDir("safetensors_test");
  for (const char* index : {"{", R"({"metadata": {}})", R"({"weight_map": {"a": 3}})",
                            R"({"weight_map": {"a": "../x.safetensors"}})"}) {
    WriteFile(dir + "/model.safetensors.index.json", index);
    auto tensors = ReadSafetensorsDir(dir);
    EXPECT_EQ(tensors.status().code(), absl::StatusCode::kInvalidArgument) << index;
    EXPECT_NE(tensors.status().message().find("model.safetensors.index.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace distill::worker
