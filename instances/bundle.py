"""Rebuild the shipped benchmark file: ``python -m instances.bundle FOLDER_OF_JSPLIB_FILES``."""

import sys
from pathlib import Path

from instances.catalogue import BUNDLE, write_bundle

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m instances.bundle FOLDER_OF_JSPLIB_FILES")
    target = Path(__file__).parent / "data" / BUNDLE
    print(f"wrote {write_bundle(sys.argv[1], target)} instances to {target}")
