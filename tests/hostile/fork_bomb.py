# Hostile program: fork until fork() fails; children sleep. Prints
# "forks N ERRNO" (the catalogue expects EAGAIN = 11 before the pids limit).
import os
import time

n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print("forks", n, e.errno)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    n += 1
