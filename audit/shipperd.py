"""``python -m sovereign_hub.audit.shipperd SETTINGS``: the shipper process's entry point.

A module of its own, which the package does not import, so that running it
with ``-m`` executes it exactly once.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from .shipprocess import serve


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[audit-shippers %(levelname)s] %(message)s")
    serve(json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
