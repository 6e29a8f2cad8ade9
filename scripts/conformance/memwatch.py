#!/usr/bin/env python3
"""Run a command and sample its memory: peak anonymous and file-backed resident memory.

    memwatch.py OUT_FILE CMD [ARGS...]

Writes "wall_s ru_maxrss_kb peak_anon_kb peak_file_kb" to OUT_FILE and exits with CMD's status.
Every 50 ms it reads RssAnon and RssFile from /proc/PID/status of CMD and its descendants (summed).
Peak RSS as GNU time or getrusage report it (ru_maxrss, the kernel's VmHWM) counts the file-backed
pages of memory-mapped inputs that the process has touched, which the kernel can drop at any time
(they are the page cache); RssAnon is the memory the process really allocated. Both are reported
because both tools map their input safetensors files.
"""

import os
import resource
import subprocess
import sys
import threading
import time


def tree(pid):
    out = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for c in f.read().split():
                out += tree(int(c))
    except OSError:
        pass
    return out


def sample(pid):
    anon = file = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
                    elif line.startswith("RssFile:"):
                        file += int(line.split()[1])
        except OSError:
            pass
    return anon, file


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd)
    peak = [0, 0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            a, f = sample(proc.pid)
            peak[0], peak[1] = max(peak[0], a), max(peak[1], f)
            done.wait(0.05)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    rc = proc.wait()
    wall = time.monotonic() - t0
    done.set()
    th.join()
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out, "w") as f:
        f.write(f"{wall:.3f} {maxrss} {peak[0]} {peak[1]}\n")
    sys.exit(rc)


if __name__ == "__main__":
    main()
