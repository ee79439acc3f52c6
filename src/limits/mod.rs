//! limits (to be written)
