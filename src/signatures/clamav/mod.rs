//! ClamAV database formats beyond the hand-written subset: packed databases (`.cvd`,
//! `.cld`, `.cud`), logical signatures (`.ldb`), ignores (`.ign2`), and the table of which
//! ClamAV formats icapd loads at all.

pub mod cvd;
pub mod expr;
pub mod formats;
pub mod hex;
pub mod ignore;
pub mod ldb;
pub mod offset;
