"""Rebuild the shipped benchmark files: ``python -m instances.bundle FOLDER_OF_JSPLIB_FILES``, or
``python -m instances.bundle --fjsp FOLDER`` for the flexible families (the shared ``fjsp`` tree)."""

import sys
from pathlib import Path

from instances.catalogue import BUNDLE, write_bundle, write_fjsp_bundle

if __name__ == "__main__":
    data = Path(__file__).parent / "data"
    if len(sys.argv) == 3 and sys.argv[1] == "--fjsp":
        print(f"wrote {write_fjsp_bundle(sys.argv[2], data)} flexible instances to {data}")
    elif len(sys.argv) == 2:
        print(f"wrote {write_bundle(sys.argv[1], data / BUNDLE)} instances to {data / BUNDLE}")
    else:
        sys.exit("usage: python -m instances.bundle FOLDER_OF_JSPLIB_FILES | --fjsp FJSP_FOLDER")
