#!/bin/sh
# Greets its first argument.
printf 'Hello, %s!\n' "$1"
