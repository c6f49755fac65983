"""Forge Fleet lab stand-in for Forge's launch.py (tests/DOUBLES.md): prepares the
environment unless --skip-prepare-environment, then starts (modules/launch_utils.py)."""

from modules import launch_utils

args = launch_utils.args
prepare_environment = launch_utils.prepare_environment
start = launch_utils.start


def main():
    if not args.skip_prepare_environment:
        prepare_environment()
    start()


if __name__ == "__main__":
    main()
