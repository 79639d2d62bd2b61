#!/usr/bin/env bash
# `make fuzz`: runs each fuzz target for a bounded time, one after the
# other, and prints the executions of each. Installs nothing: a missing
# tool is named with the command that installs it, and the run fails.
#
#   FUZZ_SECONDS   seconds per target (default 120)
#   FUZZ_TARGETS   which targets (default: head chunked json config cli dns)
#   FUZZ_TOOLCHAIN nightly or stable (default: nightly if rustup has it)
#   FUZZ_SANITIZER none or address for every target (default: address for
#                  head on nightly, else none; see README.md)
#
# An input that fails a check is copied from the artifacts dir into
# tests/fuzz/regressions/<target>/, which tests/fuzz_regressions.rs
# replays on stable (`make test`): commit it with the fix.
# Every run is added to tests/fuzz/out/runs.tsv, and the totals per target
# over all runs recorded there are printed at the end.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
FUZZ=$ROOT/tests/fuzz
CARGO=${CARGO:-cargo}
SECONDS_EACH=${FUZZ_SECONDS:-120}
TARGETS=${FUZZ_TARGETS:-head chunked json config cli dns}

if ! $CARGO fuzz --version >/dev/null 2>&1; then
  echo "make fuzz needs cargo-fuzz: cargo install cargo-fuzz" >&2
  exit 1
fi

# Nightly where the machine has it: the head target (the only one with
# unsafe code, the SIMD scanners) then runs under AddressSanitizer. The
# other targets are safe Rust, where ASan finds nothing that bounds checks
# do not and costs most of the speed: they run without a sanitizer on any
# toolchain. Coverage instrumentation (libFuzzer's guidance) works on stable.
TOOLCHAIN=${FUZZ_TOOLCHAIN:-}
if [ -z "$TOOLCHAIN" ]; then
  if rustup run nightly rustc --version >/dev/null 2>&1; then
    TOOLCHAIN=nightly
  else
    TOOLCHAIN=stable
    echo "note: no nightly toolchain (rustup toolchain install nightly --profile minimal);" \
      "fuzzing on stable, the head target without AddressSanitizer" >&2
  fi
fi

sanitizer() {
  if [ -n "${FUZZ_SANITIZER:-}" ]; then echo "$FUZZ_SANITIZER"
  elif [ "$TOOLCHAIN" = nightly ] && [ "$1" = head ]; then echo address
  else echo none; fi
}
max_len() {
  case $1 in config) echo 8192 ;; cli) echo 1024 ;; *) echo 4096 ;; esac
}

mkdir -p "$FUZZ/out" "$FUZZ/corpus"
for t in $TARGETS; do
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/regressions/$t" "$FUZZ/artifacts/$t"
done

# Seeds from the conformance corpora (the project's copy in
# tests/conformance/), written by the stable test that also replays them.
if [ -d "$ROOT/tests/conformance" ]; then
  echo "== seeds from tests/conformance"
  FUZZ_CORPUS=$FUZZ/corpus $CARGO test --profile ci --test fuzz_regressions -q \
    -- --ignored --exact write_seeds >"$FUZZ/out/seeds.log" 2>&1 \
    || { cat "$FUZZ/out/seeds.log" >&2; echo "writing seeds failed" >&2; exit 1; }
else
  echo "note: no tests/conformance: fuzzing from the committed seeds only" >&2
fi

failed=()
summary=()
for t in $TARGETS; do
  san=$(sanitizer "$t")
  tdir=$FUZZ/target/$san
  echo "== $t: building ($TOOLCHAIN, sanitizer $san)"
  if ! $CARGO "+$TOOLCHAIN" fuzz build --fuzz-dir "$FUZZ" -s "$san" --target-dir "$tdir" "$t" \
      >"$FUZZ/out/$t.build.log" 2>&1; then
    cat "$FUZZ/out/$t.build.log" >&2
    echo "building $t failed" >&2
    exit 1
  fi
  before=$(ls "$FUZZ/artifacts/$t" | sort)
  echo "== $t: fuzzing for $SECONDS_EACH s (log: tests/fuzz/out/$t.log)"
  start=$(date +%s)
  # Absolute paths: the cli target works in a scratch directory of its own,
  # which the targets make under TMPDIR (removed after the run).
  rm -rf "$FUZZ/out/tmp" && mkdir -p "$FUZZ/out/tmp"
  TMPDIR=$FUZZ/out/tmp $CARGO "+$TOOLCHAIN" fuzz run --fuzz-dir "$FUZZ" -s "$san" --target-dir "$tdir" "$t" \
    "$FUZZ/corpus/$t" "$FUZZ/seeds/$t" "$FUZZ/regressions/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" \
    -dict="$FUZZ/dict/$t.dict" -timeout=20 -rss_limit_mb=2048 \
    -artifact_prefix="$FUZZ/artifacts/$t/" -print_final_stats=1 \
    >"$FUZZ/out/$t.log" 2>&1
  rc=$?
  rm -rf "$FUZZ/out/tmp"
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$FUZZ/out/$t.log" | tail -1)
  execs=${execs:-0}
  result=ok
  if [ $rc -ne 0 ]; then
    result=FAILED
    failed+=("$t")
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$FUZZ/out/$t.log" | head -20 >&2
    for f in $(comm -13 <(echo "$before") <(ls "$FUZZ/artifacts/$t" | sort)); do
      cp "$FUZZ/artifacts/$t/$f" "$FUZZ/regressions/$t/$f"
      echo "kept as a regression case: tests/fuzz/regressions/$t/$f (add it to git)" >&2
    done
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$took" "$execs" "$result" \
    "$TOOLCHAIN/$san" >>"$FUZZ/out/runs.tsv"
  summary+=("$(printf '%-8s %6s s %12s execs  %s' "$t" "$took" "$execs" "$result")")
  echo "   $t: $execs executions in $took s: $result"
done

echo
echo "== this run (FUZZ_SECONDS=$SECONDS_EACH, $TOOLCHAIN)"
printf '%s\n' "${summary[@]}"
echo "== all runs recorded in tests/fuzz/out/runs.tsv (failed runs included)"
awk -F'\t' '{ s[$2] += $3; e[$2] += $4; n[$2]++; if ($5 != "ok") f[$2]++ }
  END { for (t in s) printf "%-8s %6d s %12d execs in %d runs, %d failed\n", t, s[t], e[t], n[t], f[t] }' \
  "$FUZZ/out/runs.tsv" | sort
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (see tests/fuzz/out/<target>.log; reproduce with" \
    "cargo test --profile ci --test fuzz_regressions)" >&2
  exit 1
fi
