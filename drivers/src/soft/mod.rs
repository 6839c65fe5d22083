//! Software engine (in progress).
