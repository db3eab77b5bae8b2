"""Fetch the JMESPath compliance suite for tests/policy/test_jmes_compiled.py.

The suite (the JMESPath project's ``compliance/*.json``) is in no PyPI package; the npm package
``jmespath-plus`` (a fork of jmespath.js, MIT) ships a copy as ``test/compliance/``. ``make setup`` fetches
that one tarball from the npm registry, pinned by version and SHA-256, and unpacks only the JSON files into
the virtualenv (``.venv/share/jmespath-compliance``). Without network the test is skipped, not failed.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "jmespath-plus"
VERSION = "0.1.7"
SHA256 = "182264277b7b00ed498eb4570fb169753b691342e38cb416b12e93c2f5354310"
MEMBERS = "package/test/compliance/"
MAX_BYTES = 1 << 20


def main(target: Path) -> int:
    registry = os.environ.get("AFFIDAVIT_NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")
    url = f"{registry}/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read(MAX_BYTES + 1)
    except OSError as exc:
        print(f"jmespath compliance suite not fetched ({exc}); its test will be skipped", file=sys.stderr)
        return 0
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        print(f"error: {url}: SHA-256 {digest}, expected {SHA256}", file=sys.stderr)
        return 1
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if member.isfile() and name.startswith(MEMBERS) and name.endswith(".json") and "/" not in name[
                len(MEMBERS):
            ]:
                source = tar.extractfile(member)
                assert source is not None
                (target / name[len(MEMBERS):]).write_bytes(source.read())
                count += 1
    print(f"jmespath compliance suite: {count} files from {PACKAGE} {VERSION} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
