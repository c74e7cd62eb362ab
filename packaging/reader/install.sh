#!/usr/bin/env bash
# Install this unpacked RadSynth Reader for the current user: a `radsynth-reader` command in ~/.local/bin and a
# menu entry with its icon (--uninstall removes them). Nothing else is needed: the folder holds Python, Qt and
# the X11 libraries Qt's xcb plugin links.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$HOME/.local/bin"; apps="$HOME/.local/share/applications"; icons="$HOME/.local/share/icons/hicolor/256x256/apps"
if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$bin/radsynth-reader" "$apps/radsynth-reader.desktop" "$icons/radsynth-reader.png"
    echo "RadSynth Reader uninstalled (this folder is left as it is)"; exit 0
fi
mkdir -p "$bin" "$apps" "$icons"
ln -sf "$here/radsynth-reader" "$bin/radsynth-reader"
sed "s|^Exec=.*|Exec=$here/radsynth-reader %f|" "$here/radsynth-reader.desktop" > "$apps/radsynth-reader.desktop"
[ -f "$here/radsynth-reader.png" ] && cp "$here/radsynth-reader.png" "$icons/radsynth-reader.png"
echo "RadSynth Reader installed: run radsynth-reader, or open it from the menu"
