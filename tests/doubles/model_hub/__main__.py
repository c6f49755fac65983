"""Run the Hugging Face / CivitAI stand-in: python -m tests.doubles.model_hub --help"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    parser.add_argument(
        "--hf-token",
        action="append",
        default=[],
        help="accepted Hugging Face token, granted gated access (repeatable)",
    )
    parser.add_argument("--civitai-key", action="append", default=[], help="accepted API key")
    parser.add_argument(
        "--hf",
        nargs=3,
        action="append",
        default=[],
        metavar=("REPO", "FILE", "PATH"),
        help="serve PATH as REPO's FILE at revision main (repeatable)",
    )
    parser.add_argument(
        "--gated",
        nargs=3,
        action="append",
        default=[],
        metavar=("REPO", "FILE", "PATH"),
        help="like --hf, in a gated repository (401 without token, 403 for a token not granted)",
    )
    parser.add_argument(
        "--civitai",
        nargs=4,
        action="append",
        default=[],
        metavar=("VERSION_ID", "MODEL_ID", "TYPE", "PATH"),
        help="serve PATH as a CivitAI model version (TYPE: Checkpoint, LORA, VAE, ...)",
    )
    parser.add_argument(
        "--cap-bytes-per-second", type=int, help="per-connection bandwidth cap on the CDN"
    )
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert else None
    try:
        hub = ModelHub(args.address, args.api_port, args.cdn_port, tls)
    except ValueError as error:
        parser.error(str(error))
    hub.state.tokens.update(args.hf_token)
    hub.state.granted.update(args.hf_token)
    hub.state.civitai_keys.update(args.civitai_key)
    hub.state.bytes_per_second = args.cap_bytes_per_second
    for repo, file, path in args.hf:
        hub.add_hf_file(repo, file, path)
    for repo, file, path in args.gated:
        hub.add_hf_file(repo, file, path, gated=True)
    for version_id, model_id, model_type, path in args.civitai:
        hub.add_civitai_version(
            int(version_id), int(model_id), path, name=Path(path).name, model_type=model_type
        )
    with hub:
        print(f"api {hub.api_url}  cdn {hub.cdn_base}", flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
