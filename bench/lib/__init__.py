"""What the benchmarks share, written once: private servers (`servers`), a benchmark server
process and its readiness (`server`), CPU accounting and the machine's description (`machine`),
percentiles and report cells (`stats`), and py-spy summaries (`profiling`)."""
