#!/usr/bin/env bash
# The Debian packages the book needs: Fashion-MNIST (dataset-fashion-mnist) for the
# chapters, Chromium and its driver (chromium, chromium-driver) for the check that loads
# every page of the built book. Installed when we can (root + apt), else we say how.
set -euo pipefail
missing=()
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${NBLIB_DATA:-}" ]; then
  missing+=(dataset-fashion-mnist)
fi
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]} ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "note: missing Debian packages: ${missing[*]}; install them with" >&2
  echo "      sudo apt-get install ${missing[*]}" >&2
  echo "      (Fashion-MNIST can instead be put in \$NBLIB_DATA/fashion-mnist/; without Chromium" >&2
  echo "      'nblib book' cannot check the built pages and says so)" >&2
fi
