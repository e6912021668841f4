"""``python -m tokenmill.train ...`` is ``tokenmill train ...``; it is what ``torchrun -m`` runs on every rank."""

from __future__ import annotations

import sys

from tokenmill.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
