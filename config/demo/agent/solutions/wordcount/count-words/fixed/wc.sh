#!/bin/sh
# Counts the words on standard input.
wc -w | tr -d ' '
