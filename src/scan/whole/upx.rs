use super::out::{Out, R};

pub fn extract(_data: &[u8], _out: &mut Out) -> R {
    Ok(())
}
pub fn is_upx(_head: &[u8]) -> bool { false }
