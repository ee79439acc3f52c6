# Hostile program: connect to the host's TCP listener on 127.0.0.1:PORT
# (argv[1]) and to the internet. Prints "CONNECTED addr" or "refused ERRNO".
import socket
import sys

for addr in [("127.0.0.1", int(sys.argv[1])), ("1.1.1.1", 53)]:
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(addr)
        print("CONNECTED", addr)
    except OSError as e:
        print("refused", e.errno)
