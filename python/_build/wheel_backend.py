"""A PEP 517 / PEP 660 build backend that needs nothing but the standard
library, so that `pip install ./python` (and `pip install -e python`)
works offline in a fresh virtual environment: pip's isolated build
environment is empty (pyproject.toml: requires = []).

It builds a pure-Python wheel of master_log_client (py3-none-any), an
editable wheel (a .pth file naming this directory), and an sdist.
"""

import base64
import hashlib
import os
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "master_log_client"
NAME = "master-log-client"
DIST = "master_log_client"


def _version():
    scope = {}
    exec((ROOT / PACKAGE / "_version.py").read_text(), scope)
    return scope["__version__"]


def _metadata():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {NAME}\n"
        f"Version: {_version()}\n"
        "Summary: Dependency-free Python client for Master Log, over the durable spool (libmlog)\n"
        "License: MIT\n"
        "Classifier: Programming Language :: Python :: 3\n"
        "Classifier: Programming Language :: Python :: 3 :: Only\n"
        "Classifier: Topic :: System :: Logging\n"
        "Requires-Python: >=3.9\n"
        "Description-Content-Type: text/markdown\n"
        "\n" + readme)


WHEEL = ("Wheel-Version: 1.0\nGenerator: master_log_client _build/wheel_backend.py\n"
         "Root-Is-Purelib: true\nTag: py3-none-any\n")


def _digest(data):
    d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={d}"


def _write_wheel(wheel_directory, files):
    """files: [(archive name, bytes)]; returns the wheel's file name."""
    version = _version()
    name = f"{DIST}-{version}-py3-none-any.whl"
    info = f"{DIST}-{version}.dist-info"
    files = list(files) + [(f"{info}/METADATA", _metadata().encode()),
                           (f"{info}/WHEEL", WHEEL.encode())]
    record = "".join(f"{n},{_digest(d)},{len(d)}\n" for n, d in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode()))
    path = Path(wheel_directory) / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            zi = zipfile.ZipInfo(n, date_time=(2026, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, d)
    return name


def _package_files():
    for p in sorted((ROOT / PACKAGE).rglob("*.py")):
        yield p.relative_to(ROOT).as_posix(), p.read_bytes()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, _package_files())


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, [(f"{DIST}.pth", (str(ROOT) + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    base = f"{DIST}-{_version()}"
    name = f"{base}.tar.gz"
    with tarfile.open(Path(sdist_directory) / name, "w:gz") as t:
        for rel in ["pyproject.toml", "README.md", "_build/wheel_backend.py"] + \
                [n for n, _ in _package_files()]:
            t.add(ROOT / rel, arcname=f"{base}/{rel}")
        pkg = f"{base}/PKG-INFO"
        data = _metadata().encode()
        ti = tarfile.TarInfo(pkg)
        ti.size = len(data)
        import io
        t.addfile(ti, io.BytesIO(data))
    return name
