#!/usr/bin/env bash
# Instructions per purchase of each sale of one flash_sale invocation, counted by callgrind:
# deterministic where CPU time is not (a shared 2-core machine runs the same binary at two
# speeds). Collection is switched on only inside each sale's measured window (the buyers, until
# the system settled), which flash_sale marks on stderr with --mark-sales.
#
#   cargo build --release --example flash_sale
#   examples/flash_sale/callgrind.sh --backend memory --seats 5000 --sections 1 --prefill 1000000 --runs 1
#
# Prints one line per sale: its instructions, its purchases, and instructions per purchase.
set -euo pipefail
binary=${FLASH_SALE:-target/release/examples/flash_sale}
out=$(mktemp -d)
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out" \
  "$binary" --mark-sales 3 "$@" > "$out/stdout" 2> "$out/stderr" &
pid=$!
marks=0
while kill -0 "$pid" 2> /dev/null; do
  seen=$(grep -c '^flash_sale: sale ' "$out/stderr" || true)
  while [ "$marks" -lt "$seen" ]; do
    marks=$((marks + 1))
    if [ $((marks % 2)) -eq 1 ]; then
      callgrind_control -z "$pid" > /dev/null 2>&1
      callgrind_control -i on "$pid" > /dev/null 2>&1
    else
      callgrind_control -d "$pid" > /dev/null 2>&1
      callgrind_control -i off "$pid" > /dev/null 2>&1
    fi
  done
  sleep 0.2
done
wait "$pid"
grep -E '^(filled|the store alone)' "$out/stdout" || true
mapfile -t purchases < <(grep -oP '^wall .*; purchases \K[0-9]+' "$out/stdout")
sale=0
for dump in $(ls "$out"/callgrind.out.* | sort -t. -k3 -n); do
  instructions=$(grep -oP '^totals: \K[0-9]+' "$dump")
  bought=${purchases[$sale]}
  echo "sale $((sale + 1)): $instructions instructions, $bought purchases, $((instructions / bought)) per purchase"
  sale=$((sale + 1))
done
rm -rf "$out"
