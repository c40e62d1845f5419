#!/usr/bin/env bash
# Install jaxdiff (core dependencies only) into .venv and run the demo.
source "$(dirname "$0")/env.sh" core
jaxdiff demo "$@"
