# Hit rate and training throughput of `ember bench cache` against the device cache's
# size, over the host store and over LMDB, with ember's resident run and the PyTorch
# peer (resident nn.EmbeddingBag) as flat lines. Data: bench/plots/cache.dat, written
# by bench/plot-cache. Render: gnuplot bench/plots/cache.gp (from the repository root).
set terminal pngcairo size 1000,620 font "DejaVu Sans,11"
set output "bench/plots/cache.png"
set title "ember cache: Criteo-Kaggle tables (33.8M rows, dim 16, Adagrad), batch 16384, look-ahead 1"
set logscale x
set xrange [0.4:130]
set xtics ("0.5%%" 0.5, "1.5%%" 1.5, "5%%" 5, "100%%" 100)
set xlabel "device cache size (share of every table's rows)"
set ylabel "training throughput (M looked-up rows/s)"
set y2label "hit rate (share of lookups)"
set ytics nomirror
set y2tics
set y2range [0:1]
set yrange [0:*]
set key outside right center box
set grid xtics ytics
stats "bench/plots/cache.dat" using 6 name "RES" nooutput
stats "bench/plots/cache.dat" using 7 name "PEER" nooutput
plot "bench/plots/cache.dat" using 1:($2/1e6) with linespoints lw 2 pt 7 title "ember, host store", \
     "" using 1:($4/1e6) with linespoints lw 2 pt 5 title "ember, LMDB store", \
     RES_mean/1e6 with lines dt 2 lw 2 title "ember resident", \
     PEER_mean/1e6 with lines dt 3 lw 2 title "PyTorch resident", \
     "" using 1:3 axes x1y2 with linespoints dt 4 pt 6 title "hit rate, host", \
     "" using 1:5 axes x1y2 with linespoints dt 4 pt 4 title "hit rate, LMDB"
