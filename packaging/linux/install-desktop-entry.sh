#!/usr/bin/env bash
# Install RadSynth Studio's menu entry and icon for the current user (freedesktop.org layout).
#   bash packaging/linux/install-desktop-entry.sh            # uses `radsynth-studio` on PATH
#   bash packaging/linux/install-desktop-entry.sh /path/to/.venv/bin/radsynth-studio
#   bash packaging/linux/install-desktop-entry.sh --uninstall
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
apps="$data/applications"
icons="$data/icons/hicolor"
if [[ "${1:-}" == "--uninstall" ]]; then
    rm -f "$apps/radsynth-studio.desktop" "$icons/scalable/apps/radsynth-studio.svg" \
          "$icons/256x256/apps/radsynth-studio.png"
    echo "removed the RadSynth Studio menu entry"
    exit 0
fi
exe="${1:-$(command -v radsynth-studio || true)}"
if [[ -z "$exe" || ! -x "$exe" ]]; then
    echo "radsynth-studio not found: pass the path to it (e.g. $root/.venv/bin/radsynth-studio)" >&2
    exit 1
fi
mkdir -p "$apps" "$icons/scalable/apps" "$icons/256x256/apps"
install -m 644 "$root/resources/icons/radsynth-studio.svg" "$icons/scalable/apps/radsynth-studio.svg"
install -m 644 "$root/resources/icons/radsynth-studio.png" "$icons/256x256/apps/radsynth-studio.png"
sed -e "s|^Exec=radsynth-studio|Exec=\"$exe\"|" -e "s|^TryExec=radsynth-studio|TryExec=$exe|" \
    "$here/radsynth-studio.desktop" > "$apps/radsynth-studio.desktop"
chmod 644 "$apps/radsynth-studio.desktop"
if command -v desktop-file-validate >/dev/null; then desktop-file-validate "$apps/radsynth-studio.desktop"; fi
if command -v update-desktop-database >/dev/null; then update-desktop-database "$apps" || true; fi
if command -v gtk-update-icon-cache >/dev/null; then gtk-update-icon-cache -q -t "$icons" || true; fi
echo "installed $apps/radsynth-studio.desktop (runs $exe)"
