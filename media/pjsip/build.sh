#!/usr/bin/env bash
# Build pjproject (from Debian's `asterisk` source package) with Callgate's
# limits and install its pjsua2 Python module into the given virtualenv.
# The result is cached as a wheel keyed by source version + config hash, so
# a second run only reinstalls the wheel. Never falls back to PyPI wheels.
#
# usage: media/pjsip/build.sh VENV_PYTHON
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python="$(realpath -s "${1:?usage: build.sh VENV_PYTHON}")"
cache="${CALLGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callgate}"
aptdir="$cache/apt-sid-src"
mkdir -p "$cache/wheels" "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/sources"

die() { echo "callgate: PJSIP build failed: $*" >&2; exit 1; }

# A private deb-src entry for sid: fetches the source by package name,
# hash-checked by apt, without touching the system's apt sources.
cat > "$aptdir/sources/sid-src.sources" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
aptopts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$aptdir/sources"
         -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
         -o APT::Sandbox::User=root)

srcdir="$cache/src"
tarball="$(ls "$srcdir"/asterisk_*.orig-Xpjproject.tar.xz 2>/dev/null | tail -n 1 || true)"
if [ -z "$tarball" ]; then
  echo "callgate: fetching pjproject via Debian's asterisk source package"
  mkdir -p "$srcdir"
  apt-get -q "${aptopts[@]}" update >/dev/null \
    || die "apt could not read Debian sid sources (is the Debian archive reachable?)"
  (cd "$srcdir" && apt-get -q "${aptopts[@]}" source -d asterisk >/dev/null) \
    || die "apt-get source asterisk failed"
  tarball="$(ls "$srcdir"/asterisk_*.orig-Xpjproject.tar.xz 2>/dev/null | tail -n 1 || true)"
  [ -n "$tarball" ] || die "Debian's asterisk source no longer carries pjproject (orig-Xpjproject); \
download a pjproject release tarball and set PJPROJECT_TARBALL=path"
fi
tarball="${PJPROJECT_TARBALL:-$tarball}"

# Contents only (not paths), so every clone of the same sources shares the cache.
key="$( (cat "$tarball" "$here/config_site.h" "$here/build.sh" | sha256sum; \
         "$python" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
wheel="$(ls "$cache/wheels/$key"/pjsua2-*.whl 2>/dev/null | head -n 1 || true)"

if [ -z "$wheel" ]; then
  echo "callgate: building PJSIP from $(basename "$tarball") (takes several minutes, cached afterwards)"
  work="$(mktemp -d "$cache/build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  tar -xJf "$tarball" -C "$work"
  pj="$(echo "$work"/*/)"
  cp "$here/config_site.h" "$pj/pjlib/include/pj/config_site.h"
  # Debian removed this third-party file; the makefile still lists it.
  : > "$pj/pjmedia/src/pjmedia-audiodev/bdimad_dev.c"
  jobs="$(nproc)"
  (
    cd "$pj"
    CFLAGS="-O2 -fPIC" CXXFLAGS="-O2 -fPIC" ./configure --disable-shared --enable-epoll \
      --disable-sound --disable-video --disable-v4l2 --disable-sdl --disable-ffmpeg \
      --disable-openh264 --disable-vpx --disable-libwebrtc --disable-libyuv \
      --disable-ilbc-codec --disable-g7221-codec --disable-bcg729 --disable-silk \
      --disable-darwin-ssl --with-external-srtp --with-external-speex \
      --with-external-gsm --enable-speex-resample --with-ssl --with-opus \
      > "$work/configure.log" 2>&1 || { tail -30 "$work/configure.log"; exit 1; }
    make dep -j"$jobs" > "$work/dep.log" 2>&1 || { tail -30 "$work/dep.log"; exit 1; }
    make -j"$jobs" lib > "$work/make.log" 2>&1 || make -j"$jobs" > "$work/make.log" 2>&1 \
      || { tail -30 "$work/make.log"; exit 1; }
    cd pjsip-apps/src/swig/python
    "$python" -m pip -q install setuptools wheel >/dev/null
    make pjsua2_wrap.cpp > "$work/swig.log" 2>&1 || { tail -30 "$work/swig.log"; exit 1; }
    "$python" setup.py -q bdist_wheel -d "$work/dist" > "$work/wheel.log" 2>&1 \
      || { tail -30 "$work/wheel.log"; exit 1; }
  ) || die "see the log lines above"
  mkdir -p "$cache/wheels/$key"
  cp "$work"/dist/pjsua2-*.whl "$cache/wheels/$key/"
  wheel="$(ls "$cache/wheels/$key"/pjsua2-*.whl | head -n 1)"
fi

"$python" -m pip -q install --force-reinstall --no-deps "$wheel"
echo "callgate: pjsua2 installed from $wheel"
