pub mod simsite;
