# shellcheck shell=bash
# Debian packages that scripts install themselves, once. Source it; do not run it.
#
# apt_install WHO [--no-install-recommends] PACKAGE...: installs each PACKAGE (a name, or
#   name:arch) that dpkg does not list as installed, with apt-get; `apt-get update` first only
#   when the plain install fails (a fresh machine's package lists). Root only: otherwise it says
#   what to install and fails. Messages start with "WHO: ".
apt_install() {
  local who=$1 options=() missing=() p
  shift
  if [ "${1:-}" = --no-install-recommends ]; then
    options+=("$1")
    shift
  fi
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  printf '%s: installing %s from Debian (once)...\n' "$who" "${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    printf '%s: not root: install %s (apt-get install %s) and rerun\n' "$who" "${missing[*]}" "${missing[*]}" >&2
    return 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${options[@]}" "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${options[@]}" "${missing[@]}" >/dev/null; } \
    || { printf "%s: apt-get install %s failed (are Debian's mirrors reachable?)\n" "$who" "${missing[*]}" >&2; return 1; }
}
