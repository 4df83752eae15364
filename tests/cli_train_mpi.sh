#!/bin/sh
# `ember train` under mpirun (2 ranks: tables sharded, dense layers data parallel) against
# one process on the same config and data: the held-out AUCs must agree within 0.002
# (the runs differ only by reduction order; observed: equal to the 4 digits printed).
# usage: cli_train_mpi.sh EMBER MPIEXEC CONFIG DATA_DIR [extra train args...]
set -u
ember=$1 mpiexec=$2 conf=$3 data=$4
shift 4
one=$("$ember" train --config "$conf" --data-dir "$data" --quiet --threads 1 "$@" 2>&1) || {
    echo "one process failed:"; echo "$one"; exit 1; }
two=$("$mpiexec" --allow-run-as-root --oversubscribe -n 2 "$ember" train --config "$conf" --data-dir "$data" \
      --quiet --threads 1 "$@" 2>&1) || { echo "mpiexec -n 2 failed:"; echo "$two"; exit 1; }
auc1=$(printf '%s\n' "$one" | sed -n 's/.*held-out rows: AUC \([0-9.]*\).*/\1/p')
auc2=$(printf '%s\n' "$two" | sed -n 's/.*held-out rows: AUC \([0-9.]*\).*/\1/p')
ranks=$(printf '%s\n' "$two" | grep -c 'ranks        2')
echo "one process: AUC $auc1"
echo "2 ranks:     AUC $auc2 (report lines from rank 0 only: $ranks)"
if [ -z "$auc1" ] || [ -z "$auc2" ] || [ "$ranks" != 1 ]; then
    echo "missing AUC or report lines"; echo "$one"; echo "$two"; exit 1
fi
awk -v a="$auc1" -v b="$auc2" 'BEGIN { d = a - b; if (d < 0) d = -d; if (d <= 0.002) { print "PASS |diff| " d; exit 0 } print "FAIL |diff| " d " > 0.002"; exit 1 }'
