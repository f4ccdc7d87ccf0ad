"""bench/harness: the pieces of bench/run (see bench/run --help).

procs    processes this run starts: spawn pinned, sample CPU and RSS, stop only our own
servers  ringhttp and its peers: config files in the run's temp dir, command lines
load     wrk and curl: run, parse, check that answers are 200 with the right body
scenarios  what each scenario measures and how
report   medians and spreads, the Markdown tables, the CSV files, the gnuplot chart
cli      options, the round-robin schedule, progress, microbenchmarks
"""
