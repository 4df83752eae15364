#!/bin/sh
# Cached shards over LMDB stores on 2 ranks (ember/train.h "Under mpirun"): each rank's
# store in lmdb/rankRRRR; a checkpoint commits every rank's store after rank 0's MANIFEST
# (world = 2, embeddings = lmdb); the run resumed from it on 2 ranks ends with every
# training-loss line and the held-out AUC the same as an uninterrupted run's (the same
# plan and ranks: the same arithmetic), and a resume in one process is refused by name
# (the stores hold local rows of the 2-rank plan).
# usage: cli_train_lmdb_mpi.sh EMBER MPIEXEC CONFIG DATA_DIR WORK_DIR [extra train args...]
set -u
ember=$1 mpiexec=$2 conf=$3 data=$4 work=$5
shift 5
HALF=20 STOP=40
rm -rf "$work" && mkdir -p "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
two() { # two STORE CKPT METRICS extra...
    st=$1 ck=$2 met=$3
    shift 3
    "$mpiexec" --allow-run-as-root --oversubscribe -n 2 "$ember" train --config "$conf" --data-dir "$data" --quiet \
        --threads 1 --lmdb "$st" --checkpoint-dir "$ck" --metrics "$met" --metrics-every 10 "$@" 2>&1
}
full=$(two "$work/full-store" "$work/full" "$work/full.jsonl" --max-steps $STOP "$@") || fail "uninterrupted: $full"
part=$(two "$work/store" "$work/ck" "$work/run.jsonl" --max-steps $HALF "$@") || fail "$HALF steps: $part"
for r in rank0000 rank0001; do [ -f "$work/store/$r/data.mdb" ] || fail "no store $work/store/$r"; done
grep -q '^embeddings = lmdb$' "$work/ck/ckpt-$HALF/MANIFEST" && grep -q '^world = 2$' "$work/ck/ckpt-$HALF/MANIFEST" ||
    fail "MANIFEST: $(cat "$work/ck/ckpt-$HALF/MANIFEST")"
one=$("$ember" train --config "$conf" --data-dir "$data" --quiet --threads 1 --lmdb "$work/store" \
      --checkpoint-dir "$work/ck" --max-steps $STOP --resume "$@" 2>&1) && fail "one process resumed: $one"
printf '%s\n' "$one" | grep -q "it resumes on 2 ranks only" || fail "not named: $one"
echo "one process: $(printf '%s\n' "$one" | grep -m1 'resumes on')"
res=$(two "$work/store" "$work/ck" "$work/run.jsonl" --max-steps $STOP --resume "$@") || fail "resume: $res"
printf '%s\n' "$res" | grep -q "resumed *from step $HALF" || fail "did not resume: $res"
losses() { grep '"loss"' "$1" | sed -n 's/.*"step":\([0-9]*\),.*"loss":\([0-9.]*\).*/\1 \2/p'; }
a=$(losses "$work/full.jsonl") b=$(losses "$work/run.jsonl")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "loss lines differ: $a / $b"
auc() { printf '%s\n' "$1" | sed -n 's/.*held-out rows: AUC \([0-9.]*\).*/\1/p'; }
[ -n "$(auc "$full")" ] && [ "$(auc "$full")" = "$(auc "$res")" ] || fail "AUC $(auc "$full") vs $(auc "$res")"
echo "2 ranks over LMDB, resumed at step $HALF: every training-loss line and the AUC $(auc "$res") the same"
echo PASS
