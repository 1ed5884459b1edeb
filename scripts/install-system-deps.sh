#!/usr/bin/env bash
# Installs the Debian packages the project's tests use (real OBS Studio under Xvfb, headless Chromium; PyAV brings its own FFmpeg).
# Idempotent: does nothing when everything is already there. Needs root (or sudo) and apt.
set -euo pipefail
pkgs=(obs-studio xvfb xauth libgl1-mesa-dri chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
