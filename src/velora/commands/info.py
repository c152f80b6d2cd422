"""`velora info`: parameters per part and adapter checkpoint size for a config."""

from __future__ import annotations

import argparse

from velora.commands.common import add_config


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("info", help="parameters per part and adapter checkpoint size for a config")
    add_config(p, "pokerevent_vitb16")
    return p


def run(args) -> int:
    from velora.config import load_config
    from velora.info import describe

    print(describe(load_config(args.config, args.overrides)))
    return 0
