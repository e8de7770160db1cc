#!/usr/bin/env bash
# Runs the test suite once per Keras backend; exits non-zero if any pass fails.
# Usage: bash tools/run_tests.sh [pytest args...]
#   BACKENDS="jax torch" bash tools/run_tests.sh   one pass after the other, output as it comes
#   bash tools/run_tests.sh                        all three: the JAX pass (the longest: XLA compiles every
#                                                  model) beside the TensorFlow then PyTorch passes (each pass
#                                                  waits on subprocesses and I/O part of the time, so two
#                                                  streams finish sooner than one on 2 cores); each pass's
#                                                  output is shown when it ends
set -u
cd "$(dirname "$0")/.."

run_pass() {  # backend [pytest args...]
  local backend=$1 start=$SECONDS status=0
  shift
  echo "=== KERAS_BACKEND=$backend ==="
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider --durations=30 tests "$@" || status=1
  echo "=== KERAS_BACKEND=$backend: $([ $status = 0 ] && echo passed || echo FAILED) in $(( SECONDS - start )) s ==="
  return $status
}

if [ -n "${BACKENDS:-}" ]; then
  status=0
  for backend in $BACKENDS; do
    run_pass "$backend" "$@" || status=1
  done
  exit $status
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
echo "Running the jax pass beside the tensorflow and torch passes; each pass's output follows when it ends."
run_pass jax "$@" > "$logs/jax.log" 2>&1 &
jax_pid=$!
status=0
for backend in tensorflow torch; do
  run_pass "$backend" "$@" > "$logs/$backend.log" 2>&1 || status=1
  cat "$logs/$backend.log"
done
wait $jax_pid || status=1
cat "$logs/jax.log"
exit $status
