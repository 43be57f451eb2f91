#include "common/main_guard.h"

#include <exception>
#include <iostream>

namespace distill::common {

int RunCatchingExceptions(const char* program, const std::function<int()>& main) {
  try {
    return main();
  } catch (const std::exception& e) {
    std::cerr << program << ": internal error: " << e.what() << std::endl;
  } catch (...) {
    std::cerr << program << ": internal error: an unknown exception" << std::endl;
  }
  return 1;
}

}  // namespace distill::common
