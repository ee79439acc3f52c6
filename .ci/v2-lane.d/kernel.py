#!/usr/bin/env python3
"""The v2 lane's kernel pieces, made from an unpacked Debian kernel package.

  kernel.py vmlinux VMLINUZ OUT
      Uncompress the kernel image (a bzImage) into the ELF vmlinux it carries.
      QEMU boots that ELF directly (PVH entry), which saves the ~4 s the
      kernel's own decompressor takes under TCG emulation.
  kernel.py initramfs MODDIR INIT OUT MODULE...
      Write a newc cpio archive with INIT as /init, the named modules (by file
      name without .ko, found under MODDIR) and every module they depend on
      under /modules, and /modules/order: the load order, dependencies first.

Standard library only: the lane must not need more than python3 (a cpio tool
is not installed on a fresh machine).
"""
import gzip
import io
import lzma
import os
import sys


def fail(msg):
    print(f"v2-lane: {msg}", file=sys.stderr)
    sys.exit(1)


def vmlinux(vmlinuz, out):
    data = open(vmlinuz, "rb").read()
    # The bzImage's setup code is followed by the compressed ELF; try each
    # compressed-stream signature where it occurs, keep the first that
    # unpacks to an ELF file (as the kernel's scripts/extract-vmlinux does).
    candidates = [
        (b"\xfd7zXZ\x00", lambda b: lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(b)),
        (b"\x1f\x8b\x08", lambda b: gzip.GzipFile(fileobj=io.BytesIO(b)).read()),
    ]
    for magic, unpack in candidates:
        start = 0
        while (pos := data.find(magic, start)) >= 0:
            start = pos + 1
            try:
                elf = unpack(data[pos:])
            except (lzma.LZMAError, OSError, EOFError):
                continue
            if elf[:4] == b"\x7fELF":
                tmp = f"{out}.tmp.{os.getpid()}"
                with open(tmp, "wb") as f:
                    f.write(elf)
                os.replace(tmp, out)
                return
    fail(f"{vmlinuz}: no xz or gzip stream holding an ELF kernel (another compression?)")


def modinfo_depends(path):
    data = open(path, "rb").read()
    i = data.find(b"depends=")
    if i < 0:
        return []
    end = data.find(b"\0", i)
    deps = data[i + len(b"depends="):end].decode()
    return [d for d in deps.split(",") if d]


def initramfs(moddir, init, out, wanted):
    index = {}
    for d, _, files in os.walk(moddir):
        for f in files:
            if f.endswith(".ko"):
                # Module names use '_' where file names may use '-'.
                index[f[:-3].replace("-", "_")] = os.path.join(d, f)
    order, seen = [], set()

    def visit(name, chain):
        key = name.replace("-", "_")
        if key in seen:
            return
        if key in chain:
            fail(f"module dependency loop: {' -> '.join(chain + [key])}")
        if key not in index:
            fail(f"module {name} not found under {moddir}")
        for dep in modinfo_depends(index[key]):
            visit(dep, chain + [key])
        seen.add(key)
        order.append(key)

    for m in wanted:
        visit(m, [])

    entries = [("init", 0o100755, open(init, "rb").read()), ("modules", 0o40755, b"")]
    for m in order:
        entries.append((f"modules/{m}.ko", 0o100644, open(index[m], "rb").read()))
    entries.append(("modules/order", 0o100644, "".join(f"{m}.ko\n" for m in order).encode()))

    def pad(n):
        return b"\0" * ((4 - n % 4) % 4)

    def header(ino, name, mode, size):
        # newc: magic, then 13 eight-digit hex fields: ino, mode, uid, gid,
        # nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        # namesize (with its NUL), check.
        nlink = 2 if mode & 0o40000 else 1
        fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
        h = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
        return h + pad(len(h))

    tmp = f"{out}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        for ino, (name, mode, body) in enumerate(entries, start=1):
            f.write(header(ino, name, mode, len(body)))
            f.write(body + pad(len(body)))
        f.write(header(0, "TRAILER!!!", 0, 0))
    os.replace(tmp, out)


def main(argv):
    if len(argv) == 4 and argv[1] == "vmlinux":
        vmlinux(argv[2], argv[3])
    elif len(argv) >= 6 and argv[1] == "initramfs":
        initramfs(argv[2], argv[3], argv[4], argv[5:])
    else:
        fail("usage: kernel.py vmlinux VMLINUZ OUT | initramfs MODDIR INIT OUT MODULE...")


if __name__ == "__main__":
    main(sys.argv)
