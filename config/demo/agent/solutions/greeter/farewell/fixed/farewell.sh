#!/bin/sh
# Says goodbye to its first argument.
printf 'Goodbye, %s.\n' "$1"
