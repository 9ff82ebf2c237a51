# packaging/deb.cmake: the Debian package opd_<version>_<arch>.deb, made by CPack.
# Included at the end of the top-level CMakeLists.txt. Build it with
#   cmake --build build --target package        (or: cd build && cpack -G DEB)
# The install() rules of the tree put opd, opctl, op-agent, the registry, the units, sysusers
# and tmpfiles under the prefix (/usr in the package); this file adds the man pages, the bash
# completion, the documentation, the Prometheus rules and /etc/opd/opd.conf (a conffile), and the maintainer scripts
# in packaging/debian/. See docs/operations.md, "Debian package".

set(OP_PKG_DIR ${CMAKE_CURRENT_LIST_DIR})

install(FILES ${OP_PKG_DIR}/man/opd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${OP_PKG_DIR}/man/opctl.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES ${OP_PKG_DIR}/completion/opctl DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
# The unit's Documentation=file:/usr/share/doc/opd/operations.md.
install(FILES ${CMAKE_SOURCE_DIR}/docs/operations.md ${CMAKE_SOURCE_DIR}/docs/architecture.md
              ${CMAKE_SOURCE_DIR}/docs/protocol.md ${CMAKE_SOURCE_DIR}/docs/images.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Prometheus recording and alerting rules for opd's metrics (docs/metrics.md, "Rules").
install(FILES ${OP_PKG_DIR}/prometheus/opd-rules.yml DESTINATION ${CMAKE_INSTALL_DATADIR}/opd/prometheus)
# opd.service reads /etc/opd/opd.conf: the example, every key at its default. Absolute, so
# only packages (CPack DEB installs with DESTDIR) and `cmake --install` as root put it there.
install(FILES ${CMAKE_SOURCE_DIR}/systemd/opd.conf.example DESTINATION /etc/opd RENAME opd.conf)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME opd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "opd developers")
set(CPACK_PACKAGE_CONTACT "opd developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "run untrusted code in QEMU microVMs over a UNIX socket")
set(CPACK_PACKAGE_DESCRIPTION
    "opd runs programs in short-lived QEMU microVMs (warm pools of paused snapshot clones, or \
cold boots) and serves requests over a UNIX socket; opctl is its command-line client. The \
package installs the systemd units (opd.socket is enabled), the opd system user, the \
directories under /var/lib/opd and an example configuration in /etc/opd/opd.conf. Guest images \
are not included: build them with packaging/images/build-images from the source tree.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES OFF)

set(CPACK_DEBIAN_PACKAGE_NAME opd)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # opd_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "opd developers")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies from dpkg-shlibdeps (package dpkg-dev) when it is there; otherwise the
# Debian 12 packages of what `ldd` shows for opd and opctl.
find_program(OP_DPKG_SHLIBDEPS dpkg-shlibdeps)
# procps: /bin/kill, which opd.service's ExecReload= runs (minimal Debian systems lack it).
if(OP_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "qemu-system-x86 (>= 1:8.2), systemd, procps")
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS
      "libc6 (>= 2.34), libjansson4, libevent-core-2.1-7, libevent-extra-2.1-7, libssl3, libsystemd0, qemu-system-x86 (>= 1:8.2), systemd, procps")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${OP_PKG_DIR}/debian/conffiles ${OP_PKG_DIR}/debian/postinst
    ${OP_PKG_DIR}/debian/prerm ${OP_PKG_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
