pub mod meta;
pub mod records;
pub mod topics;
