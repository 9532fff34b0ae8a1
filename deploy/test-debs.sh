#!/usr/bin/env bash
# test-debs.sh — the Debian packages in a fresh Debian bookworm chroot (as root; the README's
# extra command, run by .ci/run after the test suite).
#
# Builds the packages (deploy/build-debs.sh) and runs lintian on them (errors fail), unpacks a
# cached debootstrap base into a new chroot, installs the reference's Python broker from Debian,
# writes a site config and profiles file, installs ours with apt (DEBIAN_FRONTEND=noninteractive,
# stdin closed, no --force-conf*: a conffile prompt fails), checks the swap, the account, groups,
# statoverrides, directories, units, man pages and secrets, starts the daemon from the installed
# unit's ExecStart as its User and asks it for listsessions, runs the setuid agent as LOCAL mode
# does under the unit's drop-in; then downgrades to the Python packages, installs ours again,
# reinstalls, purges ours; and installs and purges ours once more on a machine without a broker.
# Prints `N passed, N failed`; exits 1 on any failure.
#
# Caches (outside the clone): $X2GOBROKER_DEBS_CACHE (default /var/cache/x2gobroker-debs-test)
# holds the debootstrap base and every downloaded package. The Debian mirror is the one apt is
# configured with. X2GOBROKER_DEBS_NO_BUILD=1 tests the packages already in target/debian/.
# Functions are called through check/step (shellcheck cannot see that):
# shellcheck disable=SC2317
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C.UTF-8

cache=${X2GOBROKER_DEBS_CACHE:-/var/cache/x2gobroker-debs-test}
suite=bookworm
reference_version=0.0.4.3-4
reference_packages=(x2gobroker x2gobroker-common python3-x2gobroker x2gobroker-daemon
  x2gobroker-authservice x2gobroker-agent x2gobroker-wsgi x2gobroker-ssh x2gobroker-loadchecker)
our_packages=(x2gobroker-daemon x2gobroker x2gobroker-authservice x2gobroker-agent x2gobroker-agentd)
port=$((24000 + RANDOM % 1000))

if [ "$(id -u)" != 0 ]; then
  echo "test-debs: run as root (debootstrap, chroot)" >&2
  exit 1
fi

passed=0
failed=0
# a step's output (apt's above all), shown when the step fails
step_log=$(mktemp /tmp/x2gobroker-debs-step.XXXXXX)
# check NAME COMMAND...: one check; its result is counted and printed.
check() {
  local name=$1 output
  shift
  if output=$("$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   $name"
  else
    failed=$((failed + 1))
    echo "FAIL $name"
    local line
    while IFS= read -r line; do
      if [ -n "$line" ]; then echo "     $line"; fi
    done <<<"$output"
  fi
}
# step NAME COMMAND...: a step the rest depends on; its failure ends the test.
step() {
  local name=$1 started=$SECONDS
  shift
  echo "test-debs: $name"
  if ! "$@" >"$step_log" 2>&1; then
    failed=$((failed + 1))
    echo "FAIL $name"
    tail -n 40 "$step_log" | sed 's/^/     /'
    finish
  fi
  echo "test-debs: $name took $((SECONDS - started)) s"
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ] && exit 0
  exit 1
}

# --- the host's Debian sources (the mirror apt is configured with) ------------------------------
# deb822 stanzas and one-line entries of suite bookworm* signed by Debian's archive keyring only
# (third-party repositories the host may have are left out).
debian_sources() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk -v RS= -v ORS='\n\n' '/Suites:[^\n]*bookworm/ && /debian-archive-keyring/' "$file"
  done
}
debian_source_lines() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    grep -E '^deb[[:space:]]' | grep -E "[[:space:]]$suite(-updates|-security|/updates)?[[:space:]]" || true
}
mirror_url() {
  debian_sources | awk '/^URIs:/ && /debian\/?$/ {print $2; exit}'
  debian_source_lines | awk -v suite="$suite" '$3 == suite {print $2; exit}'
}

chroot_dir=""
proc_mounted=0
daemon_pid=""
drop_chroot() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; fi
  if [ -n "$chroot_dir" ]; then
    for mount_point in proc dev/pts dev var/cache/apt/archives; do
      if mountpoint -q "$chroot_dir/$mount_point"; then umount -l "$chroot_dir/$mount_point"; fi
    done
    rm -rf --one-file-system "$(dirname "$chroot_dir")"
    chroot_dir=""
  fi
}
cleanup() {
  drop_chroot
  rm -f "$step_log"
}
trap cleanup EXIT

in_chroot() {
  chroot "$chroot_dir" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    LC_ALL=C.UTF-8 "$@" </dev/null
}
apt_in_chroot() {
  in_chroot apt-get -y -q -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false "$@"
}

make_base() {
  local mirror staging
  mirror=$(mirror_url | head -n 1)
  [ -n "$mirror" ] || { echo "test-debs: no Debian $suite source in /etc/apt" >&2; return 1; }
  command -v debootstrap >/dev/null || apt-get install -y -q debootstrap >/dev/null
  staging=$(mktemp -d /tmp/x2gobroker-debs-base.XXXXXX)
  mkdir -p "$cache/archives/partial"
  debootstrap --variant=minbase --cache-dir="$cache/archives" "$suite" "$staging/root" "$mirror" \
    >"$staging/debootstrap.log" 2>&1 || { tail -n 20 "$staging/debootstrap.log"; return 1; }
  rm -f "$staging/root/etc/apt/sources.list"
  { debian_sources; } > "$staging/root/etc/apt/sources.list.d/debian.sources"
  debian_source_lines > "$staging/root/etc/apt/sources.list"
  # no service is ever started by a package script in the chroot
  printf '#!/bin/sh\nexit 101\n' > "$staging/root/usr/sbin/policy-rc.d"
  chmod 0755 "$staging/root/usr/sbin/policy-rc.d"
  tar -C "$staging/root" -cf "$cache/base-$suite.tar.new" .
  mv "$cache/base-$suite.tar.new" "$cache/base-$suite.tar"
  rm -rf --one-file-system "$staging"
}

new_chroot() {
  local work
  [ -f "$cache/base-$suite.tar" ] || make_base
  work=$(mktemp -d /tmp/x2gobroker-debs-test.XXXXXX)
  chroot_dir=$work/root
  mkdir -p "$chroot_dir"
  tar -C "$chroot_dir" -xf "$cache/base-$suite.tar"
  mkdir -p "$cache/archives/partial" "$chroot_dir/var/cache/apt/archives"
  mount --bind "$cache/archives" "$chroot_dir/var/cache/apt/archives"
  mount --bind /dev "$chroot_dir/dev"
  cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf" 2>/dev/null || true
  # apt keeps what it downloaded (the cache outside the clone)
  echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > "$chroot_dir/etc/apt/apt.conf.d/99keep"
  mkdir -p "$chroot_dir/tmp/debs"
  cp target/debian/*.deb "$chroot_dir/tmp/debs/"
}

# --- helpers for checks ----------------------------------------------------------------------
c() { echo "$chroot_dir$1"; }
installed_version() {
  # shellcheck disable=SC2016
  in_chroot dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1 == "ii" {print $2}'
}
is_installed_at() { [ "$(installed_version "$1")" = "$2" ]; }
not_installed_at() { [ "$(installed_version "$1")" != "$2" ]; }
owner_is() {
  local actual
  actual=$(in_chroot stat -c '%U:%G' "$1")
  [ "$actual" = "$2" ] || { echo "$1: $actual, expected $2"; return 1; }
}
# owner and group by the chroot's names
stat_is() {
  local actual
  actual=$(in_chroot stat -c '%U:%G %a' "$1")
  [ "$actual" = "$2" ] || { echo "$1: $actual, expected $2"; return 1; }
}
statoverride_is() { in_chroot dpkg-statoverride --list "$2" | grep -qx "$1 $2"; }
no_statoverride() { ! in_chroot dpkg-statoverride --list "$1"; }
site_files_untouched() { (cd "$chroot_dir" && sha256sum --quiet -c "$work_sums"); }
account_is() {
  local entry
  entry=$(in_chroot getent passwd x2gobroker) || return 1
  [ "$(echo "$entry" | cut -d: -f6,7)" = "/var/lib/x2gobroker:/bin/bash" ] &&
    [ "$(echo "$entry" | cut -d: -f3)" -lt 1000 ]
}
group_exists() { in_chroot getent group "$1"; }
unit_enabled() { [ -L "$(c /etc/systemd/system/multi-user.target.wants/"$1")" ]; }
exists() { [ -e "$(c "$1")" ]; }
absent() { [ ! -e "$(c "$1")" ] && [ ! -L "$(c "$1")" ]; }
absent_all() {
  local path
  for path in "$@"; do absent "$path" || { echo "$path is there"; return 1; }; done
}
# (the removed, not purged, x2gobroker-loadchecker keeps its links until it is purged, as any
# removed package with an init script)
no_sysv_links() {
  ! compgen -G "$chroot_dir/etc/rc[0-6S].d/[SK][0-9][0-9]x2gobroker-daemon" &&
    ! compgen -G "$chroot_dir/etc/rc[0-6S].d/[SK][0-9][0-9]x2gobroker-authservice"
}

# unit_value UNIT KEY: the last KEY= line of an installed unit (its value)
unit_value() { sed -n "s/^$2=//p" "$(c "/lib/systemd/system/$1")" | tail -n 1; }

# start_daemon: the daemon as the installed unit starts it, in the chroot, as the unit's User
start_daemon() {
  local exec_start user group environment_file state_dirs state_mode directory
  exec_start=$(unit_value x2gobroker-daemon.service ExecStart)
  user=$(unit_value x2gobroker-daemon.service User)
  group=$(unit_value x2gobroker-daemon.service Group)
  environment_file=$(unit_value x2gobroker-daemon.service EnvironmentFile)
  environment_file=${environment_file#-}
  state_dirs=$(unit_value x2gobroker-daemon.service StateDirectory)
  state_mode=$(unit_value x2gobroker-daemon.service StateDirectoryMode)
  [ "$exec_start" = "/usr/bin/x2gobroker-daemon -C /etc/x2go/x2gobroker.conf" ] || return 1
  # what systemd does for StateDirectory= before the start
  for directory in $state_dirs; do
    install -d -m "${state_mode:-0755}" "$(c "/var/lib/$directory")"
    in_chroot chown "$user:$group" "/var/lib/$directory"
  done
  mount -t proc proc "$(c /proc)"
  proc_mounted=1
  local -a environment=(PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
  local line
  while IFS= read -r line; do
    environment+=("$line")
  done < <(sed -n 's/^Environment=//p' "$(c /lib/systemd/system/x2gobroker-daemon.service)"
           grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$(c "$environment_file")" 2>/dev/null || true)
  environment+=("DAEMON_BIND_ADDRESS=127.0.0.1:$port")
  # word splitting of ExecStart as systemd does it for a line without quotes
  # shellcheck disable=SC2086
  chroot --userspec="$user:$group" "$chroot_dir" env -i "${environment[@]}" $exec_start \
    >"$work_dir/daemon.log" 2>&1 </dev/null &
  daemon_pid=$!
  local attempt
  for attempt in $(seq 1 50); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then return 0; fi
    sleep 0.2
  done
  echo "test-debs: no answer after $attempt attempts" >&2
  cat "$work_dir/daemon.log"
  return 1
}
# local_agent_under_unit: the broker's LOCAL call (the setuid agent, as the unit's User) with
# the capability bounding set the drop-in gives, without NoNewPrivileges (the drop-in's =no)
local_agent_under_unit() {
  local caps cap bounding=-all answer user
  caps=$(sed -n 's/^CapabilityBoundingSet=//p' \
    "$(c /lib/systemd/system/x2gobroker-daemon.service.d/local-agent.conf)" | tail -n 1)
  [ -n "$caps" ] || return 1
  for cap in $caps; do
    cap=${cap#CAP_}
    bounding+=",+${cap,,}"
  done
  user=$(unit_value x2gobroker-daemon.service User)
  in_chroot getent passwd x2gotestuser >/dev/null || in_chroot useradd -m -u 1500 x2gotestuser
  answer=$(chroot "$chroot_dir" setpriv --reuid="$user" --regid="$user" --init-groups \
    --bounding-set="$bounding" /usr/lib/x2go/x2gobroker-agent x2gotestuser listsessions 2>&1 </dev/null)
  # OK and nothing else (no sessions); runuser refusing would add its complaint
  [ "$answer" = OK ] || { echo "$answer"; return 1; }
}
stop_daemon() {
  if [ -n "$daemon_pid" ]; then
    kill "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
  fi
  if [ "$proc_mounted" = 1 ]; then
    umount "$(c /proc)"
    proc_mounted=0
  fi
}
# the daemon's process (chroot execs env, env execs the daemon: same pid) runs as the unit's User
daemon_runs_as_unit_user() {
  [ "$(stat -c %u "/proc/$daemon_pid")" = "$(in_chroot id -u "$(unit_value x2gobroker-daemon.service User)")" ]
}
listsessions_has_site_profiles() {
  local answer
  answer=$(curl -s -d 'task=listsessions&user=maja' "http://127.0.0.1:$port/plain/")
  echo "$answer" > "$work_dir/listsessions.txt"
  grep -q '^\[site-desktop\]$' <<<"$answer" && grep -q '^name=Site desktop$' <<<"$answer" &&
    grep -q '^\[site-terminal\]$' <<<"$answer"
}

# --- the run -----------------------------------------------------------------------------------
started=$SECONDS
if [ "${X2GOBROKER_DEBS_NO_BUILD:-0}" != 1 ]; then
  step "build the packages" deploy/build-debs.sh
fi
# lintian on each package: errors fail the test (warnings are printed by the README's command)
if ! command -v lintian >/dev/null; then
  step "install lintian" apt-get install -y -q --no-install-recommends lintian
fi
lintian_errors() {
  local output
  output=$(lintian --fail-on error target/debian/*.deb 2>&1) || { echo "$output" | grep '^E:'; return 1; }
}
check "lintian: no errors in target/debian/*.deb" lintian_errors
step "a fresh $suite chroot" new_chroot
work_dir=$(dirname "$chroot_dir")
work_sums=$work_dir/site-files.sha256

step "apt-get update" apt_in_chroot update
step "the reference's packages from Debian" apt_in_chroot install \
  "${reference_packages[@]/%/=$reference_version}"
for package in "${reference_packages[@]}"; do
  check "reference $package $reference_version installed" is_installed_at "$package" "$reference_version"
done
check "reference: SysV links of its services" compgen -G "$chroot_dir/etc/rc2.d/S[0-9][0-9]x2gobroker-daemon"

# the site's config: the reference's file with the site's changes, and its own profiles
write_site_files() {
  # the reference's file, its sections kept, with the site's keys under [global] and
  # [broker_inifile] (authentication off, so that listsessions answers without a login)
  sed -i -e '/^\[global\]$/a # site changes (test-debs.sh)\nrequire-password = false\nrequire-cookie = false\ndefault-auth-mech = none\ndefault-portscan-x2goservers = false\ndefault-agent-query-mode = NONE' \
    -e '/^\[broker_inifile\]$/a enable = true' "$(c /etc/x2go/x2gobroker.conf)"
  grep -q '^default-auth-mech = none$' "$(c /etc/x2go/x2gobroker.conf)" || return 1
  cat > "$(c /etc/x2go/broker/x2gobroker-sessionprofiles.conf)" <<'SITE'
# the site's session profiles (test-debs.sh)
[DEFAULT]
user = BROKER_USER

[site-desktop]
name = Site desktop
host = desktop.site.invalid (127.0.0.21)
command = XFCE

[site-terminal]
name = Site terminal
host = terminal.site.invalid (127.0.0.22)
command = TERMINAL
SITE
  (cd "$chroot_dir" && sha256sum etc/x2go/x2gobroker.conf etc/x2go/broker/x2gobroker-sessionprofiles.conf) > "$work_sums"
}
step "write the site's x2gobroker.conf and profiles" write_site_files

# install_ours: apt installs our .deb files, replacing whatever is there
install_ours() {
  local deb
  local -a debs=()
  for deb in "$chroot_dir"/tmp/debs/*.deb; do
    debs+=("/tmp/debs/${deb##*/}")
  done
  apt_in_chroot install "${debs[@]}"
}
check_installed_state() {
  local when=$1 package
  for package in "${our_packages[@]}"; do
    check "$when: $package 0.1.0-1 installed" is_installed_at "$package" 0.1.0-1
  done
  for package in "${reference_packages[@]}"; do
    check "$when: reference $package replaced" not_installed_at "$package" "$reference_version"
  done
  check "$when: site files untouched" site_files_untouched
  check "$when: account x2gobroker (system, /var/lib/x2gobroker, /bin/bash)" account_is
  check "$when: group x2gobroker" group_exists x2gobroker
  check "$when: group x2gobroker-users" group_exists x2gobroker-users
  check "$when: statoverride x2gobroker-ssh" statoverride_is "x2gobroker x2gobroker-users 4550" /usr/bin/x2gobroker-ssh
  check "$when: x2gobroker-ssh mode" stat_is /usr/bin/x2gobroker-ssh "x2gobroker:x2gobroker-users 4550"
  check "$when: statoverride x2gobroker-agent" statoverride_is "root x2gobroker 4750" /usr/lib/x2go/x2gobroker-agent
  check "$when: x2gobroker-agent mode" stat_is /usr/lib/x2go/x2gobroker-agent "root:x2gobroker 4750"
  check "$when: /var/log/x2gobroker" stat_is /var/log/x2gobroker "x2gobroker:adm 2750"
  check "$when: /run/x2gobroker" stat_is /run/x2gobroker "x2gobroker:x2gobroker 770"
  # the account's home; the unit's StateDirectory= (0700) makes it 0700 at the daemon's start
  check "$when: /var/lib/x2gobroker" owner_is /var/lib/x2gobroker x2gobroker:x2gobroker
  check "$when: tmpfiles line" grep -qx 'd     /run/x2gobroker               0770 x2gobroker x2gobroker  -   -' \
    "$(c /usr/lib/tmpfiles.d/x2gobroker-daemon.conf)"
  check "$when: agentd token root 0600" stat_is /etc/x2go/x2gobroker-agentd.token "root:root 600"
  check "$when: logrotate file" exists /etc/logrotate.d/x2gobroker-daemon
  check "$when: reference init scripts gone" absent_all /etc/init.d/x2gobroker-daemon \
    /etc/init.d/x2gobroker-authservice /etc/logrotate.d/x2gobroker-authservice \
    /etc/x2go/broker/x2gobroker-authservice-logger.conf
  check "$when: no SysV links of the reference's daemon and auth service" no_sysv_links
  local unit
  for unit in x2gobroker-daemon.service x2gobroker-authservice.service x2gobroker-agentd.service; do
    check "$when: unit $unit installed" exists "/lib/systemd/system/$unit"
    check "$when: unit $unit enabled" unit_enabled "$unit"
  done
  check "$when: auth unit has no RuntimeDirectory" not_grep '^RuntimeDirectory' "$(c /lib/systemd/system/x2gobroker-authservice.service)"
  local page
  for page in man1/x2gobroker.1 man1/x2gobroker-daemon.1 man1/x2gobroker-ssh.1 man1/x2gobroker-testauth.1 \
    man8/x2gobroker-keygen.8 man8/x2gobroker-testagent.8 man8/x2gobroker-authservice.8 \
    man8/x2gobroker-agent.8 man8/x2gobroker-agentd.8 man8/x2gobroker-pubkeyauthorizer.8; do
    check "$when: man page $page" exists "/usr/share/man/$page.gz"
  done
}
not_grep() { ! grep -q "$1" "$2"; }

step "install ours over the reference (apt, no --force-conf*)" install_ours
check_installed_state "first install"
step "start the daemon from the installed unit" start_daemon
check "daemon answers listsessions with the site's profiles" listsessions_has_site_profiles
check "daemon runs as the unit's User" daemon_runs_as_unit_user
check "the agent package's LOCAL-mode drop-in for the daemon unit" exists \
  /lib/systemd/system/x2gobroker-daemon.service.d/local-agent.conf
check "LOCAL mode: the setuid agent answers as the unit's User within the drop-in's bounds" \
  local_agent_under_unit
stop_daemon

downgrade() {
  apt_in_chroot install --allow-downgrades "${reference_packages[@]/%/=$reference_version}"
}
step "downgrade to the reference's packages" downgrade
for package in "${reference_packages[@]}"; do
  check "downgrade: reference $package $reference_version installed" is_installed_at "$package" "$reference_version"
done
check "downgrade: site files untouched" site_files_untouched

step "install ours again" install_ours
check_installed_state "second install"

# idempotent: a reinstall changes nothing of the state the scripts made
state_snapshot() {
  in_chroot dpkg-statoverride --list | sort
  in_chroot getent passwd x2gobroker
  in_chroot getent group x2gobroker x2gobroker-users
  in_chroot stat -c '%n %U:%G %a' /var/log/x2gobroker /run/x2gobroker /var/lib/x2gobroker \
    /etc/x2go/x2gobroker-agentd.token
  in_chroot sha256sum /etc/x2go/x2gobroker-agentd.token
}
reinstall_ours() {
  state_snapshot > "$work_dir/state-before"
  local deb
  local -a debs=()
  for deb in "$chroot_dir"/tmp/debs/*.deb; do
    debs+=("/tmp/debs/${deb##*/}")
  done
  apt_in_chroot install --reinstall "${debs[@]}"
}
step "reinstall ours" reinstall_ours
state_unchanged() { state_snapshot | diff "$work_dir/state-before" -; }
check "reinstall: statoverrides, account, groups, directories, token unchanged" state_unchanged
check "reinstall: site files untouched" site_files_untouched

# what purge must take away: every file of our packages, and what our scripts created
list_our_files() {
  our_files=$work_dir/our-files
  for package in "${our_packages[@]}"; do
    in_chroot dpkg-query -L "$package"
  done | while IFS= read -r path; do
    # files and links, not directories (nor /lib, a link to a directory)
    if [ ! -d "$(c "$path")" ] && { [ -f "$(c "$path")" ] || [ -L "$(c "$path")" ]; }; then echo "$path"; fi
  done > "$our_files"
  echo /etc/x2go/x2gobroker-agentd.token >> "$our_files"
}
list_our_files
purge() { apt_in_chroot purge "${our_packages[@]}"; }
step "purge ours" purge
left_files() {
  local path owner left=0
  while IFS= read -r path; do
    if [ -e "$(c "$path")" ] || [ -L "$(c "$path")" ]; then
      owner=$(in_chroot dpkg-query -S "$path" 2>/dev/null || true)
      echo "left after purge: $path ${owner:+(now $owner)}"
      left=1
    fi
  done < "$our_files"
  [ "$left" = 0 ]
}
check "purge: no file of ours left" left_files
for package in "${our_packages[@]}"; do
  check "purge: $package gone" not_installed_at "$package" 0.1.0-1
done
check "purge: site files untouched" site_files_untouched
check "purge: no statoverride x2gobroker-ssh" no_statoverride /usr/bin/x2gobroker-ssh
check "purge: no statoverride x2gobroker-agent" no_statoverride /usr/lib/x2go/x2gobroker-agent
check "purge: no statoverride /var/log/x2gobroker" no_statoverride /var/log/x2gobroker
check "purge: reference defaults.conf kept" exists /etc/x2go/broker/defaults.conf

# --- a fresh installation: no reference, no site files --------------------------------------------
second_chroot() {
  drop_chroot
  new_chroot
  work_dir=$(dirname "$chroot_dir")
  work_sums=$work_dir/site-files.sha256
}
step "a second fresh $suite chroot" second_chroot
step "apt-get update" apt_in_chroot update
step "install ours on a machine without a broker" install_ours
same_as_shipped() { cmp "$(c "$2")" "$(c "/usr/share/$1$2")"; }
check "fresh: x2gobroker.conf written from ours" same_as_shipped x2gobroker-daemon /etc/x2go/x2gobroker.conf
check "fresh: session profiles written from ours" same_as_shipped x2gobroker-daemon /etc/x2go/broker/x2gobroker-sessionprofiles.conf
check "fresh: defaults.conf written from ours" same_as_shipped x2gobroker-daemon /etc/x2go/broker/defaults.conf
check "fresh: PAM service file written from ours" same_as_shipped x2gobroker-authservice /etc/pam.d/x2gobroker
check "fresh: no loggers file (logs go to the journal)" absent /etc/x2go/broker/x2gobroker-loggers.conf
check "fresh: agentd token root 0600" stat_is /etc/x2go/x2gobroker-agentd.token "root:root 600"
check "fresh: statoverride x2gobroker-ssh" statoverride_is "x2gobroker x2gobroker-users 4550" /usr/bin/x2gobroker-ssh
check "fresh: /run/x2gobroker" stat_is /run/x2gobroker "x2gobroker:x2gobroker 770"
# the site edits one of the files ours wrote; purge must keep it and take the others
site_edits_profiles() {
  printf '\n[site-added]\nname = Added by the site\nhost = added.site.invalid\n' \
    >> "$(c /etc/x2go/broker/x2gobroker-sessionprofiles.conf)"
  (cd "$chroot_dir" && sha256sum etc/x2go/broker/x2gobroker-sessionprofiles.conf) > "$work_sums"
}
step "the site edits the profiles file" site_edits_profiles
list_our_files
step "purge ours" purge
check "fresh purge: no file of ours left" left_files
check "fresh purge: the site's edited profiles kept" site_files_untouched
check "fresh purge: unchanged x2gobroker.conf removed" absent /etc/x2go/x2gobroker.conf
check "fresh purge: unchanged PAM file removed" absent /etc/pam.d/x2gobroker
check "fresh purge: the config bookkeeping removed" absent /var/lib/x2gobroker-daemon
check "fresh purge: no statoverride x2gobroker-ssh" no_statoverride /usr/bin/x2gobroker-ssh

echo "test-debs: took $((SECONDS - started)) s"
finish
