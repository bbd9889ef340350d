#!/usr/bin/env bash
# Install the Debian packages named as arguments, when they are missing. Needs root (or sudo) for apt-get;
# otherwise says what to install and carries on, so that tests needing them skip with a reason.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  echo "==> sudo apt-get install ${missing[*]}"
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: Debian packages missing and not root: ${missing[*]} (install them with apt-get; tests needing them will skip)" >&2
fi
