//! Worker: pulls work units and runs them on the engine.
