#!/usr/bin/env python3
"""Start an embedded llama.cpp server (xllamacpp) on loopback; run until SIGTERM/SIGINT.

Prints exactly one line to stdout once the HTTP server answers:
    READY http://127.0.0.1:PORT
(--port 0 lets the OS pick a free port; the line carries the real one.)
"""
import argparse
import os
import signal
import threading
import sys
import time
import urllib.request

import xllamacpp as xlc


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="path to a .gguf file")
    ap.add_argument("--port", type=int, default=0, help="0 = OS picks a free port")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--alias", default="smollm2", help="model id reported by /v1/models")
    ap.add_argument("--ctx", type=int, default=4096, help="total KV context, split across slots")
    ap.add_argument("--parallel", type=int, default=2, help="concurrent request slots")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quiet", action="store_true", help="llama.cpp logs: errors only")
    ap.add_argument("--stdin-eof", action="store_true", help="also stop when stdin reaches EOF")
    ap.add_argument("--grace", type=int, default=2, help="max seconds for graceful stop")
    a = ap.parse_args()

    t0 = time.monotonic()
    p = xlc.CommonParams()
    p.model.path = a.model
    p.hostnames = [a.host]
    p.port = a.port
    p.model_alias = {a.alias}        # a SET: a plain str would become a set of its characters
    p.n_ctx = a.ctx
    p.n_parallel = a.parallel
    p.cpuparams.n_threads = a.threads
    p.cpuparams_batch.n_threads = a.threads
    p.n_threads_http = 4
    p.warmup = False                 # no measurable effect with this 135M model
    if a.quiet:
        p.verbosity = 0

    stop = {"sig": None}
    wake = threading.Event()

    def on_signal(signum, _frame):
        stop["sig"] = signum
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    server = xlc.Server(p)           # loads the model, starts the HTTP thread; returns when ready
    addr = server.listening_address  # e.g. "http://127.0.0.1:41233"

    # Belt and braces: do not announce before /health answers 200.
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(addr + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if time.monotonic() > deadline or stop["sig"] is not None:
            print("FAILED no /health answer", file=sys.stderr, flush=True)
            return 1
        time.sleep(0.05)

    print(f"READY {addr}", flush=True)
    print(f"startup {time.monotonic() - t0:.2f}s", file=sys.stderr, flush=True)

    if a.stdin_eof:
        # Parent-death guard: a test harness keeps our stdin as a pipe; when it exits
        # (even by SIGKILL) the pipe closes and we stop instead of leaking a server.
        def watch_stdin():
            while sys.stdin.buffer.read(65536):
                pass
            stop["sig"] = stop["sig"] or "stdin-eof"
            wake.set()

        threading.Thread(target=watch_stdin, daemon=True).start()

    while not wake.wait(0.5):
        pass

    # Graceful stop = `del server` (C++ ~Server stops the loop and HTTP threads). It blocks
    # while any client still holds an in-flight request open (the task is cancelled, the
    # request is never answered, the HTTP handler waits for the client to hang up), and it
    # holds the GIL, so a Python watchdog thread cannot fire. Bound it with SIGALRM left at
    # its default action: the kernel kills the process (exit status 128+14) after --grace s.
    t1 = time.monotonic()
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, int(a.grace)))
    del server
    print(f"stopped on signal {stop['sig']} in {time.monotonic() - t1:.2f}s", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(0)                      # skip interpreter teardown (saves ~1.5s)


if __name__ == "__main__":
    sys.exit(main())
