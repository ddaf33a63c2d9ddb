//! (to be written)

use roxmltree::Node;

use super::Mapped;
use crate::Ctx;

pub(crate) fn convert(_ctx: &mut Ctx, _statement: Node) -> Mapped {
    Err("not converted yet".into())
}
