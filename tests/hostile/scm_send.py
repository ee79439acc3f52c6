# Hostile program: pass three fds over a unix socket. Prints "sent", or
# "refused ERRNO" (ETOOMANYREFS = 109 when the in-flight quota is spent).
import array
import socket

s1, s2 = socket.socketpair()
try:
    s1.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0, 1, 2]))])
    print("sent")
except OSError as e:
    print("refused", e.errno)
