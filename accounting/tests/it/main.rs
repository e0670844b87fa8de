//! Accounting's figures over the in-memory reader (`kilowatch_accounting::memory`): no store,
//! no server, milliseconds. The aggregator keeps the end-to-end tests through SQLite and HTTP.

mod conservation;
mod site;
mod worked_examples;
