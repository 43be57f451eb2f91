# distillctl report: run `gnuplot plots.gp` in this directory.
set terminal pngcairo noenhanced size 960,600
set grid
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05

set output 'loss_curves.png'
set title 'training loss'
set xlabel 'step'
set ylabel 'loss'
set key below
unset logscale x
set xtics
plot 'loss_curves.dat' index 0 using 1:2 with lines title 'jb3a438c49019 (job=c-lora, lora.rank=8, train.seed=1)', \
  '' index 1 using 1:2 with lines title 'jc0e0c9ba2d7d (job=c-lora, lora.rank=8, train.seed=2)', \
  '' index 2 using 1:2 with lines title 'jc86834386531 (job=c-lora, lora.rank=8, train.seed=3)', \
  '' index 3 using 1:2 with lines title 'j9cfc1e9e5c44 (job=c-lora, lora.rank=32, train.seed=1)', \
  '' index 4 using 1:2 with lines title 'jbd399f42eadf (job=c-lora, lora.rank=32, train.seed=2)', \
  '' index 5 using 1:2 with lines title 'jbc8feed757b1 (job=c-lora, lora.rank=32, train.seed=3)', \
  '' index 6 using 1:2 with lines title 'j79fbd14aa854 (job=c-full, train.seed=1)', \
  '' index 7 using 1:2 with lines title 'j98e0ac77af26 (job=c-full, train.seed=2)', \
  '' index 8 using 1:2 with lines title 'ja57f1d02298e (job=c-full, train.seed=3)'

set output 'eval_loss_vs_job.png'
set title 'eval loss against job (mean, 95% interval)'
set xlabel 'job'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_job.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'lora.rank=8', \
  '' index 1 using 1:2:3:4:xtic(5) with yerrorlines title 'lora.rank=32', \
  '' index 2 using 1:2:3:4:xtic(5) with yerrorlines title 'eval_loss'

set output 'eval_loss_vs_lora_rank.png'
set title 'eval loss against lora.rank (mean, 95% interval)'
set xlabel 'lora.rank'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_lora_rank.dat' index 0 using 1:2:3:4 with yerrorlines title 'job=c-lora', \
  '' index 1 using 1:2:3:4 with yerrorlines title 'job=c-full (no lora.rank)'
