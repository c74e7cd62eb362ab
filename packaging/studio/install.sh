#!/usr/bin/env bash
# Install this unpacked RadSynth Studio for the current user: `radsynth-studio` (the window) and `radsynth` (the
# command line) in ~/.local/bin and a menu entry with its icon (--uninstall removes them). Nothing else is
# needed: the folder holds Python, torch (CPU), Qt and the X11 libraries Qt's xcb plugin links.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$HOME/.local/bin"; apps="$HOME/.local/share/applications"; icons="$HOME/.local/share/icons/hicolor/256x256/apps"
if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$bin/radsynth-studio" "$bin/radsynth" "$apps/radsynth-studio.desktop" "$icons/radsynth-studio.png"
    echo "RadSynth Studio uninstalled (this folder is left as it is)"; exit 0
fi
mkdir -p "$bin" "$apps" "$icons"
ln -sf "$here/radsynth-studio" "$bin/radsynth-studio"
printf '#!/bin/sh\nexec "%s/radsynth-studio" cli "$@"\n' "$here" > "$bin/radsynth"
chmod +x "$bin/radsynth"
sed "s|^Exec=.*|Exec=$here/radsynth-studio|; s|^TryExec=.*|TryExec=$here/radsynth-studio|" \
    "$here/radsynth-studio.desktop" > "$apps/radsynth-studio.desktop"
cp "$here/radsynth-studio.png" "$icons/radsynth-studio.png"
echo "RadSynth Studio installed: run radsynth-studio (or radsynth VERB), or open it from the menu"
