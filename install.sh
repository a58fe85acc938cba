#!/bin/sh
# Install podcheck from this checkout into a venv on the pod's volume, so it survives a pod restart:
#   ./install.sh [VENV]        (default: $PODCHECK_VENV, else /workspace/.podcheck-venv)
# Then run it as VENV/bin/podcheck (the boot script calls that path; nothing is put on the image).
# Debian 12's system python refuses `pip install` (externally-managed-environment), and its venv
# module needs the python3-venv package: installed here with apt-get when missing and we are root.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${PODCHECK_VENV:-/workspace/.podcheck-venv}}
python=${PODCHECK_BASE_PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
    echo "install.sh: $python not found: install Python 3.10 or newer (Debian: apt-get install python3 python3-venv)" >&2
    exit 2
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "install.sh: podcheck needs Python 3.10 or newer; $python is $("$python" -V 2>&1)" >&2
    exit 2
fi
if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "python$ver-venv" >/dev/null
    else
        echo "install.sh: $python has no venv module: install python3-venv (Debian/Ubuntu) and run again" >&2
        exit 2
    fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "$here"
echo "podcheck installed in $venv: run $venv/bin/podcheck"
