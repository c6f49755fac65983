#!/bin/bash
# Forge Fleet lab stand-in for a Miniforge3 Linux installer (tests/DOUBLES.md, "Miniforge").
#
# No conda channel and no GitHub release is reachable from the lab, so this honours the part
# of the real installer's contract the conda role uses: `bash installer.sh -b -p PREFIX`
# (batch mode, no questions) creates PREFIX with a base environment and PREFIX/bin/conda;
# an existing PREFIX is refused without -u; -h prints usage. The real installer carries conda
# and a Python as a payload behind its shell header; this one carries the lab's conda double
# (appended by lab/forge_repo.py after the marker line) and takes its Pythons from the lab
# image's package cache (/anaconda/pkgs/python-<version>-0: real CPython builds), which it
# links into PREFIX/pkgs as conda links packages.
set -eu

PREFIX="$HOME/miniforge3"
BATCH=0
UPDATE=0
PKG_CACHE=/anaconda/pkgs

usage() {
    cat <<USAGE
usage: $0 [options]

Installs Miniforge3 (Forge Fleet lab stand-in)

-b           run install in batch mode (without manual intervention)
-f           no error if install prefix already exists
-h           print this help message and exit
-p PREFIX    install prefix, defaults to $PREFIX, must not contain spaces.
-u           update an existing installation
USAGE
}

while getopts "bfhp:su" opt; do
    case "$opt" in
        b) BATCH=1 ;;
        f | u) UPDATE=1 ;;
        h) usage; exit 2 ;;
        p) PREFIX="$OPTARG" ;;
        s) ;;
        *) usage >&2; exit 2 ;;
    esac
done

if [ "$BATCH" = 0 ]; then
    echo "ERROR: the lab stand-in only runs in batch mode (-b): it has no licence to show" >&2
    exit 2
fi
case "$PREFIX" in
    *" "*) echo "ERROR: Cannot install into directories with spaces" >&2; exit 1 ;;
esac
if [ -e "$PREFIX" ] && [ "$UPDATE" = 0 ]; then
    echo "ERROR: File or directory already exists: '$PREFIX'" >&2
    echo "If you want to update an existing installation, use the -u option." >&2
    exit 1
fi
base=$(ls -d "$PKG_CACHE"/python-3.10.*-0 2>/dev/null | tail -n 1)
if [ -z "$base" ]; then
    echo "ERROR: the lab stand-in found no Python in $PKG_CACHE (the lab image's)" >&2
    exit 1
fi

echo "PREFIX=$PREFIX"
echo "Unpacking payload ..."
mkdir -p "$PREFIX/pkgs" "$PREFIX/envs" "$PREFIX/conda-meta" "$PREFIX/bin"
for pkg in "$PKG_CACHE"/python-*-0; do
    ln -s "$pkg" "$PREFIX/pkgs/$(basename "$pkg")"
done
cp -al "$base/." "$PREFIX/" 2>/dev/null || cp -a "$base/." "$PREFIX/"
echo "==> $(date '+%Y-%m-%d %H:%M:%S') <==" >"$PREFIX/conda-meta/history"
echo "# cmd: $0 -b -p $PREFIX" >>"$PREFIX/conda-meta/history"
{
    echo "#!$PREFIX/bin/python"
    sed '1,/^__CONDA_DOUBLE_PAYLOAD__$/d' "$0" | tail -n +2
} >"$PREFIX/bin/conda"
chmod 0755 "$PREFIX/bin/conda"
echo "installation finished."
exit 0
__CONDA_DOUBLE_PAYLOAD__
