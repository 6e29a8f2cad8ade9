//! `mergec methods`: the stdlib methods, and the builtin reference card.

use crate::card::{builtins_text, methods_text};

pub fn run(builtins: bool) -> i32 {
    if builtins {
        print!("{}", builtins_text());
    } else {
        print!("{}", methods_text());
    }
    0
}
