#!/usr/bin/env bash
# Install jaxdiff with its dev extra into .venv and run the whole test suite.
# pytest exits 5 when no test ran; that is a failure here too.
source "$(dirname "$0")/env.sh" dev
python -m pytest -q "$@"
