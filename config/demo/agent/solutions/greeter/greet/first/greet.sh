#!/bin/sh
# Greets its first argument.
echo "Hello $1"
