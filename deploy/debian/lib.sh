# Shared by the maintainer scripts (deploy/build-debs.sh puts it where #INCLUDE lib.sh# stands).
# The account x2gobroker as the reference's maintainer scripts make it: a system user and group,
# home /var/lib/x2gobroker, a shell (/bin/bash: the agent's SSH mode logs in as x2gobroker and
# runs the forced command), no password. An existing account is kept; as the reference, a home
# of /dev/null or a shell of /bin/false is corrected.
x2gobroker_account() {
	if ! getent group x2gobroker >/dev/null; then
		addgroup --system --quiet x2gobroker
	fi
	if ! getent passwd x2gobroker >/dev/null; then
		adduser --system --quiet --disabled-password --disabled-login --shell /bin/bash \
			--ingroup x2gobroker --home /var/lib/x2gobroker x2gobroker
	else
		if getent passwd x2gobroker | cut -d: -f6 | grep -qx /dev/null; then
			usermod --home /var/lib/x2gobroker x2gobroker
		fi
		if getent passwd x2gobroker | cut -d: -f7 | grep -qx /bin/false; then
			usermod --shell /bin/bash x2gobroker
		fi
	fi
	mkdir -p /var/lib/x2gobroker
	chown x2gobroker:x2gobroker /var/lib/x2gobroker
}

# x2gobroker_statoverride OWNER GROUP MODE PATH: the site's override wins; ours only where none is.
x2gobroker_statoverride() {
	if ! dpkg-statoverride --list "$4" >/dev/null; then
		dpkg-statoverride --update --add "$1" "$2" "$3" "$4"
	fi
}

# x2gobroker_install_missing PACKAGE FILE...: each /etc FILE the site does not have is copied from
# /usr/share/PACKAGE/FILE and its checksum recorded, so that purge removes it only unchanged. A
# file the site has (the reference's, its own) is never touched.
x2gobroker_install_missing() {
	package=$1
	shift
	for file in "$@"; do
		if [ ! -e "$file" ] && [ ! -L "$file" ]; then
			mkdir -p "/var/lib/$package" "$(dirname "$file")"
			install -m 0644 "/usr/share/$package$file" "$file"
			sha256sum "$file" >> "/var/lib/$package/created-config.sha256"
		fi
	done
}

# x2gobroker_run_directory TMPFILES-CONF: /run/x2gobroker as the tmpfiles.d line says (also without systemd).
x2gobroker_run_directory() {
	if command -v systemd-tmpfiles >/dev/null && [ -d /run/systemd/system ]; then
		systemd-tmpfiles --create "$1" >/dev/null || true
	fi
	if [ ! -d /run/x2gobroker ]; then
		mkdir -p /run/x2gobroker
	fi
	chown x2gobroker:x2gobroker /run/x2gobroker
	chmod 0770 /run/x2gobroker
}

# x2gobroker_systemd_enable UNIT RESTART: debhelper's dh_installsystemd snippet (bookworm).
x2gobroker_systemd_enable() {
	if command -v deb-systemd-helper >/dev/null; then
		deb-systemd-helper unmask "$1" >/dev/null || true
		if deb-systemd-helper --quiet was-enabled "$1"; then
			deb-systemd-helper enable "$1" >/dev/null || true
		else
			deb-systemd-helper update-state "$1" >/dev/null || true
		fi
	fi
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null || true
		if [ -n "$2" ]; then
			deb-systemd-invoke restart "$1" >/dev/null || true
		else
			deb-systemd-invoke start "$1" >/dev/null || true
		fi
	fi
}

# x2gobroker_readable_by_broker FILE WHAT: warn when the broker (x2gobroker) cannot read FILE.
x2gobroker_readable_by_broker() {
	[ -n "$1" ] && [ -e "$1" ] || return 0
	if command -v runuser >/dev/null && ! runuser -u x2gobroker -- test -r "$1"; then
		echo "x2gobroker: warning: $2 $1 is not readable by the broker (user x2gobroker);" \
			"make it root:x2gobroker 0640" >&2
	fi
}

# x2gobroker_purge_created PACKAGE: the /etc files x2gobroker_install_missing created, removed
# only while they still hold what was installed (a file the site changed stays).
x2gobroker_purge_created() {
	list="/var/lib/$1/created-config.sha256"
	if [ -f "$list" ]; then
		while read -r sum file; do
			if [ -f "$file" ] && [ "$(sha256sum < "$file" | cut -d' ' -f1)" = "$sum" ]; then
				rm -f "$file"
			fi
		done < "$list"
		rm -f "$list"
	fi
	if [ -d "/var/lib/$1" ]; then
		rmdir --ignore-fail-on-non-empty "/var/lib/$1"
	fi
}

# x2gobroker_statoverride_remove PATH
x2gobroker_statoverride_remove() {
	if dpkg-statoverride --list "$1" >/dev/null; then
		dpkg-statoverride --remove "$1"
	fi
}
