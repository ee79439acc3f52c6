"""A minimal PEP 517 build backend: packs src/greet into a wheel with a
`greet` console script. Standard library only."""

import base64
import hashlib
import os
import zipfile

NAME, VERSION = "greet", "1.0"
DIST_INFO = f"{NAME}-{VERSION}.dist-info"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

METADATA = f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
WHEEL = "Wheel-Version: 1.0\nGenerator: greet-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
ENTRY_POINTS = "[console_scripts]\ngreet = greet:main\n"


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}\n"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {}
    src = os.path.join(ROOT, "src", NAME)
    for name in sorted(os.listdir(src)):
        if name.endswith(".py"):
            with open(os.path.join(src, name), "rb") as f:
                files[f"{NAME}/{name}"] = f.read()
    files[f"{DIST_INFO}/METADATA"] = METADATA.encode()
    files[f"{DIST_INFO}/WHEEL"] = WHEEL.encode()
    files[f"{DIST_INFO}/entry_points.txt"] = ENTRY_POINTS.encode()
    record = "".join(_record_line(p, d) for p, d in files.items()) + f"{DIST_INFO}/RECORD,,\n"
    files[f"{DIST_INFO}/RECORD"] = record.encode()
    wheel = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return wheel
