# Hostile program: grow ./f 64 KiB at a time with SIGXFSZ ignored until a
# write fails. Prints "BYTES ERRNO" (EFBIG = 27 at the file-size limit).
import signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
n = 0
with open("f", "wb", buffering=0) as f:
    try:
        while True:
            n += f.write(b"x" * 65536)
    except OSError as e:
        print(n, e.errno)
