"""Forge Fleet: start Forge's launch.py with the API credentials read from a 0600 file.

webui.sh runs this as LAUNCH_SCRIPT (the unit sets it) from the Forge checkout, with
Forge's arguments. Forge takes API credentials only as the --api-auth option, and every
place that option could travel shows it to someone:
- on the command line, `ps` shows it to every local user;
- in COMMANDLINE_ARGS, /internal/sysinfo prints it to anyone who reaches the port;
- in sys.argv, Forge prints "Launching Web UI with arguments: ..." into the journal.
So they travel none of those ways: just before Forge's start() parses its options (in
modules.shared_cmd_options, the first import of start's `import webui`), this launcher
imports that module itself and sets ``cmd_opts.api_auth``, the value Forge's API reads.
The environment holds only the file's path, removed before Forge runs.
"""

import os
import runpy
import sys


def read_credentials() -> str:
    path = os.environ.pop("FORGE_FLEET_API_AUTH_FILE", "")
    try:
        with open(path, encoding="utf-8") as handle:
            credentials = handle.read().strip()
    except OSError as error:
        sys.exit(f"forge-fleet launcher: cannot read the API credentials file {path!r}: {error}")
    if not credentials:
        sys.exit(f"forge-fleet launcher: the API credentials file {path} is empty")
    return credentials


def main() -> None:
    credentials = read_credentials()
    checkout = os.getcwd()
    sys.argv = [os.path.join(checkout, "launch.py"), *sys.argv[1:]]
    sys.path[0] = checkout  # as if Python had been started as `python launch.py` here

    # Forge's own modules, importable only now that the checkout is on sys.path
    from modules import launch_utils  # noqa: PLC0415 - what launch.py imports first

    forge_start = launch_utils.start

    def start():
        from modules import shared_cmd_options  # noqa: PLC0415 - parses sys.argv on import

        shared_cmd_options.cmd_opts.api_auth = credentials
        return forge_start()

    launch_utils.start = start  # launch.py binds start from launch_utils when it runs
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
