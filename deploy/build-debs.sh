#!/usr/bin/env bash
# build-debs.sh — build the Debian packages of x2gobroker-rs into target/debian/ (one command).
#
# Packages (cargo-deb metadata in broker/Cargo.toml, broker/authservice/Cargo.toml and
# agent/Cargo.toml; maintainer scripts in deploy/debian/):
#   x2gobroker-daemon       x2gobroker, x2gobroker-daemon, x2gobroker-ssh, the unit, tmpfiles, logrotate
#   x2gobroker              x2gobroker-keygen, x2gobroker-testagent, x2gobroker-testauth
#   x2gobroker-authservice  the PAM service and its unit
#   x2gobroker-agent        /usr/lib/x2go/x2gobroker-agent (setuid root), x2gobroker-pubkeyauthorizer
#   x2gobroker-agentd       the gRPC agent daemon and its unit
#
# Needs: a Rust toolchain, dpkg-dev (dpkg-shlibdeps), libpam0g-dev and libclang-dev (the auth
# service); cargo-deb is installed from crates.io when missing (CARGO_DEB_VERSION). Honours
# CARGO_TARGET_DIR; the packages are always written to target/debian/ of the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# cargo-deb 3.8.0 builds with rustc >= 1.85 (the workspace needs 1.89 anyway: rust-version).
CARGO_DEB_VERSION=3.8.0
target_dir=${CARGO_TARGET_DIR:-$root/target}
out_dir=$root/target/debian
scripts_dir=$root/target/debian/maintainer-scripts

if ! cargo deb --version 2>/dev/null | grep -qF "$CARGO_DEB_VERSION"; then
  echo "build-debs: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
for tool in dpkg-shlibdeps dpkg-deb strip; do
  command -v "$tool" >/dev/null || { echo "build-debs: $tool missing (apt-get install dpkg-dev)" >&2; exit 1; }
done

# The version the packages' cross-dependencies name (x2gobroker depends on x2gobroker-daemon
# (= 0.1.0-1), x2gobroker-daemon provides x2gobroker-ssh (= 0.1.0-1)).
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)-1
if ! grep -q "(= $version)" broker/Cargo.toml; then
  echo "build-debs: broker/Cargo.toml's package metadata does not name version $version" >&2
  exit 1
fi

echo "build-debs: release binaries and man pages"
cargo build --release --locked -p x2gobroker -p x2gobroker-authservice -p x2gobroker-agent \
  -p x2gobroker-manpages --bins
man_dir=$target_dir/release/man
rm -rf "$man_dir"
"$target_dir/release/x2gobroker-manpages" "$man_dir" >/dev/null
for page in "$man_dir"/*.[18]; do
  gzip -9nf "$page"
done

echo "build-debs: maintainer scripts"
rm -rf "$scripts_dir"
mkdir -p "$scripts_dir/x2gobroker"   # the admin tools package has none
for package_dir in deploy/debian/*/; do
  package=$(basename "$package_dir")
  mkdir -p "$scripts_dir/$package"
  for script in "$package_dir"*; do
    [ -f "$script" ] || continue
    # #INCLUDE lib.sh# becomes the shared functions (maintainer scripts must be self-contained)
    sed -e '/^#INCLUDE lib.sh#$/{r deploy/debian/lib.sh' -e 'd}' "$script" \
      > "$scripts_dir/$package/$(basename "$script")"
    chmod 0755 "$scripts_dir/$package/$(basename "$script")"
  done
done

rm -f "$out_dir"/*.deb
mkdir -p "$out_dir"
build() {
  echo "build-debs: cargo deb $*"
  # --strip: the release profile keeps line tables (backtraces); the packages ship stripped binaries
  cargo deb --no-build --strip --locked --output "$out_dir" "$@" >/dev/null
}
build -p x2gobroker --variant daemon
build -p x2gobroker --variant tools
build -p x2gobroker-authservice
build -p x2gobroker-agent
build -p x2gobroker-agent --variant agentd
ls -l "$out_dir"/*.deb
