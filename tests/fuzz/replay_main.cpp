// SPDX-License-Identifier: BSL-1.0
// The driver of the replay build: runs a fuzz harness's LLVMFuzzerTestOneInput over every
// file of the directories (and over the files) given on the command line, in name order, as
// libFuzzer would replay a corpus, for compilers without libFuzzer (g++). A crash, a
// sanitizer report or a harness check fails the run; so does finding no input at all (a
// misplaced corpus must not pass as an empty one). Each input's name is printed before it
// runs, so that a failure report follows the name of the input that caused it.
//
//   wsmanager_fuzz_replay_<target> <directory or file>...

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(std::uint8_t const* data, std::size_t size);

namespace {

bool read_file(std::filesystem::path const& path, std::vector<std::uint8_t>& out) {
    std::ifstream file(path, std::ios::binary);
    if (!file) return false;
    out.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    return !file.bad();
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::filesystem::path> inputs;
    for (int i = 1; i < argc; ++i) {
        std::string_view const arg = argv[i];
        std::error_code ec;
        if (std::filesystem::is_directory(arg, ec)) {
            std::vector<std::filesystem::path> files;
            for (auto const& entry : std::filesystem::directory_iterator(arg, ec)) {
                if (entry.is_regular_file(ec)) files.push_back(entry.path());
            }
            std::sort(files.begin(), files.end());
            inputs.insert(inputs.end(), files.begin(), files.end());
        } else if (std::filesystem::is_regular_file(arg, ec)) {
            inputs.emplace_back(arg);
        } else {
            std::fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
            return 2;
        }
    }
    if (inputs.empty()) {
        std::fprintf(stderr, "usage: %s <corpus directory or file>... (found no input)\n",
                     argc > 0 ? argv[0] : "replay");
        return 2;
    }

    auto const start = std::chrono::steady_clock::now();
    std::vector<std::uint8_t> data;
    std::size_t bytes = 0;
    for (auto const& path : inputs) {
        if (!read_file(path, data)) {
            std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
            return 2;
        }
        std::fprintf(stderr, "replay: %s (%zu bytes)\n", path.c_str(), data.size());
        std::fflush(stderr);
        // A copy of exactly `size` bytes, as libFuzzer passes: a read past it is caught.
        std::vector<std::uint8_t> const exact(data.begin(), data.end());
        LLVMFuzzerTestOneInput(exact.empty() ? nullptr : exact.data(), exact.size());
        bytes += data.size();
    }
    LLVMFuzzerTestOneInput(nullptr, 0);  // libFuzzer always tries the empty input too
    auto const elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start);
    std::printf("replay: %zu inputs (%zu bytes) in %.2f s, no failure\n", inputs.size(), bytes,
                elapsed.count());
    return 0;
}
