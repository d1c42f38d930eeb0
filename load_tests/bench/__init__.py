"""`aigc bench`, the load generator `pip install 'aigc-serve[bench]'` ships: cli (the command),
workload (what is sent), runner (closed and open loops), grpc_calls and http_calls (one call per
request on each front end), records (one record per request), summary (the statistics), report
(table, progress line, plots). Nothing here imports the rest of load_tests, which is this
repository's own benchmarks on top of it."""
