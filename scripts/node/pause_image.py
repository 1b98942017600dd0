#!/usr/bin/env python3
"""Writes the node's pod sandbox ("pause") image as an OCI archive: the kubelet's own
pause.c, compiled static by scripts/node/up.sh, alone in one layer, run as 65535 like
registry.k8s.io/pause (which cannot be pulled here).

  pause_image.py <pause binary> <image reference> <out.oci.tar>
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "images"))
import oci  # noqa: E402
from rootfs import Rootfs  # noqa: E402


def main() -> int:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, reference, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    tree = Rootfs()
    tree.file("pause", binary.read_bytes(), 0o755, mtime=epoch)
    layer = oci.layer(tree, epoch, "COPY /pause")
    config = oci.ImageConfig(user="65535:65535", entrypoint=["/pause"])
    image = oci.image(reference, config, [layer], epoch)
    out.parent.mkdir(parents=True, exist_ok=True)
    oci.write_archive(image, out, epoch)
    print(f"{out.name}: {reference} {image.manifest.digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
