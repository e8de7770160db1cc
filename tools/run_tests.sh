#!/usr/bin/env bash
# Runs the test suite once per Keras backend; exits non-zero if any pass fails.
# Usage: bash tools/run_tests.sh [pytest args...]   (BACKENDS="jax torch" to choose)
set -u
cd "$(dirname "$0")/.."
status=0
for backend in ${BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider tests "$@" || status=1
done
exit $status
