//! Wire contract between coordinator, workers and clients (built in the distributed-sweeps work).
