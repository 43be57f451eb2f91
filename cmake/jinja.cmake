# distill_jinja: llama.cpp's C++ Jinja engine (MIT), the chat-template renderer
# behind worker/data/chat_template.cc. Its sources are not in the repository:
# scripts/fetch_jinja.sh puts them into third_party/llama-jinja/ from PyPI's
# pinned llama-cpp-python sdist (scripts/setup.sh and scripts/build.sh run it).
# Third-party code: compiled with its warnings off (-w) and included as SYSTEM,
# so our warning policy (DISTILL_WARNINGS) stays clean. Include it as
# "jinja/runtime.h" etc. (the include root is common/, never common/jinja/,
# whose string.h would shadow the C library's).
set(DISTILL_JINJA_DIR ${PROJECT_SOURCE_DIR}/third_party/llama-jinja)
if(NOT EXISTS ${DISTILL_JINJA_DIR}/.stamp)
  message(FATAL_ERROR "distill: ${DISTILL_JINJA_DIR} is missing: run scripts/fetch_jinja.sh "
                      "(it downloads llama.cpp's Jinja engine from PyPI; scripts/build.sh runs it)")
endif()
set(_jinja_common ${DISTILL_JINJA_DIR}/common)
add_library(distill_jinja STATIC
  ${_jinja_common}/jinja/caps.cpp ${_jinja_common}/jinja/lexer.cpp
  ${_jinja_common}/jinja/parser.cpp ${_jinja_common}/jinja/runtime.cpp
  ${_jinja_common}/jinja/string.cpp ${_jinja_common}/jinja/value.cpp
  ${_jinja_common}/json.cpp ${_jinja_common}/unicode.cpp)
target_include_directories(distill_jinja SYSTEM PUBLIC ${_jinja_common})
target_link_libraries(distill_jinja PRIVATE nlohmann_json::nlohmann_json)
target_compile_options(distill_jinja PRIVATE -w)
