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
plot 'loss_curves.dat' index 0 using 1:2 with lines title 'j43f13731945a (distill.features=[], job=b-features, train.seed=1)', \
  '' index 1 using 1:2 with lines title 'j5fe8e750ce66 (distill.features=[], job=b-features, train.seed=2)', \
  '' index 2 using 1:2 with lines title 'j032b860e87f5 (distill.features=[], job=b-features, train.seed=3)', \
  '' index 3 using 1:2 with lines title 'jcf728a516136 (distill.features=[{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}], job=b-features, train.seed=1)', \
  '' index 4 using 1:2 with lines title 'j90ab95dc2263 (distill.features=[{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}], job=b-features, train.seed=2)', \
  '' index 5 using 1:2 with lines title 'je9eda0e477ff (distill.features=[{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}], job=b-features, train.seed=3)', \
  '' index 6 using 1:2 with lines title 'j56ec6eeb7ac2 (distill.features=[{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}], job=b-features, train.seed=1)', \
  '' index 7 using 1:2 with lines title 'j4121d945a6e7 (distill.features=[{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}], job=b-features, train.seed=2)', \
  '' index 8 using 1:2 with lines title 'j18a5ece0b0ad (distill.features=[{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}], job=b-features, train.seed=3)', \
  '' index 9 using 1:2 with lines title 'jba9a886c637d (distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01}], job=b-features, train.seed=1)', \
  '' index 10 using 1:2 with lines title 'jfc5cbfab1b2a (distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01}], job=b-features, train.seed=2)', \
  '' index 11 using 1:2 with lines title 'jee03f1fc9d9e (distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01}], job=b-features, train.seed=3)', \
  '' index 12 using 1:2 with lines title 'j0ca472ad8a81 (distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0}], job=b-features, train.seed=1)', \
  '' index 13 using 1:2 with lines title 'jb8f6d173e9f5 (distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0}], job=b-features, train.seed=2)', \
  '' index 14 using 1:2 with lines title 'jff2a095f8ad0 (distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0}], job=b-features, train.seed=3)', \
  '' index 15 using 1:2 with lines title 'jeef29cd9d2aa (distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01},{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}], job=b-features, train.seed=1)', \
  '' index 16 using 1:2 with lines title 'j2a2ba75fb59e (distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01},{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}], job=b-features, train.seed=2)', \
  '' index 17 using 1:2 with lines title 'ja8b5c4d9fe3e (distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01},{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}], job=b-features, train.seed=3)', \
  '' index 18 using 1:2 with lines title 'j1b4a1a71966a (distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0},{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}], job=b-features, train.seed=1)', \
  '' index 19 using 1:2 with lines title 'jf115703af078 (distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0},{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}], job=b-features, train.seed=2)', \
  '' index 20 using 1:2 with lines title 'j71d64e658845 (distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0},{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}], job=b-features, train.seed=3)', \
  '' index 21 using 1:2 with lines title 'jf309836907be (job=ce-only, train.seed=1)', \
  '' index 22 using 1:2 with lines title 'jc66dece0980a (job=ce-only, train.seed=2)', \
  '' index 23 using 1:2 with lines title 'j246a5ecf5623 (job=ce-only, train.seed=3)'

set output 'eval_loss_vs_job.png'
set title 'eval loss against job (mean, 95% interval)'
set xlabel 'job'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_job.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[]', \
  '' index 1 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}]', \
  '' index 2 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}]', \
  '' index 3 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01}]', \
  '' index 4 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0}]', \
  '' index 5 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01},{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}]', \
  '' index 6 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0},{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}]', \
  '' index 7 using 1:2:3:4:xtic(5) with yerrorlines title 'eval_loss'

set output 'kl_vs_job.png'
set title 'KL to the teacher against job (mean, 95% interval)'
set xlabel 'job'
set ylabel 'KL to the teacher'
set key outside right
unset logscale x
set xtics
plot 'kl_vs_job.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[]', \
  '' index 1 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}]', \
  '' index 2 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}]', \
  '' index 3 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01}]', \
  '' index 4 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0}]', \
  '' index 5 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"mse","student_layer":0,"teacher_layer":2,"weight":0.01},{"loss":"mse","student_layer":1,"teacher_layer":4,"weight":0.01}]', \
  '' index 6 using 1:2:3:4:xtic(5) with yerrorlines title 'distill.features=[{"loss":"cosine","student_layer":0,"teacher_layer":2,"weight":1.0},{"loss":"cosine","student_layer":1,"teacher_layer":4,"weight":1.0}]'

set output 'eval_loss_vs_distill_features.png'
set title 'eval loss against distill.features (mean, 95% interval)'
set xlabel 'distill.features'
set ylabel 'eval loss'
set key outside right
unset logscale x
set xtics
plot 'eval_loss_vs_distill_features.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'job=b-features', \
  '' index 1 using 1:2:3:4 with yerrorlines title 'job=ce-only (no distill.features)'

set output 'kl_vs_distill_features.png'
set title 'KL to the teacher against distill.features (mean, 95% interval)'
set xlabel 'distill.features'
set ylabel 'KL to the teacher'
set key outside right
unset logscale x
set xtics
plot 'kl_vs_distill_features.dat' index 0 using 1:2:3:4:xtic(5) with yerrorlines title 'job=b-features'
