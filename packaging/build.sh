#!/usr/bin/env bash
# make package: build the installable bundles into dist/ from this checkout (Linux x86-64).
#   dist/RadSynthReader-<version>-linux-x86_64.tar.gz   the torch-free reading station (PyInstaller, onedir)
# The Studio itself keeps the pip route (make run / scripts/setup.sh; a GPU box installs its CUDA torch first):
# see packaging/README.md for why it is not frozen yet.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=$("$PY" -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")
"$PY" -m pip install -q "pyinstaller==6.22.3" 2>&1 | grep -v "^WARNING: Location" || true
mkdir -p dist build
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath build/dist --workpath build/pyinstaller \
    packaging/reader/radsynth-reader.spec
cp packaging/linux/radsynth-reader.desktop packaging/reader/install.sh build/dist/RadSynthReader/
cp resources/icons/radsynth-studio.png build/dist/RadSynthReader/radsynth-reader.png 2>/dev/null || true
name="RadSynthReader-${VERSION}-linux-x86_64"
tar -C build/dist -czf "dist/${name}.tar.gz" --transform "s,^RadSynthReader,${name}," RadSynthReader
end=$(date +%s)
echo "built dist/${name}.tar.gz in $((end - start)) s"
echo "packed:   $(du -m "dist/${name}.tar.gz" | cut -f1) MB"
echo "unpacked: $(du -sm build/dist/RadSynthReader | cut -f1) MB"
