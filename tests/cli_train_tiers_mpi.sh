#!/bin/sh
# `ember train` with precision tiers under mpirun (2 ranks, each rank's shard cached and
# tiered by its own counts of the rows it holds) against one process tiered the same way
# (tier-hot 0.05, tier-warm 0.2, ranked by the warmup counts). Both reports must show the
# tiers line with rows in all three tiers and a store smaller than f32, and the held-out
# AUCs must agree within 0.003: the runs differ by reduction order (0.002 untiered, see
# cli_train_mpi.sh) and by rounding, which each rank seeds on its own (seed ^ rank) over
# its own split of the rows (observed: within 0.0004 for every plan).
# usage: cli_train_tiers_mpi.sh EMBER MPIEXEC CONFIG DATA_DIR COUNTS [extra train args...]
set -u
ember=$1 mpiexec=$2 conf=$3 data=$4 counts=$5
shift 5
tiers="--warmup $counts --tier-hot 0.05 --tier-warm 0.2"
one=$("$ember" train --config "$conf" --data-dir "$data" --quiet --threads 1 $tiers "$@" 2>&1) || {
    echo "one process failed:"; echo "$one"; exit 1; }
two=$("$mpiexec" --allow-run-as-root --oversubscribe -n 2 "$ember" train --config "$conf" --data-dir "$data" \
      --quiet --threads 1 $tiers "$@" 2>&1) || { echo "mpiexec -n 2 failed:"; echo "$two"; exit 1; }
auc1=$(printf '%s\n' "$one" | sed -n 's/.*held-out rows: AUC \([0-9.]*\).*/\1/p')
auc2=$(printf '%s\n' "$two" | sed -n 's/.*held-out rows: AUC \([0-9.]*\).*/\1/p')
ranks=$(printf '%s\n' "$two" | grep -c 'ranks        2')
# "  tiers        host store 1.2 MB vs 2.2 MB as f32 (53.3%): 1709 hot (f32), 6760 warm (f16), 25304 cold ..."
tiers_re='.*tiers  *host store .* as f32 (\([0-9.]*\)%): \([0-9]*\) hot .*, \([0-9]*\) warm .*, \([0-9]*\) cold .*'
t1=$(printf '%s\n' "$one" | sed -n "s/$tiers_re/\1 \2 \3 \4/p")
t2=$(printf '%s\n' "$two" | sed -n "s/$tiers_re/\1 \2 \3 \4/p")
echo "one process: AUC $auc1, tiers (percent of f32, hot, warm, cold rows): $t1"
echo "2 ranks:     AUC $auc2, tiers summed over the ranks: $t2 (report lines from rank 0 only: $ranks)"
if [ -z "$auc1" ] || [ -z "$auc2" ] || [ "$ranks" != 1 ] || [ -z "$t1" ] || [ -z "$t2" ]; then
    echo "missing AUC, tiers or report lines"; echo "$one"; echo "$two"; exit 1
fi
for t in "$t1" "$t2"; do
    echo "$t" | awk '{ if ($1 > 0 && $1 < 100 && $2 > 0 && $3 > 0 && $4 > 0) exit 0; exit 1 }' || {
        echo "FAIL tiers: $t (want a store below 100% of f32 and rows in every tier)"; exit 1; }
done
awk -v a="$auc1" -v b="$auc2" 'BEGIN { d = a - b; if (d < 0) d = -d; if (d <= 0.003) { print "PASS |diff| " d; exit 0 } print "FAIL |diff| " d " > 0.003"; exit 1 }'
