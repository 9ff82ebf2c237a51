# op_library(NAME <target> DEPS <targets...> [PKG <imported targets...>] [SOURCES <files...>])
#
# One folder, one static library. The library is the folder's *.c (or SOURCES when given); it
# exposes only its own folder as include directory and links only DEPS (the libraries below it)
# and PKG (system libraries), so a header of a library above it is not found: an upward
# #include does not compile.
#
# Each library also gets a link check, linkcheck-<target> (built by default, never installed):
# an empty program linking the library's whole archive and its declared dependencies only, so a
# call from the library to a symbol of a library above it is an undefined reference at build
# time. Every library is recorded in the global property OP_LIBRARIES (the INTERFACE target
# `op` links them all; the fuzz build instruments them all).
function(op_library)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME" "DEPS;PKG;SOURCES")
  if(NOT arg_NAME OR arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "op_library(NAME <target> DEPS <targets...> [PKG ...] [SOURCES ...])")
  endif()
  set(sources ${arg_SOURCES})
  if(NOT sources)
    file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
  endif()

  add_library(${arg_NAME} STATIC ${sources})
  target_include_directories(${arg_NAME} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${arg_NAME} PUBLIC ${arg_DEPS} ${arg_PKG})
  set_property(GLOBAL APPEND PROPERTY OP_LIBRARIES ${arg_NAME})

  set(main ${PROJECT_BINARY_DIR}/linkcheck-main.c)
  file(CONFIGURE OUTPUT ${main} CONTENT "int main(void)\n{\n        return 0;\n}\n")
  add_executable(linkcheck-${arg_NAME} ${main})
  target_link_libraries(linkcheck-${arg_NAME} PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,${arg_NAME}>")
endfunction()
