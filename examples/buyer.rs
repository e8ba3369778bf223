//! A buyer process for multi-process load on `PostgreSQL`: N concurrent customers reserve and pay
//! for seats of an event whose sales are open, ~`fail ratio` of payments are declined by a seeded
//! gateway and some holds are abandoned to expire. Prints a one-line JSON summary.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1/boxoffice cargo run --example buyer --features postgres -- <event id> 16 42 0.2 2`
//!
//! The event must have the sections `Stalls` and `Box`; `tests/multiprocess_postgres.rs` creates
//! one and runs three of these at once.

#[path = "../tests/multiprocess_support/buyer.rs"]
mod buyer;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match buyer::main_with(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            std::process::ExitCode::FAILURE
        }
    }
}
