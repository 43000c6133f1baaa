//! Compression methods (one module per method behind one trait).
