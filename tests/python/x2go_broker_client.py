#!/usr/bin/python3
"""Drive our broker with Python X2Go's real HTTP broker backend (python3-x2go from Debian).

usage: x2go_broker_client.py BROKER_URL USER PASSWORD PROFILE_ID
Prints one JSON object: the authentication result, the listed profiles and the selection.
"""
import json
import sys

from x2go.backends.profiles.httpbroker import X2GoSessionProfiles
import x2go.log


def main():
    url, user, password, profile_id = sys.argv[1:5]
    logger = x2go.log.X2GoLogger(loglevel=x2go.log.loglevel_NONE)
    profiles = X2GoSessionProfiles(broker_url=url, broker_username=user, broker_password=password, logger=logger)
    authenticated = profiles.broker_simpleauth(user, password)
    listed = profiles.broker_listprofiles()
    try:
        selected = profiles.broker_selectsession(profile_id)
    except KeyError:  # Python X2Go's own bug when the broker refuses the request
        selected = None
    # the profile list as the client builds it (its own defaults merged in)
    populated = profiles._populate_session_profiles()
    print(json.dumps({
        "authenticated": bool(authenticated),
        "authid_received": profiles.broker_authid is not None,
        "profile_ids": sorted(listed.keys()),
        "names": {pid: listed[pid].get("name") for pid in listed},
        "populated_ids": sorted(populated.keys()),
        "selected": selected,
    }))


if __name__ == "__main__":
    main()
