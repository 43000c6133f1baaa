//! compsafe-engine: everything that touches a tensor.
