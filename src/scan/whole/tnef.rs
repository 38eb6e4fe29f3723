use super::out::{Out, R};

pub fn extract(_data: &[u8], _out: &mut Out) -> R {
    Ok(())
}
pub const SIGNATURE: u32 = 0x223E9F78;
