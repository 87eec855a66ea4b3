//! The facility side of the language: operators describe their testbed in
//! the same language. The recorded facility and its lowering to XIR are in
//! [`model`], the API calls that build it in [`api`].

mod api;
mod model;

pub use model::*;
