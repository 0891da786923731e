#!/usr/bin/env bash
# Make sure the offline data sources are present. Fashion-MNIST comes from the Debian
# package dataset-fashion-mnist; install it when we can (root + apt), else say how.
set -euo pipefail
if [ -d /usr/share/datasets/fashion-mnist ] || [ -n "${NBLIB_DATA:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian package dataset-fashion-mnist ..."
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "note: Fashion-MNIST not found; install it with 'sudo apt-get install dataset-fashion-mnist'," >&2
  echo "      or put the idx files in \$NBLIB_DATA/fashion-mnist/ (nblib will try a download otherwise)" >&2
fi
