#!/usr/bin/env bash
# Create .venv (if needed) and install RadSynth Studio with its test tools. Idempotent and quick
# when nothing changed. torch goes first: `pip install torch==2.13.0` takes the CPU build where one
# is provided locally; asking for a bare `torch` on a machine without it pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${RADSYNTH_TORCH:-torch==2.13.0}

"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"RadSynth Studio needs Python >= 3.11, found {sys.version.split()[0]}")
PY

# Qt needs a few system libraries even offscreen; install them when missing and we may (root + apt).
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    missing=""
    for lib in libEGL.so.1 libGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3; do
        ldconfig -p | grep -q "$lib" || missing=1
    done
    if [ -n "$missing" ]; then
        echo "installing system libraries for Qt..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 >/dev/null
    fi
fi

# Qt's xcb platform plugin (a real desktop: `make run`) needs X11 libraries beyond the offscreen ones. They
# are read from the plugin itself (ldd), so the list follows the PySide6 that is installed; Debian names a
# library's package after its soname (libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 ->
# libxkbcommon-x11-0).
xcb_libraries() {
    local plugin
    plugin=$("$VENV/bin/python" -c "import PySide6, pathlib; print(next(pathlib.Path(PySide6.__file__).parent.glob('Qt/plugins/platforms/libqxcb.so'), ''))" 2>/dev/null) || return 0
    [ -n "$plugin" ] || return 0
    local missing
    missing=$(ldd "$plugin" "$(dirname "$plugin")/../../lib/libQt6XcbQpa.so.6" 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
    [ -n "$missing" ] || return 0
    local pkgs=""
    for so in $missing; do
        name=${so%%.so*}; ver=${so##*.so.}; ver=${ver%%.*}
        case "$name" in *[0-9]) pkgs="$pkgs $(echo "$name" | tr 'A-Z' 'a-z')-$ver" ;; *) pkgs="$pkgs $(echo "$name" | tr 'A-Z' 'a-z')$ver" ;; esac
    done
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        echo "installing the X11 libraries of Qt's xcb platform plugin:$pkgs"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null; } \
            || echo "could not install$pkgs: the app runs offscreen, but opening a window needs them"
    else
        echo "Qt's xcb platform plugin (opening a window) needs these system libraries:$pkgs"
        echo "  install them with:  sudo apt-get install$pkgs"
    fi
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.radsynth-installed"
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    xcb_libraries
    exit 0
fi
"$PY" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import torch" || { echo "torch did not install ($TORCH_SPEC)"; exit 1; }
"$PY" -m pip install -q -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
# clean-fid's source is the reference the FID / KID agreement test compares with. Without --no-deps
# pip would replace the CPU torch by a CUDA build (clean-fid asks for torchvision); the test only
# reads its fid.py, so the package without its dependencies is enough.
"$PY" -m pip install -q --no-deps "clean-fid==0.1.35" 2>&1 | grep -v "^WARNING: Location" || true
"$PY" -c "import app, PySide6, pyqtgraph, pydicom, h5py, torch" || { echo "installation is incomplete"; exit 1; }
xcb_libraries
echo "$want" > "$stamp"
echo "RadSynth Studio is installed in $VENV"
