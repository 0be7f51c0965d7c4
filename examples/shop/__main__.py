"""``python -m examples.shop [--port 8000]``: serve the shop with uvicorn on uvloop."""

from __future__ import annotations

import argparse

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the dbos_async shop example.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run("examples.shop.app:app", host=args.host, port=args.port, loop="uvloop")


if __name__ == "__main__":
    main()
