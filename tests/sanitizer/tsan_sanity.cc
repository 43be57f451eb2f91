// The ThreadSanitizer run's own check (docs/sanitizers.md, Note [TSan and
// abseil]): a counter two threads bump under an absl::Mutex must be clean,
// and the same counter without the lock must be reported. The first fails
// when abseil is Debian's uninstrumented build (TSan does not see the lock),
// the second when TSan or its suppressions hide a plain race.
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"

int main(int argc, char** argv) {
  const bool locked = argc > 1 && std::strcmp(argv[1], "locked") == 0;
  absl::Mutex mu;
  long n = 0;
  auto work = [&] {
    for (int i = 0; i < 100000; ++i) {
      if (locked) {
        absl::MutexLock lock(&mu);
        ++n;
      } else {
        ++n;
      }
    }
  };
  std::thread a(work), b(work);
  a.join();
  b.join();
  std::printf("%ld\n", n);
  return 0;
}
