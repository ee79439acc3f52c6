//! security (to be written)
