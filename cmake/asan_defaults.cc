// Linked into every target of a DISTILL_SANITIZE=address build (top-level
// CMakeLists.txt): AddressSanitizer's defaults for every instrumented process,
// the ranks mpirun starts on other hosts included (they do not get the
// launching shell's ASAN_OPTIONS). Leak checking is off: LibTorch, gRPC and
// Open MPI keep allocations for the life of the process. ASAN_OPTIONS still
// overrides these.
extern "C" const char* __asan_default_options() { return "detect_leaks=0:abort_on_error=1"; }
