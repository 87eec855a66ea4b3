//! The experiment side of the language: the recorded model ([`model`]),
//! the API calls that build it ([`api`]) and the constraints they carry
//! ([`constraint`]). [`check`](crate::check) lowers the model to XIR.

mod api;
mod constraint;
mod model;

pub use model::*;
