// Fuzzes JSONL data lines through the worker's file readers: the input is
// written to a .jsonl file in a scratch directory and read as
// prompt_completion instruction data (LoadExamples, byte tokenizer) and as
// text documents (TokenizeFileBytes). Each must give a value or a Status
// naming the file and line: no crash, no uncaught exception, no sanitizer
// report. (File I/O per input keeps the readers' real entry points.)
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "worker/data/byte_tokenizer.h"
#include "worker/data/instruction_examples.h"

namespace {

const std::string& ScratchDir() {
  static const std::string* dir = [] {
    auto* d = new std::string(std::filesystem::temp_directory_path() /
                              ("jsonl_fuzz." + std::to_string(::getpid())));
    std::filesystem::create_directories(*d);
    return d;
  }();
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ScratchDir() + "/in.jsonl";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto tokenizer = distill::worker::ExampleTokenizer::Resolve("bytes");
  if (!tokenizer.ok()) std::abort();
  // A fresh cache would answer instead of the parser: drop it each time.
  std::filesystem::remove(distill::worker::ExampleCachePath(
      path, distill::worker::kFormatPromptCompletion, tokenizer->tag()));
  (void)distill::worker::LoadExamples(path, distill::worker::kFormatPromptCompletion, *tokenizer,
                                      /*threads=*/1);
  (void)distill::worker::TokenizeFileBytes(path, ScratchDir() + "/out.bin");
  return 0;
}
