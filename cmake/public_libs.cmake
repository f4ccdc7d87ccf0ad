# The installed libraries, built from the same objects as the in-tree one:
#   libringhttp.so  exports only rh_* (hidden visibility + cmake/ringhttp.map), has a SONAME;
#   libringhttp.a   one object: all modules and llhttp partially linked (ld -r), then every
#                   symbol but the public rh_ API made local (objcopy), so an application's
#                   own conn_close or llhttp_init never collides with ours.
# Neither needs libmimalloc at link time (uring/mimalloc_local.c loads it privately).
include(CMakePackageConfigHelpers)

# 0.x: every minor release may change the ABI, so the SONAME carries it (libringhttp.so.0.1).
if(PROJECT_VERSION_MAJOR EQUAL 0)
    set(RH_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
else()
    set(RH_SOVERSION ${PROJECT_VERSION_MAJOR})
endif()

add_library(ringhttp_shared SHARED ${RH_OBJECTS})
set_target_properties(ringhttp_shared PROPERTIES OUTPUT_NAME ringhttp EXPORT_NAME ringhttp
    VERSION ${PROJECT_VERSION} SOVERSION ${RH_SOVERSION}
    LINK_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/ringhttp.map)
target_include_directories(ringhttp_shared
    PUBLIC $<BUILD_INTERFACE:${CMAKE_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>)
target_link_options(ringhttp_shared PRIVATE
    LINKER:--version-script=${CMAKE_SOURCE_DIR}/cmake/ringhttp.map LINKER:--no-undefined)
target_link_libraries(ringhttp_shared PRIVATE ${RH_LINK_LIBS})

set(RH_STATIC_DIR ${CMAKE_BINARY_DIR}/public)
set(RH_STATIC ${RH_STATIC_DIR}/libringhttp.a)
add_custom_command(OUTPUT ${RH_STATIC}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${RH_STATIC_DIR}
    COMMAND ${CMAKE_COMMAND} -E rm -f ${RH_STATIC} ${RH_STATIC_DIR}/ringhttp.o
    COMMAND ${CMAKE_LINKER} -r -o ${RH_STATIC_DIR}/ringhttp.o ${RH_OBJECTS}
    COMMAND ${CMAKE_OBJCOPY} --localize-hidden --wildcard --keep-global-symbol=rh_*
            ${RH_STATIC_DIR}/ringhttp.o
    COMMAND ${CMAKE_AR} rcs ${RH_STATIC} ${RH_STATIC_DIR}/ringhttp.o
    DEPENDS ${RH_OBJECTS} rh_uring rh_pool rh_ctx rh_server rh_llhttp
    COMMAND_EXPAND_LISTS VERBATIM
    COMMENT "Partially linking libringhttp.a (public symbols only)")
add_custom_target(ringhttp_static ALL DEPENDS ${RH_STATIC})

# Install: library, header, pkg-config and CMake packages. Relocatable: the .pc and the
# CMake files find the prefix from where they were installed.
install(TARGETS ringhttp_shared EXPORT ringhttpTargets
        LIBRARY DESTINATION lib INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${RH_STATIC} DESTINATION lib)
install(FILES include/ringhttp.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
list(JOIN RH_PC_REQUIRES " " RH_PC_REQUIRES_SPACED)
configure_file(cmake/ringhttp.pc.in ${CMAKE_BINARY_DIR}/ringhttp.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/ringhttp.pc DESTINATION lib/pkgconfig)

set(RH_CMAKE_DIR lib/cmake/ringhttp)
install(EXPORT ringhttpTargets NAMESPACE ringhttp:: DESTINATION ${RH_CMAKE_DIR})
configure_package_config_file(cmake/ringhttpConfig.cmake.in
    ${CMAKE_BINARY_DIR}/ringhttpConfig.cmake INSTALL_DESTINATION ${RH_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/ringhttpConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/ringhttpConfig.cmake
        ${CMAKE_BINARY_DIR}/ringhttpConfigVersion.cmake DESTINATION ${RH_CMAKE_DIR})
