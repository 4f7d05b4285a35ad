//! Tensor storage formats: encode, decode and reference dot products.
