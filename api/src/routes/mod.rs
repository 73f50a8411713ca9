pub mod cluster;
pub mod groups;
pub mod internal;
pub mod meta;
pub mod produce;
pub mod records;
pub mod shares;
pub mod topics;
