//! The one way claw reads a YAML file: [`read_file`] (size limit, UTF-8, parse) into a spanned
//! tree ([`node`]) whose every value knows its line and column, and a [`Reader`] that gives typed
//! access to it while collecting every problem, so that all of a file's mistakes are reported at
//! once, each where it is.

pub mod node;
mod reader;

pub use node::{Node, Value};
pub use reader::{Reader, Source, io_message, parse, read_file, read_text};
