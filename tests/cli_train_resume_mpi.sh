#!/bin/sh
# Checkpoints per rank, resumed at other world sizes (ember/train.h "Checkpoints"):
#   full   4 ranks train STOP steps uninterrupted;
#   part   4 ranks train HALF steps and checkpoint: every rank writes its rows
#          (tableTT.rankRRRR.safetensors), rank 0 the MANIFEST (world = 4, the plan, the
#          rank files) and plan.bin;
#   then that checkpoint resumed to STOP on 4 ranks (the same plan: every training-loss
#   line the same as the full run's, character for character), on 2 ranks and in one
#   process (the rows re-sharded on load: held-out AUC and logloss within 0.002 of the
#   full run's, the N-rank tolerance of cli_train_mpi.sh, and every training-loss line
#   (6 digits) within 0.002: the runs differ only by reduction order; observed: equal);
#   a one-process checkpoint (whole tables) resumed on 2 ranks, the same way;
#   and with one rank file removed, a resume that fails naming the file.
# Each rank's shard is cached (train_small.conf's cache-ratio 1.5%, LFU, host store).
# Extra arguments go to every run (ctest: --plan rowwise, --plan columnwise; table-wise
# without counts would put every table on rank 0 and re-shard nothing).
# usage: cli_train_resume_mpi.sh EMBER MPIEXEC CONFIG DATA_DIR WORK_DIR [extra train args...]
set -u
ember=$1 mpiexec=$2 conf=$3 data=$4 work=$5
shift 5
HALF=20 STOP=40
rm -rf "$work" && mkdir -p "$work" || exit 1
run() { # run NP DIR METRICS extra...
    np=$1 dir=$2 met=$3
    shift 3
    if [ "$np" = 1 ]; then
        "$ember" train --config "$conf" --data-dir "$data" --quiet --threads 1 --checkpoint-dir "$dir" \
            --metrics "$met" --metrics-every 10 "$@" 2>&1
    else
        "$mpiexec" --allow-run-as-root --oversubscribe -n "$np" "$ember" train --config "$conf" --data-dir "$data" \
            --quiet --threads 1 --checkpoint-dir "$dir" --metrics "$met" --metrics-every 10 "$@" 2>&1
    fi
}
field() { printf '%s\n' "$1" | sed -n "s/.*held-out rows: AUC \([0-9.]*\).*logloss \([0-9.]*\).*/\\$2/p"; }
fail() { echo "FAIL: $*"; exit 1; }

full=$(run 4 "$work/full" "$work/full.jsonl" --max-steps $STOP "$@") || fail "4 ranks, $STOP steps: $full"
part=$(run 4 "$work/part" "$work/part.jsonl" --max-steps $HALF "$@") || fail "4 ranks, $HALF steps: $part"
ck="$work/part/ckpt-$HALF"
for f in MANIFEST plan.bin model.safetensors train.conf table00.rank0000.safetensors table25.rank0003.safetensors; do
    [ -f "$ck/$f" ] || fail "$ck/$f missing"
done
[ ! -e "$ck/table00.safetensors" ] || fail "$ck holds a gathered table file"
grep -q '^embeddings = shards$' "$ck/MANIFEST" && grep -q '^world = 4$' "$ck/MANIFEST" &&
    grep -q '^plan = ' "$ck/MANIFEST" && grep -q '^shard-files = table00.rank0000.safetensors .. table25.rank0003' \
    "$ck/MANIFEST" || { cat "$ck/MANIFEST"; fail "MANIFEST lacks the world, plan or rank files"; }
for np in 4 2 1 missing; do
    cp -r "$work/part" "$work/resume-$np" && cp "$work/part.jsonl" "$work/resume-$np.jsonl" || exit 1
done
rm "$work/resume-missing/ckpt-$HALF/table05.rank0002.safetensors"
out4=$(run 4 "$work/resume-4" "$work/resume-4.jsonl" --max-steps $STOP --resume "$@") || fail "resume on 4: $out4"
out2=$(run 2 "$work/resume-2" "$work/resume-2.jsonl" --max-steps $STOP --resume "$@") || fail "resume on 2: $out2"
out1=$(run 1 "$work/resume-1" "$work/resume-1.jsonl" --max-steps $STOP --resume "$@") || fail "resume in 1: $out1"
miss=$(run 2 "$work/resume-missing" "$work/resume-missing.jsonl" --max-steps $STOP --resume "$@") &&
    fail "resume without a rank file succeeded: $miss"
printf '%s\n' "$miss" | grep -q "table05.rank0002.safetensors is missing" || fail "not named: $miss"
echo "missing rank file: $(printf '%s\n' "$miss" | grep -m1 'is missing')"
# a one-process checkpoint (whole tables, tableTT.safetensors) resumed on 2 ranks
one=$(run 1 "$work/one" "$work/one.jsonl" --max-steps $HALF "$@") || fail "1 process, $HALF steps: $one"
[ -f "$work/one/ckpt-$HALF/table00.safetensors" ] && grep -q '^embeddings = safetensors$' "$work/one/ckpt-$HALF/MANIFEST" ||
    fail "one process: no whole-table checkpoint"
cp "$work/one.jsonl" "$work/resume-one.jsonl" && cp -r "$work/one" "$work/resume-one" || exit 1
outo=$(run 2 "$work/resume-one" "$work/resume-one.jsonl" --max-steps $STOP --resume "$@") || fail "1 -> 2: $outo"
for out in "$out4" "$out2" "$out1" "$outo"; do
    printf '%s\n' "$out" | grep -q "resumed *from step $HALF" || fail "did not resume: $out"
done
# the training-loss lines of steps HALF+1 .. STOP
losses() { grep '"loss"' "$1" | sed -n 's/.*"step":\([0-9]*\),.*"loss":\([0-9.]*\).*/\1 \2/p' | awk -v h=$HALF '$1 > h'; }
losses "$work/full.jsonl" > "$work/full.loss"
[ -s "$work/full.loss" ] || fail "no loss lines in $work/full.jsonl"
losses "$work/resume-4.jsonl" | cmp -s - "$work/full.loss" || {
    cat "$work/full.loss"; losses "$work/resume-4.jsonl"; fail "4 ranks resumed on 4: loss lines differ"; }
echo "4 ranks -> resumed on 4: every training-loss line the same"
status=0
for np in 2 1 one; do
    if [ $np = one ]; then out=$outo; else eval out=\$out$np; fi
    a=$(field "$full" 1) b=$(field "$out" 1) la=$(field "$full" 2) lb=$(field "$out" 2)
    [ -n "$a" ] && [ -n "$b" ] || fail "no AUC: $full $out"
    losses "$work/resume-$np.jsonl" > "$work/resume-$np.loss"
    [ "$(wc -l < "$work/resume-$np.loss")" = "$(wc -l < "$work/full.loss")" ] || fail "loss lines of $np: $(cat "$work/resume-$np.loss")"
    worst=$(paste "$work/full.loss" "$work/resume-$np.loss" |
            awk '{ d = $2 - $4; if (d < 0) d = -d; if (d > w) w = d } END { printf "%.2g", w + 0 }')
    what="4 ranks -> resumed on $np"
    [ $np = one ] && what="1 process -> resumed on 2"
    echo "$what: AUC $a vs $b, logloss $la vs $lb, worst training-loss line |diff| $worst"
    awk -v a="$a" -v b="$b" -v la="$la" -v lb="$lb" -v w="$worst" 'BEGIN {
        d = a - b; if (d < 0) d = -d; e = la - lb; if (e < 0) e = -e
        exit !(d <= 0.002 && e <= 0.002 && w <= 0.002) }' || status=1
done
[ $status = 0 ] && echo "PASS" || echo "FAIL"
exit $status
