# cmake -DBINARY=<fuzz target> -P check_links.cmake: fails when the binary needs LibTorch
# or MPI (the fuzz targets must build and run without either).
execute_process(COMMAND readelf -d ${BINARY} OUTPUT_VARIABLE dynamic RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "readelf -d ${BINARY} failed")
endif()
string(REGEX MATCHALL "\\(NEEDED\\)[^\n]*" needed "${dynamic}")
foreach(line ${needed})
  if(line MATCHES "libtorch|libc10|libmpi|libopen-rte|libopen-pal|libcaffe2")
    message(FATAL_ERROR "${BINARY} links LibTorch or MPI: ${line}")
  endif()
endforeach()
