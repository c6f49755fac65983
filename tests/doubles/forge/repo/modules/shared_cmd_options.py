"""Forge Fleet lab stand-in for Forge's modules/shared_cmd_options.py (tests/DOUBLES.md):
``cmd_opts``, Forge's options parsed strictly from sys.argv when the UI starts (an unknown
flag exits 2 with argparse's message). Forge's API reads ``cmd_opts.api_auth``.
"""

import sys

from modules.launch_utils import make_parser

cmd_opts = make_parser().parse_args(sys.argv[1:])
