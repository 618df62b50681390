#!/bin/sh
# The greeter project's check: run in its workspace after each attempt.
fail=0
expect() { # expect WANT COMMAND...
  want=$1; shift
  got=$("$@" 2>&1) || true
  if [ "$got" = "$want" ]; then echo "ok: $* -> $got"; else echo "FAIL: $* -> expected '$want', got '$got'"; fail=1; fi
}
[ -f greet.sh ] || { echo "FAIL: greet.sh is missing"; exit 1; }
expect "Hello, Ada!" sh greet.sh Ada
expect "Hello, Grace Hopper!" sh greet.sh "Grace Hopper"
if [ -f farewell.sh ]; then
  expect "Goodbye, Ada." sh farewell.sh Ada
fi
exit $fail
