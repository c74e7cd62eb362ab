#!/usr/bin/env bash
# make package: build the installable bundles into dist/ from this checkout (Linux x86-64).
#   dist/RadSynthReader-<version>-linux-x86_64.tar.gz   the torch-free reading station (PyInstaller, onedir)
#   dist/RadSynthStudio-<version>-linux-x86_64.tar.gz   the whole app with the CPU build of torch
# (a GPU box keeps the pip route: scripts/setup.sh with its CUDA torch installed first). PACKAGES="reader" builds
# only the Reader.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$("$PY" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
"$PY" -m pip install -q "pyinstaller==6.22.3" 2>&1 | grep -v "^WARNING: Location" || true
mkdir -p dist build
bundle() {  # bundle SPEC FOLDER NAME
    local spec=$1 folder=$2 name=$3 start end
    start=$(date +%s)
    "$PY" -m PyInstaller --noconfirm --log-level WARN --distpath build/dist --workpath "build/pyinstaller-$folder" "$spec"
    cp "packaging/linux/${4}.desktop" build/dist/"$folder"/
    cp resources/icons/radsynth-studio.png "build/dist/$folder/${4}.png"
    [ -f "packaging/${5}/install.sh" ] && cp "packaging/${5}/install.sh" "build/dist/$folder/"
    tar -C build/dist -czf "dist/${name}.tar.gz" --transform "s,^${folder},${name}," "$folder"
    end=$(date +%s)
    echo "built dist/${name}.tar.gz in $((end - start)) s"
    echo "  packed:   $(du -m "dist/${name}.tar.gz" | cut -f1) MB"
    echo "  unpacked: $(du -sm "build/dist/$folder" | cut -f1) MB"
}

for what in ${PACKAGES:-reader studio}; do
    case "$what" in
        reader) bundle packaging/reader/radsynth-reader.spec RadSynthReader "RadSynthReader-${VERSION}-linux-x86_64" radsynth-reader reader ;;
        studio) bundle packaging/studio/radsynth-studio.spec RadSynthStudio "RadSynthStudio-${VERSION}-linux-x86_64" radsynth-studio studio ;;
        *) echo "unknown package $what (reader, studio)"; exit 2 ;;
    esac
done
