#!/usr/bin/env bash
# Creates .venv with the pinned stack. `--test` adds pytest, Playwright, Debian's chromium and postgresql.
# Idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")/.."
want_tests=0
[[ "${1:-}" == "--test" ]] && want_tests=1

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
req=requirements.txt
[[ $want_tests == 1 ]] && req=requirements-test.txt
stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-$want_tests"
if [[ ! -f "$stamp" ]]; then
  echo "== installing $req into .venv (about 5 GB, a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$req"
  # PyPI's torchvision does not load beside torch 2.13.0+cpu and breaks transformers,
  # vLLM and Unsloth imports; nothing here needs it.
  .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  touch "$stamp"
fi

if [[ $want_tests == 1 ]] && ! command -v chromium >/dev/null; then
  echo "== installing Debian's chromium for the browser test"
  if [[ $(id -u) == 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null; }
fi
# Debian's PostgreSQL server for the store tests' PostgreSQL leg (tests/conftest.py starts its
# own server from these binaries; nothing runs as a service)
if [[ $want_tests == 1 ]] && ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  echo "== installing Debian's postgresql for the store tests"
  if [[ $(id -u) == 0 ]]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -q postgresql >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q postgresql >/dev/null; }
fi
echo "== environment ready: .venv"
