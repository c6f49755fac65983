"""Forge Fleet: start Forge's launch.py with --api-auth read from a 0600 file.

webui.sh runs this as LAUNCH_SCRIPT (the unit sets it) from the Forge checkout, with
Forge's arguments. Forge takes API credentials only as the --api-auth argument; passing
them on the command line would show them in `ps` to every local user, and passing them in
COMMANDLINE_ARGS would print them on /internal/sysinfo, which needs no login. Appending
them to sys.argv inside this process keeps them out of both: /proc/PID/cmdline still holds
only the arguments webui.sh passed, and Forge's sysinfo shows the value as "<hidden>".
"""

import os
import runpy
import sys


def main() -> None:
    path = os.environ.pop("FORGE_FLEET_API_AUTH_FILE", "")
    try:
        with open(path, encoding="utf-8") as handle:
            credentials = handle.read().strip()
    except OSError as error:
        sys.exit(f"forge-fleet launcher: cannot read the API credentials file {path!r}: {error}")
    if not credentials:
        sys.exit(f"forge-fleet launcher: the API credentials file {path} is empty")
    checkout = os.getcwd()
    sys.argv = [os.path.join(checkout, "launch.py"), *sys.argv[1:], "--api-auth", credentials]
    sys.path[0] = checkout  # as if Python had been started as `python launch.py` here
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
