# What `cmake --install` puts where, and the Debian package (cpack -G DEB).
# See docs/packaging.md. Paths are relative to CMAKE_INSTALL_PREFIX (/usr/local
# by default; the .deb uses /usr).
include(GNUInstallDirs)

install(TARGETS reel RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Man pages: reel(1) and reel-<command>(1), generated at build time from the
# built binary's --help text (cmake/gen_man.py), so they cannot drift from it.
find_program(REEL_PYTHON3 NAMES python3 HINTS /usr/bin)
option(REEL_MAN "Generate and install man pages (needs python3)" ON)
if(REEL_MAN AND NOT REEL_PYTHON3)
  message(WARNING "python3 not found: no man pages (-DREEL_MAN=OFF to silence)")
  set(REEL_MAN OFF)
endif()
if(REEL_MAN)
  set(REEL_MAN_DIR ${CMAKE_BINARY_DIR}/man)
  add_custom_command(
    OUTPUT ${REEL_MAN_DIR}/pages.txt
    COMMAND ${CMAKE_COMMAND} -E rm -rf ${REEL_MAN_DIR}
    COMMAND ${REEL_PYTHON3} ${CMAKE_SOURCE_DIR}/cmake/gen_man.py $<TARGET_FILE:reel>
            ${REEL_MAN_DIR} ${PROJECT_VERSION}
    DEPENDS reel ${CMAKE_SOURCE_DIR}/cmake/gen_man.py
    COMMENT "man pages from reel --help"
    VERBATIM)
  add_custom_target(reel_man ALL DEPENDS ${REEL_MAN_DIR}/pages.txt)
  install(DIRECTORY ${REEL_MAN_DIR}/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
          FILES_MATCHING PATTERN "*.1.gz")
endif()

# Shell completions (contrib/completion): they ask the installed reel for its
# commands and options (--help) and for session names, config keys and flow
# ids (--json), so they follow the binary too.
install(FILES ${CMAKE_SOURCE_DIR}/contrib/completion/reel.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME reel)
install(FILES ${CMAKE_SOURCE_DIR}/contrib/completion/_reel
        DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)
install(FILES ${CMAKE_SOURCE_DIR}/contrib/completion/reel.fish
        DESTINATION ${CMAKE_INSTALL_DATADIR}/fish/vendor_completions.d)

# systemd units: docs/systemd/{system,user}/reel@.service, with ExecStart
# pointed at the installed binary. Written at install time, because the prefix
# is known only then (cpack installs into /usr whatever the build said).
if(IS_ABSOLUTE "${CMAKE_INSTALL_BINDIR}")
  set(REEL_UNIT_BINDIR "${CMAKE_INSTALL_BINDIR}")
else()
  set(REEL_UNIT_BINDIR "@PREFIX@/${CMAKE_INSTALL_BINDIR}")
endif()
if(LIBSYSTEMD_FOUND)
  set(REEL_UNIT_TYPE notify)
else()
  set(REEL_UNIT_TYPE exec) # no readiness notification without libsystemd
endif()
install(CODE "set(REEL_UNIT_SRC \"${CMAKE_SOURCE_DIR}/docs/systemd\")
set(REEL_UNIT_BINDIR \"${REEL_UNIT_BINDIR}\")
set(REEL_UNIT_TYPE ${REEL_UNIT_TYPE})")
install(CODE [[
  foreach(kind IN ITEMS system user)
    file(READ "${REEL_UNIT_SRC}/${kind}/reel@.service" unit)
    string(REPLACE "@PREFIX@" "${CMAKE_INSTALL_PREFIX}" bindir "${REEL_UNIT_BINDIR}")
    string(REPLACE "/usr/bin/reel" "${bindir}/reel" unit "${unit}")
    string(REPLACE "Type=notify" "Type=${REEL_UNIT_TYPE}" unit "${unit}")
    set(dst "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/lib/systemd/${kind}/reel@.service")
    message(STATUS "Installing: ${dst}")
    file(WRITE "${dst}" "${unit}")
    list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${dst}")
  endforeach()
]])

# Documentation, with the unit files as examples.
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}
        PATTERN "__pycache__" EXCLUDE)

# Debian package: cpack -G DEB in the build directory. Library dependencies
# come from dpkg-shlibdeps (Debian package dpkg-dev).
set(CPACK_PACKAGE_NAME reel)
set(CPACK_PACKAGE_VENDOR "reel")
set(CPACK_PACKAGE_CONTACT "reel maintainers <reel@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "intercepting HTTP(S) proxy that records flows into sessions")
set(CPACK_PACKAGE_DESCRIPTION "reel records HTTP and HTTPS flows passing through it into \
sessions (a zstd spool with an SQLite index) and lets you list, query and annotate them.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# map_local's Content-Type of extensions beyond its own table
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "media-types")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://example.invalid/reel")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/contrib/debian/postinst ${CMAKE_SOURCE_DIR}/contrib/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
