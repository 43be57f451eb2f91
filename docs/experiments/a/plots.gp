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
plot 'loss_curves.dat' index 0 using 1:2 with lines title 'je2f8af785b01 (distill.alpha=0.1, distill.temperature=1, job=a-temperature, train.seed=1)', \
  '' index 1 using 1:2 with lines title 'j05e6b4d00d1e (distill.alpha=0.1, distill.temperature=1, job=a-temperature, train.seed=2)', \
  '' index 2 using 1:2 with lines title 'j8855bf99e5b0 (distill.alpha=0.1, distill.temperature=1, job=a-temperature, train.seed=3)', \
  '' index 3 using 1:2 with lines title 'jc684d43a3e12 (distill.alpha=0.5, distill.temperature=1, job=a-temperature, train.seed=1)', \
  '' index 4 using 1:2 with lines title 'jb1d5c71c1614 (distill.alpha=0.5, distill.temperature=1, job=a-temperature, train.seed=2)', \
  '' index 5 using 1:2 with lines title 'jcd05c79cb03d (distill.alpha=0.5, distill.temperature=1, job=a-temperature, train.seed=3)', \
  '' index 6 using 1:2 with lines title 'ja4f3007fbbe1 (distill.alpha=0.9, distill.temperature=1, job=a-temperature, train.seed=1)', \
  '' index 7 using 1:2 with lines title 'j297c70378ebd (distill.alpha=0.9, distill.temperature=1, job=a-temperature, train.seed=2)', \
  '' index 8 using 1:2 with lines title 'j55bb6cdbdb3a (distill.alpha=0.9, distill.temperature=1, job=a-temperature, train.seed=3)', \
  '' index 9 using 1:2 with lines title 'j33956273d93e (distill.alpha=0.1, distill.temperature=2, job=a-temperature, train.seed=1)', \
  '' index 10 using 1:2 with lines title 'j314320330c91 (distill.alpha=0.1, distill.temperature=2, job=a-temperature, train.seed=2)', \
  '' index 11 using 1:2 with lines title 'j90e509a487c2 (distill.alpha=0.1, distill.temperature=2, job=a-temperature, train.seed=3)', \
  '' index 12 using 1:2 with lines title 'j9fac5911c89b (distill.alpha=0.5, distill.temperature=2, job=a-temperature, train.seed=1)', \
  '' index 13 using 1:2 with lines title 'j8f0ab2272f42 (distill.alpha=0.5, distill.temperature=2, job=a-temperature, train.seed=2)', \
  '' index 14 using 1:2 with lines title 'j9d19472b52dc (distill.alpha=0.5, distill.temperature=2, job=a-temperature, train.seed=3)', \
  '' index 15 using 1:2 with lines title 'jbba28216a966 (distill.alpha=0.9, distill.temperature=2, job=a-temperature, train.seed=1)', \
  '' index 16 using 1:2 with lines title 'j761b199c35fd (distill.alpha=0.9, distill.temperature=2, job=a-temperature, train.seed=2)', \
  '' index 17 using 1:2 with lines title 'j9aa7eec2e0d8 (distill.alpha=0.9, distill.temperature=2, job=a-temperature, train.seed=3)', \
  '' index 18 using 1:2 with lines title 'jc18dbdd448c0 (distill.alpha=0.1, distill.temperature=4, job=a-temperature, train.seed=1)', \
  '' index 19 using 1:2 with lines title 'j0cf527d0b739 (distill.alpha=0.1, distill.temperature=4, job=a-temperature, train.seed=2)', \
  '' index 20 using 1:2 with lines title 'j916681da66a0 (distill.alpha=0.1, distill.temperature=4, job=a-temperature, train.seed=3)', \
  '' index 21 using 1:2 with lines title 'je4da0f5c38b9 (distill.alpha=0.5, distill.temperature=4, job=a-temperature, train.seed=1)', \
  '' index 22 using 1:2 with lines title 'jf6c229d44100 (distill.alpha=0.5, distill.temperature=4, job=a-temperature, train.seed=2)', \
  '' index 23 using 1:2 with lines title 'jbb23efe4fa2d (distill.alpha=0.5, distill.temperature=4, job=a-temperature, train.seed=3)', \
  '' index 24 using 1:2 with lines title 'jec7ff3784f05 (distill.alpha=0.9, distill.temperature=4, job=a-temperature, train.seed=1)', \
  '' index 25 using 1:2 with lines title 'jef8c53414c00 (distill.alpha=0.9, distill.temperature=4, job=a-temperature, train.seed=2)', \
  '' index 26 using 1:2 with lines title 'jd32529182329 (distill.alpha=0.9, distill.temperature=4, job=a-temperature, train.seed=3)', \
  '' index 27 using 1:2 with lines title 'jf9a1db0f0a23 (distill.alpha=0.1, distill.temperature=8, job=a-temperature, train.seed=1)', \
  '' index 28 using 1:2 with lines title 'jaf0ec675680b (distill.alpha=0.1, distill.temperature=8, job=a-temperature, train.seed=2)', \
  '' index 29 using 1:2 with lines title 'j8f1c54dd4775 (distill.alpha=0.1, distill.temperature=8, job=a-temperature, train.seed=3)', \
  '' index 30 using 1:2 with lines title 'j399f034f02b3 (distill.alpha=0.5, distill.temperature=8, job=a-temperature, train.seed=1)', \
  '' index 31 using 1:2 with lines title 'jb6e177c12ff5 (distill.alpha=0.5, distill.temperature=8, job=a-temperature, train.seed=2)', \
  '' index 32 using 1:2 with lines title 'jea1a8a728466 (distill.alpha=0.5, distill.temperature=8, job=a-temperature, train.seed=3)', \
  '' index 33 using 1:2 with lines title 'jfc62989ea515 (distill.alpha=0.9, distill.temperature=8, job=a-temperature, train.seed=1)', \
  '' index 34 using 1:2 with lines title 'j0e723ea72b6d (distill.alpha=0.9, distill.temperature=8, job=a-temperature, train.seed=2)', \
  '' index 35 using 1:2 with lines title 'jeebf175a1446 (distill.alpha=0.9, distill.temperature=8, job=a-temperature, train.seed=3)', \
  '' index 36 using 1:2 with lines title 'jf309836907be (job=ce-only, train.seed=1)', \
  '' index 37 using 1:2 with lines title 'jc66dece0980a (job=ce-only, train.seed=2)', \
  '' index 38 using 1:2 with lines title 'j246a5ecf5623 (job=ce-only, train.seed=3)'

set output 'eval_loss_vs_job.png'
set title 'eval loss against job (mean, 95% interval)'
set xlabel 'job'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_job.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=1, distill.alpha=0.1', \
  '' index 1 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=1, distill.alpha=0.5', \
  '' index 2 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=1, distill.alpha=0.9', \
  '' index 3 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=2, distill.alpha=0.1', \
  '' index 4 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=2, distill.alpha=0.5', \
  '' index 5 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=2, distill.alpha=0.9', \
  '' index 6 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=4, distill.alpha=0.1', \
  '' index 7 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=4, distill.alpha=0.5', \
  '' index 8 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=4, distill.alpha=0.9', \
  '' index 9 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=8, distill.alpha=0.1', \
  '' index 10 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=8, distill.alpha=0.5', \
  '' index 11 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=8, distill.alpha=0.9', \
  '' index 12 using 1:2:3:4:xtic(5) with yerrorlines title 'eval_loss'

set output 'kl_vs_job.png'
set title 'KL to the teacher against job (mean, 95% interval)'
set xlabel 'job'
set ylabel 'KL to the teacher'
set key outside right
unset logscale x
set xtics
plot 'kl_vs_job.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=1, distill.alpha=0.1', \
  '' index 1 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=1, distill.alpha=0.5', \
  '' index 2 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=1, distill.alpha=0.9', \
  '' index 3 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=2, distill.alpha=0.1', \
  '' index 4 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=2, distill.alpha=0.5', \
  '' index 5 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=2, distill.alpha=0.9', \
  '' index 6 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=4, distill.alpha=0.1', \
  '' index 7 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=4, distill.alpha=0.5', \
  '' index 8 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=4, distill.alpha=0.9', \
  '' index 9 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=8, distill.alpha=0.1', \
  '' index 10 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=8, distill.alpha=0.5', \
  '' index 11 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.temperature=8, distill.alpha=0.9'

set output 'eval_loss_vs_distill_temperature.png'
set title 'eval loss against distill.temperature (mean, 95% interval)'
set xlabel 'distill.temperature'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_distill_temperature.dat' index 0 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.alpha=0.1', \
  '' index 1 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.alpha=0.5', \
  '' index 2 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.alpha=0.9', \
  '' index 3 using 1:2:3:4 with yerrorlines title 'job=ce-only (no distill.temperature)'

set output 'kl_vs_distill_temperature.png'
set title 'KL to the teacher against distill.temperature (mean, 95% interval)'
set xlabel 'distill.temperature'
set ylabel 'KL to the teacher'
set key outside right
unset logscale x
set xtics
plot 'kl_vs_distill_temperature.dat' index 0 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.alpha=0.1', \
  '' index 1 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.alpha=0.5', \
  '' index 2 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.alpha=0.9'

set output 'eval_loss_vs_distill_alpha.png'
set title 'eval loss against distill.alpha (mean, 95% interval)'
set xlabel 'distill.alpha'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_distill_alpha.dat' index 0 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=1', \
  '' index 1 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=2', \
  '' index 2 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=4', \
  '' index 3 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=8', \
  '' index 4 using 1:2:3:4 with yerrorlines title 'job=ce-only (no distill.alpha)'

set output 'kl_vs_distill_alpha.png'
set title 'KL to the teacher against distill.alpha (mean, 95% interval)'
set xlabel 'distill.alpha'
set ylabel 'KL to the teacher'
set key outside right
unset logscale x
set xtics
plot 'kl_vs_distill_alpha.dat' index 0 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=1', \
  '' index 1 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=2', \
  '' index 2 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=4', \
  '' index 3 using 1:2:3:4 with yerrorlines title 'job=a-temperature, distill.temperature=8'
