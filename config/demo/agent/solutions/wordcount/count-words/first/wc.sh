#!/bin/sh
# Counts the words on standard input.
wc -l | tr -d ' '
