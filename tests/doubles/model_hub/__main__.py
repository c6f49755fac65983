"""Run the Hugging Face / CivitAI stand-in: python -m tests.doubles.model_hub --help"""

from __future__ import annotations

import argparse
import time

from tests.doubles.model_hub import ModelHub


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--address", default="127.0.0.1", help="loopback or the lab network gateway; nothing else"
    )
    parser.add_argument("--api-port", type=int, default=18080)
    parser.add_argument("--cdn-port", type=int, default=18081)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--hf-token", action="append", default=[])
    parser.add_argument(
        "--hf", nargs=3, action="append", default=[], metavar=("REPO", "FILE", "PATH")
    )
    parser.add_argument("--cap-bytes-per-second", type=int)
    args = parser.parse_args()
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    hub = ModelHub(args.address, args.api_port, args.cdn_port, tls)
    hub.state.tokens.update(args.hf_token)
    hub.state.granted.update(args.hf_token)
    hub.state.bytes_per_second = args.cap_bytes_per_second
    for repo, file, path in args.hf:
        hub.add_hf_file(repo, file, path)
    with hub:
        print(f"api {hub.api_url}  cdn {hub.cdn_base}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
