"""A fuzz target, built two ways from one source.

paragan_fuzz_target(name = "x_fuzzer", ...) defines
  :x_fuzzer_test  a cc_test in the suite: replays the seed corpus, its
                  prefixes and seeded mutations (tools/fuzz/replay_main.cc),
                  under any compiler and --config=asan/ubsan;
  :x_fuzzer       the libFuzzer binary (manual; needs --config=fuzz, clang),
                  for long runs: tools/fuzz/run_fuzzers.sh.
The seed corpus is fuzz_corpus/<name>/ beside the BUILD file.
"""

def paragan_fuzz_target(name, srcs, deps, size = "small", seconds = 10,
                        runs = 20000, tags = []):
    corpus = "fuzz_corpus/" + name
    native.cc_library(
        name = name + "_lib",
        testonly = True,
        srcs = srcs,
        deps = deps + ["//tools/fuzz:fuzz_target"],
        alwayslink = True,
    )
    native.cc_test(
        name = name + "_test",
        size = size,
        srcs = [],
        args = [
            "--seconds=%d" % seconds,
            "--runs=%d" % runs,
            native.package_name() + "/" + corpus,
        ],
        data = native.glob([corpus + "/*"]),
        tags = tags + ["fuzz"],
        deps = [
            ":" + name + "_lib",
            "//tools/fuzz:replay_main",
        ],
    )
    native.cc_binary(
        name = name,
        testonly = True,
        linkopts = ["-fsanitize=fuzzer"],
        tags = ["manual"],
        deps = [":" + name + "_lib"],
    )
