//! Coordinator: scheduling, leases and durable sweep state.
