#!/usr/bin/env bash
exec python3 "$1" -v
