#!/bin/sh
# The wordcount project's check: run in its workspace after each attempt.
[ -f wc.sh ] || { echo "FAIL: wc.sh is missing"; exit 1; }
got=$(printf 'one two\nthree\n' | sh wc.sh)
if [ "$got" = "3" ]; then echo "ok: 3 words"; else echo "FAIL: 'one two\\nthree\\n' -> expected 3, got '$got'"; exit 1; fi
got=$(printf '' | sh wc.sh)
if [ "$got" = "0" ]; then echo "ok: empty input"; else echo "FAIL: empty input -> expected 0, got '$got'"; exit 1; fi
