set terminal pngcairo noenhanced size 960,540
set output 'teacher_curve.png'
set grid
set xlabel 'step'
set ylabel 'loss (nats/token)'
set title 'Brown BPE teacher (320x5, 7.51M): train loss and val loss'
set arrow from 1000, graph 0 to 1000, graph 1 nohead dt 2
plot 'teacher_curve.dat' index 0 using 1:2 with lines title 'train loss', '' index 1 using 1:2 with linespoints title 'val loss'
