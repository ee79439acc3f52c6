# Hostile program: keep as many fds in flight over a unix socket (SCM_RIGHTS,
# never received) as the kernel allows, then hold them for 1.5 s.
import array
import os
import socket
import time

s1, s2 = socket.socketpair()
fds = array.array("i", [os.open("/dev/null", os.O_RDONLY) for _ in range(200)])
try:
    for _ in range(10):
        s1.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
except OSError:
    pass
print("holding", flush=True)
time.sleep(1.5)
