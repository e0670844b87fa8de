pub mod scores;
pub mod simsite;
