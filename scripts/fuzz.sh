#!/usr/bin/env bash
# The long fuzz runs of docs/reliability.md ("Fuzzing: one million executions
# per harness"): each atheris harness of tests/fuzz, one after another, for
# RUNS executions (default 1,000,000), from its real seeds.
#
#   scripts/fuzz.sh OUT_DIR [TARGET...]
#
# TARGETs (default: all, in this order): kmsg iomem ring pstore ramoops setup
# oops.  Per target, OUT_DIR/TARGET/ gets corpus/ (the seeds, then what
# libFuzzer added), art/ (crash-*, timeout-*, oom-* reproducers: none is
# expected; each one found becomes a test), out.txt and err.txt (libFuzzer's
# log with its final stats, then /usr/bin/time -v's peak RSS and wall time).
# Every execution is bounded: -timeout=10 s, -rss_limit_mb=2048.  Exits non-zero
# when a target left an artifact or libFuzzer failed.
#
# Runs niced (NICE, default 15) with the repository's .venv (scripts/bootstrap.sh
# makes it, atheris included).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ $# -ge 1 ] || { echo "usage: scripts/fuzz.sh OUT_DIR [TARGET...]" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd)
shift
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(kmsg iomem ring pstore ramoops setup oops)
RUNS=${RUNS:-1000000}
NICE=${NICE:-15}
PY=${MEMCONSOLE_PYTHON:-$ROOT/.venv/bin/python}
T=$ROOT/tests/fuzz
export PYTHONPATH=$ROOT/src
"$PY" -c "import atheris" 2>/dev/null || { echo "fuzz: atheris is not installed in $PY" >&2; exit 2; }
TIME=()
[ -x /usr/bin/time ] && TIME=(/usr/bin/time -v)
OPTS=(-runs="$RUNS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
status=0

run() {  # NAME HARNESS-ARGS...
    local name=$1; shift
    local dir=$OUT/$name
    mkdir -p "$dir/corpus" "$dir/art"
    echo "fuzz: $(date -u +%FT%TZ) $name: start ($RUNS runs, commit $(git rev-parse --short HEAD))"
    (cd "$dir" && "${TIME[@]}" nice -n "$NICE" "$PY" "$@" "${OPTS[@]}" \
        -artifact_prefix="$dir/art/" >"$dir/out.txt" 2>"$dir/err.txt")
    local rc=$?
    local found
    found=$(find "$dir/art" -type f | wc -l)
    echo "fuzz: $(date -u +%FT%TZ) $name: exit $rc, $found artifact(s); $(grep -h '^Done' "$dir/err.txt")"
    if [ "$rc" -ne 0 ] || [ "$found" -ne 0 ]; then status=1; fi
}

for t in "${TARGETS[@]}"; do
    case $t in
        oops) run oops "$T/test_fuzz_oops.py" -max_len=8192 "$OUT/oops/corpus" ;;
        kmsg|iomem|ring) run "$t" "$T/test_fuzz_ring.py" "$t" -max_len=16385 "$OUT/$t/corpus" ;;
        pstore|setup)
            mkdir -p "$OUT/$t/corpus"
            "$PY" "$T/test_fuzz_$t.py" -seed_corpus "$OUT/$t/corpus"
            run "$t" "$T/test_fuzz_$t.py" "$OUT/$t/corpus" ;;
        ramoops) run ramoops "$T/test_fuzz_ramoops.py" "$OUT/ramoops/corpus" ;;
        *) echo "fuzz: unknown target $t (kmsg iomem ring pstore ramoops setup oops)" >&2; exit 2 ;;
    esac
done
exit $status
